"""PostgreSQL streaming replication over TLS on real private clusters (see tests/replservers.py).

One pair for the module (1 MB WAL segments, so a slot can be outrun in seconds): prepare the master (one
restart for wal_log_hints, then live), seed the replica with pg_basebackup while the bank load runs, outrun a dead replica's slot (the master's pg_wal stays bounded, the status
says re-seed, the re-seed works), refuse a wrong password, certificates and address, kill -9 the master
under load and promote, re-pair the old master with pg_rewind after it took writes past the promote,
then the same kill in synchronous mode, which must lose no acknowledged transaction. Each test starts
from the state it names (``pair.streaming()``, ``pair.promoted()``, ``fresh``), built from whatever the
previous test left: any order, any subset (``-k``), works.
"""
from __future__ import annotations

import dataclasses
import os
import json
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from dbservers import PG_BIN, new_root
from hotsync_events.dbkit.kit import DatabaseError
from hotsync_events.dbkit.replica import ReplicationError, ReplicationEngine, dated_folder
from replservers import (ACCOUNTS, CLIENT_ADDRESS, START_BALANCE, BankLoad, PostgresNode, bank_total, fresh_pair,
                         ledger, module_pair, pg_wal_bytes, rogue_cert, wrong_password_file)

pytestmark = pytest.mark.skipif(not (PG_BIN / "pg_rewind").exists(), reason="needs postgresql")

TOTAL = ACCOUNTS * START_BALANCE
KEEP_MB = 8                                 # max_slot_wal_keep_size of these tests
MAX_WAL = "16MB"


def node(prefix: str, address: str) -> PostgresNode:
    return PostgresNode(new_root(prefix), address, wal_segsize=1,
                        settings={"listen_addresses": f"'{address}'", "max_wal_size": f"'{MAX_WAL}'",
                                  "min_wal_size": "'4MB'"})


@pytest.fixture(scope="module")
def pair():
    yield from module_pair(node, "hsrp", slot_keep_mb=KEEP_MB)


@pytest.fixture
def fresh(pair):
    """A pair whose master never replicated: the module's own if no test used it yet, else a new master."""
    yield from fresh_pair(pair, node, "hsrp", slot_keep_mb=KEEP_MB)


def eng(n: PostgresNode):
    return n.engine(slot_keep_mb=KEEP_MB)


def marker(n: PostgresNode, k: int) -> None:
    n.sql(f"INSERT INTO ledger VALUES ({k}, now())")


def has(n: PostgresNode, k: int) -> bool:
    return n.sql(f"SELECT count(*) FROM ledger WHERE n = {k}") == [["1"]]


# ------------------------------------------------------------------------------------------- tests
def test_prepare_master_needs_one_restart_for_wal_log_hints_then_runs_live(fresh):
    pair = fresh
    m = pair.master
    e = eng(m)
    assert isinstance(e, ReplicationEngine)
    first = e.prepare_master(pair.mlink())
    assert not first.ready and first.restart_needed == ["wal_log_hints"], first
    m.restart()
    with BankLoad(m, clients=2) as load:
        load.wait_acks(50)
        again = e.prepare_master(pair.mlink())
        n = load.count
        load.wait_acks(n + 50)
    assert again.ready and not again.restart_needed, again
    assert not load.result.errors
    include = Path(again.config_file)
    assert not str(include).startswith(str(m.datadir)) and "max_slot_wal_keep_size = '8MB'" in include.read_text()
    rules = m.sql("SELECT type, database, user_name, address, options FROM pg_hba_file_rules "
                  "ORDER BY line_number LIMIT 4")
    assert rules[0] == ["hostssl", "{replication}", "{hotsync_repl}", CLIENT_ADDRESS, "{clientcert=verify-full}"]
    assert rules[2][0] == "local" and rules[3][0] == "host" and rules[3][3] == "all"     # the role from nowhere else
    assert m.sql("SELECT rolreplication, rolsuper, rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid "
                 "WHERE rolname = 'hotsync_repl'") == [["t", "f", "t"]]
    assert m.sql("SELECT slot_type, wal_status FROM pg_replication_slots WHERE slot_name = 'hotsync'") == \
        [["physical", "reserved"]]
    assert m.sql("SELECT current_setting('ssl'), current_setting('wal_log_hints')") == [["on", "on"]]


