"""One ``hotsync sync`` on the master: lock, dumps, lists, guards, pin, dry run, push, status, mail.

:func:`run_sync` is the library entry point (the CLI, the scheduler and the notifier call it). It
returns the exit code; every outcome is written to the status file before it returns, and a failed
push is never recorded as a success.

Exit codes: 0 pushed (or nothing to push), 1 the push failed, 2 this host cannot push (not a configured,
enabled master), 3 held back by a safety guard, 75 another sync is running (a follow-up is queued).
"""
from __future__ import annotations

import os
import shutil
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

from hotsync_events.configdb import open_db
from hotsync_events.fsutil import atomic_write, open_private_log
from hotsync_events.paths import Root
from hotsync_events.sync import guards, tls
from hotsync_events.sync.lists import ListError, build_lists
from hotsync_events.sync.lock import SyncLock
from hotsync_events.sync.mail import MailError, send_mail
from hotsync_events.sync.rsync import EXIT_MEANING, changed_names, connect_prog, only_these_filter, push_args, run_rsync
from hotsync_events.sync.settings import Settings
from hotsync_events.sync.status import iso, push_history, state_dir, update_status

__all__ = ["Outcome", "awaiting_person", "run_sync", "EXIT_OK", "EXIT_FAILED", "EXIT_CANNOT", "EXIT_HELD", "EXIT_BUSY"]

EXIT_OK, EXIT_FAILED, EXIT_CANNOT, EXIT_HELD, EXIT_BUSY = 0, 1, 2, 3, 75
CLIENT_CONF = "/etc/stunnel/hotsync-client.conf"
PAIR_CLIENT_CONF = "/etc/stunnel/hotsync-pair-client.conf"
MAX_FOLLOW_UPS = 3
#: up to this many changes, the push names them (a filter list); above, it walks the whole tree again
INCREMENTAL_MAX = 2000
#: how long `hotsync sync` waits for a real-time push (not a sync run) that holds the lock
REALTIME_WAIT = 30.0
#: how long a person's `hotsync sync` at a terminal waits for a running sync
WAIT_MAX = 3600.0
#: how long a session is retried after this master presented its certificate to a pairing slave
PAIRING_WAIT = 5.0
#: on the slave: where the first push after a role change keeps what it replaces or deletes
KEPT = "/var/lib/hotsync/kept"


@dataclass
class Outcome:
    result: str                       # success | failed | held | dry-run
    message: str
    details: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    deleted: int = 0
    changes: int = 0
    exit_code: int | None = None      # rsync's
    fenced: dict | None = None        # the slave was promoted: its refusal's FENCED marker (fence.parse_marker)

    @property
    def code(self) -> int:
        return {"success": EXIT_OK, "dry-run": EXIT_OK, "held": EXIT_HELD, "cancelled": EXIT_CANNOT,
                "interrupted": 130}.get(self.result, EXIT_FAILED)


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
        msg = _ensure_pin(root, cfg, None, log, dry_run=dry_run) or waiting
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
    _report(o, log)
    _record(root, cfg, o, now, now, {}, dry_run=False, log=log)
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
        update_status(root, lambda d: d.update(role="master", running={"pid": os.getpid(), "start": start}))
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
        _record(root, cfg, outcome, start, time.time(), ctx, dry_run=dry_run, log=log)
        raise
    end = time.time()
    _report(outcome, log, verbose=verbose)
    _record(root, cfg, outcome, start, end, ctx, dry_run=dry_run, log=log)
    return outcome.code


