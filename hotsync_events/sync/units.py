"""The package's systemd units as ``hotsync status`` shows them: failed, or restarted after a failure.

Read with ``systemctl show`` (one call for all of them) on a host where systemd runs and the root is ``/``;
elsewhere (the process back-end, a test root) there is nothing to say. The sync room only reads what
systemd says; starting and stopping them is the event's (:mod:`hotsync_events.events.services`).
"""
from __future__ import annotations

import os
import subprocess

from hotsync_events.paths import Root

__all__ = ["UNITS", "unit_lines", "unit_states"]

#: the units debian/units ships
UNITS = ("hotsync-stunnel.service", "hotsync-watch.service", "hotsync-sync.service", "hotsync-sync.timer")
PROPS = ("Id", "LoadState", "ActiveState", "SubState", "Result", "NRestarts", "UnitFileState")


def unit_states(root: Root, timeout: float = 10.0) -> list[dict] | None:
    """``[{Id, LoadState, ActiveState, SubState, Result, NRestarts, UnitFileState}]`` for the installed units,
    or None where systemd does not run this root."""
    if root.path != root.path.parent or not os.path.isdir("/run/systemd/system"):
        return None
    try:
        cp = subprocess.run(["systemctl", "show", "-p", ",".join(PROPS), "--", *UNITS], capture_output=True,
                            text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    units: list[dict] = []
    cur: dict[str, str] = {}
    for line in (cp.stdout + "\n").splitlines():
        if not line.strip():
            if cur:
                units.append(cur)
            cur = {}
            continue
        key, _, value = line.partition("=")
        cur[key] = value
    return [u for u in units if u.get("LoadState") == "loaded"]


def unit_lines(units: list[dict] | None) -> list[str]:
    """One line per unit that is enabled, runs, failed or was restarted (the others say nothing)."""
    out = []
    for u in units or ():
        failed = u.get("ActiveState") == "failed"
        restarts = int(u.get("NRestarts") or 0) if (u.get("NRestarts") or "0").isdigit() else 0
        if not (failed or restarts or u.get("ActiveState") == "active" or u.get("UnitFileState") == "enabled"):
            continue
        state = f"FAILED ({u.get('Result')})" if failed else f"{u.get('ActiveState')} ({u.get('SubState')})"
        extra = f", restarted {restarts} time(s) after a failure" if restarts else ""
        out.append(f"unit:              {u.get('Id')}: {state}, {u.get('UnitFileState')}{extra}")
    return out
