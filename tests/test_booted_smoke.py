"""Two booted hosts (tests/booted.py): each a real systemd as PID 1, linked by a veth pair, rebooted, powered off.

Run alone with ``pytest -m booted tests/test_booted_smoke.py``; skipped where the machine cannot boot hosts.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from booted import Host, leftovers, link, sweep

pytestmark = [pytest.mark.booted, pytest.mark.root, pytest.mark.timeout(120)]

ADDR_A, ADDR_B = "10.231.0.1", "10.231.0.2"   # exist only inside the two hosts' network namespaces
PORT = 7007
#: a one-connection echo server, as a transient systemd service in the host (systemd-run)
ECHO_SERVER = ("import socket\n"
               f"s = socket.create_server(('0.0.0.0', {PORT}))\n"
               "s.settimeout(60)\n"
               "c, peer = s.accept()\n"
               "c.sendall(b'echo from ' + socket.gethostname().encode() + b': ' + c.recv(100))\n"
               "c.close()\n")
ECHO_CLIENT = ("import socket, sys\n"
               f"c = socket.create_connection((sys.argv[1], {PORT}), timeout=10)\n"
               "c.sendall(b'hello')\n"
               "print(c.recv(100).decode())\n")


def _wait_listening(host: Host, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.1) + 1):
        if f":{port} " in host.run(["ss", "-Htln"], check=False).stdout:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    raise AssertionError(f"{host.name}: nothing listens on port {port} after {timeout:.0f}s")


def test_two_hosts_link_reboot_poweroff(booted):
    started = time.monotonic()
    a, b = booted.boot("alpha", "beta")
    boot_time = time.monotonic() - started

    # two hosts: their own names, machine ids, PID 1, and none of the image's own services started
    assert a.run(["hostname"]).stdout.strip() == "alpha"
    assert b.run(["hostname"]).stdout.strip() == "beta"
    ids = {h.run(["cat", "/etc/machine-id"]).stdout.strip() for h in (a, b)}
    assert len(ids) == 2 and Path("/etc/machine-id").read_text().strip() not in ids
    assert a.run(["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
    for unit in ("mariadb.service", "postgresql.service", "slapd.service"):
        assert a.run(["systemctl", "is-active", unit], check=False).stdout.strip() != "active"
    assert a.failed_units() == []

    # one wire: TCP from alpha to a service systemd-run started on beta
    link(a, b, ADDR_A, ADDR_B)
    b.run(["systemd-run", "--unit=echo-test", "--collect", "/usr/bin/python3", "-c", ECHO_SERVER])
    _wait_listening(b, PORT)
    reply = a.run(["/usr/bin/python3", "-c", ECHO_CLIENT, ADDR_B], timeout=30).stdout.strip()
    assert reply == "echo from beta: hello"

    # a real reboot keeps the disk (the overlay's upper layer), not /run, not the boot id
    a.run("echo written-before-reboot > /root/marker; touch /run/volatile")
    boot_id = a.run(["cat", "/proc/sys/kernel/random/boot_id"]).stdout
    old_pid = a.pid
    assert a.reboot() in ("running", "degraded")
    assert a.pid != old_pid
    assert a.run(["cat", "/root/marker"]).stdout == "written-before-reboot\n"
    assert a.run(["test", "-e", "/run/volatile"], check=False).returncode == 1
    assert a.run(["cat", "/proc/sys/kernel/random/boot_id"]).stdout != boot_id
    assert a.run(["hostname"]).stdout.strip() == "alpha"
    assert b.state() in ("running", "degraded")        # the other host went on

    # power both off: nothing of them is left on the machine once they are removed
    pids = (a.pid, b.pid)
    for h in (a, b):
        h.poweroff()
        assert not h.running() and h.pid is None
        h.destroy()
        assert h.leftovers() == []
    for pid in pids:
        with pytest.raises(FileNotFoundError):
            open(f"/proc/{pid}/stat").close()
    print(f"boot of two hosts: {boot_time:.1f}s; each boot: alpha {a.boot_seconds}, beta {b.boot_seconds}")


#: a test run that boots a host and is then killed (-9) before any finalizer can run
KILLED_RUN = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from booted import Host
h = Host("doomed", Path(sys.argv[2]))
h.boot()
h.wait_running()
h.run(["systemd-run", "--unit=sleeper", "sleep", "600"])
print(json.dumps({"pid": h.pid, "dir": str(h.dir), "cgroups": [str(c) for c in h.cgroups]}), flush=True)
time.sleep(600)
"""


def test_a_killed_run_leaves_no_process_and_is_swept(booted_sandbox):
    tests = str(Path(__file__).parent)
    child = subprocess.Popen([sys.executable, "-c", KILLED_RUN, tests, str(booted_sandbox)], stdout=subprocess.PIPE,
                             text=True)
    try:
        line = child.stdout.readline()            # bounded by the host's own boot timeout
        info = json.loads(line)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
    # the test process died: its hosts' PID 1 (and with it the whole pid namespace) died with it
    deadline = time.monotonic() + 15
    for _ in range(150):
        if not Path(f"/proc/{info['pid']}").exists() or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    stat = Path(f"/proc/{info['pid']}/stat")
    assert not stat.exists() or stat.read_text().split(") ")[1][0] == "Z", "the host's systemd outlived its test"
    sandbox, cgroups = Path(info["dir"]), [Path(c) for c in info["cgroups"]]
    assert any(m.startswith("mount ") for m in leftovers(sandbox, cgroups))   # the mounts wait for a sweep
    # the next run's sweep removes the rest
    assert sandbox.name in sweep(booted_sandbox)
    assert leftovers(sandbox, cgroups) == []
