"""The notifier's pusher: a batch of changed paths as one push to the slave, with the sync's own guards.

:class:`SyncPusher` turns a list of paths into an incremental push: ``--files-from=- --from0
--delete-missing-args --force`` (:data:`LIST_OPTIONS`) on top of the scheduled sync's own argument list
(:func:`~hotsync_events.sync.rsync.push_args`: same options, same TLS leg, same excludes), under the same lock;
with ``-r`` when the batch's directories are new and go whole. Every push first deletes nothing
(``--max-delete=0``); when rsync held a deletion, a dry run counts them, and they are pushed only while the
deletions pushed since the last successful full sync plus these stay within ``MaxDeletePercent``
(:mod:`hotsync_events.sync.ledger`); past that it hands over to the full sync's guard. None becomes
:func:`~hotsync_events.sync.push.run_sync`, the full sync itself (dumps, guards, status, mail).

Failures of incremental pushes are recorded in the sync's status file the way a failed full sync is, so the
sync's alert logic sends one mail on the first failure and one on recovery for both kinds.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time

from hotsync_events.configdb import open_db
from hotsync_events.paths import Root
from hotsync_events.realtime.notifier import PushResult
from hotsync_events.sync.settings import Settings

__all__ = ["BUSY_RETRY", "LIST_OPTIONS", "SyncPusher", "UNREACHABLE", "list_push_args"]

log = logging.getLogger("hotsync.notifier")

#: rsync exit codes that mean "the slave could not be reached"
UNREACHABLE = {5, 10, 12, 30, 35, 255}
#: how long back-to-back pushes retry while the slave's daemon still counts the last session
BUSY_RETRY = 10.0


#: what turns a push's argument list into a push of the paths given on stdin, NUL-separated
LIST_OPTIONS = ("--files-from=-", "--from0", "--delete-missing-args", "--force")


def list_push_args(args: list[str], *, recursive: bool = False) -> list[str]:
    """A push's argument list (:func:`~hotsync_events.sync.rsync.push_args`) as an incremental push: the
    same options without ``--delay-updates``, plus :data:`LIST_OPTIONS` before the ``--`` that ends them;
    *recursive*: a listed directory is sent whole (``-r``: with a list, ``-a`` alone does not recurse)."""
    i = args.index("--")
    return [*(a for a in args[:i] if a != "--delay-updates"), *LIST_OPTIONS, *(["-r"] if recursive else []),
            *args[i:]]


class SyncPusher:
    """``pusher(paths)`` for the notifier, speaking the sync library's language (see the module doc)."""

    def __init__(self, root: Root, pm=None, *, lock_wait: float = 3600.0) -> None:
        self.root = root
        self.pm = pm
        self.lock_wait = lock_wait
        self._prepared: tuple | None = None    # (settings, env, files), remade when the settings change
        self._warm: tuple | None = None        # (rsync process, lock, settings, nonce) started ahead of its list
        #: seconds between heartbeats, said in each one (the slave's promote reads it)
        self.beat_every: int = 0
        self.beat_error: str | None = None
        self._ctx_lock = threading.Lock()      # the heartbeat's thread and the notifier's share the context
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
    #: and new directories as single names, to be sent whole (``recursive=True``)
    sends_whole_dirs = True

    def __call__(self, paths: list[str] | None, moves: list[tuple[str, str]] | None = None, *,
                 recursive: bool = False) -> PushResult:
        return self.full() if paths is None else self.incremental(paths, moves, recursive=recursive)

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
        with self._ctx_lock:
            return self._context_unlocked()

    def _context_unlocked(self):
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
              moves: str | None = None, recursive: bool = False, kind: str | None = None,
              every: int | None = None) -> tuple[list[str], str]:
        """The scheduled sync's own argument list, reading the paths from stdin (NUL-separated), and the nonce
        its early input carries (a refusal is read against it). *kind*: the session's kind, when not the
        one *dry* says (``beat``, a dry run too); *every*: the period a heartbeat says, when not
        :attr:`beat_every`."""
        from hotsync_events.sync.fence import read_epoch
        from hotsync_events.sync.rsync import early_input, over_stunnel, push_args

        kind = kind or ("dry" if dry else "realtime")
        early, nonce = early_input(self.root.run_dir, kind, read_epoch(self.root), moves,
                                   beat=(self.beat_every if every is None else every) if kind == "beat" else None)
        a = push_args(sources=[f"{self.root.path}/"], exclude_file=files["exclude"],
                      password_file=files["password"], timeout=cfg.timeout, bwlimit=cfg.bwlimit,
                      max_delete=max_delete, dry_run=dry, rsync=files["rsync"], early=early)
        return over_stunnel(list_push_args(a, recursive=recursive), env), nonce

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
            args, nonce = self._args(cfg, env, files, max_delete=0, recursive=True)   # batches mostly are
            proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env, preexec_fn=die_with_parent(), close_fds=True)
        except OSError:
            lock.release()
            return
        self._warm = (proc, lock, cfg, nonce)

    def beat(self, every: int | None = None, limit: float = 10.0) -> bool:
        """The heartbeat: a session of kind ``beat``, a dry run of an empty list, that tells the slave this
        master is alive while nothing changes, and every how many seconds it says so (*every*, default
        :attr:`beat_every`; 0 at a clean stop: no more heartbeats). A promote there reads it
        (docs/promote.md). It writes nothing, so it takes no sync lock: a push or a full sync runs beside
        it (a push that meets it at the slave's door retries, as after any session). Bounded by *limit*
        seconds, its processes killed then. Why it failed is left in :attr:`beat_error`. A refusal that
        says this host was replaced is handled as a push's is (it fences this host at once, not at its next
        change). Returns whether the slave took it."""
        ctx = self._context()
        if isinstance(ctx, str):
            self.beat_error = ctx
            return False
        from hotsync_events.sync.fence import MARKER

        cfg, env, files = ctx
        started = time.time()
        args, nonce = self._args(cfg, env, files, dry=True, kind="beat", every=every)
        rc, out, err = _rsync(args, env, b"", timeout=limit)
        self.beat_error = None
        if rc != 0:
            said = [ln for ln in err.splitlines() if ln.strip()]
            why = next((ln for ln in said if "refused by the slave" in ln or "@ERROR" in ln), None)
            self.beat_error = f"rsync exit {rc}: " + (why or (said[-1] if said else "no message"))[:300]
            log.debug("heartbeat: %s", self.beat_error)
            if MARKER in out or MARKER in err:
                self._failed(cfg, rc, out, err, started, "the slave refused this master's heartbeat", nonce)
        return rc == 0

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

    def incremental(self, paths: list[str], moves: list[tuple[str, str]] | None = None, *,
                    recursive: bool = False) -> PushResult:
        """Push *paths* (and replay *moves*). The push deletes nothing first (``--max-delete=0``): a listed path
        gone from here, whether its deletion was queued or raced the push, is left on the slave and rsync says
        so; then the deletion guard's dry run counts what the list deletes, on the same list, and a second
        push applies it (:meth:`_deleting`). No path is looked up before the push: under a burst the lookups
        queued behind the notifier's event threads for the interpreter's lock (0.27 s for 7,800 paths).
        *recursive*: a listed directory is sent whole (the notifier's new directories); the warm push is
        started so, a plain list (a directory that existed is in it) takes a push of its own."""
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
        if self._warm is not None and renames is None and recursive:
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
                    return self._deleting(ctx[0], ctx[1], ctx[2], data, started, (rc, out, err, nonce),
                                          recursive=True)
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
            args, nonce = self._args(cfg, env, files, max_delete=0, moves=renames, recursive=recursive)
            rc, out, err = _rsync_retry(args, env, data)
            if _held(out, err):
                return self._deleting(cfg, env, files, data, started, (rc, out, err, nonce), recursive=recursive)
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

    def _deleting(self, cfg, env, files, data: bytes, started: float, first: tuple[int, str, str, str], *,
                  recursive: bool = False) -> PushResult:
        """The list's deletions, after a push that held them (the caller holds the sync lock): the scheduled
        sync's deletion guard on the same list, counted with every deletion pushed since the last successful
        full sync (:mod:`hotsync_events.sync.ledger`), then the push that applies them. *first* is the push
        that held them (``rc, out, err, nonce``): a failure of its own is the result, whatever follows."""
        from hotsync_events.sync.rsync import stats_of

        if first[0] not in (0, 24, 25):
            return self._failed(cfg, first[0], first[1], first[2], started, "a real-time push failed", first[3])

        args, nonce = self._args(cfg, env, files, dry=True, recursive=recursive)
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
        args, nonce = self._args(cfg, env, files, max_delete=max_delete, recursive=recursive)
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


def _rsync(args: list[str], env: dict, data: bytes, timeout: float | None = None) -> tuple[int, str, str]:
    from hotsync_events.childproc import die_with_parent

    # with a time limit, in a process group of its own: the remote shell (stunnel) holds the pipes too
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, preexec_fn=die_with_parent(), close_fds=True,
                            start_new_session=timeout is not None)
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        try:
            proc.communicate(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        return -1, "", f"no answer within {timeout:g} s"
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, out.decode("utf-8", "backslashreplace"), err.decode("utf-8", "backslashreplace")
