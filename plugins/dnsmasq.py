"""dnsmasq (nethserver-dnsmasq): DHCP leases, so the promoted host hands out no address twice.

HotSync's ``dnsmasq.sh`` ships ``/var/lib/dnsmasq/dnsmasq.leases``; the DHCP and DNS configuration
itself is rendered from the config database. dnsmasq rewrites the leases file, so it is a writer: a
slave must not answer DHCP on the master's LAN anyway.
"""
from __future__ import annotations

from hotsync_events import hookimpl
from hotsync_events.types import SyncPath

from ._common import has_key, present, service

LEASES = "/var/lib/dnsmasq/dnsmasq.leases"


@hookimpl
def hotsync_detect(root, db):
    return present(root, "/etc/dnsmasq.conf", "/var/lib/dnsmasq") or has_key(db, "dnsmasq")


@hookimpl
def hotsync_sync_paths(db):
    yield SyncPath(LEASES)


@hookimpl
def hotsync_services(db):
    yield service(db, "dnsmasq", writer=True, events={"post-restore-data": "restart"})
