"""The notifier wired to the sync: its settings, the paths it watches, and the pusher it runs.

* the settings -- :class:`~hotsync_events.realtime.settings.RealtimeSettings` (``hotsync realtime``,
  ``RealtimeSettle`` in ms, ``RealtimeMaxBatch``), read at start and followed by :class:`Background`.
* :func:`watch_lists` -- what to watch: the plugins' and the sysadmin's includes (the same
  :func:`~hotsync_events.sync.lists.build_lists` as every push, minus the plugins' ``realtime=False``
  paths) and what to ignore (the protected paths and every exclude).
* :class:`SyncPusher` -- the notifier's ``pusher``. A list of paths becomes an incremental push:
  ``--files-from=- --from0 --delete-missing-args --force`` on top of the scheduled sync's own argument
  list (:func:`~hotsync_events.sync.rsync.push_args`: same options, same TLS leg, same excludes),
  under the same lock. Every push first deletes nothing (``--max-delete=0``); when rsync held a deletion,
  a dry run counts them, and they are pushed only while the deletions pushed since the last successful full
  sync plus these stay within ``MaxDeletePercent`` (:mod:`hotsync_events.sync.ledger`); past that it hands
  over to the full sync's guard. None becomes
  :func:`~hotsync_events.sync.push.run_sync`, the full sync itself (dumps, guards, status, mail).
* :func:`start` -- a running :class:`~hotsync_events.realtime.notifier.Notifier`; :class:`Background` keeps
  one running in step with the configuration, for ``hotsync watch`` and ``hotsync daemon``.

Failures of incremental pushes are recorded in the sync's status file the way a failed full sync is,
so the sync's alert logic sends one mail on the first failure and one on recovery for both kinds.
"""
from __future__ import annotations

import logging
import os
import subprocess
import threading
import time

from hotsync_events.configdb import open_db
from hotsync_events.realtime.notifier import Notifier, PushResult
from hotsync_events.paths import Root
from hotsync_events.realtime.settings import RealtimeSettings
from hotsync_events.sync.settings import Settings

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from hotsync_events.sync.lock import SyncLock

__all__ = ["Background", "LIST_OPTIONS", "RealtimeSettings", "SyncPusher", "list_push_args", "refusal", "signature", "start",
           "watch_lists"]

log = logging.getLogger("hotsync.notifier")

#: rsync exit codes that mean "the slave could not be reached"
UNREACHABLE = {5, 10, 12, 30, 35, 255}
#: how long back-to-back pushes retry while the slave's daemon still counts the last session
BUSY_RETRY = 10.0


#: what turns a push's argument list into a push of the paths given on stdin, NUL-separated
LIST_OPTIONS = ("--files-from=-", "--from0", "--delete-missing-args", "--force")


def list_push_args(args: list[str]) -> list[str]:
    """A push's argument list (:func:`~hotsync_events.sync.rsync.push_args`) as an incremental push: the
    same options without ``--delay-updates``, plus :data:`LIST_OPTIONS` before the ``--`` that ends them."""
    i = args.index("--")
    return [*(a for a in args[:i] if a != "--delay-updates"), *LIST_OPTIONS, *args[i:]]


def watch_lists(root: Root, db, pm) -> tuple[list[str], list[str]]:
    """``(includes to watch, exclude patterns)``; ListError names a bad list line."""
    from hotsync_events.sync.lists import PROTECTED, build_lists

    lists = build_lists(root, db, pm)
    batch_only = set()
    if pm is not None:
        for _plugin, sp in pm.collect("hotsync_sync_paths", db=db, root=root):
            if not sp.exclude and not sp.realtime:
                batch_only.add(os.path.normpath(sp.path))
    includes = [p for p in lists.includes if p not in batch_only]
    return includes, [*PROTECTED, *lists.excludes]


