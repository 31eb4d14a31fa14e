"""The notifier's heartbeat on a real pair: an idle real-time master tells its slave it is alive, so the
slave's promote refuses while it beats and goes ahead once three beats are missed; a clean stop says no
more heartbeats come (the schedule's window again); a promoted slave's refusal of a heartbeat fences the
old master without waiting for a change there."""
from __future__ import annotations

import json
import shutil
import signal
import time

import pytest

from promote_pair import kill_root, wait_for
from sync_pair import Pair, cli

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (shutil.which("rsync") and (shutil.which("stunnel4") or shutil.which("stunnel"))
                                      and shutil.which("openssl")), reason="needs rsync, stunnel4 and openssl")]


def _slave_status(pair) -> dict:
    return json.loads((pair.slave / "var/lib/hotsync/sync/status.json").read_text())


def _assess(pair) -> dict:
    cp = cli("hotsync-promote", "--dry-run", "--json", root=pair.slave)
    a = json.loads(cp.stdout)["assessment"]
    assert cp.returncode == (1 if a["refusals"] else 0), cp.stdout + cp.stderr
    return a


@pytest.fixture
def pair(tmp_path):
    """A pair whose master runs its real-time notifier (started by its service, as on a host), beating every
    second."""
    p = Pair(tmp_path, realtime=True)
    try:
        p.master.joinpath("srv/data").mkdir(parents=True)
        p.master.joinpath("srv/data/seed").write_text("seed\n")
        p.config(p.master, "setprop", "hotsync", "RealtimeHeartbeat", "1")
        p.pair()
        p.include("/srv/data")
        assert p.sync().returncode == 0       # ships the lists and the configuration copy the promote reads
        yield p
    finally:
        p.close()


def _wait(pred, timeout: float, what: str):
    got = wait_for(pred, timeout, 0.1)
    assert got, f"{what} within {timeout} s"
    return got


def test_an_idle_master_beats_and_the_slaves_promote_hears_it(pair):
    first = _wait(lambda: _slave_status(pair).get("last_beat"), 40, "no heartbeat reached the slave")
    # the notifier's first heartbeat comes at its start, beside its start-up full sync: wait for that sync
    _wait(lambda: pair.status(pair.master)["realtime"].get("full_syncs"), 30, "the notifier did not start")
    seen = _slave_status(pair)["last_beat"]["time"]
    received = _slave_status(pair).get("last_received")
    history = len(_slave_status(pair).get("history") or [])
    _wait(lambda: _slave_status(pair)["last_beat"]["time"] > seen + 1.5, 15, "the heartbeats did not go on")
    assert first["every"] == 1
    st = _slave_status(pair)
    # a heartbeat is no push: nothing recorded as received, nothing in the history, nothing in flight
    assert st.get("last_received") == received and len(st.get("history") or []) == history
    assert not st.get("receiving") and st["last_beat"]["from"] == "127.0.0.1"
    # nothing changed on the master for seconds, yet the slave's promote knows it is alive
    a = _assess(pair)
    assert a["heartbeat"] == 1 and a["window"] == 4 and st["last_beat"]["every"] == 1
    assert [r["why"] for r in a["refusals"]] == ["master-alive"], a["refusals"]
    assert "3 missed heartbeats of 1 s" in a["refusals"][0]["text"]
    assert "master heartbeat:" in cli("hotsync", "status", root=pair.slave).stdout
    _wait(lambda: "heartbeat:       every 1 s of quiet; last 2" in cli("hotsync", "status", root=pair.master).stdout,
          10, "the master's status shows no heartbeat")
    assert ", ok" in next(ln for ln in cli("hotsync", "status", root=pair.master).stdout.splitlines()
                      if "heartbeat:" in ln)
    # the master dies: three missed beats later the promote goes ahead without --force
    assert kill_root(pair.master)
    deadline = time.monotonic() + 15
    while (refusals := _assess(pair)["refusals"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not refusals and _assess(pair)["heartbeat"] == 1


def test_a_clean_stop_says_no_more_heartbeats_come_and_pushes_keep_them_fresh(pair):
    _wait(lambda: (_slave_status(pair).get("last_beat") or {}).get("every") == 1, 40, "no heartbeat reached the slave")
    _wait(lambda: pair.status(pair.master)["realtime"].get("full_syncs"), 30, "the notifier did not start")
    # a change: its real-time push refreshes the record too (a busy notifier beats less)
    before = _slave_status(pair)["last_beat"]["time"]
    (pair.master / "srv/data/new").write_text("new\n")
    _wait(lambda: (_slave_status(pair).get("last_received") or {}).get("kind") == "realtime", 20,
          "the change did not reach the slave")
    st = _slave_status(pair)
    assert (pair.slave / "srv/data/new").exists() and st["last_beat"]["time"] > before
    assert st["last_beat"]["every"] == 1     # the push refreshed the time; the period is the heartbeat's
    # the master's services stop cleanly (its notifier with them): it says so with its last heartbeat
    assert kill_root(pair.master, signal.SIGTERM)
    _wait(lambda: _slave_status(pair)["last_beat"]["every"] == 0, 30, "the stop did not say beat=0")
    a = _assess(pair)
    assert a["heartbeat"] is None and a["window"] == 2 * 15 * 60
    assert "said it stopped" in a["refusals"][0]["text"]


def test_a_promoted_slave_refuses_the_heartbeat_and_the_idle_old_master_fences_itself(pair):
    _wait(lambda: _slave_status(pair).get("last_beat"), 40, "no heartbeat reached the slave")
    cp = cli("hotsync-promote", "--yes", "--force", root=pair.slave)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    # nothing changes on the old master: its next heartbeat learns it was replaced
    _wait(lambda: cli("config", "getprop", "hotsync", "status", root=pair.master).stdout.strip() == "fenced",
          20, "the old master did not fence itself")
    assert "FENCED" in cli("hotsync", "status", root=pair.master).stdout
