#!/usr/bin/env python3
"""Benchmark: the takeover drill's wall time, and the slave's push-receive latency during drills beside
without (issue 23: a drill may slow a push by at most 20%).

Two roots on this machine are paired with the manual's commands (real stunnel, real rsync daemon), the
master holds a 5,000-file tree. Measured:

* the drill: ``hotsync drill`` on the slave, wall time and the promote's own time, median of 3;
* a push: one file changed on the master, ``hotsync sync`` until the slave has it, median of 12 without a
  drill and 12 started while a drill runs on the slave, interleaved (the machine's other load weighs on
  both alike). Prints the ratio. Needs root (the drill mounts an overlay in namespaces).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from sync_pair import Pair, cli  # noqa: E402

DIRS, PER_DIR, SIZE = 50, 100, 2048
PUSHES = 12


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
        # interleaved, so that the machine's other load weighs on both alike: a push alone, then a push
        # started while a drill runs (0.4 s after the drill, when it is inside its namespaces)
        without: list[float] = []
        during: list[float] = []
        env = {**os.environ, "HOTSYNC_ROOT": str(pair.slave)}
        hotsync = str(Path(sys.executable).parent / "hotsync")
        for n in range(PUSHES):
            without.append(push(pair, 2 * n))
            d = subprocess.Popen([hotsync, "drill", "-q", "--no-mail"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            time.sleep(0.4)
            overlapped = d.poll() is None
            during.append(push(pair, 2 * n + 1))
            if d.wait(timeout=600) != 0:
                raise SystemExit("a drill failed during the pushes")
            if not overlapped:
                raise SystemExit("the drill ended before the push started: raise the tree size")
        med_w, med_d = statistics.median(without), statistics.median(during)
        print(f"files in the copy:           {DIRS * PER_DIR}")
        print(f"drill wall time:             median {statistics.median(walls):.2f}s "
              f"(runs {', '.join(f'{w:.2f}' for w in walls)}); the promote in it {statistics.median(promotes):.2f}s")
        print(f"push latency without drill:  median {med_w:.3f}s of {len(without)}")
        print(f"push latency during drills:  median {med_d:.3f}s of {len(during)}")
        print(f"ratio during/without:        {med_d / med_w:.2f}x (target <= 1.20x)")
        return 0
    finally:
        pair.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
