"""A directory renamed on the master is renamed on the slave (issue 20): the notifier carries the rename in
the session's early input and the slave's pre-xfer hook replays it after its own checks, so no file travels
again and the deletion guard sees no mass deletion. The slave refuses a rename a push could not make.

Real pair (rsync, stunnel, the slave's daemon and hooks); the units at the end run the trigger and the
slave's rules alone."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from hotsync_events.paths import Root
from hotsync_events.realtime.debounce import Trigger
from hotsync_events.sync import moves
from notifier_helpers import stop_process, tree_digest, wait_equal, watch_process
from sync_pair import Pair, cli

NEED = pytest.mark.skipif(not (shutil.which("rsync") and (shutil.which("stunnel4") or shutil.which("stunnel"))),
                          reason="needs rsync and stunnel4")


def _received(pair: Pair) -> int:
    """Bytes the slave's daemon took in, as its log says, summed over every session so far."""
    log = (pair.slave / "var/log/hotsync/rsyncd.log").read_text(errors="replace")
    return sum(int(line.split("received ")[1].split()[0]) for line in log.splitlines() if " received " in line)


@pytest.mark.slow
@NEED
def test_a_renamed_directory_is_renamed_on_the_slave_and_not_sent_again(pair):
    pair.include("/srv/data")
    top = pair.master / "srv/data"
    big = top / "projects/alpha"
    big.mkdir(parents=True)
    for i in range(400):
        (big / f"f{i:03}").write_bytes(os.urandom(2048))
    assert pair.sync().returncode == 0
    proc = watch_process(pair.master)
    try:
        before = _received(pair)
        # a change inside, then the rename: the changed file arrives under its new name
        (big / "f007").write_bytes(b"changed before the rename\n")
        big.rename(top / "projects/beta")
        (top / "projects/beta/after").write_text("written after the rename\n")
        ok, _ = wait_equal(top, pair.slave / "srv/data", timeout=20)
        if not ok:
            log = stop_process(proc)
            a, b = tree_digest(top), tree_digest(pair.slave / "srv/data")
            pytest.fail(f"trees differ: {sorted(set(a.items()) ^ set(b.items()))[:8]}\n{log[-3000:]}")
    finally:
        log = stop_process(proc) if proc.poll() is None else ""
    st = json.loads((pair.slave / "var/lib/hotsync/sync/status.json").read_text())
    assert st["last_renames"]["renamed"] == [["/srv/data/projects/alpha", "/srv/data/projects/beta"]], st
    # 400 x 2 KiB did not travel again: the sessions since took in a few KiB (file lists, two changed files)
    assert _received(pair) - before < 200_000, (_received(pair) - before, log[-2000:])
    assert "full sync: a directory was renamed" not in log, log[-2000:]


@pytest.mark.slow
@NEED
def test_a_rename_the_slave_cannot_replay_becomes_a_full_sync_not_a_failure(pair):
    """The slave holds something else where the master renamed to (a person made it there): it refuses the
    rename, renames nothing, and the master sends the renamed tree by a full sync, with no failure and no
    alert."""
    pair.include("/srv/data")
    top = pair.master / "srv/data"
    (top / "a").mkdir(parents=True)
    (top / "a/f").write_text("f\n")
    assert pair.sync().returncode == 0
    # the fallback full sync deletes what the slave held at b (the stray file): not the guard's business here
    assert cli("config", "setprop", "hotsync", "MaxDeletePercent", "100", root=pair.master).returncode == 0
    proc = watch_process(pair.master)
    try:
        (pair.slave / "srv/data/b").mkdir()      # after the notifier's first full sync, which would delete it
        (pair.slave / "srv/data/b/stray").write_text("made on the slave\n")
        (top / "a").rename(top / "b")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (pair.slave / "srv/data/b/f").exists():
            time.sleep(0.1)
        time.sleep(1.5)                      # the notifier's status file is written at most once a second
        rt = json.loads((pair.master / "run/hotsync/realtime.json").read_text())
    finally:
        log = stop_process(proc)
    assert (pair.slave / "srv/data/b/f").read_text() == "f\n", log[-2000:]
    assert not (pair.slave / "srv/data/a").exists(), log[-2000:]
    assert rt["failures"] == 0 and not rt.get("last_error"), (rt, log[-2000:])
    assert "did not replay" in log, log[-2000:]
    refused = json.loads((pair.slave / "var/lib/hotsync/sync/status.json").read_text())["last_refused"]
    assert "already exists" in refused["reason"], refused


