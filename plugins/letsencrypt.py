"""Let's Encrypt (nethserver-letsencrypt): certbot's account, keys and certificates.

NethServer carried ``/etc/letsencrypt`` in the configuration backup (nethserver-base's include);
here it is synced as files, with the scheduled run (certificates change every two months). certbot's
renewal timer writes there, so it is a writer: the slave must not renew on its own.
"""
from __future__ import annotations

from hotsync_events import hookimpl
from hotsync_events.types import SyncPath

from ._common import has_key, present, service

HOME = "/etc/letsencrypt/"


@hookimpl
def hotsync_detect(root, db):
    return present(root, HOME, "/usr/bin/certbot") or has_key(db, "letsencrypt")


@hookimpl
def hotsync_sync_paths(db):
    yield SyncPath(HOME, realtime=False)
    yield SyncPath(HOME + ".certbot.lock", exclude=True)


@hookimpl
def hotsync_services(db):
    yield service(db, "certbot-renew", unit="certbot-renew.timer", key="letsencrypt", writer=True)