class SyncPusher:
    """``pusher(paths)`` for the notifier, speaking the sync library's language (see the module doc)."""

    def __init__(self, root: Root, pm=None, *, lock_wait: float = 3600.0) -> None:
        self.root = root
        self.pm = pm
        self.lock_wait = lock_wait
        self._prepared: tuple | None = None    # (settings, env, files), remade when the settings change
        self._warm: tuple | None = None        # (rsync process, lock, settings, nonce) started ahead of its list
        self.db = open_db("configuration", root)
        self._db_checked = 0.0

    # ------------------------------------------------------------------------------ helpers
    def _settings(self):
        now = time.monotonic()
        if now - self._db_checked > 2.0:    # a config change reaches the next push within 2 s
            self._db_checked = now
            try:
                self.db.reload()
            except Exception as exc:  # keep the last good view; the full sync reports real trouble
                log.warning("cannot reload the configuration database: %s", exc)
        return Settings.from_db(self.db)

    def _prepare(self, cfg):
        from hotsync_events.sync import push
        from hotsync_events.sync.lists import build_lists

        if self._prepared is None or self._prepared[0] != cfg:
            lists = build_lists(self.root, self.db, self.pm)
            env, files = push._prepare(self.root, cfg, lists)   # same password/exclude files, same TLS env
            if isinstance(env, str):
                return env
            self._prepared = (cfg, env, files)
        return self._prepared

    def _lock(self):
        from hotsync_events.sync.lock import SyncLock

        lock = SyncLock(self.root)
        deadline = time.monotonic() + self.lock_wait
        delay = 0.005
        while not lock.acquire(queue=False):
            if time.monotonic() > deadline:
                return None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        return lock

    # ------------------------------------------------------------------------------ the pusher
    #: the notifier may hand over directory renames with the paths (``moves=``): the slave replays them
    replays_moves = True

    def __call__(self, paths: list[str] | None, moves: list[tuple[str, str]] | None = None) -> PushResult:
        return self.full() if paths is None else self.incremental(paths, moves)

    def full(self) -> PushResult:
        from hotsync_events.sync import push

        self.cool()

        lines: list[str] = []
        deadline = time.monotonic() + self.lock_wait
        while True:
            code = push.run_sync(self.root, log=lines.append, pm=self.pm)
            if code != push.EXIT_BUSY or time.monotonic() > deadline:
                break
            # another sync holds the lock (and now owes a follow-up run): wait for it, then ours
            from hotsync_events.sync.lock import SyncLock

            while SyncLock(self.root).holder() is not None and time.monotonic() < deadline:
                time.sleep(0.05)
        for line in lines:
            log.info("%s", line)
        if code == push.EXIT_OK:
            return PushResult(True)
        text = next((ln for ln in reversed(lines) if "FAILED" in ln or "HELD" in ln), None) or \
            next((ln for ln in reversed(lines) if "hotsync sync:" in ln), f"hotsync sync exited {code}")
        return PushResult(False, text, unreachable="unreachable" in text or "socket" in text)

    def _context(self):
        """``(settings, env, files)`` for an incremental push, or a str saying why there is none."""
        cfg = self._settings()
        from hotsync_events.sync.push import awaiting_person

        problem = cfg.master_problem() or awaiting_person(self.root)
        if problem:
            return problem
        prepared = self._prepare(cfg)
        if isinstance(prepared, str):
            return prepared
        return cfg, prepared[1], prepared[2]

    def _args(self, cfg, env, files, *, dry: bool = False, max_delete: int | None = None,
              moves: str | None = None) -> tuple[list[str], str]:
        """The scheduled sync's own argument list, reading the paths from stdin (NUL-separated), and the nonce
        its early input carries (a refusal is read against it)."""
        from hotsync_events.sync.fence import read_epoch
        from hotsync_events.sync.rsync import early_input, over_stunnel, push_args

        early, nonce = early_input(self.root.run_dir, "dry" if dry else "realtime", read_epoch(self.root), moves)
        a = push_args(sources=[f"{self.root.path}/"], exclude_file=files["exclude"],
                      password_file=files["password"], timeout=cfg.timeout, bwlimit=cfg.bwlimit,
                      max_delete=max_delete, dry_run=dry, rsync=files["rsync"], early=early)
        return over_stunnel(list_push_args(a), env), nonce

    def warm(self) -> None:
        """Start the next incremental push now, before its path list is known.

        rsync reads ``--files-from=-`` only once the session is up, so starting it at the first change
        overlaps stunnel's start, the TLS handshake, the login and the slave's pre-xfer hook with the
        settle window; :meth:`incremental` then writes the list. Takes the sync lock only if it is free.
        """
        if self._warm is not None:
            return
        ctx = self._context()
        if isinstance(ctx, str):
            return
        from hotsync_events.sync.lock import SyncLock
        from hotsync_events.childproc import die_with_parent

        lock = SyncLock(self.root)
        if not lock.acquire(queue=False):
            return
        cfg, env, files = ctx
        try:
            args, nonce = self._args(cfg, env, files, max_delete=0)
            proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env, preexec_fn=die_with_parent(), close_fds=True)
        except OSError:
            lock.release()
            return
        self._warm = (proc, lock, cfg, nonce)

    def cool(self) -> None:
        """Drop a warm push that will not be used (stop, or a batch that needs another command)."""
        if self._warm is None:
            return
        proc, lock, _cfg, _nonce = self._warm
        self._warm = None
        try:
            # an empty list: the session ends cleanly (the slave records a push of nothing, not a failure)
            proc.communicate(b"", timeout=30)
        except Exception:
            proc.kill()
            proc.communicate()
        finally:
            lock.release()

    def incremental(self, paths: list[str], moves: list[tuple[str, str]] | None = None) -> PushResult:
        """Push *paths* (and replay *moves*). The push deletes nothing first (``--max-delete=0``): a listed path
        gone from here, whether its deletion was queued or raced the push, is left on the slave and rsync says
        so; then the deletion guard's dry run counts what the list deletes, on the same list, and a second
        push applies it (:meth:`_deleting`). No path is looked up before the push: under a burst the lookups
        queued behind the notifier's event threads for the interpreter's lock (0.27 s for 7,800 paths)."""
        started = time.time()
        data = "".join(p.lstrip("/") + "\0" for p in paths).encode("utf-8", "surrogateescape")
        renames = None
        if moves:
            from hotsync_events.sync.moves import encode

            renames = encode(moves)
            # too many to carry, or deletions beside them (the dry run that counts deletions for the guard
            # would run before the renames): a full sync sees the renamed tree whole
            if renames is None or any(not os.path.lexists(self.root.join(p)) for p in paths):
                return self.full()
        if self._warm is not None and renames is None:
            proc, lock, cfg, nonce = self._warm
            self._warm = None
            t0 = time.monotonic()
            try:
                out, err = proc.communicate(data)
                out, err = out.decode("utf-8", "backslashreplace"), err.decode("utf-8", "backslashreplace")
                rc = proc.returncode
                log.debug("warm push of %d path(s): rsync exit %s after %.3f s", len(paths), rc,
                          time.monotonic() - t0)
                if _held(out, err):
                    ctx = self._context()
                    if isinstance(ctx, str):
                        return PushResult(False, ctx)
                    return self._deleting(ctx[0], ctx[1], ctx[2], data, started, (rc, out, err, nonce))
            finally:
                lock.release()
            if rc in (0, 24):    # 24: a listed file vanished meanwhile; its deletion event is queued
                return PushResult(True)
            if not (rc == 5 and "max connections" in err):
                return self._failed(cfg, rc, out, err, started, "a real-time push failed", nonce)
            # the slave still counted the last session: the cold path below retries
        self.cool()
        ctx = self._context()
        if isinstance(ctx, str):
            return PushResult(False, ctx)
        cfg, env, files = ctx
        lock = self._lock()
        if lock is None:
            return PushResult(False, f"the sync lock stayed taken for {self.lock_wait:.0f} s")
        try:
            args, nonce = self._args(cfg, env, files, max_delete=0, moves=renames)
            rc, out, err = _rsync_retry(args, env, data)
            if _held(out, err):
                return self._deleting(cfg, env, files, data, started, (rc, out, err, nonce))
        finally:
            lock.release()
        if rc in (0, 24):
            return PushResult(True)
        if renames is not None and ("was not replayed" in out + err or "carries no pair epoch" in out + err):
            # the slave would not rename (it holds something else there), or cannot (an older version, which
            # reads the renames as a malformed early input): a full sync brings it the renamed tree instead
            if "carries no pair epoch" in out + err:
                self.replays_moves = False
            log.info("the slave did not replay %d rename(s): a full sync instead", len(moves or ()))
            return self.full()
        return self._failed(cfg, rc, out, err, started, "a real-time push failed", nonce)

    def _deleting(self, cfg, env, files, data: bytes, started: float, first: tuple[int, str, str, str]) -> PushResult:
        """The list's deletions, after a push that held them (the caller holds the sync lock): the scheduled
        sync's deletion guard on the same list, counted with every deletion pushed since the last successful
        full sync (:mod:`hotsync_events.sync.ledger`), then the push that applies them. *first* is the push
        that held them (``rc, out, err, nonce``): a failure of its own is the result, whatever follows."""
        from hotsync_events.sync.rsync import stats_of

        if first[0] not in (0, 24, 25):
            return self._failed(cfg, first[0], first[1], first[2], started, "a real-time push failed", first[3])

        args, nonce = self._args(cfg, env, files, dry=True)
        rc, out, err = _rsync_retry(args, env, data)
        if rc not in (0, 24):
            return self._failed(cfg, rc, out, err, started, "the dry run before a real-time push failed", nonce)
        _items, deleted, _stats = stats_of(out)
        if not deleted:      # gone on the slave too meanwhile, or back here: nothing left to delete
            return PushResult(True)
        from hotsync_events.sync import ledger as ledgers

        ledger = ledgers.load(self.root)
        why = ledger.problem(len(deleted), cfg.max_delete_percent)
        if why:
            # not ours to decide: nothing more is pushed, the full sync's guard (which counts the same ledger)
            # holds the rest back and tells the sysadmin
            ledger.held = len(deleted)
            ledgers.save(self.root, ledger)
            log.warning("%s: left to the full sync's guard", why)
            return PushResult(False, f"{why}; left to the full sync's guard "
                              "(hotsync sync --allow-deletions applies them)")
        max_delete = max(len(deleted), 1)
        args, nonce = self._args(cfg, env, files, max_delete=max_delete)
        rc, out, err = _rsync_retry(args, env, data)
        if rc in (0, 24):
            self._count_deletions(max(len(stats_of(out)[1]), max_delete))
        if rc in (0, 24) and not _held(out, err):
            return PushResult(True)
        if _held(out, err):     # more went meanwhile than the dry run counted: the full sync's guard decides
            return PushResult(False, "more deletions came during a real-time push than its dry run counted; "
                              "a full sync follows")
        return self._failed(cfg, rc, out, err, started, "a real-time push failed", nonce)

    def _count_deletions(self, n: int) -> None:
        """Add a push's deletions to the ledger the guards count (the caller holds the sync lock)."""
        if n <= 0:
            return
        from hotsync_events.sync import ledger as ledgers

        try:
            ledgers.record_deletions(self.root, n)
        except OSError as exc:   # the full sync's own guard still counts the slave's files
            log.warning("cannot record %d deletions in the deletion ledger: %s", n, exc)

    def _failed(self, cfg, rc: int, out: str, err: str, started: float, what: str, nonce: str = "") -> PushResult:
        """Record the failure as the sync records its own (status file, one alert mail), then report it."""
        from hotsync_events.sync import push
        from hotsync_events.sync.rsync import RsyncRun, stats_of

        items, deleted, stats = stats_of(out)
        run = RsyncRun(rc, out, err, items, deleted, stats)
        try:
            outcome = push._failure(self.root, cfg, run, what, nonce=nonce)
            push._record(self.root, cfg, outcome, started, time.time(), {}, dry_run=False,
                         log=lambda m: log.info("%s", m))
            message = outcome.message
        except Exception as exc:   # the sync library changed under us: still report the failure
            log.warning("could not record the failure in the sync status: %s", exc)
            message = f"{what}: rsync exit {rc}"
        return PushResult(False, message, unreachable=rc in UNREACHABLE)


