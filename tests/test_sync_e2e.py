"""End to end: two roots paired with the manual's commands, real rsync daemon behind real stunnel.

Each test pairs a fresh master and slave on loopback ports, pushes with ``hotsync sync`` and looks at
the slave's tree, both status files and the mail a real SMTP server (aiosmtpd) received.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hotsync_events.sync.symlinks import MUNGED
from sync_pair import Inbox, Pair, cli, tree

HOTSYNC = str(Path(sys.executable).parent / "hotsync")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (shutil.which("rsync") and (shutil.which("stunnel4") or shutil.which("stunnel"))
                                      and shutil.which("openssl")), reason="needs rsync, stunnel4 and openssl")]


@pytest.fixture
def pair(tmp_path, smtp):
    p = Pair(tmp_path, smtp_port=smtp.port)
    try:
        yield p.pair()
    finally:
        p.close()


def wait_mail(inbox: Inbox, n: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while len(inbox.messages) < n and time.monotonic() < deadline:
        time.sleep(0.05)


def make_tree(base: Path) -> None:
    data = base / "srv/data"
    (data / "sub dir/deeper").mkdir(parents=True)
    (data / "plain").write_text("plain file\n")
    (data / "sub dir/with space.txt").write_text("spaces\n")
    (data / "sub dir/naïve ü ß 日本.txt").write_text("utf-8 name\n")
    (data / "new\nline").write_text("a newline in the name\n")
    (data / "big.bin").write_bytes(os.urandom(300_000))
    (data / "hard-a").write_text("linked\n")
    os.link(data / "hard-a", data / "sub dir/hard-b")
    os.symlink("plain", data / "rel-link")
    os.symlink("/etc/passwd", data / "abs-link")              # stored as is, never followed on the slave
    os.symlink("does-not-exist", data / "dangling")
    os.symlink("sub dir", data / "dir-link")
    (data / "secret").write_text("0600\n")
    os.chmod(data / "secret", 0o600)
    (data / "script").write_text("#!/bin/sh\n")
    os.chmod(data / "script", 0o755)
    os.chmod(data / "sub dir/deeper", 0o750)
    (data / "owned").write_text("owned by 1234:5678\n")
    if os.geteuid() == 0:
        os.chown(data / "owned", 1234, 5678)
        os.chown(data / "sub dir/deeper", 4321, 8765)
    (base / "srv/other").mkdir()
    (base / "srv/other/x").write_text("x\n")


def test_push_copies_the_tree_exactly_then_changes_deletes_renames(pair):
    make_tree(pair.master)
    pair.include("/srv/data", "/srv/other/x")
    slave_db = (pair.slave / "var/lib/hotsync/db/configuration").read_bytes()
    cp = pair.sync()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert tree(pair.master / "srv/data") == tree(pair.slave / "srv/data")
    assert (pair.slave / "srv/other/x").read_text() == "x\n"
    # a link is stored munged on the slave, where nothing follows it; a promote writes it back (test_promote)
    assert os.readlink(pair.slave / "srv/data/abs-link") == MUNGED + "/etc/passwd"
    # the master's config db is shipped beside the slave's own, which is untouched
    assert (pair.slave / "var/lib/hotsync/peer/configuration").read_bytes() == \
        (pair.master / "var/lib/hotsync/db/configuration").read_bytes()
    assert (pair.slave / "var/lib/hotsync/db/configuration").read_bytes() == slave_db
    # change, delete, rename (a file and a directory), add
    data = pair.master / "srv/data"
    (data / "plain").write_text("changed, and longer than before\n")
    (data / "script").unlink()
    os.rename(data / "sub dir/with space.txt", data / "renamed.txt")
    os.rename(data / "sub dir/deeper", data / "moved dir")
    (data / "moved dir/inside").write_text("new\n")
    os.chmod(data / "secret", 0o640)
    cp = pair.sync()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert tree(data) == tree(pair.slave / "srv/data")
    assert not (pair.slave / "srv/data/script").exists()
    # status on both sides, as JSON (the slave records a session in its post-xfer hook, after the push ended)
    pair.settled()
    ms, ss = pair.status(pair.master), pair.status(pair.slave)
    assert ms["role"] == "master" and ms["last_run"]["result"] == "success" and ms["last_success"]
    # mutual TLS: each side's own certificate is the one the other pinned
    assert ms["peer_fingerprint"] == ss["fingerprint"] and ss["fingerprint"].startswith("SHA256:")
    assert ss["peer_fingerprint"] == ms["fingerprint"] and ss["pairing"] == "trusted"
    assert ss["role"] == "slave" and ss["last_run"]["exit_status"] == 0 and ss["copy_age"] < 60
    assert ms["next_run"] and ms["copy_age"] < 60
    # a no-op push pushes nothing; drift of an implied parent directory (srv/) is repaired once, for good
    cp = pair.sync()
    assert cp.returncode == 0 and "up to date" in cp.stdout
    os.utime(pair.slave / "srv", (0, 0))
    assert pair.sync().returncode == 0
    cp = pair.sync()
    assert cp.returncode == 0 and "up to date" in cp.stdout, cp.stdout


def test_wrong_password_fails_mails_once_and_recovers(pair, smtp):
    pair.include("/srv/data")
    (pair.master / "srv/data").mkdir(parents=True)
    (pair.master / "srv/data/a").write_text("a\n")
    assert pair.sync().returncode == 0
    before = tree(pair.slave / "srv")
    pair.config(pair.master, "setprop", "rsyncd", "password", "wrong-pass")
    (pair.master / "srv/data/b").write_text("b\n")
    for _ in range(3):
        cp = pair.sync()
        assert cp.returncode == 1
        assert "password" in cp.stdout + cp.stderr
    assert tree(pair.slave / "srv") == before
    # the alert goes out before `hotsync sync` returns (SMTP is synchronous and the receiver stores the mail
    # before it answers 250): after three failed runs, exactly one mail is there, and it stays one
    assert len(smtp.messages) == 1, [m["Subject"] for m in smtp.messages]
    assert "FAILED" in smtp.messages[0]["Subject"] and smtp.messages[0]["To"] == "admin@example.org"
    st = pair.status(pair.master)
    assert st["last_run"]["result"] == "failed" and st["failures"] == 3 and st["alert"]["sent"]
    pair.config(pair.master, "setprop", "rsyncd", "password", "Check-pass-1")
    assert pair.sync().returncode == 0
    wait_mail(smtp, 2)
    assert len(smtp.messages) == 2 and "works again" in smtp.messages[1]["Subject"]
    assert (pair.slave / "srv/data/b").exists()


def test_changed_certificate_is_refused_until_accepted(pair, smtp):
    pair.include("/srv/data")
    (pair.master / "srv/data").mkdir(parents=True)
    (pair.master / "srv/data/a").write_text("a\n")
    assert pair.sync().returncode == 0
    old = pair.status(pair.slave)["fingerprint"]
    # the slave is reinstalled: a new key and certificate
    shutil.rmtree(pair.slave / "var/lib/hotsync/sync/tls")
    pair.save(pair.slave)
    pair.wait_listening()
    new = pair.status(pair.slave)["fingerprint"]
    assert new != old
    (pair.master / "srv/data/b").write_text("b\n")
    before = tree(pair.slave / "srv")
    cp = pair.sync()
    out = cp.stdout + cp.stderr
    assert cp.returncode == 1 and "certificate changed" in out and f"--accept-fingerprint {new}" in out
    assert tree(pair.slave / "srv") == before
    wait_mail(smtp, 1)
    assert len(smtp.messages) == 1
    # a wrong fingerprint is not accepted; the right one is
    cp = pair.sync("--accept-fingerprint", old)
    assert cp.returncode == 1 and "nothing was pinned" in cp.stdout + cp.stderr
    cp = pair.sync("--accept-fingerprint", new)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert (pair.slave / "srv/data/b").exists()
    assert pair.status(pair.master)["peer_fingerprint"] == new


def test_only_master_host_may_push(pair, smtp):
    pair.include("/srv/data")
    (pair.master / "srv/data").mkdir(parents=True)
    (pair.master / "srv/data/a").write_text("a\n")
    pair.config(pair.slave, "setprop", "hotsync", "MasterHost", "127.0.0.9")   # not where the master connects from
    pair.save(pair.slave)
    pair.wait_listening()
    cp = pair.sync()
    out = cp.stdout + cp.stderr
    assert cp.returncode == 1 and "MasterHost" in out
    assert not (pair.slave / "srv").exists()
    wait_mail(smtp, 1)
    assert len(smtp.messages) == 1
    assert "hosts allow = 127.0.0.9" in (pair.slave / "etc/rsyncd.conf").read_text()


def test_pre_xfer_refuses_when_the_slave_is_not_an_enabled_slave(pair):
    pair.include("/srv/data")
    (pair.master / "srv/data").mkdir(parents=True)
    (pair.master / "srv/data/a").write_text("a\n")
    pair.config(pair.slave, "setprop", "hotsync", "status", "disabled")    # no save event: the daemon still runs
    cp = pair.sync()
    out = cp.stdout + cp.stderr
    assert cp.returncode == 1 and "refused by the slave: hotsync is disabled on this slave" in out
    assert not (pair.slave / "srv").exists()
    assert "disabled" in pair.status(pair.slave)["last_refused"]["reason"]


def test_mass_deletion_and_empty_source_are_held_until_allowed(pair, smtp):
    data = pair.master / "srv/data"
    (data / "keep").mkdir(parents=True)
    for i in range(50):
        (data / f"f{i}").write_text(f"{i}\n")
    (data / "keep/k").write_text("k\n")
    vol = pair.master / "srv/volume"
    vol.mkdir()
    (vol / "v").write_text("v\n")
    pair.include("/srv/data", "/srv/volume")
    assert pair.sync().returncode == 0
    before = tree(pair.slave / "srv")
    for i in range(30):
        (data / f"f{i}").unlink()
    (data / "new").write_text("a change that must not land either\n")
    cp = pair.sync()
    assert cp.returncode == 3 and "MaxDeletePercent" in cp.stdout
    assert tree(pair.slave / "srv") == before
    wait_mail(smtp, 1)
    assert len(smtp.messages) == 1
    cp = pair.sync("--allow-deletions")
    assert cp.returncode == 0, cp.stdout
    assert tree(data) == tree(pair.slave / "srv/data")
    wait_mail(smtp, 2)
    assert len(smtp.messages) == 2                       # the recovery mail
    # an unmounted volume: the source is empty now
    (vol / "v").unlink()
    before = tree(pair.slave / "srv")
    cp = pair.sync()
    assert cp.returncode == 3 and "/srv/volume" in cp.stdout
    assert tree(pair.slave / "srv") == before
    shutil.rmtree(vol)                                  # missing altogether: held too
    assert pair.sync().returncode == 3
    assert pair.sync("--allow-deletions").returncode == 0
    assert pair.sync().returncode == 0


def wait_receiving(pair, proc: subprocess.Popen, timeout: float = 20) -> None:
    """Until the slave records a push arriving (its pre-xfer passed, the transfer is under way)."""
    from hotsync_events.paths import Root
    from hotsync_events.sync.status import read_status

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_status(Root(pair.slave)).get("receiving"):
            return
        assert proc.poll() is None, f"the sync ended (exit {proc.returncode}) before the slave saw a push arrive"
        time.sleep(0.02)
    raise AssertionError("the slave never saw the push arrive")


def slow_push_tree(pair, megabytes: int = 3) -> Path:
    data = pair.master / "srv/data"
    data.mkdir(parents=True)
    for i in range(megabytes):
        (data / f"big{i}").write_bytes(os.urandom(1_000_000))
    (data / "small").write_text("s\n")
    pair.include("/srv/data")
    return data


def test_the_sync_lock_is_held_for_the_whole_run(pair):
    """A second `hotsync sync` started while the first is mid-transfer finds the lock taken (exit 75,
    one follow-up queued): the lock is held from the start of the run to its end, not only around its
    beginning."""
    from hotsync_events.paths import Root
    from hotsync_events.sync.lock import SyncLock

    data = slow_push_tree(pair, megabytes=4)
    pair.config(pair.master, "setprop", "hotsync", "bwlimit", "1500")      # ~3 s of transfer
    first = subprocess.Popen([HOTSYNC, "sync"], env={**os.environ, "HOTSYNC_ROOT": str(pair.master)},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_receiving(pair, first)
        lock = SyncLock(Root(pair.master))
        assert lock.holder() == first.pid
        second = pair.sync(timeout=60)
        assert first.poll() is None, "the first sync ended before the second was tried: the test proves nothing"
        assert second.returncode == 75 and "another sync is running" in second.stdout, second.stdout
        assert lock.is_queued
    finally:
        out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out
    assert "follow-up" in out                                   # the queued run ran inside the first's lock
    assert tree(data) == tree(pair.slave / "srv/data")


def test_deleting_exactly_max_delete_percent_goes_through_one_more_is_held(pair):
    """The docs say "more than MaxDeletePercent (20%)": a push deleting exactly 20 % of the slave's files
    in the pushed paths goes through, one deletion more is held."""
    data = pair.master / "srv/data"
    data.mkdir(parents=True)
    pair.include("/srv/data")
    for i in range(40):
        (data / f"f{i:03d}").write_text(f"{i}\n")
    assert pair.sync().returncode == 0
    # what the slave holds in the pushed paths, as the guard counts it (the dry run's file count); made a
    # multiple of 5 so that a fifth of it is a whole number of files
    assert pair.sync("--dry-run").returncode == 0
    held = pair.status(pair.master)["last_dry_run"]["files"]
    extra = (5 - held % 5) % 5
    for i in range(extra):
        (data / f"g{i}").write_text("g\n")
    assert pair.sync().returncode == 0
    held += extra
    fifth = held // 5
    for i in range(fifth):
        (data / f"f{i:03d}").unlink()
    cp = pair.sync()
    assert cp.returncode == 0, f"{fifth} of {held} files (20 %) was held:\n{cp.stdout}"
    assert tree(data) == tree(pair.slave / "srv/data")
    # now the slave holds held - fifth files: delete one more than a fifth of that
    now = held - fifth
    more = now // 5 + 1
    for i in range(fifth, fifth + more):
        (data / f"f{i:03d}").unlink()
    cp = pair.sync()
    assert cp.returncode == 3 and "MaxDeletePercent=20%" in cp.stdout, cp.stdout


def test_kill_9_mid_transfer_then_convergence(pair):
    data = pair.master / "srv/data"
    data.mkdir(parents=True)
    for i in range(3):
        (data / f"big{i}").write_bytes(os.urandom(4_000_000))
    (data / "small").write_text("s\n")
    pair.include("/srv/data")
    pair.config(pair.master, "setprop", "hotsync", "bwlimit", "2000")      # ~6 s: time to kill it
    proc = subprocess.Popen([HOTSYNC, "sync"],
                            env={**os.environ, "HOTSYNC_ROOT": str(pair.master)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (pair.slave / "srv").exists() or not any(
                ".hotsync-partial" in str(p) or p.name.startswith(".big") for p in (pair.slave / "srv").rglob("*")):
            assert time.monotonic() < deadline and proc.poll() is None, "no data ever flowed into the slave"
            time.sleep(0.02)                     # until data is flowing into the slave: the kill lands mid-transfer
        from hotsync_events.paths import Root
        from hotsync_events.sync.lock import SyncLock

        wait_receiving(pair, proc)
        assert SyncLock(Root(pair.master)).holder() == proc.pid          # held while it runs...
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert SyncLock(Root(pair.master)).holder() is None                  # ...and free at once after the kill
    # the slave sees the session end (its post-xfer records it as failed); then no temp file is left in the
    # live tree, and every file there is whole (a partial file waits in the partial dir for the next push)
    from hotsync_events.sync.status import read_status

    deadline = time.monotonic() + 30
    while read_status(Root(pair.slave)).get("receiving"):
        assert time.monotonic() < deadline, "the slave never noticed that the push died"
        time.sleep(0.05)
    assert read_status(Root(pair.slave))["last_received"]["result"] == "failed"
    for p in (pair.slave / "srv/data").rglob("*") if (pair.slave / "srv/data").exists() else ():
        if ".hotsync-partial" in p.parts or ".~tmp~" in p.parts or p.is_dir():
            continue
        assert p.read_bytes() == (data / p.relative_to(pair.slave / "srv/data")).read_bytes(), p
    assert not (pair.slave / "srv/data").exists() or tree(data) != tree(pair.slave / "srv/data")   # killed mid-way
    pair.config(pair.master, "setprop", "hotsync", "bwlimit", "0")
    cp = pair.sync()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert tree(data) == tree(pair.slave / "srv/data")
    leftovers = [str(p) for p in pair.slave.rglob("*")
                 if ".hotsync-partial" in p.name or p.name == ".~tmp~" or (p.name.startswith(".") and p.is_file()
                                                                            and "srv" in p.parts)]
    assert leftovers == []
    st = pair.status(pair.master)
    assert st["last_run"]["result"] == "success" and not st.get("running")


def test_second_run_says_so_and_queues_one_follow_up(pair):
    from hotsync_events.paths import Root
    from hotsync_events.sync.lock import SyncLock

    pair.include("/srv/data")
    (pair.master / "srv/data").mkdir(parents=True)
    from hotsync_events.sync.status import update_status

    lock = SyncLock(Root(pair.master))
    assert lock.acquire()
    # a sync run records itself in the status: that is what a second `hotsync sync` does not wait for
    update_status(Root(pair.master), lambda d: d.update(running={"pid": os.getpid(), "start": time.time()}))
    try:
        t0 = time.monotonic()
        cp = pair.sync()
        assert cp.returncode == 75 and "another sync is running" in cp.stdout and "queued" in cp.stdout
        assert time.monotonic() - t0 < 10
        assert lock.is_queued
        assert pair.sync().returncode == 75                      # still one follow-up, not two
    finally:
        lock.release()
        update_status(Root(pair.master), lambda d: d.pop("running", None))
    assert pair.sync().returncode == 0 and not lock.is_queued    # the holder's next run took the mark
    # a lock held by something that is not a sync run (a real-time push) is waited for, briefly
    assert lock.acquire()
    proc = subprocess.Popen([HOTSYNC, "sync"], env={**os.environ, "HOTSYNC_ROOT": str(pair.master)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()                # it says it waits, then waits: it is still running
        assert "waiting" in first and str(os.getpid()) in first, first
        assert proc.poll() is None
    finally:
        lock.release()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, first + out


def test_disabled_stops_everything_enabled_starts_again(pair):
    def running(root: Path) -> set:
        run = root / "run/hotsync"
        return {p.stem for p in run.glob("hotsync-*.pid")}

    assert running(pair.slave) == {"hotsync-stunnel"}         # the only listener: stunnel runs rsync
    assert running(pair.master) == {"hotsync-scheduler"}
    for root in (pair.slave, pair.master):
        pair.config(root, "setprop", "hotsync", "status", "disabled")
        pair.save(root)
        assert running(root) == set()
    assert "disabled" in (pair.master / "etc/cron.d/hotsync").read_text()
    assert pair.sync().returncode == 2
    for root in (pair.slave, pair.master):
        pair.config(root, "setprop", "hotsync", "status", "enabled")
        pair.save(root)
    assert running(pair.slave) == {"hotsync-stunnel"}
    pair.wait_listening()
    assert pair.sync().returncode == 0


def test_scheduler_runs_once_and_stops_on_sigterm(pair):
    pair.include("/srv/data")
    (pair.master / "srv/data").mkdir(parents=True)
    (pair.master / "srv/data/a").write_text("a\n")
    from hotsync_events.paths import Root
    from hotsync_events.sync.status import update_status

    # the pairing's first push was an interval ago: a scheduled run is due
    update_status(Root(pair.master), lambda d: d["last_run"].update(start=d["last_run"]["start"] - 3600))
    cp = cli("hotsync", "daemon", "--max-runs", "1", "--first-after", "0", root=pair.master, timeout=60)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert (pair.slave / "srv/data/a").exists()
    proc = subprocess.Popen([HOTSYNC, "daemon"],
                            env={**os.environ, "HOTSYNC_ROOT": str(pair.master)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = proc.stdout.readline()                   # up and waiting for its first run
    assert "scheduler started" in started, started
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "stopped" in out


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("chattr"), reason="needs root and chattr")
def test_partial_transfer_is_a_failure_with_the_paths(pair):
    """rsync exit 23 (NethServer counted it as a success) fails the sync, naming what did not land."""
    sub = pair.master / "srv/data/sub"
    sub.mkdir(parents=True)
    (sub / "a").write_text("a\n")
    pair.include("/srv/data")
    assert pair.sync().returncode == 0
    locked = pair.slave / "srv/data/sub"
    subprocess.run(["chattr", "+i", str(locked)], check=True)
    try:
        (sub / "new file").write_text("cannot land\n")
        cp = pair.sync()
        out = cp.stdout + cp.stderr
        assert cp.returncode == 1 and "rsync exit 23" in out and "new file" in out, out
        st = pair.status(pair.master)
        assert st["last_run"]["result"] == "failed" and st["last_run"]["exit_code"] == 23
        assert any("new file" in line for line in st["last_error"]["details"])
        assert st["last_success"]["end"] < st["last_run"]["end"]
        assert "new file" in (pair.master / "var/log/hotsync/sync.log").read_text()
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    assert pair.sync().returncode == 0
    assert (pair.slave / "srv/data/sub/new file").exists()


def test_dumps_run_before_the_push_and_a_failed_dump_fails_it(pair):
    from hotsync_events import hookimpl
    from hotsync_events.configdb import open_db
    from hotsync_events.paths import Root
    from hotsync_events.manager import get_plugin_manager
    from hotsync_events.sync.push import run_sync
    from hotsync_events.types import Dump

    calls = []

    def good(ctx):
        calls.append("good")
        ctx.target.parent.mkdir(parents=True, exist_ok=True)
        ctx.target.write_text(f"dump {len(calls)}\n")

    def bad(ctx):
        calls.append("bad")
        if fail:
            raise RuntimeError("the database server is down")
        ctx.target.parent.mkdir(parents=True, exist_ok=True)
        ctx.target.write_text("ok\n")

    class Dumps:
        @hookimpl
        def hotsync_dumps(self, db):
            yield Dump("gooddb", "/var/lib/app/dumps/good.sql", good, priority=10)
            yield Dump("baddb", "/var/lib/app/dumps/bad.sql", bad, priority=20)

    pm = get_plugin_manager(builtins=False, entrypoints=False)
    pm.add_plugin(Dumps(), "dumps")
    root = Root(pair.master)
    log: list = []
    fail = True
    assert run_sync(root, pm=pm, log=log.append) == 1
    assert calls == ["good", "bad"] and any("dump baddb" in line and "down" in line for line in log)
    assert not (pair.slave / "var/lib/app").exists()                  # nothing was pushed
    fail = False
    assert run_sync(root, pm=pm, log=log.append) == 0, log
    assert (pair.slave / "var/lib/app/dumps/good.sql").read_text() == "dump 3\n"
    open_db("configuration", root).setprop("hotsync", {"databases": "disabled"})
    calls.clear()
    assert run_sync(root, pm=pm, log=log.append) == 0 and calls == []
