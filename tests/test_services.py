"""Services: the process back-end with real daemons, the adjust step of an event, ``hotsync services``."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from hotsync_events.paths import Root
from hotsync_events.events.services import ProcessBackend, ServiceError, ServiceManager, backend_name
from hotsync_events.types import Service

DAEMON = """
import os, signal, sys, time
root = sys.argv[2]
open(sys.argv[1], "w").write(" ".join(sys.argv[1:]) + "\\n")
def hup(s, f):
    with open(os.path.join(root, "hup"), "a") as fh:
        fh.write("hup\\n")
signal.signal(signal.SIGHUP, hup)
print("daemon up", flush=True)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    time.sleep(0.1)
"""


def daemon(name: str = "probe-daemon", **kw) -> Service:
    return Service(name=name, command=(sys.executable, "-c", DAEMON, "{root}/argv", "{root}"), **kw)


@pytest.fixture
def backend(root):
    b = ProcessBackend(root)
    started: list[Service] = []
    b.started = started   # services to stop at the end, whatever the test did
    yield b
    for svc in started:
        b.stop(svc)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_process_backend_start_status_reload_restart_stop(root, backend):
    svc = daemon()
    backend.started.append(svc)
    assert backend.status(svc).running is False
    assert backend.start(svc).startswith("started (pid ")
    st = backend.status(svc)
    assert st.running and alive(st.pid)
    pid, start = root.join("/run/hotsync/probe-daemon.pid").read_text().split()
    assert int(pid) == st.pid and start.isdigit()
    assert root.join("/argv").read_text() == f"{root.path}/argv {root.path}\n"   # {root} replaced
    assert "daemon up" in root.join("/var/log/hotsync/probe-daemon.log").read_text()
    assert backend.start(svc) == f"already running (pid {st.pid})"
    assert backend.reload(svc).startswith("reloaded")
    deadline = time.monotonic() + 10
    while not root.join("/hup").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert root.join("/hup").read_text() == "hup\n"
    assert backend.restart(svc).startswith("restarted (pid ")
    new = backend.status(svc)
    assert new.running and new.pid != st.pid and not alive(st.pid)
    assert backend.stop(svc) == f"stopped (was pid {new.pid})"
    assert not alive(new.pid) and not root.join("/run/hotsync/probe-daemon.pid").exists()
    assert backend.stop(svc) == "already stopped"


def test_a_daemon_that_dies_at_once_is_a_clear_error(root, backend):
    svc = Service(name="dies", command=(sys.executable, "-c", "import sys; print('bad config line 3'); sys.exit(2)"))
    with pytest.raises(ServiceError, match=r"(?s)dies exited at once with status 2.*bad config line 3"):
        backend.start(svc)
    assert not root.join("/run/hotsync/dies.pid").exists()
    with pytest.raises(ServiceError, match="cannot run /no/such/program"):
        backend.start(Service(name="missing", command=("/no/such/program",)))
    with pytest.raises(ServiceError, match="has no command for the process back-end"):
        backend.start(Service(name="unit-only", unit="x.service"))


def test_a_stale_pidfile_is_not_a_running_service(root, backend):
    svc = daemon("stale")
    pidfile = root.join("/run/hotsync/stale.pid")
    pidfile.parent.mkdir(parents=True)
    pidfile.write_text(f"{os.getpid()} 1\n")      # our pid, another start time: a recycled pid
    assert not backend.status(svc).running
    pidfile.write_text("999999999 1\n")
    assert not backend.status(svc).running
    assert backend.stop(svc) == "already stopped" and not pidfile.exists()
    assert alive(os.getpid())


def test_root_arguments_for_slash():
    b = ProcessBackend(Root("/"))
    svc = Service(name="s", command=("prog", "{root}/etc/x.conf", "--root={root}", "{root}"))
    assert b.argv(svc) == ["prog", "/etc/x.conf", "--root=/", "/"]


def test_backend_choice(monkeypatch, tmp_path):
    monkeypatch.delenv("HOTSYNC_SERVICE_BACKEND", raising=False)
    assert backend_name(Root(tmp_path)) == "process"   # never systemd for a root other than /
    monkeypatch.setenv("HOTSYNC_SERVICE_BACKEND", "process")
    assert backend_name(Root("/")) == "process"


def test_adjust_starts_restarts_reloads_and_stops_as_the_event_and_config_say(root, backend):
    on = daemon("svc-on", events={"ev": "start"})
    hup = daemon("svc-reload", events={"ev": "reload"})
    off = daemon("svc-off", events={"ev": "restart"}, enabled=False)
    quiet = daemon("svc-other-event", events={"other": "start"})
    backend.started.extend([on, hup, off, quiet])
    mgr = ServiceManager(root, [on, hup, off, quiet], backend="process")
    backend.start(off)
    backend.start(hup)
    lines, failed = mgr.adjust("ev")
    assert failed == []
    report = dict(line.split(": ", 1) for line in lines)
    assert report["svc-on"].startswith("started")
    assert report["svc-reload"].startswith("reloaded")
    assert report["svc-off"].startswith("stopped") and "disabled in the configuration" in report["svc-off"]
    assert "svc-other-event" not in report
    assert mgr.status("svc-on").running and not mgr.status("svc-off").running
    assert not mgr.status("svc-other-event").running
    pid = mgr.status("svc-on").pid
    lines, failed = mgr.adjust("ev")
    assert dict(line.split(": ", 1) for line in lines)["svc-on"] == f"running (pid {pid})"
    lines, failed = mgr.adjust("ev", changed=[("/etc/on.conf", "svc-on"), ("/etc/x.conf", "nobody-declares")])
    report = dict(line.split(": ", 1) for line in lines)
    assert report["svc-on"].startswith("restarted") and "/etc/on.conf" in report["svc-on"]
    assert mgr.status("svc-on").pid != pid
    assert failed == ["nobody-declares"] and "no plugin declares" in report["nobody-declares"]
    with pytest.raises(ServiceError, match="no service 'nope'"):
        mgr.do("nope", "start")
    with pytest.raises(ServiceError, match="unknown service verb"):
        mgr.do("svc-on", "explode")


def test_hotsync_services_command(root, run):
    cp = run("hotsync", "services", "--json")
    assert cp.returncode == 0, cp.stderr
    data = json.loads(cp.stdout)
    assert data["backend"] == "process" and isinstance(data["services"], list)
    cp = run("hotsync", "services", "--help")
    assert cp.returncode == 0 and "examples:" in cp.stdout and "hotsync services --json" in cp.stdout


def test_on_a_systemd_host_a_service_without_unit_uses_the_process_backend(root, backend):
    with_unit = Service(name="u", unit="u.service", command=("true",))
    without = daemon("no-unit")
    backend.started.append(without)
    mgr = ServiceManager(root, [with_unit, without], backend="systemd")
    assert mgr.backend_for(with_unit).name == "systemd"
    assert mgr.backend_for(without).name == "process"
    assert mgr.do("no-unit", "start").startswith("started")
    assert mgr.status("no-unit").running


def test_a_daemon_never_runs_in_a_directory_a_push_writes(root, backend):
    """``python -m`` puts its working directory first on the module path: a daemon started in the root (or
    in ``/`` on a real slave) would import a ``json.py`` the master pushed there, as root. The process
    back-end starts them in the root's /run/hotsync, which a push never writes."""
    from hotsync_events.childproc import module_cwd
    from hotsync_events.sync.policy import refusal_of

    root.join("/json.py").write_text("raise SystemExit('planted module imported')\n")
    code = ("import os, sys, time, json; print('cwd', os.getcwd(), 'path0', sys.path[0], flush=True); "
            "time.sleep(60)")
    svc = Service(name="probe-cwd", command=(sys.executable, "-c", code))
    backend.started.append(svc)
    backend.start(svc)
    log = backend.logfile(svc)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "cwd" not in log.read_text():
        time.sleep(0.05)
    text = log.read_text()
    assert f"cwd {root.join('/run/hotsync')}" in text and "planted" not in text, text
    assert module_cwd(root) == str(root.join("/run/hotsync"))
    assert refusal_of("/run/hotsync/json.py") is not None