def push_status(root: Root) -> dict:
    from hotsync_events.sync.status import read_status

    return read_status(root)


def _held(out: str, err: str) -> bool:
    """Whether a push's ``--max-delete`` left deletions undone: rsync says so (a client pushing to a daemon
    may still exit 0; the slave's daemon records 25)."""
    from hotsync_events.sync.push import DELETIONS_STOPPED_SAYS

    return DELETIONS_STOPPED_SAYS in err or DELETIONS_STOPPED_SAYS in out


def _rsync_retry(args: list[str], env: dict, data: bytes) -> tuple[int, str, str]:
    """rsync, again while the slave's daemon refuses with "max connections": its last session (and its
    post-xfer hook) is still ending, a matter of milliseconds after a push."""
    deadline = time.monotonic() + BUSY_RETRY
    delay = 0.01
    while True:
        rc, out, err = _rsync(args, env, data)
        if rc != 5 or "max connections" not in err or time.monotonic() > deadline:
            return rc, out, err
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _rsync(args: list[str], env: dict, data: bytes) -> tuple[int, str, str]:
    from hotsync_events.childproc import die_with_parent

    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, preexec_fn=die_with_parent(), close_fds=True)
    try:
        out, err = proc.communicate(data)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, out.decode("utf-8", "backslashreplace"), err.decode("utf-8", "backslashreplace")


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
        includes, excludes = watch_lists(root, db, pm)
    except (ListError, OSError) as exc:
        return f"bad include/exclude list: {exc}"
    if not includes:
        return "nothing to watch: no plugin and no include.d list names a path to sync"
    pusher = SyncPusher(root, pm)
    n = Notifier(root, includes, excludes, pusher, settle=rt.settle if settle is None else settle,
                 max_batch=rt.max_batch if max_batch is None else max_batch,
                 retry_min=rt.retry_min, retry_max=rt.retry_max if retry_max is None else retry_max,
                 stop_push=rt.stop_push)
    return n.start()


def signature(root: Root, pm=None) -> tuple:
    """What a running notifier depends on: role, settings, the pin, and the lists. A change means a restart."""
    from hotsync_events.sync.push import awaiting_person

    db = open_db("configuration", root, validate=False, initialise=False, journal=False)
    cfg = Settings.from_db(db)
    lists: tuple[list[str], list[str]] | str | None
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

