"""The notifier's status file: where it lives, how ``hotsync status`` reads and words it.

The notifier (:mod:`hotsync_events.realtime.notifier`) writes it; the sync's report, the fence and the
public status read it. It lives in the sync's room, as every status record does, so that none of them
imports the real-time package (or watchdog).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from hotsync_events.paths import Root

__all__ = ["STATUS_FILE", "read_status", "status_lines"]

#: status file, under the root's run directory: it describes a running process
STATUS_FILE = "realtime.json"


def read_status(root: Root) -> dict | None:
    """The notifier's last status (None if it never ran under this root); ``alive`` tells whether the
    process that wrote it still runs."""
    path = Path(root.run_dir) / STATUS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    alive = False
    if data.get("running_now") and isinstance(data.get("pid"), int):
        try:
            os.kill(data["pid"], 0)
            alive = True
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
    data["alive"] = alive
    return data


def _when(record: dict) -> str:
    if not record:
        return "never"
    at = time.strftime("%Y-%m-%d %H:%M:%S%z", time.localtime(record.get("at", 0)))
    what = "full sync" if record.get("paths") is None else f"{record['paths']} path(s)"
    ok = "ok" if record.get("ok") else "FAILED"
    return (f"{at}: {what}, {ok}, took {record.get('seconds', 0):.3f} s, on the slave "
            f"{record.get('latency', 0):.3f} s after the change")


def _persisted_last_stop(root: Root) -> dict | None:
    """The last push of the notifier's last clean stop, as the sync's status file keeps it (across reboots)."""
    from hotsync_events.sync.status import read_status as sync_status

    return sync_status(root).get("notifier_last_stop") or None


def last_stop_text(rec: dict) -> str:
    """One line for the last push the notifier made at a clean stop (SIGTERM, systemctl stop, a shutdown)."""
    at = time.strftime("%Y-%m-%d %H:%M:%S%z", time.localtime(rec.get("at", 0)))
    if rec.get("paths") == 0:
        return f"{at}: nothing was pending"
    what = "full sync" if rec.get("paths") is None else f"{rec['paths']} path(s)"
    if rec.get("ok"):
        return f"{at}: {what}, ok, took {rec.get('seconds', 0):.3f} s"
    return f"{at}: {what}, FAILED after {rec.get('seconds', 0):.3f} s: {rec.get('error', '')}"


def status_lines(root: Root) -> list[str]:
    """``hotsync status``'s real-time part, in its label column."""
    st = read_status(root)
    if st is None:
        stop = _persisted_last_stop(root)
        if stop:
            return ["realtime:          the notifier has not run on this host since it booted; its last stop push: "
                    + last_stop_text(stop)]
        return ["realtime:          the notifier has not run on this host"]
    state = f"running (pid {st.get('pid')})" if st["alive"] else "not running"
    lines = [f"realtime:          {state}, {st.get('watched_dirs', 0)} directories watched under "
             + (", ".join(st.get("watched_paths") or []) or "no path")]
    if st.get("missing_paths"):
        lines.append("  not there yet:   " + ", ".join(st["missing_paths"]) + " (watched when they appear)")
    pend = st.get("full_sync_pending")
    lines.append(f"  queued paths:    {st.get('queued_paths', 0)}" + (f"; full sync pending: {pend}" if pend else ""))
    lines.append("  last push:       " + _when(st.get("last_push") or {}))
    lines.append("  last full sync:  " + _when(st.get("last_full") or {}))
    lines.append(f"  overflows seen:  {st.get('overflows', 0)} (pushes {st.get('pushes', 0)}, "
                 f"failures {st.get('failures', 0)}, dirty-set collapses {st.get('collapses', 0)})")
    beat = st.get("heartbeat") or {}
    if beat.get("every"):
        last = beat.get("last")
        lines.append(f"  heartbeat:       every {beat['every']} s of quiet; last "
                     + ("none yet" if not last else time.strftime("%Y-%m-%d %H:%M:%S%z", time.localtime(last))
                        + (", ok" if beat.get("ok") else f", FAILED ({beat.get('failed')} in a row): {beat.get('error')}")))
    stop = st.get("last_stop") or _persisted_last_stop(root)
    if stop:
        lines.append("  last stop push:  " + last_stop_text(stop))
    if st.get("failing_for") is not None:
        lines.append(f"  FAILING for {st['failing_for']} s, next retry in {st.get('retry_in')} s: "
                     f"{st.get('last_error', '')}")
    return lines
