"""What one sync run comes to (:class:`Outcome`: success, failed, held, dry-run, cancelled, interrupted) and
the exit codes of ``hotsync sync`` (:mod:`hotsync_events.sync.push`).

Exit codes: 0 pushed (or nothing to push), 1 the push failed, 2 this host cannot push (not a configured,
enabled master), 3 held back by a safety guard, 75 another sync is running (a follow-up is queued).
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EXIT_BUSY", "EXIT_CANNOT", "EXIT_FAILED", "EXIT_HELD", "EXIT_OK", "Outcome"]

EXIT_OK, EXIT_FAILED, EXIT_CANNOT, EXIT_HELD, EXIT_BUSY = 0, 1, 2, 3, 75


@dataclass


class Outcome:
    result: str                       # success | failed | held | dry-run
    message: str
    details: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    deleted: int = 0
    changes: int = 0
    exit_code: int | None = None      # rsync's
    fenced: dict | None = None        # the slave was promoted: its refusal's FENCED marker (fence.parse_marker)

    @property
    def code(self) -> int:
        return {"success": EXIT_OK, "dry-run": EXIT_OK, "held": EXIT_HELD, "cancelled": EXIT_CANNOT,
                "interrupted": 130}.get(self.result, EXIT_FAILED)
