"""PostgreSQL dumps on real private clusters: a master root and a slave root, each with its own server.

The dump is taken through the plugin (as the sync does), the file is copied to the slave root at the
same path (what the sync ships), and restored with ``hotsync restore-databases``.
"""
from __future__ import annotations

import json
import os
import shutil
import tarfile
import time
from pathlib import Path

import pytest

from dbservers import (PG_BIN, PostgresServer, dump_restore_rounds, kill_dump_midway, new_root, plugin_dump,
                       remove_root, restore_databases as restore, server_fixtures, sha256 as sha, ship_dump,
                       take_dump, transfer_load, wrong_password)
from hotsync_events.manager import get_plugin_manager

pytestmark = pytest.mark.skipif(not (PG_BIN / "initdb").exists(), reason="postgresql is not installed")

DUMP = "/var/lib/hotsync/dumps/postgresql.tar"


master, slave = server_fixtures(PostgresServer, "hspg", "Master:pg\\pw", "Slave-pg-pw")


def pm_only_pg():
    return get_plugin_manager(entrypoints=False, disabled={"mysql"})


def pg_dump(root):
    return plugin_dump(root, "postgresql", pm_only_pg())


def take(srv: PostgresServer) -> Path:
    return take_dump(srv, "postgresql", pm_only_pg())


def ship(master, slave) -> None:
    ship_dump(master, slave, DUMP)


def databases(srv):
    return {r[0] for r in srv.sql("SELECT datname FROM pg_database")}


def test_detection_and_raw_datadir_excluded(master):
    dump, db = pg_dump(master.root)
    assert dump is not None and dump.path == DUMP
    excludes = [p for plugin, p in pm_only_pg().collect("hotsync_sync_paths", db=db) if plugin == "postgresql"]
    assert [(p.path, p.exclude) for p in excludes] == [("/var/lib/postgresql/main/", True)]
    empty = new_root("hspg-e-")
    try:
        assert pg_dump(empty)[0] is None
    finally:
        remove_root(empty)


def test_dump_ship_restore_roundtrip(master, slave, run):
    master.sql("CREATE ROLE app_owner LOGIN PASSWORD 'App-pw-1'")
    master.sql('CREATE DATABASE "Web Top" OWNER app_owner')
    master.sql("CREATE TABLE public.items (id int PRIMARY KEY, name text, data bytea)", db="Web Top")
    master.sql("INSERT INTO items VALUES (1, 'plain', NULL), (2, E'tab\\there\\nnewline', '\\x00ff'), "
               "(3, 'back\\slash \\. dot', ''), (4, 'ünïcödé ✓', NULL)", db="Web Top")
    master.sql('CREATE SCHEMA "Odd Schema"; CREATE TABLE "Odd Schema"."Mixed Case" (x int); '
               'INSERT INTO "Odd Schema"."Mixed Case" SELECT generate_series(1, 7)', db="Web Top")
    master.sql("CREATE TABLE empty_one (x int)", db="Web Top")
    master.sql("ALTER TABLE items OWNER TO app_owner", db="Web Top")
    path = take(master)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(path) as tar:
        man = json.load(tar.extractfile("manifest.json"))
    assert man["databases"]["Web Top"] == {'"Odd Schema"."Mixed Case"': 7, "public.empty_one": 0, "public.items": 4}
    ship(master, slave)
    cp = restore(run, slave)
    assert cp.returncode == 0, cp.stderr + cp.stdout
    assert "row counts match" in cp.stdout
    q = "SELECT id, name, encode(data, 'hex') FROM items ORDER BY id"
    assert slave.sql(q, db="Web Top") == master.sql(q, db="Web Top")
    assert slave.sql('SELECT count(*) FROM "Odd Schema"."Mixed Case"', db="Web Top") == [["7"]]
    assert slave.sql("SELECT tableowner FROM pg_tables WHERE tablename = 'items'", db="Web Top") == [["app_owner"]]
    assert slave.sql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'app_owner'") == [["t"]]
    assert slave.sql("SELECT 1") == [["1"]]          # the slave's own postgres password still works


def test_restore_detects_a_row_count_mismatch(master, slave, run):
    take(master)
    ship(master, slave)
    dst = slave.root.join(DUMP)
    work = dst.parent / "edit"
    work.mkdir()
    with tarfile.open(dst) as tar:
        tar.extractall(work, filter="data")
        names = tar.getnames()
    man = json.loads((work / "manifest.json").read_text())
    man["databases"]["Web Top"]["public.items"] = 5
    (work / "manifest.json").write_text(json.dumps(man))
    with tarfile.open(dst, "w") as tar:
        for n in names:
            tar.add(work / n, arcname=n)
    shutil.rmtree(work)
    cp = restore(run, slave)
    assert cp.returncode == 1
    assert "PostgreSQL at /run/postgresql/.s.PGSQL.5432" in cp.stderr
    assert "Web Top.public.items: 4 rows, dump had 5" in cp.stderr


