"""MariaDB GTID replication over TLS for one master and one replica (see :mod:`._replica`).

Master (:meth:`MariaDBReplication.prepare_master`, live): ``server_id``, ``binlog_format=ROW``,
``gtid_strict_mode``, binlog expiry and (synchronous mode) semi-sync ``AFTER_SYNC`` are set with
``SET GLOBAL``; the same settings, plus ``log_bin``, ``ssl_*`` and ``bind_address``, go in a drop-in
option file that the next start reads. ``log_bin``, SSL and networking cannot be turned on in a running
MariaDB: when one is missing the result says ``restart_needed`` (the drop-in is already written). The
replication account ``'hotsync_repl'@'<replica address>'`` gets ``REPLICATION SLAVE`` only, the
password as a hash (``IDENTIFIED BY PASSWORD '*...'``: no clear text reaches the server), and
``REQUIRE SUBJECT <replica cert subject> AND ISSUER <its issuer>``; the server's ``ssl_ca`` is the
replica's self-signed certificate and nothing else, so only the holder of the replica's key can log in.
Accounts of that name from any other host are dropped.

Seed: :meth:`take_seed` streams ``mariadb-backup --backup --stream=xbstream`` from the running master
into one file (InnoDB is copied without stopping writes; the backup records the GTID of its last
change). On the replica :meth:`seed` extracts it beside the data directory, ``--prepare``\\ s it, stops
the server, swaps the directories (two renames), starts it, ``RESET MASTER``, sets ``gtid_slave_pos``
to the backup's GTID and ``CHANGE MASTER TO ... MASTER_USE_GTID=slave_pos, MASTER_SSL=1,
MASTER_SSL_CA=<master's certificate, pinned>, MASTER_SSL_CERT/KEY=<own>, MASTER_SSL_VERIFY_SERVER_CERT=1``.
With ``MASTER_SSL_CA`` set, the 10.11 replica verifies the master's certificate against it (the pin:
another self-signed certificate is refused even with the name check off); ``MASTER_SSL_VERIFY_SERVER_CERT=1``
adds the host-name check, so each host's certificate carries its replication address as subjectAltName
(:func:`._replica.make_certificate`): the pinned certificate presented for another address is refused
too. (Checked: rogue CA with VERIFY=0 refused; no CA with VERIFY=0 accepts anything; the pinned
certificate for 127.0.0.9 dialled at 127.0.0.2 accepted with VERIFY=0, refused with VERIFY=1.) The
replica runs ``read_only=ON``.

Promote: stop the I/O thread (nothing more arrives), wait (bounded) until the SQL thread has applied
everything received, ``STOP SLAVE; RESET SLAVE ALL; read_only=OFF``; the takeover position is
``gtid_slave_pos``. Re-pair (:meth:`repair`, on the old master): the binlog events after the takeover
GTID are what it committed that the new master never had; they are saved (raw binlog files, the
replayable ``mariadb-binlog`` output, a decoded listing, a report) before anything changes, then the
old master is re-seeded from the new master (or, when nothing diverged, simply follows it).

The password the replica logs in with reaches ``mariadb`` on its stdin (``CHANGE MASTER``), never a
command line; MariaDB itself keeps it in ``master.info`` in the data directory.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterator, Optional

from hotsync_events.paths import Root

from ._dbtools import DatabaseError, Staged, find_program, systemd_running, work_dir
from ._mariadb import MariaDB
from ._replica import (Link, MasterStatus, Position, Prepared, Promoted, Repaired, ReplicaStatus, ReplicationError,
                       ServerControl, auth_changed, find_saved, fingerprint, install_tls, owner_of, pid_alive,
                       private_dir, publish,
                       read_password, recover_swap, run, saved_folder, sha256_file, spawn_daemon, subject_of, swap_dirs,
                       wait_for, write_private)

__all__ = ["MariaDBReplication", "MariaDBControl", "gtid_distance", "parse_gtids"]

BINLOG_BASENAME = "hotsync-bin"
RELAY_BASENAME = "hotsync-relay-bin"


def quote(value: str) -> str:
    """A MariaDB string literal (backslashes doubled: the default sql_mode reads them as escapes)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def native_hash(password: str) -> str:
    """``*<hex>``: the mysql_native_password hash, as ``IDENTIFIED BY PASSWORD`` takes it."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode("utf-8")).digest()).hexdigest().upper()


def parse_gtids(text: str | None) -> dict[int, tuple[int, int]]:
    """``'0-1-105,1-2-7'`` -> ``{domain: (server_id, seq_no)}``."""
    out: dict[int, tuple[int, int]] = {}
    for part in (text or "").replace("\n", ",").split(","):
        part = part.strip()
        if not part or part == "NULL":
            continue
        d, s, n = part.split("-")
        out[int(d)] = (int(s), int(n))
    return out


def format_gtids(gtids: dict[int, tuple[int, int]]) -> str:
    return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(gtids.items()))


def gtid_distance(ahead: str | None, behind: str | None) -> int:
    """Transactions in *ahead* that *behind* does not have (per domain, by sequence number)."""
    a, b = parse_gtids(ahead), parse_gtids(behind)
    return sum(max(0, n - b.get(d, (0, 0))[1]) for d, (_, n) in a.items())


def _unescape(value: str) -> str:
    """A value of ``mariadb --batch`` output (it escapes tab, newline, backslash and NUL)."""
    if "\\" not in value:
        return value
    return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "0": "\0", "\\": "\\"}.get(m.group(1), m.group(1)),
                  value)


def explain_io_error(errno: int, message: str) -> tuple[str, bool]:
    """(a sentence for the sysadmin, whether the replica must be re-seeded) for an I/O thread error."""
    msg = message.strip()
    if errno == 1045:
        return (f"the master refused the replication login (wrong password, or this host's address or "
                f"certificate is not the one the master allows): {msg}", False)
    if errno == 2026:
        return (f"TLS handshake failed: the master's certificate is not the pinned one (or the master "
                f"refused this host's certificate): {msg}", False)
    if errno == 2013 and any(w in msg for w in ("authentication", "authorization", "reading initial")):
        return ("the master cut the connection during TLS/authentication (it does not trust this host's "
                f"certificate): {msg}", False)
    if errno in (2003, 2002, 2005):
        return f"cannot reach the master: {msg}", False
    if errno == 1236:
        return (f"the master cannot send what this replica needs (its binary logs were purged, or the "
                f"replica diverged): re-seed it: {msg}", True)
    return msg, False


class MariaDBControl:
    """Stop and start a MariaDB server: systemd on the real root, else ``mariadbd --defaults-file`` as the
    data directory's owner (the options file is the one the host's server reads, with our drop-in
    included), and ``SHUTDOWN`` to stop."""

    def __init__(self, repl: "MariaDBReplication") -> None:
        self.repl = repl

    def stop(self, *, log=print) -> None:
        srv = self.repl.server
        if systemd_running(srv.root):
            run(["systemctl", "stop", srv.unit], server=srv.label, what=f"stop {srv.unit}", timeout=300)
            return
        try:
            with srv._client() as cli:
                pid_file = self.repl._vars(cli, "pid_file")["pid_file"]
                try:
                    pid = int(Path(pid_file).read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    pid = None
                srv.query(cli, "SHUTDOWN", what="shut the server down")
        except DatabaseError as exc:
            if "not running" in str(exc):
                return
            raise
        log(f"{srv.label}: shutting the server down")

        def gone() -> bool:
            if pid is not None:
                return not pid_alive(pid)
            try:
                srv.ping()
                return False
            except DatabaseError:
                return True
        if not wait_for(gone, seconds=self.repl.stop_timeout, step=0.1):
            raise ReplicationError(f"{srv.label}: the server is still running {self.repl.stop_timeout:.0f} s "
                                   "after SHUTDOWN")

    def start(self, *, log=print) -> None:
        srv = self.repl.server
        if systemd_running(srv.root):
            run(["systemctl", "start", srv.unit], server=srv.label, what=f"start {srv.unit}", timeout=300)
        else:
            datadir = srv.root.join(srv.datadir)
            argv = [find_program("mariadbd", "mysqld", dirs=("/usr/sbin",)),
                    f"--defaults-file={srv.root.join(self.repl.defaults_file)}"]
            if os.geteuid() == 0 and datadir.is_dir():
                argv.append(f"--user={owner_of(datadir).pw_name}")
            log(f"{srv.label}: starting the server ({Path(argv[0]).name} --defaults-file={self.repl.defaults_file})")
            spawn_daemon(argv)
        last: list[str] = []

        def up() -> bool:
            try:
                srv.ping()
                return True
            except DatabaseError as exc:
                last[:] = [str(exc)]
                return False
        if not wait_for(up, seconds=self.repl.start_timeout, step=0.2):
            hint = last[0] if last else ""
            if "access denied" in hint:
                hint += (" -- after a seed the server holds the master's accounts: this host's password "
                         "file must hold the master's password for that account (or use unix_socket)")
            raise ReplicationError(f"{srv.label}: the server does not answer {self.repl.start_timeout:.0f} s "
                                   f"after its start: {hint}")


@dataclass(frozen=True)
class MariaDBReplication:
    """The replication side of one MariaDB server (the host's ``mysqld``; host paths under its root).

    ``dropin``: the option file this module owns (the server must read it: Debian's ``my.cnf`` includes
    ``mariadb.conf.d/``); ``defaults_file``: what the process back-end starts ``mariadbd`` with;
    ``state_dir``: private files (TLS copies readable by the server's user, the channel's state).
    ``server_id`` 0 derives one from this host's replication address.
    """

    server: MariaDB
    dropin: str = "/etc/mysql/mariadb.conf.d/90-hotsync-replication.cnf"
    defaults_file: str = "/etc/mysql/my.cnf"
    state_dir: str = "/var/lib/hotsync/replication/mariadb"
    server_id: int = 0
    binlog_keep_seconds: int = 3 * 86400
    semi_sync_timeout_ms: int = 10000
    connect_retry: int = 2
    start_timeout: float = 120.0
    stop_timeout: float = 120.0
    control: Optional[ServerControl] = None

    engine: ClassVar[str] = "mariadb"

    @property
    def label(self) -> str:
        return self.server.label

    @property
    def root(self) -> Root:
        return self.server.root

    def _control(self) -> ServerControl:
        return self.control if self.control is not None else MariaDBControl(self)

    # ---------------------------------------------------------------------------------- SQL
    @contextmanager
    def _cli(self) -> Iterator[list[str]]:
        with self.server._client() as cli:
            yield cli

    def _sql(self, cli: list[str], sql: str, *, what: str) -> list[list[str]]:
        return self.server.query(cli, sql, what=what)

    def _sql_stdin(self, cli: list[str], sql: str, *, what: str) -> None:
        """Statements fed on stdin (for the ones that carry a secret)."""
        argv = [find_program("mariadb", "mysql"), *cli, "--batch", "--skip-column-names"]
        try:
            run(argv, server=self.label, what=what, input=sql.encode("utf-8"), timeout=120)
        except DatabaseError as exc:
            raise self.server._fail(what, exc) from None

    def _dicts(self, cli: list[str], sql: str, *, what: str) -> list[dict[str, str | None]]:
        argv = [find_program("mariadb", "mysql"), *cli, "--batch", "-e", sql]
        try:
            cp = run(argv, server=self.label, what=what, timeout=120)
        except DatabaseError as exc:
            raise self.server._fail(what, exc) from None
        lines = cp.stdout.decode("utf-8", "surrogateescape").splitlines()
        if not lines:
            return []
        head = lines[0].split("\t")
        out = []
        for ln in lines[1:]:
            vals = [None if v == "NULL" else _unescape(v) for v in ln.split("\t")]
            out.append(dict(zip(head, vals)))
        return out

    def _vars(self, cli: list[str], *names: str) -> dict[str, str | None]:
        sql = "SELECT " + ", ".join(f"@@GLOBAL.{n} AS {n}" for n in names)
        rows = self._dicts(cli, sql, what="read server variables")
        return rows[0] if rows else {}

    def _status_vars(self, cli: list[str], like: str) -> dict[str, str]:
        return {r[0]: r[1] for r in self._sql(cli, f"SHOW GLOBAL STATUS LIKE {quote(like)}", what="read status")
                if len(r) >= 2}

    def _slave_status(self, cli: list[str]) -> dict[str, str | None] | None:
        rows = self._dicts(cli, "SHOW SLAVE STATUS", what="read the replica status")
        return rows[0] if rows else None

    # ---------------------------------------------------------------------------------- state, files
    def _state_path(self) -> Path:
        return self.root.join(self.state_dir)

    def _read_state(self) -> dict:
        try:
            return json.loads((self._state_path() / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def _owner(self, cli: list[str] | None = None):
        datadir = self.root.join(self.server.datadir)
        if not datadir.is_dir() and cli is not None:
            datadir = Path(self._vars(cli, "datadir")["datadir"] or datadir)
        return owner_of(datadir)

    def _server_id(self, tls: dict[str, Path]) -> int:
        """``server_id``: given, else derived from this host's certificate (stable whatever its role, and
        distinct from the peer's, whose certificate is the pin)."""
        if self.server_id:
            return self.server_id

        def derive(cert: Path) -> tuple[int, str]:
            fp = fingerprint(cert)
            return int(fp.replace("SHA256:", "").replace(":", "")[:12], 16) % 4_000_000_000 + 1, fp
        (mine, fm), (theirs, ft) = derive(tls["cert"]), derive(tls["peer"])
        if mine == theirs and fm > ft:
            mine = mine % 4_000_000_000 + 1
        return mine

    def _write_config(self, *, role: str, own: str, peer: str, port: int, synchronous: bool,
                      tls: dict[str, Path], bind: str, keep_log_bin: bool, server_id: int, log=print) -> None:
        """The drop-in (atomically) and ``state.json``: everything the next start needs for this role."""
        lines = [f"# Written by hotsync (MariaDB replication, role {role}, peer {peer}).",
                 "# Replaced as a whole at every change; do not edit.",
                 "[mariadbd]",
                 f"server_id = {server_id}",
                 "binlog_format = ROW",
                 "gtid_strict_mode = ON",
                 "log_slave_updates = ON",
                 f"relay_log = {RELAY_BASENAME}",
                 f"binlog_expire_logs_seconds = {self.binlog_keep_seconds}",
                 f"ssl_cert = {tls['cert']}", f"ssl_key = {tls['key']}", f"ssl_ca = {tls['peer']}",
                 "skip_networking = OFF",
                 *([f"bind_address = {bind}"] if bind else []),
                 f"read_only = {'ON' if role == 'replica' else 'OFF'}",
                 f"rpl_semi_sync_master_enabled = {'ON' if synchronous and role == 'master' else 'OFF'}",
                 "rpl_semi_sync_master_wait_point = AFTER_SYNC",
                 f"rpl_semi_sync_master_timeout = {self.semi_sync_timeout_ms}",
                 "rpl_semi_sync_master_wait_no_slave = OFF",
                 f"rpl_semi_sync_slave_enabled = {'ON' if synchronous and role == 'replica' else 'OFF'}"]
        if not keep_log_bin:
            lines[4:4] = [f"log_bin = {BINLOG_BASENAME}", f"log_bin_index = {BINLOG_BASENAME}.index"]
        write_private(self.root.join(self.dropin), "\n".join(lines) + "\n", mode=0o644)
        state = {"role": role, "own": own, "peer": peer, "port": port, "synchronous": synchronous,
                 "server_id": server_id, "bind": bind, "keep_log_bin": keep_log_bin,
                 "tls": {k: str(v) for k, v in tls.items()}}
        write_private(self._state_path() / "state.json", json.dumps(state, indent=1, sort_keys=True))

    def _rewrite_role(self, role: str, *, synchronous: bool | None = None, log=print) -> None:
        st = self._read_state()
        if not st:
            return
        self._write_config(role=role, own=st["own"], peer=st["peer"], port=st["port"],
                           synchronous=st["synchronous"] if synchronous is None else synchronous,
                           tls={k: Path(v) for k, v in st["tls"].items()}, bind=st["bind"],
                           keep_log_bin=st["keep_log_bin"], server_id=st["server_id"], log=log)

    @staticmethod
    def _bind_union(current: str | None, own: str) -> str:
        parts = [p.strip() for p in (current or "").split(",") if p.strip()]
        if any(p in ("*", "0.0.0.0", "::") for p in parts):
            return ",".join(parts)
        if own not in parts:
            parts.append(own)
        return ",".join(parts)

    def _configure(self, cli: list[str], link: Link, *, role: str,
                   log=print) -> tuple[dict, dict[str, Path], list[str]]:
        """Install the TLS files, write the drop-in for *role*, apply what is dynamic; (variables, tls,
        what waits for a restart)."""
        v = self._vars(cli, "log_bin", "log_bin_basename", "have_ssl", "ssl_cert", "ssl_ca", "skip_networking",
                       "bind_address", "port", "datadir", "log_slave_updates", "version")
        own, peer = (link.master_host, link.replica_host) if role == "master" else (link.replica_host, link.master_host)
        owner = owner_of(Path(v["datadir"]))
        state = private_dir(self._state_path(), owner)
        tls = install_tls(link, self.root, state, owner, server=self.label)
        keep_log_bin = v["log_bin"] == "1" and not str(v["log_bin_basename"] or "").endswith("/" + BINLOG_BASENAME)
        # a master must listen on the address its replica dials; a replica keeps what it has
        bind = self._bind_union(v["bind_address"], own) if role == "master" else (v["bind_address"] or "")
        sid = self._server_id(tls)
        self._write_config(role=role, own=own, peer=peer, port=link.port, synchronous=link.synchronous, tls=tls,
                           bind=bind, keep_log_bin=keep_log_bin, server_id=sid, log=log)
        restart = []
        if v["log_bin"] != "1":
            restart.append("log_bin (the binary log is off)")
        if v["have_ssl"] != "YES" or v["ssl_cert"] != str(tls["cert"]) or v["ssl_ca"] != str(tls["peer"]):
            restart.append("ssl_cert/ssl_key/ssl_ca (TLS files are read at start)")
        else:
            self._sql(cli, "FLUSH NO_WRITE_TO_BINLOG SSL",
                      what="reload the TLS certificate and the pinned peer certificate")
        if role == "master" and (v["skip_networking"] == "1" or bind != (v["bind_address"] or "")):
            restart.append(f"bind_address={bind} (the server does not listen on {own})")
        sets = [f"server_id = {sid}", "gtid_strict_mode = ON", "binlog_format = 'ROW'",
                f"binlog_expire_logs_seconds = {self.binlog_keep_seconds}",
                "rpl_semi_sync_master_wait_point = 'AFTER_SYNC'",
                f"rpl_semi_sync_master_timeout = {self.semi_sync_timeout_ms}",
                "rpl_semi_sync_master_wait_no_slave = OFF"]
        self._sql(cli, "SET GLOBAL " + ", ".join(sets), what="set the replication variables")
        return v, tls, restart

    # ---------------------------------------------------------------------------------- master
    def prepare_master(self, link: Link, *, log=print) -> Prepared:
        pw = read_password(self.root.join(link.password_file), server=self.label)
        with self._cli() as cli:
            v, tls, restart = self._configure(cli, link, role="master", log=log)
            if int(v["port"] or 0) != int(link.port):
                raise ReplicationError(f"{self.label}: the server listens on port {v['port']}, the replication "
                                       f"link says {link.port}")
            ss = self._slave_status(cli)
            if ss is not None and ss.get("Slave_SQL_Running") == "Yes":
                raise ReplicationError(f"{self.label}: this server is a replica of {ss.get('Master_Host')}: "
                                       "promote it before preparing it as a master")
            self._sql(cli, f"SET GLOBAL rpl_semi_sync_master_enabled = {'ON' if link.synchronous else 'OFF'}",
                      what="set semi-synchronous replication")
            subject, issuer = subject_of(tls["peer"]), subject_of(tls["peer"], issuer=True)
            account = f"{quote(link.user)}@{quote(link.replica_host)}"
            require = f"REQUIRE SUBJECT {quote(subject)} AND ISSUER {quote(issuer)}"
            ident = f"IDENTIFIED BY PASSWORD {quote(native_hash(pw))}"
            # sql_log_bin=0: the account is this master's, for its peer (a promoted replica makes its own);
            # unlogged, it also never waits for a semi-sync acknowledgement nor gets a GTID
            self._sql_stdin(cli, "SET SESSION sql_log_bin = 0;\n"
                                 f"CREATE USER IF NOT EXISTS {account} {ident} {require};\n"
                                 f"ALTER USER {account} {ident} {require};\n"
                                 f"GRANT REPLICATION SLAVE ON *.* TO {account};\n",
                            what=f"create the replication account {link.user}@{link.replica_host}")
            if auth_changed(self._state_path(), tls["peer"].read_bytes(), native_hash(pw), link.replica_host,
                            owner=owner_of(Path(v["datadir"]))):
                for row in self._sql(cli, "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE "
                                          f"'Binlog Dump%' AND USER = {quote(link.user)}",
                                     what="list replica sessions"):
                    self._sql(cli, f"KILL CONNECTION {int(row[0])}", what="cut a replica session that logged in "
                                                                        "with the old pin or password")
            others = [r[0] for r in self._sql(cli, f"SELECT Host FROM mysql.user WHERE User = {quote(link.user)}",
                                              what="list the replication account's hosts")
                      if r and r[0] != link.replica_host]
            for host in others:
                self._sql_stdin(cli, f"SET SESSION sql_log_bin = 0; DROP USER {quote(link.user)}@{quote(host)};",
                                what=f"drop {link.user}@{host}")
        changed = [f"drop-in {self.dropin}", f"account {link.user}@{link.replica_host} (REPLICATION SLAVE, "
                   f"REQUIRE SUBJECT {subject})"] + [f"dropped {link.user}@{h}" for h in others]
        notes = []
        if v.get("log_slave_updates") != "1":
            notes.append("log_slave_updates is off until the next restart (needed once this host is a replica)")
        log(f"{self.label}: prepared as master for {link.replica_host}"
            + (f"; RESTART NEEDED for: {', '.join(restart)}" if restart else ""))
        return Prepared(server=self.label, ready=not restart, restart_needed=restart, changed=changed, notes=notes,
                        config_file=self.dropin)

    def take_seed(self, target: Path, *, log=print) -> Path:
        """Stream a ``mariadb-backup`` of the running server into *target* (committed atomically)."""
        target = Path(target)
        with self._cli() as cli, Staged(target) as staged, work_dir(target.parent, ".hotsync-mbk") as tmp:
            datadir = self._vars(cli, "datadir")["datadir"]
            argv = [find_program("mariadb-backup", "mariabackup"), *cli, "--backup", "--stream=xbstream",
                    f"--datadir={datadir}", f"--target-dir={tmp}"]
            with open(staged.path, "wb") as out:
                cp = run(argv, server=self.label, what="take a mariadb-backup seed", stdout=out, timeout=6 * 3600)
            err = cp.stderr.decode("utf-8", "replace")
            if "completed OK!" not in err:
                raise ReplicationError(f"{self.label}: mariadb-backup did not report 'completed OK!'")
            m = re.search(r"GTID of the last change '([^']*)'", err)
            staged.commit()
        log(f"{self.label}: seed taken into {target} ({target.stat().st_size} bytes, GTID "
            f"{m.group(1) if m else 'unknown'})")
        return target

    def master_status(self, link: Link) -> MasterStatus:
        with self._cli() as cli:
            v = self._vars(cli, "gtid_binlog_pos", "rpl_semi_sync_master_enabled", "read_only")
            ss = self._slave_status(cli)
            dumps = self._dicts(cli, "SELECT HOST, STATE, TIME FROM information_schema.PROCESSLIST WHERE COMMAND "
                                     f"LIKE 'Binlog Dump%' AND USER = {quote(link.user)}", what="list replicas")
            semi = self._status_vars(cli, "Rpl_semi_sync_master_%")
        connected = bool(dumps)
        sync = "off"
        if v.get("rpl_semi_sync_master_enabled") == "1":
            sync = "on" if semi.get("Rpl_semi_sync_master_status") == "ON" and \
                int(semi.get("Rpl_semi_sync_master_clients") or 0) > 0 else "waiting"
        return MasterStatus(server=self.label, role="replica" if ss else "master", replica_connected=connected,
                            replica_state=dumps[0]["STATE"] if dumps else None, synchronous=sync,
                            position=v.get("gtid_binlog_pos"),
                            detail={"replicas": dumps, "semi_sync": semi})

    # ---------------------------------------------------------------------------------- replica
    def seed(self, link: Link, source: Optional[Path] = None, *, log=print) -> Position:
        if source is None or not Path(source).is_file():
            raise ReplicationError(f"{self.label}: MariaDB is seeded from a mariadb-backup stream taken on the "
                                   "master (take_seed) and shipped here; "
                                   + ("none given" if source is None else f"no file {source}"))
        datadir = self.root.join(self.server.datadir)
        aside = datadir.with_name(datadir.name + ".pre-seed")
        recover_swap(datadir, aside, server=self.label, log=log)
        owner = owner_of(datadir)
        new = datadir.with_name(datadir.name + ".seed-new")
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir(mode=0o750)
        try:
            with open(source, "rb") as src:
                _run_stdin_file([find_program("mbstream"), "-x", "-C", str(new)], src, server=self.label,
                                what=f"extract the seed {source}")
            cp = run([find_program("mariadb-backup", "mariabackup"), "--prepare", f"--target-dir={new}"],
                     server=self.label, what="prepare the seed (mariadb-backup --prepare)", timeout=6 * 3600)
            if "completed OK!" not in cp.stderr.decode("utf-8", "replace"):
                raise ReplicationError(f"{self.label}: mariadb-backup --prepare did not report 'completed OK!'")
            gtid = _backup_gtid(new, self.label)
            _check_versions(new, self.label)
            if os.geteuid() == 0:
                for p in [new, *new.rglob("*")]:
                    os.lchown(p, owner.pw_uid, owner.pw_gid)
            # the drop-in for the replica role first: the server must start read-only
            with self._maybe_cli() as cli:
                if cli is not None:
                    self._configure(cli, link, role="replica", log=log)
                else:
                    self._configure_offline(link, role="replica", owner=owner, log=log)
            ctl = self._control()
            ctl.stop(log=log)
            swap_dirs(datadir, new, aside)
            try:
                ctl.start(log=log)
            except Exception:
                log(f"{self.label}: the seeded server does not start: putting the previous data directory back")
                try:
                    ctl.stop(log=log)
                except Exception:
                    pass
                failed = datadir.with_name(datadir.name + ".seed-failed")
                shutil.rmtree(failed, ignore_errors=True)
                os.rename(datadir, failed)
                os.rename(aside, datadir)
                ctl.start(log=log)
                raise
        finally:
            shutil.rmtree(new, ignore_errors=True)
        with self._cli() as cli:
            self._sql(cli, "STOP SLAVE", what="stop replication")
            self._sql(cli, "RESET SLAVE ALL", what="forget the copied replication settings")
            self._sql(cli, "RESET MASTER", what="start a fresh binary log")
            self._sql(cli, f"SET GLOBAL gtid_slave_pos = {quote(gtid)}", what="set the seed's GTID position")
        shutil.rmtree(aside, ignore_errors=True)
        log(f"{self.label}: seeded from {source} at GTID {gtid}")
        self.configure_replica(link, log=log)
        return Position(self.engine, gtid)

    @contextmanager
    def _maybe_cli(self) -> Iterator[list[str] | None]:
        try:
            self.server.ping()
        except DatabaseError as exc:
            if "not running" not in str(exc):
                raise
            yield None
            return
        with self._cli() as cli:
            yield cli

    def _configure_offline(self, link: Link, *, role: str, owner, log=print) -> None:
        own, peer = (link.master_host, link.replica_host) if role == "master" else (link.replica_host, link.master_host)
        state = private_dir(self._state_path(), owner)
        tls = install_tls(link, self.root, state, owner, server=self.label)
        old = self._read_state()
        self._write_config(role=role, own=own, peer=peer, port=link.port, synchronous=link.synchronous, tls=tls,
                           bind=self._bind_union(old.get("bind", "127.0.0.1"), own) if role == "master"
                           else old.get("bind", ""),
                           keep_log_bin=old.get("keep_log_bin", False), server_id=self._server_id(tls), log=log)

    def configure_replica(self, link: Link, *, log=print, wait: float = 15.0) -> ReplicaStatus:
        """Point this (seeded) server at the master with the link's address, account, password and pins;
        wait (bounded) until the I/O thread connects or reports an error; the status then."""
        pw = read_password(self.root.join(link.password_file), server=self.label)
        with self._cli() as cli:
            _, tls, restart = self._configure(cli, link, role="replica", log=log)
            self._sql(cli, "SET GLOBAL read_only = ON", what="make the replica read-only")
            self._sql(cli, f"SET GLOBAL rpl_semi_sync_slave_enabled = {'ON' if link.synchronous else 'OFF'}, "
                           "rpl_semi_sync_master_enabled = OFF", what="set semi-synchronous replication")
            change = ", ".join([
                f"MASTER_HOST = {quote(link.master_host)}", f"MASTER_PORT = {int(link.port)}",
                f"MASTER_USER = {quote(link.user)}", f"MASTER_PASSWORD = {quote(pw)}",
                "MASTER_USE_GTID = slave_pos", "MASTER_SSL = 1", f"MASTER_SSL_CA = {quote(str(tls['peer']))}",
                f"MASTER_SSL_CERT = {quote(str(tls['cert']))}", f"MASTER_SSL_KEY = {quote(str(tls['key']))}",
                "MASTER_SSL_VERIFY_SERVER_CERT = 1", f"MASTER_CONNECT_RETRY = {int(self.connect_retry)}",
                "MASTER_HEARTBEAT_PERIOD = 1"])
            self._sql_stdin(cli, f"STOP SLAVE;\nCHANGE MASTER TO {change};\nSTART SLAVE;\n",
                            what=f"point the replica at {link.master_host}:{link.port}")
        if restart:
            log(f"{self.label}: RESTART NEEDED for: {', '.join(restart)}")

        def settled():
            st = self.status(link)
            return st if (st.connected or st.last_error) else None
        st = wait_for(settled, seconds=wait, step=0.2) or self.status(link)
        log(f"{self.label}: replica of {link.master_host}:{link.port}: {st.state}"
            + (f" ({st.last_error})" if st.last_error else ""))
        return st

    def status(self, link: Optional[Link] = None) -> ReplicaStatus:
        with self._cli() as cli:
            ss = self._slave_status(cli)
            v = self._vars(cli, "gtid_slave_pos", "gtid_binlog_pos", "read_only", "rpl_semi_sync_slave_enabled")
            semi = self._status_vars(cli, "Rpl_semi_sync_slave_status") if ss else {}
        if ss is None:
            return ReplicaStatus(server=self.label, role="master" if v.get("read_only") == "0" else "standalone",
                                 state="not-configured", applied=v.get("gtid_binlog_pos"))
        io, sql = ss.get("Slave_IO_Running"), ss.get("Slave_SQL_Running")
        errors, needs_seed = [], False
        if int(ss.get("Last_IO_Errno") or 0):
            text, needs_seed = explain_io_error(int(ss["Last_IO_Errno"]), ss.get("Last_IO_Error") or "")
            errors.append("I/O: " + text)
        if int(ss.get("Last_SQL_Errno") or 0):
            errors.append(f"SQL: {ss.get('Last_SQL_Error')}")
        if io == "Yes" and sql == "Yes":
            state = "streaming"
        elif needs_seed:
            state = "needs-seed"
        elif errors:
            state = "error"
        elif io == "Connecting":
            state = "connecting"
        else:
            state = "stopped"
        received, applied = ss.get("Gtid_IO_Pos"), v.get("gtid_slave_pos")
        lag_bytes = None
        if ss.get("Master_Log_File") and ss.get("Master_Log_File") == ss.get("Relay_Master_Log_File"):
            lag_bytes = max(0, int(ss.get("Read_Master_Log_Pos") or 0) - int(ss.get("Exec_Master_Log_Pos") or 0))
        sbm = ss.get("Seconds_Behind_Master")
        return ReplicaStatus(
            server=self.label, role="replica", state=state, connected=io == "Yes",
            lag_seconds=float(sbm) if sbm not in (None, "") else None, lag_bytes=lag_bytes,
            lag_transactions=gtid_distance(received, applied), received=received, applied=applied,
            last_error="; ".join(errors) or None, needs_seed=needs_seed,
            synchronous=semi.get("Rpl_semi_sync_slave_status") == "ON" if ss else None,
            master=f"{ss.get('Master_Host')}:{ss.get('Master_Port')}",
            detail={k: ss.get(k) for k in ("Slave_IO_State", "Slave_IO_Running", "Slave_SQL_Running",
                                           "Slave_SQL_Running_State", "Master_Log_File", "Read_Master_Log_Pos",
                                           "Relay_Master_Log_File", "Exec_Master_Log_Pos", "Relay_Log_Space",
                                           "Master_SSL_Allowed", "Master_SSL_Verify_Server_Cert", "Last_IO_Errno",
                                           "Last_SQL_Errno")})

    # ---------------------------------------------------------------------------------- promote
    def promote(self, *, timeout: float = 60.0, dry_run: bool = False, force: bool = False,
                log=print) -> Promoted:
        t0 = time.monotonic()
        st = self.status()
        if st.role != "replica":
            return Promoted(server=self.label, dry_run=dry_run, position=Position(self.engine, st.applied or ""),
                            notes=["not a replica: nothing to promote (already a master)"])
        would_lose = ("the master is still connected: promoting now splits the pair (stop the master first)"
                      if st.connected else
                      "whatever the master committed after its last event reached this replica"
                      + (" (none that it acknowledged to a client: the replica was semi-synchronous, unless the "
                         "master had fallen back to asynchronous)" if st.synchronous else ""))
        if dry_run:
            return Promoted(server=self.label, dry_run=True,
                            position=Position(self.engine, st.received or st.applied or ""),
                            caught_up=not st.lag_transactions and not st.lag_bytes, lag_seconds=st.lag_seconds,
                            not_applied=f"{st.lag_transactions or 0} transaction(s), {st.lag_bytes or 0} bytes of "
                                        "relay log received but not applied yet (a promote applies them first)",
                            would_lose=would_lose, notes=[f"replica state: {st.state}"]
                            + ([f"last error: {st.last_error}"] if st.last_error else []))
        notes: list[str] = []
        with self._cli() as cli:
            self._sql(cli, "STOP SLAVE IO_THREAD", what="stop receiving from the master")
            idle = 0
            caught_up = False
            partial = False
            deadline = time.monotonic() + timeout
            for _ in range(int(timeout / 0.1) + 2):
                ss = self._slave_status(cli) or {}
                if ss.get("Slave_SQL_Running") != "Yes":
                    err = ss.get("Last_SQL_Error")
                    if err and not force:
                        raise ReplicationError(f"{self.label}: the replica's SQL thread stopped with an error, "
                                               f"it cannot apply what it received: {err}")
                    break
                if (ss.get("Master_Log_File"), ss.get("Read_Master_Log_Pos")) == \
                        (ss.get("Relay_Master_Log_File"), ss.get("Exec_Master_Log_Pos")):
                    caught_up = True
                    break
                if "read all relay log" in (ss.get("Slave_SQL_Running_State") or ""):
                    idle += 1
                    if idle >= 5:       # applied all complete transactions; the tail is an incomplete one
                        partial = caught_up = True
                        break
                else:
                    idle = 0
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.1)
            if not caught_up and not force:
                st = self.status()
                raise ReplicationError(f"{self.label}: not caught up after {timeout:.0f} s: "
                                       f"{st.lag_transactions} transaction(s) received but not applied; "
                                       "run again with a longer timeout (or force)")
            self._sql(cli, "STOP SLAVE", what="stop replication")
            gtid = self._vars(cli, "gtid_slave_pos")["gtid_slave_pos"] or ""
            self._sql(cli, "RESET SLAVE ALL", what="forget the master")
            self._sql(cli, "SET GLOBAL read_only = OFF, rpl_semi_sync_slave_enabled = OFF, "
                           "rpl_semi_sync_master_enabled = OFF", what="open the server for writes")
        if partial:
            notes.append("the last transaction being received was incomplete when the master stopped: dropped")
        self._rewrite_role("master", synchronous=False, log=log)
        waited = time.monotonic() - t0
        log(f"{self.label}: promoted at GTID {gtid} after {waited:.2f} s")
        return Promoted(server=self.label, dry_run=False, position=Position(self.engine, gtid), waited=waited,
                        caught_up=caught_up, lag_seconds=st.lag_seconds, would_lose=would_lose, notes=notes)

    # ---------------------------------------------------------------------------------- re-pair
    def repair(self, link: Link, save_dir: Path, takeover: Position, *, seed: Optional[Path] = None,
               log=print) -> Repaired:
        """On the old master: save what it committed after *takeover* (the new master's promote position)
        into *save_dir* (a dated folder; ``-N`` appended if it exists), then follow the new master: at once
        when nothing diverged, else from the *seed* (a :meth:`take_seed` of the new master) if given;
        without a seed the result says ``needs-seed`` and the server stays read-only, unreplicated."""
        owner = owner_of(self.root.join(self.server.datadir))
        with self._maybe_cli() as cli:
            if cli is not None:
                self._configure(cli, link, role="replica", log=log)
                self._sql(cli, "SET GLOBAL read_only = ON", what="make the old master read-only")
            else:
                self._configure_offline(link, role="replica", owner=owner, log=log)
        try:
            self.server.ping()
        except DatabaseError:
            self._control().start(log=log)          # starts read-only (the drop-in says so)
        with self._cli() as cli:
            ss = self._slave_status(cli)
            if ss is not None and ss.get("Master_Host") == link.master_host:
                st = self.status(link)
                return Repaired(server=self.label, diverged=False, transactions=0, saved_to=None, method="follow",
                                state="replica", report={"note": "already a replica of the new master",
                                                         "status": st.state})
            v = self._vars(cli, "gtid_binlog_pos", "log_bin_basename", "log_bin")
            mine = parse_gtids(v["gtid_binlog_pos"])
            theirs = parse_gtids(takeover.value)
            diverged = {d: g for d, g in mine.items() if d not in theirs or g[1] > theirs[d][1]}
            report: dict = {"engine": self.engine, "server": self.label, "takeover": takeover.value,
                            "old_master_position": v["gtid_binlog_pos"]}
            saved = None
            count = 0
            if diverged:
                count, saved, report = self._save_divergence(cli, save_dir, theirs, mine, v, report, log=log)
            else:
                self._sql(cli, "STOP SLAVE", what="stop replication")
                self._sql(cli, "RESET SLAVE ALL", what="forget old replication settings")
                self._sql(cli, f"SET GLOBAL gtid_slave_pos = {quote(v['gtid_binlog_pos'] or '')}",
                          what="start from this server's own position")
        if not diverged:
            st = self.configure_replica(link, log=log)
            log(f"{self.label}: nothing committed after the takeover at {takeover.value}: following the new master")
            return Repaired(server=self.label, diverged=False, transactions=0, saved_to=None, method="follow",
                            state="replica", report={**report, "status": st.state})
        if seed is None:
            log(f"{self.label}: {count} transaction(s) after the takeover saved in {saved}; needs a seed from "
                "the new master (take_seed there, ship it, seed here)")
            return Repaired(server=self.label, diverged=True, transactions=count, saved_to=str(saved),
                            method="needs-seed", state="needs-seed", report=report)
        self.seed(link, seed, log=log)
        return Repaired(server=self.label, diverged=True, transactions=count, saved_to=str(saved), method="seed",
                        state="replica", report=report)

    def _save_divergence(self, cli, save_dir: Path, theirs, mine, v, report: dict, *, log=print):
        earlier = find_saved(Path(save_dir), takeover=report["takeover"],
                             old_master_position=report["old_master_position"])
        if earlier is not None:
            log(f"{self.label}: what diverged was already saved in {earlier[0]}")
            return earlier[1].get("transactions", 0), earlier[0], earlier[1]
        binlog = find_program("mariadb-binlog", "mysqlbinlog")
        logs = [r[0] for r in self._sql(cli, "SHOW BINARY LOGS", what="list binary logs")]
        if not logs:
            raise ReplicationError(f"{self.label}: the binary log is off or empty: cannot tell what diverged")
        start = format_gtids({d: g for d, g in theirs.items() if d in mine})
        base = [binlog, *cli, "--read-from-remote-server", "--to-last-log"]
        if start:
            base.append(f"--start-position={start}")
        with saved_folder(Path(save_dir)) as tmp:
            with open(tmp / "diverged.sql", "wb") as out:
                run([*base, logs[0]], server=self.label, what="read the diverged binlog events", stdout=out)
            with open(tmp / "diverged-rows.txt", "wb") as out:
                run([*base, "--base64-output=DECODE-ROWS", "--verbose", logs[0]], server=self.label,
                    what="decode the diverged binlog events", stdout=out)
            txns = _parse_listing(tmp / "diverged-rows.txt")
            # the raw binlog files that hold them: newest back to the first one that starts at or before the takeover
            bindir = Path(v["log_bin_basename"]).parent
            (tmp / "binlog").mkdir()
            copied = []
            for name in reversed(logs):
                src = bindir / name
                shutil.copy2(src, tmp / "binlog" / name)
                copied.append(name)
                rows = self._sql(cli, f"SELECT BINLOG_GTID_POS({quote(name)}, 4)",
                                 what="read a binlog's start position")
                at_start = parse_gtids(rows[0][0] if rows and rows[0] else "")
                if all(at_start.get(d, (0, 0))[1] <= theirs.get(d, (0, 0))[1] for d in mine):
                    break
            files = {f"binlog/{n}": sha256_file(tmp / "binlog" / n) for n in copied}
            files.update({n: sha256_file(tmp / n) for n in ("diverged.sql", "diverged-rows.txt")})
            tables: dict[str, int] = {}
            for t in txns:
                for name in t["tables"]:
                    tables[name] = tables.get(name, 0) + 1
            report.update({
                "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "transactions": len(txns),
                "first": txns[0]["time"] if txns else None, "last": txns[-1]["time"] if txns else None,
                "gtids": [t["gtid"] for t in txns[:1000]], "tables": tables, "files": files,
                "how_to_reapply": "review diverged-rows.txt; to replay on the new master: "
                                  "mariadb-binlog --skip-gtid-strict-mode binlog/<files> --start-position="
                                  f"{start or '<takeover>'} | mariadb (GTIDs of the old master: check for conflicts)"})
            write_private(tmp / "report.json", json.dumps(report, indent=1, sort_keys=True), mode=0o600)
            final = publish(tmp, Path(save_dir))
        log(f"{self.label}: saved {len(txns)} transaction(s) committed after the takeover at {format_gtids(theirs)} "
            f"into {final}")
        return len(txns), final, report

    # ---------------------------------------------------------------------------------- synchronous
    def set_synchronous(self, link: Link, on: bool, *, log=print) -> None:
        """Semi-synchronous replication (``AFTER_SYNC``: a commit returns once the replica has the event)
        on this host's side: the master's switch, or the replica's (its I/O thread reconnects)."""
        with self._cli() as cli:
            ss = self._slave_status(cli)
            flag = "ON" if on else "OFF"
            if ss is not None:
                self._sql(cli, f"SET GLOBAL rpl_semi_sync_slave_enabled = {flag}", what="set semi-sync (replica)")
                if ss.get("Slave_IO_Running") in ("Yes", "Connecting"):
                    self._sql(cli, "STOP SLAVE IO_THREAD", what="reconnect the replica")
                    self._sql(cli, "START SLAVE IO_THREAD", what="reconnect the replica")
                role = "replica"
            else:
                self._sql(cli, "SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC', "
                               f"rpl_semi_sync_master_timeout = {self.semi_sync_timeout_ms}, "
                               "rpl_semi_sync_master_wait_no_slave = OFF, "
                               f"rpl_semi_sync_master_enabled = {flag}", what="set semi-sync (master)")
                role = "master"
        self._rewrite_role(role, synchronous=on, log=log)
        log(f"{self.label}: semi-synchronous replication {flag.lower()} ({role} side)")


