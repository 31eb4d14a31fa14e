"""Streaming replicas of the plugins' database servers (hook ``hotsync_replicas``), for the status and the promote.

The core knows no database engine: a plugin returns :class:`~hotsync_events.types.Replica` objects whose
``engine`` implements the kit's replication protocol (:class:`hotsync_events.dbkit.replica.ReplicationEngine`)
and this module calls only ``status``/``master_status`` (:func:`replica_status`, for ``hotsync status``) and
``promote`` (:func:`promote_replicas`, for ``hotsync-promote``: the takeover position, a GTID or an LSN,
goes into the promote's journal). See docs/replication.md.
"""
from __future__ import annotations

import os
from collections.abc import Callable

from hotsync_events.paths import Root
from hotsync_events.types import Replica

__all__ = ["MODE_PROP", "alert_replicas", "collect_replicas", "engine_name", "health_reasons", "promote_replicas", "replica_lines",
           "replica_status", "replicas_wanted"]

#: the prop of a database server's key that switches it from dumps to a streaming replica
MODE_PROP = "DatabaseMode"
#: a replica this many seconds behind is mailed about like a broken one (the health warns from 60 s)
LAG_ALERT = 300.0


def replicas_wanted(db, *, synchronous: bool = False) -> bool:
    """Whether some key asks for a replica (``<key> DatabaseMode replica``; with *synchronous*, also
    ``ReplicationSync on``): only then does the status load the plugins to ask them (a pair of dumps only
    pays nothing)."""
    try:
        return any((db.getprop(key, MODE_PROP) or "") == "replica"
                   and (not synchronous or (db.getprop(key, "ReplicationSync") or "") == "on") for key in db.keys())
    except Exception:  # an unreadable database: the status says so elsewhere
        return False


def collect_replicas(pm, db, root: Root | None = None) -> list[tuple[str, Replica]]:
    """``[(plugin, Replica)]`` in (priority, name) order; one name from two plugins is a RegistrationError."""
    return pm.registered("hotsync_replicas", Replica, root=root, db=db)


def unknown_replicas(pm) -> list[tuple[str, str]]:
    """``[(plugin, why)]``: the plugins whose replicas are not known this time. Their ``hotsync_replicas``
    raised; or their ``hotsync_detect`` raised, which leaves them inactive, so a replica they declare was not
    asked for at all (a promote that went on without it would leave that database a read-only replica)."""
    errors = list(getattr(pm, "hook_errors", None) or [])
    hook = getattr(getattr(pm, "hook", None), "hotsync_replicas", None)
    declaring = {getattr(i, "plugin_name", "") for i in (hook.get_hookimpls() if hook is not None else [])}
    out = [(plugin, f"its hotsync_replicas hook: {error}") for plugin, h, error in errors if h == "hotsync_replicas"]
    out += [(plugin, f"its hotsync_detect hook failed, so its replicas were not asked for: {error}")
            for plugin, h, error in errors if h == "hotsync_detect" and plugin in declaring]
    return out


def engine_name(rep: Replica) -> str:
    """The engine a replica runs (``mariadb``, ``postgresql``), as its engine says."""
    return str(getattr(rep.engine, "engine", "") or "")


