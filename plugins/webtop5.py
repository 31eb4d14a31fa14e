"""WebTop 5 (nethserver-webtop5): its files and its PostgreSQL database ``webtop5``.

User data lives under ``/var/lib/nethserver/webtop`` (backup-data's ``/var/lib/nethserver``); the
database was dumped with ``pg_dump webtop5`` to ``/var/lib/nethserver/webtop/backup/webtop.sql`` and
loaded after ``post-restore-data`` (``nethserver-webtop5-restore``), then ``tomcat8@webtop`` was
restarted. Here ``webtop5`` lives in the system PostgreSQL cluster, whose dump by the ``postgresql``
plugin (every database, with its roles) carries it; tomcat restarts after ``post-restore-data``. The z-push (ActiveSync) state is not synced (README and manual): phones resynchronise
with the new master.
"""
from __future__ import annotations

from hotsync_events import hookimpl
from hotsync_events.types import SyncPath

from ._common import has_key, present, service

DATA = "/var/lib/nethserver/webtop/"


@hookimpl
def hotsync_detect(root, db):
    return present(root, DATA, "/usr/share/webtop") or has_key(db, "webtop")


@hookimpl
def hotsync_sync_paths(db):
    yield SyncPath(DATA)
    yield SyncPath("/var/lib/z-push/", exclude=True)
    yield SyncPath("/var/log/z-push/", exclude=True)


@hookimpl
def hotsync_services(db):
    yield service(db, "tomcat8@webtop", unit="tomcat8@webtop.service", key="webtop", writer=True,
                  events={"post-restore-data": "restart"})
