"""MariaDB dumps on real private servers: a master root and a slave root, each with its own mariadbd.

The dump is taken through the plugin (as the sync does), the file is copied to the slave root at the
same path (what the sync ships), and restored with ``hotsync restore-databases``.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dbservers import (MariaDBServer, dump_restore_rounds, kill_dump_midway, new_root, plugin_dump, remove_root,
                       restore_databases as restore, server_fixtures, sha256 as sha, ship_dump, take_dump,
                       transfer_load, wrong_password)
from hotsync_events.configdb import open_db
from hotsync_events.manager import get_plugin_manager

pytestmark = pytest.mark.skipif(shutil.which("mariadbd") is None and not Path("/usr/sbin/mariadbd").exists(),
                                reason="mariadb-server is not installed")

DUMP = "/var/lib/hotsync/dumps/mysql.sql"


master, slave = server_fixtures(MariaDBServer, "hsmy", "Master-pw-1", 'Sl"ave #pw\\1')


def mysql_dump(root):
    return plugin_dump(root, "mysql")


def take(srv: MariaDBServer) -> Path:
    return take_dump(srv, "mysql")


def ship(master: MariaDBServer, slave: MariaDBServer) -> None:
    ship_dump(master, slave, DUMP)


def tables(srv, db):
    return sorted(r[0] for r in srv.sql(f"SHOW TABLES FROM `{db}`"))


def databases(srv):
    return {r[0] for r in srv.sql("SHOW DATABASES")}


# ------------------------------------------------------------------------------------------- tests
def test_detection_and_raw_datadir_excluded(master, tmp_path):
    dump, db = mysql_dump(master.root)
    assert dump is not None and dump.path == DUMP
    pm = get_plugin_manager(entrypoints=False)
    excludes = [p for plugin, p in pm.collect("hotsync_sync_paths", db=db) if plugin == "mysql"]
    assert [(p.path, p.exclude) for p in excludes] == [("/var/lib/mysql/", True)]
    # no data directory under a root: no dump from this plugin
    empty = new_root("hsmy-e-")
    try:
        assert mysql_dump(empty)[0] is None
    finally:
        remove_root(empty)
    open_db("configuration", master.root).setprop("mysqld", {"status": "disabled"})
    try:
        assert mysql_dump(master.root)[0] is None
    finally:
        open_db("configuration", master.root).setprop("mysqld", {"status": "enabled"})


def test_dump_ship_restore_roundtrip(master, slave, run):
    master.sql("CREATE DATABASE shop CHARACTER SET utf8mb4")
    master.sql("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(100), blob_col VARBINARY(64))", "shop")
    master.sql("INSERT INTO items VALUES (1, 'plain', NULL), (2, 'a),(b', 0x00FF), (3, 'quote '' and \\\\ "
               "back', ''), (4, 'line\\nbreak', 0x0A0D), (5, 'ünïcödé ✓', NULL)", "shop")
    master.sql("CREATE TABLE empty_one (x INT)", "shop")
    master.sql("CREATE VIEW v_items AS SELECT id, name FROM items", "shop")
    master.sql("CREATE TRIGGER trg BEFORE INSERT ON items FOR EACH ROW SET NEW.name = UPPER(NEW.name)", "shop")
    master.sql("CREATE PROCEDURE p_count() SELECT COUNT(*) FROM items", "shop")
    master.sql("CREATE USER IF NOT EXISTS shopper@localhost IDENTIFIED BY 'Shop-pw-9'")
    master.sql("GRANT SELECT ON shop.* TO shopper@localhost")
    path = take(master)
    text = path.read_bytes()
    assert b"-- Dump completed" in text and text.rstrip().splitlines()[-1].startswith(b"-- hotsync-manifest: ")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert not list(path.parent.glob(".*mysql.sql.*"))
    ship(master, slave)
    cp = restore(run, slave)
    assert cp.returncode == 0, cp.stderr + cp.stdout
    assert "row counts match" in cp.stdout
    assert slave.sql("SELECT id, name, HEX(blob_col) FROM items ORDER BY id", "shop") == \
        master.sql("SELECT id, name, HEX(blob_col) FROM items ORDER BY id", "shop")
    assert tables(slave, "shop") == ["empty_one", "items", "v_items"]
    assert slave.sql("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_NAME='trg'") == [["1"]]
    assert slave.sql("SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_NAME='p_count'") == [["1"]]
    assert slave.sql("SELECT COUNT(*) FROM mysql.user WHERE User='shopper'") == [["1"]]
    assert ["GRANT SELECT ON `shop`.* TO `shopper`@`localhost`"] in slave.sql("SHOW GRANTS FOR shopper@localhost")
    # the slave's own root login (its own password file) still works after the restore
    assert slave.sql("SELECT 1") == [["1"]]


def test_restore_detects_a_row_count_mismatch(master, slave, run):
    """A manifest that disagrees with what got loaded fails the restore, naming the table."""
    take(master)
    ship(master, slave)
    dst = slave.root.join(DUMP)
    data = dst.read_bytes()
    lines = data.rstrip(b"\n").split(b"\n")
    lines[-1] = lines[-1].replace(b'"items":5', b'"items":6')
    dst.write_bytes(b"\n".join(lines) + b"\n")
    cp = restore(run, slave)
    assert cp.returncode == 1
    assert "MariaDB at /run/mysqld/mysqld.sock" in cp.stderr and "shop.items: 5 rows, dump had 6" in cp.stderr


def test_database_added_and_dropped(master, slave, run):
    master.sql("CREATE DATABASE IF NOT EXISTS old_app")
    master.sql("CREATE TABLE IF NOT EXISTS old_app.t (x INT)")
    take(master)
    ship(master, slave)
    assert restore(run, slave).returncode == 0
    assert "old_app" in databases(slave)
    master.sql("DROP DATABASE old_app")
    master.sql("CREATE DATABASE new_app")
    master.sql("CREATE TABLE new_app.t (x INT PRIMARY KEY)")
    master.sql("INSERT INTO new_app.t VALUES (1), (2), (3)")
    take(master)
    ship(master, slave)
    cp = restore(run, slave)
    assert cp.returncode == 0, cp.stderr
    have = databases(slave)
    assert "new_app" in have and "old_app" not in have
    assert slave.sql("SELECT COUNT(*) FROM new_app.t") == [["3"]]
    assert "dropped database old_app" in cp.stdout


def test_bank_sum_holds_in_every_dump_under_load(master, slave, run):
    """Transfers keep the sum constant; DDL now and then; every dump restored on the slave keeps the sum."""
    master.sql("CREATE DATABASE IF NOT EXISTS bank")
    master.sql("CREATE TABLE IF NOT EXISTS accounts (id INT PRIMARY KEY, bal BIGINT NOT NULL) ENGINE=InnoDB", "bank")
    master.sql("INSERT INTO accounts SELECT seq, 1000 FROM seq_1_to_2000", "bank")
    total = int(master.sql("SELECT SUM(bal) FROM accounts", "bank")[0][0])

    def ddl(n: int) -> str:               # DDL now and then: a column added, the previous one dropped
        drop = f"DROP COLUMN c{n - 300}, " if n > 300 else ""
        return f"ALTER TABLE accounts {drop}ADD COLUMN c{n} INT DEFAULT 0; " \
               f"CREATE TABLE side_{n} (x INT); DROP TABLE IF EXISTS side_{n - 300};"

    def sum_holds() -> None:
        assert int(slave.sql("SELECT SUM(bal) FROM accounts", "bank")[0][0]) == total

    with transfer_load(master.client("bank"), "START TRANSACTION", ddl):
        # a dump hit by DDL may fail: it must then keep the last one
        good = dump_restore_rounds(master, slave, run, "mysql", label="MariaDB at", check=sum_holds)
    assert good >= 2
    assert int(master.sql("SELECT SUM(bal) FROM accounts", "bank")[0][0]) == total


def _dump_tool_pids(socket: Path) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith((b"mariadb-dump", b"mysqldump")) and f"--socket={socket}".encode() in cmd:
            out.append(int(entry))
    return out


def test_killed_dump_never_replaces_the_last_good_one(master):
    master.sql("CREATE DATABASE IF NOT EXISTS big")
    master.sql("CREATE TABLE IF NOT EXISTS filler (id INT PRIMARY KEY, pad VARCHAR(255))", "big")
    master.sql("INSERT IGNORE INTO filler SELECT seq, REPEAT(MD5(seq), 7) FROM seq_1_to_150000", "big")
    good = take(master)
    before = sha(good)
    killed = 0

    def writing() -> list[int]:           # the dump tools, once the staged file has data
        pids = _dump_tool_pids(master.socket)
        staged = list(good.parent.glob(".*mysql.sql.*"))
        return pids if pids and staged and staged[0].stat().st_size > 0 else []

    for _attempt in range(5):
        errors, sent = kill_dump_midway(master, _only_mysql(), writing)
        killed += sent
        assert errors and "killed by SIGKILL" in errors[0], errors
        assert sha(good) == before, "a killed dump replaced the last good one"
        assert not list(good.parent.glob(".*mysql.sql.*")), "a broken dump was left beside the good one"
    assert killed == 5
    master.sql("DROP DATABASE big")      # keep the later restores quick


def _only_mysql():
    pm = get_plugin_manager(entrypoints=False, disabled={"postgresql"})
    return pm


def test_wrong_credentials_name_the_server(master, slave, run):
    with wrong_password(slave):
        take(master)
        ship(master, slave)
        cp = restore(run, slave)
        assert cp.returncode == 1
        assert "MariaDB at /run/mysqld/mysqld.sock: access denied for user 'root'" in cp.stderr
        assert "PasswordFile" in cp.stderr
    open_db("configuration", master.root).setprop("mysqld", {"PasswordFile": "/etc/hotsync-test/missing.pw"})
    try:
        with pytest.raises(Exception, match=r"password file /etc/hotsync-test/missing.pw .* does not exist"):
            take(master)
    finally:
        open_db("configuration", master.root).setprop("mysqld", {"PasswordFile": "/etc/hotsync-test/mysql.pw"})


def test_restore_starts_a_stopped_server(master, slave, run):
    """restore-databases starts the slave's server when it is down (process back-end under the root)."""
    take(master)
    ship(master, slave)
    slave.stop()
    cp = restore(run, slave)
    assert cp.returncode == 0, cp.stderr + cp.stdout
    assert "starting the server" in cp.stdout
    assert slave.sql("SELECT COUNT(*) FROM items", "shop") == [["5"]]


def test_restore_databases_list_and_only(slave, run):
    env = {"HOTSYNC_ROOT": str(slave.root.path)}
    cp = run("hotsync", "restore-databases", "--list", env=env)
    assert cp.returncode == 0 and "mysql" in cp.stdout and "shipped" in cp.stdout
    cp = run("hotsync", "restore-databases", "--only", "nope", env=env)
    assert cp.returncode == 2 and "no dump named nope; known: mysql" in cp.stderr
