"""A directory renamed on the master, replayed as a rename on the slave (issue 20).

rsync has no rename: a renamed directory of 10,000 files travelled again in full, as 10,000 new files and
10,000 deletions, held by the deletion guard when the directory was large. The notifier now sends the move
itself in the session's early input (``moves=``, :func:`encode`), and the slave's pre-xfer hook renames the
directory before the session's list (the paths that changed, under their new names) is pushed.

The slave decides whether it replays a move (:func:`apply_moves`), with the rules a push has to follow:
both names inside the master's manifest and outside every refused area, nothing refused inside the
directory, no symlink on the way, the source a directory, the destination free. A move that does not
pass is refused with the reason, nothing is renamed, and the master falls back to a full sync.
"""
from __future__ import annotations

import base64
import binascii
import errno
import json
import os
import stat

from hotsync_events.fsutil import open_dir_nofollow
from hotsync_events.paths import Root

__all__ = ["MAX_ENCODED", "MAX_MOVES", "apply_moves", "decode", "encode"]

#: at most this many renames ride on one session, in at most this many bytes of early input (rsync's
#: early input holds 5 KiB; the rest of the line is the epoch, the kind and the nonce)
MAX_MOVES = 16
MAX_ENCODED = 3600


def encode(moves) -> str | None:
    """The ``moves=`` value for *moves* (``[(src, dest), ...]`` host paths), or None when they do not fit."""
    if not moves or len(moves) > MAX_MOVES:
        return None
    raw = json.dumps([[s, d] for s, d in moves], ensure_ascii=False, separators=(",", ":")).encode("utf-8",
                                                                                                  "surrogateescape")
    text = base64.urlsafe_b64encode(raw).decode("ascii")
    return text if len(text) <= MAX_ENCODED else None


def decode(text: str) -> list[tuple[str, str]] | None:
    """The moves of a ``moves=`` value, or None when it is not well-formed."""
    if not text or len(text) > MAX_ENCODED:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(text.encode("ascii")).decode("utf-8", "surrogateescape"))
    except (ValueError, binascii.Error, UnicodeError):
        return None
    if not isinstance(data, list) or not data or len(data) > MAX_MOVES:
        return None
    out = []
    for pair in data:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            return None
        if not all(_clean(p) for p in pair):
            return None
        out.append((pair[0], pair[1]))
    return out


def _clean(path: str) -> bool:
    try:
        path.encode("utf-8", "surrogateescape")       # a name the file system can hold
    except UnicodeError:
        return False
    return (path.startswith("/") and path != "/" and "\0" not in path and "\n" not in path
            and os.path.normpath(path) == path and ".." not in path.split("/"))


def _path_problem(path: str, tops: list[str]) -> str | None:
    from hotsync_events.sync.policy import inner_refused, refusal_of

    if not _clean(path):
        return f"{path!r} is not a plain absolute path"
    if not any(path == t or path.startswith(t.rstrip("/") + "/") for t in tops):
        return f"{path} is outside what the master ships (its manifest)"
    area = refusal_of(path)
    if area is not None:
        return f"{path} is inside {area.path}, which a push never writes ({area.why})"
    inner = inner_refused(path)
    if inner:
        return f"{path} holds {inner[0].path}, which a push never writes ({inner[0].why})"
    return None


#: renameat2(2)'s flag: fail with EEXIST rather than replace what is there (an empty directory, say)
RENAME_NOREPLACE = 1


def _rename_noreplace(src_dir: int, src: str, dst_dir: int, dst: str) -> None:
    """``renameat2(src_dir, src, dst_dir, dst, RENAME_NOREPLACE)``; OSError as the kernel says."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.renameat2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(src_dir, os.fsencode(src), dst_dir, os.fsencode(dst), RENAME_NOREPLACE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _replay(root: Root, src: str, dest: str) -> str | None:
    """Rename *src* to *dest* under the root (both checked against the manifest already); a problem or None."""
    sdir, sname = os.path.split(src)
    ddir, dname = os.path.split(dest)
    try:
        sfd = open_dir_nofollow(root.path, sdir)
    except OSError as exc:
        return f"the directory above {src} cannot be reached without a symlink ({exc.strerror})"
    try:
        try:
            dfd = open_dir_nofollow(root.path, ddir)
        except OSError as exc:
            return f"the directory above {dest} does not exist on this slave or is behind a symlink ({exc.strerror})"
        try:
            try:
                st = os.lstat(sname, dir_fd=sfd)
            except OSError:
                return f"{src} does not exist on this slave"
            if not stat.S_ISDIR(st.st_mode):
                return f"{src} is not a directory on this slave"
            try:
                _rename_noreplace(sfd, sname, dfd, dname)
            except OSError as exc:
                if exc.errno == errno.EEXIST:
                    return f"{dest} already exists on this slave"
                return f"renaming {src} to {dest} failed: {exc.strerror}"
            for fd in {sfd, dfd}:        # the rename is on disk before the push goes on
                try:
                    os.fsync(fd)
                except OSError:
                    pass
            return None
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def apply_moves(root: Root, moves: list[tuple[str, str]]) -> tuple[str | None, list[tuple[str, str]]]:
    """Rename each ``(src, dest)`` directory in order; ``(problem, done)``: the first refusal (nothing after it
    is renamed) and the renames made."""
    from hotsync_events.sync.lists import PEER_DIR
    from hotsync_events.sync.peercopy import manifest

    tops = [t for t in manifest(root.join(PEER_DIR)) or [] if isinstance(t, str) and _clean(t)]
    if not tops:
        return "this slave holds no manifest of the master's paths yet", []
    done: list[tuple[str, str]] = []
    for src, dest in moves:
        problem = _path_problem(src, tops) or _path_problem(dest, tops)
        if problem is None and (dest == src or dest.startswith(src.rstrip("/") + "/")):
            problem = f"{dest} is inside {src}"
        if problem is None:
            try:
                problem = _replay(root, src, dest)
            except (OSError, ValueError) as exc:
                problem = f"renaming {src} to {dest} failed: {exc}"
        if problem is not None:
            return f"the rename of {src} to {dest} was not replayed: {problem}", done
        done.append((src, dest))
    return None, done
