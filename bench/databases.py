"""Benchmark: dump, ship and restore of a MariaDB and a PostgreSQL database through the plugins, beside
bare ``mariadb-dump | mariadb`` and ``pg_dump -Fc | pg_restore`` on the same data in the same run.

Private servers (a master root and a slave root per engine, as in the tests) are started in /tmp and
killed at the end. The database size is ``HOTSYNC_BENCH_MB`` (default 200) per engine. Bare and ours
alternate twice and each keeps its best round. Printed: each phase's seconds, the ratio ours/bare (the
whole dump + ship + restore, and the sync-time part dump + ship), and the dump time as a share of the
15-minute sync interval.

    .venv/bin/python bench/databases.py
    HOTSYNC_BENCH_MB=20 .venv/bin/python bench/databases.py
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


def main() -> int:
    if shutil.which("mariadbd") or Path("/usr/sbin/mariadbd").exists():
        bench_mariadb()
    else:
        print("MariaDB: skipped (mariadb-server not installed)")
    if (PG_BIN / "initdb").exists():
        bench_postgres()
    else:
        print("PostgreSQL: skipped (postgresql not installed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
