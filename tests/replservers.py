"""Private MariaDB and PostgreSQL servers on TCP loopback with TLS, for the replication tests and bench.

Each node is a throw-away host root like :mod:`dbservers`' servers, plus: it listens on its own loopback
address (``127.0.0.2`` for the first master, ``127.0.0.3`` for its replica; all of 127/8 is local on
Linux) and a free port, and holds a key and self-signed certificate for the replication channel
(CN = the replication account, subjectAltName = its address). A replica connecting to 127.0.0.2/3 comes
from ``127.0.0.1`` (the source the kernel picks on ``lo``): that is the "replica address" the master
allows (:data:`CLIENT_ADDRESS`).

Like a Debian host, a node's server reads one options file that the replication engine's drop-in joins:
MariaDB ``<root>/etc/mysql/my.cnf`` with ``!includedir <root>/etc/mysql/mariadb.conf.d``, started as
``mariadbd --defaults-file=...`` (what the engine's process back-end runs too); PostgreSQL the cluster's
own ``postgresql.conf`` (``postgres -D <data dir>``, as ``nobody`` when the tests run as root).

:class:`BankLoad` is the "bank" write load with commit acknowledgements: transfers between accounts
(the sum never changes) and one ``ledger`` row per transaction, each client recording when its COMMIT
returned, so a test can count the acknowledged transactions a promoted replica lacks.
"""
from __future__ import annotations

import os
import itertools
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from dbservers import PG_BIN, MariaDBServer, PostgresServer, _wait, kill_pid
from hotsync_events.paths import Root
from hotsync_events.dbkit.mariadb import MariaDB
from hotsync_events.dbkit.pgsql import Postgres
from hotsync_events.dbkit.replica import Link, make_certificate
from hotsync_events.dbkit.replica_mariadb import MariaDBReplication
from hotsync_events.dbkit.replica_pgsql import PostgresReplication

CLIENT_ADDRESS = "127.0.0.1"
REPL_PASSWORD = "Repl-pw 1:'x\\"
ACCOUNTS = 2000
START_BALANCE = 1000


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def clean_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MYSQL"))}
    env.update(extra or {})
    return env


class TLSFiles:
    """A node's replication key and certificate, its copy of the channel password, and (once paired)
    its pin of the peer's certificate, under ``<root>/etc/hotsync-test/repl/``."""

    def __init__(self, root: Root, address: str, user: str = "hotsync_repl") -> None:
        self.root = root
        self.dir = root.join("/etc/hotsync-test/repl")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert, self.key = self.dir / "own.crt", self.dir / "own.key"
        self.fingerprint = make_certificate(self.cert, self.key, common_name=user, addresses=[address])
        self.password = self.dir / "password"
        self.password.write_text(REPL_PASSWORD + "\n")
        os.chmod(self.password, 0o600)

    def host(self, path: Path) -> str:
        return "/" + str(path.relative_to(self.root.path))

    def pin(self, peer: TLSFiles) -> str:
        """Copy the peer's certificate here (what pairing exchanges); its host path."""
        dst = self.dir / "peer.crt"
        dst.write_bytes(peer.cert.read_bytes())
        return self.host(dst)


def link_for(local, master, replica, *, synchronous: bool = False,
             peer_cert: str | None = None, password_file: str | None = None) -> Link:
    """The link as *local* (the master or the replica) sees the channel master -> replica."""
    peer = replica if local is master else master
    return Link(master_host=master.address, replica_host=CLIENT_ADDRESS, port=master.port,
                password_file=password_file or local.tls.host(local.tls.password), cert=local.tls.host(local.tls.cert),
                key=local.tls.host(local.tls.key), peer_cert=peer_cert or local.tls.pin(peer.tls),
                synchronous=synchronous)


