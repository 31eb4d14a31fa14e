"""Benchmark: ``signal-event`` on an event with 50 actions and 20 templates when nothing changed.

Measured beside bare interpreter start-up (``python3 -c pass``, the same interpreter) in the same run,
alternating the two so that machine noise hits both alike; prints the medians and the ratio
(target: at most 4x).

The actions and templates come from a throw-away plugin distribution (a module and its ``.dist-info``
with an entry point in group ``hotsync``) put on PYTHONPATH, so start-up includes entry-point discovery
and every built-in plugin, as on a real host. A second figure runs the same event with the 50 actions as
executables of ``<root>/etc/hotsync/events/<event>/`` instead (each one a process of its own), and one
runs it with the built-in plugins blocked, to tell the engine's cost from the plugins' import cost.

Bytecode caching is left on for the children (an installed package has its .pyc files), and the event
is run once before timing (the first run renders the templates and initialises the database).

    python3 bench/signal_event.py            # 15 rounds
    python3 bench/signal_event.py --rounds 40 --instructions   # and instruction counts (valgrind)
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

EVENT = "bench-event"
N_ACTIONS = 50
N_TEMPLATES = 20

PLUGIN = textwrap.dedent(f'''
    """Bench plugin: {N_ACTIONS} actions and {N_TEMPLATES} templates for {EVENT}."""
    from pathlib import Path
    from hotsync_events import hookimpl
    from hotsync_events.types import Action, Template

    HERE = Path(__file__).resolve().parent / "bench_templates"

    def _noop(ctx):
        ctx.db.getprop("hotsync", "role")

    @hookimpl
    def hotsync_actions(db):
        if __import__("os").environ.get("BENCH_EXECUTABLES") == "1":
            return []
        return [Action(event="{EVENT}", name=f"bench-action-{{i:02d}}", priority=10 + i, run=_noop)
                for i in range({N_ACTIONS})]

    @hookimpl
    def hotsync_template_dirs():
        return [HERE]

    @hookimpl
    def hotsync_templates(db):
        return [Template(f"/etc/bench/file{{i:02d}}.conf", events=("{EVENT}",), mode=0o640)
                for i in range({N_TEMPLATES})]
''')


def build(base: Path) -> tuple[Path, Path]:
    """The plugin distribution (on PYTHONPATH) and the root."""
    site = base / "site"
    dist = site / "hotsync_bench-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hotsync-bench\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[hotsync]\nbench = hotsync_bench\n")
    pkg = site / "hotsync_bench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(PLUGIN)
    for i in range(N_TEMPLATES):
        d = pkg / "bench_templates" / "etc" / "bench" / f"file{i:02d}.conf"
        d.mkdir(parents=True)
        (d / "10head").write_text(f"# file {i}, written for ${{event}}\nrole = ${{hotsync.role or 'none'}}\n")
        (d / "20body").write_text("port = ${hotsync.port}\n% for k in ('interval', 'timeout'):\n"
                                  "${k} = ${db.getprop('hotsync', k)}\n% endfor\n")
    root = base / "root"
    root.mkdir()
    return site, root


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its children) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    cp = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cp.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({cp.returncode}): {cp.stderr.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dt, cpu


def measure(label: str, cmd: list[str], env: dict, rounds: int) -> tuple[float, float]:
    base_env = {k: v for k, v in env.items() if k not in ("HOTSYNC_ROOT", "PYTHONPATH")}
    timed(cmd, env)  # warm-up: first expansion, database creation, .pyc files
    timed(cmd, env)
    ours, bare = [], []
    for _ in range(rounds):
        bare.append(timed([sys.executable, "-c", "pass"], base_env))
        ours.append(timed(cmd, env))
    wall = statistics.median(o[0] for o in ours) / statistics.median(b[0] for b in bare)
    cpu = statistics.median(o[1] for o in ours) / statistics.median(b[1] for b in bare)
    print(f"{label}:\n"
          f"  wall: signal-event {statistics.median(o[0] for o in ours) * 1000:.1f} ms, python3 -c pass "
          f"{statistics.median(b[0] for b in bare) * 1000:.1f} ms, ratio {wall:.2f}x\n"
          f"  cpu:  signal-event {statistics.median(o[1] for o in ours) * 1000:.1f} ms, python3 -c pass "
          f"{statistics.median(b[1] for b in bare) * 1000:.1f} ms, ratio {cpu:.2f}x   (medians of {rounds}; "
          "target <= 4x)")
    return wall, cpu


def instructions(cmd: list[str], env: dict) -> int | None:
    """Instructions one run executes, counted by valgrind (the same on a busy machine as on an idle one)."""
    exe = shutil.which(cmd[0]) or cmd[0]
    if not exe.endswith("python") and not exe.endswith("python3"):
        exe_cmd = [sys.executable, exe, *cmd[1:]]   # a console script: count the interpreter running it
    else:
        exe_cmd = [exe, *cmd[1:]]
    with tempfile.TemporaryDirectory() as tmp:
        cp = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out", *exe_cmd],
                            env=env, capture_output=True, text=True)
    for line in cp.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1])
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir and print it")
    ap.add_argument("--instructions", action="store_true",
                    help="also count instructions with valgrind (slow; not disturbed by other load)")
    opts = ap.parse_args()
    exe = Path(sys.executable).parent / "signal-event"
    cmd = [str(exe) if exe.exists() else (shutil.which("signal-event") or "signal-event"), EVENT]
    base = Path(tempfile.mkdtemp(prefix="bench-signal-event-"))
    try:
        site, root = build(base)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(HOTSYNC_ROOT=str(root), PYTHONPATH=str(site), HOTSYNC_SYSLOG="0")
        wall, cpu = measure(f"{N_ACTIONS} plugin actions + {N_TEMPLATES} templates", cmd, env, opts.rounds)
        if opts.instructions and shutil.which("valgrind"):
            base_env = {k: v for k, v in env.items() if k not in ("HOTSYNC_ROOT", "PYTHONPATH")}
            ours = instructions(cmd, env)
            bare = instructions([sys.executable, "-c", "pass"], base_env)
            if ours and bare:
                print(f"  instructions: signal-event {ours / 1e6:.0f} M, python3 -c pass {bare / 1e6:.0f} M, "
                      f"ratio {ours / bare:.2f}x")
        from hotsync_events.manager import BUILTIN_PLUGINS

        builtins = ",".join(b.split("=")[0] if "=" in b else b.rpartition(".")[2] for b in BUILTIN_PLUGINS)
        measure(f"the same, built-in plugins blocked (the engine's own cost; {len(BUILTIN_PLUGINS)} blocked)", cmd,
                {**env, "HOTSYNC_DISABLE_PLUGINS": builtins}, opts.rounds)
        events = root / "etc" / "hotsync" / "events" / EVENT
        events.mkdir(parents=True)
        for i in range(N_ACTIONS):
            script = events / f"S{10 + i:02d}bench-exec-{i:02d}"
            script.write_text("#!/bin/sh\nexit 0\n")
            script.chmod(0o755)
        measure(f"{N_ACTIONS} executables + {N_TEMPLATES} templates", cmd, {**env, "BENCH_EXECUTABLES": "1"},
                opts.rounds)
        print(f"ratio {wall:.2f} (wall), {cpu:.2f} (cpu) for {N_ACTIONS} plugin actions + {N_TEMPLATES} templates")
    finally:
        if opts.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
