"""Private MariaDB and PostgreSQL servers for the database tests, each inside a throw-away host root.

Nothing here touches a system service: each server gets a fresh data directory under its own root
(``var/lib/mysql``, ``var/lib/postgresql/main``), listens on a unix socket under that root only
(``run/mysqld/mysqld.sock``, ``run/postgresql/.s.PGSQL.5432``; no TCP), and is killed by the fixture's
finalizer. PostgreSQL refuses to run as root, so when the tests run as root its cluster belongs to
``nobody`` and the server runs as that user.

Each server also configures its root's ``configuration`` database (socket, account, password file), as
an administrator would, so the plugins find it exactly as on a real host.
"""
from __future__ import annotations

import hashlib
import os
import pwd
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hotsync_events.configdb import open_db
from hotsync_events.sync.databases import collect_dumps, take_dumps
from hotsync_events.paths import Root
from hotsync_events.manager import get_plugin_manager, install_schemas
from hotsync_events.types import DumpContext

PG_BIN = Path(sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))[-1]) \
    if Path("/usr/lib/postgresql").is_dir() else Path("/usr/bin")

#: the mark of the tests that pair a master and a slave, each with both servers (see :func:`database_pair`)
NEEDS_DATABASE_PAIR = pytest.mark.skipif(
    not (shutil.which("mariadbd") or Path("/usr/sbin/mariadbd").exists())
    or not (PG_BIN / "initdb").exists() or not shutil.which("stunnel4"),
    reason="needs mariadb-server, postgresql and stunnel4")


def new_root(prefix: str) -> Root:
    """A short-named root under /tmp (unix socket paths must stay under 108 bytes), readable by all."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o755)
    root = Root(path)
    install_schemas(get_plugin_manager(entrypoints=False), root)
    return root


def private_tmpdir(root: Root, name: str, owner: pwd.struct_passwd | None = None) -> Path:
    """``<root>/tmp/<name>``: a server's own temporary directory (0700, *owner*'s when given), never the
    shared /tmp (two servers of one root, master MariaDB and PostgreSQL, each have theirs)."""
    path = root.join("/tmp") / name
    path.parent.mkdir(mode=0o755, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return path


def tmp_env(tmpdir: Path) -> dict:
    """This process's environment with TMPDIR (and TMP, TEMP) pointing at *tmpdir*."""
    return {**os.environ, "TMPDIR": str(tmpdir), "TMP": str(tmpdir), "TEMP": str(tmpdir)}


def set_props(root: Root, key: str, props: dict) -> None:
    """Set *props* of *key* (a service record, created when missing) in the root's configuration db."""
    db = open_db("configuration", root)
    with db.transaction() as txn:
        if txn.record(key) is None:
            txn.set(key, "service", props)
        else:
            txn.setprop(key, props)


