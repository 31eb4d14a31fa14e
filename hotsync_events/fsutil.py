"""Crash-safe file writes: temp file, fsync, rename, fsync of the directory."""
from __future__ import annotations

import os
from pathlib import Path

#: tests: ``HOTSYNC_CRASH_BEFORE_RENAME=<file name>`` kills a writer of that file after its temp file is
#: complete and before the rename (the worst moment of :func:`atomic_write`)
CRASH_ENV = "HOTSYNC_CRASH_BEFORE_RENAME"

__all__ = ["atomic_write", "fsync_dir", "open_dir_nofollow", "open_lock", "open_private_log", "remove_dead_temps"]


def fsync_dir(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes | str, *, mode: int = 0o644,
                 uid: int | None = None, gid: int | None = None, encoding: str = "utf-8") -> None:
    """Replace *path* with *data* so that a reader sees the old or the new file, never a part.

    The temp file gets its mode (and owner, when given) before the rename. A writer killed at any moment
    leaves the old file, or the new one, and at most a stray ``.<name>.tmp-<pid>-<random>`` beside it.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode(encoding)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one name per call: two threads of one process writing the same file never share a temp file
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")   # not `secrets`: 5 ms to import
    # a new file, never one that is there (a stray of a writer killed earlier, or a link someone who may
    # write the directory planted): never followed, never truncated in place
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o600)
    except FileExistsError:
        _unlink_quietly(tmp)
        fd = os.open(tmp, flags, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        os.fchmod(fd, mode)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    os.close(fd)
    if os.environ.get(CRASH_ENV) == path.name:   # tests: die inside the rename window, deterministically
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(path.parent)


def open_lock(path: str | os.PathLike) -> int:
    """Open (create) a lock file only its owner can open: 0600, whatever mode an older version left.

    ``flock`` needs nothing but an open file, so a lock any user can read is a lock any user can hold (and
    a sync or an event kept waiting by one). Returns the descriptor (close-on-exec).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private_log(path: str | os.PathLike) -> int:
    """Open a log for appending, readable by its owner and group only (0640): logs name files."""
    path = Path(path)
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)
    st = os.fstat(fd)
    if st.st_mode & 0o027 and st.st_uid == os.geteuid():
        os.fchmod(fd, st.st_mode & 0o750)
    return fd


def remove_dead_temps(path: str | os.PathLike) -> list[str]:
    """Remove the temp files that writers of *path* killed mid-write left (``.<name>.tmp-<pid>[-<token>]`` of a
    dead pid).

    Call it holding the lock that serialises the writers of *path*. Returns the names removed.
    """
    path = Path(path)
    prefix = f".{path.name}.tmp-"
    removed: list[str] = []
    try:
        with os.scandir(path.parent) as entries:
            stale = [e.name for e in entries if e.name.startswith(prefix)
                     and e.name[len(prefix):].split("-", 1)[0].isdigit()]
    except FileNotFoundError:
        return removed
    for name in stale:
        try:
            os.kill(int(name[len(prefix):].split("-", 1)[0]), 0)
            continue                      # that writer is alive
        except ProcessLookupError:
            pass
        except PermissionError:           # alive, another user's
            continue
        _unlink_quietly(path.parent / name)
        removed.append(name)
    return removed


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def open_dir_nofollow(base: str | os.PathLike, path: str) -> int:
    """A descriptor of directory *path* (its components split on ``/``) under directory *base*, opened one
    component at a time without following a symlink (``O_NOFOLLOW``): what is swapped in meanwhile is not
    followed. Raises OSError (ELOOP or ENOTDIR for a link or a file on the way)."""
    fd = os.open(os.fspath(base), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in [p for p in path.split("/") if p]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_small(path: str | os.PathLike, limit: int) -> bytes | None:
    """A regular file's bytes, at most *limit* of them, for a file another host may have sent: never through
    a link, never blocking on a FIFO or a device, never more than *limit* read (None for any of those, a
    missing file, or a larger one)."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    return data if len(data) <= limit else None
