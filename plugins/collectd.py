"""collectd (nethserver-collectd): the RRD history of the host's graphs.

The original shipped nothing for collectd (the RRD files under ``/var/lib/collectd`` were left
behind). Here the history goes with the scheduled sync, so the promoted host's graphs go on where the
master's stopped; collectd writes those files, so it is a writer and stays stopped on the slave.
"""
from __future__ import annotations

from hotsync_events import hookimpl
from hotsync_events.types import SyncPath

from ._common import has_key, present, service

DATA = "/var/lib/collectd/"


@hookimpl
def hotsync_detect(root, db):
    return present(root, "/etc/collectd.conf", DATA) or has_key(db, "collectd")


@hookimpl
def hotsync_sync_paths(db):
    yield SyncPath(DATA, realtime=False)
    yield SyncPath(DATA + "**.rrd.tmp", exclude=True)


@hookimpl
def hotsync_services(db):
    yield service(db, "collectd", writer=True, events={"post-restore-data": "restart"})
