"""Streaming replication of the host's database servers: the engine-neutral interface and shared tools.

The core knows no database engine. Each engine module implements :class:`ReplicationEngine`:

* :mod:`hotsync_events.dbkit.replica_mariadb` -- MariaDB GTID replication (binlog, ``CHANGE MASTER``), seeded
  from a ``mariadb-backup`` stream, optional semi-synchronous mode;
* :mod:`hotsync_events.dbkit.replica_pgsql` -- PostgreSQL physical streaming replication through a
  replication slot, seeded with ``pg_basebackup``, re-paired with ``pg_rewind``, optional synchronous mode.

Who calls what (one host is the master, the other its replica; every call runs on the host it names):

============================  =======  ==================================================================
call                          host     what it does
============================  =======  ==================================================================
``prepare_master(link)``      master   settings, the replication account, TLS pins, (PG) the slot; live
``take_seed(target)``         master   MariaDB: a ``mariadb-backup`` stream to ship; PostgreSQL: None
``seed(link, source)``        replica  copy the master's data (the shipped stream / pg_basebackup), follow it
``configure_replica(link)``   replica  re-point an already seeded replica (password, pins, address)
``status(link)``              replica  connected, lag (seconds, bytes, transactions), last error, needs seed
``master_status(link)``       master   is the replica streaming, slot state, synchronous state
``promote(timeout, dry_run)`` replica  replay all it received (bounded), become master; the takeover position
``repair(link, save_dir, …)`` old mst  save what it committed after the takeover, then follow the new master
``set_synchronous(link, on)`` both     MariaDB semi-sync (both sides), PostgreSQL synchronous_standby_names
============================  =======  ==================================================================

Both hosts hold one key and one self-signed certificate per engine (:func:`make_certificate`: CN = the
replication account, subjectAltName = the host's replication address) and pin the peer's certificate:
the peer's certificate *is* the only CA either side trusts. The same files serve both roles: the server
certificate while master, the client certificate while replica, so nothing changes at a promote.

Rules every engine keeps: commands are argument lists (no shell); passwords travel in 0600 files or on
a client's stdin, never on a command line; every file is written atomically (temp, fsync, rename); every
wait is bounded in count and time; every error names the server.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import pwd
import re
import secrets
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from collections.abc import Callable, Iterable, Sequence

from hotsync_events.childproc import die_with_parent
from hotsync_events.paths import Root
from hotsync_events.fsutil import atomic_write
# where a re-pair saves a divergence (its own module; the names stay importable from here)
from hotsync_events.dbkit.replica_saving import dated_folder, find_saved, publish, saved_folder, sha256_file

from hotsync_events.dbkit.kit import DatabaseError, describe_exit, stderr_tail

__all__ = ["Link", "MasterStatus", "Position", "Prepared", "Promoted", "Repaired", "ReplicaStatus",
           "ReplicationEngine", "ReplicationError", "ServerControl", "make_certificate", "subject_of",
           "dated_folder", "saved_folder", "publish", "find_saved", "sha256_file"]

#: default replication account (PostgreSQL: the client certificate's CN must be this name)
DEFAULT_USER = "hotsync_repl"
#: default channel name (PostgreSQL: the slot and the replica's application_name)
DEFAULT_NAME = "hotsync"


class ReplicationError(DatabaseError):
    """A replication step that failed; the message names the server and the cause."""


# ------------------------------------------------------------------------------------------ values
@dataclass(frozen=True)
class Link:
    """One replication channel, as *this* host sees it (each host passes its own files).

    ``master_host``/``port``: where the replica connects (the master's address and the server's TCP port);
    ``replica_host``: the one address the master accepts the replication account from. ``password_file``:
    a host path of a 0600 file holding the channel password (one line; both hosts hold the same).
    ``cert``/``key``: this host's certificate and key; ``peer_cert``: the peer's certificate, pinned (the
    only CA trusted on the channel). ``name``: PostgreSQL slot and application_name. ``peer_subject``: when
    ``peer_cert`` is the certificate that *issued* the peer's (a pair's host identity, docs/replication.md
    "Pairing"), the subject the peer's own certificate has; empty: ``peer_cert`` is the peer's own.
    """

    master_host: str
    replica_host: str
    port: int
    password_file: str
    cert: str
    key: str
    peer_cert: str
    user: str = DEFAULT_USER
    name: str = DEFAULT_NAME
    synchronous: bool = False
    peer_subject: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,31}", self.user):
            raise ValueError(f"replication account {self.user!r}: lower-case letters, digits and _ only")
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.name):
            raise ValueError(f"channel name {self.name!r}: lower-case letters, digits and _ only")
        for host in (self.master_host, self.replica_host):
            if not re.fullmatch(r"[A-Za-z0-9.:_-]{1,253}", host):
                raise ValueError(f"address {host!r} is not an IP address or host name")
        if not 0 < int(self.port) < 65536:
            raise ValueError(f"port {self.port!r} out of range")

    def reversed(self, *, port: int, cert: str | None = None, key: str | None = None,
                 peer_cert: str | None = None) -> Link:
        """The channel after a promote: the replica's host is the master now (its server's *port*)."""
        return Link(master_host=self.replica_host, replica_host=self.master_host, port=port,
                    password_file=self.password_file, cert=cert or self.cert, key=key or self.key,
                    peer_cert=peer_cert or self.peer_cert, user=self.user, name=self.name,
                    synchronous=self.synchronous, peer_subject=self.peer_subject)


@dataclass(frozen=True)
class Position:
    """Where a server is in the replication stream: a GTID list (MariaDB) or an LSN and timeline (PG)."""

    engine: str
    value: str                  # '0-1-105,1-1-7' / '0/3000060'
    timeline: int | None = None

    def __str__(self) -> str:
        return self.value if self.timeline is None else f"{self.value} (timeline {self.timeline})"

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Prepared:
    """What :meth:`ReplicationEngine.prepare_master` did and what it still needs."""

    server: str
    ready: bool                                  # the master accepts the replica now
    restart_needed: list[str] = field(default_factory=list)   # settings that wait for a server restart
    changed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    config_file: str = ""

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class ReplicaStatus:
    """The replica side (``role`` says what the server is now: replica, master, standalone)."""

    server: str
    role: str
    state: str                          # streaming, connecting, stopped, error, needs-seed, not-configured, master
    connected: bool = False
    lag_seconds: float | None = None    # how old the newest applied change is (0 when caught up)
    lag_bytes: int | None = None        # PG: master's known WAL end - replayed; MariaDB: relay log not applied
    lag_transactions: int | None = None  # MariaDB: received but not applied (GTID distance)
    received: str | None = None
    applied: str | None = None
    last_error: str | None = None
    needs_seed: bool = False
    synchronous: bool | None = None
    master: str | None = None
    detail: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class MasterStatus:
    """The master side: whether its replica streams, and what holds WAL/binlog for it."""

    server: str
    role: str                           # master, replica (the server is not a master now), standalone
    replica_connected: bool = False
    replica_state: str | None = None    # PG pg_stat_replication.state; MariaDB the dump thread state
    synchronous: str = "off"            # off, on (acknowledging), waiting (configured, no ack: commits wait
    #                                     (PostgreSQL) or fell back to asynchronous (MariaDB))
    position: str | None = None         # master's current GTID / LSN
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    needs_seed: bool = False            # PG: the slot was invalidated (wal_status lost)
    slot: dict | None = None
    detail: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Promoted:
    """Result of :meth:`ReplicationEngine.promote` (for the promote's journal) or of its dry run."""

    server: str
    dry_run: bool
    position: Position | None           # taken over at (dry run: what it would take over at now)
    waited: float = 0.0                 # seconds spent waiting for the replay
    caught_up: bool = True              # everything received was replayed
    lag_seconds: float | None = None
    not_applied: str | None = None      # received but not yet applied (dry run) / dropped incomplete tail
    would_lose: str = ""                # what the master may have committed that never arrived
    notes: list[str] = field(default_factory=list)
    #: the server was no replica when asked (nothing taken over by this call: it already writes)
    already_master: bool = False
    #: and this call finished a promote an earlier call began (it had taken over, then stopped)
    finished_earlier: bool = False

    def to_json(self) -> dict:
        d = asdict(self)
        d["position"] = self.position.to_json() if self.position else None
        return d


@dataclass
class Repaired:
    """Result of :meth:`ReplicationEngine.repair`: what was saved, how the old master was brought back."""

    server: str
    diverged: bool                      # it had committed transactions after the takeover position
    transactions: int                   # how many (0 when not diverged)
    saved_to: str | None                # the folder holding them (None when nothing to save)
    method: str                         # 'follow' (no rewind needed), 'rewind', 'seed', 'needs-seed'
    state: str                          # 'replica' (streaming/connecting) or 'needs-seed'
    report: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------ interface
@runtime_checkable
class ServerControl(Protocol):
    """How an engine stops and starts its server (systemd on the real root, else a process back-end)."""

    def start(self, *, log: Callable[[str], None] = print) -> None: ...

    def stop(self, *, log: Callable[[str], None] = print) -> None: ...


@runtime_checkable
class ReplicationEngine(Protocol):
    """One engine's replication, as the sync, the status, the promote and the re-pair will call it."""

    engine: str

    @property
    def label(self) -> str: ...

    def prepare_master(self, link: Link, *, log: Callable[[str], None] = print) -> Prepared: ...

    def take_seed(self, target: Path, *, log: Callable[[str], None] = print) -> Path | None: ...

    def seed(self, link: Link, source: Path | None = None, *, log: Callable[[str], None] = print,
             keep_previous: str | None = None) -> Position: ...

    def configure_replica(self, link: Link, *, log: Callable[[str], None] = print) -> ReplicaStatus: ...

    def status(self, link: Link | None = None) -> ReplicaStatus: ...

    def master_status(self, link: Link) -> MasterStatus: ...

    def promote(self, *, timeout: float = 60.0, dry_run: bool = False, force: bool = False,
                log: Callable[[str], None] = print) -> Promoted: ...

    def repair(self, link: Link, save_dir: Path, takeover: Position, *, seed: Path | None = None,
               log: Callable[[str], None] = print) -> Repaired: ...

    def set_synchronous(self, link: Link, on: bool, *, log: Callable[[str], None] = print) -> None: ...


# ------------------------------------------------------------------------------------------ processes
def clean_env(**extra: str) -> dict:
    """This process's environment without libpq's and the MariaDB client's variables, plus *extra*.

    A server started with PGPASSWORD in its environment would use it for its own replication
    connection instead of the channel's password file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MYSQL", "MARIADB"))}
    env.update(extra)
    return env


def run(argv: Sequence[str], *, server: str, what: str, input: bytes | None = None, env: dict | None = None,
        timeout: float = 600, stdout=subprocess.PIPE, ok_codes: Iterable[int] = (0,),
        cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run one tool (an argument list) with *input* on its stdin; DatabaseError naming *server* unless OK.

    Secrets are passed this way (stdin) or in 0600 files, never in *argv*.
    """
    try:
        cp = subprocess.run(list(argv), input=input, stdout=stdout, stderr=subprocess.PIPE, env=env,
                            stdin=None if input is not None else subprocess.DEVNULL, timeout=timeout, cwd=cwd,
                            preexec_fn=die_with_parent())
    except FileNotFoundError:
        raise ReplicationError(f"{server}: cannot {what}: program {argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise ReplicationError(f"{server}: cannot {what}: {Path(argv[0]).name} took more than "
                               f"{timeout:.0f} s") from None
    if cp.returncode not in tuple(ok_codes):
        raise ReplicationError(f"{server}: cannot {what}: {describe_exit(argv[0], cp.returncode)}"
                               + stderr_tail(cp.stderr))
    return cp


_DAEMONS: list[subprocess.Popen] = []


def spawn_daemon(argv: Sequence[str], *, log_file: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    """Start a server process in its own session (it outlives us); we keep its Popen so it is reaped
    (no zombie, no warning) when it ends while we run."""
    _DAEMONS[:] = [p for p in _DAEMONS if p.poll() is None]
    out = open(log_file, "ab") if log_file is not None else subprocess.DEVNULL  # noqa: SIM115 -- closed below, after the fork
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                                close_fds=True, env=env if env is not None else clean_env())
    finally:
        if not isinstance(out, int):
            out.close()
    _DAEMONS.append(proc)
    return proc


def as_user(owner: pwd.struct_passwd | None) -> list[str]:
    """The argv prefix that runs a tool as *owner* (when we are root and it is another user)."""
    if owner is None or os.geteuid() != 0 or owner.pw_uid == 0:
        return []
    return ["runuser", "-u", owner.pw_name, "--"]


def owner_of(path: Path) -> pwd.struct_passwd:
    return pwd.getpwuid(path.stat().st_uid)


def wait_for(check: Callable[[], Any], *, seconds: float, step: float = 0.2) -> Any:
    """Call *check* until it returns something true or *seconds* pass (bounded in time and count);
    its last result."""
    deadline = time.monotonic() + seconds
    result = None
    for _ in range(int(seconds / step) + 2):
        result = check()
        if result or time.monotonic() >= deadline:
            break
        time.sleep(step)
    return result


# ------------------------------------------------------------------------------------------ files
def write_private(path: Path, data: bytes | str, *, owner: pwd.struct_passwd | None = None,
                  mode: int = 0o600) -> None:
    """Atomically write *path* (mode *mode*, owned by *owner* when we are root)."""
    uid = gid = None
    if owner is not None and os.geteuid() == 0:
        uid, gid = owner.pw_uid, owner.pw_gid
    atomic_write(path, data, mode=mode, uid=uid, gid=gid)


def private_dir(path: Path, owner: pwd.struct_passwd | None = None) -> Path:
    """*path* as a 0700 directory owned by *owner* (parents 0755)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    if owner is not None and os.geteuid() == 0:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return path


def read_password(path: Path, *, server: str) -> str:
    """The channel password: the one line of the 0600 file *path* (never group/world readable)."""
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReplicationError(f"{server}: the replication password file {path} does not exist") from None
    except OSError as exc:
        raise ReplicationError(f"{server}: cannot read the replication password file {path}: {exc.strerror}") from None
    if st.st_mode & 0o077:
        raise ReplicationError(f"{server}: the replication password file {path} is readable by others "
                               f"(mode {st.st_mode & 0o777:04o}); make it 0600")
    text = text.rstrip("\r\n")
    if not text or any(c in text for c in "\r\n\0"):
        raise ReplicationError(f"{server}: the replication password file {path} must hold one non-empty line")
    return text


def install_tls(link: Link, root, dest: Path, owner: pwd.struct_passwd | None, *, server: str) -> dict[str, Path]:
    """Copy the link's certificate, key and pinned peer certificate into *dest* (owned by the server's
    user, the key 0600), atomically; ``{'cert', 'key', 'peer'}`` paths. Each must be one PEM object."""
    out = {}
    for name, host_path, kind in (("cert", link.cert, "CERTIFICATE"), ("key", link.key, "PRIVATE KEY"),
                                  ("peer", link.peer_cert, "CERTIFICATE")):
        src = root.join(host_path)
        try:
            data = src.read_bytes()
        except OSError as exc:
            raise ReplicationError(f"{server}: cannot read the replication {name} file {host_path}: "
                                   f"{exc.strerror}") from None
        if kind.encode() not in data:
            raise ReplicationError(f"{server}: {host_path} holds no PEM {kind.lower()}")
        target = dest / {"cert": "own.crt", "key": "own.key", "peer": "peer.crt"}[name]
        if not target.is_file() or target.read_bytes() != data:
            write_private(target, data, owner=owner, mode=0o600 if name == "key" else 0o644)
        out[name] = target
    return out


def auth_changed(state: Path, *parts: bytes | str, owner: pwd.struct_passwd | None = None) -> bool:
    """Whether what the master accepts on the channel (pin, password) differs from the last time; records it.
    A master whose pin or password changed cuts the replication sessions that logged in with the old ones."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    path = state / "master-auth"
    try:
        old = path.read_text().strip()
    except OSError:
        old = None
    new = h.hexdigest()
    if old != new:
        write_private(path, new + "\n", owner=owner)
    return old is not None and old != new