# ------------------------------------------------------------------------------------------ MariaDB
class MariaDBNode(MariaDBServer):
    """``mariadbd --defaults-file=<root>/etc/mysql/my.cnf`` on ``address:port`` (binary log off at first, as
    on a host that never replicated); the engine's drop-in directory is included."""

    def __init__(self, root: Root, address: str, password: str = "Maria-pw-1", *, durable: bool = False) -> None:
        super().__init__(root, password)
        self.address = address
        self.port = free_port(address)
        self.cnf = root.join("/etc/mysql/my.cnf")
        self.durable = durable
        self.tls = TLSFiles(root, address)

    def write_cnf(self) -> None:
        dropdir = self.root.join("/etc/mysql/mariadb.conf.d")
        dropdir.mkdir(parents=True, exist_ok=True)
        log = self.root.join("/var/log/mysqld-test.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        lines = ["[mariadbd]", f"datadir = {self.datadir}", f"socket = {self.socket}", f"pid-file = {self.pidfile}",
                 f"port = {self.port}", f"bind-address = {self.address}", f"log-error = {log}",
                 f"tmpdir = {self.tmpdir}", "innodb-buffer-pool-size = 64M",
                 f"innodb-flush-log-at-trx-commit = {1 if self.durable else 2}"]
        if os.geteuid() == 0:
            lines.append("user = root")
        self.cnf.parent.mkdir(parents=True, exist_ok=True)
        self.cnf.write_text("\n".join(lines) + f"\n!includedir {dropdir}\n")

    def start(self) -> MariaDBNode:
        if self.proc is not None:
            self.proc.poll()          # a server the engine stopped: reap it before we forget it
        if not self.datadir.is_dir():
            self.install()
        self.write_cnf()
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(["mariadbd", f"--defaults-file={self.cnf}"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                     env=clean_env({"TMPDIR": str(self.tmpdir)}))
        _wait(lambda: self.socket.exists() and self._ping(), 60, "mariadbd")
        return self

    def restart(self) -> MariaDBNode:
        self.stop()
        return self.start()

    def kill9(self) -> float:
        """SIGKILL the server (no shutdown of any kind); the moment the signal was sent."""
        t = time.time()
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in self.pids():
            kill_pid(pid, seconds=5, sig=signal.SIGKILL)
        self._forget_proc()
        return t

    def _forget_proc(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None

    def engine(self, **kw) -> MariaDBReplication:
        srv = MariaDB(self.root, socket="/run/mysqld/mysqld.sock", user="root",
                      password_file="/etc/hotsync-test/mysql.pw", datadir="/var/lib/mysql")
        return MariaDBReplication(srv, dropin="/etc/mysql/mariadb.conf.d/90-hotsync-replication.cnf",
                                  defaults_file="/etc/mysql/my.cnf", **kw)

    def client_argv(self) -> list[str]:
        """The load's client: over the unix socket without TLS, as an application connects (the 10.11
        client otherwise negotiates TLS even on the socket once the server has a certificate, which
        would charge the replication's TLS setting to every local client)."""
        return ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", f"--password={self.password}",
                "--batch", "--skip-column-names", "--unbuffered", "--skip-ssl"]


# ------------------------------------------------------------------------------------------ PostgreSQL
class PostgresNode(PostgresServer):
    """``postgres -D <data dir>`` on ``address:port`` (no TCP at first: ``listen_addresses=''``, as the
    host's server today); ``settings`` go in the cluster's postgresql.conf."""

    def __init__(self, root: Root, address: str, password: str = "Pg-pw-1:x", *, wal_segsize: int = 0,
                 settings: dict | None = None) -> None:
        super().__init__(root, password)
        self.address = address
        self.port = free_port(address)
        self.wal_segsize = wal_segsize
        self.settings = settings or {}
        self.log = root.join("/var/log/hotsync/postgresql.log")
        self.tls = TLSFiles(root, address)
        if self.user is not None:
            os.chown(self.tls.dir.parent, 0, 0)

    def install(self) -> None:
        for d in (self.datadir.parent, self.sockdir):
            d.mkdir(parents=True, exist_ok=True)
            self._chown(d)
        pw = self.root.join("/run/initdb.pw")
        pw.write_text(self.password + "\n")
        self._chown(pw)
        argv = [str(PG_BIN / "initdb"), "-D", str(self.datadir), "-U", "postgres", "--auth-local=scram-sha-256",
                "--auth-host=reject", f"--pwfile={pw}", "-E", "UTF8", "--locale=C", "--no-sync"]
        if self.wal_segsize:
            argv.append(f"--wal-segsize={self.wal_segsize}")
        cp = subprocess.run(self._as_user(argv), capture_output=True, text=True, timeout=120,
                            env=clean_env({"TMPDIR": str(self.tmpdir)}))
        pw.unlink()
        assert cp.returncode == 0, cp.stderr
        conf = {"port": str(self.port), "listen_addresses": "''", "unix_socket_directories": f"'{self.sockdir}'",
                "fsync": "off", "shared_buffers": "32MB", "max_connections": "40", **self.settings}
        with open(self.datadir / "postgresql.conf", "a") as fh:
            fh.write("\n# hotsync tests\n" + "".join(f"{k} = {v}\n" for k, v in conf.items()))

    @property
    def env_port(self) -> str:
        return str(self.port)

    def start(self) -> PostgresNode:
        if self.proc is not None:
            self.proc.poll()
        if not (self.datadir / "PG_VERSION").exists():
            self.install()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self._as_user([str(PG_BIN / "postgres"), "-D", str(self.datadir)]),
                                         stdin=subprocess.DEVNULL, stdout=fh, stderr=fh, start_new_session=True,
                                         env=clean_env({"TMPDIR": str(self.tmpdir)}))
        _wait(lambda: self._ping(), 60, "postgres")
        return self

    def restart(self) -> PostgresNode:
        self.stop()
        return self.start()

    def env(self) -> dict:
        env = clean_env()
        env.update(PGHOST=str(self.sockdir), PGPORT=str(self.port), PGUSER="postgres", PGPASSWORD=self.password)
        return env

    def configure(self) -> PostgresNode:
        super().configure()
        from dbservers import set_props
        set_props(self.root, "postgresql", {"TCPPort": str(self.port)})
        return self

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill9(self) -> float:
        """SIGKILL the postmaster and every backend at once (its process group); the moment sent."""
        pid = self.postmaster_pid()
        t = time.time()
        if pid is not None:
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
            kill_pid(pid, seconds=5, sig=signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        return t

    def stop(self) -> None:
        super().stop()
        pid = self.postmaster_pid()
        if pid is not None:
            kill_pid(pid, sig=signal.SIGINT)

    def engine(self, **kw) -> PostgresReplication:
        srv = Postgres(self.root, socket_dir="/run/postgresql", port=self.port, user="postgres",
                       password_file="/etc/hotsync-test/pg.pw", datadir="/var/lib/postgresql/main", run_as="")
        return PostgresReplication(srv, **kw)

    def client_argv(self) -> list[str]:
        return [str(PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-d", "postgres"]


def pg_wal_bytes(node: PostgresNode) -> int:
    return sum(p.stat().st_size for p in (node.datadir / "pg_wal").iterdir() if p.is_file())


# ------------------------------------------------------------------------------------------ the load
def create_bank(node) -> None:
    """``accounts`` (ACCOUNTS rows of START_BALANCE) and an empty ``ledger``, in database ``bank``."""
    if isinstance(node, MariaDBNode):
        node.sql("CREATE DATABASE bank")
        node.sql("CREATE TABLE accounts (id INT PRIMARY KEY, bal BIGINT NOT NULL) ENGINE=InnoDB; "
                 "CREATE TABLE ledger (n BIGINT PRIMARY KEY, at TIMESTAMP(6) NOT NULL) ENGINE=InnoDB; "
                 f"INSERT INTO accounts SELECT seq, {START_BALANCE} FROM seq_1_to_{ACCOUNTS}", "bank")
    else:
        node.sql("CREATE TABLE accounts (id int PRIMARY KEY, bal bigint NOT NULL); "
                 "CREATE TABLE ledger (n bigint PRIMARY KEY, at timestamptz NOT NULL); "
                 f"INSERT INTO accounts SELECT g, {START_BALANCE} FROM generate_series(1, {ACCOUNTS}) g")


def bank_sql(node, sql: str) -> list[list[str]]:
    return node.sql(sql, "bank") if isinstance(node, MariaDBNode) else node.sql(sql)


def bank_total(node) -> int:
    return int(bank_sql(node, "SELECT SUM(bal) FROM accounts")[0][0])


def ledger(node) -> set[int]:
    return {int(r[0]) for r in bank_sql(node, "SELECT n FROM ledger")}


@dataclass
class LoadResult:
    acks: dict[int, float] = field(default_factory=dict)     # transaction number -> when its COMMIT returned
    errors: list[str] = field(default_factory=list)

    def lost(self, present: set[int]) -> list[int]:
        return sorted(n for n in self.acks if n not in present)

    def rpo(self, present: set[int], killed_at: float) -> float:
        """Age, at the kill, of the oldest acknowledged transaction the survivor lacks (0 if none)."""
        lost = self.lost(present)
        return max(0.0, killed_at - min(self.acks[n] for n in lost)) if lost else 0.0


_LOAD_IDS = itertools.count(1)


class BankLoad:
    """*clients* sessions doing transfers on *node* until stopped (bounded to *seconds*), each transaction
    ``UPDATE accounts`` (one statement: atomic even if the session errs) + ``INSERT INTO ledger`` + COMMIT,
    then ``SELECT 'ack', n``: the ack line comes back only after the COMMIT returned."""

    def __init__(self, node, *, clients: int = 2, seconds: float = 120, pause: float = 0.0, seed: int = 7) -> None:
        self.node = node
        self.clients = clients
        self.seconds = seconds
        self.pause = pause
        self.result = LoadResult()
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.procs: list[subprocess.Popen] = []
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.base = next(_LOAD_IDS) * 1_000_000_000       # transaction numbers unique across loads

    def _argv_env(self):
        if isinstance(self.node, MariaDBNode):
            return [*self.node.client_argv(), "bank"], None
        return self.node.client_argv(), self.node.env()

    def _client(self, k: int) -> None:
        argv, env = self._argv_env()
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, bufsize=1, env=env)
        self.procs.append(proc)
        rng = random.Random(self.rng.random() + k)
        mariadb = isinstance(self.node, MariaDBNode)
        now = "NOW(6)" if mariadb else "clock_timestamp()"
        deadline = time.monotonic() + self.seconds
        i = 0
        try:
            while not self.stop_event.is_set() and time.monotonic() < deadline:
                i += 1
                n = self.base + k * 10_000_000 + i
                a, b = sorted(rng.sample(range(1, ACCOUNTS + 1), 2))
                amt = rng.randint(1, 50)
                proc.stdin.write(f"BEGIN; UPDATE accounts SET bal = bal + CASE id WHEN {a} THEN -{amt} ELSE {amt} END "
                                 f"WHERE id IN ({a}, {b}); INSERT INTO ledger VALUES ({n}, {now}); COMMIT; "
                                 f"SELECT 'ack', {n}, (SELECT COUNT(*) FROM ledger WHERE n = {n});\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
                if not line:
                    break                                  # the server went away
                t = time.time()
                parts = line.replace("|", "\t").split()
                if parts == ["ack", str(n), "1"]:
                    with self.lock:
                        self.result.acks[n] = t
                if self.pause:
                    time.sleep(self.pause)
        except (BrokenPipeError, OSError) as exc:
            self.result.errors.append(str(exc))
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            proc.stdout.close()

    def __enter__(self) -> BankLoad:
        for k in range(1, self.clients + 1):
            t = threading.Thread(target=self._client, args=(k,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self) -> LoadResult:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=30)
        return self.result

    def __exit__(self, *exc) -> None:
        self.stop()

    def mine(self, present: set[int]) -> set[int]:
        """The transaction numbers of this load among *present*."""
        return {n for n in present if self.base <= n < self.base + 1_000_000_000}

    @property
    def count(self) -> int:
        return len(self.result.acks)

    def wait_acks(self, n: int, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while self.count < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.count >= n, f"the load made only {self.count} transactions in {seconds} s"


# ------------------------------------------------------------------------------------------ a pair
class ReplPair:
    """Two nodes of one engine and who is the master now (:meth:`swap` after a promote)."""

    def __init__(self, master, replica, **engine_kw) -> None:
        self.master, self.replica = master, replica
        self.engine_kw = engine_kw
        self.fresh = True                 # no test prepared it yet (the master never replicated)
        self.takeover = None              # set by a test that promoted after a kill, until a re-pair

    def engine(self, node):
        return node.engine(**self.engine_kw)

    def link(self, local, **kw) -> Link:
        return link_for(local, self.master, self.replica, **kw)

    def mlink(self, **kw) -> Link:
        return self.link(self.master, **kw)

    def rlink(self, **kw) -> Link:
        return self.link(self.replica, **kw)

    def swap(self) -> None:
        self.master, self.replica = self.replica, self.master

    def converged(self, seconds: float = 30) -> bool:
        """Wait (bounded) until the replica has applied everything the master committed."""
        m, r = self.master, self.replica
        if isinstance(m, MariaDBNode):
            def done():
                mine, theirs = m.sql("SELECT @@gtid_binlog_pos"), r.sql("SELECT @@gtid_slave_pos")
                return (mine[0][0] if mine and mine[0] else "") == (theirs[0][0] if theirs and theirs[0] else "")
        else:
            def done():
                cur = m.sql("SELECT pg_current_wal_lsn()")[0][0]
                return r.sql(f"SELECT pg_last_wal_replay_lsn() >= '{cur}'::pg_lsn")[0][0] == "t"
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if done():
                return True
            time.sleep(0.1)
        return False

    # -------------------------------------------------------------- known states (tests in any order)
    def up(self) -> None:
        for node in (self.master, self.replica):
            if not node._ping():
                node.start()

    def prepared(self) -> ReplPair:
        """Both servers up, asynchronous, the master prepared (restarted once if it needs it)."""
        self.fresh = False
        self.up()
        me = self.engine(self.master)
        me.set_synchronous(self.mlink(), False)
        if isinstance(self.replica, MariaDBNode):
            self.engine(self.replica).set_synchronous(self.rlink(), False)
        if not me.prepare_master(self.mlink()).ready:
            self.master.restart()
            assert me.prepare_master(self.mlink()).ready
        return self

    def streaming(self, seed_file: Path | None = None) -> ReplPair:
        """The state most tests start from: the master prepared, the replica seeded from it, streaming,
        asynchronous, converged -- from whatever a previous test left (a killed master, a promoted replica,
        a synchronous pair, or nothing prepared yet)."""
        self.fresh = False
        self.up()
        me, re_ = self.engine(self.master), self.engine(self.replica)
        try:
            st, ms = re_.status(self.rlink()), me.master_status(self.mlink())
            if self.takeover is None and st.state == "streaming" and not st.synchronous and \
                    ms.synchronous == "off" and self.converged(5):
                return self
        except Exception:  # any doubt: re-seed
            pass
        self.prepared()
        source = me.take_seed(seed_file) if seed_file is not None else None
        re_.seed(self.rlink(), source)
        assert self.converged()
        self.takeover = None
        return self

    def promoted(self, seed_file: Path | None = None) -> ReplPair:
        """A pair whose master was killed and its replica promoted (:attr:`takeover` set, swapped)."""
        if self.takeover is not None:
            return self
        self.streaming(seed_file)
        self.master.kill9()
        self.takeover = self.engine(self.replica).promote(timeout=30).position
        self.swap()
        return self

    def close(self) -> None:
        for node in (self.master, self.replica):
            node.stop()
            shutil.rmtree(node.root.path, ignore_errors=True)


def rogue_cert(node, address: str) -> str:
    """Another self-signed certificate with the same CN and address (what an impostor could present);
    its host path under *node*'s root."""
    d = node.root.join("/etc/hotsync-test/rogue")
    d.mkdir(parents=True, exist_ok=True)
    make_certificate(d / "rogue.crt", d / "rogue.key", common_name="hotsync_repl", addresses=[address])
    return "/etc/hotsync-test/rogue/rogue.crt"


def wrong_password_file(node) -> str:
    p = node.root.join("/etc/hotsync-test/repl/wrong-password")
    p.write_text("not-the-password\n")
    os.chmod(p, 0o600)
    return "/etc/hotsync-test/repl/wrong-password"


def module_pair(make, prefix: str, **engine_kw):
    """The body of a module's ``pair`` fixture: a master (127.0.0.2, with the bank) and a replica (127.0.0.3),
    servers made by ``make(prefix, address)`` and started, closed at the end."""
    a = make(f"{prefix}-a-", "127.0.0.2").start().configure()
    b = make(f"{prefix}-b-", "127.0.0.3").start().configure()
    create_bank(a)
    p = ReplPair(a, b, **engine_kw)
    try:
        yield p
    finally:
        p.close()


def fresh_pair(pair, make, prefix: str, **engine_kw):
    """The body of a ``fresh`` fixture: a pair whose master never replicated (the module's own if no test used
    it yet, else a new master beside the module's replica)."""
    if pair.fresh:
        pair.fresh = False
        yield pair
        return
    import shutil

    a = make(f"{prefix}-c-", "127.0.0.2").start().configure()
    create_bank(a)
    try:
        yield ReplPair(a, pair.replica, **engine_kw)
    finally:
        a.stop()
        shutil.rmtree(a.root.path, ignore_errors=True)

