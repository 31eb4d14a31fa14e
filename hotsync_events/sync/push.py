"""One ``hotsync sync`` on the master: lock, dumps, lists, guards, pin, dry run, push, status, mail.

:func:`run_sync` is the library entry point (the CLI, the scheduler and the notifier call it). It
returns the exit code; every outcome is written to the status file before it returns, and a failed
push is never recorded as a success.

Exit codes: 0 pushed (or nothing to push), 1 the push failed, 2 this host cannot push (not a configured,
enabled master), 3 held back by a safety guard, 75 another sync is running (a follow-up is queued).
"""
from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

from hotsync_events.configdb import open_db
from hotsync_events.paths import Root
from hotsync_events.sync import guards, tls
from hotsync_events.sync.invoke import prepare, write_if_changed
from hotsync_events.sync.link import Link, ensure_pin, failure_outcome
from hotsync_events.sync.lists import ListError, build_lists
from hotsync_events.sync.lock import SyncLock
from hotsync_events.sync.outcome import EXIT_BUSY, EXIT_CANNOT, EXIT_FAILED, EXIT_HELD, EXIT_OK, Outcome
from hotsync_events.sync.record import append_log, record_outcome, report_outcome
from hotsync_events.sync.rsync import changed_names, only_these_filter, push_args
from hotsync_events.sync.settings import Settings
from hotsync_events.sync.status import update_status

if TYPE_CHECKING:
    from hotsync_events.sync.inventory import Listing

__all__ = ["Outcome", "awaiting_person", "run_sync", "EXIT_OK", "EXIT_FAILED", "EXIT_CANNOT", "EXIT_HELD", "EXIT_BUSY"]

# the run's parts live in hotsync_events.sync.{outcome,invoke,link,record}; the notifier
# (hotsync_events.realtime.pusher) and the tests take these from here
_prepare, _failure, _record, _append_log = prepare, failure_outcome, record_outcome, append_log

MAX_FOLLOW_UPS = 3
#: up to this many changes, the push names them (a filter list); above, it walks the whole tree again
INCREMENTAL_MAX = 2000
#: how long `hotsync sync` waits for a real-time push (not a sync run) that holds the lock
REALTIME_WAIT = 30.0
#: how long a person's `hotsync sync` at a terminal waits for a running sync
WAIT_MAX = 3600.0
#: on the slave: where the first push after a role change keeps what it replaces or deletes
KEPT = "/var/lib/hotsync/kept"
#: rsync's warning when --max-delete stopped a deletion, which the slave's daemon sends to the master
#: (--stderr=client); its exit status (25, or 23 when a file could not replace a directory) often arrives as 0
#: through stunnel, the warning always
DELETIONS_STOPPED_SAYS = "Deletions stopped due to --max-delete limit"