# ------------------------------------------------------------------------------------------ helpers
def _run_stdin_file(argv: list[str], src, *, server: str, what: str, timeout: float = 6 * 3600) -> None:
    from ._dbtools import run_tool

    run_tool(argv, server=server, what=what, stdin=src, stdout=subprocess.DEVNULL, timeout=timeout)


def _backup_gtid(backup: Path, server: str) -> str:
    try:
        fields = (backup / "xtrabackup_binlog_info").read_text().split()
    except OSError:
        raise ReplicationError(f"{server}: the seed records no binlog position (was the master's binary log "
                               "on?)") from None
    if len(fields) == 2:
        return ""          # a binary log without any transaction yet: the replica takes it from its start
    if len(fields) < 3 or not parse_gtids(fields[2]):
        raise ReplicationError(f"{server}: the seed records no GTID position ({' '.join(fields)!r})")
    return format_gtids(parse_gtids(fields[2]))


def _check_versions(backup: Path, server: str) -> None:
    """The seed's server version must be this mariadbd's major.minor (a physical copy)."""
    try:
        info = (backup / "xtrabackup_info").read_text()
    except OSError:
        return
    m = re.search(r"^server_version = (\d+\.\d+)", info, re.M)
    cp = subprocess.run([find_program("mariadbd", "mysqld", dirs=("/usr/sbin",)), "--version"], capture_output=True,
                        text=True, timeout=30)
    mine = re.search(r"Ver (\d+\.\d+)", cp.stdout)
    if m and mine and m.group(1) != mine.group(1):
        raise ReplicationError(f"{server}: the seed comes from MariaDB {m.group(1)}, this server is "
                               f"{mine.group(1)}: a physical seed needs the same major version on both hosts")


