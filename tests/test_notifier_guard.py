"""The real-time notifier's deletion guard counts deletions across pushes (hotsync_events.sync.ledger).

A mass deletion split over several small pushes must be held as the scheduled sync's guard holds one big
deletion: the unit tests check the ledger's arithmetic, the live test a real pair (rsync -> stunnel ->
rsync daemon) with the notifier running, deletions in small batches each pushed on its own.
"""
from __future__ import annotations

import json
import shutil
import time

import pytest

from hotsync_events.paths import Root
from hotsync_events.sync import guards, ledger as ledgers
from hotsync_events.sync.ledger import Ledger


# ------------------------------------------------------------------------------------------ unit
def test_ledger_counts_across_batches_and_refuses_past_the_limit():
    led = Ledger.current(None, {"start": 100.0, "files": 100})
    assert (led.since, led.files, led.deleted) == (100.0, 100, 0)
    for _ in range(5):                      # 5 x 4 = 20 %: each batch alone and the sum are allowed
        assert led.problem(4, 20) is None
        led.add(4)
    assert led.deleted == 20
    why = led.problem(4, 20)                # the sixth small batch would make it 24 %
    assert why and "24 of its 100 files" in why and "MaxDeletePercent=20%" in why
    assert led.problem(0, 20) is None       # a push that deletes nothing always goes


def test_splitting_cannot_game_it():
    """However a deletion of 30 % is cut up, the pushes stop before the total passes 20 %."""
    for size in (1, 2, 3, 7, 10):
        led = Ledger.current(None, {"start": 1.0, "files": 200})
        left = 60
        while left > 0:
            n = min(size, left)
            if led.problem(n, 20):
                break
            led.add(n)
            left -= n
        assert led.deleted <= 40 and left > 0, size


def test_a_new_full_sync_starts_a_new_ledger_and_a_restart_keeps_it(tmp_path):
    root = Root(tmp_path)
    status = root.join("/var/lib/hotsync/sync/status.json")
    status.parent.mkdir(parents=True)
    status.write_text(json.dumps({"last_success": {"start": 10.0, "files": 50}}))
    led = ledgers.record_deletions(root, 6)
    assert led.deleted == 6
    # a restarted notifier reads it back from the file (the same last success)
    assert ledgers.load(root).deleted == 6
    assert ledgers.record_deletions(root, 3).deleted == 9
    # a new successful full sync: the stored ledger no longer applies
    status.write_text(json.dumps({"last_success": {"start": 20.0, "files": 41}}))
    fresh = ledgers.load(root)
    assert (fresh.since, fresh.files, fresh.deleted) == (20.0, 41, 0)
    # no successful full sync yet: nothing can be judged, any deletion is left to the full sync
    status.write_text("{}")
    assert ledgers.load(root).problem(1, 20)


def test_full_sync_guard_counts_the_notifiers_deletions():
    stats = {"Number of files": 90, "Number of created files": 0}
    assert guards.deletion_problem(stats, 4, 20) is None                # 4 of 94 alone
    why = guards.deletion_problem(stats, 4, 20, already=16)             # 20 of 110 with what went before
    assert why is None
    why = guards.deletion_problem(stats, 10, 20, already=16)            # 26 of 116
    assert why and "16 the real-time notifier deleted" in why and "26 of 116" in why
    assert guards.deletion_problem(stats, 0, 20, already=50) is None    # nothing more to delete: no hold


# ------------------------------------------------------------------------------------------ live
needs_tools = pytest.mark.skipif(not (shutil.which("rsync") and (shutil.which("stunnel4") or shutil.which("stunnel"))
                                      and shutil.which("openssl")), reason="needs rsync, stunnel4 and openssl")


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _idle(n) -> bool:
    st = n.status()
    return st["running"] is None and not st["queued_paths"] and not st["full_sync_pending"]


def _handled(n, before: int) -> bool:
    """A push ran since *before* and nothing is running or queued (a held deletion leaves a retry pending)."""
    st = n.status()
    return st["pushes"] + st["failures"] > before and st["running"] is None and not st["queued_paths"]


@pytest.mark.slow
@needs_tools
def test_split_mass_deletion_is_held_until_allowed(tmp_path):
    from hotsync_events.realtime import wiring as notifier_sync
    from hotsync_events.manager import get_plugin_manager
    from sync_pair import Pair

    p = Pair(tmp_path)
    try:
        p.include("/srv/data")
        top = p.master / "srv/data"
        top.mkdir(parents=True)
        n_files = 60
        for i in range(n_files):
            (top / f"f{i:03d}").write_text(f"file {i}\n")
        p.pair()
        p.config(p.master, "setprop", "hotsync", "MaxDeletePercent", "20")
        assert p.sync().returncode == 0
        slave_top = p.slave / "srv/data"
        assert len(list(slave_top.iterdir())) == n_files

        root = Root(p.master)
        n = notifier_sync.start(root, pm=get_plugin_manager(), force=True, retry_max=2.0)
        assert not isinstance(n, str), n
        try:
            _wait(lambda: n.status()["full_syncs"] >= 1 and _idle(n), 60, "the notifier's first full sync")
            # 8 batches of 3 deletions (each ~4 % of the slave's files, 24 files = ~35 % in all), each batch
            # pushed on its own: the notifier waits for the slave to show it before the next one
            pushed = 0
            for b in range(8):
                names = [f"f{i:03d}" for i in range(b * 3, b * 3 + 3)]
                for name in names:
                    (top / name).unlink()
                before = n.status()["pushes"] + n.status()["failures"]
                _wait(lambda before=before: _handled(n, before), 30, f"batch {b} to be handled")
                if not any((slave_top / x).exists() for x in names):
                    pushed += 1
                time.sleep(0.1)
            time.sleep(0.5)
            left = {x.name for x in slave_top.iterdir()}
            # the first batches went through, then the notifier stopped pushing deletions
            assert 1 <= pushed < 8, pushed
            assert len(left) > n_files - 24, sorted(left)
            assert len(left) >= n_files - 24 + 3
            # the full sync's guard holds the rest: the status says so, with the way out
            last = json.loads((p.master / "var/lib/hotsync/sync/status.json").read_text())["last_run"]
            assert last["result"] == "held", last
            assert "MaxDeletePercent=20%" in last["message"] and "--allow-deletions" in last["message"], last
            assert "real-time notifier deleted" in last["message"], last
            led = ledgers.load(root)
            assert led.deleted == 3 * pushed and led.held
        finally:
            n.stop()
        # the held deletion stays held for a plain sync, and is applied with --allow-deletions
        cp = p.sync()
        assert cp.returncode == 3 and "HELD" in cp.stdout, cp.stdout + cp.stderr
        assert len(list(slave_top.iterdir())) == len(left)
        cp = p.sync("--allow-deletions")
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert sorted(x.name for x in slave_top.iterdir()) == sorted(x.name for x in top.iterdir())
        assert len(list(slave_top.iterdir())) == n_files - 24
        # a successful full sync starts a new count: a small deletion goes through again
        assert ledgers.load(root).deleted == 0
        n = notifier_sync.start(root, pm=get_plugin_manager(), force=True, retry_max=2.0)
        assert not isinstance(n, str), n
        try:
            _wait(lambda: n.status()["full_syncs"] >= 1 and _idle(n), 60, "the notifier's first full sync")
            (top / "f050").unlink()
            _wait(lambda: not (slave_top / "f050").exists(), 20, "a small deletion to reach the slave")
        finally:
            n.stop()
    finally:
        p.close()
