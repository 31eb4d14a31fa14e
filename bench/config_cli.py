"""Start-up cost of the `config` command on a 10,000-key database, beside bare Python start-up.

Run: ``.venv/bin/python bench/config_cli.py [--runs N]`` (or ``make bench``). Every measurement is a
function ``bench_<name>(ctx) -> list[Result]`` listed in :data:`MEASUREMENTS`; each runs its command
``ctx.runs`` times and reports the median wall time and its ratio to the baseline measured in the same
run (``python -c pass`` with the interpreter of the console scripts). Add a measurement by writing one
more ``bench_*`` function and appending it to MEASUREMENTS. Target for getprop/setprop: <= 2.5x.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

BIN = Path(sys.executable).parent
KEYS = 10_000
TARGET = 2.5


@dataclass
class Result:
    name: str
    seconds: float
    target: float | None = None   # the ratio to bare python it should stay under, if any


@dataclass
class Context:
    root: Path          # a throw-away root holding the 10,000-key configuration db
    env: dict           # environment with HOTSYNC_ROOT set
    runs: int
    baseline: float = 0.0

    def command(self, name: str) -> str:
        """One of our console scripts, from the venv of this interpreter."""
        path = BIN / name
        return str(path) if path.exists() else (shutil.which(name) or name)

    def median(self, argv: list[str], *, check: bool = True) -> float:
        """Median wall time of running *argv* ``runs`` times (after one warm-up run)."""
        def once() -> float:
            t = time.perf_counter()
            cp = subprocess.run(argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            elapsed = time.perf_counter() - t
            if check and cp.returncode != 0:
                raise SystemExit(f"bench: {' '.join(argv)} exited {cp.returncode}: {cp.stderr.decode()[-500:]}")
            return elapsed
        once()
        return statistics.median(once() for _ in range(self.runs))


def make_root(base: Path) -> Path:
    """A root whose configuration db holds the schema's keys plus k00000..k09999."""
    root = base / "root"
    root.mkdir()
    env = {**os.environ, "HOTSYNC_ROOT": str(root)}
    cfg = str(BIN / "config") if (BIN / "config").exists() else "config"
    subprocess.run([cfg, "set", "benchprobe", "thing", "a", "1"], env=env, check=True)
    db = root / "var/lib/hotsync/db/configuration"
    text = db.read_text(encoding="utf-8")
    header = "".join(line for line in text.splitlines(True) if line.startswith("#"))
    body = [line for line in text.splitlines(True) if not line.startswith("#")]
    body += [f"k{i:05d}=thing|a|{i}|b|x|c|some longer value {i}\n" for i in range(KEYS)]
    db.write_text(header + "".join(sorted(body)), encoding="utf-8")
    return root


# ------------------------------------------------------------------------------------- measurements
def bench_baseline(ctx: Context) -> list[Result]:
    """Bare interpreter start-up: the same python the console scripts run on."""
    ctx.baseline = ctx.median([sys.executable, "-c", "pass"])
    return [Result("python -c pass", ctx.baseline)]


def bench_getprop(ctx: Context) -> list[Result]:
    return [Result("config getprop", ctx.median([ctx.command("config"), "getprop", "k04242", "a"]), TARGET)]


def bench_setprop(ctx: Context) -> list[Result]:
    """Alternates two values so every run really writes (lock, validate, journal, atomic rewrite)."""
    cfg = ctx.command("config")
    n = [0]

    def one() -> list[str]:
        n[0] += 1
        return [cfg, "setprop", "hotsync", "interval", str(10 + n[0] % 2)]

    times = []
    for _ in range(ctx.runs + 1):
        t = time.perf_counter()
        cp = subprocess.run(one(), env=ctx.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - t)
        if cp.returncode != 0:
            raise SystemExit(f"bench: config setprop exited {cp.returncode}: {cp.stderr.decode()[-500:]}")
    return [Result("config setprop", statistics.median(times[1:]), TARGET)]


#: run in this order; bench_baseline first (the others' ratios are to it)
MEASUREMENTS: list[Callable[[Context], list[Result]]] = [bench_baseline, bench_getprop, bench_setprop]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=21, help="runs per measurement (median taken)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a ratio misses its target")
    opts = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hotsync-bench-") as tmp:
        root = make_root(Path(tmp))
        ctx = Context(root=root, env={**os.environ, "HOTSYNC_ROOT": str(root)}, runs=opts.runs)
        missed = []
        print(f"config CLI on a {KEYS:,}-key db, median of {opts.runs} runs ({sys.executable})")
        for measure in MEASUREMENTS:
            for r in measure(ctx):
                ratio = r.seconds / ctx.baseline if ctx.baseline else float("nan")
                goal = f"  (target <= {r.target}x)" if r.target else ""
                print(f"  {r.name:<24} {r.seconds * 1000:7.1f} ms  {ratio:5.2f}x bare python{goal}")
                if r.target and ratio > r.target:
                    missed.append(r.name)
        if missed:
            print("over target: " + ", ".join(missed))
        return 1 if missed and opts.strict else 0


if __name__ == "__main__":
    sys.exit(main())
