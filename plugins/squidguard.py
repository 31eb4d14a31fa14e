"""squidGuard / ufdbGuard (nethserver-squidguard): the downloaded URL blacklists.

HotSync's ``squidguard.sh`` ships ``/var/squidGuard`` (the blacklists and their previous copy); the
slave's ``fixperm`` gives them back to squid (#6355) and the ufdbGuard files to ufdb (#6396); the
promote then re-signals ``nethserver-squid-update``, here a restart of ufdb and squid after
``post-restore-data``. The blacklists change once a day: they go with the scheduled sync only.
"""
from __future__ import annotations

from hotsync_events import hookimpl
from hotsync_events.types import PromoteStep, SyncPath

from ._common import fix_owners, has_key, present, service

HOME = "/var/squidGuard/"


@hookimpl
def hotsync_detect(root, db):
    return present(root, "/var/squidGuard", "/etc/ufdbguard") or has_key(db, "squidguard")


@hookimpl
def hotsync_sync_paths(db):
    yield SyncPath(HOME, realtime=False)
    yield SyncPath(HOME + "blacklists/*.tar.gz", exclude=True)    # the download, unpacked beside it


@hookimpl
def hotsync_services(db):
    yield service(db, "ufdb", events={"post-restore-data": "restart"})
    yield service(db, "squid", events={"post-restore-data": "restart"})


@hookimpl
def hotsync_promote_steps(db):
    yield PromoteStep("squidguard-fix-owners", fix_owners([
        (HOME + "blacklists/", "squid", "squid", True),
        (HOME + "blacklists.old/", "squid", "squid", True),
        (HOME + "blacklists/cache.execlists", "ufdb", "squid", False),
        ("/var/ufdbguard/logs/", "ufdb", "ufdb", True),
    ]), priority=30)
