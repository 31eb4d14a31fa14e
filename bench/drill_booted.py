#!/usr/bin/env python3
"""Benchmark: the booted takeover drill on a real host, and the slave's push-receive latency during booted
drills beside without (issue 23: a drill may slow a push by at most 20%).

bench/drill.py measures the process-mode drill on two roots of this machine. Here the slave is a real host:
two booted hosts (tests/booted.py: systemd as PID 1 on overlays of this machine, joined by veth) with the
.deb, paired with the manual's commands, the master holding a 5,000-file tree (tests/test_drill_booted.py
sets them up). On the slave, ``hotsync drill`` boots the drilled host's own systemd. Measured:

* the drill: wall time, the drilled host's boot, the promote, ``default.target`` after it; median of 3;
* a push: one file changed on the master, ``hotsync sync`` on the master until it returns, median of 12
  without a drill and 12 started while a booted drill runs on the slave, interleaved. Prints the ratio.

Needs root and what booted hosts need (tests/booted.py ``cannot_boot``); builds or reuses the cached .deb.
"""
from __future__ import annotations

import json
import re
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from booted import SANDBOX_DIR, Host, cannot_boot, sweep  # noqa: E402
from test_booted_deb import built_deb  # noqa: E402
from test_drill_booted import DATA, booted_pair  # noqa: E402

FILES = 5000
PUSHES = 12


def push(master: Host, slave: Host, n: int) -> float:
    master.path(f"{DATA}/d000/changed").write_text(f"{n}\n")
    t0 = time.perf_counter()
    cp = master.run(["hotsync", "sync"], check=False, timeout=300)
    dt = time.perf_counter() - t0
    if cp.returncode != 0:
        raise SystemExit(f"hotsync sync failed: {cp.stdout[-600:]}{cp.stderr[-600:]}")
    if slave.path(f"{DATA}/d000/changed").read_text() != f"{n}\n":
        raise SystemExit("the push did not land")
    return dt


def running(host: Host, pid: str) -> bool:
    return host.run(["test", "-e", f"/proc/{pid}"], check=False).returncode == 0


def main() -> int:
    why = cannot_boot()
    if why:
        print(f"bench/drill_booted.py: {why}")
        return 1
    sweep(SANDBOX_DIR)
    deb = built_deb()
    try:
        master, slave = booted_pair(SANDBOX_DIR, deb, files=FILES)
        walls, boots, promotes, targets = [], [], [], []
        for _ in range(3):
            cp = slave.run(["hotsync", "drill", "--json", "--no-mail"], check=False, timeout=600)
            rec = json.loads(cp.stdout) if cp.stdout.strip().startswith("{") else {}
            if cp.returncode != 0 or rec.get("mode") != "booted":
                raise SystemExit(f"the drill failed: {cp.stdout[-1500:]}{cp.stderr[-800:]}")
            walls.append(rec["wall_time"])
            boots.append(rec["boot"]["seconds"])
            promotes.append(rec["promote_time"])
            targets.append(rec["reboot"]["seconds"])
        without: list[float] = []
        during: list[float] = []
        for n in range(PUSHES):
            without.append(push(master, slave, 2 * n))
            pid = slave.run("setsid hotsync drill -q --no-mail >/dev/null 2>&1 & echo $!").stdout.strip()
            if not re.fullmatch(r"\d+", pid):
                raise SystemExit(f"no drill started: {pid!r}")
            time.sleep(0.4)
            overlapped = running(slave, pid)
            during.append(push(master, slave, 2 * n + 1))
            deadline = time.monotonic() + 600
            while running(slave, pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not overlapped:
                raise SystemExit("the drill ended before the push started")
        last = json.loads(slave.run(["hotsync", "status", "--json"]).stdout)["drill"]
        if last.get("result") != "passed":
            raise SystemExit(f"a drill during the pushes failed: {last.get('causes')}")
        med_w, med_d = statistics.median(without), statistics.median(during)
        print("slave: a booted host (systemd PID 1, the .deb); master: another, joined by veth")
        print(f"files in the copy:           {FILES}")
        print(f"booted drill wall time:      median {statistics.median(walls):.2f}s "
              f"(runs {', '.join(f'{w:.2f}' for w in walls)})")
        print(f"  of which boot {statistics.median(boots):.2f}s, promote {statistics.median(promotes):.2f}s, "
              f"default.target {statistics.median(targets):.2f}s")
        print(f"push latency without drill:  median {med_w:.3f}s of {len(without)}")
        print(f"push latency during drills:  median {med_d:.3f}s of {len(during)}")
        print(f"ratio during/without:        {med_d / med_w:.2f}x (target <= 1.20x)")
        return 0
    finally:
        for h in getattr(booted_pair, "made", []):
            h.destroy()


if __name__ == "__main__":
    sys.exit(main())
