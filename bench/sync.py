#!/usr/bin/env python3
"""Benchmark: `hotsync sync` beside plain `rsync -a` through the same daemon, on a 20,000-file tree (issue 20).

Two roots on this machine are paired with the manual's commands (real stunnel, real rsync daemon).
Three cases, each measured for both in the same run, median of several rounds:

* first sync   -- into an empty slave directory;
* no-op sync   -- nothing changed;
* one change   -- one file rewritten.

Beside the command, the same full sync run by a process that stays (``resident``), as the notifier runs its
full syncs and ``hotsync daemon`` its schedule (the Debian package's timer starts the command): the
orchestration without a Python start and the imports.

The baseline is ``rsync -a --relative MASTER/./srv/bench hotsyncuser@x::hotsync/`` through the same TLS
client (stunnel as rsync's remote shell, as hotsync runs it), stunnel and daemon. ``hotsync sync`` is the whole command as a sysadmin runs it (Python start,
plugins, lists, the dry-run deletion guard, the push, status). Prints the ratios; target <= 1.3x. A third
column runs rsync with hotsync's own options (ACLs, xattrs, hard links, --delay-updates...) without
hotsync, to tell what the options cost from what the orchestration costs. A fourth, for information, runs
plain ``rsync -a`` to a plain rsync daemon on loopback (no TLS, no slave hooks): the floor.

Options: --quick (1,000 files, 1-2 rounds: a smoke run), --files N, --json FILE. Prints the load average
before and after: the machine has 2 CPUs and other jobs may run beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

sys.path.insert(0, str(HERE))

from benchlib import PlainDaemon, fs_line, loadavg, machine_line, pair_client, precompile, work_dir  # noqa: E402
from sync_pair import Pair, cli  # noqa: E402

DIRS, PER_DIR, SIZE = 100, 200, 1024
ROUNDS = {"first sync": 3, "no-op sync": 6, "one changed file": 6}


def make_tree(base: Path) -> None:
    blob = os.urandom(SIZE)
    for d in range(DIRS):
        sub = base / f"d{d:03}"
        sub.mkdir(parents=True)
        for f in range(PER_DIR):
            (sub / f"f{f:03}").write_bytes(blob[f:] + blob[:f])


def timed(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    cp = subprocess.run(argv, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if cp.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({cp.returncode}): {cp.stdout[-800:]}{cp.stderr[-800:]}")
    return dt


#: the resident path (the notifier's full syncs in ``hotsync watch``, ``hotsync daemon``'s schedule): one process
#: that has imported the library and stays, running :func:`~hotsync_events.sync.push.run_sync` for each sync
RESIDENT = """
import sys, time
from hotsync_events.paths import Root
from hotsync_events.sync import push
root = Root(sys.argv[1])
for _line in sys.stdin:
    lines = []
    t0 = time.perf_counter()
    code = push.run_sync(root, log=lines.append)
    print(code, time.perf_counter() - t0, flush=True)