def test_seed_with_pg_basebackup_while_the_load_runs(pair):
    pair.prepared()
    m, r = pair.master, pair.replica
    with BankLoad(m, clients=2) as load:
        load.wait_acks(300)
        t = time.monotonic()
        pos = eng(r).seed(pair.rlink())
        took = time.monotonic() - t
        load.wait_acks(load.count + 300)
        st = eng(r).status(pair.rlink())
    print(f"seed (pg_basebackup) {took:.2f} s at {pos}")
    assert st.state == "streaming" and st.connected and st.last_error is None, st
    assert pair.converged()
    assert bank_total(r) == TOTAL and ledger(r) == ledger(m) and set(load.result.acks) <= ledger(r)
    assert r.sql("SELECT pg_is_in_recovery(), current_setting('port'), current_setting('listen_addresses')") == \
        [["t", str(r.port), r.address]]                  # its own postgresql.conf, not the master's copy
    ms = eng(m).master_status(pair.mlink())
    assert ms.replica_connected and ms.slot["active"] and ms.synchronous == "off", ms
    assert m.sql("SELECT ssl, client_dn FROM pg_stat_ssl JOIN pg_stat_replication USING (pid)")[0][0] == "t"


def test_dead_replica_cannot_fill_the_master_disk_and_is_reseeded(pair):
    pair.streaming()
    m, r = pair.master, pair.replica
    er, em = eng(r), eng(m)
    er._control().stop()
    generated, biggest = 0, 0
    start = m.sql("SELECT pg_current_wal_lsn()")[0][0]
    m.sql("CREATE TABLE junk (x text)")
    for _ in range(100):                      # 60 MB of WAL: 7.5 times what the slot may hold back
        m.sql("INSERT INTO junk SELECT repeat('x', 500) FROM generate_series(1, 4000); TRUNCATE junk; CHECKPOINT")
        biggest = max(biggest, pg_wal_bytes(m))
        generated = int(float(m.sql(f"SELECT pg_current_wal_lsn() - '{start}'::pg_lsn")[0][0]))
        if generated > 60_000_000:
            break
    ms = em.master_status(pair.mlink())
    print(f"dead replica: {generated / 1e6:.1f} MB of WAL written, the master's pg_wal peaked at "
          f"{biggest / 1e6:.1f} MB; slot {ms.slot}")
    assert ms.needs_seed and ms.slot["wal_status"] == "lost"
    assert biggest < (16 + KEEP_MB + 8) * 1_000_000 and generated > 2 * biggest
    marker(m, 5)
    er._control().start()
    st = er.status(pair.rlink())
    print(f"replica after the slot was lost: {st.state}: {st.last_error}")
    assert st.needs_seed and st.state == "needs-seed" and "re-seed" in st.last_error
    er.seed(pair.rlink())
    assert er.status(pair.rlink()).connected and pair.converged() and has(r, 5)
    assert em.master_status(pair.mlink()).slot["wal_status"] == "reserved"


@pytest.mark.parametrize("case", ["wrong password", "master cert not the pinned one", "replica cert not pinned",
                                  "other address"])
def test_wrong_password_or_certificate_is_refused_and_nothing_is_written(pair, case):
    pair.streaming()
    m, r = pair.master, pair.replica
    em, er = eng(m), eng(r)
    k = {"wrong password": 11, "master cert not the pinned one": 12, "replica cert not pinned": 13,
         "other address": 14}[case]
    if case == "wrong password":
        er.configure_replica(pair.rlink(password_file=wrong_password_file(r)))
        expect = "refused the replication login"
    elif case == "master cert not the pinned one":
        er.configure_replica(pair.rlink(peer_cert=rogue_cert(r, m.address)))
        expect = "not the pinned one"
    elif case == "replica cert not pinned":
        em.prepare_master(pair.mlink(peer_cert=rogue_cert(m, CLIENT_ADDRESS)))     # cuts the live session
        expect = "does not trust this host's certificate"
    else:
        em.prepare_master(dataclasses.replace(pair.mlink(), replica_host="127.0.0.9"))
        expect = "does not allow this host's address"
    marker(m, k)
    time.sleep(1.5)
    st = er.status(pair.rlink())
    print(f"{case}: {st.state}: {st.last_error}")
    assert not st.connected and st.last_error and expect in st.last_error, st
    assert not has(r, k), "the refused channel wrote on the replica"
    em.prepare_master(pair.mlink())
    good = er.configure_replica(pair.rlink())
    assert good.connected, good
    assert pair.converged() and has(r, k)


def test_a_replica_whose_master_is_still_connected_is_not_promoted_without_force(pair):
    """A live master streaming to its replica: a promote would make two masters. Refused (nothing changed: the
    replica still follows), unless forced; the dry run says what it would split."""
    pair.streaming()
    r = pair.replica
    with pytest.raises(ReplicationError, match=r"still (connected|streams)"):
        eng(r).promote(timeout=5)
    assert "still connected" in eng(r).promote(dry_run=True).would_lose
    assert eng(r).status(pair.rlink()).state == "streaming" and pair.converged()