# ------------------------------------------------------------------------------------------- the push
def _push(root: Root, db, cfg: Settings, *, dry_run, full, allow_deletions, accept_fingerprint, log, pm,
          ctx: dict, ask=None) -> Outcome:
    if pm is None:
        from hotsync_events.manager import get_plugin_manager

        pm = get_plugin_manager()
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
    pin_msg = _ensure_pin(root, cfg, accept_fingerprint, log, ask=None if dry_run else ask, dry_run=dry_run)
    if pin_msg:
        return Outcome("failed", pin_msg)
    env, files = _prepare(root, cfg, lists)
    if isinstance(env, str):
        return Outcome("failed", env)
    link = _Link(root, cfg, env, files, log)
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
    # 6. dry run: count what would change and what would be deleted
    dry = link.session("dry", lambda early: push_args(**common, dry_run=True, checksum=full, early=early))
    if dry.returncode != 0:
        return link.failure(dry, "the dry run before the push failed")
    deleted = len(dry.deletions)
    ctx["stats"] = dry.stats
    if not previous.get("last_success"):   # the first sync to this slave (a new pair, or after a promote)
        log(f"hotsync sync: first sync to {cfg.slave_host}: the dry run counts {len(dry.changes)} changes and "
            f"{deleted} deletions on the slave")
    if not allow_deletions:
        from hotsync_events.sync.ledger import load as load_ledger   # what the notifier deleted since the last success counts too

        already = load_ledger(root, previous.get("last_success") or {}).deleted
        why = guards.deletion_problem(dry.stats, deleted, cfg.max_delete_percent, already=already)
        if why:
            return Outcome("held", f"{why}. The slave was not touched. To apply these deletions once, run: "
                           "hotsync sync --allow-deletions", details=dry.deletions[:50], deleted=deleted,
                           files=dry.stats.get("Number of files", 0))
    left_out = [f"left out: {p}" for p in lists.problems]
    gate = previous.get("first_push")
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
        _write_if_changed(str(only), only_these_filter(lists.filter_rules(), changed + deleted_names, tops), 0o600)
        listed = dict(common, exclude_file=str(only))
        real = link.session("sync", lambda early: push_args(**listed, max_delete=max_delete, from0=True, early=early),
                            progress=ctx.get("progress"))
    else:
        real = link.session("sync", lambda early: push_args(**common, max_delete=max_delete, checksum=full,
                                                            early=early), progress=ctx.get("progress"))
    if real.returncode != 0:
        return link.failure(real, "the push failed")
    return _with_problems(Outcome("success", f"pushed {len(real.changes)} changes and {len(real.deletions)} deletions",
                                  details=real.changes + [f"*deleting {d}" for d in real.deletions],
                                  files=dry.stats.get("Number of files", 0),   # the whole push, not the named list
                                  bytes=real.stats.get("Total bytes sent", 0), deleted=len(real.deletions),
                                  changes=len(real.changes), exit_code=0), lists.problems)


def _with_problems(o: Outcome, problems: list[str]) -> Outcome:
    """A push that left lines of the lists out is a failure, whatever it pushed: a person must fix them."""
    if not problems:
        return o
    return Outcome("failed", f"{o.message}, but {len(problems)} line(s) of the include lists were left out: "
                   + "; ".join(problems[:3]) + (" ..." if len(problems) > 3 else ""),
                   details=problems[:40], files=o.files, bytes=o.bytes, deleted=o.deleted, changes=o.changes,
                   exit_code=o.exit_code)


