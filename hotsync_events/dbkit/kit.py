"""The database kit's common parts: the commit protocol, tool runner, manifests and the Dump factories.

A plugin that owns a database declares it with one call in its ``hotsync_dumps`` hook::

    from hotsync_events.dbkit import DUMP_DIR, Postgres, postgres_dump

    @hookimpl
    def hotsync_dumps(db, root):
        server = Postgres(root, socket_dir="/run/mattermost-pg", port=55434, user="postgres")
        yield postgres_dump("mattermost", f"{DUMP_DIR}/mattermost.pgdump", server, databases=("mattermost",))

The built-in ``mysql`` and ``postgresql`` plugins dump every database of the host's main servers the
same way. Every dump file is self-contained (data, users/roles and a row-count manifest in one file),
so the sync ships one file per dump and a torn set of files can never be restored.

Commit protocol (:class:`Staged`): the dump is written to ``.<name>.tmp-<pid>`` beside its target,
checked (exit codes, the tool's completion marker, the dump's own listing), fsynced, then renamed over
the previous good dump and the directory fsynced. A failed, killed or incomplete dump raises
:class:`DatabaseError` and leaves the last good dump as it was.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from dataclasses import dataclass, replace
from typing import IO, TYPE_CHECKING, Any

from hotsync_events import hookimpl
from hotsync_events.childproc import alive, die_with_parent
from hotsync_events.fsutil import fsync_dir
from hotsync_events.paths import Root, root_from
from hotsync_events.types import Dump, HealthCheck, Replica, SchemaFile, SyncPath

if TYPE_CHECKING:      # the engines import this module; they are loaded lazily below
    from hotsync_events.dbkit.engine import Engine
    from hotsync_events.dbkit.mariadb import MariaDB
    from hotsync_events.dbkit.pgsql import Postgres

__all__ = ["DUMP_DIR", "REPLICATION_DIR", "DatabaseError", "HostServer", "Staged", "database_mode", "databases_enabled",
           "engine_dump", "mariadb_dump", "postgres_dump", "replica_link", "root_of", "run_tool", "work_dir"]

#: where the built-in plugins keep their dumps (a host path; the sync ships each dump file)
DUMP_DIR = "/var/lib/hotsync/dumps"
#: where each engine keeps this host's replication files (``<dir>/<engine>/``: TLS copies, passfile, state);
#: never pushed (the whole HotSync state directory is refused by the push)
REPLICATION_DIR = "/var/lib/hotsync/replication"
MANIFEST_FORMAT = 1


class DatabaseError(Exception):
    """A dump or restore that failed. The message names the server (engine and socket) and the cause."""


# ------------------------------------------------------------------------------------------ the root
def root_of(db) -> Root:
    """The root a config database lives under (``<root>/var/lib/hotsync/db/<name>``), else $HOTSYNC_ROOT.

    Kept for plugins written before every hook was given ``root``: take the hook's ``root`` instead."""
    path = Path(getattr(db, "path", "") or "")
    parts = path.parent.parts
    if parts[-4:] == ("var", "lib", "hotsync", "db"):
        return Root(Path(*parts[:-4]))
    return root_from(None)


# ------------------------------------------------------------------------------------------ commit
class Staged:
    """A temp file beside *target* that becomes *target* only through :meth:`commit`.

    Stale temp files of dead processes (a dump killed with its parent) are removed on entry.
    """

    def __init__(self, target: Path) -> None:
        self.target = Path(target)
        self.path = self.target.with_name(f".{self.target.name}.tmp-{os.getpid()}")
        self.committed = False

    def __enter__(self) -> Staged:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.target.parent.glob(f".{self.target.name}.tmp-*"):
            pid = stale.name.rpartition("-")[2]
            if pid.isdigit() and (int(pid) == os.getpid() or not alive(pid)):
                _unlink(stale)
        return self

    def commit(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(self.path, 0o600)
        os.replace(self.path, self.target)
        fsync_dir(self.target.parent)
        self.committed = True

    def __exit__(self, *exc) -> None:
        if not self.committed:
            _unlink(self.path)


@contextmanager
def work_dir(near: Path, prefix: str = ".hotsync-work") -> Iterator[Path]:
    """A private (0700) scratch directory in *near*, removed after; also on the same file system (dumps
    can be large). Its name carries the pid, so ones left by a killed process are removed next time."""
    near.mkdir(parents=True, exist_ok=True)
    for stale in near.glob(f"{prefix}-*-*"):
        pid = stale.name[len(prefix) + 1:].partition("-")[0]
        if pid.isdigit() and not alive(pid):
            shutil.rmtree(stale, ignore_errors=True)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir=near))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# ------------------------------------------------------------------------------------------ tools
