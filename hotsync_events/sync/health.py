"""One verdict for monitoring: is this side of the pair healthy? (``hotsync status --check``, ``--json``,
``--prometheus``).

The states follow the monitoring-plugin convention (Nagios, Icinga, Checkmk...): 0 ok, 1 warning,
2 critical, 3 unknown. The verdict is the worst of its reasons, each in a sysadmin's words. The copy's
age counts every successful push, the scheduled syncs' and the real-time notifier's alike.

* **critical**: this master was fenced; no successful push ever (or none received, on a slave); the
  slave's copy is older than two intervals; a slave whose copy is torn (a push did not complete since
  the last full one).
* **warning**: the copy is older than one interval (and a few minutes); the last run failed or was held
  back by a guard; a first push waits for a person; hotsync is disabled; the real-time notifier should
  run and does not; a slave refused the master's peer copy; one of the package's systemd units failed; a
  database replica is not connected or lags more than a minute (critical when it reports an error or must
  be re-seeded).
* **unknown**: the root does not exist, or hotsync is not configured on it (no role).
"""
from __future__ import annotations

import time

__all__ = ["CODES", "assess", "check_line", "prometheus"]

CODES = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}
#: a scheduled run may start a little late and take a while: the grace before a copy counts as late
GRACE = 300.0


def _worse(a: str, b: str) -> str:
    order = ("ok", "warning", "critical", "unknown")
    return a if order.index(a) >= order.index(b) else b


def copy_age(info: dict, now: float) -> float | None:
    """Seconds since the newest successful push (a sync run's or the notifier's), or None: never."""
    ends = [(info.get("last_success") or {}).get("end")]
    ends.append(((info.get("realtime") or {}).get("last_ok") or {}).get("at"))
    known = [float(e) for e in ends if e is not None]
    return now - max(known) if known else None


def assess(info: dict, now: float | None = None) -> dict:
    """``{"state", "code", "reasons", "perfdata"}`` for the status *info* (:func:`hotsync_events.sync.report.collect`,
    with its ``realtime`` part)."""
    now = time.time() if now is None else now
    state, reasons = "ok", []

    def add(level: str, why: str) -> None:
        nonlocal state
        state = _worse(state, level)
        reasons.append(f"{level.upper()}: {why}")

    role = info.get("role") or ""
    age = copy_age(info, now)
    interval = float(info.get("interval_minutes") or 15) * 60
    if not info.get("root_exists", True):
        add("unknown", f"the root {info.get('root')} does not exist")
    elif role not in ("master", "slave"):
        add("unknown", "hotsync is not configured on this host (config setprop hotsync role master|slave)")
    elif info.get("status") == "disabled":
        add("warning", "hotsync is disabled on this host")
    elif info.get("status") == "fenced":
        add("critical", "this master was FENCED: its slave was promoted; re-pair it as the slave")
    else:
        if info.get("awaiting_person"):
            add("warning", info["awaiting_person"])
        if age is None:
            add("critical", "no successful push yet" if role == "master" else "no push received yet")
        elif age > 2 * interval + GRACE:
            add("critical", f"the slave's copy is {int(age)} s old, more than two intervals")
        elif age > interval + GRACE:
            add("warning", f"the slave's copy is {int(age)} s old, more than an interval")
        last = info.get("last_run") or {}
        if role == "master" and last.get("result") == "failed":
            add("warning", f"the last run failed: {last.get('message', '')[:200]}")
        if role == "master" and last.get("result") == "held":
            add("warning", f"the last run was held back: {last.get('message', '')[:200]}")
        rt = info.get("realtime")
        if role == "master" and info.get("realtime_wanted") and not (rt or {}).get("alive"):
            add("warning", "real-time sync is enabled but the notifier is not running")
        if role == "slave" and info.get("unclean"):
            add("critical", "the copy is torn: a push did not complete since the last full one")
        for u in info.get("units") or ():
            if u.get("ActiveState") == "failed":
                add("warning", f"the unit {u.get('Id')} failed ({u.get('Result')}): systemctl status {u.get('Id')}")
        if role == "slave" and info.get("peer_refused"):
            add("warning", "the master's last peer copy was refused (see hotsync status)")
        from hotsync_events.sync.replicas import health_reasons

        for level, why in health_reasons(info.get("replicas") or []):
            add(level, why)
        if role == "slave":
            from hotsync_events.sync.drill_status import drill_reasons

            last = info.get("drill")
            for level, why in drill_reasons({"last": last} if last and not last.get("error") else
                                            ({"error": last["error"]} if last else None),
                                            info.get("drill_schedule") or "off", role, now):
                add(level, why)
    if not reasons:
        reasons.append("OK: " + (f"the slave's copy is {int(age)} s old" if age is not None else "nothing to say"))
    queued = int((info.get("realtime") or {}).get("queued_paths") or 0)
    last_end = (info.get("last_run") or {}).get("end")
    perf = {"copy_age": None if age is None else round(age, 1),
            "last_run": None if last_end is None else round(now - float(last_end), 1),
            "queued": queued, "warn": round(interval + GRACE), "crit": round(2 * interval + GRACE)}
    return {"state": state, "code": CODES[state], "reasons": reasons, "perfdata": perf}