def run_sync(root: Root, *, dry_run: bool = False, full: bool = False, allow_deletions: bool = False,
             accept_fingerprint: str | None = None, scheduled: bool = False, log=print, pm=None,
             ask: Callable[[str], bool] | None = None, wait: bool = False, verbose: bool = False,
             progress: Callable | None = None) -> int:
    """Push this master's data to its slave once (plus the follow-ups queued meanwhile).

    *ask* is how a person at a terminal answers a yes/no question (the CLI passes one only on a
    terminal): with it, a first push shows both fingerprints and asks before it pins the slave's
    certificate. Without it (cron, the notifier, scripts) nothing is ever pinned unless
    *accept_fingerprint* names the slave's. *wait*: when another sync runs, wait for it to end (bounded),
    then run, instead of exiting 75 (a person at a terminal). *verbose*: every path the push changed.
    *progress(files, bytes, rate, percent)*: called as a long push goes.
    """
    db = open_db("configuration", root)
    cfg = Settings.from_db(db)
    problem = cfg.master_problem()
    if problem:
        log(f"hotsync sync: {problem}")
        return EXIT_CANNOT
    if accept_fingerprint is not None:
        try:
            accept_fingerprint = tls.normalise_fingerprint(accept_fingerprint)
        except ValueError as exc:
            log(f"hotsync sync: --accept-fingerprint: {exc}")
            return EXIT_CANNOT
    waiting = awaiting_person(root)
    pinned = tls.pinned_fingerprint(root) is not None
    if waiting and accept_fingerprint is None and (ask is None or scheduled) and not (dry_run and pinned):
        # cron, the notifier, a script: a pin is only ever taken by a person (see hotsync_events.sync.tls)
        msg = ensure_pin(root, cfg, None, log, dry_run=dry_run) or waiting
        log(f"hotsync sync: {msg}")
        update_status(root, lambda d: d.update(awaiting_person={"time": time.time(), "why": waiting}))
        return EXIT_CANNOT
    lock = SyncLock(root)
    if scheduled and not is_due(root, cfg):
        return EXIT_OK
    if not lock.acquire(queue=False):
        if scheduled:
            return _scheduled_blocked(root, cfg, lock, log)
        if wait:      # a person at a terminal: wait for the running sync (or push), then run
            log(f"hotsync sync: another sync is running (pid {lock.holder()}): waiting for it to end, then this "
                "one runs (--no-wait exits at once)")
            if not _wait_for(lock, WAIT_MAX):
                log(f"hotsync sync: the other sync still runs after {WAIT_MAX / 60:.0f} min; try again later")
                return EXIT_BUSY
        # a short real-time push (the notifier) is waited for; another sync run is not: say so, queue one
        elif not _full_run_active(root, lock):
            log(f"hotsync sync: waiting for the real-time push holding the sync lock (pid {lock.holder()}), "
                f"up to {REALTIME_WAIT:.0f} s")
        if not wait and (_full_run_active(root, lock) or not _wait_for(lock, REALTIME_WAIT)):
            if not dry_run:
                lock.queue()
            log(f"hotsync sync: another sync is running (pid {lock.holder()}); "
                + ("a dry run needs the lock too, try again later" if dry_run
                   else "one follow-up run is queued and starts as soon as it ends"))
            return EXIT_BUSY
    try:
        lock.take_queued()
        code = _run_once(root, db, dry_run=dry_run, full=full, allow_deletions=allow_deletions,
                         accept_fingerprint=accept_fingerprint, log=log, pm=pm, ask=ask, verbose=verbose,
                         progress=progress)
        for _ in range(MAX_FOLLOW_UPS):
            if dry_run or not lock.take_queued():
                break
            log("hotsync sync: running the follow-up sync queued meanwhile")
            db.reload()
            code = _run_once(root, db, dry_run=False, full=False, allow_deletions=False,
                             accept_fingerprint=None, log=log, pm=pm, ask=None)
        return code
    finally:
        lock.release()


def awaiting_person(root: Root) -> str | None:
    """Why no push may run before a person's: nothing is pinned yet, or this host became the master by a
    promote and has not pushed in the new direction yet (None when pushes may run)."""
    from hotsync_events.sync.status import read_status

    if tls.pinned_fingerprint(root) is None:
        return ("the slave's certificate is not pinned yet: the first push is a person's (`hotsync sync` on a "
                "terminal, or with --accept-fingerprint and the slave's fingerprint); the schedule and the "
                "real-time notifier wait for it")
    gate = read_status(root).get("first_push")
    if gate:
        return (f"{gate.get('why', 'a role change')}: run `hotsync sync` on a terminal (it shows the dry run and "
                "asks), or `hotsync sync --accept-fingerprint <the slave's fingerprint>`; what that push replaces or "
                f"deletes on the slave is kept there in {KEPT}; the schedule and the real-time notifier wait for it")
    return None


