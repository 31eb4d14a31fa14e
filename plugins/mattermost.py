"""Mattermost (nethserver-mattermost): its files, config.json and PostgreSQL database ``mattermost``.

Files live under ``/var/lib/nethserver/mattermost`` and ``/opt/mattermost/config/config.json``
(backup-data include). The database runs in the SCL PostgreSQL 12 instance on port 55434 (HotSync
2.2.4, NethServer/dev#6397) and is dumped to ``/var/lib/nethserver/mattermost/backup/mattermost.sql``;
``post-restore-data`` loads it (``nethserver-mattermost-restore``) and restarts mattermost and httpd.
"""
from __future__ import annotations

from hotsync_events import hookimpl
from hotsync_events.types import SyncPath

from ._common import has_key, present, service

DATA = "/var/lib/nethserver/mattermost/"


@hookimpl
def hotsync_detect(root, db):
    return present(root, "/opt/mattermost") or has_key(db, "mattermost")


@hookimpl
def hotsync_sync_paths(db):
    yield SyncPath(DATA)
    yield SyncPath("/opt/mattermost/config/config.json")
    yield SyncPath("/opt/mattermost/logs/", exclude=True)


@hookimpl
def hotsync_services(db):
    yield service(db, "mattermost", writer=True, events={"post-restore-data": "restart"})