def test_a_reseed_that_fails_after_a_failed_rewind_leaves_the_cluster_stopped(pair):
    """A re-pair whose pg_rewind failed part-way re-seeds; when that fails too, the half-rewound cluster must
    never run (it would be a writable primary on a torn data directory): the seed leaves it stopped.
    Elsewhere a failed seed starts the previous cluster again."""
    from hotsync_events.dbkit import replica_pgsql_failover as failover

    pair.streaming()
    r = pair.replica
    nowhere = dataclasses.replace(pair.rlink(), port=1)           # nothing listens: the seed fails
    with pytest.raises(ReplicationError):
        failover.seed(eng(r), nowhere, log=lambda s: None, restart_previous=False)
    assert not eng(r)._is_running()
    with pytest.raises(ReplicationError):
        failover.seed(eng(r), nowhere, log=lambda s: None)
    assert eng(r)._is_running()
    # the re-pair then makes it unstartable by anyone (a boot, a person): mode 000 and a note beside it; a
    # re-seed replaces it
    e = eng(r)
    e._control().stop(log=lambda s: None)
    datadir = e._datadir()
    failover._never_start(datadir, "half rewound (test)")
    with pytest.raises((ReplicationError, DatabaseError, OSError)):
        dataclasses.replace(e, start_timeout=5.0)._control().start(log=lambda s: None)
    assert not e._is_running() and failover._half_rewound_note(datadir).is_file()
    with pytest.raises(ReplicationError):                          # a re-seed that fails: still unstartable
        failover.seed(e, nowhere, log=lambda s: None)
    assert not e._is_running() and stat.S_IMODE(datadir.stat().st_mode) == 0
    failover.seed(e, pair.rlink(), log=lambda s: None)
    assert e.status(pair.rlink()).state == "streaming" and not failover._half_rewound_note(datadir).exists()


def test_kill9_under_load_then_promote(pair):
    pair.streaming()
    m, r = pair.master, pair.replica
    timeline = int(m.sql("SELECT timeline_id FROM pg_control_checkpoint()")[0][0])
    er = eng(r)
    with BankLoad(m, clients=3) as load:
        load.wait_acks(load.count + 1500)
        killed = m.kill9()
    res = load.result
    dry = er.promote(dry_run=True)
    assert dry.dry_run and dry.position.value
    t = time.monotonic()
    promoted = er.promote(timeout=30)
    took = time.monotonic() - t
    present = ledger(r)
    lost = res.lost(present)
    print(f"async kill -9: {len(res.acks)} acknowledged, {len(lost)} lost, "
          f"RPO {res.rpo(present, killed) * 1000:.1f} ms, promote {took:.2f} s at {promoted.position}")
    assert bank_total(r) == TOTAL
    assert len(load.mine(present) - set(res.acks)) <= load.clients
    assert promoted.position.timeline > timeline and r.sql("SELECT pg_is_in_recovery()") == [["f"]]
    marker(r, 21)
    pair.takeover = promoted.position
    pair.swap()


def test_repair_with_pg_rewind_saves_what_the_old_master_wrote_after_the_promote(pair):
    pair.promoted()
    new, old = pair.master, pair.replica
    old.start()                                     # back, and taking writes (split brain)
    old.sql("INSERT INTO ledger VALUES (31, now()), (32, now()); UPDATE accounts SET bal = bal + 777 WHERE id = 1; "
            "UPDATE accounts SET bal = bal - 777 WHERE id = 2")
    marker(new, 22)                                 # and so does the new master
    prep = eng(new).prepare_master(pair.mlink())
    assert prep.ready, prep
    # pre-allocated, still zeroed WAL segments (as PostgreSQL makes them) must not confuse pg_waldump,
    # whichever file the directory lists first
    wal = old.datadir / "pg_wal"
    last = max(p.name for p in wal.iterdir() if len(p.name) == 24)
    for k in range(3, 11):
        spare = wal / f"{last[:16]}{int(last[16:], 16) + k:08X}"
        spare.write_bytes(b"\0" * (1 << 20))
        old._chown(spare)
    folder = dated_folder(old.root.join("/var/lib/hotsync/diverged"), "postgresql")
    t = time.monotonic()
    done = eng(old).repair(pair.rlink(), folder, pair.takeover)
    took = time.monotonic() - t
    print(f"re-pair ({done.method}) in {took:.2f} s: {done.transactions} transaction(s) saved in {done.saved_to}")
    assert done.diverged and done.transactions >= 1 and done.method == "rewind" and done.state == "replica", done
    saved = Path(done.saved_to)
    report = json.loads((saved / "report.json").read_text())
    assert report["switch_point"] and "postgres.ledger" in report["tables"] and "postgres.accounts" in report["tables"]
    with tarfile.open(saved / "old-master.tar") as tar:       # the old master whole, the split-brain rows in it
        man = json.loads(tar.extractfile("manifest.json").read())
        member = tar.extractfile(man["members"]["postgres"]).read()
    rows = subprocess.run([str(PG_BIN / "pg_restore"), "--data-only", "-t", "ledger", "-f", "-"], input=member,
                          capture_output=True, check=True).stdout.decode()
    assert "\n31\t" in rows and "\n32\t" in rows
    assert any(f.startswith("wal/") for f in report["files"])
    marker(new, 33)
    assert pair.converged()
    assert ledger(old) == ledger(new) and bank_total(old) == bank_total(new) == TOTAL
    assert not has(old, 31) and has(old, 22) and has(old, 33)
    pair.takeover = None