def _scheduled_blocked(root: Root, cfg: Settings, lock: SyncLock, log) -> int:
    """A scheduled run that finds the lock taken: skipped quietly while the holder is young; once the lock
    has been held for two intervals, recorded as a failed run, with the alert mail (a stuck run, or a lock
    something else holds, must not stop the schedule silently)."""
    try:
        since = lock.path.stat().st_mtime        # the holder writes its pid when it takes the lock
    except OSError:
        since = time.time()
    held = time.time() - since
    holder = lock.holder()
    if held < 2 * cfg.interval * 60:
        update_status(root, lambda d: d.update(last_skipped={"time": time.time(), "holder": holder,
                                                             "since": since}))
        return EXIT_OK
    from hotsync_events.sync.status import iso

    cmd = _cmdline(holder)
    o = Outcome("failed", f"the scheduled sync could not run: the sync lock has been held since {iso(since)} "
                f"by pid {holder}{f' ({cmd})' if cmd else ''}; if that process is stuck, stop it")
    now = time.time()
    report_outcome(o, log)
    record_outcome(root, cfg, o, now, now, {}, dry_run=False, log=log)
    return EXIT_FAILED


def _cmdline(pid: int | None) -> str:
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as fh:     # type: ignore[arg-type]
            return fh.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()[:200]
    except (OSError, TypeError, ValueError):
        return ""


def _full_run_active(root: Root, lock: SyncLock) -> bool:
    """Whether the lock's holder is a sync run (it records itself in the status), not a real-time push."""
    from hotsync_events.sync.status import read_status

    running = read_status(root).get("running") or {}
    holder = lock.holder()
    return holder is not None and running.get("pid") == holder