class _Link:
    """The sessions of one run with the slave: each sends its kind, the pair's epoch and a fresh nonce
    first; a refusal is read against that session's nonce (a fence is believed only when authenticated)."""

    def __init__(self, root: Root, cfg: Settings, env: dict, files: dict, log) -> None:
        self.root, self.cfg, self.env, self.files, self.log = root, cfg, env, files, log
        self.nonce = ""
        self.delivered = False

    def session(self, kind: str, build, env: dict | None = None, progress=None):
        from hotsync_events.sync.fence import read_epoch
        from hotsync_events.sync.rsync import early_input

        early, self.nonce = early_input(self.root.run_dir, kind, read_epoch(self.root))
        run = _rsync(build(early), env or self.env, progress=progress)
        if run.returncode != 0 and not self.delivered and _tls_refused(run) and not _cert_changed(self.root, self.cfg):
            # the slave may not know this master's certificate yet: present it (pairing), then try again
            # while the slave's hook (which runs after our copy ended) puts it in its trust store
            self.delivered = True
            if self.deliver_certificate():
                deadline = time.monotonic() + PAIRING_WAIT
                while True:
                    early, self.nonce = early_input(self.root.run_dir, kind, read_epoch(self.root))
                    run = _rsync(build(early), env or self.env)
                    if run.returncode == 0 or not _tls_refused(run) or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
        return run

    def deliver_certificate(self) -> bool:
        """Present this host's certificate to the slave's pairing service (used while the slave does not
        trust it yet: it keeps it if its fingerprint is the slave's MasterFingerprint)."""
        from hotsync_events.sync.rsync import copy_args

        cert, _ = tls.cert_paths(self.root)
        pair_conf = self.root.join(PAIR_CLIENT_CONF)
        if not cert.is_file() or not pair_conf.is_file():
            return False
        env = dict(self.env, RSYNC_CONNECT_PROG=connect_prog(self.files["stunnel"], str(pair_conf)))
        from hotsync_events.sync.fence import read_epoch
        from hotsync_events.sync.rsync import early_input

        early, self.nonce = early_input(self.root.run_dir, "pair", read_epoch(self.root))
        run = _rsync(copy_args(source=str(cert), dest="master.crt", module="hotsync-pair",
                               password_file=self.files["password"], timeout=min(self.cfg.timeout, 30),
                               early=early, rsync=self.files["rsync"]), env)
        if run.returncode == 0:
            self.log(f"hotsync sync: presented this host's certificate {tls.host_fingerprint(self.root)} to the slave")
        return run.returncode == 0

    def peer_copy(self, includes: list[str], force: bool = False) -> Outcome | None:
        """Ship the peer copy when it changed since the last one the slave took; an Outcome on failure."""
        from hotsync_events.sync import peercopy
        from hotsync_events.sync.rsync import copy_args
        from hotsync_events.sync.status import read_status

        export = peercopy.export(self.root, includes)
        digest = peercopy.digest(export)
        if not force and (read_status(self.root).get("peer_sent") or {}).get("digest") == digest:
            return None
        run = self.session("peer", lambda early: copy_args(
            source=f"{export}/", dest="", module="hotsync-peer", password_file=self.files["password"],
            timeout=self.cfg.timeout, early=early, rsync=self.files["rsync"]))
        if run.returncode != 0:
            return self.failure(run, "shipping the peer copy (configuration and lists) failed")
        update_status(self.root, lambda d: d.update(peer_sent={"digest": digest, "time": time.time()}))
        return None

    def failure(self, run, what: str) -> Outcome:
        return _failure(self.root, self.cfg, run, what, nonce=self.nonce)


def _tls_refused(run) -> bool:
    """Whether a session ended before the rsync protocol began (the TLS handshake refused): nothing
    transferred, no daemon message; a connection cut later says how many bytes it had received."""
    import re

    text = run.stderr
    if run.returncode not in (5, 10, 12, 255) or run.stdout.strip():
        return False
    if any(m in text for m in ("@ERROR", "refused by the slave", "auth failed")):
        return False
    received = re.search(r"\((\d+) bytes received so far\)", text)
    return not (received and int(received.group(1)) > 0)


