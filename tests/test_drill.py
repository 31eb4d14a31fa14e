"""``hotsync drill``: a takeover on a throw-away overlay of the slave's copy, in private namespaces.

Units (fast): the HealthCheck type and hook, the checks' runner (pass, fail, raise, timeout), the health
verdict on the last drill and its schedule, the mail on failure and recovery, the refusals.
End to end (slow, root): a real pair (rsync daemon behind stunnel); the drill passes and leaves the copy and
the slave's databases byte-identical; a push during the drill lands in the copy; a missing dump, a failed
promote step and a failed health check each fail the drill naming the cause; kill -9 leaves no mount and
no process, and the next drill runs.
"""
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

from sync_pair import Pair, cli, tree
from testplugin import install_testplugin

HOTSYNC = str(Path(sys.executable).parent / "hotsync")


# ------------------------------------------------------------------------------------------------ units
def test_health_check_type_is_public_and_checked():
    import hotsync_events
    from hotsync_events.types import HealthCheck

    assert hotsync_events.HealthCheck is HealthCheck and "HealthCheck" in hotsync_events.__all__
    c = HealthCheck("app-query", lambda ctx: None)
    assert (c.timeout, c.priority) == (30.0, 50)
    from dataclasses import FrozenInstanceError

    with pytest.raises(FrozenInstanceError):
        c.name = "other"           # type: ignore[misc]
    for bad in ({"name": "bad name"}, {"timeout": 0}, {"timeout": True}, {"priority": 100}, {"run": 3}):
        with pytest.raises(ValueError):
            HealthCheck(**{"name": "x", "run": lambda ctx: None, **bad})


def test_the_hook_is_documented_and_collected(tmp_path):
    from hotsync_events import hookspecs
    from hotsync_events.drill.checks import collect_checks
    from hotsync_events.manager import RegistrationError, plugin_manager
    from hotsync_events.paths import Root
    from hotsync_events.types import HealthCheck

    assert "hotsync drill" in hookspecs.hotsync_health_checks.__doc__
    root = Root(tmp_path)
    pm = plugin_manager(root)

    class Mine:
        from hotsync_events import hookimpl

        @hookimpl
        def hotsync_health_checks(self, db, root):
            yield HealthCheck("mine-b", lambda ctx: None, priority=60)
            yield HealthCheck("mine-a", lambda ctx: None, priority=60)
    pm.add_plugin(Mine(), "mine", origin="test")
    names = [(p, c.name) for p, c in collect_checks(pm, None, root, {}, [])]
    assert names[:3] == [("core", "core-config-db"), ("core", "core-dumps-restored"), ("core", "core-services-up")]
    assert names[-2:] == [("mine", "mine-a"), ("mine", "mine-b")]

    class Clash:
        from hotsync_events import hookimpl

        @hookimpl
        def hotsync_health_checks(self):
            yield HealthCheck("core-config-db", lambda ctx: None)
    pm.add_plugin(Clash(), "clash", origin="test")
    with pytest.raises(RegistrationError, match=r"clash.*core-config-db"):
        collect_checks(pm, None, root, {}, [])


def _ctx(tmp_path):
    from hotsync_events.paths import Root
    from hotsync_events.types import ActionContext

    return ActionContext(event="drill", args=(), root=Root(tmp_path), db=None)


@pytest.mark.parametrize("run, status, detail", [
    (lambda ctx: ctx.log("fine"), "passed", "fine"),
    (lambda ctx: "port 80 does not answer", "failed", "port 80 does not answer"),
    (lambda ctx: 1 / 0, "failed", "ZeroDivisionError"),
    (lambda ctx: False, "failed", "returned False"),
    (lambda ctx: os._exit(3), "failed", "died without an answer"),
    (lambda ctx: time.sleep(30), "timeout", "timeout of 0.5 s"),
])
def test_a_check_runs_in_a_child_with_its_timeout(tmp_path, run, status, detail):
    from hotsync_events.drill.checks import run_check
    from hotsync_events.types import HealthCheck

    t0 = time.monotonic()
    out = run_check("p", HealthCheck("c", run, timeout=0.5), _ctx(tmp_path))
    assert (out.status, out.plugin, out.name) == (status, "p", "c")
    assert detail in out.detail
    assert time.monotonic() - t0 < 5


