"""The notifier wired to the sync: its settings, the paths it watches, and the pusher it runs.

* the settings -- :class:`~hotsync_events.realtime.settings.RealtimeSettings` (``hotsync realtime``,
  ``RealtimeSettle`` in ms, ``RealtimeMaxBatch``), read at start and followed by :class:`Background`.
* :func:`watch_lists` -- what to watch: the plugins' and the sysadmin's includes (the same
  :func:`~hotsync_events.sync.lists.build_lists` as every push, minus the plugins' ``realtime=False``
  paths) and what to ignore (the protected paths and every exclude).
* :class:`~hotsync_events.realtime.pusher.SyncPusher` -- the notifier's ``pusher`` (its own module): a
  list of paths as an incremental push with the sync's own options and guards, None as the full sync.
* :func:`start` -- a running :class:`~hotsync_events.realtime.notifier.Notifier`; :class:`Background` keeps
  one running in step with the configuration, for ``hotsync watch`` and ``hotsync daemon``.

"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import NamedTuple

from hotsync_events.configdb import open_db
from hotsync_events.realtime.notifier import Notifier
from hotsync_events.realtime.pusher import SyncPusher
from hotsync_events.paths import Root
from hotsync_events.realtime.settings import RealtimeSettings
from hotsync_events.sync.settings import Settings

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from hotsync_events.sync.lock import SyncLock

__all__ = ["Background", "RealtimeSettings", "WatchLists", "refusal", "signature", "start", "watch_lists"]

log = logging.getLogger("hotsync.notifier")


class WatchLists(NamedTuple):
    """What the notifier watches: ``includes``, the ``excludes`` whose events it drops, and the ``unwalked``
    paths (the plugins' ``realtime=False`` paths that lie in a watched include: ignored, and no directory
    that holds one is sent whole)."""

    includes: list[str]
    excludes: list[str]
    unwalked: list[str]


def watch_lists(root: Root, db, pm) -> WatchLists:
    """The notifier's :class:`WatchLists`; ListError names a bad list line."""
    from hotsync_events.sync.lists import PROTECTED, build_lists

    lists = build_lists(root, db, pm)
    batch_only = set()
    if pm is not None:
        for _plugin, sp in pm.collect("hotsync_sync_paths", db=db, root=root):
            if not sp.exclude and not sp.realtime:
                batch_only.add(os.path.normpath(sp.path))
    includes = [p for p in lists.includes if p not in batch_only]
    # a batch-only path inside a watched include: the full sync alone pushes it
    nested = sorted(b for b in batch_only if any(b.startswith(i.rstrip("/") + "/") for i in includes))
    return WatchLists(includes, [*PROTECTED, *lists.excludes, *nested], nested)


def refusal(root: Root, db=None, *, force: bool = False) -> str | None:
    """Why this root runs no notifier, from its configuration alone (not a master, a first push waiting
    for a person, real-time sync disabled), or None. Cheap: no plugin is asked, no lock is taken."""
    from hotsync_events.sync.push import awaiting_person

    if db is None:
        db = open_db("configuration", root, validate=False, initialise=False, journal=False)
    problem = Settings.from_db(db).master_problem() or awaiting_person(root)
    if problem:
        return problem
    if not force and not RealtimeSettings.from_db(db).enabled:
        return "real-time sync is disabled on this master (config setprop hotsync realtime enabled)"
    return None


def start(root: Root, *, pm=None, settle: float | None = None, max_batch: int | None = None,
          retry_max: float | None = None, force: bool = False) -> Notifier | str:
    """A started notifier for this master, or a str saying why there is none (not a master, realtime
    disabled, a bad list line)."""
    from hotsync_events.sync.lists import ListError
    db = open_db("configuration", root)
    rt = RealtimeSettings.from_db(db)
    problem = refusal(root, db, force=force)
    if problem:
        return problem
    if pm is None:
        from hotsync_events.manager import get_plugin_manager

        pm = get_plugin_manager()
    pm.root = root
    try:
        includes, excludes, unwalked = watch_lists(root, db, pm)
    except (ListError, OSError) as exc:
        return f"bad include/exclude list: {exc}"
    if not includes:
        return "nothing to watch: no plugin and no include.d list names a path to sync"
    pusher = SyncPusher(root, pm)
    n = Notifier(root, includes, excludes, pusher, settle=rt.settle if settle is None else settle,
                 max_batch=rt.max_batch if max_batch is None else max_batch,
                 retry_min=rt.retry_min, retry_max=rt.retry_max if retry_max is None else retry_max,
                 stop_push=rt.stop_push, unwalked=unwalked, beat=rt.beat)
    return n.start()


def signature(root: Root, pm=None) -> tuple:
    """What a running notifier depends on: role, settings, the pin, and the lists. A change means a restart."""
    from hotsync_events.sync.push import awaiting_person

    db = open_db("configuration", root, validate=False, initialise=False, journal=False)
    cfg = Settings.from_db(db)
    lists: WatchLists | str | None
    try:
        lists = watch_lists(root, db, pm) if pm is not None else None
    except Exception as exc:   # a bad list line: start() reports it
        lists = str(exc)
    return (cfg.master_problem(), awaiting_person(root) is None, RealtimeSettings.from_db(db), repr(lists))