def replica_status(root: Root, db, role: str, *, pm=None) -> list[dict]:
    """One JSON-ready dict per declared replica: the engine's status on a slave (``side`` replica: state,
    connected, ``lag_seconds``/``lag_bytes``/``lag_transactions``, ``last_error``, ``needs_seed``), its
    master status on a master (``side`` master: whether the replica streams, its lag as the master sees
    it). An engine that fails is reported as ``state: error`` with its message, never raised."""
    if pm is None:
        from hotsync_events.manager import plugin_manager

        pm = plugin_manager(root)
    from hotsync_events.sync.status import read_status

    st = read_status(root)
    setups = ((st.get("replication_setup") or {}).get("replicas") or {})
    died = _setup_died(st.get("replication_setup") or {}, root)
    guarded = ((st.get("replica_sync") or {}).get("replicas") or {}) if role == "master" else {}
    out = []
    for plugin, rep in collect_replicas(pm, db, root):
        entry: dict = {"name": rep.name, "plugin": plugin, "engine": engine_name(rep)}
        setup = setups.get(rep.name) or {}
        entry["setup"] = died or setup.get("error") or (f"waiting {setup['waiting']}" if setup.get("waiting") else None)
        if setup.get("kept_previous"):
            entry["kept_previous"] = setup["kept_previous"]
        if rep.name in guarded:          # the synchronous guard's last look (sync/replguard.py)
            entry["sync_guard"] = guarded[rep.name]
        if setup.get("saved_to"):
            entry["saved"] = {"path": setup["saved_to"], "transactions": setup.get("transactions"),
                              "time": setup.get("repaired")}
        try:
            if role == "master" and rep.link is not None:
                ms = rep.engine.master_status(rep.link).to_json()
                entry.update(ms, side="master", connected=ms.get("replica_connected", False),
                             state=ms.get("replica_state") or ("needs-seed" if ms.get("needs_seed") else
                                                               "not connected"),
                             last_error=None)
            else:
                entry.update(rep.engine.status(rep.link).to_json(), side="replica")
        except Exception as exc:  # the status reports, it never fails on an engine
            entry.update(side="master" if role == "master" else "replica", state="error", connected=False,
                         last_error=f"{type(exc).__name__}: {exc}")
        for k in ("lag_seconds", "lag_bytes", "lag_transactions"):
            entry.setdefault(k, None)
        out.append(entry)
    for plugin, why in unknown_replicas(pm):
        out.append({"name": f"({plugin})", "plugin": plugin, "engine": "", "side": "?", "state": "error",
                    "connected": False, "lag_seconds": None, "lag_bytes": None, "lag_transactions": None,
                    "last_error": why})
    return out


def _setup_died(rec: dict, root: Root | None = None) -> str | None:
    """Why the slave's last background setup tells nothing: it was started and ended without a record (and
    no setup holds the setup lock of *root* now: a second start that found the first one running exits
    at once, and must not make the first look dead)."""
    said = _setup_gone(rec)
    if said is not None and root is not None:
        from hotsync_events.sync.replsetup import setup_running

        if setup_running(root):
            return None                 # one runs: the seed started first, still at work
    return said


