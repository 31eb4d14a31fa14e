"""Mattermost (nethserver-mattermost): its files, config.json and PostgreSQL database ``mattermost``.

Files live under ``/var/lib/nethserver/mattermost`` and ``/opt/mattermost/config/config.json``
(backup-data include). The database runs in the SCL PostgreSQL 12 instance on port 55434 (HotSync
2.2.4, NethServer/dev#6397) and is dumped to ``/var/lib/nethserver/mattermost/backup/mattermost.sql``;
``post-restore-data`` loads it (``nethserver-mattermost-restore``) and restarts mattermost and httpd.
Here that instance is dumped with the database helper (``pg_dump -Fc`` plus its roles) when its data
directory is on the host; props ``mattermost DbPort``, ``DbSocketDir``, ``DbDataDir``, ``DbBinDir``
override the SCL defaults. Its raw data directory never travels.
"""
from __future__ import annotations

from hotsync_events import hookimpl
from hotsync_events.types import SyncPath

from ._common import databases_enabled, has_key, present, service
from hotsync_events.dbkit import DUMP_DIR

DATA = "/var/lib/nethserver/mattermost/"
SCL_DATADIR = "/var/opt/rh/rh-postgresql12/lib/pgsql/data"
SCL_BINDIR = "/opt/rh/rh-postgresql12/root/usr/bin"


@hookimpl
def hotsync_detect(root, db):
    return present(root, "/opt/mattermost") or has_key(db, "mattermost")


@hookimpl
def hotsync_sync_paths(db):
    yield SyncPath(DATA)
    yield SyncPath("/opt/mattermost/config/config.json")
    yield SyncPath("/opt/mattermost/logs/", exclude=True)
    yield SyncPath((db.getprop("mattermost", "DbDataDir") or SCL_DATADIR) + "/", exclude=True)


@hookimpl
def hotsync_dumps(db, root):
    from hotsync_events.dbkit import postgres_dump
    from hotsync_events.dbkit import Postgres

    datadir = db.getprop("mattermost", "DbDataDir") or SCL_DATADIR
    port = db.getprop("mattermost", "DbPort") or "55434"
    if databases_enabled(db) and root.join(datadir).is_dir():
        server = Postgres(root, socket_dir=db.getprop("mattermost", "DbSocketDir") or "/run/postgresql",
                          port=int(port) if port.isdigit() else 55434, datadir=datadir, run_as="postgres",
                          bindir=db.getprop("mattermost", "DbBinDir") or SCL_BINDIR,
                          unit="rh-postgresql12-postgresql.service", key="mattermost")
        yield postgres_dump("mattermost", f"{DUMP_DIR}/mattermost.tar", server, databases=("mattermost",))


@hookimpl
def hotsync_services(db):
    yield service(db, "mattermost", writer=True, events={"post-restore-data": "restart"})
