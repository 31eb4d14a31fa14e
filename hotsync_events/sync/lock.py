"""One push at a time: an ``flock`` held for the whole run, and a one-slot queue for later triggers.

The kernel drops the lock when its holder dies, SIGKILL included, so a killed run never leaves a stale
lock. A trigger that finds the lock taken leaves a ``queued`` mark and returns at once; the holder
runs once more when it finishes (so cron, the notifier and a sysadmin typing ``hotsync sync`` at the
same time make at most one extra run, never an overlap: two rsyncs into one partial dir steal each
other's files).
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from hotsync_events.fsutil import open_lock
from hotsync_events.paths import Root

__all__ = ["SyncLock"]


class SyncLock:
    def __init__(self, root: Root, name: str = "sync") -> None:
        self.path: Path = root.run_dir / f"{name}.lock"
        self.queued_path: Path = root.run_dir / f"{name}.queued"
        self._fd: int | None = None

    def acquire(self, queue: bool = True) -> bool:
        """Take the lock without waiting. When it is taken, mark one follow-up (if *queue*) and say False."""
        fd = open_lock(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if queue:
                self.queue()
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SyncLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def holder(self) -> int | None:
        """The pid written by the current holder, or None when the lock is free."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.read(fd, 64).decode(errors="replace").strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def queue(self) -> None:
        self.queued_path.parent.mkdir(parents=True, exist_ok=True)
        self.queued_path.touch()

    def take_queued(self) -> bool:
        """Whether a follow-up was asked for since the last call; clears the mark."""
        try:
            self.queued_path.unlink()
            return True
        except FileNotFoundError:
            return False

    @property
    def is_queued(self) -> bool:
        return self.queued_path.exists()
