"""SSSD (nethserver-sssd): the host's link to its account provider.

The original had no HotSync code for it (an sssd start step was removed from the promote in
``bae6b02``); ``sssd.conf`` is rendered from the config database. What must travel is the Kerberos
keytab of a host joined to a remote Active Directory, since the promoted host takes over the
master's name. The credential cache in ``/var/lib/sss`` is per host and a live LDB file: never copied.
"""
from __future__ import annotations

from hotsync_events import hookimpl
from hotsync_events.types import SyncPath

from ._common import has_key, present, service


@hookimpl
def hotsync_detect(root, db):
    return present(root, "/etc/sssd") or has_key(db, "sssd")


@hookimpl
def hotsync_sync_paths(db):
    yield SyncPath("/etc/krb5.keytab", realtime=False)
    yield SyncPath("/var/lib/sss/", exclude=True)


@hookimpl
def hotsync_services(db):
    yield service(db, "sssd", events={"post-restore-data": "restart"})
