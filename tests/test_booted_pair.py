"""Two booted hosts (tests/booted.py) with the .deb, paired with the manual's commands, under systemd.

A master and a slave, each a real systemd as PID 1 on its own overlay, joined by a veth pair. The package's
units do the work: hotsync-stunnel (the slave's listener), hotsync-watch (the notifier) and
hotsync-sync.timer (the schedule), each started by ``signal-event nethserver-hotsync-save`` through
systemctl. The test pairs them as the manual says (both fingerprints accepted by a person), syncs, reboots
the slave (it comes back serving) and the master (its notifier and timer come back), kills the notifier
(systemd restarts it, ``hotsync status`` says so), stops the notifier cleanly (its last change arrives),
pulls the master's plug, promotes the slave, boots the old master (it learns it was fenced) and re-pairs it
as the new slave.

Run alone with ``pytest -m booted tests/test_booted_pair.py`` (about 2 minutes once the .deb is cached).
"""
from __future__ import annotations

import json
import threading
import time

import pytest

from booted import Host, link
from test_booted_deb import APT_ENV, deb  # noqa: F401  (the module-scoped fixture: the cached .deb)

pytestmark = [pytest.mark.booted, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(1500)]

MASTER_ADDR, SLAVE_ADDR = "10.232.0.1", "10.232.0.2"   # only inside the two hosts' network namespaces
PASSWORD = "Booted-pair-1"
DATA = "/srv/data"


def _install(host: Host, deb_path, errors: list) -> None:
    try:
        host.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", str(deb_path)], env=APT_ENV,
                 timeout=300)
    except Exception as exc:    # reported by the caller, with the other host's
        errors.append(f"{host.name}: {exc}")


def _active(host: Host, unit: str) -> str:
    return host.run(["systemctl", "is-active", unit], check=False).stdout.strip()


def _diag(*hosts: Host) -> str:
    """What the hosts say: their units' journal, `hotsync status`, the slave's TLS log."""
    out = []
    for h in hosts:
        if not h.running():
            continue
        for cmd in (["journalctl", "-u", "hotsync-watch", "-u", "hotsync-stunnel", "-u", "hotsync-sync", "-n", "40",
                     "--no-pager"], ["hotsync", "status"], ["tail", "-n", "15", "/var/log/hotsync/hotsync-stunnel-tls.log"],
                    ["ip", "-br", "addr"]):
            cp = h.run(cmd, check=False, timeout=30)
            out.append(f"--- {h.name}: {' '.join(cmd)}\n{cp.stdout}{cp.stderr}")
    return "\n".join(out)


def _wait(what: str, ok, timeout: float = 60.0, every: float = 0.25, hosts: tuple = ()):
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / every) + 1):
        value = ok()
        if value:
            return value
        if time.monotonic() > deadline:
            break
        time.sleep(every)
    raise AssertionError(f"not within {timeout:.0f} s: {what}\n{_diag(*hosts)}")


def _fingerprint(host: Host) -> str:
    return json.loads(host.run(["hotsync", "status", "--json"]).stdout)["fingerprint"]


def _realtime(host: Host) -> dict:
    # /run is the host's own tmpfs, seen only from inside
    cp = host.run(["cat", "/run/hotsync/realtime.json"], check=False)
    try:
        return json.loads(cp.stdout) if cp.returncode == 0 else {}
    except ValueError:
        return {}


def _arrived(host: Host, name: str, text: str):
    def check() -> bool:
        p = host.path(f"{DATA}/{name}")
        try:
            return p.read_text() == text
        except OSError:
            return False
    return check


def _notifier_idle_since(master: Host, since: float):
    """The notifier's status: started after *since* (its ``started``), its start-up full sync done, nothing
    running or queued."""
    def check() -> bool:
        st = _realtime(master)
        main = master.run(["systemctl", "show", "-p", "MainPID", "--value", "hotsync-watch.service"]).stdout.strip()
        return bool(st.get("running_now") and str(st.get("pid")) == main    # not a killed notifier's last words
                    and st.get("started", 0) > since and st.get("full_syncs")
                    and st.get("running") is None and not st.get("queued_paths"))
    return check


