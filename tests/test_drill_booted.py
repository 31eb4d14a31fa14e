"""``hotsync drill`` on a real host: a slave whose root is ``/`` and whose PID 1 is systemd, so the drill boots
the drilled host's own systemd on its overlay (drill/boot.py).

Two booted hosts (tests/booted.py) with the .deb, paired with the manual's commands over a veth pair, as
in test_booted_pair. The slave has an application of its own: a unit-only service, enabled, which only
systemd can start (the process back-end has no command for it). The tests:

* the drill boots, promotes through systemd, starts ``default.target`` as the reboot after a promote
  would, and passes: the unit runs in the drilled host; the copy, the slave's units and its listener are
  as they were; a push after the drill lands; nothing of the drill is left (mounts, processes, cgroups);
* ``--no-boot`` runs the process back-end and says so, and restores MariaDB into a server it starts
  itself, as the mysql user;
* an enabled unit that fails to start fails the drill, naming the unit and its journal;
* ``kill -9`` of a booted drill leaves no process or mount; the next drill removes its cgroups and passes.

Run alone with ``pytest -m booted tests/test_drill_booted.py``.
"""
from __future__ import annotations

import json
import shlex
import threading
import time
from pathlib import Path

import pytest

from booted import Host, link
from test_booted_deb import deb  # noqa: F401  (the module-scoped fixture: the cached .deb)
from test_booted_pair import _install

pytestmark = [pytest.mark.booted, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(900)]

MASTER_ADDR, SLAVE_ADDR = "10.232.1.1", "10.232.1.2"   # only inside the two hosts' network namespaces
PASSWORD = "Drill-booted-1"
DATA = "/srv/data"
WEB_UNIT = """\
[Unit]
Description=an application of the slave's own, started by systemd only
[Service]
ExecStart=/usr/bin/python3 -m http.server 8181 --bind 127.0.0.1 --directory /srv/data
[Install]
WantedBy=multi-user.target
"""
BROKEN_UNIT = """\
[Unit]
Description=an application that does not start
[Service]
ExecStart=/bin/sh -c 'echo drilltest-broken: the licence file is missing >&2; exit 3'
[Install]
WantedBy=multi-user.target
"""


def _fingerprint(host: Host) -> str:
    return json.loads(host.run(["hotsync", "status", "--json"]).stdout)["fingerprint"]


def _tree(host: Host, path: str) -> str:
    return host.run(f"cd {shlex.quote(path)} && find . -printf '%p %s %m %U\\n' | sort && "
                    "find . -type f -exec sha256sum {} + | sort").stdout


def _drill(host: Host, *args: str, env: str = "", timeout: float = 400):
    return host.run(f"{env} hotsync drill --json --no-mail {' '.join(args)}", check=False, timeout=timeout)


def _traces(host: Host) -> list[str]:
    """What is left of drills in the slave: mounts, processes, cgroups (as the slave sees them; a process's
    root shows with the booted slave's own path on the machine in front)."""
    left = [ln for ln in host.run(["cat", "/proc/mounts"]).stdout.splitlines() if "/var/lib/hotsync/drill" in ln]
    left += host.run("for p in /proc/[0-9]*; do r=$(readlink $p/root 2>/dev/null) || continue; case $r in "
                     "*/var/lib/hotsync/drill/*) echo process ${p#/proc/} rooted in $r;; esac; done",
                     check=False).stdout.splitlines()
    left += host.run("find /sys/fs/cgroup -maxdepth 4 -name hotsync-drill", check=False).stdout.splitlines()
    return left


