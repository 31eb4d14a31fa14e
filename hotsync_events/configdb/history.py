"""The change history of the config databases: one JSON line per changed prop.

Written by the database's writer under its lock, before the new file replaces the old one, so a crash
between the two leaves at most an entry for a change that did not land, never a change without its entry.
Secret values are masked when written. The log rotates by size (``config-history.log``, then ``.1`` to
``.3``, ``.3`` the oldest), under a lock of its own that writers of different databases share
(``config-history.log.lock``). Reading takes no lock: the one reader is
:func:`hotsync_events.configdb.historyview.entries` (rotation-safe, filtered).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from hotsync_events.paths import Root

TYPE_CHECKING = False  # importing typing costs every `config setprop` milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["MASK", "history_path", "journal_for"]

MASK = "********"
MAX_BYTES = 8 * 1024 * 1024
KEEP = 3


def history_path(root: Root) -> Path:
    return root.log_dir / "config-history.log"


def journal_for(root: Root) -> Callable[[str, list, str], None]:
    """A journal callable for :class:`~hotsync_events.configdb.db.ConfigDB` writing under *root*."""
    path = history_path(root)
    secret: Callable[[str, str, str], bool] | None = None

    def journal(db: str, changes: list, source: str = "") -> None:
        nonlocal secret
        if secret is None:
            from hotsync_events.configdb.schema import secret_test

            secret = secret_test(root)
        now = time.time()
        who = _who()
        argv = [os.path.basename(sys.argv[0]), *sys.argv[1:]] if sys.argv and sys.argv[0] else []
        hidden = {v for c in changes if c.prop is not None and secret(c.db, c.key, c.prop)
                  for v in (c.old, c.new) if v}
        # also the VALUE after a secret PROP of a KEY named before it: the changes of this write may not
        # hold it (the first command on a fresh root journals the initialisation under its own command line)
        shown = [MASK if i > 1 and any(secret(db, k, argv[i - 1]) for k in argv[1:i - 1]) else a
                 for i, a in enumerate(argv)]
        command = " ".join(MASK if a in hidden else a for a in shown)
        extra = {"source": source} if source else {}
        lines = []
        for c in changes:
            hide = c.prop is not None and secret(c.db, c.key, c.prop)
            lines.append(json.dumps({
                "time": round(now, 6), "db": c.db, "key": c.key, "prop": c.prop,
                "old": _mask(c.old, hide), "new": _mask(c.new, hide),
                "user": who[0], "uid": who[1], "pid": os.getpid(), "command": command, **extra,
            }, ensure_ascii=False, sort_keys=True) + "\n")
        _append(path, "".join(lines).encode("utf-8", "surrogateescape"))

    return journal


def _mask(value: str | None, hide: bool) -> str | None:
    return MASK if hide and value else value


def _who() -> tuple[str, int]:
    uid = os.getuid()
    name = os.environ.get("SUDO_USER")
    if not name:
        import pwd

        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
    return name, uid


def _append(path: Path, data: bytes) -> None:
    """Append *data* under the log's own lock (writers of different databases share the log).

    A line left torn by a writer killed in mid-write is closed first, so the next entry starts on a
    line of its own. Readers take no lock.
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    from hotsync_events.fsutil import open_lock

    lock = open_lock(f"{path}.lock")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            size = os.fstat(fd).st_size
            if size and size + len(data) > MAX_BYTES:
                _rotate(path)
                os.close(fd)
                fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
                size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fdatasync(fd)  # the data and the new size (what a reader needs); not the mtime
        finally:
            os.close(fd)
    finally:
        os.close(lock)  # closing releases the flock


def _rotate(path: Path) -> None:
    for i in range(KEEP - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))

