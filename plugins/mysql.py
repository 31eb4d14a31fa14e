"""MariaDB: every database of the host's server is dumped before each push and restored on the slave.

Detection (kept simple): the plugin contributes its dump when ``mysqld status`` is not ``disabled`` and
the server's data directory (``mysqld DataDir``, default ``/var/lib/mysql``) exists under the root, i.e.
MariaDB is installed and initialised on this host. A server that is installed but not running then
fails the sync loudly instead of silently shipping nothing. The raw data directory is always excluded
from the push: only the consistent dump travels.
"""
from __future__ import annotations

from pathlib import Path

from hotsync_events import hookimpl
from hotsync_events.databases import databases_enabled
from hotsync_events.types import SchemaFile, SyncPath

from ._dbtools import DUMP_DIR, mariadb_dump, root_of
from ._mariadb import MariaDB

KEY = "mysqld"
DUMP_PATH = f"{DUMP_DIR}/mysql.sql"
DEFAULTS = MariaDB(root=None)  # type: ignore[arg-type]


def server(db, root=None) -> MariaDB:
    """The MariaDB server the config database describes (socket, account, password file, data dir)."""
    def prop(name: str, default: str) -> str:
        value = db.getprop(KEY, name)
        return default if value is None or (value == "" and default) else value
    return MariaDB(root=root or root_of(db), socket=prop("Socket", DEFAULTS.socket),
                   user=prop("DumpUser", DEFAULTS.user), password_file=prop("PasswordFile", ""),
                   datadir=prop("DataDir", DEFAULTS.datadir), key=KEY)


def present(db, root=None) -> bool:
    """Whether this host has a MariaDB server to dump: not disabled, and its data directory exists."""
    if (db.getprop(KEY, "status") or "enabled") == "disabled":
        return False
    srv = server(db, root)
    return srv.root.join(srv.datadir).is_dir()


@hookimpl
def hotsync_config_schema():
    yield SchemaFile("configuration", Path(__file__).with_name("mysql.spec"))


@hookimpl
def hotsync_dumps(db):
    if present(db) and databases_enabled(db):     # disabled: no dump taken, no dump path shipped
        yield mariadb_dump("mysql", DUMP_PATH, server(db))


@hookimpl
def hotsync_sync_paths(db):
    datadir = db.getprop(KEY, "DataDir") or DEFAULTS.datadir
    yield SyncPath(datadir.rstrip("/") + "/", exclude=True)


@hookimpl
def hotsync_detect(root, db):
    """Active only on a host that has this server (see :func:`present`): no server, no paths, no dump."""
    return present(db, root)