def booted_pair(sandbox: Path, deb_path: Path, *, files: int = 30) -> tuple[Host, Host]:
    """A master and a slave booted side by side with the .deb, paired with the manual's commands, the
    master's ``/srv/data`` (*files* files) and its MariaDB (the image's server, started by its unit: a
    database ``shop``) pushed once; the slave has an enabled unit-only application. The caller destroys
    both (also when this raises: they are ``booted_pair.made``)."""
    master = Host("dmaster", sandbox)
    slave = Host("dslave", sandbox)
    booted_pair.made = [slave, master]          # type: ignore[attr-defined]
    for h in (master, slave):     # MariaDB runs on each host's copy of the image's data directory
        h.masks = [m for m in h.masks if m != "mariadb.service"] + ["packagekit.service"]
        h.boot()
    for h in (master, slave):
        h.wait_running(90)
    link(master, slave, MASTER_ADDR, SLAVE_ADDR)
    errors: list = []
    threads = [threading.Thread(target=_install, args=(h, deb_path, errors)) for h in (master, slave)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(400)
    assert not errors, errors
    for host in (master, slave):     # the image's PostgreSQL is masked in booted hosts: no dump of it
        host.run(["config", "set", "postgresql", "service", "status", "disabled"])
        host.run(["rm", "-rf", "/var/lib/ldap"])     # the directory plugin's promote wants CentOS's ldap user
        host.run(["systemctl", "start", "mariadb.service"], timeout=120)
    master.run(["mariadb", "-e", "CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, name "
                "VARCHAR(20)); INSERT INTO shop.items VALUES (1, 'pen'), (2, 'ink')"])
    slave.run(["config", "setprop", "rsyncd", "password", PASSWORD])
    slave.run(["config", "setprop", "hotsync", "role", "slave", "MasterHost", MASTER_ADDR])
    slave.run(["signal-event", "nethserver-hotsync-save"], timeout=120)
    master.run(f"mkdir -p {DATA} /etc/hotsync/include.d && echo {DATA}/ > /etc/hotsync/include.d/drill.include")
    blob = bytes(range(256)) * 8
    for i in range(files):
        sub = master.path(f"{DATA}/d{i // 100:03}")
        sub.mkdir(exist_ok=True)
        (sub / f"f{i}.txt").write_bytes(f"file {i}\n".encode() + blob)
    master.run(["config", "setprop", "rsyncd", "password", PASSWORD])
    master.run(["config", "setprop", "hotsync", "role", "master", "SlaveHost", SLAVE_ADDR, "realtime", "disabled"])
    master.run(["signal-event", "nethserver-hotsync-save"], timeout=120)
    slave.run(["config", "setprop", "hotsync", "MasterFingerprint", _fingerprint(master)])
    slave.run(["signal-event", "nethserver-hotsync-save"], timeout=120)
    cp = master.run(["hotsync", "sync", "--accept-fingerprint", _fingerprint(slave)], check=False, timeout=180)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    # what the harness masks on the booted hosts' command line (the image's servers, whose data this test
    # does not give them), masked for good on the slave: the drill boots its own systemd, without those
    slave.run(["systemctl", "mask", "slapd.service", "postgresql.service"])
    # the slave's own application: a unit only systemd can start
    slave.path("/etc/systemd/system/drilltest-web.service").write_text(WEB_UNIT)
    slave.run(["systemctl", "daemon-reload"])
    slave.run(["systemctl", "enable", "drilltest-web.service"])
    return master, slave


@pytest.fixture(scope="module")
def slave(booted_sandbox, deb):  # noqa: F811
    """A paired slave at ``/`` (booted, the .deb), with a copy and an enabled unit-only application; its master
    is ``slave.master``."""
    try:
        master, slave = booted_pair(booted_sandbox, deb)
        slave.master = master          # type: ignore[attr-defined]
        yield slave
    finally:
        for h in getattr(booted_pair, "made", []):
            h.destroy()


def test_a_booted_drill_starts_systemd_units_and_leaves_the_host_as_it_was(slave):
    copy = _tree(slave, DATA)
    dbs = slave.run(["mariadb", "-N", "-e", "SHOW DATABASES"]).stdout
    assert "shop" not in dbs.split()
    units = slave.run("systemctl list-units --state=active --plain --no-legend --no-pager | awk '{print $1}'").stdout
    t0 = time.monotonic()
    cp = _drill(slave)
    took = time.monotonic() - t0
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-5000:]
    rec = json.loads(cp.stdout)
    assert rec["result"] == "passed" and rec["mode"] == "booted", rec["causes"]
    assert rec["boot"]["state"] in ("running", "degraded") and rec["boot"]["seconds"] < 60
    assert "drilltest-web.service" in rec["reboot"]["services_active"], rec["reboot"]
    assert rec["reboot"]["failed"] == []
    checks = {c["name"]: c["status"] for c in rec["checks"]}
    assert checks["core-services-up"] == checks["core-dumps-restored"] == checks["mysql-query"] == "passed", checks
    assert rec["databases"] == {"mysql": "success"}         # restored into the server its unit started
    assert rec["promote_exit"] == 0 and rec["promote_timings"]["services"] >= 0
    # the slave as it was: its copy, its units (the application did not start here), its listener, no trace
    assert _tree(slave, DATA) == copy
    assert slave.run(["mariadb", "-N", "-e", "SHOW DATABASES"]).stdout == dbs      # the slave's own server
    after = slave.run("systemctl list-units --state=active --plain --no-legend --no-pager | awk '{print $1}'").stdout
    assert after == units
    assert slave.run(["systemctl", "is-active", "drilltest-web.service"], check=False).stdout.strip() == "inactive"
    st = json.loads(slave.run(["hotsync", "status", "--json"]).stdout)
    assert st["role"] == "slave" and st["drill"]["result"] == "passed" and st["drill"]["mode"] == "booted"
    assert ": PASSED (booted drill " in slave.run(["hotsync", "status"], check=False).stdout
    assert _traces(slave) == []
    master = slave.master
    master.path(DATA + "/after.txt").write_text("after the drill\n")
    cp = master.run(["hotsync", "sync"], check=False, timeout=180)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert slave.path(DATA + "/after.txt").read_text() == "after the drill\n"
    print(f"booted drill: wall {took:.1f} s, boot {rec['boot']['seconds']} s, promote {rec['promote_time']} s, "
          f"default.target {rec['reboot']['seconds']} s")