def subject_of(cert: Path, *, issuer: bool = False) -> str:
    """The certificate's subject (or issuer) in OpenSSL's one-line form ``/O=.../CN=...``."""
    cp = run(["openssl", "x509", "-in", str(cert), "-noout", "-issuer" if issuer else "-subject",
              "-nameopt", "compat"], server=str(cert), what="read the certificate", timeout=30)
    text = cp.stdout.decode().strip()
    return text.split("=", 1)[1] if "=" in text else text


def fingerprint(cert: Path) -> str:
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return "SHA256:" + ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def make_certificate(cert: Path, key: Path, *, common_name: str, addresses: Sequence[str], days: int = 3650,
                     owner: pwd.struct_passwd | None = None, issuer: tuple[Path, Path] | None = None,
                     unit: str | None = None) -> str:
    """A new EC key and certificate for one host's end of a replication channel.

    CN = *common_name* (the replication account: PostgreSQL's ``clientcert=verify-full`` compares them);
    subjectAltName = *addresses* (IPs or DNS names: MariaDB's MASTER_SSL_VERIFY_SERVER_CERT and libpq's
    ``verify-full`` check the name the replica dials). Self-signed, with a random OU so two hosts' subjects
    differ (MariaDB's ``REQUIRE SUBJECT`` pins the peer's); or, with *issuer* ``(certificate, key)``, signed
    by that certificate (the host's own identity, which the peer already pins) with OU *unit*. Written
    atomically; the key 0600. Its fingerprint.
    """
    sans = []
    for a in addresses:
        try:
            ipaddress.ip_address(a)
            sans.append(f"IP:{a}")
        except ValueError:
            sans.append(f"DNS:{a}")
    ou = unit or f"{socket.gethostname()[:40] or 'host'}-{secrets.token_hex(4)}"
    if not re.fullmatch(r"[A-Za-z0-9 ._:-]{1,64}", ou):
        raise ValueError(f"certificate unit {ou!r}: letters, digits, space and ._:- only")
    signing = (["-CA", str(issuer[0]), "-CAkey", str(issuer[1]), "-addext", "basicConstraints=critical,CA:FALSE"]
               if issuer else ["-addext", "basicConstraints=critical,CA:TRUE"])
    with tempfile.TemporaryDirectory(prefix=".hotsync-cert-", dir=cert.parent if cert.parent.is_dir() else None) as tmp:
        k, c = Path(tmp) / "k", Path(tmp) / "c"
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(k), "-out", str(c), "-days", str(days), "-subj",
             f"/O=hotsync/OU={ou}/CN={common_name}", "-addext", "subjectAltName=" + ",".join(sans), *signing],
            server="openssl", what="make the replication certificate", timeout=60)
        write_private(key, k.read_bytes(), owner=owner, mode=0o600)
        write_private(cert, c.read_bytes(), owner=owner, mode=0o644)
    return fingerprint(cert)


def answers_within(server: Any, seconds: float) -> str | None:
    """Wait (bounded) until *server* answers a ping: None once it does, else the last error it gave."""
    last: list[str] = []

    def up() -> bool:
        try:
            server.ping()
            return True
        except DatabaseError as exc:
            last[:] = [str(exc)]
            return False

    return None if wait_for(up, seconds=seconds, step=0.2) else (last[0] if last else "")


class OnServer:
    """What a replication engine (a frozen dataclass with a ``server`` field) shows of the server it manages."""

    server: Any

    @property
    def label(self) -> str:
        return self.server.label

    @property
    def root(self) -> Root:
        return self.server.root


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
