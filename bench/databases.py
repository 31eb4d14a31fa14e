"""Benchmark: dump, ship and restore of a MariaDB and a PostgreSQL database through the plugins, beside
bare ``mariadb-dump | mariadb`` and ``pg_dump -Fc | pg_restore`` on the same data in the same run.

Private servers (a master root and a slave root per engine, as in the tests) are started in /tmp and
killed at the end. The database size is ``HOTSYNC_BENCH_MB`` (default 200) per engine. Bare and ours
alternate twice and each keeps its best round. Printed: each phase's seconds, the ratio ours/bare (the
whole dump + ship + restore, and the sync-time part dump + ship), and the dump time as a share of the
15-minute sync interval.

    .venv/bin/python bench/databases.py
    HOTSYNC_BENCH_MB=20 .venv/bin/python bench/databases.py

Replica mode (``bench/databases.py replica``, or ``replica-mariadb`` / ``replica-postgresql`` for one engine;
``dump`` runs the dump part only; no argument runs everything):
a master and a replica per engine on loopback with TLS (tests/replservers.py), durable settings
(InnoDB ``flush_log_at_trx_commit=1``, PostgreSQL ``fsync=on``), the "bank" load with commit
acknowledgements. Printed:

* write throughput of the master (4 closed-loop clients, median of five 5 s runs alternating with an
  identical third server that has replication off: MariaDB without binary log, PostgreSQL without a
  standby, as in dump mode), asynchronous and synchronous (MariaDB semi-sync AFTER_SYNC, PostgreSQL
  synchronous_standby_names), each on two CPU models: "shared" (everything on both CPUs: the replica's
  apply competes with the master) and "pinned" (two hosts: master, baseline and load on CPU 0, the
  replica on CPU 1), with the server CPU seconds per 1000 transactions;
* ``HOTSYNC_BENCH_KILLS`` (default 10) kill -9 of the master under a steady load (2 clients, a pause
  between transactions), each followed by a real promote and a re-pair of the old master (the pair
  alternates): transactions acknowledged but missing after the promote, and the RPO = age, at the
  kill, of the oldest acknowledged transaction the promoted replica lacks (0 when none); p50/p95/max,
  asynchronous and synchronous; and what the re-pair found committed on the old master (acknowledged
  or not) that never reached the new one;
* the dump mode's RPO beside it: the slave holds the snapshot of the last complete sync, so a kill at a
  random moment loses between ``d`` and ``interval + d`` (``d`` = dump + ship time, measured here under
  the same load): p95 = 0.95 x interval + d.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from dbservers import PG_BIN, MariaDBServer, PostgresServer, new_root, remove_root  # noqa: E402
from hotsync_events.configdb import open_db  # noqa: E402
from hotsync_events.sync.databases import collect_dumps  # noqa: E402
from hotsync_events.manager import get_plugin_manager  # noqa: E402
from hotsync_events.types import DumpContext  # noqa: E402

MB = int(os.environ.get("HOTSYNC_BENCH_MB", "200"))
INTERVAL = 15 * 60
ROW_BYTES = 230          # about what one generated row takes in the dump


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def plugin_dump(root, name: str, disabled: set[str]):
    pm = get_plugin_manager(entrypoints=False, disabled=disabled)
    db = open_db("configuration", root)
    dump = {d.name: d for _, d in collect_dumps(pm, db)}[name]
    ctx = DumpContext(root=root, db=db, target=root.join(dump.path), log=lambda m: None)
    return dump, ctx


def ship(src: Path, dst: Path) -> None:
    """What the sync does with a dump file: rsync it (whole file, local) to the slave's tree."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["rsync", "-a", "--whole-file", str(src), str(dst)], check=True)


def best_of(bare_run, dump, ctx, sdump, sctx, rounds: int = 2) -> tuple[dict, dict]:
    """Alternate bare and ours *rounds* times (neither always runs first on a cold server); keep each best."""
    bare: dict = {}
    ours: dict = {}
    for _ in range(rounds):
        b = {"dump+load": timed(bare_run)}
        o = {"dump": timed(lambda: dump.run(ctx)),
             "ship": timed(lambda: ship(ctx.target, sctx.target)),
             "restore": timed(lambda: sdump.restore(sctx))}
        if not bare or sum(b.values()) < sum(bare.values()):
            bare = b
        if not ours or sum(o.values()) < sum(ours.values()):
            ours = o
    return bare, ours


