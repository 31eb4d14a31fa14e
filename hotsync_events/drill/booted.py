"""A booted drill's two halves (``hotsync drill`` on a real host; docs/drill.md, "Booted").

* :func:`booted`, in the drill's mount namespace, on the overlay the inner laid: boot the drilled host
  (:class:`~hotsync_events.drill.boot.BootedHost`), run the drill inside it, hand back its report and the
  host (powered off by the inner once the report is out, or left up with ``--keep``);
* :func:`inside`, ``python -m hotsync_events.drill.inner --inside`` in the drilled host, whose ``/`` is the
  overlay and whose PID 1 is its own systemd: the promote with the systemd back-end, then
  :func:`start_default_target` (the reboot a real promote ends with), then the health checks.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hotsync_events.drill.boot import BootedHost

__all__ = ["INSIDE_ENV", "booted", "failed_units", "inside", "start_default_target"]

#: what the drill inside the booted host gets from the caller's environment (tests: the plugins' path, pauses)
INSIDE_ENV = ("PYTHONPATH", "HOTSYNC_DRILL_PAUSE_AT", "HOTSYNC_MAIL_TIMEOUT")
#: after the default target's jobs: how long a unit that dies at once has to show it
SETTLE = 1.0
#: how long a unit systemd is restarting may take to come up (Restart= waiting for a database...) before it
#: counts as one that keeps failing
RESTART_WAIT = 30.0
JOBS_WAIT = 60.0


def booted(merged: str, scratch: str, keep: bool, log: Callable[[str], None],
           skip: Sequence[str] = ()) -> tuple[dict, BootedHost | None]:
    """Boot the overlay *merged*, run the drill inside it; (its report, the host). *skip*: units masked on
    the drilled host's command line besides the machine's (``hotsync DrillSkipUnits``)."""
    from hotsync_events.drill.boot import MACHINE_UNITS, BootedHost, BootError

    host = BootedHost(Path(merged), Path(scratch), os.path.basename(scratch.rstrip("/")), detach=keep,
                      masks=[*MACHINE_UNITS, *skip])
    rep: dict = {"causes": [], "notes": []}
    try:
        _boot_and_drill(host, rep, log, skip)
    except BootError as exc:
        rep["causes"].append(f"the drilled host did not boot: {exc}")
    except Exception as exc:       # whatever it was, a kept host is still named (and --stop finds it)
        rep["causes"].append(f"the booted drill could not go on: {type(exc).__name__}: {exc}")
    if keep and host.pid is not None:
        rep["keep"] = {"pid": host.pid, "booted": True}
    return rep, (host if host.pid is not None else None)


def _boot_and_drill(host: BootedHost, rep: dict, log: Callable[[str], None], skip: Sequence[str]) -> None:
    """Boot *host*, wait for it, run the drill inside it; its report merged into *rep*."""
    host.boot()
    state, secs = host.wait_running()
    log(f"drill: the drilled host booted its own systemd (pid {host.pid}) in {secs:.1f} s: {state}; "
        "network: loopback only")
    rep["boot"] = {"state": state, "seconds": secs, "pid": host.pid, "skipped": list(skip)}
    env = {k: v for k, v in os.environ.items() if k in INSIDE_ENV}
    # started in /run/hotsync (a push never writes /run): nsenter -w would leave it in the drilled host's /,
    # the slave's pushed root, and ``python -m`` imports first from its working directory
    cp = host.run(["sh", "-c", 'mkdir -p /run/hotsync && cd /run/hotsync && exec "$@"', "sh",
                   sys.executable, "-m", "hotsync_events.drill.inner", "--inside"], env=env,
                  timeout=86400, stderr=None)     # its log goes on to ours; hotsync drill's --timeout bounds it
    lines = [ln for ln in cp.stdout.splitlines() if ln.strip()]
    try:
        got = json.loads(lines[-1])
    except (IndexError, ValueError):
        got = {"causes": [f"the drill inside the booted host ended without a report (exit {cp.returncode})"
                          + host.console_tail(10)], "notes": []}
    for k, v in got.items():
        rep[k] = rep[k] + v if k in ("causes", "notes") else v


def inside(log: Callable[[str], None]) -> dict:
    """The drill in the booted host: the units failed before the promote, then the promote and the rest."""
    from hotsync_events.drill.inner import drill

    os.environ.pop("HOTSYNC_SERVICE_BACKEND", None)
    return drill("/", "/", log, booted=True, failed_at_boot=failed_units())


def _systemctl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def failed_units(states: str = "failed") -> list[str]:
    """The units in *states* (``systemctl list-units --state``, comma-separated) now."""
    cp = _systemctl("list-units", f"--state={states}", "--all", "--plain", "--no-legend", "--no-pager")
    return sorted({line.split()[0] for line in cp.stdout.splitlines() if line.strip()})


def _journal(unit: str, lines: int = 8) -> str:
    cp = subprocess.run(["journalctl", "--no-pager", "-o", "cat", "-n", str(lines), "-u", unit],
                        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    return " | ".join(cp.stdout.strip().splitlines()[-lines:])[:600]


def start_default_target(causes: list[str], notes: list[str], log: Callable[[str], None], *,
                         before: Sequence[str], timeout: float = 600) -> dict:
    """After the promote: start the default target, as the reboot a real promote ends with starts every
    enabled unit. Each unit that failed since the minimal boot (in the promote or now), or that systemd is
    restarting over and over, is a cause named with the end of its journal. Units that had failed already
    in the minimal boot (*before*) are noted: the drill cannot tell them from a quirk of its container."""
    for unit in sorted(before):
        notes.append(f"unit {unit} had failed before the promote, in the drilled host's minimal boot: "
                     + _journal(unit, 3))
    target = _systemctl("get-default").stdout.strip() or "default.target"
    t0 = time.monotonic()
    log(f"drill: starting {target}, as the reboot after a promote would (every enabled unit)")
    try:
        cp = _systemctl("start", target, timeout=timeout)
        said, code = (cp.stderr or cp.stdout).strip(), cp.returncode
    except subprocess.TimeoutExpired:
        said, code = f"did not return within {timeout:.0f} s", -1
    deadline = time.monotonic() + JOBS_WAIT        # what the target's jobs queued behind them (bounded)
    while time.monotonic() < deadline and _systemctl("list-jobs", "--no-legend", "--no-pager").stdout.strip():
        time.sleep(0.25)
    time.sleep(SETTLE)
    deadline = time.monotonic() + RESTART_WAIT     # a unit systemd restarts: up in the end, or a cause
    while time.monotonic() < deadline and failed_units("auto-restart,activating"):
        time.sleep(0.5)
    bad = [u for u in failed_units("failed,auto-restart") if u not in before]
    for unit in bad:
        causes.append(f"unit {unit} failed when the drilled host started {target} (as the reboot after a promote "
                      f"would): {_journal(unit)}")
    if code != 0 and not bad:
        causes.append(f"systemctl start {target} failed in the drilled host: {said[-300:]}")
    active = _systemctl("list-units", "--state=active", "--plain", "--no-legend", "--no-pager", "--type=service")
    running = sorted(line.split()[0] for line in active.stdout.splitlines() if line.strip())
    log(f"drill: {target} reached in {time.monotonic() - t0:.1f} s: {len(running)} services active, "
        f"{len(bad)} failed" + (f" ({', '.join(bad)})" if bad else ""))
    return {"target": target, "seconds": round(time.monotonic() - t0, 2), "failed": bad,
            "failed_before": sorted(before), "services_active": running, "systemctl": said[-300:]}