def test_synchronous_kill9_loses_no_acknowledged_transaction(pair):
    pair.streaming()
    m, r = pair.master, pair.replica
    eng(r).set_synchronous(pair.rlink(synchronous=True), True)
    eng(m).set_synchronous(pair.mlink(synchronous=True), True)
    with BankLoad(m, clients=3) as load:
        load.wait_acks(load.count + 200)
        ms = eng(m).master_status(pair.mlink())
        assert ms.synchronous == "on", ms
        load.wait_acks(load.count + 1000)
        killed = m.kill9()
    res = load.result
    promoted = eng(r).promote(timeout=30)
    pair.swap()          # (no takeover kept: the old master restarts synchronous; the next test re-seeds it)
    present = ledger(r)
    lost = res.lost(present)
    print(f"synchronous kill -9: {len(res.acks)} acknowledged, {len(lost)} lost, RPO {res.rpo(present, killed):.3f} s, "
          f"promoted at {promoted.position}")
    assert lost == []
    assert bank_total(r) == TOTAL
    assert r.sql("SELECT current_setting('synchronous_standby_names')") in ([[""]], [])    # nothing to wait for now


def test_repair_without_divergence_saves_nothing(pair):
    """A master stopped after its replica had everything (a planned switch-over) re-pairs with nothing saved."""
    pair.streaming()
    m, r = pair.master, pair.replica
    m.stop()                                       # a clean shutdown: everything reached the replica
    promoted = eng(r).promote(timeout=30)
    pair.swap()
    assert eng(pair.master).prepare_master(pair.mlink()).ready
    t = time.monotonic()
    again = eng(m).repair(pair.rlink(), dated_folder(m.root.join("/var/lib/hotsync/diverged"), "postgresql"),
                          promoted.position)
    print(f"re-pair without divergence: {again.method} in {time.monotonic() - t:.2f} s")
    assert not again.diverged and again.saved_to is None and again.transactions == 0 and again.state == "replica", again
    marker(pair.master, 41)
    assert pair.converged() and has(pair.replica, 41)


def _guarded(pair, *, stable: float):
    """The pair streaming, synchronous, and a guard (1 s grace) over it: ``(link, pm, guard, mails)``."""
    from hotsync_events import hookimpl
    from hotsync_events.manager import get_plugin_manager
    from hotsync_events.sync.replguard import Guard
    from hotsync_events.types import Replica

    pair.streaming()
    m = pair.master
    link = pair.mlink(synchronous=True)
    eng(m).set_synchronous(link, True)

    class Plugin:
        @hookimpl
        def hotsync_replicas(self, db, root):
            yield Replica(name="postgresql", engine=eng(m), link=link)

    pm = get_plugin_manager(entrypoints=False)
    pm.register(Plugin(), name="pgtest")
    mails: list[str] = []
    guard = Guard(m.root, grace=1.0, stable=stable, log=lambda x: None, mail=lambda s, b: mails.append(s))
    return link, pm, guard, mails


