"""hotsync-promote end to end: two roots, real rsync daemon behind real stunnel, real SMTP receiver.

Sync, the master dies, promote (files equal the last complete sync), the old master comes back with
its schedule and is fenced (its pushes refused before a byte is written, one mail), re-pair, sync in
the new direction. Refusals (torn state, master pushing) and --force. kill -9 of the promote at every
phase, then run again: the same end state as an uninterrupted promote.
"""
from __future__ import annotations

import json
import os
import stat
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from promote_pair import (Pair, cli, kill_root, print_timings, promote, repair, status_file, tree, wait_for)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (shutil.which("rsync") and (shutil.which("stunnel4") or shutil.which("stunnel"))
                                      and shutil.which("openssl")), reason="needs rsync, stunnel4 and openssl")]
HOTSYNC = str(Path(sys.executable).parent / "hotsync")


def _pair(base: Path, smtp_port: int | None = None) -> Pair:
    p = Pair(base, smtp_port=smtp_port)
    p.pair()
    # the test drives every push itself: no real-time notifier beside it
    p.config(p.master, "setprop", "hotsync", "realtime", "disabled")
    p.save(p.master)
    # the master's lists only: each push ships them, the promote installs them on the new master
    p.include("/srv/data")
    d = p.master / "etc/hotsync/exclude.d"
    d.mkdir(parents=True, exist_ok=True)
    (d / "test.exclude").write_text("/srv/data/cache/\n")
    return p


def paths_of(root: Path) -> tuple[list, list]:
    """``hotsync paths --json``'s includes and excludes (path/pattern and who asked), host-independent."""
    cp = cli("hotsync", "paths", "--json", root=root)
    assert cp.returncode == 0, cp.stderr
    js = json.loads(cp.stdout)
    return ([(i["path"], i["from"]) for i in js["include"]], [(x["pattern"], x["from"]) for x in js["exclude"]])


@pytest.fixture
def pair(tmp_path, smtp):
    p = _pair(tmp_path, smtp.port)
    try:
        yield p
    finally:
        p.close()


