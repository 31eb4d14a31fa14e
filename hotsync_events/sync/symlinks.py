"""The replica's symbolic links: stored munged on a slave, written back as the master had them at a promote.

The slave's rsync daemon writes its data module chrooted in the slave's root, where the chroot confines
nothing, and rsync then follows a link a push stored wherever a later session's path goes through it: its
destination, the deletion of a listed name whose directory is not in the list, the partial directory of
``--delay-updates``. A client holding the master's key and password wrote ``/etc/crontab`` and deleted the
fence record that way (a reviewer's attacks; ``tests/test_trust.py`` runs them). So the data module munges
links (``munge symlinks = yes``): each is stored as ``/rsyncd-munged/<target>``, which leads nowhere, rsync
compares and updates them in that form, and nothing on a slave follows them. A promote writes every link
back as the master had it (:func:`unmunge`), before the databases and the plugins' steps; a link that was
on the slave before this version is munged once when the listener starts (:func:`munge`).
"""
from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator

from hotsync_events.paths import Root

__all__ = ["MUNGED", "MUNGED_MARK", "munge", "unmunge"]

#: rsync's prefix of a munged link's target
MUNGED = "/rsyncd-munged/"
#: written once this host's links were munged (the listener's first start after an upgrade)
MUNGED_MARK = "/var/lib/hotsync/sync/links-munged"
#: HotSync's own area a push writes besides the manifest's paths
DUMPS = "/var/lib/hotsync/dumps"


def _links(top: str) -> Iterator[tuple[int, str, str]]:
    """Every symbolic link at or under *top*, as ``(directory fd, name, host-side path)``: each directory is
    opened from its parent without following a link (``O_NOFOLLOW``), so a directory swapped for a link
    meanwhile is not entered; the fd is valid until the next item."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    parent, name = os.path.split(top.rstrip("/") or "/")
    try:
        pfd = os.open(parent or "/", flags)
    except OSError:
        return
    try:
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False) if name else os.fstat(pfd)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            yield pfd, name, top
            return
        if not stat.S_ISDIR(st.st_mode):
            return
        stack = [(os.open(name, flags, dir_fd=pfd) if name else os.dup(pfd), top)]
    finally:
        os.close(pfd)
    while stack:
        fd, path = stack.pop()
        try:
            with os.scandir(fd) as it:
                entries = [(e.name, e.is_symlink(), e.is_dir(follow_symlinks=False)) for e in it]
            for entry, is_link, is_dir in entries:
                if is_link:
                    yield fd, entry, os.path.join(path, entry)
                elif is_dir:
                    with contextlib.suppress(OSError):    # gone, or swapped for a link: not entered
                        stack.append((os.open(entry, flags, dir_fd=fd), os.path.join(path, entry)))
        finally:
            os.close(fd)


def _relink(fd: int, name: str, target: str) -> None:
    """Replace link *name* in directory *fd* by one to *target*, atomically, with the old link's owner and
    times."""
    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    tmp = f".hotsync-link.{os.getpid()}.{os.urandom(6).hex()}"
    os.symlink(target, tmp, dir_fd=fd)
    try:
        os.chown(tmp, st.st_uid, st.st_gid, dir_fd=fd, follow_symlinks=False)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=fd, follow_symlinks=False)
        os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=fd)
        raise


def _rewrite(root: Root, paths: Iterable[str], change: Callable[[str], str | None],
             log: Callable[[str], None]) -> tuple[int, list[str]]:
    done, errors = 0, []
    for p in sorted({*paths, DUMPS}):
        for fd, name, link in _links(str(root.join(p))):
            try:
                new = change(os.readlink(name, dir_fd=fd))
                if new is not None:
                    _relink(fd, name, new)
                    done += 1
            except OSError as exc:
                errors.append(f"{root.host_path(link)}: {exc.strerror or exc}")
    for e in errors[:20]:
        log(f"links: cannot rewrite {e}")
    return done, errors


def unmunge(root: Root, paths: Iterable[str], log: Callable[[str], None] = print) -> tuple[int, list[str]]:
    """Write every munged link under the host *paths* (and the dumps) back as the master had it:
    ``(links rewritten, errors)``."""
    return _rewrite(root, paths, lambda t: t[len(MUNGED):] if t.startswith(MUNGED) else None, log)


def munge(root: Root, paths: Iterable[str], log: Callable[[str], None] = print) -> tuple[int, list[str]]:
    """Store every link under the host *paths* (and the dumps) munged, as the daemon now writes them."""
    return _rewrite(root, paths, lambda t: None if t.startswith(MUNGED) else MUNGED + t, log)


def migrate(root: Root, log: Callable[[str], None] = print) -> int | None:
    """On an enabled, unfenced slave, munge the links its copy holds from before (an upgrade from a version
    that stored them as they are, or a host that was a master before this pairing), once per pairing: the
    links munged, or None when there was nothing to do."""
    import json

    from hotsync_events.configdb import open_db
    from hotsync_events.fsutil import atomic_write
    from hotsync_events.sync.fence import fence_record, read_epoch
    from hotsync_events.sync.lists import PEER_DIR
    from hotsync_events.sync.peercopy import manifest

    try:
        db = open_db("configuration", root, validate=False, initialise=False, journal=False)
        h = db.props("hotsync") if "hotsync" in db else {}
    except Exception:     # no configuration: not a slave yet
        return None
    if h.get("role") != "slave" or fence_record(root) is not None:
        return None
    pairing = json.dumps({"epoch": read_epoch(root), "master": h.get("MasterHost", ""),
                          "pin": h.get("MasterFingerprint", "")}, sort_keys=True)
    mark = root.join(MUNGED_MARK)
    try:
        if mark.read_text(encoding="utf-8") == pairing:
            return None
    except OSError:
        pass
    done, errors = munge(root, manifest(root.join(PEER_DIR)) or [], log)
    if not errors:
        mark.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(mark, pairing)
    log(f"links: {done} stored munged (docs/security.md)" + (f"; {len(errors)} could not be" if errors else ""))
    return done
