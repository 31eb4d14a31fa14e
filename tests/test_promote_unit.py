"""hotsync-promote's pieces without daemons: host-local merge, assessment windows, the FENCED marker."""
from __future__ import annotations

import json
import time

from hotsync_events.sync import fence
from hotsync_events import promote
from hotsync_events.configdb import ConfigDB, open_db
from hotsync_events.configdb.format import Record
from hotsync_events.sync.status import update_status


def _slave(root, *, received_ago: float, result: str = "success", realtime: str = "disabled", interval: int = 15):
    db = open_db("configuration", root)
    db.setprop("hotsync", {"role": "slave", "MasterHost": "192.0.2.10", "port": "2730"})
    db.setprop("rsyncd", {"password": "Secret-123", "TCPPort": "8873"})
    peer = root.join("/var/lib/hotsync/peer")
    peer.mkdir(parents=True)
    m = ConfigDB(peer / "configuration")
    m.set("hotsync", "configuration", {"role": "master", "SlaveHost": "192.0.2.20", "port": "273",
                                       "interval": str(interval), "realtime": realtime, "MailTo": "ops@example.org"})
    m.set("rsyncd", "service", {"password": "Secret-123", "TCPPort": "873", "status": "disabled"})
    m.set("SystemName", "mastername")
    m.set("app", "service", {"status": "enabled", "Port": "8080"})
    ConfigDB(peer / "networks").set("eth0", "ethernet", {"role": "green", "ipaddr": "192.0.2.10"})
    now = time.time()
    run = {"start": now - received_ago - 2, "end": now - received_ago, "exit_status": 0 if result == "success" else 12,
           "result": result, "from": "192.0.2.10"}
    ok = dict(run, result="success", exit_status=0)

    def change(d):
        d.update(role="slave", last_received=run, last_success=ok)

    update_status(root, change)
    return db


def test_merge_keeps_host_local_keys_and_props():
    local = {"hotsync": Record("configuration", {"role": "slave", "MasterHost": "m", "interval": "15"}),
             "SystemName": Record("slavename"), "mine": Record("service", {"x": "1"})}
    peer = {"hotsync": Record("configuration", {"role": "master", "SlaveHost": "s", "interval": "5"}),
            "SystemName": Record("mastername"), "app": Record("service", {"a": "b"})}
    out = promote.merge_records(local, peer, frozenset({"SystemName"}),
                                frozenset({("hotsync", "role"), ("hotsync", "MasterHost"), ("hotsync", "SlaveHost")}))
    assert out["hotsync"] == Record("configuration", {"role": "slave", "MasterHost": "m", "interval": "5"})
    assert out["app"] == Record("service", {"a": "b"}) and out["mine"] is None and "SystemName" not in out
    # applying it twice changes nothing more
    applied = {**local, **{k: v for k, v in out.items() if v is not None}}
    applied.pop("mine")
    assert promote.merge_records(applied, peer, frozenset({"SystemName"}),
                                 frozenset({("hotsync", "role"), ("hotsync", "MasterHost"), ("hotsync", "SlaveHost")})) == {}


def test_restore_config_one_transaction_keeps_this_hosts_own(root):
    db = _slave(root, received_ago=3600)
    db.set("SystemName", "slavename")
    open_db("networks", root).set("eth0", "ethernet", {"role": "green", "ipaddr": "192.0.2.20"})
    done = promote.restore_config(root, log=lambda m: None)
    assert dict(done)["configuration"] > 0 and "networks" not in dict(done)
    db.reload()
    h = db.props("hotsync")
    assert (h["role"], h["MasterHost"], h["port"], h["MailTo"]) == ("slave", "192.0.2.10", "2730", "ops@example.org")
    assert db.props("rsyncd")["TCPPort"] == "8873" and db.get("SystemName") == "slavename"
    assert db.props("app") == {"status": "enabled", "Port": "8080"}
    assert open_db("networks", root).props("eth0")["ipaddr"] == "192.0.2.20"
    assert promote.restore_config(root, log=lambda m: None) == [("configuration", 0)]
    hist = root.join("/var/log/hotsync/config-history.log").read_text()
    assert "Secret-123" not in hist


