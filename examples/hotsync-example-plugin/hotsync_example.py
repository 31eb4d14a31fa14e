"""Acme Notes, a made-up package: the tutorial plugin of hotsync's docs/plugins.md, shipped for real.

Acme Notes keeps its notes in ``/var/lib/acme-notes/``, a search index it can rebuild in
``/var/lib/acme-notes/index/`` and its settings in ``/etc/acme-notes.conf``. Its daemon writes the notes,
so a slave keeps it stopped. At promote the stale index goes; after ``post-restore-data`` a rebuild is
requested. Registered as entry point ``example`` in group ``hotsync`` (see pyproject.toml).
"""
from __future__ import annotations

import shutil

from hotsync_events import hookimpl
from hotsync_events import atomic_write
from hotsync_events.types import Action, PromoteStep, Service, SyncPath

NOTES = "/var/lib/acme-notes/"
CONF = "/etc/acme-notes.conf"
REINDEX = NOTES + "reindex-requested"


@hookimpl
def hotsync_detect(root):
    return root.join(CONF).exists()


@hookimpl
def hotsync_sync_paths(db):
    return [SyncPath(NOTES), SyncPath(CONF), SyncPath(NOTES + "index/", exclude=True)]


@hookimpl
def hotsync_services(db):
    return [Service("acme-notesd", unit="acme-notesd.service", writer=True,
                    enabled=db.getprop("acme-notesd", "status", "enabled") == "enabled")]


@hookimpl
def hotsync_promote_steps(db):
    return [PromoteStep("acme-notes-drop-index", _drop_index, priority=40)]


@hookimpl
def hotsync_actions(db):
    return [Action(event="post-restore-data", name="acme-notes-reindex", run=_request_reindex, priority=60)]


def _drop_index(ctx):
    shutil.rmtree(ctx.root.join(NOTES + "index"), ignore_errors=True)


def _request_reindex(ctx):
    atomic_write(ctx.root.join(REINDEX), f"requested by {ctx.event}\n")
