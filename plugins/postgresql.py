"""PostgreSQL: roles and every database of the host's cluster are dumped before each push and restored.

Detection (kept simple): the plugin contributes its dump when ``postgresql status`` is not ``disabled``
and the cluster's data directory (``postgresql DataDir``, default ``/var/lib/postgresql``) exists under
the root. Applications on another PostgreSQL instance (Mattermost's own server, for one) declare it
with :func:`hotsync_events.dbkit.postgres_dump`. The raw data directory is always excluded from the
push: only the consistent dump travels.
"""
from __future__ import annotations

from pathlib import Path

from hotsync_events.dbkit import DUMP_DIR, HostServer, postgres_dump, root_of
from hotsync_events.dbkit import Postgres

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


PLUGIN = HostServer(key=KEY, spec=Path(__file__).with_name("postgresql.spec"), dump_name="postgresql",
                    dump_path=DUMP_PATH, server=server, dump=postgres_dump, default_datadir=DEFAULTS.datadir)

# the plugin's hooks (and its presence test), shared with the other host server's plugin
present = PLUGIN.present
hotsync_config_schema = PLUGIN.hotsync_config_schema
hotsync_dumps = PLUGIN.hotsync_dumps
hotsync_sync_paths = PLUGIN.hotsync_sync_paths
hotsync_detect = PLUGIN.hotsync_detect
hotsync_health_checks = PLUGIN.hotsync_health_checks
