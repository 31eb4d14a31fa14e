"""Deletions pushed to the slave since the last successful full sync, counted across pushes.

The full sync's deletion guard (:mod:`hotsync_events.sync.guards`) compares one run's deletions with the
slave's files. The real-time notifier pushes in small batches, so a mass deletion that inotify delivers
over several pushes (``rm -rf`` of a big tree, a slow deletion loop) would pass a per-batch check batch by
batch. The ledger closes that gap: every push that deletes adds its count, and both guards judge the
*cumulative* count since the last successful full sync against the file count of that sync:

* the notifier (:mod:`hotsync_events.realtime.pusher`) pushes a batch only while ``already + batch`` stays
  within ``MaxDeletePercent``; past it, it pushes nothing more and hands over to the full sync;
* the full sync adds ``already`` to its own dry run's count, so it holds what is left (the slave keeps
  it, the sysadmin is alerted) until ``hotsync sync --allow-deletions``.

A successful full sync starts a new ledger: it is keyed by that sync's start time (``last_success.start``
in the status file), so a stale ledger is simply ignored and nothing has to reset it. Splitting cannot
game it: the only thing that resets the count is a full sync, whose own guard counts the same way, so
the notifier allows exactly what a series of scheduled syncs would have allowed.

The state is two numbers and a key, written atomically (it survives a restart of the notifier), and is
read and written only under the sync lock. The pure part (:class:`Ledger`) takes no clock and does no I/O.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from hotsync_events.fsutil import atomic_write
from hotsync_events.paths import Root

__all__ = ["LEDGER_FILE", "Ledger", "load", "save", "record_deletions"]

#: under the sync's state directory (protected: never shipped, never deleted on the slave)
LEDGER_FILE = "/var/lib/hotsync/sync/realtime-deletions.json"


@dataclass
class Ledger:
    """``deleted`` files pushed since the full sync that started at ``since`` and counted ``files``."""

    since: float | None = None      # last_success.start of the full sync this ledger counts from
    files: int = 0                  # that sync's file count: the base of the percentage
    deleted: int = 0                # deletions pushed since, by pushes other than a full sync
    held: int = 0                   # the last batch refused for going past the limit (0: none)

    @classmethod
    def current(cls, stored: dict | None, last_success: dict | None) -> Ledger:
        """The ledger that applies now: the stored one if it counts from the last success, else a new one."""
        last = last_success or {}
        since = _float(last.get("start"))
        files = _int(last.get("files"))
        stored = stored or {}
        if since is not None and _float(stored.get("since")) == since:
            return cls(since, files, max(_int(stored.get("deleted")), 0), max(_int(stored.get("held")), 0))
        return cls(since, files, 0, 0)

    def share(self, more: int = 0) -> float:
        """Percent of the base the deletions so far plus *more* amount to (100 without a base)."""
        if not self.files:
            return 100.0
        return 100.0 * (self.deleted + more) / self.files

    def problem(self, more: int, max_percent: int) -> str | None:
        """Why pushing *more* deletions now is refused (None: they may go)."""
        if more <= 0:
            return None
        if self.since is None or not self.files:
            return (f"a real-time push would delete {more} files, and no successful full sync has counted the "
                    "slave's files yet")
        from hotsync_events.sync.guards import over_limit

        if over_limit(self.deleted + more, self.files, max_percent):
            return (f"a real-time push would delete {more} files; with the {self.deleted} deleted since the last "
                    f"full sync that is {self.deleted + more} of its {self.files} files ({self.share(more):.0f}%), "
                    f"more than MaxDeletePercent={max_percent}%")
        return None

    def add(self, deleted: int) -> None:
        if deleted > 0:
            self.deleted += deleted
            self.held = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True) + "\n"


def _float(v) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def _int(v) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def _last_success(root: Root) -> dict:
    from hotsync_events.sync.status import read_status

    return read_status(root).get("last_success") or {}


def load(root: Root, last_success: dict | None = None) -> Ledger:
    """The ledger for now (the caller holds the sync lock)."""
    try:
        stored = json.loads(root.join(LEDGER_FILE).read_text(encoding="utf-8"))
        if not isinstance(stored, dict):
            stored = None
    except (OSError, ValueError):
        stored = None
    return Ledger.current(stored, _last_success(root) if last_success is None else last_success)


def save(root: Root, ledger: Ledger) -> None:
    path = root.join(LEDGER_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, ledger.to_json(), mode=0o600)


def record_deletions(root: Root, deleted: int) -> Ledger:
    """Add *deleted* pushed deletions to the ledger (no write when there is nothing to add)."""
    ledger = load(root)
    if deleted > 0:
        ledger.add(deleted)
        save(root, ledger)
    return ledger
