"""Database replicas set up by the product, end to end: two roots paired with the manual's commands (real
stunnel and rsync daemon, tests/sync_pair.py), a private MariaDB and PostgreSQL under each root, and
``DatabaseMode replica`` set on both hosts. Nothing of the channel is made by hand: ``hotsync sync`` prepares
the master's servers and ships their seed, the slave's post-xfer hook seeds its servers in the background,
and both stream through TLS pinned to the pair's host certificates (docs/replication.md, "Pairing and
seeding").

The master's servers listen on 127.0.0.1 (the slave's ``MasterHost``), the slave's on 127.0.0.3, each on a
port of its own (the master's seed offer tells the replica where its server listens).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from dbservers import NEEDS_DATABASE_PAIR, PG_BIN
from hotsync_events.paths import Root
from sync_pair import Pair, cli

pytestmark = [pytest.mark.slow, NEEDS_DATABASE_PAIR,
              pytest.mark.skipif(shutil.which("mariadb-backup") is None or not (PG_BIN / "pg_basebackup").exists(),
                                 reason="needs mariadb-backup and pg_basebackup")]

SLAVE_DB_ADDRESS = "127.0.0.3"


def _nodes(pair) -> tuple:
    from replservers import MariaDBNode, PostgresNode

    return (MariaDBNode(Root(pair.master), "127.0.0.1"), MariaDBNode(Root(pair.slave), SLAVE_DB_ADDRESS),
            PostgresNode(Root(pair.master), "127.0.0.1"), PostgresNode(Root(pair.slave), SLAVE_DB_ADDRESS))


def _includes(pair) -> None:
    for r in (pair.master, pair.slave):
        (r / "etc/hotsync/include.d").mkdir(parents=True, exist_ok=True)
        (r / "etc/hotsync/include.d/test.include").write_text("/srv/data\n")
    (pair.master / "srv/data").mkdir(parents=True)
    (pair.master / "srv/data/report.txt").write_text("v1\n")


@pytest.fixture(scope="module")
def rpair():
    from dbservers import database_pair, install_schemas
    from hotsync_events.manager import get_plugin_manager

    with database_pair(Pair, "hsrp-", setup=_includes, make=_nodes) as servers:
        pair, m_my, s_my, _, _ = servers
        for r in (pair.master, pair.slave):        # the servers are installed now: their plugins' schemas too
            assert not install_schemas(get_plugin_manager(entrypoints=False), Root(r))
        for root, address, my in ((pair.master, "127.0.0.1", m_my), (pair.slave, SLAVE_DB_ADDRESS, s_my)):
            pair.config(root, "setprop", "mysqld", "DatabaseMode", "replica", "ReplicationAddress", address,
                        "ReplicationPort", str(my.port))
            pair.config(root, "setprop", "postgresql", "DatabaseMode", "replica", "ReplicationAddress", address)
        yield servers


def _setup_records(root: Path) -> dict:
    path = root / "var/lib/hotsync/sync/status.json"
    return ((json.loads(path.read_text()).get("replication_setup") or {}).get("replicas") or {})


def _wait_streaming(pair, seconds: float = 120, *, root: Path | None = None) -> list[dict]:
    root = root or pair.slave
    deadline = time.monotonic() + seconds
    reps: list[dict] = []
    while time.monotonic() < deadline:
        cp = cli("hotsync", "status", "--json", root=root)
        reps = json.loads(cp.stdout).get("replicas") or []
        if len(reps) == 2 and all(r["state"] == "streaming" and r["connected"] for r in reps):
            return reps
        time.sleep(1)
    raise AssertionError(f"the slave's replicas do not stream: {reps}\nsetup: {_setup_records(root)}\n"
                         + _log(root))


def _syncs_until_ready(pair, root: Path, nodes: dict) -> None:
    """``hotsync sync`` on *root* (the master), restarting a server when the status names it (as the admin
    does), until every replica is prepared (bounded: three syncs)."""
    for _ in range(3):
        cp = cli("hotsync", "sync", root=root)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        rec = _setup_records(root)
        restart = [n for n, r in rec.items() if "must be restarted" in (r.get("error") or "")]
        if not restart:
            break
        for n in restart:
            node = nodes[n]
            try:
                node.restart()
            except RuntimeError:
                logs = [root / "var/log/mysqld-test.log", root / "var/log/hotsync/postgresql.log"]
                raise AssertionError("\n".join(p.read_text()[-3000:] for p in logs if p.exists())) from None
    assert not any(r.get("error") for r in _setup_records(root).values()), _setup_records(root)


def _streaming(rpair) -> None:
    pair, m_my, _, m_pg, _ = rpair
    if _setup_records(pair.slave).get("mysql", {}).get("seeded") is None:
        _syncs_until_ready(pair, pair.master, {"mysql": m_my, "postgresql": m_pg})
    _wait_streaming(pair)


def _until(check, seconds: float, what: str):
    from promote_pair import wait_for

    value = wait_for(check, timeout=seconds, step=0.5)
    assert value, what
    return value


def _log(root: Path) -> str:
    p = root / "var/log/hotsync/replicas.log"
    return p.read_text()[-3000:] if p.exists() else "(no replicas.log)"


def test_sync_sets_up_the_replicas_and_the_slave_seeds_itself(rpair):
    pair, m_my, s_my, m_pg, s_pg = rpair
    m_my.sql("CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, v VARCHAR(20)); "
             "INSERT INTO shop.items VALUES (1, 'a')")
    m_pg.sql("CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'x')")
    s_my.sql("CREATE DATABASE only_on_the_slave")

    # 1. the first sync after the pin prepares the masters: both need one restart (binary log, TCP, TLS)
    cp = pair.sync()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    rec = _setup_records(pair.master)
    assert set(rec) == {"mysql", "postgresql"}, rec
    for name in rec:
        assert "must be restarted" in rec[name]["error"] and "hotsync replicas setup" in rec[name]["error"], rec
    cp = cli("hotsync", "status", root=pair.master)
    assert "must be restarted" in cp.stdout, cp.stdout
    assert not (pair.slave / "var/lib/hotsync/dumps/replica/mysql.seed").exists()

    # 2. restarted by the admin: the next sync prepares them and ships the seed; the slave seeds in the background
    m_my.restart()
    m_pg.restart()
    cp = pair.sync()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "offered a seed" in cp.stdout + cp.stderr, cp.stdout + cp.stderr
    assert (pair.slave / "var/lib/hotsync/dumps/replica/mysql.seed").is_file()
    reps = _wait_streaming(pair)
    assert {r["engine"] for r in reps} == {"mariadb", "postgresql"}

    # the slave's servers are copies of the master's now, read-only, and follow it
    assert s_my.sql("SELECT v FROM shop.items") == [["a"]]
    assert "only_on_the_slave" not in {r[0] for r in s_my.sql("SHOW DATABASES")}
    assert s_my.sql("SELECT @@read_only")[0][0] == "1"
    assert s_pg.sql("SELECT pg_is_in_recovery()") == [["t"]]
    m_my.sql("INSERT INTO shop.items VALUES (2, 'b')")
    m_pg.sql("INSERT INTO notes VALUES (2, 'y')")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if s_my.sql("SELECT count(*) FROM shop.items") == [["2"]] and s_pg.sql("SELECT count(*) FROM notes") == [["2"]]:
            break
        time.sleep(0.2)
    assert s_my.sql("SELECT v FROM shop.items ORDER BY id") == [["a"], ["b"]]
    assert s_pg.sql("SELECT body FROM notes ORDER BY id") == [["x"], ["y"]]

    # the master sees them stream; the status says so in words
    cp = cli("hotsync", "status", "--json", root=pair.master)
    mreps = json.loads(cp.stdout)["replicas"]
    assert all(r["side"] == "master" and r["connected"] for r in mreps), mreps
    cp = cli("hotsync", "status", root=pair.slave)
    assert "mariadb replica of the master's: streaming, connected" in cp.stdout, cp.stdout

    # beside the replicas, each sync ships a logical backup of each server (a DROP TABLE reaches the replica)
    assert "shop" in (pair.slave / "var/lib/hotsync/dumps/mysql.sql").read_text()
    assert (pair.slave / "var/lib/hotsync/dumps/postgresql.tar").is_file()

    # 3. the next sync removes the seed that served, on both hosts
    cp = pair.sync()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert not (pair.master / "var/lib/hotsync/dumps/replica/mysql.seed").exists()
    assert not (pair.slave / "var/lib/hotsync/dumps/replica/mysql.seed").exists()
    assert _wait_streaming(pair, 30)


def test_the_channel_is_made_from_the_pair_identities(rpair):
    """The replication certificates are signed by each host's own TLS identity, each host pins the other's
    host certificate, and both derive the same password from the two host keys: nothing was copied by hand."""
    from hotsync_events.sync import tls
    from hotsync_events.sync.replchannel import channel_password

    pair = rpair[0]
    _streaming(rpair)
    for root, other in ((pair.master, pair.slave), (pair.slave, pair.master)):
        for engine in ("mariadb", "postgresql"):
            d = root / "var/lib/hotsync/replication" / f"channel-{engine}"
            own_host, peer_host = tls.cert_paths(Root(root))[0], tls.cert_paths(Root(other))[0]
            assert (d / "peer.crt").read_bytes() == peer_host.read_bytes()
            cp = subprocess.run(["openssl", "verify", "-CAfile", str(own_host), str(d / "host.crt")],
                                capture_output=True, text=True)
            assert cp.returncode == 0, cp.stdout + cp.stderr
            cp = subprocess.run(["openssl", "verify", "-CAfile", str(peer_host), str(d / "host.crt")],
                                capture_output=True, text=True)
            assert cp.returncode != 0                      # not the peer's: only this host signs its own
            assert (d / "host.key").stat().st_mode & 0o077 == 0
            assert (d / "password").stat().st_mode & 0o077 == 0
            own_key, peer_pem = tls.cert_paths(Root(root))[1], peer_host.read_bytes()
            assert (d / "password").read_text().strip() == channel_password(own_key, peer_pem, engine)
            assert (d / "password").read_bytes() == (other / d.relative_to(root) / "password").read_bytes()


def test_a_certificate_with_the_slave_subject_but_not_its_signature_is_refused(rpair):
    """The replica's subject is predictable (it names the slave's fingerprint): a certificate that copies it
    but is not signed by the slave's host key cannot log in as the replication account, even with the
    password and from the slave's address."""
    from hotsync_events.dbkit.replica import make_certificate, subject_of
    from hotsync_events.sync import tls

    pair, m_my = rpair[0], rpair[1]
    _streaming(rpair)
    d = pair.slave / "var/lib/hotsync/replication/channel-mariadb"
    subject = subject_of(d / "host.crt")
    unit = subject.split("OU=", 1)[1].split("/", 1)[0]
    forged_dir = Path(tempfile.mkdtemp(prefix="hsrp-forged-"))
    try:
        crt, key = forged_dir / "f.crt", forged_dir / "f.key"
        make_certificate(crt, key, common_name="hotsync_repl", addresses=["127.0.0.1"], unit=unit)
        assert subject_of(crt) == subject
        password = (d / "password").read_text().strip()
        base = ["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(m_my.port), "-u", "hotsync_repl",
                f"--password={password}", "--ssl-ca", str(tls.cert_paths(Root(pair.master))[0]),
                "-e", "SELECT 1"]
        forged = subprocess.run([*base, "--ssl-cert", str(crt), "--ssl-key", str(key)], capture_output=True,
                                text=True, timeout=30)
        assert forged.returncode != 0, forged.stdout
        genuine = subprocess.run([*base, "--ssl-cert", str(d / "host.crt"), "--ssl-key", str(d / "host.key")],
                                 capture_output=True, text=True, timeout=30)
        assert genuine.returncode == 0, genuine.stderr
    finally:
        shutil.rmtree(forged_dir, ignore_errors=True)