def _setup_gone(rec: dict) -> str | None:
    started = rec.get("started") or {}
    if not started or float(started.get("time") or 0) <= float(rec.get("last") or 0):
        return None
    said = (f"the last setup ({'unit ' + str(started['unit']) if started.get('unit') else 'pid ' + str(started.get('pid'))})"
            " ended without a word: see /var/log/hotsync/replicas.log, then run hotsync replicas setup")
    if started.get("unit"):             # its own unit (systemd-run): systemd knows whether it runs
        import subprocess

        try:
            state = subprocess.run(["systemctl", "is-active", str(started["unit"])], capture_output=True, text=True,
                                   timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None                 # cannot tell: say nothing
        return None if state in ("active", "activating", "deactivating", "reloading") else said
    try:
        pid = int(started.get("pid") or 0)
        if pid <= 0:
            return said
        os.kill(pid, 0)
        return None                     # still running (a seed takes a while)
    except (ProcessLookupError, ValueError):
        return said
    except PermissionError:
        return None


def _lag_words(r: dict) -> str:
    parts = []
    if r.get("lag_seconds") is not None:
        parts.append(f"{float(r['lag_seconds']):.1f} s")
    if r.get("lag_bytes") is not None:
        parts.append(f"{int(r['lag_bytes'])} bytes")
    if r.get("lag_transactions") is not None:
        parts.append(f"{int(r['lag_transactions'])} transactions")
    return ", ".join(parts) or "unknown"


def replica_lines(replicas: list[dict]) -> list[str]:
    """``hotsync status``'s lines: one per replica (state, connected, lag, last error)."""
    lines = []
    for r in replicas:
        side = "replica of the master's" if r.get("side") == "replica" else "master of the slave's"
        lines.append(f"database {r['name']}:".ljust(19) + f"{r.get('engine') or '?'} {side}: {r.get('state')}, "
                     f"{'connected' if r.get('connected') else 'NOT connected'}, lag {_lag_words(r)}"
                     + (", must be re-seeded" if r.get("needs_seed") else ""))
        if r.get("last_error"):
            lines.append(" " * 19 + f"last error: {r['last_error']}")
        if r.get("setup"):
            lines.append(" " * 19 + f"setup: {r['setup']}")
        if r.get("kept_previous"):
            lines.append(" " * 19 + f"seeded: what the server held before is kept beside its data directory "
                         f"(*.{r['kept_previous']}): look at it, then remove it")
        guard = r.get("sync_guard") or {}
        if guard.get("state") in ("off", "waiting"):
            lines.append(" " * 19 + "synchronous: " + ("switched to asynchronous by the guard (its replica "
                         "acknowledged nothing); back once it streams" if guard["state"] == "off" else
                         "WAITING for the replica to acknowledge (the guard switches it off after 10 s)"))
        if r.get("saved"):
            lines.append(" " * 19 + f"re-paired: what this server committed after the takeover "
                         f"({r['saved'].get('transactions')} transactions) is saved in {r['saved']['path']}; "
                         "look at it, then remove the folder")
    return lines


def health_reasons(replicas: list[dict], *, lag_warning: float = 60.0) -> list[tuple[str, str]]:
    """``[(level, why)]`` for the health: a replica with an error or needing a seed is critical, one not
    connected or lagging more than *lag_warning* seconds a warning."""
    out = []
    for r in replicas:
        name = f"database replica {r['name']}"
        if r.get("needs_seed"):
            out.append(("critical", f"{name} must be re-seeded: {r.get('last_error') or 'its master lost its place'}"))
        elif r.get("state") == "error" or (r.get("last_error") and not r.get("connected")):
            out.append(("critical", f"{name}: {r.get('last_error')}"))
        elif not r.get("connected") and (r.get("side") == "master" or r.get("role") != "master"):
            out.append(("warning", f"{name} is not connected ({r.get('setup') or r.get('state')})"))
        elif (r.get("lag_seconds") or 0) > lag_warning:
            out.append(("warning", f"{name} lags {float(r['lag_seconds']):.0f} s behind"))
        elif r.get("setup") and not str(r["setup"]).startswith("waiting"):
            out.append(("warning", f"{name}: {r['setup']}"))
    return out


def _prepare(root: Root, rep: Replica, *, log: Callable[[str], None], err: Callable[[str], None]) -> dict:
    """The promoted server made a master its old master can follow (account, pins, settings); a failure is
    reported, never the promote's (the re-pair needs it, the takeover does not)."""
    from hotsync_events.sync.replchannel import with_peer_subject

    try:
        prep = rep.engine.prepare_master(with_peer_subject(root, rep.master_link, engine_name(rep)), log=log)
    except Exception as exc:                 # reported and journaled
        err(f"database replica {rep.name}: promoted, but not prepared as the master of "
            f"{rep.master_link.replica_host}: {exc}")
        return {"ready": False, "error": str(exc)}
    if prep.restart_needed:
        log(f"database replica {rep.name}: prepared as the master of {rep.master_link.replica_host}; "
            f"a restart of the server is needed for {', '.join(prep.restart_needed)}")
    return {"ready": bool(prep.ready), "restart_needed": list(prep.restart_needed)}


def promote_replicas(root: Root, db, pm, journal: dict, *, force: bool = False, dry_run: bool = False,
                     log: Callable[[str], None] = print, err: Callable[[str], None] = print,
                     save: Callable[[], None] = lambda: None) -> list[str]:
    """Promote each declared replica not promoted yet (per *journal*, ``{name: entry}``), recording its
    takeover position (``position``: engine, value, timeline), whether it caught up and its notes, then
    prepare it as the master of its old master (``master_link``: ``prepared``); with *dry_run* only report
    the lag and what would be lost. Returns the names that failed.

    A real promote first takes the replicas' setup lock (waiting at most PROMOTE_WAIT seconds): a seed in
    progress has the server stopped and its data directory being swapped; it must end first."""
    if dry_run:
        return _promote_each(root, db, pm, journal, force=force, dry_run=True, log=log, err=err, save=save)
    from hotsync_events.sync.replsetup import setup_lock

    with setup_lock(root, wait=PROMOTE_WAIT) as got:
        if got:
            return _promote_each(root, db, pm, journal, force=force, dry_run=False, log=log, err=err, save=save)
    failed = []
    for plugin, rep in collect_replicas(pm, db, root):
        if (journal.get(rep.name) or {}).get("status") == "success":
            continue
        why = (f"a database replicas setup still runs on this host after {PROMOTE_WAIT:.0f} s (a seed: see "
               "/var/log/hotsync/replicas.log): wait for it to end, then run hotsync-promote again")
        err(f"database replica {rep.name} (plugin {plugin}): FAILED: {why}")
        # not even --force goes past it: the seed, once done, would make the server a replica again
        journal[rep.name] = {**(journal.get(rep.name) or {}), "status": f"failed: {why}", "engine": engine_name(rep),
                             "setup_running": True}
        failed.append(rep.name)
    save()
    return failed


#: how long a promote waits for a replicas setup (a seed) in progress on this host
PROMOTE_WAIT = 120.0


def _was_replica(rep: Replica) -> bool | None:
    """Whether the engine says its server is a replica now; None when it cannot tell."""
    try:
        return rep.engine.status(rep.link).role == "replica"
    except Exception:
        return None


def _merged(before: bool | None, now: bool | None) -> bool | None:
    """A replica at any attempt, else unknown at any, else not."""
    return True if True in (before, now) else None if None in (before, now) else False


def _promote_each(root: Root, db, pm, journal: dict, *, force: bool, dry_run: bool, log, err, save) -> list[str]:
    failed = []
    # a plugin's hook errors of this run only (the manager keeps them for the process: an earlier look's
    # error, since mended, must not fail this promote)
    errors = getattr(pm, "hook_errors", None)
    if isinstance(errors, list):
        errors[:] = [e for e in errors if e[1] not in ("hotsync_replicas", "hotsync_detect")]
    replicas = collect_replicas(pm, db, root)
    if not dry_run:
        # an earlier run's hook errors ("(plugin)" entries) are derived anew below from this run's; a replica's
        # own entry stays, whether its plugin answered this run or not (an attempt may have taken it over)
        gone = [n for n in journal if n.startswith("(")]
        for name in gone:
            del journal[name]
        if gone:
            save()
    for plugin, rep in replicas:
        prev = journal.get(rep.name) or {}
        if not dry_run and prev.get("status") == "success":
            continue
        if not dry_run:      # before the engine acts: a run stopped in the middle is known by the next one
            before = prev.get("was_replica") if prev.get("attempted") else False
            journal[rep.name] = {**{k: v for k, v in prev.items() if k != "setup_running"}, "status": "promoting",
                                 "engine": engine_name(rep), "attempted": True,
                                 "was_replica": _merged(before, _was_replica(rep))}
            save()
        try:
            res = rep.engine.promote(timeout=rep.promote_timeout, dry_run=dry_run, force=force, log=log)
        except Exception as exc:  # reported and journaled
            err(f"database replica {rep.name} (plugin {plugin}): FAILED: {exc}")
            if not dry_run:
                journal[rep.name] = {**journal[rep.name], "status": f"failed: {exc}"}
                save()
            failed.append(rep.name)
            continue
        data = res.to_json()
        pos = data.get("position") or {}
        if dry_run:
            log(f"database replica {rep.name}: would take over at {pos.get('value') or '?'}; lag "
                f"{res.lag_seconds if res.lag_seconds is not None else '?'} s; not applied yet: "
                f"{res.not_applied or 'nothing'}; would lose: {res.would_lose or 'nothing known'}"
                + "".join(f"; {n}" for n in res.notes))
            continue
        # "not a replica" now, a replica when an earlier attempt began: that attempt took it over (and stopped
        # before its record); a server that never was one is not "resumed" (its backup is what it gets)
        # (unknown then counts as a replica: a backup restored over a server that took over destroys what the
        # backup lacks; one not restored is kept, and said)
        resumed = res.finished_earlier or (bool(prev.get("attempted")) and prev.get("was_replica") is not False
                                           and res.already_master)
        entry = journal[rep.name] = {"status": "success", "engine": engine_name(rep), "position": pos,
                                     "caught_up": res.caught_up, "waited": res.waited, "notes": list(res.notes),
                                     "would_lose": res.would_lose, "attempted": True,
                                     "already_master": res.already_master,
                                     "was_replica": journal[rep.name].get("was_replica", False), "resumed": resumed}
        save()
        log(f"database replica {rep.name} (plugin {plugin}): promoted at {pos.get('value')}"
            + (f" (timeline {pos['timeline']})" if pos.get("timeline") is not None else "")
            + "".join(f"; {n}" for n in res.notes))
        if rep.master_link is not None:
            entry["prepared"] = _prepare(root, rep, log=log, err=err)
            save()
    for plugin, why in unknown_replicas(pm):     # a plugin that could not say its replicas: not promoted
        name = f"({plugin})"
        err(f"database replicas of plugin {plugin}: FAILED: {why}")
        if not dry_run:
            journal[name] = {"status": f"failed: {why}"}
            save()
        failed.append(name)
    return failed


#: the slave mails a break it saw at two looks this far apart at least (its cron looks every 5 minutes): a
#: master that restarts, or a link that drops for a minute, is not an alert
SLAVE_GRACE = 240.0


def alert_replicas(root: Root, db, cfg, *, pm=None, log: Callable[[str], None] = print,
                   who: str = "hotsync sync", now: float | None = None) -> dict | None:
    """One mail to ``MailTo`` when a replica breaks (an error, a re-seed needed, not connected, or more than
    LAG_ALERT seconds behind), one when they all work again; not one per look (the state is the status file's
    ``replica_alert``, kept per role: a promoted or re-paired host starts afresh; the returned dict adds
    ``current``, what is broken at this look). The master looks after each
    sync; the slave every 5 minutes (``hotsync replicas check``, from cron), for its replicas that followed
    the master once (one being seeded is not broken), and mails a break it saw at two looks SLAVE_GRACE
    apart: a master that died sends nothing, its slave does. None when no server runs as a replica."""
    import os
    import time

    if not replicas_wanted(db):
        return None
    from hotsync_events.sync.mail import MailError, send_mail      # smtplib and ssl: only where replicas run
    from hotsync_events.sync.status import read_status, update_status

    now = time.time() if now is None else now
    master = cfg.role == "master"
    reps = replica_status(root, db, cfg.role, pm=pm)
    st = read_status(root)
    if not master:
        setups = (st.get("replication_setup") or {}).get("replicas") or {}

        def followed(r: dict) -> bool:
            rec = setups.get(r["name"]) or {}
            # seeded, re-paired, or configured (a server that already was a replica: no seed needed)
            return rec.get("role") == "slave" and any(rec.get(k) for k in ("seeded", "repaired", "configured"))
        reps = [r for r in reps if followed(r) or str(r["name"]).startswith("(")]     # and the plugins' errors
    broken = [why for level, why in health_reasons(reps, lag_warning=LAG_ALERT) if level in ("warning", "critical")]
    state = st.get("replica_alert") or {}
    if state.get("role", "master") != cfg.role:
        state = {}                           # written as the other role: this host starts afresh
    state = {"sent": False, **state, "role": cfg.role}
    if bool(broken) == bool(state.get("sent")):
        if not broken and state.get("seen"):
            state.pop("seen")                # a break seen once, gone by the next look: no mail
            update_status(root, lambda d: d.update(replica_alert=state))
        return {**state, "current": broken}
    if broken and not master and now - float(state.get("seen") or now) < SLAVE_GRACE:
        if not state.get("seen"):
            state["seen"] = now
            update_status(root, lambda d: d.update(replica_alert=state))
        return {**state, "current": broken}
    host = os.uname().nodename
    if broken and master:
        subject = f"HotSync: database replication from {host} is BROKEN"
        body = ("Database replication between this master ({}) and its slave {} does not work:\n\n{}\n\n"
                "Until it is fixed a promote loses what the slave's databases did not receive.\n"
                "You get one mail now and one when it works again. Check with: hotsync status\n"
                ).format(host, cfg.slave_host, "\n".join(broken))
    elif broken:
        subject = f"HotSync: database replication to {host} from its master is BROKEN"
        body = ("The database replicas of this slave ({}) do not follow the master {}:\n\n{}\n\n"
                "If the master is down, a promote takes over at what the replicas hold (hotsync-promote "
                "--dry-run shows their lag and what would be lost). If it is up, look at both hosts with: "
                "hotsync status\nYou get one mail now and one when it works again.\n"
                ).format(host, cfg.master_host, "\n".join(broken))
    else:
        subject = f"HotSync: database replication {'from' if master else 'to'} {host} works again"
        body = (f"Every database replica of this {'master' if master else 'slave'} ({host}) streams again:\n\n"
                + "\n".join(replica_lines(reps)) + "\n")
    what = "database replication " + ("broken" if broken else "works again")
    try:
        send_mail(cfg.smarthost, cfg.mail_to, subject, body)
        sent, error = bool(broken), None
        log(f"{who}: mailed {cfg.mail_to} ({what})")
    except MailError as exc:
        sent, error = not broken, str(exc)
        log(f"{who}: could not mail {cfg.mail_to} about the {what}: {exc}")
    new = {"sent": sent, "time": time.time(), "to": cfg.mail_to, "error": error, "reasons": broken,
           "role": cfg.role}
    update_status(root, lambda d: d.update(replica_alert=new))
    return {**new, "current": broken}