def _rsync(args: list[str], env: dict, wait: float = 10.0, progress=None):
    """Run rsync; while the slave's daemon refuses for "max connections" (its previous session still runs
    its post-xfer hook), try again for up to *wait* seconds."""
    deadline = time.monotonic() + wait
    delay = 0.02
    while True:
        run = run_rsync(args, env=env, progress=progress)
        if run.returncode != 5 or "max connections" not in run.stderr or time.monotonic() > deadline:
            return run
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _ensure_pin(root: Root, cfg: Settings, accept: str | None, log, *, ask=None, dry_run: bool = False) -> str | None:
    """Pin the slave's certificate when a person says so; a message when nothing is pinned and none did."""
    have = tls.pinned_fingerprint(root)
    if have is not None and accept is None:
        return None
    try:
        pem = tls.fetch_cert(cfg.slave_host, cfg.port, timeout=min(cfg.timeout, 30))
    except tls.TLSError as exc:
        return str(exc)
    seen = tls.fingerprint(pem)
    mine = tls.host_fingerprint(root) or "none yet (run signal-event nethserver-hotsync-save)"
    if accept is not None:
        if seen != accept:
            return (f"the slave {cfg.slave_host}:{cfg.port} presents {seen}, not the {accept} you asked to "
                    "accept; nothing was pinned")
        how = "accepted"
    elif ask is not None:
        log(f"hotsync sync: the slave {cfg.slave_host}:{cfg.port} presents the certificate\n"
            f"  {seen}\n"
            "compare it with `hotsync status` on the slave (its line 'certificate:'); the slave must pin this\n"
            f"host's certificate too: {mine}\n"
            "(on the slave: config setprop hotsync MasterFingerprint <this>; signal-event nethserver-hotsync-save)")
        if not ask(f"pin the slave's certificate {seen}?"):
            return "the slave's certificate was not pinned: nothing was pushed"
        how = "accepted at the terminal"
    else:
        return (f"the slave's certificate is not pinned yet: a person compares its fingerprint first. It presents "
                f"{seen}; check it with `hotsync status` on the slave, then run: hotsync sync --accept-fingerprint "
                f"{seen}" + (" (a dry run never pins)" if dry_run else ""))
    tls.pin_slave(root, pem)

    def change(d: dict) -> None:
        d.pop("awaiting_person", None)
        d["pinned"] = {"fingerprint": seen, "time": time.time(), "how": how}

    update_status(root, change)
    log(f"hotsync sync: pinned the slave's certificate {seen} ({how})")
    return None