def test_a_check_that_hangs_in_a_grandchild_is_killed_with_its_group(tmp_path):
    from hotsync_events.drill.checks import run_check
    from hotsync_events.types import HealthCheck

    marker = tmp_path / "pid"

    def hang(ctx):
        p = subprocess.Popen(["sleep", "60"])
        marker.write_text(str(p.pid))
        p.wait()
    out = run_check("p", HealthCheck("hang", hang, timeout=1), _ctx(tmp_path))
    assert out.status == "timeout"
    pid = int(marker.read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]


def test_the_health_verdict_on_the_last_drill():
    from hotsync_events.sync.drill_status import drill_reasons

    now = 1_000_000.0
    assert drill_reasons(None, "off", "slave", now) == []
    assert drill_reasons({"last": {"result": "failed", "causes": ["dump mysql MISSING"]}}, "off", "slave", now) == \
        [("warning", "the last takeover drill FAILED: dump mysql MISSING")]
    assert drill_reasons({"last": {"result": "failed"}}, "off", "master", now) == []
    assert "no takeover drill has run yet" in drill_reasons(None, "weekly", "slave", now)[0][1]
    fresh = {"last": {"result": "passed", "time": now - 86400}}
    assert drill_reasons(fresh, "weekly", "slave", now) == []
    assert "older than its daily schedule" in drill_reasons(fresh, "daily", "slave", now + 7 * 3600)[0][1]


def _slave_root(tmp_path: Path, *props: str) -> Path:
    root = tmp_path / "slave"
    root.mkdir()
    cp = cli("config", "setprop", "hotsync", "role", "slave", "MasterHost", "127.0.0.1", *props, root=root)
    assert cp.returncode == 0, cp.stderr
    return root


def test_mail_on_failure_once_and_on_recovery(tmp_path, smtp):
    from hotsync_events.drill.record import finish_record
    from hotsync_events.paths import Root

    root = Root(_slave_root(tmp_path, "SmartHost", f"127.0.0.1:{smtp.port}", "MailTo", "admin@example.org"))
    bad = {"result": "failed", "causes": ["dump mysql (plugin mysql) is MISSING from the copy"]}
    assert finish_record(root, dict(bad))["result"] == "failed"
    finish_record(root, dict(bad))
    assert [m["Subject"] for m in smtp.messages] == [f"HotSync: takeover drill FAILED on {os.uname()[1]}"]
    assert "dump mysql" in smtp.messages[0].get_payload()
    finish_record(root, {"result": "passed", "promote": {"duration": 1.5}})
    finish_record(root, {"result": "passed"})
    assert len(smtp.messages) == 2 and "passes again" in smtp.messages[1]["Subject"]
    data = json.loads((tmp_path / "slave/var/lib/hotsync/sync/drill.json").read_text())
    assert [h["result"] for h in data["history"]] == ["failed", "failed", "passed", "passed"]
    st = json.loads(cli("hotsync", "status", "--json", root=root.path).stdout)
    assert st["drill"]["result"] == "passed" and st["drill_schedule"] == "off"


def test_status_warns_on_a_failed_or_overdue_drill(tmp_path):
    from hotsync_events.drill.record import finish_record
    from hotsync_events.paths import Root

    root = Root(_slave_root(tmp_path, "DrillSchedule", "daily"))
    st = json.loads(cli("hotsync", "status", "--json", root=root.path).stdout)
    assert any("no takeover drill has run yet" in r for r in st["health"]["reasons"])
    finish_record(root, {"result": "failed", "causes": ["health check nextcloud-config failed"]}, mail=False)
    st = json.loads(cli("hotsync", "status", "--json", root=root.path).stdout)
    assert any("takeover drill FAILED: health check nextcloud-config" in r for r in st["health"]["reasons"])
    text = cli("hotsync", "status", root=root.path).stdout
    assert "takeover drill:" in text and "FAILED" in text and "DrillSchedule daily" in text


