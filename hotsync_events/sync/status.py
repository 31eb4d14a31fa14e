"""The sync status file: one JSON document per host, written atomically under a lock.

Both sides keep one (``<root>/var/lib/hotsync/sync/status.json``). The master records its runs (start,
end, result, files, bytes), the last success, the state of its sources at that success, the pinned
certificate and whether an alert mail is out; the slave records every run it received (from the rsync
daemon's pre/post-xfer hooks). ``hotsync status`` prints it; readers take no lock.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from hotsync_events.fsutil import atomic_write, open_lock
from hotsync_events.paths import Root

__all__ = ["STATE_DIR", "read_status", "state_dir", "status_path", "update_status", "iso"]

#: host path of the sync's private state (never shipped, never overwritten by a push)
STATE_DIR = "/var/lib/hotsync/sync"
HISTORY_KEEP = 20


def state_dir(root: Root) -> Path:
    return root.join(STATE_DIR)


def status_path(root: Root) -> Path:
    return state_dir(root) / "status.json"


def read_status(root: Root) -> dict:
    """The status as a dict; ``{}`` when there is none yet (or it is unreadable, which is reported)."""
    try:
        data = json.loads(status_path(root).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        return {"status_error": f"unreadable status file {status_path(root)}: {exc}"}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def _locked(root: Root) -> Iterator[None]:
    fd = open_lock(state_dir(root) / "status.lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update_status(root: Root, change: Callable[[dict], object], *, public_later: bool = False,
                  public: bool = True) -> dict:
    """Read, let *change* edit the dict in place, write it back atomically; returns the new status.

    The public snapshot (:mod:`hotsync_events.sync.public`) follows, written before this returns, or by a
    detached child when *public_later* (the slave's per-session hooks, whose exit a push waits for); not at
    all when not *public* (a change the snapshot does not show)."""
    with _locked(root):
        data = read_status(root)
        data.pop("status_error", None)
        change(data)
        data["updated"] = time.time()
        atomic_write(status_path(root), json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                     mode=0o600)
    if not public:
        return data
    from hotsync_events.sync import public as snapshot      # what a user without root may read of it

    if public_later:
        snapshot.write_public_later(root)
    else:
        snapshot.write_public(root)
    return data


def push_history(data: dict, run: dict) -> None:
    """Append *run* to ``data["history"]``, keeping the last few."""
    hist = data.setdefault("history", [])
    hist.append(run)
    del hist[:-HISTORY_KEEP]


def iso(ts: float | None) -> str | None:
    """A timestamp as local ISO 8601 (seconds), or None."""
    if ts is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S%z", time.localtime(ts))
