"""The record of a push: its lines in the output, its entry in the sync log, the status file, and the alert
mail (one when syncs start failing, one when they work again)."""
from __future__ import annotations

import os
import time

from hotsync_events.fsutil import open_private_log
from hotsync_events.paths import Root
from hotsync_events.sync.outcome import Outcome
from hotsync_events.sync.settings import Settings
from hotsync_events.sync.status import iso, push_history, update_status

__all__ = ["SYNC_LOG_MAX", "append_log", "record_outcome", "report_outcome", "send_alert"]


def report_outcome(o: Outcome, log, verbose: bool = False) -> None:
    prefix = {"success": "ok", "dry-run": "dry run", "held": "HELD BACK", "failed": "FAILED",
              "cancelled": "not pushed", "interrupted": "interrupted"}[o.result]
    log(f"hotsync sync: {prefix}: {o.message}")
    if o.result in ("failed", "held", "dry-run") or verbose:
        for line in o.details[:None if verbose else 60]:
            log(f"  {line}")


SYNC_LOG_MAX = 8 * 1024 * 1024


def append_log(root: Root, o: Outcome, start: float, end: float) -> None:
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


def record_outcome(root: Root, cfg: Settings, o: Outcome, start: float, end: float, ctx: dict, *, dry_run, log) -> None:
    if not dry_run:
        append_log(root, o, start, end)
    run = {"start": start, "end": end, "result": o.result, "message": o.message, "files": o.files,
           "bytes": o.bytes, "deleted": o.deleted, "changes": o.changes, "exit_code": o.exit_code,
           "sessions": list(ctx.get("sessions") or [])}
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

    data = update_status(root, change, public_later=True)     # the snapshot for readers without root: after us
    if o.fenced is not None:   # demoted: one mail of its own, the schedule stops (hotsync_events.sync.fence)
        from hotsync_events.sync.fence import demote

        if demote(root, o.fenced, slave=cfg.slave_host, mail_to=cfg.mail_to, smarthost=cfg.smarthost, log=log):
            return
    if mail:
        send_alert(root, cfg, mail["kind"], o, data, log)


def send_alert(root: Root, cfg: Settings, kind: str, o: Outcome, data: dict, log) -> None:
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
    from hotsync_events.sync.mail import MailError, send_mail     # smtplib: only when a mail goes out

    try:
        send_mail(cfg.smarthost, cfg.mail_to, subject, body)
        sent, error = kind == "failed", None
        log(f"hotsync sync: mailed {cfg.mail_to} ({kind})")
    except MailError as exc:
        sent, error = kind != "failed", str(exc)
        log(f"hotsync sync: could not mail {cfg.mail_to}: {exc}")

    def change(d: dict) -> None:
        d["alert"] = {"sent": sent, "kind": kind, "time": time.time(), "to": cfg.mail_to, "error": error}

    update_status(root, change)