def test_a_pair_of_booted_hosts_syncs_reboots_stops_cleanly_and_promotes(booted, deb):  # noqa: F811
    t_start = time.monotonic()
    master, slave = booted.boot("hsmaster", "hsslave", mask=("packagekit.service",))
    link(master, slave, MASTER_ADDR, SLAVE_ADDR)
    errors: list = []
    threads = [threading.Thread(target=_install, args=(h, deb, errors)) for h in (master, slave)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(400)
    assert not errors, errors

    # the image has MariaDB, PostgreSQL and slapd installed, never started here (masked): no dumps of them
    for host in (master, slave):
        host.run(["config", "set", "mysqld", "service", "status", "disabled"])
        host.run(["config", "set", "postgresql", "service", "status", "disabled"])
        host.run(["config", "setprop", "hotsync", "databases", "disabled"])
        # and the NethServer directory plugin (its promote step wants CentOS's ldap user): slapd's data out of
        # the way, in the host's overlay only
        host.run(["rm", "-rf", "/var/lib/ldap"])

    # the slave, as the manual says (through /sbin/e-smith)
    slave.run(["/sbin/e-smith/config", "setprop", "rsyncd", "password", PASSWORD])
    slave.run(["/sbin/e-smith/config", "setprop", "hotsync", "role", "slave", "MasterHost", MASTER_ADDR])
    slave.run(["/sbin/e-smith/signal-event", "nethserver-hotsync-save"], timeout=120)
    assert _active(slave, "hotsync-stunnel.service") == "active"
    assert slave.run(["systemctl", "is-enabled", "hotsync-stunnel.service"]).stdout.strip() == "enabled"
    assert _active(slave, "hotsync-watch.service") != "active"

    # the master: something to sync, its slave, the save event
    master.run(f"mkdir -p {DATA} /etc/hotsync/include.d && echo one > {DATA}/one && "
               f"echo {DATA}/ > /etc/hotsync/include.d/booted.include")
    master.run(["/sbin/e-smith/config", "setprop", "rsyncd", "password", PASSWORD])
    master.run(["/sbin/e-smith/config", "setprop", "hotsync", "role", "master", "SlaveHost", SLAVE_ADDR])
    master.run(["/sbin/e-smith/signal-event", "nethserver-hotsync-save"], timeout=120)
    for unit in ("hotsync-watch.service", "hotsync-sync.timer"):
        assert _active(master, unit) == "active", unit
        assert master.run(["systemctl", "is-enabled", unit]).stdout.strip() == "enabled", unit
    assert _active(master, "hotsync-stunnel.service") != "active"
    assert "OnCalendar=*-*-* *:00/15:00" in master.path("/etc/systemd/system/hotsync-sync.timer.d/interval.conf").read_text()
    assert "hotsync-sync.timer" in master.path("/etc/cron.d/hotsync").read_text()    # no cron line beside it

    # fingerprints compared by a person: the slave pins the master's, the master's first push pins the slave's
    slave.run(["config", "setprop", "hotsync", "MasterFingerprint", _fingerprint(master)])
    slave.run(["signal-event", "nethserver-hotsync-save"], timeout=120)
    cp = master.run(["hotsync", "sync", "--accept-fingerprint", _fingerprint(slave)], check=False, timeout=180)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert _arrived(slave, "one", "one\n")()

    # the notifier (hardened unit) pushes a change by itself once the pin is there
    master.run(f"echo two > {DATA}/two")
    _wait("a change pushed by the notifier", _arrived(slave, "two", "two\n"), timeout=60)
    # the timer's service, hardened too, runs (a run within the interval is skipped: exit 0)
    master.run(["systemctl", "start", "hotsync-sync.service"], timeout=180)
    assert master.run(["systemctl", "show", "-p", "Result", "--value", "hotsync-sync.service"]).stdout.strip() \
        == "success"

    # the slave reboots: its listener comes back (enabled), and the next change gets through
    slave.reboot()
    link(master, slave, MASTER_ADDR, SLAVE_ADDR)     # a new network namespace: the cable plugged in again
    _wait("the slave's listener back", lambda: _active(slave, "hotsync-stunnel.service") == "active", timeout=30)
    master.run(f"echo three > {DATA}/three")
    _wait("a change after the slave's reboot", _arrived(slave, "three", "three\n"), timeout=90,
          hosts=(master, slave))

    # the master reboots: notifier and timer come back; the notifier starts with a full sync
    master.run(f"echo four > {DATA}/four")
    master.reboot()
    link(master, slave, MASTER_ADDR, SLAVE_ADDR)
    _wait("the master's notifier back", lambda: _active(master, "hotsync-watch.service") == "active", timeout=30)
    assert _active(master, "hotsync-sync.timer") == "active"
    _wait("the notifier's full sync after the master's reboot", lambda: _realtime(master).get("full_syncs"),
          timeout=90, hosts=(master, slave))
    assert _arrived(slave, "four", "four\n")()

    # a notifier that dies is restarted, and `hotsync status` says so
    master.run(["systemctl", "kill", "-s", "KILL", "hotsync-watch.service"])
    _wait("the notifier restarted by systemd", lambda: master.run(
        ["systemctl", "show", "-p", "NRestarts", "--value", "hotsync-watch.service"]).stdout.strip() == "1"
        and _active(master, "hotsync-watch.service") == "active", timeout=30)
    status = master.run(["hotsync", "status"], check=False).stdout
    assert "hotsync-watch.service: active (running), enabled, restarted 1 time(s)" in status, status

    # a clean stop pushes the change the notifier had not pushed yet (a 10 s settle holds it back)
    _wait("the restarted notifier idle", _notifier_idle_since(master, 0), timeout=60, hosts=(master,))
    since = _realtime(master)["started"]      # the notifier that runs now; the new settle restarts it
    master.run(["config", "setprop", "hotsync", "RealtimeSettle", "10000"])
    _wait("the notifier restarted with the new settle", _notifier_idle_since(master, since), timeout=60,
          hosts=(master,))
    master.run(f"echo five > {DATA}/five")
    _wait("the notifier holding the change", lambda: _realtime(master).get("queued_paths") == 1, timeout=10,
          hosts=(master,))
    master.run(["systemctl", "stop", "hotsync-watch.service"], timeout=90)
    assert _arrived(slave, "five", "five\n")(), master.run(["journalctl", "-u", "hotsync-watch", "-n", "20",
                                                            "--no-pager"], check=False).stdout
    status = master.run(["hotsync", "status"], check=False).stdout
    assert "last stop push:" in status and "1 path(s), ok" in status, status     # pushed by the stop, not before

    # the master dies (the plug): the slave is promoted
    master.kill()
    cp = slave.run(["hotsync-promote", "--yes", "--force"], check=False, timeout=180)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert slave.run(["config", "getprop", "hotsync", "role"]).stdout.strip() == "master"
    for name, text in (("one", "one\n"), ("five", "five\n")):
        assert _arrived(slave, name, text)(), name
    assert _active(slave, "hotsync-stunnel.service") == "active"       # it tells the old master it was demoted

    # the old master comes back: its notifier's first push is refused, it learns it was fenced
    master.boot().wait_running()
    link(master, slave, MASTER_ADDR, SLAVE_ADDR)
    _wait("the old master fenced", lambda: json.loads(master.run(["hotsync", "status", "--json"]).stdout)["status"]
          == "fenced", timeout=90, hosts=(master, slave))
    # re-paired as the new slave (docs/promote.md, section 7); the first push in the new direction is a person's
    slave.run(["config", "setprop", "hotsync", "SlaveHost", MASTER_ADDR, "MasterHost", ""])
    slave.run(["signal-event", "nethserver-hotsync-save"], timeout=120)
    master.run(["config", "setprop", "hotsync", "role", "slave", "MasterHost", SLAVE_ADDR])
    master.run(["signal-event", "nethserver-hotsync-save"], timeout=120)
    assert _active(master, "hotsync-stunnel.service") == "active"
    for unit in ("hotsync-watch.service", "hotsync-sync.timer"):
        assert _active(master, unit) != "active", unit
        assert _active(slave, unit) == "active", unit
    slave.run(f"echo six > {DATA}/six")
    cp = slave.run(["hotsync", "sync", "--accept-fingerprint", _fingerprint(master)], check=False, timeout=180)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert _arrived(master, "six", "six\n")()
    assert time.monotonic() - t_start < 300, f"took {time.monotonic() - t_start:.0f} s"
