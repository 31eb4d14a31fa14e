"""MariaDB: every database of the host's server is dumped before each push and restored on the slave.

Detection (kept simple): the plugin contributes its dump when ``mysqld status`` is not ``disabled`` and
the server's data directory (``mysqld DataDir``, default ``/var/lib/mysql``) exists under the root, i.e.
MariaDB is installed and initialised on this host. A server that is installed but not running then
fails the sync loudly instead of silently shipping nothing. The raw data directory is always excluded
from the push: only the consistent dump travels.
"""
from __future__ import annotations

from pathlib import Path

from hotsync_events.dbkit import DUMP_DIR, HostServer, mariadb_dump, root_of
from hotsync_events.dbkit import MariaDB

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


PLUGIN = HostServer(key=KEY, spec=Path(__file__).with_name("mysql.spec"), dump_name="mysql",
                    dump_path=DUMP_PATH, server=server, dump=mariadb_dump, default_datadir=DEFAULTS.datadir)

# the plugin's hooks (and its presence test), shared with the other host server's plugin
present = PLUGIN.present
hotsync_config_schema = PLUGIN.hotsync_config_schema
hotsync_dumps = PLUGIN.hotsync_dumps
hotsync_sync_paths = PLUGIN.hotsync_sync_paths
hotsync_detect = PLUGIN.hotsync_detect
hotsync_health_checks = PLUGIN.hotsync_health_checks