def test_drill_schedule_is_a_prop_off_by_default(tmp_path):
    root = _slave_root(tmp_path)
    assert cli("config", "getprop", "hotsync", "DrillSchedule", root=root).stdout.strip() in ("", "off")
    cp = cli("config", "setprop", "hotsync", "DrillSchedule", "hourly", root=root)
    assert cp.returncode != 0 and "daily" in cp.stderr + cp.stdout
    assert cli("config", "setprop", "hotsync", "DrillSchedule", "weekly", root=root).returncode == 0
    from hotsync_events.drill import due
    from hotsync_events.paths import Root

    assert due(Root(root))[0] is True
    from hotsync_events.drill.record import finish_record

    finish_record(Root(root), {"result": "passed"}, mail=False)
    assert due(Root(root))[0] is False
    cp = cli("hotsync", "drill", "--scheduled", root=root)
    assert cp.returncode == 0 and "not due" in cp.stdout


def test_refusals_name_the_fix(tmp_path):
    cp = cli("hotsync", "drill", root=tmp_path)
    assert cp.returncode == 2 and "runs on a SLAVE" in cp.stderr and "config setprop hotsync role slave" in cp.stderr
    cp = cli("hotsync", "drill", "--timeout", "0", root=tmp_path)
    assert cp.returncode == 2 and "--timeout" in cp.stderr
    root = _slave_root(tmp_path)
    if os.geteuid() == 0:
        cp = cli("hotsync", "drill", "--size", "lots", root=root)
        assert cp.returncode == 2 and "tmpfs size" in cp.stderr
    else:
        cp = cli("hotsync", "drill", root=root)
        assert cp.returncode == 2 and "as root" in cp.stderr


def test_the_drill_boots_only_a_whole_system_and_says_why_not(tmp_path, monkeypatch):
    """--boot needs root / (a two-roots slave is no whole system); auto boots a systemd host whose root is /;
    --no-boot never boots; each answer says why (drill/boot.py)."""
    from pathlib import Path as P

    from hotsync_events.drill import boot, run
    from hotsync_events.paths import Root

    other = Root(tmp_path)
    assert run.boot_mode(other, None) == (False, f"the root {tmp_path} is not a whole system: the services ran "
                                                 "with the process back-end")
    assert run.boot_mode(other, False)[0] is False and "--no-boot" in run.boot_mode(other, False)[1]
    with pytest.raises(run.DrillError, match=r"needs a whole system as the root \(/\).*run without --boot"):
        run.boot_mode(other, True)
    whole = Root(P("/"))
    monkeypatch.setenv("HOTSYNC_SERVICE_BACKEND", "process")
    assert run.boot_mode(whole, None)[1].startswith("HOTSYNC_SERVICE_BACKEND=process forces the process back-end")
    monkeypatch.delenv("HOTSYNC_SERVICE_BACKEND")
    monkeypatch.setattr("hotsync_events.events.services.backend_name", lambda root: "process")
    assert run.boot_mode(whole, None) == (False, "this host's PID 1 is not systemd: the services ran with the "
                                                 "process back-end")
    monkeypatch.setattr("hotsync_events.events.services.backend_name", lambda root: "systemd")
    monkeypatch.setattr(boot, "cannot_boot", lambda system="/": "the kernel has no overlayfs")
    ok, why = run.boot_mode(whole, None)
    assert not ok and "could not boot its own systemd (the kernel has no overlayfs)" in why
    with pytest.raises(run.DrillError, match="--boot: the kernel has no overlayfs; or run with --no-boot"):
        run.boot_mode(whole, True)
    monkeypatch.setattr(boot, "cannot_boot", lambda system="/": None)
    assert run.boot_mode(whole, None)[0] is True and run.boot_mode(whole, True)[0] is True


def test_drill_skip_units_are_unit_names(tmp_path):
    from hotsync_events.drill import run
    from hotsync_events.paths import Root

    root = _slave_root(tmp_path, "DrillSkipUnits", "kdump.service, app@x.service,web.socket")
    assert run.skip_units(Root(root)) == ["kdump.service", "app@x.service", "web.socket"]
    cli("config", "setprop", "hotsync", "DrillSkipUnits", "a.service,../../etc", root=root)
    with pytest.raises(run.DrillError, match=r"'\.\./\.\./etc', which is not a unit name .*config setprop hotsync "
                                             "DrillSkipUnits"):
        run.skip_units(Root(root))
    argv = run._inner_argv(Root(root), tmp_path / "s", "1g", False, boot=True, skip=["a.service"])
    assert argv[-1] == "--skip=a.service"          # a name can never be read as an option
    from hotsync_events.drill.boot import UNIT_NAME

    assert not UNIT_NAME.fullmatch("-x.service") and UNIT_NAME.fullmatch("dev-sda.device")


