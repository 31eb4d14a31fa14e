"""The benchmarks of issue 20 still run: each script's --quick mode end to end, on tiny trees.

Not a measurement (the figures of a smoke run mean nothing): it proves that every target's figure and its
baseline are produced by one run of each script, so a change of the CLI or the pairing cannot leave the
benches broken until the next person who needs them.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def _need(*tools: str) -> None:
    for t in tools:
        if shutil.which(t) is None:
            pytest.skip(f"needs {t} (make deps)")


def _run(script: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    cp = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, env=env,
                        timeout=timeout)
    assert cp.returncode == 0, f"{script} exited {cp.returncode}:\n{cp.stdout[-3000:]}\n{cp.stderr[-3000:]}"
    return cp


def test_realtime_bench_quick_prints_every_target(tmp_path):
    _need("rsync", "stunnel4", "lsyncd")
    out = tmp_path / "rt.json"
    cp = _run("realtime.py", "--quick", "--json", str(out))
    assert "== issue 20 targets" in cp.stdout
    res = json.loads(out.read_text())
    for system in ("hotsync", "lsyncd-0", "rsync"):
        assert res[system]["latency_quiet"]["n"] == 4 and res[system]["latency_loaded"]["n"] == 4
    assert res["hotsync"]["burst"]["first_to_equal"] > 0 and res["lsyncd-0"]["burst"]["cpu"] >= 0
    assert res["hotsync"]["rename"]["bytes"] > 0 and res["rsync"]["rename"]["bytes"] > 0
    labels = [t[0] for t in res["targets"]]
    for want in ("latency p95 quiet", "latency p95 loaded", "writer slowdown", "first write -> equal",
                 "rename: time", "rename: bytes"):
        assert any(want in label for label in labels), (want, labels)


def test_sync_bench_quick_prints_every_case(tmp_path):
    _need("rsync", "stunnel4")
    out = tmp_path / "sync.json"
    cp = _run("sync.py", "--quick", "--json", str(out))
    assert "== issue 20 targets" in cp.stdout
    cases = json.loads(out.read_text())["cases"]
    assert set(cases) == {"first sync", "no-op sync", "one changed file"}
    for r in cases.values():
        assert all(r[k] > 0 for k in ("plain", "flags", "hotsync", "bare"))


def test_profile_runs_on_a_small_tree():
    _need("rsync", "stunnel4", "strace")
    cp = _run("breakdown.py", "--files", "400", "--pushes", "2", "--rounds", "1", "--events", "200")
    for want in ("one-file push", "pre-xfer hook (its server answers", "no-op hotsync sync", "status writes",
                 "per_event_us"):
        assert want in cp.stdout, (want, cp.stdout[-2000:])