def test_promote_then_repair_saves_what_the_old_master_wrote_and_it_follows_the_new_master(rpair):
    """The runbook with replicas: the master is cut off, the slave promoted (its servers take over where they
    were), the old master's applications write on, then the re-pair: the old master's servers save what they
    committed after the takeover beside the files the first push kept aside, and follow the new master."""
    from promote_pair import kill_root, promote, repair

    pair, m_my, s_my, m_pg, s_pg = rpair
    M, S = pair.master, pair.slave
    _streaming(rpair)
    m_my.sql("CREATE DATABASE IF NOT EXISTS shop; CREATE TABLE IF NOT EXISTS shop.items (id INT PRIMARY KEY, "
             "v VARCHAR(20)); REPLACE INTO shop.items VALUES (1, 'a'), (2, 'b')")
    m_pg.sql("CREATE TABLE IF NOT EXISTS notes (id int PRIMARY KEY, body text); "
             "INSERT INTO notes VALUES (1, 'x'), (2, 'y') ON CONFLICT DO NOTHING")
    m_my.sql("INSERT INTO shop.items VALUES (3, 'c')")
    m_pg.sql("INSERT INTO notes VALUES (3, 'z')")
    _until(lambda: s_my.sql("SELECT count(*) FROM shop.items") == [["3"]]
           and s_pg.sql("SELECT count(*) FROM notes") == [["3"]], 30, "the replicas did not follow")

    kill_root(M)            # the master is cut off: its HotSync is gone, its database servers run on
    cp = promote(S, "--yes", "--force", "--json")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    journal = json.loads(cp.stdout)["journal"]
    assert journal["dbs"] == {"mysql": "kept", "postgresql": "kept"}, journal["dbs"]    # the backups: not loaded
    assert {n: e["status"] for n, e in journal["replicas"].items()} == {"mysql": "success", "postgresql": "success"}, \
        cp.stderr + "\n".join(p.read_text()[-2500:] for p in (S / "var/log").rglob("*.log"))
    assert s_my.sql("SELECT @@read_only")[0][0] == "0" and s_pg.sql("SELECT pg_is_in_recovery()") == [["f"]]
    # the old master's applications write on: transactions the new master never sees
    m_my.sql("INSERT INTO shop.items VALUES (99, 'late')")
    m_pg.sql("INSERT INTO notes VALUES (99, 'late')")
    s_my.sql("INSERT INTO shop.items VALUES (4, 'd')")
    s_pg.sql("INSERT INTO notes VALUES (4, 'w')")

    repair(pair)
    cp = cli("hotsync", "sync", "--accept-fingerprint", pair.fingerprint(M), "--allow-deletions", root=S)
    assert cp.returncode == 0, cp.stdout + cp.stderr                  # the person's first push
    _syncs_until_ready(pair, S, {"mysql": s_my, "postgresql": s_pg})   # the replicas the other way round
    offer = json.loads((S / "var/lib/hotsync/dumps/replica/mysql.json").read_text())
    assert offer["takeover"]["value"] == journal["replicas"]["mysql"]["position"]["value"]

    recs = _until(lambda: (lambda r: r if all(x.get("repaired") for x in r.values()) and len(r) == 2 else None)(
        _setup_records(M)), 180, f"the old master was not re-paired: {_setup_records(M)}\n{_log(M)}")
    _wait_streaming(pair, 60, root=M)
    for name in ("mysql", "postgresql"):
        saved = recs[name]["saved_to"]
        assert saved and saved.startswith("/var/lib/hotsync/kept/"), recs[name]
        assert recs[name]["transactions"] >= 1, recs[name]
        report = json.loads((M / saved.lstrip("/") / "report.json").read_text())
        assert report, saved
    assert "late" in (M / recs["mysql"]["saved_to"].lstrip("/") / "diverged.sql").read_text()
    assert (M / recs["postgresql"]["saved_to"].lstrip("/") / "old-master.tar").is_file()
    cp = cli("hotsync", "status", root=M)
    assert "re-paired: what this server committed after the takeover" in cp.stdout, cp.stdout

    # the old master's servers are copies of the new master's now, and follow it
    assert [r[0] for r in m_my.sql("SELECT v FROM shop.items ORDER BY id")] == ["a", "b", "c", "d"]
    s_my.sql("INSERT INTO shop.items VALUES (5, 'e')")
    s_pg.sql("INSERT INTO notes VALUES (5, 'v')")
    _until(lambda: m_my.sql("SELECT count(*) FROM shop.items") == [["5"]]
           and m_pg.sql("SELECT count(*) FROM notes WHERE id = 5") == [["1"]], 30, "the old master does not follow")
    assert m_pg.sql("SELECT count(*) FROM notes WHERE id = 99") == [["0"]]
