"""MariaDB streaming replication over TLS on real private servers (see tests/replservers.py).

One pair for the module: prepare the master (a restart for the binary log, then live), seed the replica
from a mariadb-backup stream while the bank load runs, refuse a wrong password and wrong certificates,
kill -9 the master under load and promote, re-pair the old master after it took writes past the promote,
then the same kill in semi-synchronous mode, which must lose no acknowledged transaction. Each test
starts from the state it names (``pair.streaming()``, ``pair.promoted()``, ``fresh``), built from
whatever the previous test left: any order, any subset (``-k``), works.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from dbservers import new_root
from hotsync_events.dbkit.replica import ReplicationError, ReplicationEngine, dated_folder
from replservers import (ACCOUNTS, CLIENT_ADDRESS, START_BALANCE, BankLoad, MariaDBNode, bank_total, fresh_pair,
                         ledger, module_pair, rogue_cert, wrong_password_file)

pytestmark = pytest.mark.skipif(shutil.which("mariadb-backup") is None or (shutil.which("mariadbd") is None
                                and not Path("/usr/sbin/mariadbd").exists()),
                                reason="needs mariadb-server and mariadb-backup")

TOTAL = ACCOUNTS * START_BALANCE


def _node(prefix: str, address: str) -> MariaDBNode:
    return MariaDBNode(new_root(prefix), address)


@pytest.fixture(scope="module")
def pair():
    yield from module_pair(_node, "hsrm")


@pytest.fixture
def fresh(pair):
    """A pair whose master never replicated: the module's own if no test used it yet, else a new master."""
    yield from fresh_pair(pair, _node, "hsrm")


def seed_path(node) -> Path:
    return node.root.join("/var/lib/hotsync/dumps/mysql-seed.xbstream")


def marker(node, n: int) -> None:
    node.sql(f"INSERT INTO ledger VALUES ({n}, NOW(6))", "bank")


def has(node, n: int) -> bool:
    return node.sql(f"SELECT COUNT(*) FROM ledger WHERE n = {n}", "bank") == [["1"]]


# ------------------------------------------------------------------------------------------- tests
def test_prepare_master_needs_one_restart_for_the_binlog_then_runs_live(fresh):
    pair = fresh
    m = pair.master
    eng = m.engine()
    assert isinstance(eng, ReplicationEngine)
    first = eng.prepare_master(pair.mlink())
    assert not first.ready and any(r.startswith("log_bin") for r in first.restart_needed)
    dropin = m.root.join("/etc/mysql/mariadb.conf.d/90-hotsync-replication.cnf").read_text()
    assert "log_bin = hotsync-bin" in dropin and "gtid_strict_mode = ON" in dropin and "binlog_format = ROW" in dropin
    m.restart()
    with BankLoad(m, clients=2) as load:            # from now on without stopping the server
        load.wait_acks(50)
        again = eng.prepare_master(pair.mlink())
        n = load.count
        load.wait_acks(n + 50)
    assert again.ready and again.restart_needed == [], again
    assert not load.result.errors
    # the account: replication only, from the replica's address only, the replica's certificate pinned
    rows = m.sql("SELECT Host, ssl_type, x509_subject, x509_issuer FROM mysql.user WHERE User = 'hotsync_repl'")
    assert [r[0] for r in rows] == [CLIENT_ADDRESS]
    assert rows[0][1] == "SPECIFIED" and "CN=hotsync_repl" in rows[0][2] and rows[0][2] == rows[0][3]
    grants = " ".join(r[0] for r in m.sql(f"SHOW GRANTS FOR 'hotsync_repl'@'{CLIENT_ADDRESS}'"))
    assert "REPLICATION SLAVE" in grants and "SELECT" not in grants
    assert m.sql("SELECT @@log_bin, @@binlog_format, @@gtid_strict_mode, @@have_ssl") == [["1", "ROW", "1", "YES"]]


def test_seed_from_mariadb_backup_while_the_load_runs(pair):
    pair.prepared()
    m, r = pair.master, pair.replica
    me, re_ = m.engine(), r.engine()
    with BankLoad(m, clients=2) as load:
        load.wait_acks(300)
        t = time.monotonic()
        seed = me.take_seed(seed_path(m))
        took = time.monotonic() - t
        pos = re_.seed(pair.rlink(), seed)          # (the sync would ship the file; one machine here)
        load.wait_acks(load.count + 300)            # the master never stopped taking writes
        st = re_.status(pair.rlink())
    print(f"take_seed {took:.2f} s, seed at {pos}")
    assert st.state == "streaming" and st.connected and st.last_error is None, st
    assert pair.converged()
    assert bank_total(r) == TOTAL and ledger(r) == ledger(m) and set(load.result.acks) <= ledger(r)
    assert r.sql("SELECT @@read_only")[0][0] == "1"
    ms = me.master_status(pair.mlink())
    assert ms.replica_connected and ms.synchronous == "off"
    assert st.detail["Master_SSL_Allowed"] == "Yes" and st.detail["Master_SSL_Verify_Server_Cert"] == "Yes"


