"""CUPS (nethserver-cups): the printer and class definitions and their PPD drivers.

NethServer carried them in the configuration backup (``backup-config.d/nethserver-cups.include``);
here they are synced as files. cupsd rewrites ``printers.conf`` itself (and leaves ``*.O`` backups),
so it is a writer, stopped on the slave.
"""
from __future__ import annotations

from hotsync_events import hookimpl
from hotsync_events.types import SyncPath

from ._common import has_key, present, service


@hookimpl
def hotsync_detect(root, db):
    return present(root, "/etc/cups/cupsd.conf") or has_key(db, "cups")


@hookimpl
def hotsync_sync_paths(db):
    yield SyncPath("/etc/cups/printers.conf")
    yield SyncPath("/etc/cups/classes.conf")
    yield SyncPath("/etc/cups/ppd/")
    yield SyncPath("/etc/cups/ppd/*.O", exclude=True)


@hookimpl
def hotsync_services(db):
    yield service(db, "cups", writer=True, events={"post-restore-data": "restart"})