@pytest.mark.slow
@NEED
def test_the_slave_refuses_a_rename_into_an_area_a_push_never_writes(pair):
    """A master (or anyone with its certificate and the password) cannot use a rename to reach what a push
    may not write: the slave refuses it, renames nothing, and says why."""
    from hotsync_events.sync.fence import read_epoch
    from hotsync_events.sync.rsync import early_input

    pair.include("/srv/data")
    (pair.master / "srv/data/d").mkdir(parents=True)
    (pair.master / "srv/data/d/x").write_text("x\n")
    assert pair.sync().returncode == 0
    run = pair.master / "run/hotsync"
    for src, dest in (("/srv/data/d", "/etc/cron.d/evil"), ("/srv/data/d", "/srv/data/../../etc/x"),
                      ("/etc", "/srv/data/etc")):
        enc = moves.encode([(src, dest)])
        early, _nonce = early_input(run, "realtime", read_epoch(Root(str(pair.master))), enc)
        env = {**os.environ, "HOTSYNC_STUNNEL": shutil.which("stunnel4") or "stunnel",
               "HOTSYNC_STUNNEL_CONF": str(pair.master / "etc/stunnel/hotsync-client.conf")}
        cp = subprocess.run(["rsync", "-a", "--no-D", "--no-inc-recursive", "-e",
                             """sh -c 'exec "$HOTSYNC_STUNNEL" "$HOTSYNC_STUNNEL_CONF"' stunnel""",
                             f"--password-file={run}/rsync.password", f"--early-input={early}", "--files-from=/dev/null",
                             "/", "hotsyncuser@x::hotsync/"], env=env, capture_output=True, text=True, timeout=60)
        assert cp.returncode != 0, (src, dest, cp.stdout, cp.stderr)
        refused = json.loads((pair.slave / "var/lib/hotsync/sync/status.json").read_text())["last_refused"]
        assert "was not replayed" in refused["reason"], refused
        assert any(w in refused["reason"] for w in ("outside what the master ships", "plain absolute path")), refused
        assert (pair.slave / "srv/data/d/x").read_text() == "x\n"
        assert not (pair.slave / "etc/cron.d/evil").exists() and not (pair.slave / "srv/data/etc").exists()


# ----------------------------------------------------------------------------------------------- units
def test_the_trigger_carries_renames_and_the_paths_under_their_new_names():
    t = Trigger(settle=0.0, clock=lambda: 100.0)
    t.change("/srv/a/old/f1")
    t.change("/srv/a/other")
    assert t.move("/srv/a/old", "/srv/a/new")
    b = t.take()
    assert b is not None and b.moves == (("/srv/a/old", "/srv/a/new"),)
    # the changed file under its new name, the directory, and the directory above (the rename changed its times)
    assert b.paths == ("/srv/a", "/srv/a/new", "/srv/a/new/f1", "/srv/a/other")
    # two sibling renames in one batch: both replayed
    t.finish(True)
    assert t.move("/srv/a/x", "/srv/a/y") and t.move("/srv/a/z", "/srv/a/w")
    assert t.take().moves == (("/srv/a/x", "/srv/a/y"), ("/srv/a/z", "/srv/a/w"))


