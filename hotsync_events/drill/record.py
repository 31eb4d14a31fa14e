"""The drill's record in the slave's status (``var/lib/hotsync/sync/drill.json``) and its mail.

The file holds ``last`` (the last drill: its verdict, causes, checks, how long the promote took, the age of
the data it used), ``history`` (the last few verdicts) and ``mail`` (whether a failure mail is out). One
mail goes to ``hotsync MailTo`` when a drill fails after one that passed (or after none), and one when a
drill passes again after a failure mail; never one per failed drill.
"""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

from hotsync_events.fsutil import atomic_write
from hotsync_events.paths import Root
from hotsync_events.sync.drill_status import drill_path, read_drill, schedule_of

__all__ = ["HISTORY_KEEP", "finish_record"]

HISTORY_KEEP = 20


def _record(root: Root, report: dict) -> dict:
    from hotsync_events.configdb import open_db

    db = open_db("configuration", root, validate=False, initialise=False, journal=False, create=False)
    promote = report.get("promote") or {}
    a = report.get("assessment") or {}
    now = time.time()
    return {
        "time": now, "started": report.get("started"), "result": report.get("result") or
        ("failed" if report.get("causes") else "passed"),
        "causes": report.get("causes") or [], "notes": report.get("notes") or [],
        "wall_time": report.get("wall_time"),
        "promote_time": promote.get("duration"), "promote_timings": promote.get("timings"),
        "promote_exit": promote.get("exit"), "promote_steps": promote.get("steps"),
        "databases": promote.get("dbs"),
        "data_age": a.get("data_age") if a.get("data_age") is not None else report.get("data_age_at_start"),
        "last_complete_sync": a.get("last_complete_sync"),
        "checks": report.get("checks") or [], "schedule": schedule_of(db),
        "promote_log": (promote.get("log") or [])[-60:], "logs": report.get("logs") or {},
        "mode": report.get("mode") or "process", "boot": report.get("boot"), "reboot": report.get("reboot"),
        **({"keep": report["keep"]} if report.get("keep") else {}),
    }


def finish_record(root: Root, report: dict, *, mail: bool = True, log: Callable[[str], None] = print) -> dict:
    """Write the drill's record (atomically) and send the failure or recovery mail; returns the record."""
    rec = _record(root, report)
    old = read_drill(root) or {}
    state = dict(old.get("mail") or {})
    if mail:
        state = _mail(root, rec, state, log)
    hist = [h for h in (old.get("history") or []) if isinstance(h, dict)]
    hist.append({"time": rec["time"], "result": rec["result"], "wall_time": rec["wall_time"],
                 "causes": rec["causes"][:3]})
    data = {"last": rec, "mail": state, "history": hist[-HISTORY_KEEP:]}
    atomic_write(drill_path(root), json.dumps(data, indent=1, sort_keys=True, default=str) + "\n", mode=0o600)
    return rec


def _mail(root: Root, rec: dict, state: dict, log: Callable[[str], None]) -> dict:
    from hotsync_events.configdb import open_db
    from hotsync_events.sync.mail import MailError, send_mail

    failed = rec["result"] == "failed"
    if failed == bool(state.get("sent")):
        return state          # a failure mail is out and it still fails, or all is well and was well
    db = open_db("configuration", root, validate=False, initialise=False, journal=False, create=False)
    h = db.props("hotsync") if "hotsync" in db else {}
    host = socket.gethostname()
    if failed:
        subject = f"HotSync: takeover drill FAILED on {host}"
        body = ("The takeover drill of this slave failed: promoting it now would not give a working master.\n\n"
                + "\n".join(f"* {c}" for c in rec["causes"]) + "\n\nhotsync status shows the drill; run "
                "hotsync drill again after fixing the cause. Root: " + str(root.path) + "\n")
    else:
        subject = f"HotSync: takeover drill passes again on {host}"
        body = (f"The takeover drill of this slave passed (the promote took {rec.get('promote_time')} s).\n"
                f"Root: {root.path}\n")
    try:
        send_mail(h.get("SmartHost") or "localhost:25", h.get("MailTo") or "root@localhost", subject, body)
    except MailError as exc:
        log(f"drill: mail not sent: {exc}")
        return {**state, "error": str(exc), "error_time": time.time()}
    return {"sent": failed, "time": time.time(), "to": h.get("MailTo") or "root@localhost", "subject": subject}