def run_tool(argv: Sequence[str], *, server: str, what: str, stdout: IO | int | None = subprocess.PIPE,
             stdin: IO | int | None = subprocess.DEVNULL, env: dict | None = None,
             timeout: float | None = None, ok_codes: Iterable[int] = (0,)) -> subprocess.CompletedProcess:
    """Run one client tool (an argument list, never a shell) and raise DatabaseError unless it exits OK.

    The error names *server*, says *what* was being done, how the tool ended (exit code or the signal
    that killed it) and the last lines it wrote on stderr.
    """
    try:
        cp = subprocess.run(list(argv), stdout=stdout, stdin=stdin, stderr=subprocess.PIPE, env=env,
                            timeout=timeout, preexec_fn=die_with_parent())
    except FileNotFoundError:
        raise DatabaseError(f"{server}: cannot {what}: program {argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise DatabaseError(f"{server}: cannot {what}: {Path(argv[0]).name} took more than {timeout:.0f} s") from None
    if cp.returncode not in tuple(ok_codes):
        raise DatabaseError(f"{server}: cannot {what}: {describe_exit(argv[0], cp.returncode)}"
                            + stderr_tail(cp.stderr))
    return cp


def describe_exit(program: str, code: int) -> str:
    name = Path(program).name
    if code < 0:
        try:
            return f"{name} was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"{name} was killed by signal {-code}"
    return f"{name} exited {code}"


def stderr_tail(err: bytes | str | None, lines: int = 6) -> str:
    if not err:
        return ""
    text = err.decode("utf-8", "replace") if isinstance(err, bytes) else err
    tail = [ln for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return (": " + " | ".join(tail)) if tail else ""


def find_program(*names: str, dirs: Sequence[str] = ()) -> str:
    """The first of *names* found in *dirs*, then on PATH; else the first name (run_tool reports it)."""
    for d in dirs:
        for n in names:
            p = Path(d) / n
            if p.is_file() and os.access(p, os.X_OK):
                return str(p)
    for n in names:
        found = shutil.which(n)
        if found:
            return found
    return names[0]


def read_secret(root: Root, host_path: str, *, server: str, prop: str) -> str | None:
    """The password in the file *host_path* (under the root); None when no file is configured."""
    if not host_path:
        return None
    path = root.join(host_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatabaseError(f"{server}: password file {host_path} ({prop}) does not exist") from None
    except OSError as exc:
        raise DatabaseError(f"{server}: cannot read password file {host_path} ({prop}): {exc.strerror}") from None
    text = text.rstrip("\r\n")
    if "\n" in text or "\r" in text or "\0" in text:
        raise DatabaseError(f"{server}: password file {host_path} ({prop}) must hold one line")
    return text


def start_and_wait(server, spawn: Callable[[], None], *, wait: float,
                   starting: Sequence[str] = ("not running",)) -> None:
    """Bring up *server* (an engine with ping, root, unit, label) unless it answers already.

    A server that is down ("not running" in the ping's error) is started through systemd on the real
    root, else by *spawn* (the engine's process back-end), then pinged until it answers; an error
    holding one of *starting* means "not up yet", any other error ends the wait. DatabaseError when it
    still does not answer after *wait* seconds (naming the last error seen).
    """
    try:
        server.ping()
        return
    except DatabaseError as exc:
        if "not running" not in str(exc):
            raise
    if systemd_running(server.root):
        run_tool(["systemctl", "start", server.unit], server=server.label, what=f"start {server.unit}", timeout=300)
    else:
        spawn()
    last: list[str] = []

    def up() -> bool:
        try:
            server.ping()
            return True
        except DatabaseError as exc:
            last[:] = [str(exc)]
            return not any(s in str(exc) for s in starting)
    if not wait_until(up, seconds=wait):
        raise DatabaseError(f"{server.label}: started but not answering after {wait:.0f} s"
                            + (f": {last[0]}" if last else ""))
    server.ping()


def wait_until(check, *, seconds: float, step: float = 0.2) -> bool:
    """Call *check* until it returns True or *seconds* pass (bounded in time and count)."""
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / step) + 2):
        if check():
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(step)
    return False


def systemd_running(root: Root) -> bool:
    """Whether servers are started through systemd: only for the real root, with systemd as PID 1."""
    return str(root.path) == "/" and os.path.isdir("/run/systemd/system") and shutil.which("systemctl") is not None


# ------------------------------------------------------------------------------------------ manifests
def manifest(engine: str, server: str, databases: dict[str, dict[str, int]], *, whole_server: bool,
             **extra) -> dict:
    """The row counts a dump holds, per database and table, as recorded at dump time."""
    return {"format": MANIFEST_FORMAT, "engine": engine, "server": server, "whole_server": whole_server,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "databases": {db: dict(sorted(t.items())) for db, t in sorted(databases.items())}, **extra}


def check_counts(server: str, expected: dict[str, dict[str, int]], actual: dict[str, dict[str, int]]) -> None:
    """Raise DatabaseError naming every table whose restored row count differs from the manifest."""
    wrong = []
    for db, tables in sorted(expected.items()):
        for table, rows in sorted(tables.items()):
            got = actual.get(db, {}).get(table)
            if got != rows:
                wrong.append(f"{db}.{table}: {got if got is not None else 'missing'} rows, dump had {rows}")
    if wrong:
        more = f" (and {len(wrong) - 10} more)" if len(wrong) > 10 else ""
        raise DatabaseError(f"{server}: restored row counts differ from the dump's manifest: "
                            + "; ".join(wrong[:10]) + more)


def dumps_json(data: dict) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# ------------------------------------------------------------------------------------------ factories
def mariadb_dump(name: str, path: str, server: MariaDB, *, databases: Sequence[str] | None = None,
                 priority: int = 50) -> Dump:
    """A Dump of *server*: all its databases (*databases* None) or the named ones, with users and grants."""
    return engine_dump(name, path, server, databases=databases, priority=priority)


def postgres_dump(name: str, path: str, server: Postgres, *, databases: Sequence[str] | None = None,
                  priority: int = 50) -> Dump:
    """A Dump of *server*: globals (roles) and all its databases (*databases* None) or the named ones."""
    return engine_dump(name, path, server, databases=databases, priority=priority)


def engine_dump(name: str, path: str, server: Engine, *, databases: Sequence[str] | None = None,
                priority: int = 50) -> Dump:
    """A :class:`~hotsync_events.types.Dump` of any :class:`~hotsync_events.dbkit.engine.Engine`: ``run``
    writes a checked dump of *databases* (None: all) to ``ctx.target``, ``restore`` loads ``ctx.target``
    into the server of the host it runs on and checks its row counts."""
    dbs = None if databases is None else tuple(databases)

    def run(ctx) -> None:          # the contract: None on success, an exception on failure
        server.with_root(ctx.root).dump(Path(ctx.target), dbs, log=ctx.log)

    def restore(ctx) -> None:
        server.with_root(ctx.root).restore(Path(ctx.target), log=ctx.log)

    return Dump(name=name, path=path, priority=priority, run=run, restore=restore)


def databases_enabled(db) -> bool:
    """Whether ``hotsync databases`` is on (the default): a plugin then gives its dumps."""
    return (db.getprop("hotsync", "databases") or "enabled") != "disabled"


def database_mode(db, key: str) -> str:
    """``<key> DatabaseMode``: ``dump`` (the default: dumped at each sync, restored at the promote) or
    ``replica`` (the slave's server streams from the master's; promoted at the promote)."""
    return db.getprop(key, "DatabaseMode") or "dump"


def replica_link(db, key: str, engine: str, port: int, *, role: str | None = None):
    """The replication channel of server *key* as this host sees it, from the configuration database, or None
    while the pair is not configured (no role, no peer address or no ``<key> ReplicationAddress``).

    The master's address is the master's ``ReplicationAddress`` (as the slave knows it: ``hotsync MasterHost``)
    and the replica's the slave's (``hotsync SlaveHost`` on the master). The channel's files live in
    ``REPLICATION_DIR/channel-<engine>/`` (root's; the engine's own state directory, ``REPLICATION_DIR/<engine>``,
    belongs to the server's user): ``host.crt``/``host.key`` (this host's), ``peer.crt`` (the peer's, pinned),
    ``password`` (derived from the two host keys: docs/replication.md); ``<key> ReplicationSync on`` is the
    synchronous mode. *role*: the channel as it will be once this host has that role (a slave's after its
    promote: ``role="master"``, the old master its replica).
    """
    from hotsync_events.dbkit.replica import Link

    now = db.getprop("hotsync", "role") or ""
    own = db.getprop(key, "ReplicationAddress") or ""
    peer = db.getprop("hotsync", "MasterHost" if now == "slave" else "SlaveHost") or ""
    role = role or now
    if now not in ("master", "slave") or role not in ("master", "slave") or not own or not peer:
        return None
    master, replica = (peer, own) if role == "slave" else (own, peer)
    d = f"{REPLICATION_DIR}/channel-{engine}"
    return Link(master_host=master, replica_host=replica, port=port,
                password_file=f"{d}/password",
                cert=f"{d}/host.crt", key=f"{d}/host.key", peer_cert=f"{d}/peer.crt",
                synchronous=(db.getprop(key, "ReplicationSync") or "off") == "on")


# ------------------------------------------------------------------------------------------ host servers
@dataclass(frozen=True)
class HostServer:
    """The hooks of a built-in plugin for one of the host's main database servers (``mysql``, ``postgresql``).

    The plugin module states what differs (its config key, schema file, dump and how the config
    database describes the server) and exports these bound hooks as its own module attributes.
    Detection (kept simple): the server counts as present when its key's ``status`` is not
    ``disabled`` and its data directory exists under the root. The raw data directory is always
    excluded from the push: only the consistent dump travels.
    """

    key: str                                   # config key (status, DataDir, ...)
    spec: Path                                 # the plugin's configuration schema
    dump_name: str
    dump_path: str
    server: Callable[..., Any]                 # server(db, root=None) -> MariaDB | Postgres
    dump: Callable[..., Dump]                  # mariadb_dump or postgres_dump
    default_datadir: str
    #: replication(server, db, root) -> the kit's ReplicationEngine for *server* (None: dumps only)
    replication: Callable[..., Any] | None = None
    #: replication_port(db) -> the TCP port the replica dials on the master's server
    replication_port: Callable[..., int] | None = None

    def replica_mode(self, db) -> bool:
        """``<key> DatabaseMode replica`` and the plugin knows how (:attr:`replication`)."""
        return self.replication is not None and database_mode(db, self.key) == "replica"

    def present(self, db, root=None) -> bool:
        """Whether this host has the server to dump: not disabled, and its data directory exists."""
        if (db.getprop(self.key, "status") or "enabled") == "disabled":
            return False
        srv = self.server(db, root)
        return srv.root.join(srv.datadir).is_dir()

    @hookimpl
    def hotsync_config_schema(self):
        yield SchemaFile("configuration", self.spec)

    @hookimpl
    def hotsync_dumps(self, db, root):
        if not (self.present(db, root) and databases_enabled(db)):
            return                                                  # disabled: none taken or shipped
        dump = self.dump(self.dump_name, self.dump_path, self.server(db, root))
        if not self.replica_mode(db):
            yield dump
        elif (db.getprop(self.key, "ReplicaDumps") or "on") == "on":
            # beside the replica, a logical backup at each sync (a DROP TABLE reaches the replica at once, not
            # the last dump); never restored by the promote, which promotes the replica
            yield replace(dump, at_promote=False)

    @hookimpl
    def hotsync_replicas(self, db, root):
        """The server as a streaming replica (``DatabaseMode replica``) instead of a dump."""
        if self.replication is not None and self.present(db, root) and self.replica_mode(db):
            engine = self.replication(self.server(db, root), db, root)
            port = self.replication_port(db) if self.replication_port is not None else 0
            slave = db.getprop("hotsync", "role") == "slave"
            yield Replica(name=self.dump_name, engine=engine, key=self.key,
                          link=replica_link(db, self.key, engine.engine, port) if port else None,
                          master_link=replica_link(db, self.key, engine.engine, port, role="master")
                          if port and slave else None)

    @hookimpl
    def hotsync_sync_paths(self, db):
        datadir = db.getprop(self.key, "DataDir") or self.default_datadir
        yield SyncPath(datadir.rstrip("/") + "/", exclude=True)

    @hookimpl
    def hotsync_health_checks(self, db, root):
        """The drill's check: after the promote restored the dump, the server answers a query."""
        if self.present(db, root) and databases_enabled(db):
            srv = self.server(db, root)

            def query(ctx):
                here = srv.with_root(ctx.root)
                here.ping()
                ctx.log(f"{here.label} answers SELECT 1")
            yield HealthCheck(f"{self.dump_name}-query", query, timeout=30, priority=40)

    @hookimpl
    def hotsync_detect(self, root, db):
        """Active only on a host that has this server (see :meth:`present`): no server, no paths, no dump."""
        return self.present(db, root)


def __getattr__(attr: str):  # the engines import this module: load them on first use
    if attr == "MariaDB":
        from hotsync_events.dbkit.mariadb import MariaDB
        return MariaDB
    if attr == "Postgres":
        from hotsync_events.dbkit.pgsql import Postgres
        return Postgres
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
