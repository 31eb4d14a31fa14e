#!/usr/bin/env python3
"""Benchmark: the takeover drill's wall time, and the slave's push-receive latency during drills beside
without (issue 23: a drill may slow a push by at most 20%).

Two roots on this machine are paired with the manual's commands (real stunnel, real rsync daemon), the
master holds a 5,000-file tree. Measured:

* the drill: ``hotsync drill`` on the slave, wall time and the promote's own time, median of 3;
* a push: one file changed on the master, ``hotsync sync`` until the slave has it, median of 8, first with
  no drill, then while drills run back to back on the slave. Prints the ratio. Needs root (the drill mounts an overlay in namespaces).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from sync_pair import Pair, cli  # noqa: E402

DIRS, PER_DIR, SIZE = 50, 100, 2048
PUSHES = 8


def make_tree(base: Path) -> None:
    blob = os.urandom(SIZE)
    for d in range(DIRS):
        sub = base / f"d{d:03}"
        sub.mkdir(parents=True)
        for f in range(PER_DIR):
            (sub / f"f{f:03}").write_bytes(blob[f:] + blob[:f])


def push(pair: Pair, n: int) -> float:
    (pair.master / "srv/bench/d000/changed").write_text(f"{n}\n")
    t0 = time.perf_counter()
    cp = pair.sync()
    dt = time.perf_counter() - t0
    if cp.returncode != 0:
        raise SystemExit(f"hotsync sync failed: {cp.stdout[-600:]}{cp.stderr[-600:]}")
    if (pair.slave / "srv/bench/d000/changed").read_text() != f"{n}\n":
        raise SystemExit("the push did not land")
    return dt


def main() -> int:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        print("bench/drill.py: needs root and unshare (the drill mounts an overlay in namespaces)")
        return 1
    if not (shutil.which("rsync") and (shutil.which("stunnel4") or shutil.which("stunnel"))):
        print("bench/drill.py: needs rsync and stunnel4")
        return 1
    base = Path(tempfile.mkdtemp(prefix="hotsync-bench-drill-"))
    pair = Pair(base)
    try:
        pair.pair()
        pair.config(pair.master, "setprop", "hotsync", "realtime", "disabled")
        pair.save(pair.master)
        make_tree(pair.master / "srv/bench")
        pair.include("/srv/bench")
        assert pair.sync().returncode == 0
        pair.settled()
        walls, promotes = [], []
        for _ in range(3):
            cp = cli("hotsync", "drill", "--json", "--no-mail", root=pair.slave, timeout=600)
            if cp.returncode != 0:
                raise SystemExit(f"the drill failed: {cp.stdout[-1500:]}{cp.stderr[-800:]}")
            rec = json.loads(cp.stdout)
            walls.append(rec["wall_time"])
            promotes.append(rec["promote_time"])
        without = [push(pair, n) for n in range(PUSHES)]
        # drills back to back on the slave while the master pushes
        stop = threading.Event()
        spans: list[tuple[float, float]] = []

        def drills() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                cli("hotsync", "drill", "--no-mail", "-q", root=pair.slave, timeout=600)
                spans.append((t0, time.perf_counter()))
        th = threading.Thread(target=drills, daemon=True)
        th.start()
        during: list[float] = []
        n = 100
        deadline = time.monotonic() + 300
        while len(during) < PUSHES and time.monotonic() < deadline:
            time.sleep(0.3)            # let a drill get under way
            dt = push(pair, n)
            n += 1
            if th.is_alive():
                during.append(dt)
        stop.set()
        th.join(timeout=600)
        med_w, med_d = statistics.median(without), statistics.median(during)
        print(f"files in the copy:           {DIRS * PER_DIR}")
        print(f"drill wall time:             median {statistics.median(walls):.2f}s "
              f"(runs {', '.join(f'{w:.2f}' for w in walls)}); the promote in it {statistics.median(promotes):.2f}s")
        print(f"drills run during the pushes: {len(spans)}")
        print(f"push latency without drill:  median {med_w:.3f}s of {len(without)}")
        print(f"push latency during drills:  median {med_d:.3f}s of {len(during)}")
        print(f"ratio during/without:        {med_d / med_w:.2f}x (target <= 1.20x)")
        return 0
    finally:
        pair.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