def _wait(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up in {seconds} s")


def kill_pid(pid: int, seconds: float = 20, sig: int = signal.SIGTERM) -> None:
    """*sig* (SIGTERM), wait (bounded), then SIGKILL one process we started."""
    for signum, wait in ((sig, seconds), (signal.SIGKILL, 5)):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                pass
            time.sleep(0.05)


class MariaDBServer:
    """``mariadb-install-db`` + ``mariadbd --skip-networking`` under *root*; root's password in a file."""

    def __init__(self, root: Root, password: str = "Maria-pw-1") -> None:
        self.root = root
        self.password = password
        self.datadir = root.join("/var/lib/mysql")
        self.socket = root.join("/run/mysqld/mysqld.sock")
        self.pidfile = root.join("/run/mysqld/mysqld.pid")   # also where a restore's process back-end puts it
        self.tmpdir = private_tmpdir(root, "mysqld")
        self.proc: subprocess.Popen | None = None

    def install(self) -> None:
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        # --tmpdir (passed on to the bootstrap mariadbd) and TMPDIR: the bootstrap's temporary tables stay
        # in this root; in /tmp they collided with other servers' when tests ran in parallel
        cp = subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}", "--user=root",
                             "--skip-test-db", "--auth-root-authentication-method=normal", f"--tmpdir={self.tmpdir}"],
                            capture_output=True, text=True, timeout=120, env=tmp_env(self.tmpdir))
        assert cp.returncode == 0, cp.stderr

    def start(self) -> MariaDBServer:
        if not self.datadir.is_dir():
            self.install()
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        log = self.root.join("/var/log/mysqld-test.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.socket}",
             f"--pid-file={self.pidfile}", "--skip-networking", "--user=root", f"--log-error={log}",
             f"--tmpdir={self.tmpdir}", "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=2"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env=tmp_env(self.tmpdir))
        _wait(lambda: self.socket.exists() and self._ping(), 60, "mariadbd")
        return self

    def _ping(self) -> bool:
        for pw in (self.password, None):
            args = ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "-e", "SELECT 1"]
            if pw:
                args.insert(3, f"--password={pw}")
            if subprocess.run(args, capture_output=True, timeout=30).returncode == 0:
                return True
        return False

    def configure(self) -> MariaDBServer:
        """Give root a password (stored in a 0600 file under the root) and point the config db at it."""
        subprocess.run(["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "-e",
                        "ALTER USER root@localhost IDENTIFIED BY '"
                        + self.password.replace("\\", "\\\\").replace("'", "''") + "'"], capture_output=True, timeout=30)
        pwfile = self.root.join("/etc/hotsync-test/mysql.pw")
        pwfile.parent.mkdir(parents=True, exist_ok=True)
        pwfile.write_text(self.password + "\n")
        os.chmod(pwfile, 0o600)
        set_props(self.root, "mysqld", {"Socket": "/run/mysqld/mysqld.sock", "DumpUser": "root",
                              "PasswordFile": "/etc/hotsync-test/mysql.pw", "DataDir": "/var/lib/mysql"})
        return self

    def sql(self, statement: str, db: str | None = None, check: bool = True) -> list[list[str]]:
        args = ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", f"--password={self.password}",
                "--batch", "--skip-column-names", "-e", statement]
        if db:
            args.append(db)
        cp = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if check and cp.returncode != 0:
            raise AssertionError(f"SQL failed: {statement[:200]}: {cp.stderr}")
        return [ln.split("\t") for ln in cp.stdout.splitlines() if ln]

    def client(self, db: str | None = None) -> subprocess.Popen:
        """A long-running ``mariadb`` fed statements on stdin (the write load)."""
        args = ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", f"--password={self.password}",
                "--batch", "--force"]
        if db:
            args.append(db)
        return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                text=True, bufsize=1)

    def pids(self) -> list[int]:
        pids = [self.proc.pid] if self.proc else []
        try:
            pids.append(int(self.pidfile.read_text().strip()))
        except (OSError, ValueError):
            pass
        return sorted(set(pids))

    def stop(self) -> None:
        for pid in self.pids():
            kill_pid(pid)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None