def make_data(base: Path, n: int = 20) -> None:
    data = base / "srv/data"
    (data / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (data / f"f{i}").write_text(f"v1 {i}\n")
    (data / "sub/big.bin").write_bytes(os.urandom(200_000))
    (data / "sub/hard").write_text("hard\n")
    os.link(data / "sub/hard", data / "hard-too")
    os.symlink("f1", data / "link")
    os.chmod(data / "f2", 0o600)


def read_config(root: Path, *args: str) -> str:
    return cli("config", *args, root=root).stdout.strip()


# ------------------------------------------------------------------------------------------- end to end
def test_promote_fence_repair_end_to_end(pair, smtp):
    M, S = pair.master, pair.slave
    make_data(M)
    cp = pair.sync()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    synced = tree(M / "srv/data")
    assert tree(S / "srv/data") == synced
    assert os.readlink(S / "srv/data/link") == "/rsyncd-munged/f1"      # a slave stores links munged
    old_paths = paths_of(M)
    assert ("/srv/data", ["/etc/hotsync/include.d/test.include:1"]) in old_paths[0], old_paths
    assert ("/srv/data/cache/", ["/etc/hotsync/exclude.d/test.exclude:1"]) in old_paths[1], old_paths
    # the lists travel beside the config database, not in place: the slave's own /etc/hotsync is untouched
    assert not (S / "etc/hotsync/include.d").exists() and not (S / "etc/hotsync/exclude.d").exists()
    assert (S / "var/lib/hotsync/peer/lists/include.d/test.include").read_text() == "/srv/data\n"
    # the master dies: its processes are killed; what it writes afterwards never reaches the slave
    assert kill_root(M)
    (M / "srv/data/f0").write_text("written on the dead master\n")
    for i in range(30):
        (M / f"srv/data/stale{i}").write_text("only on the old master\n")

    # look first: nothing changes
    cp = promote(S, "--dry-run")
    assert "last complete sync arrived" in cp.stdout and "fence:" in cp.stdout, cp.stdout
    assert read_config(S, "getprop", "hotsync", "role") == "slave"
    assert not (S / "var/lib/hotsync/fenced").exists()
    # the master pushed seconds ago: refused without --force, split brain spelled out
    cp = promote(S, "--yes")
    assert cp.returncode == 1 and "SPLIT BRAIN" in cp.stderr, cp.stdout + cp.stderr
    t0 = time.monotonic()
    cp = promote(S, "--yes", "--force", "--json")
    wall = time.monotonic() - t0
    assert cp.returncode == 0, cp.stdout + cp.stderr
    out = json.loads(cp.stdout)
    assert out["promoted"] is True
    print_timings(f"end to end (process wall {wall:.2f}s)", out["journal"]["record"])
    assert read_config(S, "getprop", "hotsync", "role") == "master"
    assert read_config(S, "getprop", "hotsync", "SlaveHost") == ""      # pushes to no one until re-paired
    # the new master pushes what the old one pushed: the shipped lists were installed by the promote
    assert paths_of(S) == old_paths
    assert out["journal"]["lists"]["installed"] == ["include.d/test.include", "exclude.d/test.exclude"], out
    assert not (S / "run/hotsync/hotsync-scheduler.pid").exists()
    assert tree(S / "srv/data") == synced              # exactly the last complete sync
    assert os.readlink(S / "srv/data/link") == "f1" and out["journal"]["links"]["restored"] >= 1   # as the master had it
    st = pair.status(S)
    assert st["role"] == "master" and st["promote"]["epoch"] == 1 and st["fence"]["epoch"] == 1
    assert st["promote"]["data_age"] < 120 and st["promote"]["duration"] > 0
    text = cli("hotsync", "status", root=S).stdout
    assert "promoted:" in text and "pair epoch 1" in text and "accepted the data of" in text
    assert "signal-event post-restore-data" in cp.stderr

    # the new master takes writes
    (S / "srv/data/new-on-S").write_text("written on the new master\n")
    after_promote = tree(S / "srv/data")
    received = status_file(S).get("previous_slave", {}).get("last_received")

    # the old master comes back with its schedule: its push is refused, it learns it was demoted
    from hotsync_events.paths import Root
    from hotsync_events.sync.status import update_status

    # it was down for an hour: its schedule is due at once
    update_status(Root(M), lambda d: d["last_run"].update(start=d["last_run"]["start"] - 3600))
    pair.save(M)
    assert (M / "run/hotsync/hotsync-scheduler.pid").exists()
    cp = cli("hotsync", "daemon", "--max-runs", "1", "--first-after", "0", root=M, timeout=120)
    assert "FENCED" in cp.stdout, cp.stdout + cp.stderr
    assert tree(S / "srv/data") == after_promote        # 0 files changed on the new master
    sst = status_file(S)
    assert "FENCED epoch=1" in sst["last_refused"]["reason"]
    assert sst.get("last_received") is None and sst["previous_slave"]["last_received"] == received
    assert read_config(M, "getprop", "hotsync", "status") == "fenced"
    mst = pair.status(M)
    assert mst["status"] == "fenced" and mst["fenced"]["epoch"] == 1 and mst["epoch"] == 1
    assert "FENCED" in cli("hotsync", "status", root=M).stdout
    wait_for(lambda: len(smtp.messages) >= 1, 10)
    assert wait_for(lambda: not (M / "run/hotsync/hotsync-scheduler.pid").exists(), 20), "schedule not stopped"
    assert "disabled" in (M / "etc/cron.d/hotsync").read_text()
    # further tries push nothing and mail nothing more
    cp = cli("hotsync", "sync", root=M)
    assert cp.returncode == 2 and "FENCED" in cp.stdout
    assert tree(S / "srv/data") == after_promote
    # every mail goes out before the command that sends it returns: none can be on its way now
    assert [m["Subject"] for m in smtp.messages if "FENCED" in m["Subject"]] and len(smtp.messages) == 1, \
        [m["Subject"] for m in smtp.messages]

    # re-pair: the old master becomes the new slave
    repair(pair)
    assert read_config(M, "getprop", "hotsync", "status") == "enabled"
    assert pair.status(M)["role"] == "slave" and not pair.status(M).get("fenced")
    # the new master's first sync shows the dry run and holds the mass deletion of the stale files
    cp = cli("hotsync", "sync", root=S)      # a script: the first push after the promote is a person's
    assert cp.returncode == 2 and "is a person's" in cp.stdout, cp.stdout + cp.stderr
    person = ("--accept-fingerprint", pair.fingerprint(M))
    cp = cli("hotsync", "sync", *person, root=S)
    assert cp.returncode == 3, cp.stdout + cp.stderr
    assert "first sync to 127.0.0.1" in cp.stdout and "30 deletions" in cp.stdout
    assert "--allow-deletions" in cp.stdout
    cp = cli("hotsync", "sync", *person, "--allow-deletions", root=S)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert tree(M / "srv/data") == tree(S / "srv/data")
    assert list((M / "var/lib/hotsync/kept").glob("*/srv/data/*"))      # what it deleted there was kept
    assert (M / "srv/data/f0").read_text() == "v1 0\n"
    assert json.loads((M / "var/lib/hotsync/sync/epoch.json").read_text())["epoch"] == 1
    cp = cli("hotsync", "sync", root=S)
    assert cp.returncode == 0 and "up to date" in cp.stdout
    # the epoch check: a slave that knows a newer pair epoch than the pushing master refuses it
    epoch_file = M / "var/lib/hotsync/sync/epoch.json"
    epoch_file.write_text('{"epoch": 2}\n')
    (S / "srv/data/f3").write_text("v3\n")
    before = tree(M / "srv/data")
    cp = cli("hotsync", "sync", root=S)
    assert cp.returncode == 1 and "STALE master: the push carries pair epoch 1" in cp.stdout, cp.stdout
    assert tree(M / "srv/data") == before
    assert not list((M / "run/hotsync/xfer").iterdir())        # the early exec's note was consumed


# ------------------------------------------------------------------------------------------- refusals
def _slow_push(pair: Pair) -> subprocess.Popen:
    data = pair.master / "srv/data"
    for i in range(3):
        (data / f"big{i}").write_bytes(os.urandom(3_000_000))
    pair.config(pair.master, "setprop", "hotsync", "bwlimit", "1500")
    proc = subprocess.Popen([HOTSYNC, "sync"], env={**os.environ, "HOTSYNC_ROOT": str(pair.master)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert wait_for(lambda: status_file(pair.slave).get("receiving") and
                    (pair.slave / "srv/data").exists() and (pair.slave / "srv/data/.hotsync-partial").exists(), 30), \
        "the push never started"
    return proc


def test_refused_while_the_master_pushes_then_forced_cuts_it_off(pair):
    M, S = pair.master, pair.slave
    make_data(M, 5)
    assert pair.sync().returncode == 0
    proc = _slow_push(pair)
    try:
        cp = promote(S, "--yes")
        assert cp.returncode == 1, cp.stdout + cp.stderr
        assert "arriving right now" in cp.stderr and "SPLIT BRAIN" in cp.stderr
        assert read_config(S, "getprop", "hotsync", "role") == "slave" and not (S / "var/lib/hotsync/fenced").exists()
        cp = promote(S, "--yes", "--force")
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert "cut off the push in flight" in cp.stdout
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode != 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert read_config(S, "getprop", "hotsync", "role") == "master"
    assert not any((S / "srv/data").glob("big*"))       # not one file of the cut-off push landed
    before = tree(S / "srv/data")
    cp = pair.sync()
    assert cp.returncode == 1 and "FENCED" in cp.stdout
    assert tree(S / "srv/data") == before
    assert read_config(M, "getprop", "hotsync", "status") == "fenced"


def test_refused_on_a_torn_state_then_forced(pair):
    M, S = pair.master, pair.slave
    make_data(M, 5)
    assert pair.sync().returncode == 0
    proc = _slow_push(pair)
    proc.send_signal(signal.SIGKILL)                     # the master dies mid-push
    proc.communicate(timeout=10)
    assert wait_for(lambda: (status_file(S).get("last_received") or {}).get("result") == "failed"
                    and not status_file(S).get("receiving"), 20), status_file(S)
    kill_root(M)
    cp = promote(S, "--dry-run")
    assert cp.returncode == 1 and "DID NOT COMPLETE" in cp.stdout and "torn state" in cp.stderr
    cp = promote(S, "--yes")
    assert cp.returncode == 1 and "torn state" in cp.stderr and "--force" in cp.stderr
    assert read_config(S, "getprop", "hotsync", "role") == "slave"
    # no terminal and no --yes: refused with a clear message, nothing changed
    cp = promote(S, "--force")
    assert cp.returncode == 2 and "no terminal" in cp.stderr
    assert read_config(S, "getprop", "hotsync", "role") == "slave"
    cp = promote(S, "--yes", "--force")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "WARNING (--force): torn state" in cp.stdout
    assert read_config(S, "getprop", "hotsync", "role") == "master"
    # promoting a master is refused
    cp = promote(S, "--yes", "--force")
    assert cp.returncode == 2 and "already promoted at" in cp.stderr


# ------------------------------------------------------------------------------------------- kill -9
CRASH_POINTS = ("verify", "fence", "links", "config", "databases", "step:antivirus-init-avdb", "steps", "role",
                "services")


def _state(root: Path) -> dict:
    """What a promote leaves, minus times and pids."""
    from hotsync_events.configdb import ConfigDB

    db = json.dumps(ConfigDB(root / "var/lib/hotsync/db/configuration").as_dict(), sort_keys=True)
    st = status_file(root)
    rec = st.get("promote") or {}
    fence = json.loads((root / "var/lib/hotsync/fenced").read_text())
    journal = json.loads((root / "var/lib/hotsync/sync/promote.json").read_text())
    return {"db": db, "role": st.get("role"), "epoch": rec.get("epoch"), "failed": rec.get("failed_steps"),
            "fence": (fence["epoch"], fence["old_master"]), "finished": bool(journal.get("finished")),
            "steps": {k: v["status"] for k, v in journal["steps"].items()},
            "epoch_file": json.loads((root / "var/lib/hotsync/sync/epoch.json").read_text())["epoch"],
            "archived": sorted(st.get("previous_slave", {})),
            "avdb": sorted(p.name for p in (root / "var/lib/clamav").iterdir()),
            "tree": tree(root / "srv/data"),
            "lists": {k: sorted(os.listdir(root / "etc/hotsync" / k)) if (root / "etc/hotsync" / k).is_dir()
                      else None for k in ("include.d", "exclude.d")}}   # installed, and never twice


def test_kill_9_at_every_phase_then_again_same_end_state(tmp_path):
    (tmp_path / "pair").mkdir()
    p = _pair(tmp_path / "pair")
    try:
        make_data(p.master, 5)
        p.config(p.master, "setprop", "hotsync", "interval", "30", "MaxDeletePercent", "30")
        assert p.sync().returncode == 0
        p.settled()                        # the slave recorded the push before its daemon is stopped
        kill_root(p.master)
        kill_root(p.slave)                 # a copy of the slave must not own the original's daemons
        # a plugin with a promote step is active on the slave: ClamAV, a signature to put in place
        (p.slave / "etc/freshclam.conf").write_text("# test\n")
        (p.slave / "usr/share/clamav").mkdir(parents=True)
        for sig in ("main", "daily", "bytecode"):
            (p.slave / f"usr/share/clamav/{sig}.cvd").write_text(sig)
        (p.slave / "var/lib/clamav").mkdir(parents=True)
        template = tmp_path / "template"
        p.snapshots_written(p.slave)       # a detached status writer's temp file must not vanish under the copy
        # the killed listener's socket stays behind (the next listener replaces it): a socket is not copied
        shutil.copytree(p.slave, template, symlinks=True, ignore=lambda d, names: [
            n for n in names if stat.S_ISSOCK(os.lstat(os.path.join(d, n)).st_mode)])
    finally:
        p.close()

    def fresh(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(template, dest, symlinks=True)
        for pidfile in (dest / "run/hotsync").glob("*.pid"):
            pidfile.unlink()
        return dest

    def stop(root: Path) -> None:
        cli("config", "setprop", "hotsync", "status", "disabled", root=root)
        cli("signal-event", "nethserver-hotsync-save", root=root)
        kill_root(root)

    ref = fresh("reference")
    try:
        cp = promote(ref, "--yes", "--force", "--json")
        assert cp.returncode == 0, cp.stdout + cp.stderr
        print_timings("uninterrupted", json.loads(cp.stdout)["journal"]["record"])
        expected = _state(ref)
    finally:
        stop(ref)
    assert expected["steps"] == {"antivirus-init-avdb": "success"}
    assert expected["avdb"] == ["bytecode.cvd", "daily.cvd", "main.cvd"]
    assert expected["lists"] == {"include.d": ["test.include"], "exclude.d": ["test.exclude"]}
    for point in CRASH_POINTS:
        root = fresh("crash-" + point.replace(":", "-"))
        try:
            cp = promote(root, "--yes", "--force", env={"HOTSYNC_PROMOTE_CRASH_AT": point})
            assert cp.returncode == -signal.SIGKILL, (point, cp.returncode, cp.stdout, cp.stderr)
            cp = promote(root, "--yes", "--force", "--json")
            assert cp.returncode == 0, (point, cp.stdout, cp.stderr)
            resumed = json.loads(cp.stdout)
            assert resumed["assessment"]["resuming"] or point == "verify", point
            state = _state(root)
            for key in ("db", "epoch", "fence", "epoch_file"):   # the db names the root: compare without it
                if key == "db":
                    assert state["db"].replace(str(root), "R") == expected["db"].replace(str(ref), "R"), point
                else:
                    assert state[key] == expected[key], (point, key)
            assert {k: v for k, v in state.items() if k not in ("db",)} == \
                {k: v for k, v in expected.items() if k not in ("db",)}, point
            print(f"kill -9 at {point}: resumed, same end state "
                  f"({len(resumed['journal']['runs'])} runs in the journal)")
        finally:
            stop(root)
