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
It holds, for each directory under the include paths (without following a symbolic link, without the
excluded directories), its device, inode and change time and the names in it. A name cannot be added to,
removed from or renamed in a directory without the directory's change time moving (``utime`` cannot set
it back), so the next run lists only the directories whose change time moved and ``lstat``\\ s the others:
on 20,000 files in 100 directories that is 100 ``lstat`` calls instead of 20,000 names. A change time
less than :data:`SETTLE_NS` old when it was read is not trusted (the clock behind it ticks coarsely: a
second change within the same tick would leave it equal) and that directory is listed again next time.
A clock stepped back or a network file system whose server's clock lags could still leave a change time
equal; so every directory is listed again once the last full listing is :data:`RELIST_AFTER` old, and on
``hotsync sync --full``.
The record is written atomically, zlib-compressed, in the master's state directory (never shipped), under
a key naming the slave (address, pinned certificate, pair epoch): a record made for another slave is no
record. Past :data:`MAX_NAMES` names no record is kept.
"""
from __future__ import annotations

import marshal
import os
import time
import zlib
from collections.abc import Iterable

from hotsync_events.fsutil import atomic_write
from hotsync_events.paths import Root

__all__ = ["INVENTORY_FILE", "MAX_NAMES", "RELIST_AFTER", "SETTLE_NS", "Listing", "gone", "load", "save", "slave_key",
           "walk"]

INVENTORY_FILE = "/var/lib/hotsync/sync/inventory"
_MAGIC = b"hotsync-inventory 4 "
#: more names than this and the record is not kept (its memory would grow with the tree): the guarded path
MAX_NAMES = 2_000_000
#: a directory's change time younger than this when read is not trusted by the next run (it lists it again)
SETTLE_NS = 2_000_000_000
#: seconds after which a record's directories are all listed again, whatever their change times say
RELIST_AFTER = 86400

# one directory: (st_dev, st_ino, trusted st_ctime_ns or 0, its files and links, its subdirectories)
_Dir = tuple[int, int, int, tuple[bytes, ...], tuple[bytes, ...]]


class Listing:
    """The names under the include paths: the include paths found (*tops*, relative to the root with a
    leading slash) and each directory's state and names (*dirs*); *gone* is how many names of the listing
    it was walked against are no longer here (None without one), *changed* whether it differs from it."""

    __slots__ = ("excludes", "tops", "dirs", "gone", "changed", "listed_at")

    def __init__(self, excludes: tuple[str, ...], tops: tuple[bytes, ...], dirs: dict[bytes, _Dir],
                 gone: int | None = None, changed: bool = True, listed_at: float = 0.0) -> None:
        self.excludes, self.tops, self.dirs, self.gone, self.changed = excludes, tops, dirs, gone, changed
        #: when every directory was last listed (not taken from a record)
        self.listed_at = listed_at

    def names(self) -> set[bytes]:
        """Every name in the listing (the include paths themselves too)."""
        out = set(self.tops)
        for d, (_dev, _ino, _ct, files, subs) in self.dirs.items():
            out.update(d + b"/" + n for n in files)
            out.update(d + b"/" + n for n in subs)
        return out


def walk(root: Root, includes: Iterable[str], excludes: Iterable[str] = (), limit: int = MAX_NAMES,
         previous: Listing | None = None, relist: bool = False) -> Listing | None:
    """The names under *includes* on this host now, without what *excludes* (rsync patterns) leaves out, or
    None when a directory cannot be read or there are more than *limit* names (then nothing is said: the
    run takes the guarded path). With *previous* (the record), the result says how many of its names have
    gone, and a directory whose device, inode and trusted change time are the same is not listed again,
    unless *relist*, or the record's last full listing is :data:`RELIST_AFTER` old (then every one is)."""
    from hotsync_events.sync.excludes import ExcludeMatcher

    excludes = tuple(excludes)
    skip = ExcludeMatcher(excludes)
    base = os.fsencode(str(root.path).rstrip("/"))
    cut = len(base)
    now_ns = time.time_ns()
    settled = now_ns - SETTLE_NS
    reuse = (previous is not None and previous.excludes == excludes and not relist
             and 0 <= now_ns / 1e9 - previous.listed_at < RELIST_AFTER)
    old = previous.dirs if reuse and previous is not None else {}
    tops: list[bytes] = []
    dirs: dict[bytes, _Dir] = {}
    count = 0
    lost = 0
    changed = not reuse
    try:
        for inc in includes:
            top = base + b"/" + os.fsencode(inc).strip(b"/")
            if not os.path.lexists(top):
                continue
            tops.append(top[cut:])
            if not os.path.isdir(top) or os.path.islink(top):
                continue
            todo = [top]
            while todo:
                path = todo.pop()
                rel = path[cut:]
                st = os.lstat(path)         # before the listing: a change while it runs moves the time after
                was = old.get(rel)
                if (was is not None and was[2] and was[2] == st.st_ctime_ns and was[1] == st.st_ino
                        and was[0] == st.st_dev):
                    entry = was
                else:
                    files: list[bytes] = []
                    subs: list[bytes] = []
                    with os.scandir(path) as entries:
                        for e in entries:
                            if e.is_dir(follow_symlinks=False):
                                # an excluded directory is not on the slave, nor anything below it (its files
                                # are not matched one by one: that would cost more than the walk)
                                if not skip.empty and skip.excluded(os.fsdecode(e.path[cut:]), True):
                                    continue
                                subs.append(e.name)
                            else:
                                files.append(e.name)
                    ctime = st.st_ctime_ns if st.st_ctime_ns < settled else 0
                    entry = (st.st_dev, st.st_ino, ctime, tuple(sorted(files)), tuple(sorted(subs)))
                    if was is None or was != entry:
                        changed = True
                        if was is not None:
                            lost += len(set(was[3]).union(was[4]).difference(entry[3], entry[4]))
                dirs[rel] = entry
                count += 1 + len(entry[3]) + len(entry[4])
                if count > limit:
                    return None
                todo.extend(path + b"/" + s for s in entry[4])
    except (OSError, ValueError):      # ValueError: a name with a NUL (from a damaged record)
        return None
    listing = Listing(excludes, tuple(tops), dirs, None, True,
                      previous.listed_at if reuse and previous is not None else now_ns / 1e9)
    if previous is None:
        return listing
    if not reuse:            # listed afresh (another filter, or due): the names, not the directories, compared
        listing.gone = gone(previous, listing)
        return listing
    # what the previous listing held that was not reached now: gone (a directory removed or moved away,
    # an include path gone or no longer listed), each of its names counted
    for rel, was in previous.dirs.items():
        if rel not in dirs:
            lost += len(was[3]) + len(was[4])
    listing.gone = lost + len(set(previous.tops).difference(tops))
    listing.changed = changed or len(dirs) != len(previous.dirs) or listing.tops != previous.tops
    return listing


