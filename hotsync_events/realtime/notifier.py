"""The watchdog notifier: inotify watches on the synced paths feed a dirty set that is pushed at once.

``hotsync watch`` (and ``hotsync daemon``) run a :class:`Notifier`. It owns

* one watchdog observer whose emitters ask the kernel for a narrow event mask only — closed after
  writing, created, deleted, moved, attributes — so a burst of writes does not flood (and overflow)
  the kernel queue with IN_MODIFY/IN_OPEN noise, and reads cost nothing;
* an event handler that turns each event into a host path (``/srv/x/f``), drops excluded paths and
  the notifier's own files, and hands it to the :class:`~hotsync_events.realtime.debounce.Trigger`;
* one worker thread that runs the batches the trigger hands out through a ``pusher`` callable
  (``pusher(paths)``: a list of host paths for an incremental ``--files-from`` push, None for a full
  sync) and writes the status file ``hotsync status`` shows.

Falls back to a full sync (see the trigger) on a kernel queue overflow (counted here, from the inotify
fd itself: watchdog only logs it), when watches were rebuilt, when a directory was renamed or moved
in, and when a synced path that was missing appears. The pusher is the sync library's
(:mod:`hotsync_events.realtime.wiring` wires it); tests can give any callable.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from watchdog.events import (DirAttribEvent, DirCreatedEvent, DirDeletedEvent, DirMovedEvent,
                             FileAttribEvent, FileClosedEvent, FileCreatedEvent, FileDeletedEvent,
                             FileMovedEvent, FileSystemEvent, FileSystemEventHandler)
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.inotify import InotifyFullEmitter
from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent, InotifyFD, Mask, WatchDescriptor

from hotsync_events.realtime.debounce import Trigger
from hotsync_events.realtime.heartbeat import Heartbeat
from hotsync_events.realtime.settings import DEFAULTS
from hotsync_events.fsutil import atomic_write
from hotsync_events.sync.excludes import ExcludeMatcher
from hotsync_events.sync.notifier_status import STATUS_FILE, read_status, status_lines
from hotsync_events.paths import Root

__all__ = ["EVENT_MASK", "ExcludeMatcher", "Notifier", "PushResult", "STATUS_FILE", "read_status",
           "status_lines"]

log = logging.getLogger("hotsync.notifier")

#: what the kernel reports: no IN_MODIFY (one per write(2)), no IN_OPEN / IN_CLOSE_NOWRITE (reads)
EVENT_MASK = Mask(InotifyConstants.IN_CLOSE_WRITE | InotifyConstants.IN_CREATE | InotifyConstants.IN_DELETE
                  | InotifyConstants.IN_DELETE_SELF | InotifyConstants.IN_MOVE | InotifyConstants.IN_ATTRIB)
#: how long a clean stop waits for the events of the last changes before it takes the last push
LAST_EVENTS = 0.3
#: batches the last push may take (one, and the plain batch of the directories it kept apart)
LAST_BATCHES = 3
#: the handler's own filter (watchdog also derives DirModified events, which say nothing new)
_WANTED = (FileClosedEvent, FileCreatedEvent, DirCreatedEvent, FileDeletedEvent, DirDeletedEvent,
           FileMovedEvent, DirMovedEvent, FileAttribEvent, DirAttribEvent)
_WANTED_TYPES = frozenset(_WANTED)


class PushResult(NamedTuple):
    """What a pusher returns. ``unreachable``: the slave could not be reached (only changes the text)."""

    ok: bool
    error: str = ""
    unreachable: bool = False


#: ``pusher(paths)``: the paths, or None for a full sync. A pusher whose ``replays_moves`` attribute is true
#: also takes ``moves=[(src, dest), ...]``: directories renamed, to rename on the slave before the paths. One
#: whose ``sends_whole_dirs`` is true takes ``recursive=True``: the listed directories are new, to be sent whole.
Pusher = Callable[..., PushResult]


# ------------------------------------------------------------------------------------ watchdog glue
class _FD(InotifyFD):
    """watchdog's inotify fd thread, telling us about a queue overflow (watchdog itself only logs it
    and rebuilds its watches; no event reaches a handler)."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__()
        self._on_overflow = on_overflow

    def handle_event(self, event: InotifyEvent) -> None:
        if event.is_queue_overflow:
            self._on_overflow()
        super().handle_event(event)