def _wait_for(lock: SyncLock, seconds: float) -> bool:
    """Take the lock within *seconds* (polling); False if it stays taken."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if lock.acquire(queue=False):
            return True
    return False


def is_due(root: Root, cfg: Settings) -> bool:
    """Whether a scheduled run is due: no run started within the last ``interval`` minutes (less 30 s)."""
    from hotsync_events.sync.status import read_status

    last = (read_status(root).get("last_run") or {}).get("start")
    return last is None or time.time() - float(last) >= cfg.interval * 60 - 30


def _run_once(root: Root, db, *, dry_run, full, allow_deletions, accept_fingerprint, log, pm, ask=None,
              verbose: bool = False, progress=None) -> int:
    cfg = Settings.from_db(db)
    start = time.time()
    if not dry_run:
        update_status(root, lambda d: d.update(role="master", running={"pid": os.getpid(), "start": start}),
                      public_later=True)
    ctx: dict = {"progress": progress}
    try:
        outcome = _push(root, db, cfg, dry_run=dry_run, full=full, allow_deletions=allow_deletions,
                        accept_fingerprint=accept_fingerprint, log=log, pm=pm, ctx=ctx, ask=ask)
    except Exception as exc:  # a bug must still end as a recorded failure, never as a silent success
        outcome = Outcome("failed", f"internal error: {type(exc).__name__}: {exc}",
                          details=traceback.format_exc().splitlines()[-12:])
    except BaseException as exc:  # SIGTERM/^C: rsync is already killed; a person's stop: recorded, no alert
        outcome = Outcome("interrupted", f"interrupted ({type(exc).__name__}) before the push finished; the "
                          "slave keeps what it had, and the next sync sends the rest")
        record_outcome(root, cfg, outcome, start, time.time(), ctx, dry_run=dry_run, log=log)
        raise
    end = time.time()
    report_outcome(outcome, log, verbose=verbose)
    record_outcome(root, cfg, outcome, start, end, ctx, dry_run=dry_run, log=log)
    if not dry_run:
        from hotsync_events.sync.replicas import alert_replicas

        try:                            # the database replicas: a mail when they break, one on recovery
            alert_replicas(root, db, cfg, pm=pm, log=log)
        except Exception as exc:        # never the push's failure
            log(f"hotsync sync: could not check the database replicas: {exc}")
    return outcome.code


# ------------------------------------------------------------------------------------------- the push
def _push(root: Root, db, cfg: Settings, *, dry_run, full, allow_deletions, accept_fingerprint, log, pm,
          ctx: dict, ask=None) -> Outcome:
    if pm is None:
        from hotsync_events.manager import plugin_manager

        pm = plugin_manager(root)      # the installed plugins through the root's entry-point cache
    # 1. dumps: the one dump path (databases.take_dumps), skipped by a dry run, which must change nothing
    from hotsync_events.manager import RegistrationError
    from hotsync_events.sync.databases import collect_dumps, take_dumps

    try:
        dumps = collect_dumps(pm, db, root)
    except RegistrationError as exc:
        return Outcome("failed", f"{exc}; nothing was pushed")
    dump_paths = [(dump.path, f"dump {dump.name} (plugin {plugin})") for plugin, dump in dumps]
    if dumps and cfg.databases != "disabled" and not dry_run:
        errors = take_dumps(root, db, pm, log=log, dumps=dumps)
        if errors:
            return Outcome("failed", "; ".join(errors) + "; nothing was pushed, the last good dump is kept")
    if not dry_run:
        dump_paths += _replica_setup(root, db, cfg, pm, log)
    for plugin, hook, error in pm.hook_errors:
        if hook in ("hotsync_sync_paths", "hotsync_dumps"):
            return Outcome("failed", f"plugin {plugin} could not say what to ship ({hook}: {error}); "
                           "nothing was pushed")
    # 2. lists: what is shipped; a line naming an area the slave never accepts is left out and reported
    try:
        lists = build_lists(root, db, pm, dump_paths)
    except (ListError, OSError) as exc:
        return Outcome("failed", f"bad include/exclude list: {exc}")
    ctx["includes"] = lists.includes
    for w in lists.warnings:
        log(f"hotsync sync: warning: {w}")
    # 3. a vanished source stops the push before anything changes
    state = guards.source_state(root, lists.includes)
    ctx["sources"] = state
    from hotsync_events.sync.status import read_status

    previous = read_status(root)
    gone = guards.source_problems((previous.get("last_success") or {}).get("sources") or {}, state)
    if gone and not allow_deletions:
        return Outcome("held", "source paths that held files at the last successful sync are now empty or "
                       "missing (an unmounted volume?): " + ", ".join(gone) + ". The slave was not touched. "
                       "If this is intended, run: hotsync sync --allow-deletions", details=gone)
    sources = [f"{root.path}/./{p.lstrip('/')}" for p in lists.includes if os.path.lexists(root.join(p))]
    # 4. the slave's certificate: pinned by a person at the first push, verified by stunnel on every connection
    pin_msg = ensure_pin(root, cfg, accept_fingerprint, log, ask=None if dry_run else ask, dry_run=dry_run)
    if pin_msg:
        return Outcome("failed", pin_msg)
    env, files = prepare(root, cfg, lists)
    if isinstance(env, str):
        return Outcome("failed", env)
    link = Link(root, cfg, env, files, log)
    ctx["sessions"] = link.kinds
    # 5. the peer copy (config databases, lists, manifest) through its own module, when it changed
    if not dry_run:
        failed = link.peer_copy(lists.includes, force=bool(accept_fingerprint))
        if failed is not None:
            return failed
    if not sources:     # no shipped path exists on this host (yet): the peer copy was all there was to send
        return _with_problems(Outcome("dry-run" if dry_run else "success",
                                      "nothing to push: none of the shipped paths exists on this host "
                                      "(hotsync paths shows them)"), lists.problems)
    common = dict(sources=sources, exclude_file=files["exclude"], password_file=files["password"],
                  timeout=cfg.timeout, bwlimit=cfg.bwlimit, rsync=files["rsync"])
    from hotsync_events.sync import inventory
    from hotsync_events.sync.ledger import load as load_ledger   # what the notifier deleted since the last success

    already = load_ledger(root, previous.get("last_success") or {}).deleted
    gate = previous.get("first_push")
    from hotsync_events.sync.fence import read_epoch

    key = inventory.slave_key(f"{cfg.slave_host}:{cfg.port}", tls.pinned_fingerprint(root), read_epoch(root))
    recorded = None if dry_run else inventory.load(root, key)
    names = None if dry_run else inventory.walk(root, lists.includes, lists.excludes, previous=recorded, relist=full)
    # 6a. nothing the slave is known to hold has gone from here: one session, which deletes nothing whatever
    #     the record says (--max-delete=0); rsync says so when the slave holds what this host does not
    one = None
    if (names is not None and previous.get("last_success") and not (dry_run or full or allow_deletions or gate
                                                                     or already)
            and names.gone == 0):
        one = link.session("sync", lambda early: push_args(**common, max_delete=0, early=early),
                           progress=ctx.get("progress"))
        if DELETIONS_STOPPED_SAYS not in one.stderr:
            if one.returncode != 0:
                return link.failure(one, "the push failed")
            ctx["stats"] = one.stats
            _remember(root, names, recorded, key)
            return _pushed(one, lists.problems)
        # whatever its exit status (a directory on the slave where this host has a file also fails, 23):
        # the dry run and the guard decide about what the slave holds beyond this host's files
        log(f"hotsync sync: the slave holds files this host does not have; {len(one.changes)} changes went "
            "through, nothing was deleted: a dry run counts the deletions for the guard")
    # 6. dry run: count what would change and what would be deleted
    dry = link.session("dry", lambda early: push_args(**common, dry_run=True, checksum=full, early=early))
    if dry.returncode != 0:
        return link.failure(dry, "the dry run before the push failed")
    deleted = len(dry.deletions)
    ctx["stats"] = dry.stats
    untouched = ("The slave was not touched." if one is None else
                 f"Nothing was deleted on the slave (the push's {len(one.changes)} other changes went through).")
    if not previous.get("last_success"):   # the first sync to this slave (a new pair, or after a promote)
        log(f"hotsync sync: first sync to {cfg.slave_host}: the dry run counts {len(dry.changes)} changes and "
            f"{deleted} deletions on the slave")
    if not allow_deletions:
        why = guards.deletion_problem(dry.stats, deleted, cfg.max_delete_percent, already=already)
        if why:
            return Outcome("held", f"{why}. {untouched} To apply these deletions once, run: "
                           "hotsync sync --allow-deletions", details=dry.deletions[:50], deleted=deleted,
                           files=dry.stats.get("Number of files", 0))
    left_out = [f"left out: {p}" for p in lists.problems]
    if gate and not dry_run:
        # the first push after a role change: a person sees what it does, and the slave keeps what it replaces
        ctx["kept"] = f"{KEPT}/{time.strftime('%Y-%m-%d-%H%M%S')}"
        if ask is not None and accept_fingerprint is None:
            log(f"hotsync sync: the first push to {cfg.slave_host} since {gate.get('why', 'a role change')}:")
            for line in [*dry.changes[:40], *(f"*deleting {d}" for d in dry.deletions[:40])]:
                log(f"  {line}")
            log(f"hotsync sync: {len(dry.changes)} changes and {deleted} deletions; what they replace or delete "
                f"on the slave is kept there in {ctx['kept']}")
            if not ask("push now?"):
                return Outcome("cancelled", "you did not confirm the first push: nothing was pushed")
    if dry_run:
        return Outcome("dry-run", f"{len(dry.changes)} changes and {deleted} deletions would be pushed",
                       details=left_out + dry.changes[:200] + [f"*deleting {d}" for d in dry.deletions[:200]],
                       files=dry.stats.get("Number of files", 0), deleted=deleted, changes=len(dry.changes))
    if not dry.changes and not deleted and not full:
        _remember(root, names, recorded, key)
        if one is not None:
            return _pushed(one, lists.problems, files=dry.stats.get("Number of files", 0))
        return _with_problems(Outcome("success", "the slave is up to date (nothing changed)",
                                      files=dry.stats.get("Number of files", 0)), lists.problems)
    # 7. the push: of exactly what the dry run found when that is a short list (rsync then walks only the
    #    directories holding a change), else of everything again
    max_delete = None if allow_deletions else guards.allowed_deletions(dry.stats, deleted, cfg.max_delete_percent)
    changed, deleted_names = changed_names(dry.raw)
    if ctx.get("kept"):
        common = dict(common, backup_dir=ctx["kept"])
    if not full and len(changed) + len(deleted_names) <= INCREMENTAL_MAX:
        only = root.run_dir / "sync.only"
        tops = [(p.lstrip("/") + ("/" if os.path.isdir(root.join(p)) else "")).encode("utf-8", "surrogateescape")
                for p in lists.includes if os.path.lexists(root.join(p))]
        write_if_changed(str(only), only_these_filter(lists.filter_rules(), changed + deleted_names, tops), 0o600)
        listed = dict(common, exclude_file=str(only))
        real = link.session("sync", lambda early: push_args(**listed, max_delete=max_delete, from0=True, early=early),
                            progress=ctx.get("progress"))
    else:
        real = link.session("sync", lambda early: push_args(**common, max_delete=max_delete, checksum=full,
                                                            early=early), progress=ctx.get("progress"))
    if real.returncode != 0:
        return link.failure(real, "the push failed")
    _remember(root, names, recorded, key)
    # the whole push, not the named list; with what the one session sent before the dry run
    return _pushed(real, lists.problems, files=dry.stats.get("Number of files", 0), before=one)


def _replica_setup(root: Root, db, cfg: Settings, pm, log) -> list[tuple[str, str]]:
    """The database replicas' part of a sync (once the slave is pinned): their master servers prepared, a
    seed offered when due (:mod:`hotsync_events.sync.replsetup`); the paths their offers ship from. Never
    the push's failure: the status and the health report it."""
    from hotsync_events.sync.replicas import replicas_wanted

    if not replicas_wanted(db) or tls.pinned_fingerprint(root) is None:
        return []
    from hotsync_events.sync.reploffer import shipped_paths
    from hotsync_events.sync.replsetup import setup_lock, setup_master

    try:
        with setup_lock(root, wait=0) as got:     # `hotsync replicas setup` runs: it does this part now
            if got:
                setup_master(root, db, cfg, pm, log=log)
    except Exception as exc:         # never the push's failure
        log(f"hotsync sync: could not set up the database replicas: {type(exc).__name__}: {exc}")
    return shipped_paths(root)