def test_assess_windows_and_refusals(root):
    _slave(root, received_ago=20 * 60)           # 20 min ago, interval 15: within two intervals
    a = promote.assess(root)
    assert [r["why"] for r in a["refusals"]] == ["master-alive"]
    assert "two sync intervals (30 min)" in a["refusals"][0]["text"] and a["next_epoch"] == 1
    assert 1190 < a["data_age"] < 1300


def _beat(root, ago: float, every: int | None = 20) -> None:
    update_status(root, lambda d: d.update(last_beat={"time": time.time() - ago, "from": "192.0.2.10", "every": every}))


def test_assess_old_copy_is_accepted_and_realtime_window_is_four_heartbeats(root):
    _slave(root, received_ago=600, realtime="enabled")
    _beat(root, 90)                 # the master's notifier beat until 90 s ago, then fell silent
    a = promote.assess(root)
    assert a["refusals"] == [] and a["window"] == 80 and a["heartbeat"] == 20
    _beat(root, 90, every=40)       # the period its sessions said, not a configuration copy's
    a = promote.assess(root)
    assert a["window"] == 160 and [r["why"] for r in a["refusals"]] == ["master-alive"]
    assert "2min 40s (3 missed heartbeats of 40 s" in a["refusals"][0]["text"]


def test_assess_idle_realtime_master_without_heartbeats_is_alive_for_two_intervals(root):
    """A live real-time master that changes nothing pushes nothing: without its heartbeats (its notifier not
    running, or an older version) a quiet minute says nothing about it, so the schedule's window holds."""
    _slave(root, received_ago=90, realtime="enabled")
    a = promote.assess(root)
    assert a["heartbeat"] is None and a["window"] == 30 * 60
    assert [r["why"] for r in a["refusals"]] == ["master-alive"]
    assert "not running" in a["refusals"][0]["text"]
    _beat(root, 600)                # it beat, but stopped long before its last push: not beating up to it
    assert promote.assess(root)["window"] == 30 * 60
    _beat(root, 30, every=None)     # a real-time push of a master that does not beat (an older version)
    assert promote.assess(root)["window"] == 30 * 60
    _beat(root, 30, every=0)        # its notifier stopped cleanly: no more heartbeats come
    a = promote.assess(root)
    assert a["window"] == 30 * 60 and "said it stopped" in a["refusals"][0]["text"]
    _beat(root, 30)                 # heard 30 s ago, within four beats
    a = promote.assess(root)
    assert a["window"] == 80 and [r["why"] for r in a["refusals"]] == ["master-alive"]


def test_a_session_still_running_is_the_master_heard_now(root, monkeypatch):
    """A long push (or dry run) holds the slave's one session: heartbeats wait at the door, and the session
    itself says the master is there, however long ago it began."""
    import os

    from hotsync_events.sync.xfer import proc_start

    _slave(root, received_ago=600, realtime="enabled")
    _beat(root, 600)
    assert promote.assess(root)["refusals"] == []
    me = str(os.getpid())           # a live process standing for the session's daemon (its name is checked)
    update_status(root, lambda d: d.update(dry_running={me: {"start": time.time() - 500, "ticks": proc_start(me)}}))
    import hotsync_events.promote.verify as verify

    monkeypatch.setattr(verify, "_alive_rsync", lambda pid, ticks=None: pid == me and ticks == proc_start(me))
    a = promote.assess(root)
    assert a["contact_age"] < 5 and [r["why"] for r in a["refusals"]] == ["master-alive"]
    update_status(root, lambda d: d.update(dry_running={me: {"start": 1.0, "ticks": "1"}}))   # the pid reused
    assert promote.assess(root)["refusals"] == []


def test_assess_torn_and_hard_refusals(root):
    _slave(root, received_ago=3600, result="failed")
    a = promote.assess(root)
    assert [r["why"] for r in a["refusals"]] == ["torn"] and a["refusals"][0]["force"] is True
    open_db("configuration", root).setprop("hotsync", {"role": "master"})
    a = promote.assess(root)
    assert [(r["why"], r["force"]) for r in a["refusals"]] == [("not-slave", False)]


