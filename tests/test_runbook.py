"""The runbook's second half and the sysadmin's slips (README.md and docs/promote.md, followed to the letter).

Two real roots on loopback, paired as the docs say; a person at a terminal is a real pseudo-terminal
(``script``), Ctrl-C a real SIGINT. Each test is one behaviour the runbook or a slip showed wrong.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sync_pair import Pair, cli, tree

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (shutil.which("rsync") and shutil.which("stunnel4") and shutil.which("script")),
                                 reason="needs rsync, stunnel4 and script (util-linux)")]
BIN = Path(sys.executable).parent


def at_terminal(root: Path, *argv: str, answer: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
    """``argv`` run by a person at a terminal (a pseudo-terminal from ``script``), typing *answer*."""
    line = " ".join(["exec", _q(str(BIN / argv[0])), *map(_q, argv[1:])])
    return subprocess.run(["script", "-qec", line, "/dev/null"], input=answer, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HOTSYNC_ROOT": str(root), "TERM": "dumb"})


def _q(a: str) -> str:
    import shlex

    return shlex.quote(a)


def wait_for(check, timeout: float = 20, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def fingerprint(root: Path) -> str:
    return json.loads(cli("hotsync", "status", "--json", root=root).stdout)["fingerprint"]


@pytest.fixture
def pair(tmp_path, smtp):
    p = Pair(tmp_path, smtp_port=smtp.port)
    try:
        p.pair()
        (p.master / "srv/data").mkdir(parents=True)
        for i in range(10):
            (p.master / f"srv/data/f{i}").write_text(f"{i}\n")
        p.include("/srv/data")
        assert p.sync().returncode == 0
        p.settled()
        yield p
    finally:
        p.close()


# ------------------------------------------------------------------------------------------- 1 and 11
def test_the_runbook_to_the_letter_with_realtime_on_loses_nothing(tmp_path, smtp):
    """Promote, the old master writes on, re-pair as docs/promote.md says with real-time sync on (the
    default), sync back: no unattended push in the new direction, the person's push keeps the old master's
    late writes in a dated folder there, and afterwards real-time pushes flow in the new direction."""
    p = Pair(tmp_path, smtp_port=smtp.port, realtime=True)
    M, S = p.master, p.slave
    try:
        p.pair()
        (M / "srv/data").mkdir(parents=True)
        for i in range(12):
            (M / f"srv/data/f{i}").write_text(f"{i}\n")
        p.include("/srv/data")
        assert wait_for(lambda: tree(M / "srv/data") == tree(S / "srv/data") if (S / "srv/data").exists() else False)
        p.settled()
        # the master dies; the slave is promoted (the master pushed a moment ago: --force, as the docs say)
        from promote_pair import kill_root, promote

        kill_root(M)
        cp = promote(S, "--yes", "--force")
        assert cp.returncode == 0, cp.stdout + cp.stderr
        # the old master comes back to life and its users write on
        (M / "srv/data/late.txt").write_text("written after the promote\n")
        (M / "srv/data/f3").write_text("changed after the promote\n")
        # docs/promote.md, section 7, to the letter
        p.config(S, "setprop", "hotsync", "SlaveHost", "127.0.0.1", "MasterHost", "")
        p.save(S)
        p.config(M, "setprop", "hotsync", "role", "slave", "MasterHost", "127.0.0.1")
        p.save(M)
        p.wait_listening()
        # nothing pushes by itself: the schedule and the notifier wait for a person, and say so
        time.sleep(3)
        assert (M / "srv/data/late.txt").exists()
        st = json.loads(cli("hotsync", "status", "--json", root=S).stdout)
        assert st["awaiting_person"] and "person" in st["awaiting_person"]
        assert "WAITING" in cli("hotsync", "status", root=S).stdout
        assert cli("hotsync", "sync", root=S).returncode == 2                      # a script without the fingerprint
        # the person's push (from a script: naming the new slave's fingerprint)
        cp = cli("hotsync", "sync", "--accept-fingerprint", fingerprint(M), "--allow-deletions", root=S)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert tree(S / "srv/data") == tree(M / "srv/data")
        kept = list((M / "var/lib/hotsync/kept").glob("*/srv/data/late.txt"))
        assert len(kept) == 1 and kept[0].read_text() == "written after the promote\n"
        assert next((M / "var/lib/hotsync/kept").glob("*/srv/data/f3")).read_text() == "changed after the promote\n"
        out = cli("hotsync", "status", root=M).stdout
        assert "kept aside:" in out and "/var/lib/hotsync/kept/" in out
        # and from now on the new master's notifier pushes each change to the new slave
        (S / "srv/data/new-direction").write_text("real time\n")
        assert wait_for(lambda: (M / "srv/data/new-direction").exists(), 30), cli("hotsync", "status", root=S).stdout
        st = json.loads(cli("hotsync", "status", "--json", root=S).stdout)
        assert st["copy_age"] < 30            # the age counts the real-time pushes too
    finally:
        p.close()


def test_the_slave_insists_the_first_push_after_a_repair_keeps_aside(pair):
    """A re-paired slave refuses a first push that would not keep what it replaces (a script's rsync, an
    older master), and never lets a backup go anywhere but its own kept folder."""
    from hotsync_events.paths import Root
    from hotsync_events.sync.status import update_status

    from test_trust import rsync_as_master

    # what the re-pair's save event leaves on an old master that became the slave (hotsync_events.sync.fence)
    update_status(Root(pair.slave), lambda d: d.update(keep_aside={"since": time.time(), "why": "re-paired"}))
    (pair.master / "srv/data/f1").write_text("changed\n")
    cp = rsync_as_master(pair, f"{pair.master}/./srv/data/f1")
    assert cp.returncode != 0 and "keep aside" in cp.stderr, cp.stderr
    cp = rsync_as_master(pair, "--backup", "--backup-dir=/etc/cron.d", f"{pair.master}/./srv/data/f1")
    assert cp.returncode != 0, cp.stderr
    assert not (pair.slave / "etc/cron.d/f1").exists()
    cp = rsync_as_master(pair, "--backup", "--backup-dir=/var/lib/hotsync/kept/by-hand", f"{pair.master}/./srv/data/f1")
    assert cp.returncode == 0, cp.stderr
    assert (pair.slave / "var/lib/hotsync/kept/by-hand/srv/data/f1").read_text() == "1\n"


def test_a_person_at_a_terminal_sees_the_first_push_and_says_yes_or_no(pair):
    """After a promote, `hotsync sync` at a terminal shows the dry run and asks; no pushes nothing."""
    from hotsync_events.paths import Root
    from hotsync_events.sync.status import update_status

    update_status(Root(pair.master), lambda d: d.update(first_push={"since": time.time(), "why": "a test promote"}))
    (pair.master / "srv/data/f2").write_text("changed\n")
    cp = at_terminal(pair.master, "hotsync", "sync", answer="n\n")
    assert "srv/data/f2" in cp.stdout and "push now?" in cp.stdout and "nothing was pushed" in cp.stdout, cp.stdout
    assert (pair.slave / "srv/data/f2").read_text() == "2\n"
    cp = at_terminal(pair.master, "hotsync", "sync", answer="y\n")
    assert "ok: pushed" in cp.stdout, cp.stdout
    assert (pair.slave / "srv/data/f2").read_text() == "changed\n"
    assert not json.loads((pair.master / "var/lib/hotsync/sync/status.json").read_text()).get("first_push")


# ------------------------------------------------------------------------------------------- 2
def test_the_standard_events_and_the_manuals_paths(tmp_path):
    root = tmp_path / "fresh"
    root.mkdir()
    for event in ("post-restore-data", "post-restore-config", "nethserver-hotsync-save",
                  "nethserver-hotsync-update"):
        cp = cli("signal-event", event, root=root)
        assert cp.returncode == 0, (event, cp.stdout, cp.stderr)
    for name in ("config", "db", "signal-event", "expand-template"):
        assert os.access(root / "sbin/e-smith" / name, os.X_OK), name
    cp = subprocess.run([str(root / "sbin/e-smith/signal-event"), "post-restore-data"], capture_output=True, text=True,
                        env={**os.environ, "HOTSYNC_ROOT": str(root)})
    assert cp.returncode == 0, cp.stderr
    cp = subprocess.run([str(root / "sbin/e-smith/config"), "getprop", "hotsync", "status"], capture_output=True,
                        text=True, env={**os.environ, "HOTSYNC_ROOT": str(root)})
    assert cp.stdout == "enabled\n"


# ------------------------------------------------------------------------------------------- 3, 4, 12
def test_slips_at_config_are_refused_with_what_to_type(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    cli("config", "setprop", "hotsync", "role", "master", root=root)
    for args, hint in ((["hotsync", "SlaveHots", "10.0.0.5"], "'SlaveHost'"), (["hotsync", "Role", "master"], "'role'"),
                       (["hotsync", "rol", "master"], "'role'"),
                       (["rsyncd", "password", "Xyz-abc-1", "hotsync", "SlaveHost"], "setprop of its own"),
                       (["hotsync", "SlavePort", "274"], "config setprop hotsync port 274")):
        cp = cli("config", "setprop", *args, root=root)
        assert cp.returncode == 3 and hint in cp.stderr, (args, cp.stderr)
    assert cli("config", "getprop", "hotsync", "SlaveHots", root=root).stdout == ""
    assert cli("config", "getprop", "rsyncd", "hotsync", root=root).stdout == ""
    cp = cli("config", "setprop", "hotsnyc", "role", "master", root=root)
    assert cp.returncode == 1 and "did you mean 'hotsync'" in cp.stderr and "config set hotsnyc" not in cp.stderr
    cp = cli("config", "setprop", "hotsync", "SlaveHots", "10.0.0.5", "--force", root=root)
    assert cp.returncode == 0 and cli("config", "getprop", "hotsync", "SlaveHots", root=root).stdout == "10.0.0.5\n"
    cp = cli("config", "setprp", root=root)
    assert cp.returncode == 2 and len(cp.stderr.splitlines()) <= 3 and "did you mean 'setprop'" in cp.stderr


def test_read_only_commands_create_nothing(tmp_path):
    cli("hotsync", "--root", str(tmp_path / "nonexistent"), "status", root=tmp_path)
    cp = cli("hotsync", "--root", str(tmp_path / "nonexistent"), "status", "--check", root=tmp_path)
    assert cp.returncode == 3 and "does not exist" in cp.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv in (["db", "configuraton", "show"], ["config", "show"], ["config", "info", "hotsync", "role"],
                 ["config", "search", "--key", "hotsync"], ["hotsync", "status"], ["hotsync", "status", "--json"],
                 ["hotsync", "paths"], ["signal-event", "--list"]):
        cli(*argv, root=empty)
    assert sorted(str(p.relative_to(empty)) for p in empty.rglob("*")) == []


def test_mail_goes_to_admin_once_a_mail_server_is_installed(tmp_path):
    root = tmp_path / "r"
    (root / "etc/dovecot").mkdir(parents=True)
    (root / "etc/dovecot/dovecot.conf").write_text("# dovecot\n")
    cli("config", "setprop", "hotsync", "role", "master", "SlaveHost", "192.0.2.9", "status", "disabled", root=root)
    cli("config", "setprop", "rsyncd", "password", "Mail-pass-1", root=root)
    cli("signal-event", "nethserver-hotsync-save", root=root)          # (disabled: no scheduler left running)
    assert cli("config", "getprop", "hotsync", "MailTo", root=root).stdout == "admin@localhost\n"
    cli("config", "setprop", "hotsync", "MailTo", "ops@example.org", root=root)
    cli("signal-event", "nethserver-hotsync-save", root=root)
    assert cli("config", "getprop", "hotsync", "MailTo", root=root).stdout == "ops@example.org\n"
    assert not list((root / "run/hotsync").glob("*.pid"))


# ------------------------------------------------------------------------------------------- 5
def test_the_notifier_follows_a_list_added_after_it_started(tmp_path, smtp):
    p = Pair(tmp_path, smtp_port=smtp.port, realtime=True)
    try:
        p.pair()
        (p.master / "srv/later").mkdir(parents=True)
        (p.master / "srv/later/a").write_text("a\n")
        d = p.master / "etc/hotsync/include.d"
        d.mkdir(parents=True, exist_ok=True)
        (d / "later.include").write_text("/srv/later\n")          # no save event
        assert wait_for(lambda: (p.slave / "srv/later/a").exists(), 30), cli("hotsync", "status", root=p.master).stdout
        (p.master / "srv/later/b").write_text("b\n")
        assert wait_for(lambda: (p.slave / "srv/later/b").exists(), 20)
    finally:
        p.close()


# ------------------------------------------------------------------------------------------- 7
def test_health_for_monitoring(pair):
    cp = cli("hotsync", "status", "--check", root=pair.master)
    assert cp.returncode == 0 and cp.stdout.startswith("HOTSYNC OK - master") and "copy_age=" in cp.stdout
    prom = cli("hotsync", "status", "--prometheus", root=pair.master).stdout
    assert 'hotsync_health{role="master"} 0' in prom and re.search(r"^hotsync_copy_age_seconds \d", prom, re.M)
    js = json.loads(cli("hotsync", "status", "--json", root=pair.master).stdout)
    assert js["health"]["state"] == "ok" and js["health"]["code"] == 0
    assert cli("hotsync", "status", "--check", root=pair.slave).returncode == 0
    pair.config(pair.master, "setprop", "rsyncd", "password", "Wrong-pass-9")
    assert pair.sync().returncode == 1
    cp = cli("hotsync", "status", "--check", root=pair.master)
    assert cp.returncode == 1 and "WARNING" in cp.stdout and "last run failed" in cp.stdout
    pair.config(pair.master, "setprop", "hotsync", "status", "disabled")
    assert cli("hotsync", "status", "--check", root=pair.master).returncode == 1


# ------------------------------------------------------------------------------------------- 8 and 9
def test_a_person_waits_for_a_running_sync_scripts_do_not(pair):
    from hotsync_events.paths import Root
    from hotsync_events.sync.lock import SyncLock
    from hotsync_events.sync.status import update_status

    lock = SyncLock(Root(pair.master))
    assert lock.acquire()
    update_status(Root(pair.master), lambda d: d.update(running={"pid": os.getpid(), "start": time.time()}))
    try:
        assert cli("hotsync", "sync", root=pair.master).returncode == 75            # a script, as before
        person = subprocess.Popen(["script", "-qec", f"exec {_q(str(BIN / 'hotsync'))} sync", "/dev/null"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env={**os.environ, "HOTSYNC_ROOT": str(pair.master)})
        first = person.stdout.readline()
        assert "waiting for it to end" in first, first
        assert person.poll() is None
        cp = at_terminal(pair.master, "hotsync", "sync", "--no-wait")
        assert cp.returncode == 75
    finally:
        update_status(Root(pair.master), lambda d: d.pop("running", None))
        lock.release()
    out, _ = person.communicate(timeout=120)
    assert person.returncode == 0, first + out


def test_ctrl_c_is_one_line_no_traceback_no_alert_and_progress_shows(pair, smtp):
    data = pair.master / "srv/data"
    for i in range(3):
        (data / f"big{i}").write_bytes(os.urandom(2_000_000))
    pair.config(pair.master, "setprop", "hotsync", "bwlimit", "700")
    mails = len(smtp.messages)
    person = subprocess.Popen(["script", "-qec", f"exec {_q(str(BIN / 'hotsync'))} sync", "/dev/null"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={**os.environ, "HOTSYNC_ROOT": str(pair.master)}, start_new_session=True)
    seen = b""
    deadline = time.monotonic() + 40
    while b"pushing:" not in seen and time.monotonic() < deadline:      # the progress line, updated in place
        seen += os.read(person.stdout.fileno(), 4096)
    assert b"pushing:" in seen, seen
    child = int(subprocess.run(["pgrep", "-P", str(person.pid)], capture_output=True, text=True).stdout.split()[0])
    os.killpg(os.getpgid(child), signal.SIGINT)               # Ctrl-C: the terminal's foreground process group
    rest, _ = person.communicate(timeout=60)
    out = (seen + rest).decode("utf-8", "replace")
    assert "interrupted" in out and "Traceback" not in out, out
    assert len(smtp.messages) == mails                                    # a deliberate stop is no alert
    st = json.loads((pair.master / "var/lib/hotsync/sync/status.json").read_text())
    assert st["last_run"]["result"] == "interrupted"


def test_every_command_has_version_quiet_and_verbose(pair):
    for name in ("config", "db", "signal-event", "expand-template", "hotsync", "hotsync-promote"):
        cp = subprocess.run([str(BIN / name), "--version"], capture_output=True, text=True)
        assert cp.returncode == 0 and re.search(r"\d+\.\d+", cp.stdout), (name, cp.stdout, cp.stderr)
    (pair.master / "srv/data/f5").write_text("v\n")
    cp = cli("hotsync", "-v", "sync", root=pair.master)
    assert cp.returncode == 0 and "srv/data/f5" in cp.stdout
    (pair.master / "srv/data/f6").write_text("q\n")
    cp = cli("hotsync", "-q", "sync", root=pair.master)
    assert cp.returncode == 0 and cp.stdout == ""


# ------------------------------------------------------------------------------------------- 10
def test_the_promote_says_why_it_cannot_first(pair):
    cp = cli("hotsync-promote", "--dry-run", root=pair.master)
    assert cp.returncode == 2 and cp.stdout == "" and "only for a SLAVE" in cp.stderr
    from promote_pair import kill_root

    kill_root(pair.master)
    assert cli("hotsync-promote", "--yes", "--force", root=pair.slave).returncode == 0
    cp = cli("hotsync-promote", "--yes", root=pair.slave)
    assert cp.returncode == 2 and "already promoted at" in cp.stderr and "Steps:" not in cp.stdout


def test_after_a_repair_the_master_era_status_is_archived(pair):
    from hotsync_events.configdb import open_db
    from hotsync_events.sync.fence import repair_as_slave
    from hotsync_events.paths import Root

    (pair.master / "run/hotsync/realtime.json").write_text(json.dumps({"pid": 1, "failures": 7, "last_error": "x"}))
    pair.config(pair.master, "setprop", "hotsync", "role", "slave", "MasterHost", "127.0.0.1")
    repair_as_slave(Root(pair.master), open_db("configuration", Root(pair.master)), log=lambda m: None)
    out = cli("hotsync", "status", root=pair.master).stdout
    assert "realtime:" not in out and "failures 7" not in out
    st = json.loads((pair.master / "var/lib/hotsync/sync/status.json").read_text())
    assert st["previous_master"]["realtime"]["failures"] == 7


# ------------------------------------------------------------------------------------------- 12
def test_one_notifier_per_root(tmp_path, smtp):
    p = Pair(tmp_path, smtp_port=smtp.port, realtime=True)
    try:
        p.pair()
        p.include("/srv/data")
        (p.master / "srv/data").mkdir(parents=True)
        assert wait_for(lambda: (json.loads(cli("hotsync", "status", "--json", root=p.master).stdout)
                                 .get("realtime") or {}).get("alive"), 20)
        cp = cli("hotsync", "watch", root=p.master, timeout=30)
        assert cp.returncode == 2 and "another notifier runs" in cp.stderr
    finally:
        p.close()


# ------------------------------------------------------------------------------------------- 6
def _table(doc: Path, heading: str) -> list[str]:
    """The symptoms (first column, in backticks) of the table under *heading* in *doc*."""
    text = doc.read_text(encoding="utf-8").split(heading, 1)[1]
    return [m.group(1) for m in re.finditer(r"^\| `([^`]+)`", text.split("\n\n", 2)[1], re.M)]


def _matches(symptom: str, out: str) -> bool:
    parts = [re.escape(p.strip()) for p in symptom.split("...") if p.strip()]
    return re.search(".*".join(parts), out, re.S) is not None


def test_every_troubleshooting_row_is_the_message_a_sysadmin_sees(tmp_path, smtp):
    """Each row of docs/sync.md's troubleshooting table, caused for real: the output says what the row says."""
    from hotsync_events.paths import Root
    from hotsync_events.sync.status import update_status

    p = Pair(tmp_path, smtp_port=smtp.port)
    M, S = p.master, p.slave

    def sync(*args):
        cp = p.sync(*args)
        return cp.stdout + cp.stderr

    def wrong_password():
        p.config(M, "setprop", "rsyncd", "password", "Wrong-pass-9")
        try:
            return sync()
        finally:
            p.config(M, "setprop", "rsyncd", "password", "Check-pass-1")

    def wrong_master_host():
        p.config(S, "setprop", "hotsync", "MasterHost", "127.0.0.9")
        p.save(S)
        try:
            return sync()
        finally:
            p.config(S, "setprop", "hotsync", "MasterHost", "127.0.0.1")
            p.save(S)
            p.wait_listening()

    def disabled_slave():
        p.config(S, "setprop", "hotsync", "status", "disabled")          # no save event: the listener runs
        try:
            return sync()
        finally:
            p.config(S, "setprop", "hotsync", "status", "enabled")

    def stale():
        cli("hotsync", "epoch", "set", "5", "--why", "test", root=S)
        try:
            return sync()
        finally:
            cli("hotsync", "epoch", "set", "0", "--why", "test", root=S)

    def not_pinned():
        pin = M / "var/lib/hotsync/sync/tls/pinned-slave.crt"
        keep = pin.read_bytes()
        pin.unlink()
        try:
            return sync()
        finally:
            pin.write_bytes(keep)

    def gate():
        update_status(Root(M), lambda d: d.update(first_push={"since": time.time(), "why": "this host was promoted "
                                                              "to master: its first push to the re-paired old "
                                                              "master is a person's"}))
        try:
            return sync()
        finally:
            update_status(Root(M), lambda d: d.pop("first_push", None))

    def master_cert_refused():
        p.config(S, "setprop", "hotsync", "MasterFingerprint", "SHA256:" + ":".join(["AB"] * 32))
        p.save(S)
        p.wait_listening()
        try:
            return sync()
        finally:
            p.config(S, "setprop", "hotsync", "MasterFingerprint", fingerprint(M))
            p.save(S)
            p.wait_listening()

    def peer_refused():
        update_status(Root(S), lambda d: d.update(peer_refused={"time": time.time(),
                                                                "problems": ["manifest.json: /etc/cron.d ..."]}))
        try:
            return sync()
        finally:
            update_status(Root(S), lambda d: d.pop("peer_refused", None))

    def not_shipped():
        (M / "etc/hotsync/include.d/bad.include").write_text("/etc/cron.d\n")
        try:
            return sync()
        finally:
            (M / "etc/hotsync/include.d/bad.include").unlink()

    def unreachable():
        p.config(S, "setprop", "hotsync", "status", "disabled")
        p.save(S)
        try:
            return sync()
        finally:
            p.config(S, "setprop", "hotsync", "status", "enabled")
            p.save(S)
            p.wait_listening()

    def cert_changed():
        tls = S / "var/lib/hotsync/sync/tls"
        keep = {f: (tls / f).read_bytes() for f in ("host.crt", "host.key")}
        for f in keep:
            (tls / f).unlink()
        p.save(S)
        p.wait_listening()
        try:
            return sync()
        finally:
            for f, data in keep.items():
                (tls / f).write_bytes(data)
            p.save(S)
            p.wait_listening()

    def held():
        for i in range(8):
            (M / f"srv/data/f{i}").unlink()
        try:
            return sync()
        finally:
            for i in range(8):
                (M / f"srv/data/f{i}").write_text(f"{i}\n")

    def busy():
        from hotsync_events.sync.lock import SyncLock

        lock = SyncLock(Root(M))
        lock.acquire()
        update_status(Root(M), lambda d: d.update(running={"pid": os.getpid(), "start": time.time()}))
        try:
            return sync()
        finally:
            update_status(Root(M), lambda d: d.pop("running", None))
            lock.release()

    def timed_out():
        """The slave stops answering (its session frozen as it starts): the push ends by its own timeout."""
        from test_trust import session_processes

        p.config(M, "setprop", "hotsync", "timeout", "5")
        (M / "srv/data/x").write_text("x\n")
        proc = subprocess.Popen([str(BIN / "hotsync"), "sync"], env={**os.environ, "HOTSYNC_ROOT": str(M)},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        stopped: set = set()
        try:
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                for pid in session_processes(S) - stopped:
                    try:
                        os.kill(pid, signal.SIGSTOP)
                        stopped.add(pid)
                    except OSError:
                        pass
                time.sleep(0.005)
            out, _ = proc.communicate(timeout=60)
            return out
        finally:
            for pid in stopped:
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.kill(pid, signal.SIGCONT)
                except OSError:
                    pass
            (M / "srv/data/x").unlink()
            p.config(M, "setprop", "hotsync", "timeout", "20")
            p.settled(timeout=30)

    def partial():
        sub = M / "srv/data/locked"
        sub.mkdir()
        (sub / "a").write_text("a\n")
        assert p.sync().returncode == 0
        subprocess.run(["chattr", "+i", str(S / "srv/data/locked")], check=True)
        try:
            (sub / "b").write_text("cannot land\n")
            return sync()
        finally:
            subprocess.run(["chattr", "-i", str(S / "srv/data/locked")], check=True)

    def fenced():
        from promote_pair import promote

        assert promote(S, "--yes", "--force").returncode == 0
        return sync()

    scenarios = {
        "the slave refused the password": wrong_password,
        "the slave refused this host: its MasterHost is not this host's address": wrong_master_host,
        "refused by the slave: hotsync is disabled on this slave": disabled_slave,
        "refused by the slave: STALE master ...": stale,
        "the slave's certificate is not pinned yet": not_pinned,
        "... its first push to the re-paired old master is a person's": gate,
        "the slave refused this host's certificate": master_cert_refused,
        "the master's last peer copy was refused by this slave: ...": peer_refused,
        "... is not shipped: the slave never accepts ...": not_shipped,
        "cannot reach the slave's TLS port": unreachable,
        "the slave's TLS certificate changed": cert_changed,
        "HELD BACK": held,
        "another sync is running": busy,
        "rsync exit 30": timed_out,
        "rsync exit 23/24": partial,
        "refused by the slave: FENCED ...": fenced,          # last: it ends the pair
    }
    rows = _table(Path(__file__).parent.parent / "docs/sync.md", "## Troubleshooting")
    assert sorted(rows) == sorted(scenarios), "the table and its scenarios differ"
    try:
        p.pair()
        (M / "srv/data").mkdir(parents=True)
        for i in range(10):
            (M / f"srv/data/f{i}").write_text(f"{i}\n")
        p.include("/srv/data")
        assert p.sync().returncode == 0
        for symptom, cause in scenarios.items():
            out = cause()
            wanted = "rsync exit 23" if symptom == "rsync exit 23/24" else symptom
            assert _matches(wanted, out), f"row {symptom!r}: the output says:\n{out}"
            if symptom not in ("refused by the slave: FENCED ...",):
                assert p.sync().returncode == 0, f"after {symptom!r}: {sync()}"
                p.settled()
    finally:
        p.close()