def test_the_booted_hosts_argv_and_script(tmp_path):
    """systemd boots into the drill's target (no service of the host by itself), without fstab, the machine's
    units masked, chrooted on the overlay, with the capabilities that reach the machine dropped."""
    from hotsync_events.drill import boot

    script = boot.boot_script(tmp_path / "m", console="/dev/pts/9", boot_id=tmp_path / "id", layout="unified",
                              systemd_args=[f"systemd.unit={boot.TARGET}", "fstab=no", "systemd.mask=a b.service"])
    assert f"mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 {tmp_path}/m/sys/fs/cgroup" in script
    last = script.strip().splitlines()[-1]
    assert last.startswith(f"exec setpriv {boot.bounding()} -- chroot {tmp_path}/m /usr/bin/env -i "
                           "container=hotsync-drill /lib/systemd/systemd --system systemd.unit=hotsync-drill.target "
                           "fstab=no 'systemd.mask=a b.service'")
    assert "-sys_module" in boot.bounding() and "-mknod" in boot.bounding() and "-mknod" not in boot.bounding(["x"])
    hybrid = boot.boot_script(tmp_path / "m", console="/dev/pts/9", boot_id=tmp_path / "id", layout="hybrid",
                              systemd_args=[])
    assert "name=systemd" in hybrid and "/sys/fs/cgroup/unified" in hybrid
    assert "AllowIsolate=yes" in boot.TARGET_UNIT and "Requires=sysinit.target" in boot.TARGET_UNIT
    from hotsync_events.drill.run import _inner_argv
    from hotsync_events.paths import Root

    booted = _inner_argv(Root(tmp_path), tmp_path / "s", "1g", False, boot=True)
    assert "--pid" not in booted and "--net" not in booted and booted[-1] == "--boot"     # systemd is PID 1
    assert {"--pid", "--net", "--kill-child"} <= set(_inner_argv(Root(tmp_path), tmp_path / "s", "1g", False))


# ------------------------------------------------------------------------------------------ end to end
need_pair = pytest.mark.skipif(not (shutil.which("rsync") and (shutil.which("stunnel4") or shutil.which("stunnel"))
                                    and shutil.which("openssl") and shutil.which("unshare")),
                               reason="needs rsync, stunnel4, openssl and unshare")
need_root = pytest.mark.skipif(os.geteuid() != 0, reason="the drill mounts an overlay in namespaces: root only")
e2e = [pytest.mark.slow, pytest.mark.root, need_pair, need_root]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    p = Pair(tmp_path_factory.mktemp("drill"))
    try:
        p.pair()
        p.include("/srv/data")
        data = p.master / "srv/data"
        (data / "sub").mkdir(parents=True)
        for i in range(40):
            (data / f"f{i}.txt").write_text(f"file {i}\n" * (i + 1))
        os.symlink("f1.txt", data / "link")
        (data / "sub/deep.bin").write_bytes(os.urandom(4096))
        cp = p.sync()
        assert cp.returncode == 0, cp.stdout + cp.stderr
        p.settled()
        yield p
    finally:
        p.close()