def test_database_added_and_dropped(master, slave, run):
    master.sql("CREATE DATABASE old_app")
    take(master)
    ship(master, slave)
    assert restore(run, slave).returncode == 0
    assert "old_app" in databases(slave)
    master.sql("DROP DATABASE old_app")
    master.sql("CREATE DATABASE new_app")
    master.sql("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2), (3)", db="new_app")
    take(master)
    ship(master, slave)
    cp = restore(run, slave)
    assert cp.returncode == 0, cp.stderr
    have = databases(slave)
    assert "new_app" in have and "old_app" not in have
    assert slave.sql("SELECT count(*) FROM t", db="new_app") == [["3"]]
    assert "dropped database old_app" in cp.stdout


def test_bank_sum_holds_in_every_dump_under_load(master, slave, run):
    master.sql("CREATE DATABASE bank")
    master.sql("CREATE TABLE accounts (id int PRIMARY KEY, bal bigint NOT NULL); "
               "INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 2000) g", db="bank")
    total = int(master.sql("SELECT sum(bal) FROM accounts", db="bank")[0][0])

    def ddl(n: int) -> str:         # DDL now and then: a column added, the previous one dropped, a role
        drop = f"DROP COLUMN c{n - 300}, " if n > 300 else ""
        return f"ALTER TABLE accounts {drop}ADD COLUMN c{n} int DEFAULT 0; " \
               f"CREATE TABLE side_{n} (x int); DROP TABLE IF EXISTS side_{n - 300}; CREATE ROLE load_role_{n};"

    def sum_holds() -> None:
        assert int(slave.sql("SELECT sum(bal) FROM accounts", db="bank")[0][0]) == total

    with transfer_load(master.client("bank"), "BEGIN", ddl):
        # DDL racing pg_dump's catalog read fails a dump: the last one stays
        good = dump_restore_rounds(master, slave, run, "postgresql", label="PostgreSQL at", check=sum_holds,
                                   pm=pm_only_pg())
    assert good >= 2
    assert slave.sql("SELECT count(*) > 0 FROM pg_roles WHERE rolname LIKE 'load_role_%'") == [["t"]]


def _dump_tool_pids(sockdir: Path) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"/pg_dump") and f"PGHOST={sockdir}".encode() in env \
                and b"dbname='big'" in cmd:
            out.append(int(entry))
    return out


def test_killed_dump_never_replaces_the_last_good_one(master):
    master.sql("CREATE DATABASE big")
    master.sql("CREATE TABLE filler (id int PRIMARY KEY, pad text); "
               "INSERT INTO filler SELECT g, repeat(md5(g::text), 7) FROM generate_series(1, 200000) g", db="big")
    good = take(master)
    before = sha(good)
    killed = 0

    def dumping() -> list[int]:           # pg_dump of big, 20 ms after it started
        pids = _dump_tool_pids(master.sockdir)
        if pids:
            time.sleep(0.02)
        return pids

    for _attempt in range(5):
        errors, sent = kill_dump_midway(master, pm_only_pg(), dumping)
        killed += sent
        assert errors and "killed by SIGKILL" in errors[0], errors
        assert sha(good) == before, "a killed dump replaced the last good one"
        assert not list(good.parent.glob(".*postgresql.tar.*"))
        assert not list(good.parent.glob(".hotsync-work-*"))
    assert killed == 5
    master.sql("DROP DATABASE big")      # keep the later restores quick


def test_wrong_credentials_name_the_server(master, slave, run):
    with wrong_password(slave):
        take(master)
        ship(master, slave)
        cp = restore(run, slave)
        assert cp.returncode == 1
        assert "PostgreSQL at /run/postgresql/.s.PGSQL.5432: authentication failed for user 'postgres'" in cp.stderr


def test_restore_starts_a_stopped_server(master, slave, run):
    take(master)
    ship(master, slave)
    slave.stop()
    cp = restore(run, slave)
    assert cp.returncode == 0, cp.stderr + cp.stdout
    assert "starting the server" in cp.stdout
    assert slave.sql("SELECT count(*) FROM t", db="new_app") == [["3"]]
