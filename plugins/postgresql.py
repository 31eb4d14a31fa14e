"""PostgreSQL: roles and every database of the host's cluster are dumped before each push and restored.

Detection (kept simple): the plugin contributes its dump when ``postgresql status`` is not ``disabled``
and the cluster's data directory (``postgresql DataDir``, default ``/var/lib/postgresql``) exists under
the root. Applications on another PostgreSQL instance (Mattermost's own server, for one) declare it
with :func:`hotsync_plugins._dbtools.postgres_dump`. The raw data directory is always excluded from the
push: only the consistent dump travels.
"""
from __future__ import annotations

from pathlib import Path

from hotsync_events import hookimpl
from hotsync_events.databases import databases_enabled
from hotsync_events.types import SchemaFile, SyncPath

from ._dbtools import DUMP_DIR, postgres_dump, root_of
from ._pgsql import Postgres

KEY = "postgresql"
DUMP_PATH = f"{DUMP_DIR}/postgresql.tar"
DEFAULTS = Postgres(root=None)  # type: ignore[arg-type]


def server(db, root=None) -> Postgres:
    """The PostgreSQL server the config database describes."""
    def prop(name: str, default: str) -> str:
        value = db.getprop(KEY, name)
        return default if value is None else value
    port = prop("TCPPort", str(DEFAULTS.port))
    return Postgres(root=root or root_of(db), socket_dir=prop("SocketDir", DEFAULTS.socket_dir) or DEFAULTS.socket_dir,
                    port=int(port) if port.isdigit() else DEFAULTS.port,
                    user=prop("DumpUser", DEFAULTS.user) or DEFAULTS.user, password_file=prop("PasswordFile", ""),
                    datadir=prop("DataDir", DEFAULTS.datadir) or DEFAULTS.datadir,
                    run_as=prop("RunAs", "postgres"), bindir=prop("BinDir", ""), key=KEY)


def present(db, root=None) -> bool:
    """Whether this host has a PostgreSQL cluster to dump: not disabled, and its data directory exists."""
    if (db.getprop(KEY, "status") or "enabled") == "disabled":
        return False
    srv = server(db, root)
    return srv.root.join(srv.datadir).is_dir()


@hookimpl
def hotsync_config_schema():
    yield SchemaFile("configuration", Path(__file__).with_name("postgresql.spec"))


@hookimpl
def hotsync_dumps(db):
    if present(db) and databases_enabled(db):     # disabled: no dump taken, no dump path shipped
        yield postgres_dump("postgresql", DUMP_PATH, server(db))


@hookimpl
def hotsync_sync_paths(db):
    datadir = db.getprop(KEY, "DataDir") or DEFAULTS.datadir
    yield SyncPath(datadir.rstrip("/") + "/", exclude=True)


@hookimpl
def hotsync_detect(root, db):
    """Active only on a host that has this server (see :func:`present`): no server, no paths, no dump."""
    return present(db, root)