class PostgresServer:
    """``initdb`` + ``postgres -k <socket dir> -c listen_addresses=`` under *root*, as an unprivileged user."""

    def __init__(self, root: Root, password: str = "Pg-pw-1:x") -> None:
        self.root = root
        self.password = password
        self.datadir = root.join("/var/lib/postgresql/main")
        self.sockdir = root.join("/run/postgresql")
        self.proc: subprocess.Popen | None = None
        self.user = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
        self.tmpdir = private_tmpdir(root, "postgresql", self.user)   # initdb's and the server's TMPDIR, as for MariaDB

    def _as_user(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.user.pw_name, "--", *argv] if self.user else argv

    def _chown(self, path: Path) -> None:
        if self.user:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def install(self) -> None:
        for d in (self.datadir.parent, self.sockdir):
            d.mkdir(parents=True, exist_ok=True)
            self._chown(d)
        pw = self.root.join("/run/initdb.pw")
        pw.write_text(self.password + "\n")
        self._chown(pw)
        cp = subprocess.run(self._as_user([str(PG_BIN / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                                           "--auth-local=scram-sha-256", "--auth-host=reject", f"--pwfile={pw}",
                                           "-E", "UTF8", "--locale=C", "--no-sync"]),
                            capture_output=True, text=True, timeout=120, env=tmp_env(self.tmpdir))
        pw.unlink()
        assert cp.returncode == 0, cp.stderr

    def start(self) -> PostgresServer:
        if not (self.datadir / "PG_VERSION").exists():
            self.install()
        log = self.root.join("/var/log/postgresql-test.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(
                self._as_user([str(PG_BIN / "postgres"), "-D", str(self.datadir), "-k", str(self.sockdir),
                               "-p", "5432", "-c", "listen_addresses=", "-c", "fsync=off",
                               "-c", "shared_buffers=32MB", "-c", "max_connections=40"]),
                stdin=subprocess.DEVNULL, stdout=fh, stderr=fh, start_new_session=True, env=tmp_env(self.tmpdir))
        _wait(lambda: self._ping(), 60, "postgres")
        return self

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGHOST=str(self.sockdir), PGPORT="5432", PGUSER="postgres", PGPASSWORD=self.password)
        return env

    def _ping(self) -> bool:
        return subprocess.run([str(PG_BIN / "psql"), "-X", "-d", "postgres", "-c", "SELECT 1"], env=self.env(),
                              capture_output=True, timeout=30).returncode == 0

    def configure(self) -> PostgresServer:
        pwfile = self.root.join("/etc/hotsync-test/pg.pw")
        pwfile.parent.mkdir(parents=True, exist_ok=True)
        pwfile.write_text(self.password + "\n")
        os.chmod(pwfile, 0o600)
        set_props(self.root, "postgresql", {"SocketDir": "/run/postgresql", "TCPPort": "5432", "DumpUser": "postgres",
                                  "PasswordFile": "/etc/hotsync-test/pg.pw", "RunAs": "",
                                  "DataDir": "/var/lib/postgresql/main"})
        return self

    def sql(self, statement: str, db: str = "postgres", check: bool = True) -> list[list[str]]:
        cp = subprocess.run([str(PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                             "-d", db, "-c", statement], env=self.env(), capture_output=True, text=True, timeout=120)
        if check and cp.returncode != 0:
            raise AssertionError(f"SQL failed: {statement[:200]}: {cp.stderr}")
        return [ln.split("\t") for ln in cp.stdout.splitlines() if ln]

    def client(self, db: str = "postgres") -> subprocess.Popen:
        return subprocess.Popen([str(PG_BIN / "psql"), "-X", "-q", "-d", db], env=self.env(), stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def pids(self) -> list[int]:
        """The postmaster first (runuser, its parent, ignores SIGINT and exits with it)."""
        pids = []
        try:
            pids.append(int((self.datadir / "postmaster.pid").read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            pass
        if self.proc is not None and self.proc.pid not in pids:
            pids.append(self.proc.pid)
        return pids

    def stop(self) -> None:
        for pid in self.pids():
            kill_pid(pid, sig=signal.SIGINT)   # fast shutdown: ends open sessions
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None


def remove_root(root: Root) -> None:
    shutil.rmtree(root.path, ignore_errors=True)


# ------------------------------------------------------------------------------------------ fixtures' bodies
@contextmanager
def private_server(cls, prefix: str, password: str) -> Iterator:
    """A started, configured *cls* (MariaDBServer or PostgresServer) in a fresh root; stopped and removed after."""
    root = new_root(prefix)
    srv = cls(root, password=password)
    try:
        srv.start().configure()
        yield srv
    finally:
        srv.stop()
        remove_root(root)


def server_fixtures(cls, prefix: str, master_password: str, slave_password: str) -> tuple:
    """Module-scoped ``master`` and ``slave`` fixtures: one private *cls* server each (see :func:`private_server`).

    In a test module: ``master, slave = server_fixtures(MariaDBServer, "hsmy", "pw-1", "pw-2")``.
    """
    @pytest.fixture(scope="module")
    def master():
        with private_server(cls, f"{prefix}-m-", master_password) as srv:
            yield srv

    @pytest.fixture(scope="module")
    def slave():
        with private_server(cls, f"{prefix}-s-", slave_password) as srv:
            yield srv

    return master, slave


@contextmanager
def database_pair(pair_cls, prefix: str, setup: Callable | None = None, make: Callable | None = None) -> Iterator[tuple]:
    """``(pair, master MariaDB, slave MariaDB, master PostgreSQL, slave PostgreSQL)`` on a paired master and
    slave (*pair_cls*: sync_pair's or promote_pair's Pair); *setup(pair)* runs after the pairing, before the
    servers start. Every server is stopped and the pair closed and removed after."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(base, 0o755)                       # PostgreSQL runs as nobody: it must reach its root
    pair = pair_cls(base)
    servers = []
    try:
        for r in (pair.master, pair.slave):
            os.chmod(r, 0o755)
            install_schemas(get_plugin_manager(entrypoints=False), Root(r))
        pair.pair()
        if setup is not None:
            setup(pair)
        if make is not None:          # other servers (the replication tests' nodes)
            m_my, s_my, m_pg, s_pg = make(pair)
        else:
            m_my, s_my = MariaDBServer(Root(pair.master), "Master-my-1"), MariaDBServer(Root(pair.slave), "Slave-my-1")
            m_pg, s_pg = PostgresServer(Root(pair.master), "Master-pg-1"), PostgresServer(Root(pair.slave), "Slave-pg-1")
        for srv in (m_my, s_my, m_pg, s_pg):
            servers.append(srv)
            srv.start().configure()
        yield pair, m_my, s_my, m_pg, s_pg
    finally:
        for srv in servers:
            srv.stop()
        pair.close()
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------------------------------ dumps
def plugin_dump(root: Root, name: str, pm=None):
    """``(the Dump plugin *name* gives for *root*, or None; the root's configuration db)``."""
    db = open_db("configuration", root)
    pm = pm if pm is not None else get_plugin_manager(entrypoints=False)
    return {d.name: d for _, d in collect_dumps(pm, db)}.get(name), db


def take_dump(srv, name: str, pm=None) -> Path:
    """Take plugin *name*'s dump of *srv*'s root as the sync does; the dump file's path."""
    dump, db = plugin_dump(srv.root, name, pm)
    assert dump is not None, f"the {name} plugin gave no dump for a host with its server"
    dump.run(DumpContext(root=srv.root, db=db, target=srv.root.join(dump.path), log=lambda m: None))
    return srv.root.join(dump.path)


def ship_dump(master, slave, path: str) -> None:
    """Copy the dump at host path *path* from the master's root to the slave's (what the sync ships)."""
    dst = slave.root.join(path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(master.root.join(path), dst)


def restore_databases(run, slave):
    """``hotsync restore-databases`` on the slave's root (``run``: the conftest fixture)."""
    return run("hotsync", "restore-databases", env={"HOTSYNC_ROOT": str(slave.root.path)}, timeout=300)


def kill_dump_midway(srv, pm, ready: Callable[[], list]) -> tuple[list, bool]:
    """Take the dumps of *srv*'s root (``take_dumps``, as the sync does) in a thread and SIGKILL the pids
    *ready()* returns as soon as it returns some (polled for 30 s at most).
    ``(the errors take_dumps reported, whether the kill was sent)``."""
    errors: list = []
    db = open_db("configuration", srv.root)
    t = threading.Thread(target=lambda: errors.extend(take_dumps(srv.root, db, pm)))
    t.start()
    sent = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = ready()
        if pids:
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            sent = True
            break
        time.sleep(0.002)
    t.join(timeout=60)
    return errors, sent


@contextmanager
def wrong_password(srv) -> Iterator[None]:
    """*srv*'s password file (the one its config db names) holds a wrong password meanwhile."""
    pwfile = srv.root.join("/etc/hotsync-test/" + ("mysql.pw" if isinstance(srv, MariaDBServer) else "pg.pw"))
    good = pwfile.read_text()
    pwfile.write_text("not-the-password\n")
    try:
        yield
    finally:
        pwfile.write_text(good)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def transfer_load(client: subprocess.Popen, begin: str, ddl: Callable[[int], str], seed: int = 6) -> Iterator[None]:
    """Random transfers between accounts 1..2000 of ``accounts`` (the sum stays constant), fed to *client*
    in a thread (bounded to 120 s), with *ddl(n)* every 300 transfers; stopped and the client closed after."""
    stop = threading.Event()
    rng = random.Random(seed)

    def load():
        n = 0
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            a, b, amt = rng.randint(1, 2000), rng.randint(1, 2000), rng.randint(1, 50)
            client.stdin.write(f"{begin}; UPDATE accounts SET bal = bal - {amt} WHERE id = {a}; "
                               f"UPDATE accounts SET bal = bal + {amt} WHERE id = {b}; COMMIT;\n")
            n += 1
            if n % 300 == 0:
                client.stdin.write(ddl(n) + "\n")
            time.sleep(0.0005)

    writer = threading.Thread(target=load, daemon=True)
    writer.start()
    try:
        yield
    finally:
        stop.set()
        writer.join(timeout=10)
        client.stdin.close()
        client.wait(timeout=30)


def dump_restore_rounds(master, slave, run, name: str, *, label: str, check: Callable[[], None], rounds: int = 4,
                        pm=None) -> int:
    """*rounds* times: take plugin *name*'s dump of *master*, ship it, restore it on *slave*, then *check()*.
    A dump that fails (DDL racing the dump tool) must name the server (*label*) and is skipped: the last
    good one stays. The number of dumps taken."""
    good = 0
    for _ in range(rounds):
        try:
            path = take_dump(master, name, pm)
        except Exception as exc:
            assert label in str(exc)
            continue
        good += 1
        ship_dump(master, slave, "/" + str(path.relative_to(master.root.path)))
        cp = restore_databases(run, slave)
        assert cp.returncode == 0, cp.stderr
        check()
        time.sleep(0.2)
    return good