def report(engine: str, ours: dict, bare: dict, size: int) -> None:
    tot_ours, tot_bare = sum(ours.values()), sum(bare.values())
    print(f"{engine}: {MB} MB of rows, dump file {size / 1e6:.1f} MB")
    for k, v in ours.items():
        print(f"  ours  {k:<8} {v:7.2f} s")
    for k, v in bare.items():
        print(f"  bare  {k:<8} {v:7.2f} s")
    print(f"  total ours {tot_ours:.2f} s, bare {tot_bare:.2f} s, ratio {tot_ours / tot_bare:.2f}x "
          "(ours runs dump, ship, restore one after the other; the bare pipe overlaps dump and load)")
    sync_part = ours["dump"] + ours["ship"]
    print(f"  at sync time (dump + ship) {sync_part:.2f} s, ratio {sync_part / tot_bare:.2f}x of the bare pipe; "
          "the restore runs only at promote")
    print(f"  dump time = {100 * ours['dump'] / INTERVAL:.2f}% of the {INTERVAL // 60}-minute sync interval")


def bench_mariadb() -> None:
    m, s = MariaDBServer(new_root("hsbm-m-"), "Bench-pw-1"), MariaDBServer(new_root("hsbm-s-"), "Bench-pw-2")
    try:
        m.start().configure()
        s.start().configure()
        rows = MB * 1_000_000 // ROW_BYTES
        m.sql("CREATE DATABASE bench")
        m.sql("CREATE TABLE t (id INT PRIMARY KEY, pad VARCHAR(255), n BIGINT) ENGINE=InnoDB", "bench")
        for lo in range(1, rows + 1, 500_000):
            hi = min(rows, lo + 499_999)
            m.sql(f"INSERT INTO t SELECT seq, REPEAT(MD5(seq), 6), seq * 7 FROM seq_{lo}_to_{hi}", "bench")
        cli = ["--no-defaults", f"--socket={m.socket}", "-uroot", f"--password={m.password}"]
        scli = ["--no-defaults", f"--socket={s.socket}", "-uroot", f"--password={s.password}"]

        def bare_run():
            s.sql("DROP DATABASE IF EXISTS bench")
            dump = subprocess.Popen(["mariadb-dump", *cli, "--single-transaction", "--databases", "bench"],
                                    stdout=subprocess.PIPE)
            subprocess.run(["mariadb", *scli], stdin=dump.stdout, check=True)
            dump.stdout.close()
            assert dump.wait() == 0
        dump, ctx = plugin_dump(m.root, "mysql", {"postgresql"})
        sdump, sctx = plugin_dump(s.root, "mysql", {"postgresql"})
        bare, ours = best_of(bare_run, dump, ctx, sdump, sctx)
        assert s.sql("SELECT COUNT(*) FROM t", "bench") == [[str(rows)]]
        report("MariaDB", ours, bare, ctx.target.stat().st_size)
    finally:
        for srv in (m, s):
            srv.stop()
            remove_root(srv.root)


def bench_postgres() -> None:
    m, s = PostgresServer(new_root("hsbp-m-"), "Bench-pw-1"), PostgresServer(new_root("hsbp-s-"), "Bench-pw-2")
    try:
        m.start().configure()
        s.start().configure()
        rows = MB * 1_000_000 // ROW_BYTES
        m.sql("CREATE DATABASE bench")
        m.sql("CREATE TABLE t (id int PRIMARY KEY, pad text, n bigint); "
              f"INSERT INTO t SELECT g, repeat(md5(g::text), 6), g * 7 FROM generate_series(1, {rows}) g", db="bench")

        def bare_run():
            s.sql("DROP DATABASE IF EXISTS bench WITH (FORCE)")
            dump = subprocess.Popen([str(PG_BIN / "pg_dump"), "-Fc", "-d", "bench"], stdout=subprocess.PIPE,
                                    env=m.env())
            subprocess.run([str(PG_BIN / "pg_restore"), "--create", "-d", "template1"], stdin=dump.stdout,
                           env=s.env(), check=True)
            dump.stdout.close()
            assert dump.wait() == 0
        dump, ctx = plugin_dump(m.root, "postgresql", {"mysql"})
        sdump, sctx = plugin_dump(s.root, "postgresql", {"mysql"})
        bare, ours = best_of(bare_run, dump, ctx, sdump, sctx)
        assert s.sql("SELECT count(*) FROM t", db="bench") == [[str(rows)]]
        report("PostgreSQL", ours, bare, ctx.target.stat().st_size)
    finally:
        for srv in (m, s):
            srv.stop()
            remove_root(srv.root)


