"""When the notifier pushes, and what: the leading-edge trigger, the dirty set and the retry policy.

A pure state machine with no thread, no I/O and an injectable clock, so that its timing rules are
unit-tested with a fake clock. :mod:`hotsync_events.realtime.notifier` feeds it changes and runs the batches it
hands out.

The rules (issue 11):

* **Leading edge with a settle window.** When nothing runs, the first change starts a batch ``settle``
  seconds later (default 50 ms, to catch the other files of the same save). Later changes do not push
  the start back, so a steady trickle cannot starve the push (watchdog's own debouncer can).
* **Exactly one follow-up.** Changes arriving while a batch runs are collected and sent by one follow-up
  batch as soon as the running one ends. Sparse writes cost one rsync run of latency; a burst costs
  about one rsync run in all.
* **A bounded dirty set.** Past ``max_batch`` paths the set collapses to "full sync needed": memory
  stays bounded however long the slave is away, and one full rsync is cheaper than a huge list.
* **Full sync fallback** on whatever the caller reports through :meth:`Trigger.need_full` (queue
  overflow, rebuilt watches, a directory renamed or moved in) and after a failed push.
* **A new directory goes whole.** A directory created since the last batch is sent as one name, to be
  copied recursively, instead of the thousands of names made in it (``whole_dirs``, for a pusher that
  recurses: rsync walks a directory faster than it looks up a list of its names, each component by
  component); those names do not count against ``max_batch`` once it is reached. A directory that existed
  (its mode, owner or times changed: ``tar`` and ``cp -a`` set them last) must not be walked: it waits for
  a plain-list batch of its own, right after (none when it lies in a new directory, which is walked).
* **Capped exponential backoff** while pushes fail; the first failure and the first success after
  failures are reported once each (the caller mails them).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from hotsync_events.realtime.settings import DEFAULTS

__all__ = ["Batch", "Outcome", "Trigger"]


@dataclass(frozen=True)
class Batch:
    """One push: ``paths`` (host paths, sorted) or None for a full sync, and why."""

    paths: tuple[str, ...] | None
    reason: str
    first_change: float          # clock time of the oldest change it carries
    started: float
    moves: tuple[tuple[str, str], ...] = ()    # directories renamed, to rename on the slave before the paths
    #: the listed directories are new: each is to be sent whole (recursively), and the names made in them are
    #: left out of ``paths``; False: a plain list, no directory in it may be walked
    recursive: bool = False

    @property
    def full(self) -> bool:
        return self.paths is None


@dataclass(frozen=True)
class Outcome:
    """What :meth:`Trigger.finish` reports: ``notice`` is "failed" on the first failure of a series,
    "recovered" on the first success after failures, else None."""

    notice: str | None = None
    retry_in: float | None = None


@dataclass
class Stats:
    """Counters and last results, for ``hotsync status``."""

    pushes: int = 0
    full_syncs: int = 0
    failures: int = 0
    overflows: int = 0
    collapses: int = 0
    last_push: dict = field(default_factory=dict)
    last_full: dict = field(default_factory=dict)
    last_ok: dict = field(default_factory=dict)       # the last push of either kind that succeeded
    last_error: str = ""


class Trigger:
    """The notifier's scheduling state. Not thread-safe: the caller holds one lock around every call."""

    def __init__(self, *, settle: float = DEFAULTS.settle, max_batch: int = DEFAULTS.max_batch,
                 retry_min: float = DEFAULTS.retry_min, retry_max: float = DEFAULTS.retry_max,
                 clock: Callable[[], float] = time.monotonic, whole_dirs: bool = False) -> None:
        if settle < 0 or max_batch < 1 or retry_min <= 0 or retry_max < retry_min:
            raise ValueError("settle >= 0, max_batch >= 1 and 0 < retry_min <= retry_max are required")
        self.settle = settle
        self.max_batch = max_batch
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.clock = clock
        self.whole_dirs = whole_dirs
        self.dirty: set[str] = set()
        self._new_dirs: set[str] = set()          # directories created since the last batch
        self._old_dirs: set[str] = set()          # directories that existed, changed since the last batch
        self._folded = False                      # names under new directories left out (max_batch reached)
        self._carried: set[str] = set()           # directories the last batch kept apart: the next one's alone
        self.moves: list[tuple[str, str]] = []    # directory renames to replay, in order (sync.moves)
        self._move_parents: set[str] = set()      # dirty only because a rename changed their times
        self.full_reason: str | None = None
        self.first_change: float | None = None   # oldest change not yet in a batch
        self.during_push = False                 # that change arrived while a batch ran
        self.running: Batch | None = None
        self.retry_at: float | None = None
        self.failing_since: float | None = None
        self.consecutive_failures = 0
        self.stats = Stats()

    # ------------------------------------------------------------------------------------- changes
    def change(self, path: str, *, directory: Literal["new", "old"] | None = None) -> None:
        """One path changed (created, written, deleted, moved, attributes). *directory*: "new" for a directory
        created, "old" for one whose attributes changed (it must not be walked); None for anything else (a
        file, a directory deleted)."""
        self._mark()
        if self.full_reason is not None or (self._folded and self._under_new(path)):
            return                  # a full sync comes; or the new directory above it is sent whole
        self.dirty.add(path)
        if directory == "new":
            self._new_dirs.add(path)
        elif directory == "old":
            self._old_dirs.add(path)
        if len(self.dirty) > self.max_batch:
            if self.whole_dirs and not self.moves and not self._folded:
                self._folded = True
                self.dirty = {p for p in self.dirty if not self._under_new(p)}
                if len(self.dirty) <= self.max_batch:
                    return
            self.stats.collapses += 1
            self._collapse(f"more than {self.max_batch} changed paths")

    def _under_new(self, path: str) -> bool:
        """Whether a directory above *path* is new since the last batch (so it is sent whole)."""
        new = self._new_dirs
        i = path.rfind("/")
        while i > 0:
            if path[:i] in new:
                return True
            i = path.rfind("/", 0, i)
        return False

    def move(self, src: str, dest: str, *, limit: int = 16) -> bool:
        """Directory *src* was renamed to *dest*: the next batch renames it on the slave, and the changed paths
        waiting under *src* are pushed under their new names. False (the caller asks for a full sync) when the
        rename cannot be replayed: a batch is running (it may carry paths under *src*), a full sync is due
        anyway, *limit* renames wait already, or *src* or a directory above it changed since the last push
        (created since, perhaps: then the slave does not hold it)."""
        if self.running is not None or self.full_reason is not None or len(self.moves) >= limit or self._folded:
            return False
        if self._touched(src) or self._touched(dest) or any(p.startswith(dest.rstrip("/") + "/") for p in self.dirty):
            # src (or a directory above it) may be new since the last push, and not on the slave yet; dest, or
            # a directory above it, changed too (a directory removed to make room, or made to receive it)
            return False
        self._mark()
        prefix = src.rstrip("/") + "/"
        under = [p for p in self.dirty if p == src or p.startswith(prefix)]
        for p in under:
            self.dirty.discard(p)
            self.dirty.add(dest + p[len(src):])
        self.moves.append((src, dest))
        # the directory itself, and both directories above (the rename changed their times): as the master has them
        parents = {p.rsplit("/", 1)[0] for p in (src, dest)} - {""}
        self._move_parents |= parents - self.dirty
        self.dirty.update({dest, *parents})
        return True

    def _touched(self, path: str) -> bool:
        """Whether *path* or a directory above it waits in the dirty set."""
        parts = path.rstrip("/").split("/")
        return any(p in self.dirty and p not in self._move_parents
                   for p in ("/".join(parts[:i]) for i in range(2, len(parts) + 1)))

    def need_full(self, reason: str) -> None:
        """Something the path list cannot express happened: the next batch is a full sync."""
        self._mark()
        if self.full_reason is None:
            self._collapse(reason)

    def overflow(self) -> None:
        """The kernel dropped events: count it and fall back to a full sync."""
        self.stats.overflows += 1
        self.need_full("the kernel event queue overflowed")

    def _mark(self) -> None:
        if self.first_change is None:
            self.first_change = self.clock()
            self.during_push = self.running is not None

    def _collapse(self, reason: str) -> None:
        self.full_reason = reason
        self.dirty = set()   # a new, empty set: the memory of the big one goes back at once
        self.moves = []      # a full sync brings the slave's tree to the master's, renames included
        self._move_parents = set()
        self._new_dirs, self._old_dirs, self._folded, self._carried = set(), set(), False, set()

    @property
    def pending(self) -> bool:
        return bool(self.dirty) or self.full_reason is not None

    # ------------------------------------------------------------------------------------- batches
    def due_in(self) -> float | None:
        """Seconds until the next batch should start (0: now); None when there is nothing to wait for
        (no change pending, or a batch is running: :meth:`finish` decides what follows)."""
        if self.running is not None or not self.pending:
            return None
        first = self.first_change
        assert first is not None     # pending: _mark() set it (finish() too, for a retry)
        now = self.clock()
        start = first if self.during_push else first + self.settle
        if self.retry_at is not None:
            start = max(start, self.retry_at)
        return max(0.0, start - now)

    @property
    def plain_next(self) -> bool:
        """Whether the coming batch is a plain list (renames, or only directories that existed): a pusher that
        recurses does not start its connection for it ahead of time."""
        return self.whole_dirs and bool(self.moves or (self.dirty and self.dirty <= self._kept_apart()))

    def _kept_apart(self) -> set[str]:
        """The directories that existed and must not be walked, but those in a new directory (walked whole)."""
        return {d for d in self._old_dirs - self._new_dirs if not self._under_new(d)}

    def take(self, *, at_once: bool = False) -> Batch | None:
        """The batch to run now, or None if none is due. The caller runs it, then calls :meth:`finish`.

        With ``whole_dirs`` a batch is ``recursive`` (its new directories sent whole) and the directories that
        existed wait for a plain batch of their own, due as soon as it ends; with renames it is a plain list.
        *at_once*: whatever is pending, without waiting for the settle window or a retry's backoff (the last
        push at a clean stop)."""
        wait = self.due_in()
        if wait is None or (wait > 0 and not at_once):
            return None
        now = self.clock()
        first = self.first_change
        assert first is not None     # due_in() said a batch is due: changes are pending
        later: set[str] = set()
        # one made anew since (removed and made again during the push) is new now: the next batch walks it
        carried, self._carried = self._carried & self.dirty & self._kept_apart(), set()
        if self.full_reason is None and self.whole_dirs and not self.moves and carried:
            # the directories the last batch kept apart go now, alone: a write during every push (a log, a mail
            # spool) must not put them off until the next full sync; the rest is due as soon as they are pushed
            batch = Batch(tuple(sorted(carried)), "changes", first, now)
            self.dirty -= carried
            self._old_dirs -= carried
            self.first_change = first if self.dirty else None
            self.during_push = bool(self.dirty)
            self.running = batch
            return batch
        if self.full_reason is not None:
            batch = Batch(None, self.full_reason, first, now)
        elif self.whole_dirs and not self.moves:
            apart = self._kept_apart()
            rest = sorted(p for p in self.dirty - apart if not self._under_new(p))
            if rest:
                batch = Batch(tuple(rest), "changes", first, now, recursive=True)
                later = apart
            else:
                batch = Batch(tuple(sorted(apart)), "changes", first, now)
        else:
            batch = Batch(tuple(sorted(self.dirty)), "changes", first, now, tuple(self.moves))
        self.dirty = set(later)
        self.moves = []
        self._move_parents = set()
        self._new_dirs, self._old_dirs, self._folded, self._carried = set(), set(later), False, set(later)
        self.full_reason = None
        # the directories kept apart are as old as the batch's first change, and due as soon as it ends
        self.first_change = first if later else None
        self.during_push = bool(later)
        self.running = batch
        return batch

    def finish(self, ok: bool, error: str = "", *, wall: float | None = None) -> Outcome:
        """The running batch ended. A failure turns into a full sync retried with capped backoff."""
        batch, self.running = self.running, None
        if batch is None:
            raise RuntimeError("finish() without a running batch")
        now = self.clock()
        wall = time.time() if wall is None else wall
        record = {"at": wall, "paths": None if batch.paths is None else len(batch.paths), "reason": batch.reason,
                  "seconds": round(now - batch.started, 4), "latency": round(now - batch.first_change, 4),
                  "ok": ok}
        if ok:
            self.stats.pushes += 1
            self.stats.last_ok = record
            if batch.full:
                self.stats.full_syncs += 1
                self.stats.last_full = record
            else:
                self.stats.last_push = record
            self.retry_at = None
            self.consecutive_failures = 0
            if self.failing_since is not None:
                self.failing_since = None
                return Outcome("recovered")
            return Outcome()
        self.stats.failures += 1
        self.stats.last_error = error
        if batch.full:
            self.stats.last_full = record
        else:
            self.stats.last_push = record
        self.consecutive_failures += 1
        delay = min(self.retry_max, self.retry_min * 2 ** (self.consecutive_failures - 1))
        self.retry_at = now + delay
        # what the failed batch carried may or may not have arrived: resend it all, as one full sync
        if self.first_change is None or batch.first_change < self.first_change:
            self.first_change = batch.first_change
        self.during_push = False
        if self.full_reason is None:
            self._collapse("the last push failed")
        first = self.failing_since is None
        if first:
            self.failing_since = now
        return Outcome("failed" if first else None, retry_in=delay)

    def snapshot(self) -> dict:
        """The state as plain data (for the status file)."""
        return {"queued_paths": len(self.dirty), "full_sync_pending": self.full_reason,
                "running": None if self.running is None else
                ("full" if self.running.paths is None else len(self.running.paths)),
                "retry_in": None if self.retry_at is None else round(max(0.0, self.retry_at - self.clock()), 3),
                "failing_for": None if self.failing_since is None else round(self.clock() - self.failing_since, 1),
                "pushes": self.stats.pushes, "full_syncs": self.stats.full_syncs,
                "failures": self.stats.failures, "overflows": self.stats.overflows,
                "collapses": self.stats.collapses, "last_push": self.stats.last_push,
                "last_full": self.stats.last_full, "last_ok": self.stats.last_ok,
                "last_error": self.stats.last_error}
