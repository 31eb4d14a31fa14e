"""Start-up cost of the `config` command on a 10,000-key database, beside bare Python start-up.

Run: ``.venv/bin/python bench/config_cli.py [--runs N]`` (or ``make bench``). Every measurement is a
function ``bench_<name>(ctx) -> list[Result]`` listed in :data:`MEASUREMENTS`; each runs its command
``ctx.runs`` times and reports the median wall time and its ratio to the baseline measured in the same
run (``python -c pass`` with the interpreter of the console scripts). Add a measurement by writing one
more ``bench_*`` function and appending it to MEASUREMENTS. Target for getprop/setprop: <= 2.5x; for
search and history (on 100,000 history entries): <= 3x; the history journal costs `config setprop` <= 10%.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
KEYS = 10_000
TARGET = 2.5


@dataclass
class Result:
    name: str
    seconds: float
    target: float | None = None   # the ratio to bare python it should stay under, if any
    base: float | None = None     # compare with this time instead of bare python ...
    versus: str = "bare python"   # ... called this


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


def paired(ctx: Context, argv: Callable[[int], list[str]]) -> tuple[float, float]:
    """Medians of ``argv(i)`` and of bare python, run alternately: a machine whose load changes during the
    run (other jobs) moves both alike, so their ratio holds. The first pair is a warm-up."""
    bare = [sys.executable, "-c", "pass"]
    times: dict = {"cmd": [], "bare": []}
    for i in range(ctx.runs + 1):
        for what, cmd in (("bare", bare), ("cmd", argv(i))):
            t = time.perf_counter()
            cp = subprocess.run(cmd, env=ctx.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            times[what].append(time.perf_counter() - t)
            if cp.returncode != 0:
                raise SystemExit(f"bench: {' '.join(cmd)} exited {cp.returncode}: {cp.stderr.decode()[-500:]}")
    return statistics.median(times["cmd"][1:]), statistics.median(times["bare"][1:])


def bench_getprop(ctx: Context) -> list[Result]:
    cfg = ctx.command("config")
    t, bare = paired(ctx, lambda i: [cfg, "getprop", "k04242", "a"])
    return [Result("config getprop", t, TARGET, base=bare, versus=f"bare python run beside it ({bare * 1000:.1f} ms)")]


def bench_setprop(ctx: Context) -> list[Result]:
    """Alternates two values of a prop the schema checks, so every run really writes: lock, validate
    (configobj), journal, atomic rewrite of the 10,000-key file."""
    cfg = ctx.command("config")
    t, bare = paired(ctx, lambda i: [cfg, "setprop", "hotsync", "interval", str(10 + i % 2)])
    return [Result("config setprop", t, TARGET, base=bare, versus=f"bare python run beside it ({bare * 1000:.1f} ms)")]


# ------------------------------------------------------------------ search and history (issue 12)
HISTORY_ENTRIES = 100_000
TARGET_UX = 3.0           # config search / config history: <= 3x bare python
TARGET_JOURNAL = 1.10     # setprop with the history journal vs without: <= +10%


def make_history(root: Path, n: int = HISTORY_ENTRIES) -> None:
    """*n* entries in the journal's own format, rotated as the journal rotates them (8 MiB a file), the
    newest ~600 within the last hour; the entries already written (by bench_setprop) stay the newest."""
    import json
    import random

    from hotsync_events.configdb import history

    rng = random.Random(7)
    now = time.time()
    log = root / "var/log/hotsync/config-history.log"
    existing = log.read_bytes() if log.exists() else b""
    lines = []
    for i in range(n):
        t = now - 7200 + 6600 * i / n if i >= n - 600 else now - 30 * 86400 + 29 * 86400 * i / n
        key = "hotsync" if i % 500 == 0 else f"k{rng.randrange(10_000):05d}"
        prop = "interval" if key == "hotsync" else rng.choice("abc")
        lines.append(json.dumps({"command": f"config setprop {key} {prop} {i}", "db": "configuration", "key": key,
                                 "new": str(i), "old": str(i - 1), "pid": 1000 + i % 5000, "prop": prop,
                                 "time": round(t, 6), "uid": 0, "user": "root"}, sort_keys=True) + "\n")
    data = "".join(lines).encode() + existing
    chunks = []
    while data and len(chunks) < history.KEEP + 1:
        cut = data.rfind(b"\n", 0, len(data) - history.MAX_BYTES) + 1 if len(data) > history.MAX_BYTES else 0
        chunks.append(data[cut:])
        data = data[:cut]
    for i, chunk in enumerate(chunks):
        (log if i == 0 else log.with_name(f"{log.name}.{i}")).write_bytes(chunk)


def _beside(ctx: Context, name: str, argv: list[str], target: float | None = TARGET_UX) -> Result:
    t, bare = paired(ctx, lambda i: argv)
    return Result(name, t, target, base=bare, versus=f"bare python run beside it ({bare * 1000:.1f} ms)")


def bench_search(ctx: Context) -> list[Result]:
    """Every record decoded and matched (--value), and a key filter with the schema's defaults."""
    cfg = ctx.command("config")
    return [_beside(ctx, "config search --value", [cfg, "search", "--value", "^some longer value 4242$"]),
            _beside(ctx, "config search --key", [cfg, "search", "--key", "^k042", "--non-default"])]


