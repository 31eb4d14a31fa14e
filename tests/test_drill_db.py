"""``hotsync drill`` on a slave whose master has MariaDB, PostgreSQL and Nextcloud's tree (real servers
under each root, tests/dbservers.py; real rsync daemon behind stunnel).

The drill restores the shipped dumps into servers of its own, started on the overlay in its namespaces
(the slave's own servers, listening on unix sockets under its root, are out of its reach: the drilled host
gets a fresh /run and /tmp), checks them, and leaves the slave's servers, its copy and its state as they were.
"""
from __future__ import annotations

import json
import os

import pytest

from dbservers import NEEDS_DATABASE_PAIR, database_pair
from sync_pair import Pair, cli, tree

pytestmark = [pytest.mark.slow, pytest.mark.root, NEEDS_DATABASE_PAIR,
              pytest.mark.skipif(os.geteuid() != 0, reason="the drill mounts an overlay in namespaces: root only")]

CONFIG_PHP = """<?php
$CONFIG = array (
  'instanceid' => 'oc1234',
  'datadirectory' => '/var/lib/nethserver/nextcloud',
  'maintenance' => false,
);
"""


@pytest.fixture
def dbpair():
    def no_realtime(pair) -> None:
        pair.config(pair.master, "setprop", "hotsync", "realtime", "disabled")

    with database_pair(Pair, "hsdrill-db-", setup=no_realtime) as servers:
        yield servers


def test_the_drill_restores_and_checks_the_databases_without_touching_the_slave(dbpair):
    pair, m_my, s_my, m_pg, _s_pg = dbpair
    M, S = pair.master, pair.slave
    m_my.sql("CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(20)); "
             "INSERT INTO shop.items VALUES (1, 'pen'), (2, 'ink')")
    m_pg.sql("CREATE DATABASE webtop5")
    m_pg.sql("CREATE TABLE notes (id serial PRIMARY KEY, body text); INSERT INTO notes (body) VALUES ('a')",
             db="webtop5")
    (M / "usr/share/nextcloud/config").mkdir(parents=True)
    (M / "usr/share/nextcloud/config/config.php").write_text(CONFIG_PHP)
    (M / "var/lib/nethserver/nextcloud/alice").mkdir(parents=True)
    (M / "var/lib/nethserver/nextcloud/alice/notes.txt").write_text("hello\n")
    cp = pair.sync()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    pair.settled()
    for name, line in (("passwd", "apache:x:48:48:Apache:/usr/share/httpd:/sbin/nologin\n"),
                       ("group", "apache:x:48:\n")):   # the slave has Nextcloud's web server user
        path = S / "etc" / name
        with open(path, "a") as fh:
            fh.write(line)
    assert (S / "usr/share/nextcloud/config/config.php").read_text() == CONFIG_PHP
    before = {d: tree(S / d) for d in ("var/lib/hotsync/db", "var/lib/hotsync/dumps", "usr/share/nextcloud",
                                        "var/lib/nethserver/nextcloud")}
    slave_dbs = s_my.sql("SHOW DATABASES")

    cp = cli("hotsync", "drill", "--json", "--no-mail", root=S, timeout=600)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    rec = json.loads(cp.stdout)
    checks = {c["name"]: c["status"] for c in rec["checks"]}
    assert checks == {"core-config-db": "passed", "core-dumps-restored": "passed", "core-services-up": "passed",
                      "mysql-query": "passed", "postgresql-query": "passed", "nextcloud-config": "passed"}, rec
    assert rec["databases"] == {"mysql": "success", "postgresql": "success"}
    assert rec["promote_steps"]["nextcloud-maintenance-off"]["status"] == "success"
    print(f"drill with MariaDB, PostgreSQL, Nextcloud: wall {rec['wall_time']:.2f}s, promote {rec['promote_time']:.2f}s "
          f"({', '.join(f'{k} {v:.2f}' for k, v in rec['promote_timings'].items())})")
    # the slave's own servers answer as before and never saw the restore
    assert s_my.sql("SHOW DATABASES") == slave_dbs and ["shop"] not in slave_dbs
    assert {d: tree(S / d) for d in before} == before
    st = pair.status(S)
    assert st["role"] == "slave" and st["drill"]["result"] == "passed"
