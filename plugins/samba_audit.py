"""Samba audit (nethserver-samba-audit): the audit log of file-share access.

HotSync's ``sambaaudit.sh`` ships ``/var/log/smbaudit.log`` explicitly, although ``/var/log/`` is
otherwise kept out, so the promoted host keeps the audit trail. The log grows all day: it goes with
the scheduled sync only. The audit reports the package imports into MariaDB (database ``smbaudit``)
travel with the MariaDB plugin's dump of every database.
"""
from __future__ import annotations

from hotsync_events import hookimpl
from hotsync_events.types import SyncPath

from ._common import has_key, present

LOG = "/var/log/smbaudit.log"


@hookimpl
def hotsync_detect(root, db):
    return present(root, LOG, "/etc/rsyslog.d/smbaudit.conf") or has_key(db, "smbaudit")


@hookimpl
def hotsync_sync_paths(db):
    yield SyncPath(LOG, realtime=False)
