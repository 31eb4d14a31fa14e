"""The replica's symbolic links: stored munged on a slave, written back as the master had them at a promote.

The slave's rsync daemon writes its data module chrooted in the slave's root, where the chroot confines
nothing, and rsync then follows a link a push stored wherever a later session's path goes through it: its
destination, the deletion of a listed name whose directory is not in the list, the partial directory of
``--delay-updates``. A client holding the master's key and password wrote ``/etc/crontab`` and deleted the
fence record that way (reviewers' attacks; ``tests/test_trust.py`` runs them). So the data module munges
links (``munge symlinks = yes``): each is stored as ``/rsyncd-munged/<target>``, which leads nowhere
(``/rsyncd-munged/`` is a refused area, and the pre-xfer hook refuses a session while it exists), rsync
compares and updates them in that form, and nothing on a slave follows them.

* :func:`migrate`, before the first session of a pairing and again whenever the manifest changes (the
  listener's start and the pre-xfer hook), munges the links the slave already holds under the shipped paths
  (an upgrade from a version that stored them as they are, a host that was a master, the slave's own links
  in a newly shipped directory), but for the refused areas inside them, which no push writes.
* :func:`unmunge`, the promote's ``links`` phase, writes every link back as the master had it.
* :func:`link_on_the_way`: a shipped path that lies under a link of the slave itself (``/var/run -> ../run``)
  would be written where the link leads; the pre-xfer hook refuses the session.

Every walk opens each directory from its parent without following a link (``O_NOFOLLOW``), starting at the
root, holds one descriptor per level, and reports every error but a name that went away.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator

from hotsync_events.fsutil import open_dir_nofollow
from hotsync_events.paths import Root
from hotsync_events.sync.policy import norm_path, refusal_of

__all__ = ["MUNGED", "MUNGED_MARK", "link_on_the_way", "migrate", "munge", "unmunge"]

#: rsync's prefix of a munged link's target
MUNGED = "/rsyncd-munged/"
#: what the slave's links were last munged for (its pairing and manifest); a session waits for a match
MUNGED_MARK = "/var/lib/hotsync/sync/links-munged"
#: HotSync's own area a push writes besides the manifest's paths
DUMPS = "/var/lib/hotsync/dumps"
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_GONE = (errno.ENOENT, errno.ENOTDIR)


def _tops(paths: Iterable[str]) -> list[str]:
    """The host paths to walk: normalised, each once, none inside another (a link is rewritten once)."""
    out: list[str] = []
    for p in sorted({norm_path(p) for p in paths if isinstance(p, str) and p.startswith("/") and ".." not in p.split("/")}):
        if not any(p == o or p.startswith(o.rstrip("/") + "/") for o in out):
            out.append(p)
    return out


def _open_parent(root: Root, host: str) -> tuple[int, str]:
    """``(fd of the directory holding host path *host*, its last component)``, every component opened from
    the root without following a link: OSError (ELOOP, ENOTDIR) when one is a link or not a directory."""
    parts = [p for p in host.split("/") if p]
    return open_dir_nofollow(root.path, "/".join(parts[:-1])), (parts[-1] if parts else ".")


def link_on_the_way(root: Root, paths: Iterable[str]) -> str | None:
    """The first shipped host path that lies under a link of this host (or is reached through a non-directory),
    with that link, or None. A missing component is fine: rsync makes it a directory."""
    for p in _tops(paths):
        parts = [x for x in p.split("/") if x]
        here = str(root.path)
        for i, part in enumerate(parts[:-1]):
            here = os.path.join(here, part)
            try:
                st = os.lstat(here)
            except FileNotFoundError:
                break
            if stat.S_ISLNK(st.st_mode):
                return f"{p} lies under the link {'/' + '/'.join(parts[:i + 1])} -> {os.readlink(here)}"
            if not stat.S_ISDIR(st.st_mode):
                break
    return None


def _links(root: Root, host: str, errors: list[str]) -> Iterator[tuple[int, str, str]]:
    """Every symbolic link at or under host path *host* that a push may write (not in a refused area, not a
    partial directory's), as ``(directory fd, name, host path)``; the fd is valid until the next item. Errors
    (but for names that went away) are appended to *errors*."""
    if refusal_of(host) is not None:
        return
    try:
        pfd, name = _open_parent(root, host)
    except OSError as exc:      # gone, or a file on the way, holds nothing; a link on the way is not walked
        if exc.errno == errno.ELOOP:     # through, and said
            errors.append(f"{host}: a link on the way ({exc.strerror or exc})")
        elif exc.errno not in _GONE:
            errors.append(f"{host}: {exc.strerror or exc}")
        return
    try:
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in _GONE:
                errors.append(f"{host}: {exc.strerror or exc}")
            return
        if stat.S_ISLNK(st.st_mode):
            yield pfd, name, host
            return
        if not stat.S_ISDIR(st.st_mode):
            return
        top = os.open(name, _DIR, dir_fd=pfd)
    finally:
        os.close(pfd)
    # depth first, one open directory per level: (fd, host path, entries left)
    stack: list[tuple[int, str, list[tuple[str, bool, bool]]]] = []

    def enter(fd: int, path: str) -> None:
        try:
            with os.scandir(fd) as it:
                entries = [(e.name, e.is_symlink(), e.is_dir(follow_symlinks=False)) for e in it]
        except OSError as exc:
            os.close(fd)
            errors.append(f"{path}: {exc.strerror or exc}")
            return
        stack.append((fd, path, entries[::-1]))

    enter(top, host)
    while stack:
        fd, path, entries = stack[-1]
        if not entries:
            os.close(fd)
            stack.pop()
            continue
        entry, is_link, is_dir = entries.pop()
        where = path.rstrip("/") + "/" + entry
        if entry == ".hotsync-partial" or refusal_of(where) is not None:
            continue
        if is_link:
            yield fd, entry, where
        elif is_dir:
            try:
                enter(os.open(entry, _DIR, dir_fd=fd), where)
            except OSError as exc:
                if exc.errno not in (*_GONE, errno.ELOOP):    # gone, or swapped for a link: not entered
                    errors.append(f"{where}: {exc.strerror or exc}")


def _relink(fd: int, name: str, target: str) -> None:
    """Replace link *name* in directory *fd* by one to *target*, atomically, with the old link's owner and
    times, and the directory's times as they were."""
    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    dst = os.fstat(fd)
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
    os.utime(fd, ns=(dst.st_atime_ns, dst.st_mtime_ns))


def _rewrite(root: Root, paths: Iterable[str], change: Callable[[str], str | None],
             log: Callable[[str], None]) -> tuple[int, list[str]]:
    done = 0
    errors: list[str] = []
    for top in _tops([*paths, DUMPS]):
        for fd, name, link in _links(root, top, errors):
            try:
                new = change(os.readlink(name, dir_fd=fd))
                if new is not None:
                    _relink(fd, name, new)
                    done += 1
            except OSError as exc:
                if exc.errno not in _GONE:
                    errors.append(f"{link}: {exc.strerror or exc}")
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


def _token(root: Root, props: dict | None, includes: list[str] | None) -> tuple[str, list[str]] | None:
    """``(what the links must be munged for, the shipped paths)`` on an enabled, unfenced slave, else None;
    *props* (the ``hotsync`` record) and *includes* (the manifest's) are read when not given."""
    import json

    from hotsync_events.sync.fence import fence_record, read_epoch
    from hotsync_events.sync.lists import PEER_DIR
    from hotsync_events.sync.peercopy import manifest

    if props is None:
        from hotsync_events.configdb import open_db

        try:
            db = open_db("configuration", root, validate=False, initialise=False, journal=False)
            props = db.props("hotsync") if "hotsync" in db else {}
        except Exception:     # no configuration: not a slave yet
            return None
    if props.get("role") != "slave" or fence_record(root) is not None:
        return None
    if includes is None:
        includes = manifest(root.join(PEER_DIR)) or []
    return json.dumps({"epoch": read_epoch(root), "master": props.get("MasterHost", ""),
                       "pin": props.get("MasterFingerprint", ""), "paths": _tops(includes)}, sort_keys=True), includes


def migrate(root: Root, log: Callable[[str], None] = print, *, props: dict | None = None,
            includes: list[str] | None = None) -> str | None:
    """On an enabled, unfenced slave whose links were not munged yet for its pairing and manifest, munge
    them (a link that cannot be rewritten is logged, and does not hold the pair back). None, or why a data
    session must wait. *props* and *includes*: the ``hotsync`` record and the manifest's paths, when the
    caller has read them already."""
    from hotsync_events.fsutil import atomic_write

    token = _token(root, props, includes)
    if token is None:
        return None
    mark = root.join(MUNGED_MARK)
    try:
        if mark.read_text(encoding="utf-8") == token[0]:
            return None
    except OSError:
        pass
    done, errors = munge(root, token[1], log)
    mark.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(mark, token[0])
    log(f"links: {done} stored munged (docs/security.md)" + (f"; {len(errors)} could not be" if errors else ""))
    return None