# ------------------------------------------------------------------------------------------ replica mode
KILLS = int(os.environ.get("HOTSYNC_BENCH_KILLS", "10"))


RUN_SECONDS = 5.0


def throughput(node, *, seconds: float = RUN_SECONDS, clients: int = 4) -> float:
    """Committed (acknowledged) transactions per second of *clients* closed-loop bank sessions."""
    from replservers import BankLoad

    with BankLoad(node, clients=clients, seconds=seconds + 30) as load:
        load.wait_acks(20)
        n0, t0 = load.count, time.perf_counter()
        time.sleep(seconds)
        n1, t1 = load.count, time.perf_counter()
    return (n1 - n0) / (t1 - t0)


def server_pids(node) -> list[int]:
    """The server's processes (PostgreSQL: the postmaster and its children) and their threads."""
    from replservers import MariaDBNode

    roots = node.pids() if isinstance(node, MariaDBNode) else [p for p in [node.postmaster_pid()] if p]
    pids = set(roots)
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid in roots:
                pids.add(int(d.name))
    tids = set()
    for pid in pids:
        try:
            tids.update(int(t.name) for t in Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            pass
    return sorted(tids)


def pin(node, cpus: set[int]) -> None:
    """Keep *node*'s server on *cpus* (every thread it has now; new ones inherit)."""
    for tid in server_pids(node):
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass


def two_hosts(pair, baseline) -> bool:
    """Model two hosts on this machine: the master, the baseline server and the load on CPU 0, the replica
    on CPU 1 (else the replica's apply competes with the master for the same cores). False when there
    are fewer than two CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return False
    os.sched_setaffinity(0, {cpus[0]})
    for n in (pair.master, baseline):
        pin(n, {cpus[0]})
    pin(pair.replica, {cpus[1]})
    return True


def server_cpu(node) -> float:
    """CPU seconds the node's server has used so far (PostgreSQL: the postmaster, its live children, and
    the children it reaped, such as the backends of finished sessions)."""
    from replservers import MariaDBNode

    tck = os.sysconf("SC_CLK_TCK")
    roots = node.pids() if isinstance(node, MariaDBNode) else [p for p in [node.postmaster_pid()] if p]
    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            f = (d / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        pid, ppid = int(d.name), int(f[1])
        if pid in roots:
            total += sum(int(x) for x in f[11:15]) / tck       # utime stime cutime cstime
        elif ppid in roots:
            total += (int(f[11]) + int(f[12])) / tck
    return total


def compare(baseline, master, *, rounds: int = 5) -> dict:
    """Alternate throughput runs on the baseline (replication off) and the master; tx/s lists and the
    server CPU per 1000 transactions."""
    out = {"off": [], "on": [], "cpu_off": 0.0, "cpu_on": 0.0}
    for _ in range(rounds):
        for key, node in (("off", baseline), ("on", master)):
            c0 = server_cpu(node)
            out[key].append(throughput(node))
            out["cpu_" + key] += server_cpu(node) - c0
    for key in ("off", "on"):
        out["cpu_" + key] = 1000 * out["cpu_" + key] / (sum(out[key]) * RUN_SECONDS)   # s per 1000 transactions
    return out


def stream_paused(pair, paused: bool) -> None:
    """Stop (or start again) the replica's receiving, leaving the master as it is (MariaDB: binary log on,
    PostgreSQL: wal_log_hints and the slot): what the master pays for its settings alone, without a stream
    to send. MariaDB: the replica's I/O thread; PostgreSQL: its WAL receiver (an empty primary_conninfo over
    the managed one, then reset)."""
    from replservers import MariaDBNode

    r = pair.replica
    if isinstance(r, MariaDBNode):
        r.sql("STOP SLAVE IO_THREAD" if paused else "START SLAVE IO_THREAD")
    else:
        r.sql("ALTER SYSTEM SET primary_conninfo = ''" if paused else "ALTER SYSTEM RESET primary_conninfo")
        r.sql("SELECT pg_reload_conf()")
    engine = pair.engine(pair.master)
    for _ in range(100):                        # bounded: 20 s for the stream to go or come back
        if engine.master_status(pair.mlink()).replica_connected != paused:
            return
        time.sleep(0.2)
    raise AssertionError(f"the replica's stream did not {'stop' if paused else 'come back'}")


def measure_throughput(pair, base, master_engine, replica_engine) -> dict:
    """Async then sync, each on two CPU models: shared (the three servers and the load on all CPUs: the
    replica's apply competes with the master) and two hosts (pinned); then, pinned, the master with its
    replication settings but no stream (where the asynchronous cost goes)."""
    cpus = os.sched_getaffinity(0)
    tput: dict = {}
    for mode in ("async", "no stream", "sync"):
        if mode == "no stream":
            if not two_hosts(pair, base):
                continue
            stream_paused(pair, True)
            try:
                tput[(mode, "pinned")] = compare(base, pair.master)
            finally:
                os.sched_setaffinity(0, cpus)
                for n in (pair.master, pair.replica, base):
                    pin(n, cpus)
                stream_paused(pair, False)
            continue
        if mode == "sync":
            replica_engine.set_synchronous(pair.rlink(synchronous=True), True, log=lambda s: None)
            master_engine.set_synchronous(pair.mlink(synchronous=True), True, log=lambda s: None)
            from replservers import bank_sql
            for _ in range(50):       # MariaDB reports semi-sync on at the first acknowledged transaction
                bank_sql(pair.master, "UPDATE accounts SET bal = bal WHERE id = 1")
                if master_engine.master_status(pair.mlink()).synchronous == "on":
                    break
                time.sleep(0.2)
            assert master_engine.master_status(pair.mlink()).synchronous == "on"
        for model in ("shared", "pinned"):
            if model == "pinned" and not two_hosts(pair, base):
                continue
            tput[(mode, model)] = compare(base, pair.master)
            os.sched_setaffinity(0, cpus)
            for n in (pair.master, pair.replica, base):
                pin(n, cpus)
    return tput


def median(values: list[float]) -> float:
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    if not v:
        return float("nan")
    k = max(0, min(len(v) - 1, round(q * (len(v) - 1))))
    return v[k]


def kill_rounds(pair, *, synchronous: bool, kills: int, seed: int) -> dict:
    """*kills* times: steady load, kill -9 of the master at a random moment, promote, count, re-pair."""
    import random

    from hotsync_events.dbkit.replica import dated_folder
    from replservers import BankLoad, bank_total, ledger

    rng = random.Random(seed)
    out = {"lost": [], "rpo": [], "promote": [], "repair": [], "acks": 0, "repair_methods": [], "diverged": []}
    total = bank_total(pair.master)
    for _ in range(kills):
        m, r = pair.master, pair.replica
        with BankLoad(m, clients=2, pause=0.002, seed=rng.randrange(1 << 30)) as load:
            load.wait_acks(load.count + rng.randint(300, 1200), seconds=60)
            killed = m.kill9()
        res = load.result
        t = time.perf_counter()
        promoted = pair.engine(r).promote(timeout=60)
        out["promote"].append(time.perf_counter() - t)
        present = load.mine(ledger(r))
        out["lost"].append(len(res.lost(present)))
        out["rpo"].append(res.rpo(present, killed))
        out["acks"] += len(res.acks)
        assert bank_total(r) == total, "the bank invariant broke on the promoted replica"
        # re-pair: the old master becomes the replica of the new one
        pair.swap()
        t = time.perf_counter()
        m.start()
        new_eng, old_eng = pair.engine(pair.master), pair.engine(pair.replica)
        prep = new_eng.prepare_master(pair.mlink(synchronous=synchronous), log=lambda s: None)
        assert prep.ready, prep
        folder = dated_folder(m.root.join("/var/lib/hotsync/diverged"), "bench")
        rep = old_eng.repair(pair.rlink(synchronous=synchronous), folder, promoted.position, log=lambda s: None)
        if rep.state == "needs-seed":
            seed_file = new_eng.take_seed(pair.master.root.join("/var/lib/hotsync/dumps/seed.xbstream"),
                                          log=lambda s: None)
            rep = old_eng.repair(pair.rlink(synchronous=synchronous), folder, promoted.position, seed=seed_file,
                                 log=lambda s: None)
        assert rep.state == "replica", rep
        if synchronous:        # PostgreSQL turns it on only once the replica streams
            pair.engine(pair.master).set_synchronous(pair.mlink(synchronous=True), True, log=lambda s: None)
        assert pair.converged(60)
        out["repair"].append(time.perf_counter() - t)
        out["repair_methods"].append(rep.method)
        out["diverged"].append(rep.transactions)   # committed on the old master, never reached the new one
    return out


def dump_cycle(pair, name: str) -> float:
    """Seconds to take the plugin's dump of the master and ship it (what bounds the dump mode's RPO)."""
    from replservers import BankLoad

    dump, ctx = plugin_dump(pair.master.root, name, {"postgresql"} if name == "mysql" else {"mysql"})
    dst = pair.replica.root.join(dump.path)
    with BankLoad(pair.master, clients=2, pause=0.002):
        time.sleep(1)
        d = timed(lambda: dump.run(ctx)) + timed(lambda: ship(ctx.target, dst))
    return d


def methods(names: list[str]) -> str:
    return ", ".join(f"{m} x{names.count(m)}" for m in sorted(set(names)))


def report_replica(engine: str, tput: dict, asyn: dict, syn: dict, d: float) -> None:
    print(f"{engine} replica mode")
    print(f"  master write throughput, 4 closed-loop clients, median of {len(next(iter(tput.values()))['off'])} "
          f"alternating {RUN_SECONDS:.0f} s runs against an identical server with replication off; server CPU per "
          "1000 transactions;")
    print("  CPU models: shared = all servers and the load on both CPUs; pinned = two hosts: master, baseline and "
          "load on CPU 0, the replica on CPU 1")
    for (mode, model), r in tput.items():
        off, on = median(r["off"]), median(r["on"])
        print(f"    {mode:<9} {model:<6}: off {off:6.0f} tx/s {[round(x) for x in r['off']]}, on {on:6.0f} tx/s "
              f"{[round(x) for x in r['on']]}: {on / off:.2f}x ({100 * (1 - on / off):+.1f}% lower); "
              f"CPU/1000 tx off {r['cpu_off']:.3f} s, on {r['cpu_on']:.3f} s")
    for label, r in (("async", asyn), ("sync", syn)):
        rpo = r["rpo"]
        print(f"  {label}: {len(rpo)} kill -9 under a steady load ({r['acks']} acknowledged transactions): lost per "
              f"kill {r['lost']} (total {sum(r['lost'])}); RPO p50 {pct(rpo, .5) * 1000:.1f} ms, p95 "
              f"{pct(rpo, .95) * 1000:.1f} ms, max {max(rpo) * 1000:.1f} ms; promote p50 {pct(r['promote'], .5):.2f} s "
              f"(max {max(r['promote']):.2f}); re-pair p50 {pct(r['repair'], .5):.2f} s "
              f"({methods(r['repair_methods'])}); "
              f"committed on the old master but never on the new one (acknowledged or not; saved by the re-pair): "
              f"{r['diverged']}")
    p95_dump = 0.95 * INTERVAL + d
    print(f"  dump mode: dump + ship {d:.2f} s under the same load -> RPO between {d:.1f} s and "
          f"{(INTERVAL + d) / 60:.1f} min, p95 {p95_dump / 60:.1f} min ({p95_dump:.0f} s)")
    if ("no stream", "pinned") in tput:
        print("    (no stream: the master keeps its replication settings, the replica stops receiving: the rest of "
              "the asynchronous cost is sending the stream)")
    a = [median(r["on"]) / median(r["off"]) for (mode, _), r in tput.items() if mode == "async"]
    print(f"  targets: async RPO p95 <= 1 s: {'met' if pct(asyn['rpo'], .95) <= 1.0 else 'MISSED'}; "
          f"async throughput >= 90% of off: "
          f"{'met' if min(a) >= 0.9 else 'met (one model)' if max(a) >= 0.9 else 'MISSED'} "
          f"({', '.join(f'{x:.2f}x' for x in a)}); sync lost 0: {'met' if sum(syn['lost']) == 0 else 'MISSED'}")


def bench_mariadb_replica() -> None:
    from replservers import MariaDBNode, ReplPair, create_bank

    a = MariaDBNode(new_root("hsbr-a-"), "127.0.0.2", durable=True).start().configure()
    b = MariaDBNode(new_root("hsbr-b-"), "127.0.0.3", durable=True).start().configure()
    base = MariaDBNode(new_root("hsbr-o-"), "127.0.0.4", durable=True).start().configure()   # replication off
    pair = ReplPair(a, b)
    pair.engine = lambda n: n.engine()
    cpus = os.sched_getaffinity(0)
    try:
        for n in (a, base):
            create_bank(n)
        d = dump_cycle(pair, "mysql")
        ea, eb = a.engine(), b.engine()
        ea.prepare_master(pair.mlink(), log=lambda s: None)
        a.restart()
        assert ea.prepare_master(pair.mlink(), log=lambda s: None).ready
        eb.seed(pair.rlink(), ea.take_seed(a.root.join("/var/lib/hotsync/dumps/seed.xbstream"), log=lambda s: None),
                log=lambda s: None)
        tput = measure_throughput(pair, base, ea, eb)
        base.stop()
        syn = kill_rounds(pair, synchronous=True, kills=KILLS, seed=1)
        pair.engine(pair.replica).set_synchronous(pair.rlink(), False, log=lambda s: None)
        pair.engine(pair.master).set_synchronous(pair.mlink(), False, log=lambda s: None)
        asyn = kill_rounds(pair, synchronous=False, kills=KILLS, seed=2)
        report_replica("MariaDB", tput, asyn, syn, d)
    finally:
        os.sched_setaffinity(0, cpus)
        pair.close()
        base.stop()
        remove_root(base.root)


def bench_postgres_replica() -> None:
    from replservers import PostgresNode, ReplPair, create_bank

    def node(prefix, address):
        return PostgresNode(new_root(prefix), address, settings={"listen_addresses": f"'{address}'", "fsync": "on"})
    a, b, base = node("hsbq-a-", "127.0.0.2"), node("hsbq-b-", "127.0.0.3"), node("hsbq-o-", "127.0.0.4")
    pair = ReplPair(a, b)
    pair.engine = lambda n: n.engine()
    cpus = os.sched_getaffinity(0)
    try:
        for n in (a, b, base):
            n.start().configure()
        for n in (a, base):
            create_bank(n)
        d = dump_cycle(pair, "postgresql")
        ea, eb = a.engine(), b.engine()
        ea.prepare_master(pair.mlink(), log=lambda s: None)
        a.restart()                                  # wal_log_hints, for pg_rewind at the re-pairs
        assert ea.prepare_master(pair.mlink(), log=lambda s: None).ready
        eb.seed(pair.rlink(), log=lambda s: None)
        tput = measure_throughput(pair, base, ea, eb)
        base.stop()
        syn = kill_rounds(pair, synchronous=True, kills=KILLS, seed=1)
        pair.engine(pair.master).set_synchronous(pair.mlink(), False, log=lambda s: None)
        asyn = kill_rounds(pair, synchronous=False, kills=KILLS, seed=2)
        report_replica("PostgreSQL", tput, asyn, syn, d)
    finally:
        os.sched_setaffinity(0, cpus)
        pair.close()
        base.stop()
        remove_root(base.root)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parts = set(argv) or {"dump", "replica"}
    have_mariadb = bool(shutil.which("mariadbd") or Path("/usr/sbin/mariadbd").exists())
    have_pg = (PG_BIN / "initdb").exists()
    if "dump" in parts:
        bench_mariadb() if have_mariadb else print("MariaDB: skipped (mariadb-server not installed)")
        bench_postgres() if have_pg else print("PostgreSQL: skipped (postgresql not installed)")
    if parts & {"replica", "replica-mariadb"}:
        if have_mariadb and shutil.which("mariadb-backup"):
            bench_mariadb_replica()
        else:
            print("MariaDB replica mode: skipped (mariadb-server and mariadb-backup needed)")
    if parts & {"replica", "replica-postgresql"}:
        bench_postgres_replica() if have_pg else print("PostgreSQL replica mode: skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
