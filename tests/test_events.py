"""signal-event: the order of actions, failures, timeouts, the lock, --list, --json, and a real plugin."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hotsync_events import hookimpl
from hotsync_events.configdb import open_db
from hotsync_events.events import EventError, UnknownEvent, plan_event, signal_event
from hotsync_events.events.services import ProcessBackend
from hotsync_events.types import Action, Service, Template
from testplugin import install_testplugin

EVENT = "test-golden"
QUIET = {"HOTSYNC_SYSLOG": "0"}


@pytest.fixture(autouse=True)
def _no_syslog(monkeypatch):
    monkeypatch.setenv("HOTSYNC_SYSLOG", "0")


def executable(root, event: str, name: str, body: str, mode: int = 0o755) -> Path:
    """Write ``<root>/etc/hotsync/events/<event>/<name>`` as a shell script."""
    path = root.etc_dir / "events" / event / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(mode)
    return path


def order_of(root) -> list[str]:
    path = root.join("/order")
    return path.read_text().split() if path.exists() else []


def recorder(root, name: str, result=None, check=None):
    """A Python action that appends its name to <root>/order (and runs *check* first)."""
    def run(ctx):
        if check is not None:
            check(ctx)
        with open(ctx.root.join("/order"), "a") as fh:
            fh.write(name + "\n")
        return result
    return run


class Daemons:
    """Stops every process-back-end service a test started, by its pidfile."""

    def __init__(self, root):
        self.root = root
        self.services: list[Service] = []

    def stop_all(self):
        backend = ProcessBackend(self.root)
        for svc in self.services:
            backend.stop(svc)


@pytest.fixture
def daemons(root):
    d = Daemons(root)
    yield d
    d.stop_all()


def sleeper(name: str, events: dict, enabled: bool = True) -> Service:
    return Service(name=name, command=(sys.executable, "-c", "import time; time.sleep(120)"), events=events,
                   enabled=enabled)


# ------------------------------------------------------------------------------------------ order
def golden_plugins(root, daemons):
    """Two plugins: actions around both implicit steps, a template and a service for EVENT."""
    tdir = root.path.parent / "plugin-templates"
    frag = tdir / "etc" / "golden.conf" / "10main"
    frag.parent.mkdir(parents=True)
    frag.write_text("role=${hotsync.role or 'none'}\n")
    svc = sleeper("golden-daemon", {EVENT: "start"})
    daemons.services.append(svc)
    backend = ProcessBackend(root)

    def after_templates(ctx):
        assert ctx.root.join("/etc/golden.conf").read_text() == "role=none\n"

    def before_services(ctx):
        assert not backend.status(svc).running

    def after_services(ctx):
        assert backend.status(svc).running

    class Alpha:
        @hookimpl
        def hotsync_actions(self, db):
            return [Action(EVENT, "a-early", recorder(root, "a-early", check=after_templates), priority=6),
                    Action(EVENT, "m-middle", recorder(root, "m-middle"), priority=50),
                    Action(EVENT, "z-late", recorder(root, "z-late", check=after_services), priority=95),
                    Action("other-event", "elsewhere", recorder(root, "elsewhere"), priority=1)]

        @hookimpl
        def hotsync_template_dirs(self):
            return [tdir]

    class Beta:
        @hookimpl
        def hotsync_actions(self, db):
            return [Action(EVENT, "b-middle", recorder(root, "b-middle"), priority=50),
                    Action(EVENT, "before-adjust", recorder(root, "before-adjust", check=before_services),
                           priority=89)]

        @hookimpl
        def hotsync_templates(self, db):
            return [Template("/etc/golden.conf", events=(EVENT,), mode=0o600)]

        @hookimpl
        def hotsync_services(self, db):
            return [svc]

    executable(root, EVENT, "S05aaa", f'echo aaa >> "{root.path}/order"\n')
    executable(root, EVENT, "S20exec-twenty", f'echo exec-twenty >> "{root.path}/order"\n')
    executable(root, EVENT, "S90zzz", f'echo zzz >> "{root.path}/order"\n')
    return Alpha(), Beta()


GOLDEN = ["aaa", "generic_template_expand", "a-early", "exec-twenty", "b-middle", "m-middle", "before-adjust",
          "adjust-services", "zzz", "z-late"]


@pytest.mark.parametrize("reverse", [False, True], ids=["alpha-first", "beta-first"])
def test_golden_order_mixes_hook_actions_executables_and_implicit_steps(root, pm, daemons, reverse):
    plugins = list(zip(golden_plugins(root, daemons), ["alpha", "beta"]))
    for obj, name in (reversed(plugins) if reverse else plugins):
        pm.add_plugin(obj, name)
    result = signal_event(EVENT, root=root, pm=pm)
    assert [r.step.name for r in result.results] == GOLDEN
    assert result.ok, [(r.step.name, r.reason, r.output) for r in result.failed]
    assert order_of(root) == [n for n in GOLDEN if n not in ("generic_template_expand", "adjust-services")]
    assert oct(root.join("/etc/golden.conf").stat().st_mode & 0o777) == "0o600"
    log = (root.log_dir / "events.log").read_text()
    assert f"Event: {EVENT} SUCCESS" in log and "Action: exec-twenty" in log


def test_list_prints_the_plan_with_priorities_and_origins(root, pm, daemons, run):
    for obj, name in zip(golden_plugins(root, daemons), ["alpha", "beta"]):
        pm.add_plugin(obj, name)
    plan = plan_event(EVENT, root=root, db=open_db("configuration", root), pm=pm)
    assert [(s.priority, s.name) for s in plan.steps][:3] == [(5, "aaa"), (5, "generic_template_expand"),
                                                             (6, "a-early")]
    assert {s.name: s.origin for s in plan.steps}["b-middle"] == "beta"
    cp = run("signal-event", "--list", EVENT, env=QUIET)
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    assert any(line.split()[:2] == ["20", "exec-twenty"] for line in lines)
    assert not root.join("/order").exists(), "--list must not run anything"


def test_unknown_event_is_refused_listing_the_known_ones(root, pm, run):
    executable(root, "nethserver-hotsync-save", "S10x", "exit 0\n")
    with pytest.raises(UnknownEvent) as info:
        signal_event("nethserver-hotsync-sav", root=root, pm=pm)
    assert "nethserver-hotsync-save" in str(info.value) and "Did you mean" in str(info.value)
    cp = run("signal-event", "nethserver-hotsync-sav", env=QUIET)
    assert cp.returncode == 2
    assert "unknown event 'nethserver-hotsync-sav'" in cp.stderr and "nethserver-hotsync-save" in cp.stderr
    for bad in ("../etc", "a b", ""):
        with pytest.raises(EventError):
            signal_event(bad, root=root, pm=pm)


def test_two_actions_of_one_name_is_an_error_naming_both(root, pm):
    class P:
        @hookimpl
        def hotsync_actions(self, db):
            return [Action(EVENT, "dup", recorder(root, "dup"), priority=10)]

    pm.add_plugin(P(), "plug")
    executable(root, EVENT, "S30dup", "exit 0\n")
    with pytest.raises(EventError, match=r"two actions are named 'dup'.*plug.*S30dup"):
        signal_event(EVENT, root=root, pm=pm)


# ------------------------------------------------------------------------------------------ failures
def test_failing_action_in_the_middle_fails_the_event_but_not_the_others(root, pm, run):
    class P:
        @hookimpl
        def hotsync_actions(self, db):
            def boom(ctx):
                print("about to fail")
                raise RuntimeError("disk on fire")
            return [Action(EVENT, "py-boom", boom, priority=15),
                    Action(EVENT, "py-after", recorder(root, "py-after"), priority=40),
                    Action(EVENT, "py-nonzero", lambda ctx: 7, priority=45)]

    pm.add_plugin(P(), "p")
    executable(root, EVENT, "S10first", f'echo first >> "{root.path}/order"\n')
    executable(root, EVENT, "S20broken", 'echo "broken: $2"; exit 3\n')
    executable(root, EVENT, "S30third", f'echo third >> "{root.path}/order"\n')
    result = signal_event(EVENT, ("arg1",), root=root, pm=pm)
    assert not result.ok
    assert order_of(root) == ["first", "third", "py-after"]
    failed = {r.step.name: r for r in result.failed}
    assert set(failed) == {"py-boom", "broken", "py-nonzero"}
    assert failed["broken"].exit == 3 and failed["broken"].output == "broken: arg1\n"
    assert "RuntimeError: disk on fire" in failed["py-boom"].reason and "about to fail" in failed["py-boom"].output
    assert failed["py-nonzero"].exit == 7
    log = (root.log_dir / "events.log").read_text()
    assert "Action: broken" in log and "FAILED: exit 3" in log and "    | broken: arg1" in log
    assert f"Event: {EVENT} FAILED (py-boom, broken, py-nonzero)" in log
    # the command names the failed actions and exits 1 (the hook actions above are not installed there)
    cp = run("signal-event", EVENT, env=QUIET)
    assert cp.returncode == 1
    assert "FAILED: broken (exit 3)" in cp.stderr
    assert "[2/3] 20 broken" in cp.stdout


def test_a_critical_failure_stops_the_event(root, pm):
    class P:
        @hookimpl
        def hotsync_actions(self, db):
            return [Action(EVENT, "gate", lambda ctx: False, priority=10, critical=True),
                    Action(EVENT, "later", recorder(root, "later"), priority=20)]

    pm.add_plugin(P(), "p")
    executable(root, EVENT, "S30shell-later", f'echo shell-later >> "{root.path}/order"\n')
    executable(root, EVENT, "S05shell-gate", "# hotsync-critical: yes\nexit 0\n")
    result = signal_event(EVENT, root=root, pm=pm)
    assert [(r.step.name, r.status) for r in result.results] == [
        ("shell-gate", "success"), ("gate", "failed"), ("later", "skipped"), ("shell-later", "skipped")]
    assert result.results[0].step.critical
    assert order_of(root) == []


def test_hanging_executable_and_python_action_hit_their_timeouts(root, pm, run):
    class P:
        @hookimpl
        def hotsync_actions(self, db):
            def hang(ctx):
                try:
                    time.sleep(30)
                except Exception:  # a broad except must not swallow the timeout
                    pass
            return [Action(EVENT, "py-hang", hang, priority=30, timeout=0.5),
                    Action(EVENT, "after", recorder(root, "after"), priority=60)]

    pm.add_plugin(P(), "p")
    executable(root, EVENT, "S10hang", f'echo $$ > "{root.path}/hang.pid"; sleep 30; echo never\n')
    executable(root, EVENT, "S20own-timeout", "# hotsync-timeout: 0.5\nsleep 30\n")
    t0 = time.monotonic()
    result = signal_event(EVENT, root=root, pm=pm, timeout=1)
    assert time.monotonic() - t0 < 15
    failed = {r.step.name: r.reason for r in result.failed}
    assert failed == {"hang": "timed out after 1 s (killed)", "own-timeout": "timed out after 0.5 s (killed)",
                      "py-hang": "timed out after 0.5 s"}
    assert order_of(root) == ["after"]
    pid = int(root.join("/hang.pid").read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    cp = run("signal-event", "--timeout", "0.5", EVENT, env=QUIET)
    assert cp.returncode == 1 and "hang (timed out after 0.5 s (killed))" in cp.stderr


def test_executables_get_event_args_and_environment_and_no_shell(root, run):
    executable(root, EVENT, "S10show", f"""\
        printf '%s\\n' "$0" "$@" > "{root.path}/argv"
        echo "$HOTSYNC_ROOT|$HOTSYNC_EVENT" > "{root.path}/env"
        """)
    executable(root, EVENT, "S20notexec", "exit 1\n", mode=0o644)
    executable(root, EVENT, "README", "not an action\n")
    cp = run("signal-event", EVENT, "a; touch pwned", "$(id)", env=QUIET)
    assert cp.returncode == 0, cp.stderr
    argv = root.join("/argv").read_text().splitlines()
    assert argv[1:] == [EVENT, "a; touch pwned", "$(id)"]
    assert root.join("/env").read_text().strip() == f"{root.path}|{EVENT}"
    assert not any(root.path.rglob("pwned")) and not Path("pwned").exists()
    assert "non-executable event handler" in cp.stderr and "S<NN><name>" in cp.stderr


# ------------------------------------------------------------------------------------------ json, lock
def test_json_stream_parses_and_tells_each_step(root, run):
    executable(root, EVENT, "S10one", "echo one\n")
    executable(root, EVENT, "S20two", "echo two; exit 4\n")
    cp = run("signal-event", "--json", EVENT, "x", env=QUIET)
    assert cp.returncode == 1
    objs = [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]
    assert objs[0] == {"event": EVENT, "args": ["x"], "steps": 2, "warnings": [], "pid": objs[0]["pid"]}
    states = [(o.get("step"), o.get("state"), o.get("action")) for o in objs[1:-1]]
    assert states == [(1, "running", "one"), (1, "done", "one"), (2, "running", "two"), (2, "done", "two")]
    assert objs[2]["status"] == "success" and objs[2]["output"] == "one\n" and objs[2]["progress"] == "0.50"
    assert objs[4]["status"] == "failed" and objs[4]["exit"] == 4
    assert objs[-1]["status"] == "failed" and objs[-1]["failed"] == ["two"]


def test_two_signal_events_at_once_run_one_after_the_other(root):
    marks = root.join("/marks")
    executable(root, EVENT, "S10slow", f"""\
        echo "start $PPID $(date +%s.%N)" >> "{marks}"
        touch "{root.path}/started-$PPID"
        sleep 1
        echo "end $PPID $(date +%s.%N)" >> "{marks}"
        """)
    env = {**os.environ, **QUIET}
    cmd = [str(Path(sys.executable).parent / "signal-event"), EVENT]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not list(root.path.glob("started-*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    second = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _out1, err1 = first.communicate(timeout=60)
    _out2, err2 = second.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, (err1, err2)
    assert f"waiting for signal-event {EVENT} (pid {first.pid}" in err2
    lines = [line.split() for line in marks.read_text().splitlines()]
    assert [(w, int(p)) for w, p, _ in lines] == [("start", first.pid), ("end", first.pid),
                                                 ("start", second.pid), ("end", second.pid)]
    assert float(lines[1][2]) <= float(lines[2][2])


def test_an_action_may_signal_another_event_of_its_root(root, pm):
    executable(root, "inner-event", "S10inner", f'echo inner >> "{root.path}/order"\n')
    executable(root, EVENT, "S10outer", f"""\
        echo outer >> "{root.path}/order"
        "{Path(sys.executable).parent / 'signal-event'}" inner-event
        """)

    class P:
        @hookimpl
        def hotsync_actions(self, db):
            def nested(ctx):
                assert signal_event("inner-event", root=ctx.root, pm=ctx.pm).ok
            return [Action(EVENT, "py-nested", nested, priority=20)]

    pm.add_plugin(P(), "p")
    result = signal_event(EVENT, root=root, pm=pm)
    assert result.ok, [(r.step.name, r.reason, r.output) for r in result.failed]
    assert order_of(root) == ["outer", "inner", "inner"]


def test_defaults_are_applied_before_every_event(root, pm, run):
    executable(root, EVENT, "S10x", "exit 0\n")
    assert signal_event(EVENT, root=root, pm=pm).ok
    run("config", "delprop", "hotsync", "interval", check=True, env=QUIET)
    assert run("config", "getprop", "hotsync", "interval", env=QUIET).stdout == ""
    assert signal_event(EVENT, root=root, pm=pm).ok
    assert run("config", "getprop", "hotsync", "interval", env=QUIET).stdout.strip() == "15"


# ------------------------------------------------------------------------------------------ a real plugin
@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    site = install_testplugin(tmp_path_factory.mktemp("testplugin"))
    return {**os.environ, "PYTHONPATH": str(site), **QUIET}


def service_state(run, env, name="testplugin-daemon") -> dict:
    cp = run("hotsync", "services", "--json", env=env)
    return {s["name"]: s for s in json.loads(cp.stdout)["services"]}[name]


def test_installed_plugin_contributes_an_action_a_template_and_a_service(root, run, plugin_env):
    env = {**plugin_env, "HOTSYNC_ROOT": str(root.path)}
    try:
        cp = run("hotsync", "plugins", "--json", env=env)
        info = {p["name"]: p for p in json.loads(cp.stdout)["plugins"]}["testplugin"]
        assert (info["origin"], info["version"], info["loaded"]) == ("hotsync-testplugin", "1.2.3", True)
        assert "hotsync_actions" in info["hooks"] and "hotsync_template_dirs" in info["hooks"]
        cp = run("hotsync", "plugins", env=env)
        assert "testplugin" in cp.stdout and "hotsync-testplugin" in cp.stdout
        cp = run("signal-event", "--list", "testplugin-probe", env=env)
        assert "testplugin-hello" in cp.stdout and "plugin testplugin" in cp.stdout, cp.stdout
        cp = run("signal-event", "testplugin-probe", "one", env=env)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert root.join("/var/lib/testplugin/calls").read_text() == "testplugin-probe one\n"
        conf = root.join("/etc/testplugin.conf")
        assert conf.read_text() == "# written by hotsync-testplugin for testplugin-probe\nrole=none\n"
        assert conf.stat().st_mode & 0o777 == 0o640
        daemon = service_state(run, env)
        assert daemon["running"] and daemon["plugin"] == "testplugin" and daemon["backend"] == "process"
        # the second run changes nothing: same file, same daemon
        before = (conf.stat().st_mtime_ns, daemon["pid"])
        cp = run("signal-event", "--json", "testplugin-probe", env=env)
        steps = {o["action"]: o for o in map(json.loads, cp.stdout.splitlines()) if o.get("state") == "done"}
        assert steps["generic_template_expand"]["output"] == "unchanged /etc/testplugin.conf"
        assert "running" in steps["adjust-services"]["output"]
        assert (conf.stat().st_mtime_ns, service_state(run, env)["pid"]) == before
        # a config change re-renders the file and restarts its service; disabling stops it
        run("config", "setprop", "hotsync", "role", "slave", env=env, check=True)
        cp = run("signal-event", "testplugin-probe", env=env)
        assert cp.returncode == 0 and "changed   /etc/testplugin.conf" in cp.stdout
        assert conf.read_text().endswith("role=slave\n")
        assert service_state(run, env)["pid"] not in (None, before[1])
        run("config", "set", "testplugin", "configuration", "status", "disabled", env=env, check=True)
        cp = run("signal-event", "testplugin-probe", env=env)
        assert cp.returncode == 0 and "disabled in the configuration" in cp.stdout
        assert not service_state(run, env)["running"]
    finally:
        pidfile = root.join("/run/hotsync/testplugin-daemon.pid")
        if pidfile.exists():
            run("config", "set", "testplugin", "configuration", "status", "disabled", env=env)
            run("signal-event", "testplugin-probe", env=env)


def test_entry_point_cache_sees_a_plugin_installed_later(root, run, plugin_env, tmp_path):
    site = tmp_path / "later-site"
    site.mkdir()
    env = {**plugin_env, "PYTHONPATH": str(site), "HOTSYNC_ROOT": str(root.path)}
    run("config", "setprop", "hotsync", "role", "master", env=env, check=True)    # a host set up: it has a cache
    assert run("signal-event", "--list", "testplugin-probe", env=env).returncode == 2
    assert (root.state_dir / "cache" / "entry-points").exists()
    installed = Path(plugin_env["PYTHONPATH"])
    for entry in installed.iterdir():   # what pip would put there
        (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, site / entry.name)
    cp = run("signal-event", "--list", "testplugin-probe", env=env)
    assert cp.returncode == 0 and "testplugin-hello" in cp.stdout, cp.stderr


def test_a_plugin_whose_hook_raises_fails_the_event_every_time(root, pm):
    class Broken:
        @hookimpl
        def hotsync_actions(self, db):
            raise KeyError("missing setting")

    pm.add_plugin(Broken(), "broken-plugin")
    executable(root, EVENT, "S10fine", f'echo fine >> "{root.path}/order"\n')
    for _ in range(2):   # the same manager again: the error is reported again
        result = signal_event(EVENT, root=root, pm=pm)
        assert [(r.step.name, r.status) for r in result.results] == [("plugin-error-1", "failed"),
                                                                     ("fine", "success")]
        assert "plugin broken-plugin: hook hotsync_actions raised KeyError" in result.failed[0].reason
    assert order_of(root) == ["fine", "fine"]


def test_later_steps_see_what_earlier_actions_wrote_to_the_database(root, pm, daemons, run):
    """An executable changes the config (as `config setprop` would): templates and services follow it."""
    tdir = root.path.parent / "tpl"
    frag = tdir / "etc" / "follow.conf" / "10a"
    frag.parent.mkdir(parents=True)
    frag.write_text("role=${hotsync.role or 'none'}\n")
    db_before = open_db("configuration", root)
    db_before.set("follow-daemon", "service", {"status": "enabled"})

    class P:
        @hookimpl
        def hotsync_template_dirs(self):
            return [tdir]

        @hookimpl
        def hotsync_templates(self, db):
            return [Template("/etc/follow.conf", events=(EVENT,))]

        @hookimpl
        def hotsync_services(self, db):
            svc = sleeper("follow-daemon", {EVENT: "start"},
                          enabled=db.getprop("follow-daemon", "status") == "enabled")
            daemons.services.append(svc)
            return [svc]

        @hookimpl
        def hotsync_actions(self, db):
            def check(ctx):
                assert ctx.db.getprop("hotsync", "role") == "slave"   # written by S02 in another process
            return [Action(EVENT, "sees-role", check, priority=50)]

    pm.add_plugin(P(), "follow")
    config = Path(sys.executable).parent / "config"
    executable(root, EVENT, "S02set-role", f'"{config}" setprop hotsync role slave\n')
    executable(root, EVENT, "S60disable", f'"{config}" setprop follow-daemon status disabled\n')
    result = signal_event(EVENT, root=root, pm=pm)
    assert result.ok, [(r.step.name, r.reason, r.output) for r in result.failed]
    assert root.join("/etc/follow.conf").read_text() == "role=slave\n"
    services = {r.step.name: r for r in result.results}["adjust-services"]
    assert services.output == "follow-daemon: stays stopped (disabled in the configuration)"


def test_command_line_help_and_usage_errors(root, run):
    cp = run("signal-event", "--help")
    assert cp.returncode == 0 and "examples:" in cp.stdout and "signal-event --list nethserver-hotsync-save" in cp.stdout
    for args, words in [(["--timeout", "soon", "x"], "--timeout needs a positive number of seconds, got 'soon'"),
                        (["--colour", "x"], "unknown option '--colour'"),
                        ([], "which event?"),
                        (["--root"], "--root needs a value")]:
        cp = run("signal-event", *args, env=QUIET)
        assert cp.returncode == 2 and words in cp.stderr, (args, cp.stderr)
    executable(root, EVENT, "S10x", "exit 0\n")
    cp = run("signal-event", "--list", env=QUIET)
    assert cp.returncode == 0 and EVENT in cp.stdout.split()
    cp = run("signal-event", "--root", str(root.path), EVENT, "--list", env={"HOTSYNC_ROOT": "/nonexistent"})
    assert cp.returncode == 0, cp.stderr   # options end at the event: --list goes to the actions


def test_detection_is_asked_once_per_configuration_state_and_its_errors_still_fail(root, pm):
    calls = []

    class Detecting:
        @hookimpl
        def hotsync_detect(self, root):
            calls.append(1)
            raise OSError("cannot look")

        @hookimpl
        def hotsync_actions(self, db):
            return [Action(EVENT, "from-undetected", recorder(root, "never"), priority=10)]

    pm.add_plugin(Detecting(), "detecting")
    executable(root, EVENT, "S20fine", "exit 0\n")
    result = signal_event(EVENT, root=root, pm=pm)
    assert [(r.step.name, r.status) for r in result.results] == [("plugin-error-1", "failed"), ("fine", "success")]
    assert "plugin detecting: hook hotsync_detect raised OSError: cannot look" in result.failed[0].reason
    assert len(calls) <= 2   # not once per hook call
    assert pm.detect_memo is None