class _Emitter(InotifyFullEmitter):
    """Full emitter (unmatched moves stay moves, so "moved in" is told apart from "created") with the
    narrow kernel mask; watchdog's own filter mapping has no way to ask for IN_ATTRIB without IN_MODIFY.

    It hands each event it built straight to the notifier (*on_event*, in this emitter's thread), not to
    watchdog's queue and observer thread: one thread hand-off less per event, about a third of the notifier's
    CPU in a burst of new files (bench/breakdown.py). The notifier's state is guarded by its own lock."""

    def __init__(self, *args, on_event: Callable[[FileSystemEvent], None], on_error: Callable[[], None],
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._on_event, self._on_error = on_event, on_error

    def get_event_mask_from_filter(self) -> Mask:
        return EVENT_MASK

    def queue_event(self, event: FileSystemEvent) -> None:
        # only the kinds the notifier takes: watchdog derives a DirModified event from every creation,
        # deletion and move, half of what a burst of new files makes
        if type(event) in _WANTED_TYPES:
            try:
                self._on_event(event)
            except Exception:     # a bug must not end this watch's thread: logged, and a full sync covers it
                log.exception("the notifier could not take %r", event)
                self._on_error()


class _Observer(BaseObserver):
    def __init__(self, on_overflow: Callable[[], None], on_event: Callable[[FileSystemEvent], None],
                 on_error: Callable[[], None]) -> None:
        self._inotify_fd = _FD(on_overflow)
        self._inotify_fd.start()
        super().__init__(_Emitter, timeout=1.0, inotify_fd=self._inotify_fd, on_event=on_event, on_error=on_error)

    def on_thread_stop(self) -> None:
        super().on_thread_stop()
        self._inotify_fd.stop()
        self._inotify_fd.join(timeout=5)


# ------------------------------------------------------------------------------------------ notifier
@dataclass
class _WatchRoot:
    host: str          # as on the host: /srv/data
    real: str          # under the root: /tmp/r/srv/data
    watch: ObservedWatch | None = None


class _Handler(FileSystemEventHandler):
    """What watchdog's schedule() wants; the emitters hand the events to the notifier themselves (_Emitter)."""

    def dispatch(self, event: FileSystemEvent) -> None:
        pass


class Notifier:
    """Watches ``includes`` (host paths) under ``root`` and pushes what changes through ``pusher``.

    ``start()`` sets the watches up, then queues a full sync (changes made while nothing watched
    must reach the slave too), then starts the worker. ``stop()`` ends it; both are idempotent.
    """

    def __init__(self, root: Root, includes: Iterable[str], excludes: Iterable[str], pusher: Pusher, *,
                 settle: float = DEFAULTS.settle, max_batch: int = DEFAULTS.max_batch,
                 retry_min: float = DEFAULTS.retry_min, retry_max: float = DEFAULTS.retry_max, mailer: Callable[[str, str], None] | None = None,
                 initial_full: bool = True, status_interval: float = 1.0, rescan_interval: float = 5.0,
                 ignore: Iterable[str] = (), stop_push: float = DEFAULTS.stop_push,
                 unwalked: Iterable[str] = (), beat: float = DEFAULTS.beat) -> None:
        self.root = root
        self.stop_push = stop_push        # seconds the last push at a clean stop may take (0: none)
        self.last_stop: dict | None = None
        self.pusher = pusher
        self.mailer = mailer
        self.initial_full = initial_full
        self.status_interval = status_interval
        self.rescan_interval = rescan_interval
        self.trigger = Trigger(settle=settle, max_batch=max_batch, retry_min=retry_min, retry_max=retry_max,
                               whole_dirs=bool(getattr(pusher, "sends_whole_dirs", False)))
        self.excludes = ExcludeMatcher(excludes)
        self._prefix = str(root.path).rstrip("/")
        self.status_path = root.run_dir / STATUS_FILE
        self._ignore = tuple(sorted(set(ignore) | {root.host_path(root.run_dir), root.host_path(root.log_dir)}))
        # a directory that holds one of these (the full sync's alone) is never sent whole
        self._unwalked = tuple(p.rstrip("/") for p in unwalked)
        self._roots = self._plan(includes)
        self._cond = threading.Condition()     # guards the trigger; never held while (un)scheduling
        self._watch_lock = threading.Lock()    # guards the watches (watchdog's lock is taken inside)
        self._stop = threading.Event()
        self._observer: _Observer | None = None
        self._worker: threading.Thread | None = None
        self._status_at = 0.0
        self._status_dirty = True
        self._warm = False      # the pusher was asked to start the coming batch's connection
        self.heartbeat = Heartbeat(pusher, beat, on_beat=self._dirty)
        self.started_at = time.time()

    # ------------------------------------------------------------------------------ plan & watches
    def _plan(self, includes: Iterable[str]) -> list[_WatchRoot]:
        """One watch per include, nested includes dropped (the outer watch sees them)."""
        hosts = sorted({os.path.normpath("/" + p.strip().lstrip("/")) for p in includes if p.strip()})
        kept: list[str] = []
        for h in hosts:
            if not any(h == k or h.startswith(k.rstrip("/") + "/") for k in kept):
                kept.append(h)
        return [_WatchRoot(h, str(self.root.join(h))) for h in kept]

    def _schedule_missing(self) -> int:
        """Watch every planned root that exists and is not watched yet; the count of new watches."""
        observer = self._observer
        assert observer is not None     # start() made it (the callers hold _watch_lock)
        added = 0
        for wr in self._roots:
            if wr.watch is not None:
                emitter = observer._emitter_for_watch.get(wr.watch)
                if emitter is not None and emitter.is_alive() and os.path.lexists(wr.real):
                    continue
                self._unschedule(wr)
            if not os.path.lexists(wr.real) or os.path.islink(wr.real):
                continue
            try:
                wr.watch = observer.schedule(_Handler(), wr.real, recursive=os.path.isdir(wr.real))
                added += 1
            except OSError as exc:
                log.warning("cannot watch %s: %s", wr.host, exc)
        return added

    def _unschedule(self, wr: _WatchRoot) -> None:
        if wr.watch is not None:
            assert self._observer is not None   # a watch is only set while the observer runs
            try:
                self._observer.unschedule(wr.watch)
            except (KeyError, RuntimeError):
                pass
            wr.watch = None

    def watched_dirs(self) -> int:
        """Directories with an inotify watch now."""
        total = 0
        if self._observer is not None:
            for emitter in list(self._observer.emitters):
                group = getattr(emitter, "_inotify", None)
                total += len(getattr(group, "_active_callbacks_by_watch", ()) or ())
        return total

    # --------------------------------------------------------------------------------- lifecycle
    def start(self) -> Notifier:
        if self._observer is not None:
            return self
        self._observer = _Observer(self._overflowed, self._on_event,
                                   lambda: self._full("the notifier could not take an event (see its log)"))
        self._observer.start()
        with self._watch_lock:
            self._schedule_missing()
        with self._cond:
            if self.initial_full:
                self.trigger.need_full("the notifier started")
        self._worker = threading.Thread(target=self._run, name="hotsync-notifier", daemon=True)
        self._worker.start()
        self.heartbeat.start()
        return self

    def stop(self, timeout: float = 30.0, last_push: float | None = None) -> None:
        """End the notifier. A clean stop first pushes what changed since the last push (the last push),
        bounded by *last_push* seconds (None: the notifier's ``stop_push``; 0: no last push), and records
        it in the status (:meth:`_last_push`)."""
        limit = self.stop_push if last_push is None else last_push
        started = self._observer is not None and not self._stop.is_set()
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)
        if started and limit > 0 and (self._worker is None or not self._worker.is_alive()):
            time.sleep(LAST_EVENTS)        # the events of changes made just before the stop reach the trigger
        with self._watch_lock:
            if self._observer is not None:
                self._observer.stop()
                self._observer.join(timeout=10)
                self._observer = None
        if started and limit > 0 and (self._worker is None or not self._worker.is_alive()):
            self._last_push(limit)
        self._call_pusher("cool")
        self.heartbeat.stop(last=started)
        self._write_status(final=True)

    def _last_push(self, limit: float) -> None:
        """Push whatever is pending now (no settle, no backoff), within *limit* seconds; the outcome is
        ``last_stop`` in the status file and in the sync's status (it outlives /run: a shutdown)."""
        t0 = time.monotonic()
        record: dict = {"at": time.time(), "paths": 0, "ok": True, "seconds": 0.0, "timed_out": False,
                        "error": "", "limit": limit}
        # a batch may leave directories for a plain batch right after it (whole directories): take them too
        for _ in range(LAST_BATCHES):
            with self._cond:
                if self.trigger.pending and time.monotonic() >= t0 + limit - min(1.0, limit / 10):
                    # (almost) no time left for another push: one started now would be killed mid-session
                    # when the process ends, leaving the slave a session that did not complete
                    record.update(ok=False, timed_out=True,
                                  error=f"the last push did not end within {limit:g} s: changes left for the "
                                        "next full sync")
                    break
                batch = self.trigger.take(at_once=True)
            if batch is None:
                break
            n = None if batch.paths is None else len(batch.paths)
            record["paths"] = None if n is None or record["paths"] is None else record["paths"] + n
            log.info("stopping: the last push (%s), within %.0f s", "a full sync" if n is None else f"{n} path(s)",
                     limit)
            box: list = []

            def push(batch=batch, box=box) -> None:
                try:
                    box.append(self._push(batch))
                except Exception as exc:   # reported like a failed push
                    box.append(PushResult(False, f"{type(exc).__name__}: {exc}"))
            t = threading.Thread(target=push, name="hotsync-last-push", daemon=True)
            t.start()
            t.join(max(0.0, t0 + limit - time.monotonic()))
            if not box:    # still running: the process ends, its rsync dies with it (die_with_parent)
                record.update(ok=False, timed_out=True, error=f"the last push did not end within {limit:g} s")
                break
            record.update(ok=box[0].ok, error=box[0].error)
            with self._cond:
                self.trigger.finish(box[0].ok, box[0].error)
            if not box[0].ok:
                break
        if record["paths"] != 0:
            record["seconds"] = round(time.monotonic() - t0, 3)
            (log.info if record["ok"] else log.warning)("stopping: the last push %s after %.3f s%s",
                                                         "succeeded" if record["ok"] else "FAILED",
                                                         record["seconds"], f": {record['error']}" if record["error"]
                                                         else "")
        self.last_stop = record
        try:
            from hotsync_events.sync.status import update_status

            update_status(self.root, lambda d: d.update(notifier_last_stop=record))
        except OSError as exc:
            log.warning("cannot record the last push in the sync status: %s", exc)

    def __enter__(self) -> Notifier:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def rebuild(self, reason: str = "the watches were rebuilt") -> None:
        """Drop and re-create every watch, then run a full sync (SIGHUP, a reload of the paths)."""
        with self._watch_lock:
            if self._observer is None:
                return
            for wr in self._roots:
                self._unschedule(wr)
            self._schedule_missing()
        self._full(reason)

    def inject_overflow(self) -> None:
        """Feed the inotify fd a kernel IN_Q_OVERFLOW event, as the kernel does when its queue is full
        (tests and diagnostics: the real path runs, watchdog rebuilds its watches, we fall back)."""
        assert self._observer is not None, "the notifier is not started"
        self._observer._inotify_fd.handle_event(
            InotifyEvent(WatchDescriptor(-1), InotifyConstants.IN_Q_OVERFLOW, 0, b""))

    # ---------------------------------------------------------------------------------- events
    def _overflowed(self) -> None:
        log.warning("inotify queue overflowed: the next push is a full sync")
        with self._cond:
            self.trigger.overflow()
            self._status_dirty = True
            self._cond.notify_all()

    def _host(self, path: str | bytes) -> str | None:
        path = os.fsdecode(path)
        if not path.startswith(self._prefix + "/"):
            return None                       # outside the root (watchdog #354) or empty
        host = path[len(self._prefix):]
        for ig in self._ignore:
            if host == ig or host.startswith(ig + "/"):
                return None
        return host

    def _in_roots(self, host: str) -> bool:
        return any(host == wr.host or host.startswith(wr.host.rstrip("/") + "/") for wr in self._roots)

    def _wanted(self, path: str | bytes, is_dir: bool) -> str | None:
        host = self._host(path)
        if host is None or not self._in_roots(host) or self.excludes.excluded(host, is_dir):
            return None
        return host

    def _on_event(self, event: FileSystemEvent) -> None:
        # only the _WANTED kinds come here: the emitter drops the others before watchdog's queue
        is_dir = event.is_directory
        if getattr(event, "is_synthetic", False):
            # watchdog's walk of a directory renamed or moved in: that directory already asked for a full
            # sync, which sees its whole content (and 2 x 10,000 more paths would only collapse again)
            return
        if isinstance(event, (FileMovedEvent, DirMovedEvent)):
            src = self._wanted(event.src_path, is_dir) if event.src_path else None
            dest = self._wanted(event.dest_path, is_dir) if event.dest_path else None
            if is_dir and dest is not None:
                if src is not None and self._move(src, dest):
                    return       # replayed as a rename on the slave (sync.moves)
                self._full("a directory was renamed" if event.src_path else "a directory was moved in")
                return
            paths = [p for p in (src, dest) if p is not None]
        else:
            if is_dir and os.fsdecode(event.src_path).rstrip("/") in {wr.real for wr in self._roots} \
                    and isinstance(event, DirDeletedEvent):
                self._full("a watched directory was deleted")   # its watch is gone: rebuild later
                return
            one = self._wanted(event.src_path, is_dir)
            paths = [one] if one is not None else []
        if not paths:
            return
        kind = self._kind(event, paths[0]) if is_dir else None
        self._status_dirty = True
        with self._cond:
            was_idle = not self.trigger.pending
            for p in paths:
                self.trigger.change(p, directory=kind)
            if was_idle:
                self._cond.notify_all()

    def _kind(self, event: FileSystemEvent, host: str) -> Literal["new", "old"] | None:
        """A directory made here may go whole ("new"); one that existed (its attributes changed), or one that
        holds a path only the full sync pushes, must not be walked ("old")."""
        if isinstance(event, DirCreatedEvent):
            prefix = host.rstrip("/") + "/"
            return "old" if any(u.startswith(prefix) for u in self._unwalked) else "new"
        return "old" if isinstance(event, DirAttribEvent) else None

    def _push(self, batch) -> PushResult:
        if batch.moves:
            return self.pusher(list(batch.paths or ()), moves=list(batch.moves))
        if batch.recursive:
            return self.pusher(list(batch.paths or ()), recursive=True)
        return self.pusher(None if batch.paths is None else list(batch.paths))

    def _move(self, src: str, dest: str) -> bool:
        """Queue the rename of directory *src* to *dest* for the slave; False when only a full sync will do."""
        if not getattr(self.pusher, "replays_moves", False) or self.excludes.depends_on(src, dest):
            return False
        self._status_dirty = True
        with self._cond:
            was_idle = not self.trigger.pending
            if not self.trigger.move(src, dest):
                return False
            if was_idle:
                self._cond.notify_all()
        return True

    def request_full(self, reason: str) -> None:
        """Make the next push a full sync."""
        self._full(reason)

    def _full(self, reason: str) -> None:
        with self._cond:
            self.trigger.need_full(reason)
            self._cond.notify_all()

    # ---------------------------------------------------------------------------------- worker
    def _run(self) -> None:
        next_rescan = time.monotonic() + self.rescan_interval
        while not self._stop.is_set():
            warm = False
            with self._cond:
                batch = self.trigger.take()
                if batch is None:
                    wait = self.trigger.due_in()
                    if wait is not None and wait > 0 and self.trigger.full_reason is None and not self.trigger.moves \
                            and not self.trigger.plain_next and not self._warm:
                        warm = self._warm = True     # start the push's connection during the settle window
                    else:
                        limit = self.status_interval if self._status_dirty else self.rescan_interval
                        self._cond.wait(limit if wait is None else min(wait, limit))
            if warm:
                self._call_pusher("warm")
                continue
            if batch is None:
                now = time.monotonic()
                if now >= next_rescan:
                    next_rescan = now + self.rescan_interval
                    self._rescan()
                if self._status_dirty and now - self._status_at >= self.status_interval:
                    self._write_status()
                continue
            self._warm = False
            if batch.paths is None:
                log.info("full sync: %s", batch.reason)
            else:
                log.debug("pushing %d path(s)", len(batch.paths))
            try:
                result = self._push(batch)
            except Exception as exc:   # a pusher bug must not end the notifier: retry with backoff
                log.exception("push failed")
                result = PushResult(False, f"{type(exc).__name__}: {exc}")
            self.heartbeat.touch()      # a push tells the slave as much as a heartbeat
            with self._cond:
                outcome = self.trigger.finish(result.ok, result.error)
                self._status_dirty = True
            if not result.ok:
                log.warning("push failed (%s); retry in %.1f s as a full sync", result.error, outcome.retry_in)
            if outcome.notice:
                self._mail(outcome.notice, result)
            if time.monotonic() - self._status_at >= self.status_interval:
                self._write_status()
        # a warm push's rsync dies with this thread (die_with_parent is per thread): end it cleanly here, the
        # last push at a clean stop starts its own
        self._call_pusher("cool")

    def _dirty(self) -> None:
        self._status_dirty = True

    def _call_pusher(self, method: str) -> None:
        fn = getattr(self.pusher, method, None)
        if fn is not None:
            try:
                fn()
            except Exception:   # an optimisation only: the push itself still runs
                log.exception("pusher.%s failed", method)

    def _rescan(self) -> None:
        """A synced path that was missing (or whose watch died) and exists now gets its watch, and a
        full sync covers what it held before the watch was there."""
        with self._watch_lock:
            added = self._schedule_missing() if self._observer is not None else 0
        if added:
            self._full("a synced path appeared or its watch was rebuilt")

    def _mail(self, notice: str, result: PushResult) -> None:
        if self.mailer is None:
            return
        if notice == "failed":
            subject = "hotsync: the real-time push to the slave is failing"
            body = ("The notifier could not push to the slave: " + (result.error or "unknown error") +
                    "\nIt retries with a growing delay and runs a full sync once the slave answers.\n")
        else:
            subject = "hotsync: the real-time push to the slave works again"
            body = "The notifier reached the slave again; a full sync brought it up to date.\n"
        try:
            self.mailer(subject, body)
        except Exception:   # mail is best effort; the status file still tells
            log.exception("could not send mail %r", subject)

    # ---------------------------------------------------------------------------------- status
    def status(self) -> dict:
        with self._cond:
            snap = self.trigger.snapshot()
        snap.update({"pid": os.getpid(), "updated": time.time(), "started": self.started_at,
                     "watched_dirs": self.watched_dirs(),
                     "watched_paths": [wr.host for wr in self._roots if wr.watch is not None],
                     "missing_paths": [wr.host for wr in self._roots if wr.watch is None],
                     "running_now": not self._stop.is_set(), "last_stop": self.last_stop,
                     "heartbeat": self.heartbeat.status()})
        return snap

    def _write_status(self, final: bool = False) -> None:
        self._status_at = time.monotonic()
        self._status_dirty = False
        data = self.status()
        if final:
            data["running_now"] = False
        try:
            atomic_write(self.status_path, json.dumps(data, indent=1, sort_keys=True) + "\n")
        except OSError as exc:
            log.warning("cannot write %s: %s", self.status_path, exc)
