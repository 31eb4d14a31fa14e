#!/usr/bin/env python3
"""Benchmark: `hotsync sync` beside plain `rsync -a` through the same daemon, on a 20,000-file tree.

Two roots on this machine are paired with the manual's commands (real stunnel, real rsync daemon).
Three cases, each measured for both in the same run, median of several rounds:

* first sync   -- into an empty slave directory;
* no-op sync   -- nothing changed;
* one change   -- one file rewritten.

The baseline is ``rsync -a MASTER/srv/bench/ rsync://.../hotsync/srv/bench/`` through the same TLS
client, stunnel and daemon. ``hotsync sync`` is the whole command as a sysadmin runs it (Python start,
plugins, lists, the dry-run deletion guard, the push, status). Prints the ratios; target <= 1.3x. A third
column runs rsync with hotsync's own options (ACLs, xattrs, hard links, --delay-updates...) without
hotsync, to tell what the options cost from what the orchestration costs.
"""
from __future__ import annotations

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

from sync_pair import PASSWORD, Pair, cli  # noqa: E402

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


def main() -> int:
    if not (shutil.which("rsync") and (shutil.which("stunnel4") or shutil.which("stunnel"))):
        print("bench/sync.py: needs rsync and stunnel4")
        return 1
    base = Path(tempfile.mkdtemp(prefix="hotsync-bench-"))
    pair = Pair(base)
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
        pwfile = base / "pw"
        pwfile.write_text(PASSWORD + "\n")
        pwfile.chmod(0o600)
        stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
        plain_env = {**os.environ, "RSYNC_CONNECT_PROG": f"exec {stunnel} {pair.master}/etc/stunnel/hotsync-client.conf"}
        # the slave accepts no push without the pair's epoch: the baseline sends one too (a file rsync reads)
        early = base / "early"
        early.write_text("hotsync-epoch 0 kind=sync nonce=0123456789abcdef0123456789abcdef\n")
        client = [f"--password-file={pwfile}", f"--early-input={early}", "--stderr=client"]
        plain = ["rsync", "-a", *client, f"{src}/", "rsync://hotsyncuser@x/hotsync/srv/bench/"]
        # the same rsync options hotsync uses, without hotsync around them: what the options cost apart
        flags = ["rsync", "-aHAX", "--numeric-ids", "--delete", "--delay-updates", "--partial-dir=.hotsync-partial",
                 "--modify-window=-1", *client, f"{src}/", "rsync://hotsyncuser@x/hotsync/srv/bench/"]
        results: dict[str, tuple[list, list, list]] = {}

        def settle() -> None:
            os.sync()            # flush the previous run's writes: they must not slow the next one down
            time.sleep(0.3)      # and let the daemon's previous session end

        for case, rounds in ROUNDS.items():
            base_t, flags_t, ours_t = [], [], []
            for i in range(rounds):
                order = [(plain, plain_env, base_t), (flags, plain_env, flags_t), (hotsync, ours_env, ours_t)]
                for argv, env, out in order[i % 3:] + order[:i % 3]:      # each goes first in turn
                    if case == "first sync":
                        shutil.rmtree(dst, ignore_errors=True)
                        dst.parent.mkdir(parents=True, exist_ok=True)
                    elif case == "one changed file":
                        (src / "d050" / "f100").write_bytes(os.urandom(SIZE))
                    settle()
                    out.append(timed(argv, env))
            results[case] = (base_t, flags_t, ours_t)
        ok = cli("hotsync", "sync", "--dry-run", root=pair.master)
        print(f"bench/sync.py: {DIRS * PER_DIR} files of {SIZE} B, rsync daemon behind stunnel on loopback")
        print(f"{'case':<18} {'plain rsync -a':>15} {'same flags':>11} {'hotsync sync':>13} {'ratio':>7} "
              f"{'vs flags':>9}")
        worst = 0.0
        for case, (b, f, o) in results.items():
            mb, mf, mo = statistics.median(b), statistics.median(f), statistics.median(o)
            ratio = mo / mb
            worst = max(worst, ratio)
            print(f"{case:<18} {mb:>14.3f}s {mf:>10.3f}s {mo:>12.3f}s {ratio:>6.2f}x {mo / mf:>8.2f}x")
        print(f"ratio = hotsync sync / plain rsync -a (target <= 1.3x), worst {worst:.2f}x; 'vs flags' = hotsync "
              "sync / rsync with hotsync's own options (-aHAX --numeric-ids --delete --delay-updates ...)")
        print(f"final check: {ok.stdout.strip().splitlines()[-1]}")
        return 0
    finally:
        pair.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