def _prepare(root: Root, cfg: Settings, lists):
    """The environment and the run files (password 0600, exclude list); a str is an error."""
    rsync = shutil.which("rsync")
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    if rsync is None or stunnel is None:
        return "rsync and stunnel4 must be installed on the master", {}
    client = root.join(CLIENT_CONF)
    if not client.is_file():
        return (f"{client} is missing: run signal-event nethserver-hotsync-save on this master"), {}
    if tls.host_fingerprint(root) is None:
        return "this master has no TLS certificate yet: run signal-event nethserver-hotsync-save", {}
    run = root.run_dir
    run.mkdir(parents=True, exist_ok=True)
    os.chmod(run, 0o700)
    files = {"password": str(run / "rsync.password"), "exclude": str(run / "sync.exclude"), "rsync": rsync,
             "stunnel": stunnel}
    _write_if_changed(files["password"], (cfg.password + "\n").encode(), 0o600)
    _write_if_changed(files["exclude"], lists.exclude_file_text().encode("utf-8", "surrogateescape"), 0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSYNC_")}
    env["RSYNC_CONNECT_PROG"] = connect_prog(stunnel, str(client))
    env["LC_ALL"] = "C.UTF-8"
    return env, files


def _write_if_changed(path: str, data: bytes, mode: int) -> None:
    """atomic_write, skipped (no fsync) when the file already holds *data* with *mode*."""
    try:
        st = os.stat(path)
        if st.st_mode & 0o777 == mode and st.st_uid == os.geteuid():
            with open(path, "rb") as fh:
                if fh.read() == data:
                    return
    except OSError:
        pass
    atomic_write(path, data, mode=mode)


def _failure(root: Root, cfg: Settings, run, what: str, *, nonce: str = "") -> Outcome:
    rc = run.returncode
    errors = run.error_lines()
    text = "\n".join(errors)
    meaning = EXIT_MEANING.get(rc, f"exit status {rc}")
    from hotsync_events.sync.fence import verified_marker

    # only the refusal the slave made for this very session, signed with the pair's secret, is a fence: a
    # file name or a log line that looks like one is not
    marker = verified_marker(run.stderr, nonce=nonce, secret=cfg.password)
    if marker is not None:
        return Outcome("failed", f"{what}: the slave {cfg.slave_host} was promoted to master (FENCED, pair epoch "
                       f"{marker['epoch']}): it refuses this host's pushes", details=errors, exit_code=rc,
                       fenced=marker)
    if "auth failed" in text:
        meaning = "the slave refused the password: set the same `rsyncd password` on both sides"
    elif "Unknown module" in text or "access denied" in text:
        meaning = ("the slave refused this host: its MasterHost is not this host's address, "
                   "or it is not an enabled slave")
    elif "refused by the slave" in text:
        meaning = "the slave refused the push: " + next((e.split("refused by the slave: ", 1)[1]
                                                         for e in errors if "refused by the slave: " in e), text[:200])
    elif rc in (5, 10, 12, 35, 255) or "certificate verify failed" in text or "SSL_connect" in text:
        meaning = _tls_diagnosis(root, cfg) or meaning
    if rc in (23, 24):
        meaning += "; these paths were not pushed (see details)"
    return Outcome("failed", f"{what}: rsync exit {rc}: {meaning}", details=errors,
                   files=run.stats.get("Number of files", 0), bytes=run.stats.get("Total bytes sent", 0),
                   exit_code=rc)


def _master_cert_refused(root: Root, cfg: Settings) -> str | None:
    """The slave answers TLS but refused the session before rsync spoke: it does not trust this master's
    certificate (it has no MasterFingerprint, or another one)."""
    if tls.pinned_fingerprint(root) is None:
        return None
    mine = tls.host_fingerprint(root)
    return (f"the slave refused this host's certificate {mine} at the TLS handshake: on the slave run "
            f"config setprop hotsync MasterFingerprint {mine}; signal-event nethserver-hotsync-save "
            "(its `hotsync status` shows the certificate this host presented)")


def _tls_diagnosis(root: Root, cfg: Settings) -> str | None:
    """Why a session ended before rsync spoke, in words: the slave does not answer; it presents another
    certificate than the pinned one; it refused this master's certificate. None: it is none of them."""
    try:
        tls.fetch_cert(cfg.slave_host, cfg.port, timeout=10)
    except tls.TLSError as exc:
        return f"{exc}: is the slave's hotsync-stunnel running (hotsync services there), and the port open?"
    return _cert_changed(root, cfg) or _master_cert_refused(root, cfg)


def _cert_changed(root: Root, cfg: Settings) -> str | None:
    pinned = tls.pinned_fingerprint(root)
    if pinned is None:
        return None
    try:
        seen = tls.fingerprint(tls.fetch_cert(cfg.slave_host, cfg.port, timeout=10))
    except tls.TLSError:
        return None
    if seen == pinned:
        return None
    return (f"the slave's TLS certificate changed: pinned {pinned}, the slave now presents {seen}. "
            "Nothing was pushed. If the slave was reinstalled or its certificate renewed, check the "
            "fingerprint with `hotsync status` on the slave, then accept it here with: "
            f"hotsync sync --accept-fingerprint {seen}")


# ------------------------------------------------------------------------------------------- records
def _report(o: Outcome, log, verbose: bool = False) -> None:
    prefix = {"success": "ok", "dry-run": "dry run", "held": "HELD BACK", "failed": "FAILED",
              "cancelled": "not pushed", "interrupted": "interrupted"}[o.result]
    log(f"hotsync sync: {prefix}: {o.message}")
    if o.result in ("failed", "held", "dry-run") or verbose:
        for line in o.details[:None if verbose else 60]:
            log(f"  {line}")


SYNC_LOG_MAX = 8 * 1024 * 1024


def _append_log(root: Root, o: Outcome, start: float, end: float) -> None:
    """One entry per run in ``var/log/hotsync/sync.log`` (rotated to ``.1`` past 8 MiB): the outcome and its
    details (the paths rsync could not send, the deletions a guard held back...)."""
    path = root.log_dir / "sync.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > SYNC_LOG_MAX:
            os.replace(path, path.with_name("sync.log.1"))
        # the counts too: `hotsync log` (hotsync_events.sync.synclog) reads them back for the Cockpit page's chart
        lines = [f"{iso(start)} {o.result} ({end - start:.1f}s, {o.files} files, {o.bytes} bytes, {o.deleted} deleted): "
                 f"{o.message}"]
        lines += [f"    {d}" for d in o.details[:500]]
        with open(open_private_log(path), "a", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write("\n".join(lines) + "\n")
    except OSError:
        pass


def _record(root: Root, cfg: Settings, o: Outcome, start: float, end: float, ctx: dict, *, dry_run, log) -> None:
    if not dry_run:
        _append_log(root, o, start, end)
    run = {"start": start, "end": end, "result": o.result, "message": o.message, "files": o.files,
           "bytes": o.bytes, "deleted": o.deleted, "changes": o.changes, "exit_code": o.exit_code}
    if dry_run or o.result == "cancelled":     # a person said no: nothing happened, nothing to alert about
        update_status(root, lambda d: d.update(last_dry_run=run))
        return
    if o.result == "interrupted":              # a person's deliberate stop: recorded, no alert mail
        update_status(root, lambda d: (d.pop("running", None), d.update(last_run=run)))
        return
    mail: dict = {}

    def change(d: dict) -> None:
        d.pop("running", None)
        d["role"] = "master"
        d["peer"] = f"{cfg.slave_host}:{cfg.port}"
        d["last_run"] = run
        push_history(d, {k: run[k] for k in ("start", "end", "result", "files", "bytes", "exit_code")})
        alert = d.setdefault("alert", {"sent": False})
        if o.result == "success":
            d["last_success"] = {**run, "sources": ctx.get("sources", {})}
            d["failures"] = 0
            if ctx.get("kept") and d.pop("first_push", None) is not None:   # the person's first push is done
                d["first_push_done"] = {"time": end, "kept_on_slave": ctx["kept"]}
            if alert.get("sent"):
                mail["kind"] = "recovered"
            else:
                d["alert"] = {"sent": False}
        else:
            d["failures"] = int(d.get("failures", 0)) + 1
            d["last_error"] = {"time": end, "message": o.message, "details": o.details[:40]}
            if not alert.get("sent"):
                mail["kind"] = "failed"

    data = update_status(root, change)
    if o.fenced is not None:   # demoted: one mail of its own, the schedule stops (hotsync_events.sync.fence)
        from hotsync_events.sync.fence import demote

        if demote(root, o.fenced, slave=cfg.slave_host, mail_to=cfg.mail_to, smarthost=cfg.smarthost, log=log):
            return
    if mail:
        _send_alert(root, cfg, mail["kind"], o, data, log)


def _send_alert(root: Root, cfg: Settings, kind: str, o: Outcome, data: dict, log) -> None:
    host = os.uname().nodename
    last_ok = (data.get("last_success") or {}).get("end")
    if kind == "failed":
        subject = f"HotSync: sync from {host} to {cfg.slave_host} FAILED"
        body = (f"The sync from this master ({host}) to the slave {cfg.slave_host}:{cfg.port} failed at "
                f"{iso(time.time())}.\n\n{o.message}\n\n" + "\n".join(o.details[:40]) +
                f"\n\nLast successful sync: {iso(last_ok) or 'never'}.\n"
                "You get one mail now and one when syncs work again, not one per failed run.\n"
                "Check with: hotsync status\n")
    else:
        subject = f"HotSync: sync from {host} to {cfg.slave_host} works again"
        body = (f"The sync from this master ({host}) to the slave {cfg.slave_host}:{cfg.port} succeeded at "
                f"{iso(time.time())}.\n\n{o.message}\n\nThe last failure was: "
                f"{(data.get('last_error') or {}).get('message', 'unknown')}\n")
    try:
        send_mail(cfg.smarthost, cfg.mail_to, subject, body)
        sent, error = kind == "failed", None
        log(f"hotsync sync: mailed {cfg.mail_to} ({kind})")
    except MailError as exc:
        sent, error = (False if kind == "failed" else True), str(exc)
        log(f"hotsync sync: could not mail {cfg.mail_to}: {exc}")

    def change(d: dict) -> None:
        d["alert"] = {"sent": sent, "kind": kind, "time": time.time(), "to": cfg.mail_to, "error": error}

    update_status(root, change)