"""


class Resident:
    """A resident process running full syncs on request, as the daemon does (no Python start, no imports)."""

    def __init__(self, root: Path, env: dict) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", RESIDENT, str(root)], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def run(self) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("sync\n")
        self.proc.stdin.flush()
        code, dt = self.proc.stdout.readline().split()
        if code != "0":
            raise SystemExit(f"the resident sync failed ({code})")
        return float(dt)

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(60)


def main(argv=None) -> int:
    global DIRS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000 files, 1-2 rounds per case (a smoke run)")
    ap.add_argument("--files", type=int, default=DIRS * PER_DIR)
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    rounds = dict(ROUNDS)
    if a.quick:
        a.files = 1000
        rounds = {"first sync": 1, "no-op sync": 2, "one changed file": 2}
    DIRS = max(1, a.files // PER_DIR)
    if not (shutil.which("rsync") and (shutil.which("stunnel4") or shutil.which("stunnel"))):
        print("bench/sync.py: needs rsync and stunnel4")
        return 1
    base = work_dir("hotsync-bench-")
    pair = Pair(base)
    bare = None
    print(f"bench/sync.py: {DIRS * PER_DIR} files of {SIZE} B; {machine_line()}; {precompile()}; {fs_line(base)}",
          flush=True)
    load_before = loadavg()
    try:
        pair.pair()
        src = pair.master / "srv/bench"
        make_tree(src)
        pair.include("/srv/bench")
        dst = pair.slave / "srv/bench"
        hotsync = [str(Path(sys.executable).parent / "hotsync"), "sync"]
        ours_env = {**os.environ, "HOTSYNC_ROOT": str(pair.master)}
        assert cli("hotsync", "sync", root=pair.master).returncode == 0          # ships the manifest
        shutil.rmtree(dst)
        # the baselines take the TLS leg, the password, the epoch and the options the slave requires as hotsync does
        plain_env, client = pair_client(pair, base / "client", "sync")
        # the slave takes pushes into its module's root only (docs/security.md): both name the path from there
        plain = ["rsync", "-a", "--no-D", "--relative", *client, f"{pair.master}/./srv/bench", "hotsyncuser@x::hotsync/"]
        # the same rsync options hotsync uses, without hotsync around them: what the options cost apart
        flags = ["rsync", "-aHAX", "--no-D", "--numeric-ids", "--delete", "--delay-updates", "--partial-dir=.hotsync-partial",
                 "--modify-window=-1", "--relative", *client, f"{pair.master}/./srv/bench", "hotsyncuser@x::hotsync/"]
        # the floor, for information: plain rsync -a to a plain daemon on loopback, no TLS, no slave hooks
        bare = PlainDaemon(base, base / "bare")
        bare_argv = ["rsync", "-a", f"{src}/", bare.url("bench/")]
        bare_dst = base / "bare" / "bench"
        resident = Resident(pair.master, ours_env)
        results: dict[str, tuple[list, list, list, list, list]] = {}

        def settle() -> None:
            os.sync()            # flush the previous run's writes: they must not slow the next one down
            time.sleep(0.3)      # and let the daemon's previous session end

        changed = src / f"d{DIRS // 2:03}" / "f100"
        for case, n in rounds.items():
            base_t, flags_t, ours_t, bare_t, res_t = [], [], [], [], []
            for i in range(n):
                order = [(plain, plain_env, base_t, dst), (flags, plain_env, flags_t, dst),
                         (hotsync, ours_env, ours_t, dst), (bare_argv, dict(os.environ), bare_t, bare_dst),
                         (None, ours_env, res_t, dst)]
                for argv, env, out, where in order[i % 5:] + order[:i % 5]:      # each goes first in turn
                    if case == "first sync":
                        shutil.rmtree(where, ignore_errors=True)
                        where.parent.mkdir(parents=True, exist_ok=True)
                    elif case == "one changed file":
                        changed.write_bytes(os.urandom(SIZE))
                    settle()
                    out.append(resident.run() if argv is None else timed(argv, env))
            results[case] = (base_t, flags_t, ours_t, bare_t, res_t)
        resident.stop()
        ok = cli("hotsync", "sync", "--dry-run", root=pair.master)
        print(f"medians of {', '.join(f'{n} ({c})' for c, n in rounds.items())} rounds; rsync daemon behind stunnel on "
              f"loopback; load average before {load_before}, after {loadavg()}")
        print(f"{'case':<18} {'plain rsync -a':>15} {'same flags':>11} {'hotsync sync':>13} {'vs plain':>9} "
              f"{'vs flags':>9} {'| resident':>11} {'vs plain':>9} {'vs flags':>9} {'| no TLS -a':>11}")
        out: dict = {"load_before": load_before, "load_after": loadavg(), "files": DIRS * PER_DIR, "cases": {}}
        for case, (b, f, o, n, r) in results.items():
            mb, mf, mo, mn, mr = (statistics.median(x) for x in (b, f, o, n, r))
            print(f"{case:<18} {mb:>14.3f}s {mf:>10.3f}s {mo:>12.3f}s {mo / mb:>8.2f}x {mo / mf:>8.2f}x "
                  f"{mr:>10.3f}s {mr / mb:>8.2f}x {mr / mf:>8.2f}x {mn:>10.3f}s")
            out["cases"][case] = {"plain": mb, "flags": mf, "hotsync": mo, "bare": mn, "resident": mr,
                                  "all": [b, f, o, n, r]}
        print("vs plain = hotsync sync / plain rsync -a through the same TLS pair and daemon (target <= 1.5x); "
              "vs flags = hotsync sync / rsync with hotsync's own options (-aHAX --no-D --numeric-ids --delete "
              "--delay-updates ..., target <= 1.3x); resident = the same full sync run by a process that "
              "stays (as the notifier and hotsync daemon run it: no Python start, no imports); no TLS -a "
              "= plain rsync -a to a plain daemon (the floor, for information)")
        print("== issue 20 targets")
        for who, key in (("hotsync sync", "hotsync"), ("resident   ", "resident")):
            for case, r in out["cases"].items():
                for what, base_, limit in (("plain rsync -a", r["plain"], 1.5),
                                           ("rsync, same options", r["flags"], 1.3)):
                    q = r[key] / base_
                    print(f"{who} {case:<17} vs {what:<20} {r[key]:.3f} / {base_:.3f} = {q:.2f}x "
                          f"(<= {limit}x): {'met' if q <= limit else 'MISSED'}")
        print(f"final check: {ok.stdout.strip().splitlines()[-1]}")
        if a.json:
            Path(a.json).write_text(json.dumps(out, indent=1))
        return 0
    finally:
        if bare is not None:
            bare.stop()
        pair.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