def test_a_rename_that_cannot_be_replayed_falls_back():
    t = Trigger(settle=0.0, clock=lambda: 100.0)
    t.change("/srv/a/fresh")                      # created since the last push: the slave may not hold it
    assert not t.move("/srv/a/fresh", "/srv/a/renamed")
    t2 = Trigger(settle=0.0, clock=lambda: 100.0)
    t2.change("/srv/b")
    assert t2.take() is not None                  # a batch runs: it may carry paths under the source
    assert not t2.move("/srv/a/old", "/srv/a/new")
    t3 = Trigger(settle=0.0, clock=lambda: 100.0)
    t3.need_full("x")
    assert not t3.move("/srv/a/old", "/srv/a/new")


def test_renames_round_trip_and_bad_values_are_refused():
    pairs = [("/srv/a b/ünï", "/srv/c")]
    assert moves.decode(moves.encode(pairs) or "") == pairs
    assert moves.encode([("/a", "/b")] * (moves.MAX_MOVES + 1)) is None
    import base64

    not_json = base64.urlsafe_b64encode(b"not json").decode()
    not_pairs = base64.urlsafe_b64encode(b'[["/a"]]').decode()
    surrogate = base64.urlsafe_b64encode(b'[["/a\\ud800","/b"]]').decode()
    dotted = base64.urlsafe_b64encode(b'[["/a/../etc","/b"]]').decode()
    for bad in ("", "!!!", not_json, not_pairs, surrogate, dotted, "A" * (moves.MAX_ENCODED + 4)):
        assert moves.decode(bad) is None, bad


def test_the_slave_replays_only_what_a_push_could_write(tmp_path):
    root = Root(str(tmp_path))
    peer = tmp_path / "var/lib/hotsync/peer"
    peer.mkdir(parents=True)
    (peer / "manifest.json").write_text(json.dumps({"format": 1, "includes": ["/srv/data", "/etc/app"]}))
    (tmp_path / "srv/data/d").mkdir(parents=True)
    (tmp_path / "srv/data/d/f").write_text("f")
    (tmp_path / "srv/other").mkdir()
    (tmp_path / "srv/data/link").symlink_to(tmp_path / "srv/other")
    (tmp_path / "etc/cron.d").mkdir(parents=True)
    for src, dest, why in (("/srv/data/d", "/srv/elsewhere", "outside what the master ships"),
                           ("/srv/data/d", "/srv/data/link/d", "symlink"),
                           ("/srv/data/d", "/srv/data/d/sub", "inside"),
                           ("/srv/data/nope", "/srv/data/e", "does not exist"),
                           ("/srv/data/d/f", "/srv/data/e", "not a directory"),
                           ("/srv/data/d", "/srv/data/./e", "plain absolute path")):
        problem, done = moves.apply_moves(root, [(src, dest)])
        assert problem and why in problem and not done, (src, dest, problem)
    assert (tmp_path / "srv/data/d/f").read_text() == "f"
    (tmp_path / "srv/data/empty").mkdir()          # rename(2) would replace an empty directory: not here
    problem, done = moves.apply_moves(root, [("/srv/data/d", "/srv/data/empty")])
    assert problem and "already exists" in problem and (tmp_path / "srv/data/d/f").exists()
    (tmp_path / "srv/data/empty").rmdir()
    problem, done = moves.apply_moves(root, [("/srv/data/d", "/srv/data/e"), ("/srv/data/e", "/srv/data/g")])
    assert problem is None and done == [("/srv/data/d", "/srv/data/e"), ("/srv/data/e", "/srv/data/g")]
    assert (tmp_path / "srv/data/g/f").read_text() == "f" and not (tmp_path / "srv/data/d").exists()


def test_a_rename_under_a_path_dependent_exclude_is_not_replayed():
    from hotsync_events.realtime.notifier import ExcludeMatcher

    m = ExcludeMatcher(["*.tmp", "cache/", "/srv/data/old/private"])
    assert m.depends_on("/srv/data/old", "/srv/data/new")        # the exclude moves with the directory
    assert not m.depends_on("/srv/data/x", "/srv/data/y")        # names that match at any depth move along
    assert ExcludeMatcher(["logs/*.gz"]).depends_on("/a", "/b")   # a "/" pattern may match at any depth