def test_cli_dry_run_json_and_no_terminal(root, run):
    _slave(root, received_ago=3600)
    cp = run("hotsync-promote", "--dry-run", "--json", "--root", str(root))
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout)
    assert out["assessment"]["refusals"] == [] and out["promoted"] is False
    assert "last complete sync arrived" in cp.stderr
    cp = run("hotsync-promote", "--root", str(root), input="")
    assert cp.returncode == 2 and "no terminal" in cp.stderr
    assert open_db("configuration", root).getprop("hotsync", "role") == "slave"
    assert not root.join(fence.FENCE_FILE).exists()


def test_marker_round_trip_and_epoch_rule(root):
    rec = fence.write_fence(root, 3, "192.0.2.10")
    line = "refused by the slave: " + fence.refusal(rec)
    m = fence.parse_marker("@ERROR: junk\n" + line)
    assert m["epoch"] == 3 and m["since"] == rec["time"]
    assert fence.parse_marker("refused by the slave: hotsync is disabled") is None
    # a refusal that is not newer than this host's epoch demotes nothing
    fence.write_epoch(root, 3, "promoted")
    open_db("configuration", root).setprop("hotsync", {"role": "master", "SlaveHost": "192.0.2.10"})
    assert not fence.demote(root, m, slave="x", mail_to="a@b.c", smarthost="127.0.0.1:9", run_event=False,
                            log=lambda s: None)
    assert open_db("configuration", root).getprop("hotsync", "status") == "enabled"
    fence.write_epoch(root, 2, "lower")                 # never lowered
    assert fence.read_epoch(root) == 3


def test_pre_xfer_epoch_check(root):
    from hotsync_events.sync.xfer import pre_xfer

    db = open_db("configuration", root)
    db.setprop("hotsync", {"role": "slave", "MasterHost": "127.0.0.1"})
    db.setprop("rsyncd", {"password": "Secret-123"})
    from sync_pair import SERVER_ENV

    env = {"RSYNC_HOST_ADDR": "127.0.0.1", "RSYNC_PID": "4242", "RSYNC_MODULE_NAME": "hotsync", **SERVER_ENV}
    xfer = root.join("/run/hotsync/xfer")
    xfer.mkdir(parents=True)
    fence.write_epoch(root, 2, "test")
    # no epoch at all (an rsync client of its own, an older master) is refused as much as an older epoch
    for sent, ok, why in (("hotsync-epoch 1 kind=sync\n", False, "STALE master"),
                          ("hotsync-epoch 2 kind=sync\n", True, ""), ("hotsync-epoch 3 kind=sync\n", True, ""),
                          ("", False, "no pair epoch"), (None, False, "no pair epoch"),
                          ("hotsync-epoch x kind=sync\n", False, "no pair epoch")):
        if sent is not None:
            (xfer / "early.4242").write_text(sent)
        code, msg = pre_xfer(root, env)
        assert (code == 0) is ok, (sent, msg)
        assert why in msg
        assert not (xfer / "early.4242").exists()
    assert fence.read_epoch(root) == 2           # a push never raises this host's epoch
    fence.write_fence(root, 3, "127.0.0.1")          # fenced: refused whatever the sender's epoch
    (xfer / "early.4242").write_text("hotsync-epoch 9 kind=sync\n")
    code, msg = pre_xfer(root, env)
    assert code == 1 and msg.startswith("refused by the slave: FENCED epoch=3")


def test_an_error_no_phase_expected_stops_the_promote_with_exit_4_not_1(root):
    """Exit 1 means "refused, nothing changed"; an error in the middle of a phase has changed things: it is
    said in one line, kept in the journal, and the exit code says to run again (it resumes)."""
    from hotsync_events.promote.journal import read_journal
    from hotsync_events.promote.run import EXIT_CRITICAL, Promote

    _slave(root, received_ago=3600)
    said: list[str] = []
    p = Promote(root, {}, log=said.append)              # no assessment: the fence phase fails on it
    assert p.run() == EXIT_CRITICAL
    assert said[-1].startswith("hotsync-promote: STOPPED by an error: KeyError") and "again" in said[-1]
    assert read_journal(root)["error"].startswith("KeyError")