_GTID_LINE = re.compile(r"^#(\d{6}\s+\d{1,2}:\d{2}:\d{2}) server id (\d+) .*\tGTID (\d+-\d+-\d+)")
_ROW_LINE = re.compile(r"^### (?:INSERT INTO|UPDATE|DELETE FROM) (`(?:[^`]|``)*`\.`(?:[^`]|``)*`)")


def _parse_listing(path: Path) -> list[dict]:
    """Transactions in a decoded ``mariadb-binlog --verbose`` listing: GTID, time, tables touched (rows or DDL)."""
    txns: list[dict] = []
    cur: dict | None = None
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = _GTID_LINE.match(line)
            if m:
                raw = m.group(1).split()
                stamp = f"20{raw[0][:2]}-{raw[0][2:4]}-{raw[0][4:6]} {raw[1]}"
                cur = {"gtid": m.group(3), "time": stamp, "server_id": int(m.group(2)), "tables": []}
                kind = line.rstrip().rsplit(" ", 1)[-1]
                cur["kind"] = kind if kind in ("trans", "ddl") else "trans"
                txns.append(cur)
                continue
            if cur is None:
                continue
            r = _ROW_LINE.match(line)
            if r and r.group(1) not in cur["tables"]:
                cur["tables"].append(r.group(1))
    return txns