def _remember(root: Root, names: Listing | None, recorded: Listing | None, key: str) -> None:
    """After a success: the slave holds what was here when the push started (a name made or removed while it
    ran can make the record wrong, which costs the next run its dry run, nothing else)."""
    from hotsync_events.sync import inventory

    if names is None and recorded is not None:
        inventory.save(root, None, key)
    elif names is not None and names.changed:
        inventory.save(root, names, key)


def _pushed(run, problems: list[str], files: int | None = None, before=None) -> Outcome:
    """The outcome of a push session that exited 0 (and of the one session *before* it, when there was one)."""
    changes = [*(before.changes if before is not None else []), *run.changes]
    sent = run.stats.get("Total bytes sent", 0) + (before.stats.get("Total bytes sent", 0) if before is not None else 0)
    what = (f"pushed {len(changes)} changes and {len(run.deletions)} deletions" if changes or run.deletions
            else "the slave is up to date (nothing changed)")
    return _with_problems(Outcome("success", what, details=changes + [f"*deleting {d}" for d in run.deletions],
                                  files=run.stats.get("Number of files", 0) if files is None else files,
                                  bytes=sent, deleted=len(run.deletions), changes=len(changes), exit_code=0),
                          problems)


def _with_problems(o: Outcome, problems: list[str]) -> Outcome:
    """A push that left lines of the lists out is a failure, whatever it pushed: a person must fix them."""
    if not problems:
        return o
    return Outcome("failed", f"{o.message}, but {len(problems)} line(s) of the include lists were left out: "
                   + "; ".join(problems[:3]) + (" ..." if len(problems) > 3 else ""),
                   details=problems[:40], files=o.files, bytes=o.bytes, deleted=o.deleted, changes=o.changes,
                   exit_code=o.exit_code)