def test_the_guard_keeps_a_synchronous_replica_that_is_away_from_holding_the_masters_commits(pair):
    """PostgreSQL has no fall-back: with its synchronous replica down, every commit on the master waits. The
    guard (hotsync_events/sync/replguard.py, the service hotsync-replica-guard) switches the master to
    asynchronous after its grace, mails once, and switches back once the replica streams again."""
    import threading

    m, r = pair.master, pair.replica
    link, pm, guard, mails = _guarded(pair, stable=1.0)
    try:
        assert guard.look(None, pm)["postgresql"]["state"] == "on"
        r.stop()                                        # the replica goes away
        done = threading.Event()
        started = time.monotonic()
        threading.Thread(target=lambda: (marker(m, 9001), done.set()), daemon=True).start()
        assert not done.wait(1.5), "a synchronous commit did not wait for the replica"   # it holds the commit
        while not done.is_set() and time.monotonic() - started < 30:
            guard.look(None, pm)
            time.sleep(0.2)
        assert done.is_set(), "the guard did not release the master's commits"
        assert time.monotonic() - started < 10
        assert eng(m).master_status(link).synchronous == "off"
        assert len(mails) == 1 and "ASYNCHRONOUS" in mails[0]
        r.start()                                       # back: synchronous again once it streams
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and eng(m).master_status(link).synchronous != "on":
            guard.look(None, pm)
            time.sleep(0.3)
        assert eng(m).master_status(link).synchronous == "on"
        assert len(mails) == 2 and "synchronous again" in mails[1]
        assert pair.converged() and has(r, 9001)
    finally:
        if not r._ping():
            r.start()
        eng(m).set_synchronous(pair.mlink(), False)


def test_a_replicas_silence_is_counted_on_the_masters_clock_not_by_its_reply_time():
    """``pg_stat_replication.reply_time`` is stamped by the replica's clock, which may be far from the
    master's: a replica an hour behind that answers is not silent, and one an hour ahead that stopped
    answering is; a new WAL sender (a new session) starts unknown."""
    from hotsync_events.dbkit.replica_pgsql_tools import silent_for

    now = [1000.0]
    key = ("test-pg", "test-slot")

    def look(sender: str, reply: str | None) -> float | None:
        return silent_for(key, sender, reply, clock=lambda: now[0])

    assert look("101", "2026-12-05 16:00:00.1+00") is None          # the first look: unknown, not silent
    now[0] += 2
    assert look("101", "2026-12-05 16:00:02.1+00") == 0.0           # an hour behind, answering: 0
    now[0] += 30
    assert look("101", "2026-12-05 16:00:02.1+00") == 30.0          # no answer since: 30 s on our clock
    assert look("102", "2026-12-05 18:00:00.0+00") is None          # a new session, an hour ahead
    now[0] += 26
    assert look("102", "2026-12-05 18:00:00.0+00") == 26.0          # silent, however far ahead its clock is
    assert look("102", None) is None


def test_the_guard_releases_the_commits_a_hung_replica_holds_with_its_connection_up(pair):
    """A replica that hangs (stopped, its TCP session up) stays "streaming" and "sync" in pg_stat_replication
    until wal_sender_timeout (60 s by default) ends its session, and every commit waits that long. The
    master status counts the commits waiting for it: held over 2 s is "waiting", and the guard switches the
    master to asynchronous after its grace, long before wal_sender_timeout."""
    import signal
    import threading

    m, r = pair.master, pair.replica
    link, pm, guard, mails = _guarded(pair, stable=30.0)
    # the postmaster and its children (each of which is a session of its own: PostgreSQL calls setsid())
    post = r.postmaster_pid()
    pids = [post, *(int(x) for x in subprocess.run(["pgrep", "-P", str(post)], capture_output=True,
                                                      text=True).stdout.split())]
    try:
        assert guard.look(None, pm)["postgresql"]["state"] == "on"
        for pid in pids:                                # hangs: its connection stays up
            os.kill(pid, signal.SIGSTOP)
        done = threading.Event()
        started = time.monotonic()
        threading.Thread(target=lambda: (marker(m, 9101), done.set()), daemon=True).start()
        assert not done.wait(1.0), "a synchronous commit did not wait for the replica"
        st = eng(m).master_status(link)
        assert st.replica_state == "streaming", st      # the master does not know it is gone
        while not done.is_set() and time.monotonic() - started < 40:
            guard.look(None, pm)
            time.sleep(0.2)
        assert done.is_set(), "the guard did not release the master's commits"
        assert time.monotonic() - started < 15, time.monotonic() - started    # not wal_sender_timeout's 60 s
        assert eng(m).master_status(link).synchronous == "off"
        # still hung, its session still up: it is not taken back as synchronous (it has not answered for 25 s)
        while time.monotonic() - started < 32:
            guard.look(None, pm)
            assert eng(m).master_status(link).synchronous == "off"
            time.sleep(0.5)
        st = eng(m).master_status(link)
        assert st.replica_state == "streaming" and not st.replica_connected, st
        assert len(mails) == 1 and "ASYNCHRONOUS" in mails[0], mails
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        eng(m).set_synchronous(pair.mlink(), False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not pair.converged():
        time.sleep(0.5)
    assert has(r, 9101)
