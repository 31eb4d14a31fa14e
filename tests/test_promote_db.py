"""hotsync-promote with a MariaDB and a PostgreSQL database under write load on the master.

Real servers under each root (tests/dbservers.py), real rsync daemon behind stunnel (tests/sync_pair.py).
The master syncs while writers run; it dies; the promote restores the shipped dumps: every table holds
exactly the rows of the last complete sync (the dumps' manifests), the bank's sum is intact, and the
files equal the last sync.
"""
from __future__ import annotations

import json
import random
import tarfile
import threading
import time
from pathlib import Path

import pytest

from dbservers import NEEDS_DATABASE_PAIR, database_pair
from promote_pair import Pair, cli, kill_root, print_timings, promote, tree

pytestmark = [pytest.mark.slow, NEEDS_DATABASE_PAIR]
ACCOUNTS, START = 200, 1000


@pytest.fixture
def dbpair():
    def no_realtime(pair) -> None:
        pair.config(pair.master, "setprop", "hotsync", "realtime", "disabled")

    with database_pair(Pair, "hspromote-db-", setup=no_realtime) as servers:
        yield servers


def mysql_manifest(dump: Path) -> dict:
    from hotsync_events.dbkit.mariadb import read_manifest

    return read_manifest(dump, "test")["databases"]


def pg_manifest(dump: Path) -> dict:
    with tarfile.open(dump) as tar:
        return json.loads(tar.extractfile("manifest.json").read())["databases"]


def test_promote_restores_the_databases_of_the_last_complete_sync(dbpair):
    pair, m_my, s_my, m_pg, s_pg = dbpair
    M, S = pair.master, pair.slave
    m_my.sql("CREATE DATABASE bank; CREATE TABLE bank.accounts (id INT PRIMARY KEY, bal BIGINT NOT NULL); "
             f"INSERT INTO bank.accounts SELECT seq, {START} FROM bank.seq_1_to_{ACCOUNTS}; "
             "CREATE TABLE bank.journal (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(40))")
    m_pg.sql("CREATE DATABASE webtop5")
    m_pg.sql("CREATE TABLE notes (id serial PRIMARY KEY, body text)", db="webtop5")
    for r in (M, S):
        (r / "etc/hotsync/include.d").mkdir(parents=True, exist_ok=True)
        (r / "etc/hotsync/include.d/test.include").write_text("/srv/data\n")
    (M / "srv/data").mkdir(parents=True)
    (M / "srv/data/a").write_text("a\n")

    stop = threading.Event()
    my, pg = m_my.client("bank"), m_pg.client("webtop5")
    rng = random.Random(7)

    written = [0]          # transactions sent so far: the test waits on this count, not on the clock

    def load():
        n = 0
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            a, b, amt = rng.randint(1, ACCOUNTS), rng.randint(1, ACCOUNTS), rng.randint(1, 50)
            my.stdin.write(f"START TRANSACTION; UPDATE accounts SET bal = bal - {amt} WHERE id = {a}; "
                           f"UPDATE accounts SET bal = bal + {amt} WHERE id = {b}; "
                           f"INSERT INTO journal (note) VALUES ('{a}->{b}'); COMMIT;\n")
            pg.stdin.write(f"INSERT INTO notes (body) VALUES ('note {n}');\n")
            n += 1
            written[0] = n
            time.sleep(0.002)

    writer = threading.Thread(target=load, daemon=True)
    writer.start()
    def wait_written(more: int) -> None:
        goal, deadline = written[0] + more, time.monotonic() + 60
        while written[0] < goal:
            assert time.monotonic() < deadline and writer.is_alive(), "the load stopped writing"
            time.sleep(0.01)

    try:
        wait_written(50)                                 # the load is under way
        cp = pair.sync()                                 # dumps taken under load, shipped with the files
        assert cp.returncode == 0, cp.stdout + cp.stderr
        wait_written(50)                                 # the master goes on writing after its last sync
    finally:
        stop.set()
        writer.join(timeout=10)
        for c in (my, pg):
            c.stdin.close()
            c.wait(timeout=30)
    synced_files = tree(M / "srv/data")
    my_rows = mysql_manifest(S / "var/lib/hotsync/dumps/mysql.sql")
    pg_rows = pg_manifest(S / "var/lib/hotsync/dumps/postgresql.tar")
    journal_at_sync = my_rows["bank"]["journal"]
    notes_at_sync = pg_rows["webtop5"]["public.notes"]
    assert journal_at_sync > 0 and notes_at_sync > 0
    assert int(m_my.sql("SELECT COUNT(*) FROM journal", "bank")[0][0]) > journal_at_sync   # written after
    # the master dies
    kill_root(M)
    m_my.stop()
    m_pg.stop()
    (M / "srv/data/a").write_text("after the last sync\n")

    cp = promote(S, "--yes", "--force", "--json")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    out = json.loads(cp.stdout)
    print_timings("with MariaDB and PostgreSQL", out["journal"]["record"])
    assert out["journal"]["dbs"] == {"mysql": "success", "postgresql": "success"}, out["journal"]["dbs"]
    assert "database mysql (plugin mysql): SUCCESS" in cp.stderr
    # the rows are those of the last complete sync: not one more, not one less
    assert int(s_my.sql("SELECT COUNT(*) FROM journal", "bank")[0][0]) == journal_at_sync
    assert int(s_my.sql("SELECT SUM(bal) FROM accounts", "bank")[0][0]) == ACCOUNTS * START
    assert int(s_pg.sql("SELECT count(*) FROM notes", db="webtop5")[0][0]) == notes_at_sync
    assert tree(S / "srv/data") == synced_files
    assert cli("config", "getprop", "hotsync", "role", root=S).stdout.strip() == "master"
