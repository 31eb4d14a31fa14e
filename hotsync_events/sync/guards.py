"""Safety guards: a push that would wipe the slave stops before anything changes.

Two faults a mirror faithfully replicates are stopped here: a mass deletion (a dry run counts what the
push would delete, against ``MaxDeletePercent`` of the slave's files) and a vanished source (a path that
held files at the last successful push is now empty or missing: an unmounted volume). ``--allow-deletions``
lets one run through. Deletions the real-time notifier pushed since the last successful full sync count
with a run's own (:mod:`hotsync_events.sync.ledger`). rsync's own ``--max-delete`` is not enough: pushing to a daemon, rsync stops the
deletions on the slave but still exits 0, and it lets the other changes through.
"""
from __future__ import annotations

import os
from pathlib import Path

from hotsync_events.paths import Root

__all__ = ["deletion_problem", "over_limit", "source_problems", "source_state"]


def over_limit(deleted: int, base: int, max_percent: int) -> bool:
    """Whether *deleted* of *base* files is **more than** *max_percent* percent (exactly the limit may go).

    The one place the rule lives (the full sync's guard and the notifier's ledger both ask it); integer
    arithmetic, so the boundary is exact. No base (nothing counted yet) is over any limit.
    """
    if deleted <= 0:
        return False
    return base <= 0 or deleted * 100 > max_percent * base


def _has_files(path: Path) -> bool:
    """Whether *path* is a non-empty directory, or a file/symlink that exists."""
    try:
        if path.is_symlink() or not path.is_dir():
            return path.exists() or path.is_symlink()
        with os.scandir(path) as it:
            return next(it, None) is not None
    except OSError:
        return False


def source_state(root: Root, includes: list[str]) -> dict[str, bool]:
    """``{include: holds files}`` for every include path."""
    return {p: _has_files(root.join(p)) for p in includes}


def source_problems(previous: dict[str, bool], now: dict[str, bool]) -> list[str]:
    """Includes that held files at the last success and are now empty or missing."""
    return sorted(p for p, had in previous.items() if had and p in now and not now[p])


def slave_files(stats: dict[str, int], deleted: int) -> int:
    """How many files the slave holds in the pushed paths, from a dry run's stats."""
    total = stats.get("Number of files", 0)
    created = stats.get("Number of created files", 0)
    return max(total - created, 0) + deleted


def deletion_problem(stats: dict[str, int], deleted: int, max_percent: int, already: int = 0) -> str | None:
    """Why a push deleting *deleted* files is held back, or None when it may run.

    *already*: the deletions the real-time notifier pushed since the last successful full sync
    (:mod:`hotsync_events.sync.ledger`); they count with this run's, against the slave's files before them,
    so that a mass deletion split over several pushes is judged as a whole.
    """
    if deleted <= 0:
        return None
    already = max(already, 0)
    held = slave_files(stats, deleted) + already
    share = 100.0 * (deleted + already) / held if held else 100.0
    if over_limit(deleted + already, held, max_percent):
        if already:
            return (f"the push would delete {deleted} of the slave's files; with the {already} the real-time "
                    f"notifier deleted since the last full sync that is {deleted + already} of {held} files "
                    f"({share:.0f}%), more than MaxDeletePercent={max_percent}%")
        return (f"the push would delete {deleted} of the slave's {held} files ({share:.0f}%), more than "
                f"MaxDeletePercent={max_percent}%")
    return None


def allowed_deletions(stats: dict[str, int], deleted: int, max_percent: int) -> int:
    """The ``--max-delete`` of the real run: what the percentage allows, and at least what the dry run saw."""
    held = slave_files(stats, deleted)
    return max(int(held * max_percent / 100), deleted, 1)
