"""The last takeover drill, as ``hotsync status`` shows it (written by :mod:`hotsync_events.drill`).

The drill (``hotsync drill``, on a slave) keeps its record in ``var/lib/hotsync/sync/drill.json``, the
slave's private state (never shipped, never overwritten by a push). This module only reads it, so that
``hotsync status`` needs no drill code, and says what the health check makes of it: a warning when the
last drill failed, or when ``hotsync DrillSchedule`` asks for drills and the last one is older than the
schedule's period (and a grace).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from hotsync_events.paths import Root

__all__ = ["DRILL_FILE", "SCHEDULES", "drill_path", "drill_reasons", "read_drill", "schedule_of"]

DRILL_FILE = "/var/lib/hotsync/sync/drill.json"
#: DrillSchedule -> seconds between two drills (None: no schedule)
SCHEDULES: dict[str, float | None] = {"off": None, "daily": 86400.0, "weekly": 7 * 86400.0}
#: a scheduled drill may start late and take a while: the grace before the last one counts as overdue
GRACE = 6 * 3600.0


def drill_path(root: Root) -> Path:
    return root.join(DRILL_FILE)


def read_drill(root: Root) -> dict | None:
    """The record of the last drill (``last``) and the mail state (``mail``), or None: never drilled."""
    try:
        data = json.loads(drill_path(root).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"error": f"unreadable drill record {drill_path(root)}: {exc}"}
    return data if isinstance(data, dict) else None


def schedule_of(db) -> str:
    """``hotsync DrillSchedule`` (off, daily, weekly); an unknown value counts as off."""
    try:
        value = (db.props("hotsync") if "hotsync" in db else {}).get("DrillSchedule") or "off"
    except Exception:
        return "off"
    return value if value in SCHEDULES else "off"


def drill_reasons(drill: dict | None, schedule: str, role: str, now: float | None = None) -> list[tuple[str, str]]:
    """``[(level, why)]`` the health check adds for the drill (only on a slave)."""
    now = time.time() if now is None else now
    if role != "slave":
        return []
    out: list[tuple[str, str]] = []
    last = (drill or {}).get("last") or {}
    if (drill or {}).get("error"):
        out.append(("warning", drill["error"]))     # type: ignore[index]
    if last.get("result") == "failed":
        causes = "; ".join(last.get("causes") or [])[:300]
        out.append(("warning", f"the last takeover drill FAILED: {causes or 'see hotsync status'}"))
    period = SCHEDULES.get(schedule)
    if period:
        end = last.get("time")
        if end is None:
            out.append(("warning", f"DrillSchedule is {schedule} but no takeover drill has run yet (hotsync drill)"))
        elif now - float(end) > period + GRACE:
            out.append(("warning", f"the last takeover drill is {int((now - float(end)) // 3600)} h old, older than "
                                   f"its {schedule} schedule"))
    return out
