"""What any local user may read of this host's sync state (``/var/lib/hotsync/status.public.json``, 0644).

The status file, the logs and the config database are root's (security.md: they name files, they hold the
password). A user without administrative access (Cockpit's read-only view, a monitoring agent that does
not run as root) still needs to know whether the pair is healthy. So each time the status file changes,
this snapshot of what ``hotsync status`` shows is written beside it, keeping only what names no file and
no secret: the role and state, the peer's address, the fingerprints (public by nature), when runs started
and ended with their result and counts, whether a master was fenced or a slave promoted and when, the
real-time notifier's state. No message, no detail, no path, no mail address.

``hotsync status`` run by a user who cannot read root's state reads this snapshot instead, recomputes the
copy's age and the health for the moment it is read, and says ``"limited": true``.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator

from hotsync_events.childproc import alive
from hotsync_events.fsutil import atomic_write
from hotsync_events.paths import Root

__all__ = ["PUBLIC_FILE", "limited_info", "project", "read_public", "write_public", "write_public_later"]

#: host path of the snapshot: beside the private state dir (``sync/``, 0700 on a slave), never shipped
PUBLIC_FILE = "/var/lib/hotsync/status.public.json"
_RUN = ("start", "end", "result", "files", "bytes", "deleted", "changes", "exit_status", "exit_code", "kind")
_PLAIN = ("role", "status", "peer", "epoch", "fingerprint", "peer_fingerprint", "master_fingerprint", "pairing",
          "interval_minutes", "realtime_wanted", "next_run")


def _pick(d, keys) -> dict | None:
    return {k: d[k] for k in keys if k in d} if isinstance(d, dict) else None


def project(info: dict) -> dict:
    """The public part of a :func:`hotsync_events.sync.report.collect` dict."""
    out: dict = {k: info.get(k) for k in _PLAIN}
    for k in ("last_run", "last_success", "last_full"):
        out[k] = _pick(info.get(k), _RUN)
    out["running"] = _pick(info.get("running"), ("start",))
    out["last_error"] = _pick(info.get("last_error"), ("time",))
    out["fenced"] = _pick(info.get("fenced"), ("time", "epoch", "by", "promoted"))
    out["promote"] = _pick(info.get("promote"), ("time", "epoch", "data_age", "last_complete_sync", "forced",
                                                 "duration"))
    out["fence"] = _pick(info.get("fence"), ("epoch", "time"))
    out["awaiting_person"] = bool(info.get("awaiting_person"))
    out["unclean"] = len(info.get("unclean") or [])
    out["peer_refused"] = bool(info.get("peer_refused"))
    rt = info.get("realtime")
    out["realtime"] = None if not isinstance(rt, dict) else {
        "pid": rt.get("pid"), "alive": rt.get("alive"), "queued_paths": rt.get("queued_paths"),
        "last_push": _pick(rt.get("last_push"), ("at", "ok", "seconds")),
        "last_ok": _pick(rt.get("last_ok"), ("at",))}
    out["written"] = time.time()
    return out


def _path(root: Root):
    return root.join(PUBLIC_FILE)


def write_public(root: Root, locked: Callable[[], object] | None = None) -> None:
    """Rewrite the snapshot from what ``hotsync status`` would show now. Never fails its caller: a snapshot
    that cannot be written is an older one (or none), which ``hotsync status`` says by its time."""
    try:
        from hotsync_events.sync.report import collect

        with _writer(root):       # in turn with the detached writers: the last to write read the newest state
            if locked is not None:
                locked()
            atomic_write(_path(root), json.dumps(project(collect(root)), sort_keys=True) + "\n", mode=0o644)
    except Exception:  # the push or the session that changed the status must not fail for this
        pass


def _lock_file(root: Root, name: str) -> int:
    """An open descriptor of the snapshot writers' lock *name* (``public.queue.lock``, ``public.write.lock``)."""
    lockdir = root.join("/run/hotsync")
    lockdir.mkdir(parents=True, exist_ok=True)
    return os.open(lockdir / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


@contextlib.contextmanager
def _writer(root: Root) -> Iterator[None]:
    import fcntl

    fd = _lock_file(root, "public.write.lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_public_later(root: Root) -> None:
    """:func:`write_public` in a detached child, for a caller whose exit something waits for (the slave's rsync
    daemon hooks: a push waits for its pre-xfer hook, the next push for the last one's post-xfer). Gathering
    what ``hotsync status`` shows costs more than the hook's own work.

    The snapshot stays ordered: children take a writer lock in turn and each reads the status it projects
    only once it holds it; a child that finds another already queued for the lock leaves (that one will read
    a state at least as new), so a burst of sessions costs one or two snapshots, not one each. A process with
    threads (the notifier, which runs full syncs too) writes it itself: a fork would copy locks its other
    threads may hold."""
    import sys

    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        write_public(root)
        return
    try:
        pid = os.fork()
    except OSError:
        write_public(root)
        return
    if pid:
        try:
            os.waitpid(pid, 0)    # the intermediate child exits at once: no zombie is left to the caller
        except OSError:
            pass
        return
    try:
        # nothing of the caller's is kept open: the sync's lock (whose flock a child would hold on), the hooks'
        # channel, sockets. The copied objects that own them are never freed here (no cycle collection; the
        # child ends with os._exit), so no stale close can hit a descriptor this child opens
        import gc

        gc.disable()
        os.closerange(3, 1 << 16)
        if os.fork():              # the intermediate exits; the grandchild belongs to no one who waits for it
            os._exit(0)
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):       # the daemon reads the hook's output until every holder closed it
            os.dup2(null, fd)
        import fcntl

        queue = _lock_file(root, "public.queue.lock")
        try:
            fcntl.flock(queue, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os._exit(0)            # one is queued already: it will read the status after this change
        # the next change may queue a child of its own once this one holds the writer lock
        write_public(root, locked=lambda: os.close(queue))
    finally:
        os._exit(0)


def read_public(root: Root) -> dict | None:
    try:
        data = json.loads(_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def limited_info(root: Root, now: float | None = None) -> dict | None:
    """``hotsync status --json`` for a user who cannot read root's state: the snapshot, its copy age and
    health recomputed now (the reasons carry no message). None: there is no snapshot yet."""
    from hotsync_events.sync.health import assess, copy_age

    snap = read_public(root)
    if snap is None:
        return None
    now = time.time() if now is None else now
    info = dict(snap, root=str(root.path), root_exists=True, time=now, limited=True)
    info["awaiting_person"] = ("a first push waits for a person (details: hotsync status as root)"
                               if snap.get("awaiting_person") else None)
    info["unclean"] = [{}] * int(snap.get("unclean") or 0)
    rt = info.get("realtime")
    if rt and rt.get("pid") is not None:
        info["realtime"] = dict(rt, alive=bool(rt.get("alive")) and alive(rt["pid"]))
    info["copy_age"] = copy_age(info, now)
    info["health"] = assess(info, now)
    return info