def test_no_boot_runs_the_process_back_end_and_says_so(slave):
    """--no-boot: the process back-end on the overlay; MariaDB (the image's, its data directory the mysql
    user's) is started as that user with its log and pid file where it may write them."""
    cp = _drill(slave, "--no-boot")
    rec = json.loads(cp.stdout)
    assert rec["mode"] == "process" and rec.get("boot") is None, rec
    assert any("--no-boot" in n for n in rec["notes"]), rec["notes"]
    assert cp.returncode == 0 and rec["databases"] == {"mysql": "success"}, rec["causes"]
    assert _traces(slave) == []


def test_a_unit_that_does_not_start_fails_the_drill_naming_it(slave):
    unit = Path("/etc/systemd/system/drilltest-broken.service")
    slave.path(str(unit)).write_text(BROKEN_UNIT)
    slave.run(["systemctl", "daemon-reload"])
    slave.run(["systemctl", "enable", unit.name])
    try:
        cp = _drill(slave)
        st = json.loads(slave.run(["hotsync", "status", "--json"]).stdout)
    finally:
        slave.run(["systemctl", "disable", unit.name])
        slave.path(str(unit)).unlink()
        slave.run(["systemctl", "daemon-reload"])
    assert cp.returncode == 1, cp.stdout[-3000:] + cp.stderr[-3000:]
    rec = json.loads(cp.stdout)
    causes = [c for c in rec["causes"] if "drilltest-broken.service" in c]
    assert causes and "the licence file is missing" in causes[0], rec["causes"]
    assert rec["reboot"]["failed"] == ["drilltest-broken.service"]
    assert any("takeover drill FAILED" in r for r in st["health"]["reasons"])
    assert _traces(slave) == []


def test_keep_leaves_the_booted_host_up_until_drill_stop(slave):
    import re

    cp = slave.run("hotsync drill --keep --no-mail", check=False, timeout=300)
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
    m = re.search(r"enter it with  nsenter -t (\d+) -a -r -w sh .*stop it with  hotsync drill --stop", cp.stdout)
    assert m, cp.stdout[-2000:]
    pid = m.group(1)
    try:
        inside = slave.run(["nsenter", "-t", pid, "-a", "-r", "systemctl", "is-active", "drilltest-web.service"],
                           check=False)
        assert inside.stdout.strip() == "active"
        role = slave.run(["nsenter", "-t", pid, "-a", "-r", "config", "getprop", "hotsync", "role"])
        assert role.stdout.strip() == "master"                           # the drilled host took over
        assert slave.run(["config", "getprop", "hotsync", "role"]).stdout.strip() == "slave"
        # another drill meanwhile leaves the kept one alone (its directory, hence its file systems)
        again = _drill(slave)
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
        assert slave.run(["nsenter", "-t", pid, "-a", "-r", "systemctl", "is-system-running"],
                         check=False).stdout.strip() in ("running", "degraded")
    finally:
        stop = slave.run(["hotsync", "drill", "--stop"], check=False, timeout=200)
    assert stop.returncode == 0 and f"(booted, pid {pid})" in stop.stdout, stop.stdout + stop.stderr
    assert slave.run(["test", "-e", f"/proc/{pid}"], check=False).returncode != 0
    assert _traces(slave) == []                  # --stop removed its cgroups too
    again = slave.run(["hotsync", "drill", "--stop"], check=False)
    assert "no drilled host is kept up" in again.stdout


def test_kill_9_of_a_booted_drill_leaves_no_process_or_mount(slave):
    proc = slave.run("HOTSYNC_DRILL_PAUSE_AT=checks:120 setsid hotsync drill --no-mail "
                     ">/dev/null 2>&1 & echo $!")
    pid = proc.stdout.strip()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:       # until the drilled host's systemd runs the drill inside it
        ps = slave.run(["pgrep", "-f", "drill.inner --inside"], check=False).stdout.split()
        if ps:
            break
        time.sleep(0.25)
    else:
        pytest.fail("the booted drill never got to its checks")
    slave.run(["kill", "-9", pid])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and [t for t in _traces(slave) if not t.startswith("/sys/fs/cgroup")]:
        time.sleep(0.25)
    assert [t for t in _traces(slave) if not t.startswith("/sys/fs/cgroup")] == []
    time.sleep(5)       # the next drill sweeps cgroup trees left empty for 5 s
    cp = _drill(slave)
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
    assert _traces(slave) == []
