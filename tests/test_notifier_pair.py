"""`hotsync watch` end to end on a real pair (rsync -> stunnel -> stunnel -> rsync daemon, the sync's
guards and lock): a random workload reaches the slave, `hotsync status` shows the real-time side, and
the command refuses to run where it must not."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from notifier_helpers import random_workload, tree_digest, wait_equal
from sync_pair import Pair, cli

HOTSYNC = str(Path(sys.executable).parent / "hotsync")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (shutil.which("rsync") and (shutil.which("stunnel4") or shutil.which("stunnel"))
                                      and shutil.which("openssl")), reason="needs rsync, stunnel4 and openssl")]


def test_watch_pushes_a_random_workload_through_tls_and_reports_status(pair):
    pair.include("/srv/data")
    top = pair.master / "srv/data"
    top.mkdir(parents=True)
    (top / "seed").write_text("seed\n")
    # the workload deletes far more than 20 % of this tiny tree: the deletion guard is not under test here
    assert cli("config", "setprop", "hotsync", "MaxDeletePercent", "100", root=pair.master).returncode == 0
    assert pair.sync().returncode == 0
    # the pair's master has `realtime disabled` (its daemon runs no notifier): --force runs this one
    proc = subprocess.Popen([HOTSYNC, "watch", "-v", "--force", "--retry-max", "2"],
                            env={**os.environ, "HOTSYNC_ROOT": str(pair.master)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        status_file = pair.master / "run/hotsync/realtime.json"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:      # up once its start-up full sync is done
            try:
                st = json.loads(status_file.read_text())
                if st.get("full_syncs") and st.get("running") is None:
                    break
            except (OSError, ValueError):
                pass
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.1)
        # one file appears at once
        (top / "hello").write_text("hello\n")
        ok, _ = wait_equal(top, pair.slave / "srv/data", timeout=10)
        assert ok
        random_workload(top, seconds=4, seed=3, max_ops=1200)
        ok, _took = wait_equal(top, pair.slave / "srv/data", timeout=30)
        if not ok:
            a, b = tree_digest(top), tree_digest(pair.slave / "srv/data")
            proc.send_signal(signal.SIGTERM)
            log = proc.communicate(timeout=60)[0]
            pytest.fail(f"trees differ: {sorted(set(a.items()) ^ set(b.items()))[:8]}\n{log[-3000:]}")
        # the notifier writes its status file at most once a second: wait until it shows the pushes
        deadline = time.monotonic() + 10
        while json.loads(cli("hotsync", "status", "--json", root=pair.master).stdout)["realtime"].get("pushes", 0) < 2:
            assert time.monotonic() < deadline, "the notifier's status never showed its pushes"
            time.sleep(0.1)
        cp = cli("hotsync", "status", root=pair.master)
        assert cp.returncode == 0, cp.stderr
        assert "realtime:          running" in cp.stdout, cp.stdout
        assert "last push:" in cp.stdout and "overflows seen:  0" in cp.stdout
        js = json.loads(cli("hotsync", "status", "--json", root=pair.master).stdout)
        assert js["realtime"]["pushes"] >= 2 and js["realtime"]["alive"]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    st = json.loads((pair.master / "run/hotsync/realtime.json").read_text())
    assert st["running_now"] is False
    assert "realtime:          not running" in cli("hotsync", "status", root=pair.master).stdout


def test_daemon_runs_the_notifier_while_realtime_is_enabled(tmp_path):
    p = Pair(tmp_path, realtime=True)
    try:
        p.include("/srv/data")               # the daemon reads the lists when the save event starts it
        (p.master / "srv/data").mkdir(parents=True)
        p.pair()
        data = os.urandom(16).hex()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:    # the daemon's notifier is up once its first full sync ran
            try:
                st = json.loads((p.master / "run/hotsync/realtime.json").read_text())
                if st.get("full_syncs") and st.get("running") is None:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        (p.master / "srv/data/f").write_text(data)
        target = p.slave / "srv/data/f"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (target.exists() and target.read_text() == data):
            time.sleep(0.02)
        assert target.read_text() == data
        out = cli("hotsync", "status", root=p.master).stdout
        assert "realtime:          running" in out, out
        # switched off: the daemon's notifier stops and lets go of the root's notifier lock (a `hotsync
        # watch --force` may then run), without a save event: the daemon follows the settings
        from hotsync_events.paths import Root
        from hotsync_events.sync.lock import SyncLock

        assert cli("config", "setprop", "hotsync", "realtime", "disabled", root=p.master).returncode == 0
        lock = SyncLock(Root(p.master), "notifier")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and lock.holder() is not None:
            time.sleep(0.1)
        assert lock.holder() is None, "the daemon kept the notifier lock with real-time sync off"
    finally:
        p.close()
    assert "realtime:          not running" in cli("hotsync", "status", root=p.master).stdout


def test_watch_refuses_where_it_must_not_run(pair, tmp_path):
    pair.include("/srv/data")
    (pair.master / "srv/data").mkdir(parents=True)
    cp = cli("hotsync", "watch", root=pair.master, timeout=30)
    assert cp.returncode == 2 and "realtime enabled" in cp.stderr
    cp = cli("hotsync", "watch", root=pair.slave, timeout=30)
    assert cp.returncode == 2 and "not a master" in cp.stderr
    other = tmp_path / "other"
    other.mkdir()
    cp = cli("hotsync", "watch", root=other, timeout=30)
    assert cp.returncode == 2 and "not a master" in cp.stderr
    cp = cli("config", "setprop", "hotsync", "RealtimeSettle", "-1", root=pair.master)
    assert cp.returncode != 0 and "RealtimeSettle" in cp.stderr


def test_watch_refuses_bad_options(tmp_path):
    for args, word in ((["--retry-max", "0.1"], "--retry-max"), (["--duration", "-1"], "--duration")):
        cp = cli("hotsync", "watch", *args, root=tmp_path, timeout=30)
        assert cp.returncode == 2 and word in cp.stderr and "allowed" in cp.stderr
