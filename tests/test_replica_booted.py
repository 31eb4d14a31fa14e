"""Database replicas on real hosts: two booted hosts (tests/booted.py) with the .deb, paired with the manual's
commands over a veth pair, MariaDB run by its own unit (``mariadb.service``) on each.

What only a real host shows: the master's server restarted by the admin through systemd, the slave's setup
started by the post-xfer hook inside ``hotsync-stunnel.service`` (its sandbox, its interpreter found by
path) into a transient unit of its own (a restart of stunnel, as every save event makes, does not end the
seed) and seeding the server through ``systemctl``, the drop-in in ``/etc/mysql/mariadb.conf.d``, and the
synchronous guard run by the package's unit ``hotsync-replica-guard.service``, which the save event enables
on the master.

Run alone with ``pytest -m booted tests/test_replica_booted.py``.
"""
from __future__ import annotations

import json
import time

import pytest

from test_booted_deb import deb  # noqa: F401  (the module-scoped fixture: the cached .deb)
from test_drill_booted import MASTER_ADDR, SLAVE_ADDR, booted_pair

pytestmark = [pytest.mark.booted, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def hosts(booted_sandbox, deb):  # noqa: F811
    try:
        yield booted_pair(booted_sandbox, deb, files=3)
    finally:
        for h in getattr(booted_pair, "made", []):
            h.destroy()


def _replicas(host) -> list[dict]:
    return json.loads(host.run(["hotsync", "status", "--json"]).stdout).get("replicas") or []


def _diag(*hosts) -> str:
    out = []
    for h in hosts:
        for cmd in (["hotsync", "status"], ["tail", "-n", "30", "/var/log/hotsync/replicas.log"],
                    ["journalctl", "-u", "mariadb", "-u", "hotsync-replica-guard", "-n", "20", "--no-pager"]):
            cp = h.run(cmd, check=False, timeout=30)
            out.append(f"--- {h.name}: {' '.join(cmd)}\n{cp.stdout}{cp.stderr}")
    return "\n".join(out)


def test_replicas_are_set_up_by_the_syncs_on_real_hosts(hosts):
    master, slave = hosts
    for h, address in ((master, MASTER_ADDR), (slave, SLAVE_ADDR)):
        h.run(["config", "setprop", "mysqld", "DatabaseMode", "replica", "ReplicationAddress", address,
               "ReplicationSync", "on"])
        h.run(["signal-event", "nethserver-hotsync-save"], timeout=120)
    assert master.run(["systemctl", "is-active", "hotsync-replica-guard.service"], check=False).stdout.strip() == \
        "active", _diag(master)
    assert slave.run(["systemctl", "is-enabled", "hotsync-replica-guard.service"], check=False).stdout.strip() != \
        "enabled"

    cp = master.run(["hotsync", "sync"], check=False, timeout=300)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "must be restarted" in cp.stdout + cp.stderr, cp.stdout + cp.stderr
    master.run(["systemctl", "restart", "mariadb.service"], timeout=120)      # what the status asks the admin
    before = float(slave.run(["date", "+%s.%N"]).stdout)
    cp = master.run(["hotsync", "sync"], check=False, timeout=600)
    assert cp.returncode == 0 and "offered a seed" in cp.stdout + cp.stderr, cp.stdout + cp.stderr

    # the slave's setup (the seed) runs in a unit of its own, not in hotsync-stunnel.service's cgroup, where the
    # post-xfer hook starts it: a save event, which restarts that service, no longer ends a seed in progress
    started: dict = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and float(started.get("time") or 0) <= before:
        st = json.loads(slave.run(["cat", "/var/lib/hotsync/sync/status.json"]).stdout)
        started = (st.get("replication_setup") or {}).get("started") or {}
        time.sleep(0.5)
    assert str(started.get("unit", "")).startswith("hotsync-replicas-setup-"), f"{started}\n{_diag(slave)}"
    journal = slave.run(["journalctl", "--no-pager", "-u", started["unit"]], check=False).stdout
    assert "HotSync database replicas setup" in journal, journal + _diag(slave)     # systemd ran it
    slave.run(["systemctl", "restart", "hotsync-stunnel.service"], timeout=120)
    deadline = time.monotonic() + 240
    reps: list[dict] = []
    while time.monotonic() < deadline:
        reps = _replicas(slave)
        if reps and reps[0]["state"] == "streaming" and reps[0]["connected"]:
            break
        time.sleep(2)
    assert reps and reps[0]["state"] == "streaming", f"{reps}\n{_diag(slave, master)}"
    # the slave's server is the image's mariadb.service, now a read-only copy of the master's that follows it
    assert slave.run(["systemctl", "is-active", "mariadb.service"]).stdout.strip() == "active"
    assert slave.run(["mariadb", "-N", "-e", "SELECT @@read_only"]).stdout.strip() == "1"
    assert slave.path("/etc/mysql/mariadb.conf.d/90-hotsync-replication.cnf").is_file()
    master.run(["mariadb", "-e", "INSERT INTO shop.items VALUES (3, 'nib')"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if slave.run(["mariadb", "-N", "-e", "SELECT count(*) FROM shop.items"]).stdout.strip() == "3":
            break
        time.sleep(0.5)
    assert slave.run(["mariadb", "-N", "-e", "SELECT name FROM shop.items WHERE id = 3"]).stdout.strip() == "nib"
    # synchronous: the master's semi-sync is on and acknowledged by the replica
    deadline = time.monotonic() + 60
    sync = ""
    while time.monotonic() < deadline:
        sync = master.run(["mariadb", "-N", "-e", "SHOW STATUS LIKE 'Rpl_semi_sync_master_status'"]).stdout
        if "ON" in sync:
            break
        time.sleep(1)
    assert "ON" in sync, sync + _diag(master, slave)
    [mrep] = _replicas(master)
    assert mrep["side"] == "master" and mrep["connected"], mrep
