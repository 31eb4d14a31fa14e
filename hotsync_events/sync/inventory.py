"""What the slave holds, as the master last saw it: the names under the shipped paths at the last success.

A sync run's deletion guard needs to know, before anything changes on the slave, whether the push would
delete anything. The guarded path learns it from a dry run: a second walk of both trees and a second
session. Most runs delete nothing, and the master can tell it cheaply: the slave holds what the master had
at the last successful push (and what the notifier pushed since), so when no name recorded then has gone
from the master, the push deletes nothing of the master's making. Such a run is one session, with
``--delete --max-delete=0``: rsync itself then deletes nothing whatever the record says, and exits 25 when
the slave holds something the master does not (a file written on the slave, a push that never finished),
which sends the run down the guarded path at once (:mod:`hotsync_events.sync.push`).

The record is a hint, never trusted for safety: a stale or missing one costs a dry run, nothing else.
It is the set of the paths (bytes, relative to the root) under the include paths, without following a
symbolic link and without the excluded directories, written atomically, zlib-compressed, in the master's
state directory (never shipped), under a key naming the slave (address, pinned certificate, pair epoch):
a record made for another slave is no record. Walking 20,000 files takes about 10 ms; rsync's own walk of
them with ``-AX`` takes 400. Past :data:`MAX_NAMES` names no record is kept.
"""
from __future__ import annotations

import os
import zlib
from collections.abc import Iterable

from hotsync_events.fsutil import atomic_write
from hotsync_events.paths import Root

__all__ = ["INVENTORY_FILE", "MAX_NAMES", "gone", "load", "save", "slave_key", "walk"]

INVENTORY_FILE = "/var/lib/hotsync/sync/inventory"
_MAGIC = b"hotsync-inventory 2 "
#: more names than this and the record is not kept (its memory would grow with the tree): the guarded path
MAX_NAMES = 2_000_000


def walk(root: Root, includes: Iterable[str], excludes: Iterable[str] = (),
         limit: int = MAX_NAMES) -> set[bytes] | None:
    """The names under *includes* on this host now (the include paths themselves too), without what
    *excludes* (rsync patterns) leaves out, or None when a directory cannot be read or there are more than
    *limit* names (then nothing is said: the run takes the guarded path)."""
    from hotsync_events.sync.excludes import ExcludeMatcher

    skip = ExcludeMatcher(excludes)
    base = os.fsencode(str(root.path).rstrip("/"))
    cut = len(base)
    names: set[bytes] = set()
    try:
        for inc in includes:
            top = base + b"/" + os.fsencode(inc).strip(b"/")
            if not os.path.lexists(top):
                continue
            names.add(top[cut:])
            if not os.path.isdir(top) or os.path.islink(top):
                continue
            todo = [top]
            while todo:
                with os.scandir(todo.pop()) as entries:
                    for e in entries:
                        if e.is_dir(follow_symlinks=False):
                            # an excluded directory is not on the slave, nor anything below it (its files are
                            # not matched one by one: that would cost more than the walk)
                            if not skip.empty and skip.excluded(os.fsdecode(e.path[cut:]), True):
                                continue
                            todo.append(e.path)
                        names.add(e.path[cut:])
                if len(names) > limit:
                    return None
    except OSError:
        return None
    return names


def load(root: Root, key: str) -> set[bytes] | None:
    """The names recorded at the last success for the slave *key* names (:func:`slave_key`), or None (no
    record, one made for another slave or epoch, or one this version cannot read)."""
    try:
        data = root.join(INVENTORY_FILE).read_bytes()
    except OSError:
        return None
    head = _MAGIC + key.encode("utf-8", "surrogateescape") + b"\n"
    if not data.startswith(head):
        return None
    try:
        body = zlib.decompress(data[len(head):])
    except zlib.error:
        return None
    return set(body.split(b"\0")) if body else set()


def save(root: Root, names: set[bytes] | None, key: str = "") -> None:
    """Record *names* for the slave *key* names (None removes the record: the next run takes the guarded path)."""
    path = root.join(INVENTORY_FILE)
    if names is None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        return
    head = _MAGIC + key.encode("utf-8", "surrogateescape") + b"\n"
    atomic_write(path, head + zlib.compress(b"\0".join(sorted(names)), 1), mode=0o600)


def slave_key(slave: str, fingerprint: str | None, epoch: int) -> str:
    """What ties a record to one slave: its address, the certificate pinned for it and the pair's epoch (a
    new slave, a re-pair or a promote starts without a record)."""
    return " ".join(str(x).replace("\n", " ") for x in (slave, fingerprint or "-", int(epoch)))


def gone(recorded: set[bytes] | None, now: set[bytes] | None) -> int | None:
    """How many recorded names are no longer here (a push would delete them on the slave), or None when
    either side is unknown."""
    if recorded is None or now is None:
        return None
    return len(recorded - now)
