"""End to end through ``hotsync sync``: MariaDB and PostgreSQL on a paired master and slave.

Real servers (private, under each root), real rsync daemon behind stunnel (tests/sync_pair.py). The
master's dumps travel with ``hotsync sync``; ``hotsync restore-databases`` loads them on the slave.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from dbservers import NEEDS_DATABASE_PAIR, database_pair
from sync_pair import Pair, cli

pytestmark = [pytest.mark.slow, NEEDS_DATABASE_PAIR]


@pytest.fixture(scope="module")
def dbpair():
    with database_pair(Pair, "hsdb-e2e-") as servers:
        yield servers


def restore(root: Path):
    return cli("hotsync", "restore-databases", root=root, timeout=300)


def test_databases_travel_with_the_sync(dbpair):
    pair, m_my, s_my, m_pg, s_pg = dbpair
    m_my.sql("CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, v VARCHAR(20)); "
             "INSERT INTO shop.items VALUES (1, 'a'), (2, 'b'); CREATE DATABASE old_my")
    m_pg.sql("CREATE DATABASE webtop5")
    m_pg.sql("CREATE TABLE notes (id int, body text); INSERT INTO notes VALUES (1, 'x'), (2, 'y'), (3, 'z')",
             db="webtop5")
    m_pg.sql("CREATE DATABASE old_pg")
    cp = pair.sync()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    for dump in ("mysql.sql", "postgresql.tar"):
        shipped = pair.slave / "var/lib/hotsync/dumps" / dump
        assert shipped.is_file(), f"{dump} was not shipped"
        assert shipped.read_bytes() == (pair.master / "var/lib/hotsync/dumps" / dump).read_bytes()
    cp = restore(pair.slave)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert s_my.sql("SELECT v FROM shop.items ORDER BY id") == [["a"], ["b"]]
    assert s_pg.sql("SELECT count(*) FROM notes", db="webtop5") == [["3"]]

    # a database added and one dropped on the master show up as such after the next sync + restore
    m_my.sql("DROP DATABASE old_my; CREATE DATABASE new_my; CREATE TABLE new_my.t (x INT); "
             "INSERT INTO new_my.t VALUES (7)")
    m_pg.sql("DROP DATABASE old_pg")
    m_pg.sql("CREATE DATABASE new_pg")
    cp = pair.sync()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    cp = restore(pair.slave)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    my_dbs = {r[0] for r in s_my.sql("SHOW DATABASES")}
    pg_dbs = {r[0] for r in s_pg.sql("SELECT datname FROM pg_database")}
    assert "new_my" in my_dbs and "old_my" not in my_dbs
    assert "new_pg" in pg_dbs and "old_pg" not in pg_dbs


def test_databases_disabled_takes_no_dumps(dbpair):
    pair, m_my, _s_my, _m_pg, _s_pg = dbpair
    dumps = pair.master / "var/lib/hotsync/dumps"
    before = {p.name: p.read_bytes() for p in dumps.iterdir() if p.is_file()}
    assert set(before) == {"mysql.sql", "postgresql.tar"}
    m_my.sql("CREATE DATABASE while_disabled")
    pair.config(pair.master, "setprop", "hotsync", "databases", "disabled")
    try:
        cp = pair.sync()
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert {p.name: p.read_bytes() for p in dumps.iterdir() if p.is_file()} == before, \
            "a dump was taken although databases is disabled"
    finally:
        pair.config(pair.master, "setprop", "hotsync", "databases", "enabled")
        m_my.sql("DROP DATABASE while_disabled")


def test_databases_disabled_ships_no_dump_paths(dbpair):
    pair, _m_my, _s_my, _m_pg, _s_pg = dbpair
    shipped = pair.slave / "var/lib/hotsync/dumps/mysql.sql"
    shipped.unlink()
    pair.config(pair.master, "setprop", "hotsync", "databases", "disabled")
    try:
        cp = pair.sync()
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert not shipped.exists(), "a dump path was shipped although databases is disabled"
    finally:
        pair.config(pair.master, "setprop", "hotsync", "databases", "enabled")
        assert pair.sync().returncode == 0


def test_failed_dump_fails_the_sync_and_keeps_the_last_good_one(dbpair):
    pair, m_my, _s_my, _m_pg, _s_pg = dbpair
    cp = pair.sync()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    shipped = pair.slave / "var/lib/hotsync/dumps/mysql.sql"
    before = shipped.read_bytes()
    m_my.sql("CREATE DATABASE after_the_last_good_one")
    m_my.stop()                                     # the master's MariaDB is down: the dump cannot be taken
    cp = pair.sync()
    assert cp.returncode != 0
    out = cp.stdout + cp.stderr
    assert "dump mysql" in out and "MariaDB at /run/mysqld/mysqld.sock" in out
    assert (pair.master / "var/lib/hotsync/dumps/mysql.sql").read_bytes() == before
    assert shipped.read_bytes() == before
