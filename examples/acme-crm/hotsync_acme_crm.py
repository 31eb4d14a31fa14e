"""Acme CRM (a made-up package): its data minus the cache and temp files, its config, and its SQLite database
dumped consistently (the live file stays out of the push). Its daemon writes, so a slave keeps it stopped; at
promote the config names the new host and the daemon starts. Entry point ``acme-crm`` (pyproject.toml)."""
import re
import socket

from hotsync_events import PromoteStep, Service, SyncPath, atomic_write, hookimpl
from hotsync_events.dbkit import sqlite_dump

CONF = "/etc/acme-crm/crm.conf"
DATA = "/var/lib/acme-crm/data/"
SQLITE = "/var/lib/acme-crm/crm.sqlite"


@hookimpl
def hotsync_detect(root):
    return root.join("/etc/acme-crm").exists()      # no Acme CRM here: the plugin adds nothing


@hookimpl
def hotsync_sync_paths():
    return [SyncPath(DATA), SyncPath(CONF),                                  # excludes anchored under our dirs
            SyncPath(DATA + "cache/", exclude=True), SyncPath(DATA + "**.tmp", exclude=True),
            SyncPath(SQLITE + "*", exclude=True)]                            # the live file, -wal, -shm


@hookimpl
def hotsync_dumps():
    return [sqlite_dump("acme-crm", SQLITE)]        # shipped as /var/lib/hotsync/dumps/acme-crm.sqlite


@hookimpl
def hotsync_services():
    return [Service("acme-crm", unit="acme-crm.service", writer=True)]


@hookimpl
def hotsync_promote_steps():
    return [PromoteStep("acme-crm-take-over", _take_over, priority=70)]     # after the dumps are restored


def _take_over(ctx):                                 # safe to run twice
    conf = ctx.root.join(CONF)
    st, text = conf.stat(), re.sub(r"(?m)^hostname=.*$", f"hostname={socket.getfqdn()}", conf.read_text())
    atomic_write(conf, text, mode=st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid)   # keeps mode and owner
    ctx.service("acme-crm", "start")
