"""The promote's journal: what is done, so that a promote killed at any point resumes where it stopped."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from hotsync_events.fsutil import atomic_write
from hotsync_events.paths import Root

__all__ = ["CRASH_ENV", "JOURNAL", "read_journal"]

JOURNAL = "/var/lib/hotsync/sync/promote.json"
CRASH_ENV = "HOTSYNC_PROMOTE_CRASH_AT"


def _journal_path(root: Root) -> Path:
    return root.join(JOURNAL)


def read_journal(root: Root) -> dict | None:
    try:
        data = json.loads(_journal_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_journal(root: Root, j: dict) -> None:
    atomic_write(_journal_path(root), json.dumps(j, indent=1, sort_keys=True) + "\n", mode=0o600)


def _crash_point(name: str) -> None:
    """Tests: ``HOTSYNC_PROMOTE_CRASH_AT=<name>`` kills this process (SIGKILL) at that point."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