def cheap_stamp(root: Root) -> tuple:
    """What can be checked every second or two for a change that the full :func:`signature` then looks at:
    the configuration database's and the lists' files, and the sync status (a pin, a person's first push)."""
    from hotsync_events.sync.lists import list_stamp
    from hotsync_events.sync.status import status_path

    out: list[int | None] = []
    for p in (root.db_dir / "configuration", status_path(root)):
        try:
            out.append(p.stat().st_mtime_ns)
        except OSError:
            out.append(None)
    return (*out, list_stamp(root))


class Background:
    """The notifier, kept in step with the configuration: started when this host becomes an enabled master
    with `realtime` enabled, its slave's certificate pinned and something to watch; restarted (with a full
    sync) when the include/exclude lists or the settings change; stopped when it should not run. Checked
    whenever the configuration database, the sync status or a list file changed (looked at every
    :data:`STAMP_EVERY` seconds), every ``check_every`` seconds (None: not on a timer), and on :meth:`reload`."""

    #: how often the cheap stamp (:func:`cheap_stamp`) is looked at: an added list is watched this fast
    STAMP_EVERY = 2.0

    def __init__(self, root: Root, *, pm=None, check_every: float | None = 30.0, retry_max: float = 30.0,
                 force: bool = False) -> None:
        self.root = root
        self.pm = pm
        self.check_every = check_every
        self.retry_max = retry_max
        self.force = force
        self.notifier: Notifier | None = None
        self.why_not: str | None = None
        self._sig: tuple | None = None
        self._stamp: tuple | None = None
        self._lock: SyncLock | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def _pm(self):
        if self.pm is None:
            from hotsync_events.manager import get_plugin_manager

            self.pm = get_plugin_manager()
        self.pm.root = self.root
        return self.pm

    def _hold(self) -> bool:
        """Take the root's notifier lock (one notifier per root: the daemon's, or a `hotsync watch`)."""
        if self._lock is not None:
            return True
        from hotsync_events.sync.lock import SyncLock

        lock = SyncLock(self.root, "notifier")
        if not lock.acquire(queue=False):
            why = f"another notifier runs for this root (pid {lock.holder()}): only one may run"
            if why != self.why_not:
                log.info("no real-time sync here: %s", why)
            self.why_not = why
            return False
        self._lock = lock
        return True

    def _let_go(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def step(self) -> None:
        """Start, restart or stop the notifier as the configuration says (one check)."""
        sig = signature(self.root, self._pm())
        if self.notifier is not None and sig == self._sig:
            return
        if self.notifier is not None:
            log.info("the paths or settings changed: restarting the notifier")
            self.notifier.stop(last_push=0)     # the new one starts with a full sync
            self.notifier = None
        self._sig = sig
        why = refusal(self.root, force=self.force)
        if why:                     # nothing to run: the lock is let go (a `hotsync watch` hears the reason)
            self._let_go()
            if why != self.why_not:
                log.info("no real-time sync: %s", why)
            self.why_not = why
            return
        if not self._hold():        # the lock is held only while a notifier of this supervisor runs
            self._sig = None        # try again at the next look
            return
        n = start(self.root, pm=self.pm, retry_max=self.retry_max, force=self.force)
        if isinstance(n, str):
            self._let_go()
            if n != self.why_not:
                log.info("no real-time sync: %s", n)
            self.why_not = n
            return
        self.why_not = None
        self.notifier = n
        log.info("watching %d directories under %s", n.watched_dirs(), ", ".join(n.status()["watched_paths"]))

    def _loop(self) -> None:
        last_full = 0.0
        while not self._stop.is_set():
            try:
                stamp = cheap_stamp(self.root)
                due = self.check_every is not None and time.monotonic() - last_full >= self.check_every
                if stamp != self._stamp or due or self._sig is None:
                    self._stamp = stamp
                    last_full = time.monotonic()
                    self.step()
            except Exception:   # keep supervising; the next check tries again
                log.exception("notifier supervision failed")
            self._wake.wait(self.STAMP_EVERY)     # the lists, the settings or the pin may change at any time
            self._wake.clear()

    def start(self) -> Background:
        if not logging.getLogger().handlers:   # a daemon without logging set up: say what happens
            logging.basicConfig(level=logging.INFO, format="%(asctime)s hotsync notifier: %(message)s")
            logging.getLogger("watchdog").setLevel(logging.WARNING)
        self._thread = threading.Thread(target=self._loop, name="hotsync-notifier-supervisor", daemon=True)
        self._thread.start()
        return self

    def reload(self) -> None:
        self._sig = None
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(60)
        if self.notifier is not None:
            self.notifier.stop()
            self.notifier = None
        self._let_go()

