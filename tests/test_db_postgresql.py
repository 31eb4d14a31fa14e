"""PostgreSQL dumps on real private clusters: a master root and a slave root, each with its own server.

The dump is taken through the plugin (as the sync does), the file is copied to the slave root at the
same path (what the sync ships), and restored with ``hotsync restore-databases``.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import tarfile
import threading
import time
from pathlib import Path

import pytest

from dbservers import PG_BIN, PostgresServer, new_root, remove_root
from hotsync_events.configdb import open_db
from hotsync_events.databases import collect_dumps, take_dumps
from hotsync_events.plugins import get_plugin_manager
from hotsync_events.types import DumpContext

pytestmark = pytest.mark.skipif(not (PG_BIN / "initdb").exists(), reason="postgresql is not installed")

DUMP = "/var/lib/hotsync/dumps/postgresql.tar"


@pytest.fixture(scope="module")
def master():
    root = new_root("hspg-m-")
    srv = PostgresServer(root, password="Master:pg\\pw")
    try:
        srv.start().configure()
        yield srv
    finally:
        srv.stop()
        remove_root(root)


@pytest.fixture(scope="module")
def slave():
    root = new_root("hspg-s-")
    srv = PostgresServer(root, password="Slave-pg-pw")
    try:
        srv.start().configure()
        yield srv
    finally:
        srv.stop()
        remove_root(root)


def pm_only_pg():
    return get_plugin_manager(entrypoints=False, disabled={"mysql"})


def pg_dump(root):
    db = open_db("configuration", root)
    return {d.name: d for _, d in collect_dumps(pm_only_pg(), db)}.get("postgresql"), db


def take(srv: PostgresServer) -> Path:
    dump, db = pg_dump(srv.root)
    assert dump is not None, "the postgresql plugin gave no dump for a host with PostgreSQL"
    dump.run(DumpContext(root=srv.root, db=db, target=srv.root.join(dump.path), log=lambda m: None))
    return srv.root.join(dump.path)


def ship(master, slave) -> None:
    dst = slave.root.join(DUMP)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(master.root.join(DUMP), dst)


def restore(run, slave):
    return run("hotsync", "restore-databases", env={"HOTSYNC_ROOT": str(slave.root.path)}, timeout=300)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
    stop = threading.Event()
    client = master.client("bank")
    rng = random.Random(6)

    def load():
        n = 0
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            a, b, amt = rng.randint(1, 2000), rng.randint(1, 2000), rng.randint(1, 50)
            client.stdin.write(f"BEGIN; UPDATE accounts SET bal = bal - {amt} WHERE id = {a}; "
                               f"UPDATE accounts SET bal = bal + {amt} WHERE id = {b}; COMMIT;\n")
            n += 1
            if n % 300 == 0:            # DDL now and then: a column added, the previous one dropped, a role
                drop = f"DROP COLUMN c{n - 300}, " if n > 300 else ""
                client.stdin.write(f"ALTER TABLE accounts {drop}ADD COLUMN c{n} int DEFAULT 0; "
                                   f"CREATE TABLE side_{n} (x int); DROP TABLE IF EXISTS side_{n - 300}; "
                                   f"CREATE ROLE load_role_{n};\n")
            time.sleep(0.0005)

    writer = threading.Thread(target=load, daemon=True)
    writer.start()
    good = 0
    try:
        for _ in range(4):
            try:
                take(master)
            except Exception as exc:          # DDL racing pg_dump's catalog read fails a dump: the last one stays
                assert "PostgreSQL at" in str(exc)
                continue
            good += 1
            ship(master, slave)
            cp = restore(run, slave)
            assert cp.returncode == 0, cp.stderr
            assert int(slave.sql("SELECT sum(bal) FROM accounts", db="bank")[0][0]) == total
            time.sleep(0.2)
    finally:
        stop.set()
        writer.join(timeout=10)
        client.stdin.close()
        client.wait(timeout=30)
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
    for attempt in range(5):
        errors: list[str] = []
        db = open_db("configuration", master.root)
        t = threading.Thread(target=lambda: errors.extend(take_dumps(master.root, db, pm_only_pg())))
        t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = _dump_tool_pids(master.sockdir)
            if pids:
                time.sleep(0.02)
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                killed += 1
                break
            time.sleep(0.002)
        t.join(timeout=60)
        assert errors and "killed by SIGKILL" in errors[0], errors
        assert sha(good) == before, "a killed dump replaced the last good one"
        assert not list(good.parent.glob(".postgresql.tar.tmp-*"))
        assert not list(good.parent.glob(".hotsync-work-*"))
    assert killed == 5
    master.sql("DROP DATABASE big")      # keep the later restores quick


def test_wrong_credentials_name_the_server(master, slave, run):
    pwfile = slave.root.join("/etc/hotsync-test/pg.pw")
    good = pwfile.read_text()
    pwfile.write_text("not-the-password\n")
    try:
        take(master)
        ship(master, slave)
        cp = restore(run, slave)
        assert cp.returncode == 1
        assert "PostgreSQL at /run/postgresql/.s.PGSQL.5432: authentication failed for user 'postgres'" in cp.stderr
    finally:
        pwfile.write_text(good)


def test_restore_starts_a_stopped_server(master, slave, run):
    take(master)
    ship(master, slave)
    slave.stop()
    cp = restore(run, slave)
    assert cp.returncode == 0, cp.stderr + cp.stdout
    assert "starting the server" in cp.stdout
    assert slave.sql("SELECT count(*) FROM t", db="new_app") == [["3"]]
