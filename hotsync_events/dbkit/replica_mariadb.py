"""MariaDB GTID replication over TLS for one master and one replica (see :mod:`hotsync_events.dbkit.replica`).

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
(:func:`hotsync_events.dbkit.replica.make_certificate`): the pinned certificate presented for another address is refused
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

import json
import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from collections.abc import Iterator

from hotsync_events.dbkit import replica_mariadb_failover as _failover
from hotsync_events.dbkit.kit import DatabaseError, Staged, find_program, work_dir
from hotsync_events.dbkit.mariadb import MariaDB
from hotsync_events.dbkit.replica import (Link, MasterStatus, Position, Prepared, Promoted, Repaired, ReplicaStatus,
                                          ReplicationError, ServerControl, as_user, auth_changed, fingerprint,
                                          install_tls,
                                          OnServer, owner_of, private_dir, read_password, run, subject_of,
                                          wait_for, write_private)
from hotsync_events.dbkit.replica_swap import SeedSwap, start_or_put_back
from hotsync_events.dbkit.replica_mariadb_tools import (MariaDBControl, backup_gtid, check_versions, explain_io_error,
                                                        gtid_distance, native_hash, parse_gtids, quote, run_stdin_file,
                                                        unescape)

__all__ = ["MariaDBReplication", "MariaDBControl", "gtid_distance", "parse_gtids"]

BINLOG_BASENAME = "hotsync-bin"
RELAY_BASENAME = "hotsync-relay-bin"


@dataclass(frozen=True)
class MariaDBReplication(OnServer):
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
    control: ServerControl | None = None

    engine: ClassVar[str] = "mariadb"

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
            vals = [None if v == "NULL" else unescape(v) for v in ln.split("\t")]
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
        owner = owner_of(Path(v["datadir"] or self.root.join(self.server.datadir)))
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
            # the peer's certificate is pinned itself, or (a pair's host identity) by the one that issued it
            subject = link.peer_subject or subject_of(tls["peer"])
            issuer = subject_of(tls["peer"]) if link.peer_subject else subject_of(tls["peer"], issuer=True)
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
    def seed(self, link: Link, source: Path | None = None, *, log=print, keep_previous: str | None = None) -> Position:
        if source is None or not Path(source).is_file():
            raise ReplicationError(f"{self.label}: MariaDB is seeded from a mariadb-backup stream taken on the "
                                   "master (take_seed) and shipped here; "
                                   + ("none given" if source is None else f"no file {source}"))
        datadir = self.root.join(self.server.datadir)
        places = SeedSwap.of(datadir)
        if places.interrupted():            # a seed cut short mid-swap: the server must not run on half of it
            self._control().stop(log=log)
            places.recover(server=self.label, log=log)
        owner = owner_of(datadir)
        new = places.new
        places.prepare_new(owner, 0o750)
        # the stream came from the master: extracted and prepared as the data directory's owner, not as root
        su = as_user(owner)
        try:
            with open(source, "rb") as src:
                run_stdin_file([*su, find_program("mbstream"), "-x", "-C", str(new)], src, server=self.label,
                                what=f"extract the seed {source}")
            cp = run([*su, find_program("mariadb-backup", "mariabackup"), "--prepare", f"--target-dir={new}"],
                     server=self.label, what="prepare the seed (mariadb-backup --prepare)", timeout=6 * 3600)
            if "completed OK!" not in cp.stderr.decode("utf-8", "replace"):
                raise ReplicationError(f"{self.label}: mariadb-backup --prepare did not report 'completed OK!'")
            gtid = backup_gtid(new, self.label)
            check_versions(new, self.label)
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
            try:
                places.swap()
            except Exception:
                places.recover(server=self.label, log=log)      # the previous data back in place, started
                ctl.start(log=log)
                raise
            start_or_put_back(ctl, places, server=self.label, log=log)
        finally:
            shutil.rmtree(new, ignore_errors=True)
        with self._cli() as cli:
            self._sql(cli, "STOP SLAVE", what="stop replication")
            self._sql(cli, "RESET SLAVE ALL", what="forget the copied replication settings")
            self._sql(cli, "RESET MASTER", what="start a fresh binary log")
            self._sql(cli, f"SET GLOBAL gtid_slave_pos = {quote(gtid)}", what="set the seed's GTID position")
        places.retire(keep_previous, server=self.label, log=log)
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

    def status(self, link: Link | None = None) -> ReplicaStatus:
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
            text, needs_seed = explain_io_error(int(ss.get("Last_IO_Errno") or 0), ss.get("Last_IO_Error") or "")
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

    # ---------------------------------------------------------------------------------- promote, re-pair
    def promote(self, *, timeout: float = 60.0, dry_run: bool = False, force: bool = False,
                log=print) -> Promoted:
        """Apply everything received (bounded by *timeout*), stop replicating, open for writes."""
        return _failover.promote(self, timeout=timeout, dry_run=dry_run, force=force, log=log)

    def repair(self, link: Link, save_dir: Path, takeover: Position, *, seed: Path | None = None,
               log=print) -> Repaired:
        """On the old master: save what it committed after *takeover*, then follow the new master."""
        return _failover.repair(self, link, save_dir, takeover, seed=seed, log=log)

    def set_synchronous(self, link: Link, on: bool, *, log=print) -> None:
        """Semi-synchronous replication (``AFTER_SYNC``) on this host's side."""
        _failover.set_synchronous(self, link, on, log=log)