def bench_history(ctx: Context) -> list[Result]:
    """On 100,000 entries: one key's history, the last hour, the last 20; the full dump is shown, no target."""
    make_history(ctx.root)
    cfg = ctx.command("config")
    return [_beside(ctx, "config history KEY", [cfg, "history", "hotsync"]),
            _beside(ctx, "config history --since 1h", [cfg, "history", "--since", "1h"]),
            _beside(ctx, "config history --last 20", [cfg, "history", "--last", "20"]),
            Result("config history (all 100k)", ctx.median([cfg, "history"]))]


_SETPROP_NO_HISTORY = """
import sys
import hotsync_events.configdb.db as c
real = c.open_db
c.open_db = lambda *a, **k: real(*a, **{**k, "journal": False})
from hotsync_events.cli.config import config_main
sys.exit(config_main(sys.argv[1:]))
"""
_SETPROP_HISTORY = """
import sys
from hotsync_events.cli.config import config_main
sys.exit(config_main(sys.argv[1:]))
"""


def bench_journal_overhead(ctx: Context) -> list[Result]:
    """What the history costs setprop, two ways, each from back-to-back pairs (the order alternating, so
    the machine's drift cancels out; the cost is the median of the pairs' differences):

    * ``config setprop`` as a whole (start-up, parse, validate, journal, rewrite of the 10,000-key file),
      run through the same wrapper with the journal on and off: the figure the target (<= 1.10x) is for;
    * the API's setprop alone, in this process: the journal's cost (one fdatasync of the log, mostly)
      against the bare write, shown without a target.
    """
    from hotsync_events.configdb import open_db
    from hotsync_events.paths import Root

    n = [0]

    def cli(code: str) -> float:
        n[0] += 1
        argv = [sys.executable, "-c", code, "setprop", "hotsync", "interval", str(20 + n[0] % 4)]
        t = time.perf_counter()
        cp = subprocess.run(argv, env=ctx.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - t
        if cp.returncode != 0:
            raise SystemExit(f"bench: setprop wrapper exited {cp.returncode}: {cp.stderr.decode()[-500:]}")
        return elapsed

    root = Root(ctx.root)
    with_j = open_db("configuration", root)
    without = open_db("configuration", root, journal=False)

    def api(db) -> float:
        n[0] += 1
        t = time.perf_counter()
        db.setprop("hotsync", {"interval": str(20 + n[0] % 4)})
        return time.perf_counter() - t

    out = []
    for name, on, off, pairs, target in (
            ("config setprop, history", lambda: cli(_SETPROP_HISTORY), lambda: cli(_SETPROP_NO_HISTORY),
             ctx.runs, TARGET_JOURNAL),
            ("setprop API, history", lambda: api(with_j), lambda: api(without), 4 * ctx.runs, None)):
        on(), off()  # warm-up
        diffs, bases = [], []
        for i in range(pairs):
            if i % 2:
                a, b = on(), off()
            else:
                b, a = off(), on()
            diffs.append(a - b)
            bases.append(b)
        base = statistics.median(bases)
        out.append(Result(name, base + statistics.median(diffs), target, base=base,
                          versus=f"the same without history ({base * 1000:.1f} ms)"))
    return out


#: run in this order; bench_baseline first (the others' ratios are to it)
MEASUREMENTS: list[Callable[[Context], list[Result]]] = [bench_baseline, bench_getprop, bench_setprop,
                                                         bench_search, bench_history, bench_journal_overhead]


def compile_package() -> None:
    """Byte-compile the package as an install does: an editable checkout run with
    PYTHONDONTWRITEBYTECODE would otherwise compile every module at every start and measure that."""
    import compileall

    import hotsync_events

    compileall.compile_dir(str(Path(hotsync_events.__file__).parent), quiet=2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=21, help="runs per measurement (median taken)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a ratio misses its target")
    opts = ap.parse_args(argv)
    compile_package()
    with tempfile.TemporaryDirectory(prefix="hotsync-bench-") as tmp:
        root = make_root(Path(tmp))
        ctx = Context(root=root, env={**os.environ, "HOTSYNC_ROOT": str(root)}, runs=opts.runs)
        missed = []
        print(f"config CLI on a {KEYS:,}-key db, median of {opts.runs} runs ({sys.executable})")
        for measure in MEASUREMENTS:
            for r in measure(ctx):
                ratio = r.seconds / (r.base or ctx.baseline) if (r.base or ctx.baseline) else float("nan")
                goal = f"  (target <= {r.target}x)" if r.target else ""
                print(f"  {r.name:<26} {r.seconds * 1000:7.1f} ms  {ratio:5.2f}x {r.versus}{goal}")
                if r.target and ratio > r.target:
                    missed.append(r.name)
        if missed:
            print("over target: " + ", ".join(missed))
        return 1 if missed and opts.strict else 0


if __name__ == "__main__":
    sys.exit(main())