@pytest.mark.parametrize("case", ["wrong password", "master cert not the pinned one", "replica cert not pinned",
                                  "other address"])
def test_wrong_password_or_certificate_is_refused_and_nothing_is_written(pair, case):
    pair.streaming(seed_path(pair.master))
    m, r = pair.master, pair.replica
    me, re_ = m.engine(), r.engine()
    n = {"wrong password": 11, "master cert not the pinned one": 12, "replica cert not pinned": 13,
         "other address": 14}[case]
    if case == "wrong password":
        bad = re_.configure_replica(pair.rlink(password_file=wrong_password_file(r)))
        expect = "refused the replication login"
    elif case == "master cert not the pinned one":
        bad = re_.configure_replica(pair.rlink(peer_cert=rogue_cert(r, m.address)))
        expect = "TLS handshake failed"
    elif case == "replica cert not pinned":
        me.prepare_master(pair.mlink(peer_cert=rogue_cert(m, CLIENT_ADDRESS)))   # cuts the live session
        bad = re_.configure_replica(pair.rlink())
        expect = "does not trust this host's certificate"
    else:
        me.prepare_master(dataclasses.replace(pair.mlink(), replica_host="127.0.0.9"))
        bad = re_.configure_replica(pair.rlink())
        expect = "refused the replication login"
    marker(m, n)
    time.sleep(2.5)                                   # a connect retry or two
    st = re_.status(pair.rlink())
    print(f"{case}: {st.state}: {st.last_error}")
    assert not st.connected and st.last_error and expect in st.last_error, (bad, st)
    assert not has(r, n), "the refused channel wrote on the replica"
    # put the right settings back: it catches up
    me.prepare_master(pair.mlink())
    good = re_.configure_replica(pair.rlink())
    assert good.connected, good
    assert pair.converged() and has(r, n)


def test_a_replica_whose_master_is_still_connected_is_not_promoted_without_force(pair):
    """A live master streaming to its replica: a promote would make two masters. Refused (nothing changed: the
    replica still follows), unless forced; the dry run says what it would split."""
    pair.streaming(seed_path(pair.master))
    r = pair.replica
    with pytest.raises(ReplicationError, match=r"still (connected|streams)"):
        r.engine().promote(timeout=5)
    assert "still connected" in r.engine().promote(dry_run=True).would_lose
    assert r.engine().status(pair.rlink()).state == "streaming" and pair.converged()


def test_a_master_that_went_silent_with_its_connection_up_is_promoted_from(pair):
    """A master whose host lost power leaves the replica's connection up until slave_net_timeout (60 s): the
    replica hears no event and no heartbeat (one a second) for 3 s, so its master is gone, and the promote is
    not refused as if it were alive. (Stopped here with SIGSTOP: its TCP connection stays up.)"""
    import signal

    pair.streaming(seed_path(pair.master))
    m, r = pair.master, pair.replica
    pids = m.pids()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        assert r.engine().status(pair.rlink()).connected          # the replica still thinks so
        promoted = r.engine().promote(timeout=30)
    finally:
        m.kill9()                                                  # SIGKILL ends a stopped process too
    assert r.sql("SELECT @@read_only") == [["0"]]                  # it took over
    pair.takeover = promoted.position
    pair.swap()


def test_kill9_under_load_then_promote(pair):
    pair.streaming(seed_path(pair.master))
    m, r = pair.master, pair.replica
    re_ = r.engine()
    with BankLoad(m, clients=3) as load:
        load.wait_acks(load.count + 1500)
        killed = m.kill9()
    res = load.result
    dry = re_.promote(dry_run=True)
    assert dry.dry_run and "master" in dry.would_lose
    t = time.monotonic()
    promoted = re_.promote(timeout=30)
    took = time.monotonic() - t
    present = ledger(r)
    lost = res.lost(present)
    print(f"async kill -9: {len(res.acks)} acknowledged, {len(lost)} lost, "
          f"RPO {res.rpo(present, killed) * 1000:.1f} ms, promote {took:.2f} s at {promoted.position}")
    assert bank_total(r) == TOTAL                         # the invariant holds on the new master
    unacked = load.mine(present) - set(res.acks)
    assert len(unacked) <= load.clients          # at most the one in flight per client, committed unacknowledged
    assert promoted.position.value == r.sql("SELECT @@gtid_slave_pos")[0][0]
    assert r.sql("SELECT @@read_only")[0][0] == "0" and r.sql("SHOW SLAVE STATUS") == []
    marker(r, 21)                                           # the new master takes writes
    pair.takeover = promoted.position
    pair.swap()