def drill(root: Path, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return cli("hotsync", "drill", *args, root=root, env=env, timeout=timeout)


def _no_trace(root: Path) -> None:
    """No mount under the root (in this namespace: the drill's were never visible), no drill process, no
    scratch directory left."""
    assert str(root) not in Path("/proc/mounts").read_text()
    left = subprocess.run(["pgrep", "-f", f"drill.inner --lower {root}"], capture_output=True, text=True).stdout
    assert not left.strip(), left
    left = subprocess.run(["pgrep", "-f", f"{root}/var/lib/hotsync/drill/"], capture_output=True, text=True).stdout
    assert not left.strip(), left


@pytest.mark.parametrize("_", [0], ids=["passes"])
@pytest.mark.slow
@pytest.mark.root
@need_pair
@need_root
def test_the_drill_passes_and_leaves_the_copy_and_the_slave_untouched(pair, _):
    S = pair.slave
    copy, dbs = tree(S / "srv/data"), tree(S / "var/lib/hotsync/db")
    t0 = time.monotonic()
    cp = drill(S, "--json")
    took = time.monotonic() - t0
    assert cp.returncode == 0, cp.stdout + cp.stderr
    rec = json.loads(cp.stdout)
    assert rec["result"] == "passed" and rec["causes"] == []
    assert {c["name"]: c["status"] for c in rec["checks"]} == {
        "core-config-db": "passed", "core-dumps-restored": "passed", "core-services-up": "passed"}
    assert rec["promote_exit"] == 0 and set(rec["promote_timings"]) >= {"fence", "config", "role", "services"}
    assert rec["data_age"] is not None and rec["promote_time"] > 0
    assert tree(S / "srv/data") == copy and tree(S / "var/lib/hotsync/db") == dbs
    assert not (S / "var/lib/hotsync/fenced").exists() and not (S / "var/lib/hotsync/drill").exists()
    st = pair.status(S)
    assert st["role"] == "slave" and st["drill"]["result"] == "passed" and st["epoch"] == 0
    assert not any("drill" in r for r in st["health"]["reasons"])
    _no_trace(S)
    print(f"drill wall time {took:.2f}s (promote {rec['promote_time']:.2f}s)")
    # the pair goes on: the master still pushes to this slave
    (pair.master / "srv/data/after.txt").write_text("after\n")
    assert pair.sync().returncode == 0
    assert (S / "srv/data/after.txt").read_text() == "after\n"


@pytest.mark.slow
@pytest.mark.root
@need_pair
@need_root
def test_a_push_during_the_drill_lands_in_the_copy(pair):
    S = pair.slave
    proc = subprocess.Popen([HOTSYNC, "drill", "--json"], env={**os.environ, "HOTSYNC_ROOT": str(S),
                                                                "HOTSYNC_DRILL_PAUSE_AT": "checks:4"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        assert proc.poll() is None
        (pair.master / "srv/data/during.txt").write_text("during\n")
        cp = pair.sync()
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert (S / "srv/data/during.txt").read_text() == "during\n"
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    assert json.loads(out)["result"] == "passed"
    assert (S / "srv/data/during.txt").read_text() == "during\n"
    _no_trace(S)


@pytest.mark.slow
@pytest.mark.root
@need_pair
@need_root
def test_kill_9_leaves_no_mount_and_no_process(pair):
    S = pair.slave
    proc = subprocess.Popen([HOTSYNC, "drill"], env={**os.environ, "HOTSYNC_ROOT": str(S),
                                                      "HOTSYNC_DRILL_PAUSE_AT": "checks:120"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:      # until the drilled host's services run in the namespace
        ps = subprocess.run(["pgrep", "-f", f"{S}/var/lib/hotsync/drill/"], capture_output=True, text=True).stdout
        if len(ps.split()) >= 2:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the drill never started its namespace")
    inner = subprocess.run(["pgrep", "-f", f"drill.inner --lower {S}"], capture_output=True, text=True).stdout.split()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in inner):
        time.sleep(0.05)
    _no_trace(S)
    cp = drill(S)                     # the next drill runs (and clears the killed one's empty directory)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert not (S / "var/lib/hotsync/drill").exists()


@pytest.mark.slow
@pytest.mark.root
@need_pair
@need_root
@pytest.mark.parametrize("breakage, cause", [
    ("dump", "dump mysql (plugin mysql) is MISSING from the copy"),
    ("step", "promote step antivirus-init-avdb (plugin antivirus) failed"),
    ("check", "health check nextcloud-config (plugin nextcloud) failed"),
    ("service", "the save event (services) failed"),
])
def test_a_broken_copy_fails_the_drill_naming_the_cause(pair, breakage, cause):
    S = pair.slave
    made: list[Path] = []

    def put(rel: str, text: str | None = None) -> None:
        p = S / rel
        top = p
        while not top.parent.exists():
            top = top.parent
        made.append(top if top != p else p)
        if text is None:
            p.mkdir(parents=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
    if breakage == "dump":            # MariaDB is on this host (its data directory), its dump never arrived
        put("var/lib/mysql")
    elif breakage == "step":          # ClamAV is installed, its signatures are nowhere
        put("etc/freshclam.conf", "# test\n")
    elif breakage == "service":       # a sysadmin's fragment stunnel refuses: the listener does not start
        put("etc/hotsync/templates-custom/etc/stunnel/hotsync.conf/99broken", "NoSuchOption = 1\n")
    else:                             # Nextcloud's config.php arrived cut short
        put("usr/share/nextcloud/config/config.php", "<?php\n$CONFIG = array (\n  'instanceid' => 'x',\n")
    copy = tree(S / "srv/data")
    try:
        cp = drill(S, "--json", "--no-mail")
    finally:
        for p in made:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    assert cp.returncode == 1, cp.stdout + cp.stderr
    rec = json.loads(cp.stdout)
    assert rec["result"] == "failed"
    assert any(cause in c for c in rec["causes"]), rec["causes"]
    assert tree(S / "srv/data") == copy
    st = pair.status(S)
    assert st["drill"]["result"] == "failed"
    assert any("takeover drill FAILED" in r and cause.split(" (")[0] in r for r in st["health"]["reasons"])
    _no_trace(S)


@pytest.mark.slow
@pytest.mark.root
@need_pair
@need_root
def test_keep_leaves_the_drilled_host_up_until_drill_stop(pair):
    import re

    S = pair.slave
    cp = drill(S, "--keep", "--no-mail")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    m = re.search(r"nsenter -t (\d+) -m -p -n sh .*stop it with  hotsync drill --stop", cp.stdout)
    assert m, cp.stdout
    pid = int(m.group(1))
    try:
        inside = subprocess.run(["nsenter", "-t", str(pid), "-m", "-p", "-n", "cat", "/proc/net/dev"],
                                capture_output=True, text=True, timeout=10)
        assert inside.returncode == 0 and "lo:" in inside.stdout and "eth" not in inside.stdout
        merged = next((S / "var/lib/hotsync/drill").iterdir()) / "merged"
        look = subprocess.run(["nsenter", "-t", str(pid), "-m", "cat",
                               str(merged / "var/lib/hotsync/sync/status.json")], capture_output=True, text=True)
        assert json.loads(look.stdout)["role"] == "master"          # the drilled host took over
        assert json.loads((S / "var/lib/hotsync/sync/status.json").read_text())["role"] == "slave"
    finally:
        stop = drill(S, "--stop")
    assert stop.returncode == 0 and f"(process, pid {pid})" in stop.stdout, stop.stdout + stop.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)
    _no_trace(S)
    assert drill(S, "-q", "--no-mail").returncode == 0      # the next drill clears the kept one's directory
    assert not (S / "var/lib/hotsync/drill").exists()


@pytest.mark.slow
@pytest.mark.root
@need_pair
@need_root
def test_a_health_check_that_hangs_fails_the_drill_at_its_timeout(pair, tmp_path_factory):
    """A third-party plugin's check (tests/plugin_dist) that never answers: killed after its 2 s."""
    site = install_testplugin(tmp_path_factory.mktemp("testplugin"))
    S = pair.slave
    (S / "etc/testplugin-hang").write_text("")
    try:
        t0 = time.monotonic()
        cp = drill(S, "--json", "--no-mail", env={"PYTHONPATH": str(site)})
        took = time.monotonic() - t0
    finally:
        (S / "etc/testplugin-hang").unlink()
    assert cp.returncode == 1, cp.stdout + cp.stderr
    rec = json.loads(cp.stdout)
    assert "health check testplugin-hang (plugin testplugin) timed out: no answer within its timeout of 2 s" \
        in rec["causes"], rec["causes"]
    assert [c["status"] for c in rec["checks"] if c["name"] == "testplugin-hang"] == ["timeout"]
    assert took < 60
    _no_trace(S)


@pytest.mark.slow
@pytest.mark.root
@need_pair
@need_root
def test_a_drill_over_its_time_is_killed_and_fails(pair):
    S = pair.slave
    t0 = time.monotonic()
    cp = drill(S, "--json", "--no-mail", "--timeout", "4", env={"HOTSYNC_DRILL_PAUSE_AT": "checks:120"})
    assert time.monotonic() - t0 < 30
    assert cp.returncode == 1, cp.stdout + cp.stderr
    rec = json.loads(cp.stdout)
    assert rec["causes"] == ["the drill did not finish within 4 s and was killed (its namespaces, mounts and "
                             "processes with it)"]
    _no_trace(S)
    assert not (S / "var/lib/hotsync/drill").exists()


def test_file_systems_mounted_under_the_root_are_found(tmp_path):
    from hotsync_events.drill.inner import submounts

    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 8:1 / / rw - ext4 /dev/vda rw\n"
        "30 22 0:5 / /proc rw - proc proc rw\n"
        "31 22 8:2 / /var rw - xfs /dev/vdb rw\n"
        "32 31 8:3 / /var/lib/mysql rw - ext4 /dev/vdc rw\n"
        "33 22 0:30 / /run rw - tmpfs tmpfs rw\n"
        "34 22 8:4 /data /srv/my\\040files rw shared:1 - ext4 /dev/vdd rw\n"
        "35 31 0:40 / /var/lib/hotsync/drill/abc rw - tmpfs hotsync-drill rw\n"
        "36 35 0:41 / /var/lib/hotsync/drill/abc/merged rw - overlay hotsync-drill rw\n")
    assert submounts("/", "/var/lib/hotsync/drill/abc", str(info)) == ["/var", "/srv/my files", "/var/lib/mysql"]
    assert submounts("/var", "/x", str(info)) == ["/var/lib/mysql", "/var/lib/hotsync/drill/abc/merged"]


@pytest.mark.slow
@pytest.mark.root
@need_pair
@need_root
def test_a_file_system_mounted_under_the_root_is_in_the_drill_too(pair, tmp_path):
    import re

    S = pair.slave
    src = tmp_path / "volume"
    src.mkdir()
    (src / "inside.txt").write_text("on another file system\n")
    point = S / "srv/volume"
    point.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(src), str(point)], check=True)
    pid = None
    try:
        cp = drill(S, "--keep", "--no-mail")
        assert cp.returncode == 0, cp.stdout + cp.stderr
        pid = int(re.search(r"nsenter -t (\d+)", cp.stdout).group(1))
        merged = next((S / "var/lib/hotsync/drill").iterdir()) / "merged"
        look = subprocess.run(["nsenter", "-t", str(pid), "-m", "sh", "-c",
                               f"cat {merged}/srv/volume/inside.txt && echo drill > {merged}/srv/volume/new.txt"],
                              capture_output=True, text=True)
        assert look.returncode == 0 and look.stdout == "on another file system\n", look.stderr
        assert sorted(p.name for p in src.iterdir()) == ["inside.txt"]       # its writes went to the tmpfs
    finally:
        if pid:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.05)
        subprocess.run(["umount", str(point)], check=False)
        point.rmdir()
    _no_trace(S)


@pytest.mark.parametrize("journal, planned, verdict", [
    ({"mysql": "success"}, [{"name": "mysql", "plugin": "mysql", "path": "/d/mysql.sql", "shipped": True}], None),
    ({}, [{"name": "mysql", "plugin": "mysql", "path": "/d/mysql.sql", "shipped": False}],
     "dump mysql (plugin mysql) is MISSING from the copy (/d/mysql.sql)"),
    ({"pg": "failed: row counts differ"}, [{"name": "pg", "plugin": "postgresql", "path": "/d/p", "shipped": True}],
     "dump pg (plugin postgresql) did not restore: row counts differ"),
    ({"crm": "not shipped"}, [], "dump crm is MISSING from the copy"),
    ({"*": "failed: plugin x: boom"}, [], "the dumps could not be listed: failed: plugin x: boom"),
])
def test_core_dumps_restored_names_each_dump(tmp_path, journal, planned, verdict):
    from hotsync_events.drill.checks import core_checks

    check = {c.name: c for _, c in core_checks({"dbs": journal}, planned)}["core-dumps-restored"]
    assert check.run(_ctx(tmp_path)) == verdict