def load(root: Root, key: str) -> Listing | None:
    """The listing recorded at the last success for the slave *key* names (:func:`slave_key`), or None (no
    record, one made for another slave or epoch, or one this version cannot read)."""
    try:
        data = root.join(INVENTORY_FILE).read_bytes()
    except OSError:
        return None
    head = _MAGIC + key.encode("utf-8", "surrogateescape") + b"\n"
    if not data.startswith(head):
        return None
    try:
        excludes, tops, dirs, listed_at = marshal.loads(zlib.decompress(data[len(head):]))
        if not (isinstance(excludes, tuple) and isinstance(tops, tuple) and isinstance(dirs, dict)
                and type(listed_at) is float):
            return None
        for rel, state in dirs.items():
            if not (isinstance(rel, bytes) and isinstance(state, tuple) and len(state) == 5
                    and all(type(x) is int for x in state[:3])
                    and all(type(part) is tuple for part in state[3:])
                    and all(type(n) is bytes for part in state[3:] for n in part)
                    # a subdirectory's name becomes a path the walk opens: one plain component only
                    and all(n and n not in (b".", b"..") and b"/" not in n and b"\0" not in n for n in state[4])):
                return None
        if not all(type(t) is bytes for t in tops) or not all(type(e) is str for e in excludes):
            return None
        return Listing(excludes, tops, dirs, None, False, listed_at)
    except (zlib.error, ValueError, EOFError, TypeError):
        return None


def save(root: Root, listing: Listing | None, key: str = "") -> None:
    """Record *listing* for the slave *key* names (None removes the record: the next run takes the guarded
    path)."""
    path = root.join(INVENTORY_FILE)
    if listing is None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        return
    head = _MAGIC + key.encode("utf-8", "surrogateescape") + b"\n"
    body = marshal.dumps((listing.excludes, listing.tops, listing.dirs, float(listing.listed_at)))
    atomic_write(path, head + zlib.compress(body, 1), mode=0o600)


def slave_key(slave: str, fingerprint: str | None, epoch: int) -> str:
    """What ties a record to one slave: its address, the certificate pinned for it and the pair's epoch (a
    new slave, a re-pair or a promote starts without a record)."""
    return " ".join(str(x).replace("\n", " ") for x in (slave, fingerprint or "-", int(epoch)))


def gone(recorded: Listing | None, now: Listing | None) -> int | None:
    """How many names of *recorded* are not in *now* (a push would delete them on the slave), or None when
    either side is unknown."""
    if recorded is None or now is None:
        return None
    return len(recorded.names() - now.names())