def test_repair_saves_what_the_old_master_wrote_after_the_promote(pair):
    pair.promoted(seed_path(pair.master))
    new, old = pair.master, pair.replica          # swapped at the promote
    takeover = pair.takeover
    old.start()                                   # the old master comes back and takes writes (split brain)
    old.sql("INSERT INTO ledger VALUES (31, NOW(6)), (32, NOW(6)); UPDATE accounts SET bal = bal + 777 "
            "WHERE id = 1; UPDATE accounts SET bal = bal - 777 WHERE id = 2", "bank")
    marker(new, 22)                               # and so does the new master
    ne, oe = new.engine(), old.engine()
    prep = ne.prepare_master(pair.mlink())
    assert prep.ready, prep
    folder = dated_folder(old.root.join("/var/lib/hotsync/diverged"), "mariadb")
    first = oe.repair(pair.rlink(), folder, takeover)
    assert first.diverged and first.state == "needs-seed" and first.transactions >= 3, first
    saved = Path(first.saved_to)
    report = json.loads((saved / "report.json").read_text())
    rows = (saved / "diverged-rows.txt").read_text()
    assert "`bank`.`ledger`" in report["tables"] and "`bank`.`accounts`" in report["tables"]
    assert "@1=31" in rows and "@1=32" in rows and any(f.startswith("binlog/") for f in report["files"])
    assert (saved / "diverged.sql").stat().st_size > 0
    assert old.sql("SELECT @@read_only")[0][0] == "1"      # no more writes meanwhile
    seed = ne.take_seed(seed_path(new))
    t = time.monotonic()
    done = oe.repair(pair.rlink(), folder, takeover, seed=seed)
    print(f"re-pair: {done.transactions} transaction(s) saved in {done.saved_to}, "
          f"seed+follow {time.monotonic() - t:.2f} s")
    assert done.state == "replica" and done.saved_to == first.saved_to      # not saved twice
    marker(new, 33)
    assert pair.converged()
    assert ledger(old) == ledger(new) and bank_total(old) == bank_total(new) == TOTAL
    assert not has(old, 31) and has(old, 22) and has(old, 33)
    pair.takeover = None


def test_semisync_kill9_loses_no_acknowledged_transaction(pair):
    pair.streaming(seed_path(pair.master))
    m, r = pair.master, pair.replica
    me, re_ = m.engine(), r.engine()
    re_.set_synchronous(pair.rlink(synchronous=True), True)
    me.set_synchronous(pair.mlink(synchronous=True), True)
    with BankLoad(m, clients=3) as load:
        load.wait_acks(load.count + 200)
        ms = me.master_status(pair.mlink())
        assert ms.synchronous == "on", ms
        load.wait_acks(load.count + 1000)
        killed = m.kill9()
    res = load.result
    promoted = re_.promote(timeout=30)
    present = ledger(r)
    lost = res.lost(present)
    print(f"semi-sync kill -9: {len(res.acks)} acknowledged, {len(lost)} lost, RPO {res.rpo(present, killed):.3f} s, "
          f"promoted at {promoted.position}")
    pair.swap()          # (no takeover kept: the old master restarts synchronous; the next test re-seeds it)
    assert lost == []
    assert bank_total(r) == TOTAL


def test_repair_without_divergence_follows_at_once(pair):
    """A master stopped after its replica had everything (a planned switch-over) re-pairs without a seed."""
    pair.streaming(seed_path(pair.master))
    # now a clean switch-over: nothing in flight, the master stops, the replica takes over
    m, r = pair.master, pair.replica
    m.kill9()
    promoted = r.engine().promote(timeout=30)
    pair.swap()
    old = pair.replica
    old.start()
    assert pair.master.engine().prepare_master(pair.mlink()).ready
    t = time.monotonic()
    done = old.engine().repair(pair.rlink(), dated_folder(old.root.join("/var/lib/hotsync/diverged"), "mariadb"),
                               promoted.position)
    print(f"re-pair without divergence: {done.method} in {time.monotonic() - t:.2f} s")
    assert not done.diverged and done.method == "follow" and done.saved_to is None and done.state == "replica", done
    marker(pair.master, 41)
    assert pair.converged() and has(pair.replica, 41)