def check_line(h: dict, role: str) -> str:
    """The monitoring plugin's one line: ``HOTSYNC OK - ... | copy_age=12s;1200;2100 last_run=12s queued=0``."""
    p = h["perfdata"]
    perf = " ".join([
        f"copy_age={p['copy_age'] if p['copy_age'] is not None else 'U'}s;{p['warn']};{p['crit']}",
        f"last_run={p['last_run'] if p['last_run'] is not None else 'U'}s",
        f"queued={p['queued']}"])
    words = "; ".join(r.split(": ", 1)[1] for r in h["reasons"])
    return f"HOTSYNC {h['state'].upper()} - {role or 'unconfigured'}: {words} | {perf}"


def _lv(value: object) -> str:
    """A label value in the exposition format: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus(info: dict, h: dict) -> str:
    """node-exporter's textfile-collector format (``--collector.textfile.directory``)."""
    role = _lv(info.get("role") or "none")
    p = h["perfdata"]
    ok = info.get("last_success") or {}
    lines = [
        "# HELP hotsync_health Health of this side of the pair: 0 ok, 1 warning, 2 critical, 3 unknown.",
        "# TYPE hotsync_health gauge",
        f'hotsync_health{{role="{role}"}} {h["code"]}',
        "# HELP hotsync_copy_age_seconds Seconds since the newest successful push to (or from) the peer.",
        "# TYPE hotsync_copy_age_seconds gauge",
        f"hotsync_copy_age_seconds {p['copy_age'] if p['copy_age'] is not None else 'NaN'}",
        "# HELP hotsync_last_success_timestamp_seconds When the last successful sync run ended (Unix time).",
        "# TYPE hotsync_last_success_timestamp_seconds gauge",
        f"hotsync_last_success_timestamp_seconds {ok.get('end') if ok.get('end') is not None else 'NaN'}",
        "# HELP hotsync_queued_paths Changed paths the real-time notifier has not pushed yet.",
        "# TYPE hotsync_queued_paths gauge",
        f"hotsync_queued_paths {p['queued']}",
        "# HELP hotsync_failures Failed runs since the last success.",
        "# TYPE hotsync_failures gauge",
        f"hotsync_failures {int(info.get('failures') or 0)}",
    ]
    replicas = info.get("replicas") or []
    if replicas:
        lines += ["# HELP hotsync_replica_connected Whether each database replica streams (1) or not (0).",
                  "# TYPE hotsync_replica_connected gauge"]
        lines += [f'hotsync_replica_connected{{name="{_lv(r["name"])}",engine="{_lv(r.get("engine") or "")}"}} '
                  f"{1 if r.get('connected') else 0}" for r in replicas]
        lines += ["# HELP hotsync_replica_lag_seconds How far each database replica is behind its master.",
                  "# TYPE hotsync_replica_lag_seconds gauge"]
        lines += [f'hotsync_replica_lag_seconds{{name="{_lv(r["name"])}",engine="{_lv(r.get("engine") or "")}"}} '
                  f"{r['lag_seconds'] if r.get('lag_seconds') is not None else 'NaN'}" for r in replicas]
    return "\n".join(lines) + "\n"
