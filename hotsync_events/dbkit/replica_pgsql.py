"""PostgreSQL physical streaming replication over TLS for one master and one replica
(see :mod:`hotsync_events.dbkit.replica`).

Settings live in one include file this module owns, ``<state_dir>/replication.conf``, outside the data
directory (``pg_basebackup`` and ``pg_rewind`` copy a data directory between hosts: host-specific
settings must not travel), joined by an ``include_if_exists`` line in the cluster's ``postgresql.conf``.
It holds ``ssl`` with this host's certificate and key, ``ssl_ca_file`` = the peer's self-signed
certificate (pinned: the only CA trusted for client certificates), ``wal_log_hints`` (``pg_rewind``
needs it), ``max_slot_wal_keep_size`` (a dead replica cannot fill the master's disk: past it the slot is
invalidated, ``wal_status = lost``, and the replica must be re-seeded), ``synchronous_standby_names``,
and on a replica ``primary_conninfo``/``primary_slot_name``. ``pg_hba.conf`` gets a managed block at
its top: ``hostssl replication`` (and ``postgres``, for ``pg_rewind``) for the replication role from the
peer's address only, ``scram-sha-256 clientcert=verify-full`` (the client certificate's CN must be the
role), then ``reject`` for that role from anywhere else. The role gets ``LOGIN REPLICATION``, its
password as a SCRAM verifier computed here (no clear text reaches the server or its log), and EXECUTE
on the four functions ``pg_rewind`` reads files with.

Master (:meth:`PostgresReplication.prepare_master`): all of it with a reload, plus the physical slot;
``wal_log_hints``/``listen_addresses``/``wal_level`` need a restart when they change (reported).
Seed (:meth:`seed`, on the replica; the master keeps running): ``DROP_REPLICATION_SLOT`` then
``pg_basebackup -C -S <slot> -X stream`` into a directory beside the data directory, the replica's own
``postgresql.conf``/``pg_hba.conf``/``pg_ident.conf`` put back over the master's copies, ``standby.signal``,
then the two directories swapped (the old one kept until the new one runs). The connection string:
``sslmode=verify-ca sslrootcert=<master's certificate, pinned> sslcert/sslkey=<own> passfile=<0600>``.

Promote: wait (bounded) until everything received is replayed, ``pg_promote(wait => true)``; the
takeover position is the last replayed LSN on the old timeline. Re-pair (:meth:`repair`, on the old
master): the new master's timeline history gives the switch point; ``pg_waldump`` of the old master's
WAL after it lists the transactions it committed there. If there are any, the old master is started
privately (socket in a private directory, no TCP, read-only) and saved whole with the plugins' checked
dump bundle (roles and every database, row-count manifest), beside the raw diverged WAL segments and a
report; then ``pg_rewind`` from the new master (a full re-seed when it cannot), and it follows the new
master. Why a whole dump and not only WAL: once rewound, the diverged WAL cannot be replayed anywhere,
while the dump restores on any server and can be compared with the new master table by table.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from collections.abc import Iterator

from hotsync_events.dbkit import replica_pgsql_failover as _failover
from hotsync_events.dbkit.kit import DatabaseError
from hotsync_events.dbkit.pgsql import Postgres, conninfo as db_conninfo, ident
from hotsync_events.dbkit.replica_swap import SeedSwap
from hotsync_events.dbkit.replica import (Link, MasterStatus, Position, Prepared, Promoted, Repaired, ReplicaStatus,
                                          ReplicationError, ServerControl, auth_changed, clean_env, install_tls,
                                          OnServer, owner_of, private_dir, read_password, run, subject_of,
                                          wait_for, write_private)
from hotsync_events.dbkit.replica_pgsql_tools import (HBA_BEGIN, HBA_END, INCLUDE, OWN_CONFIG, REWIND_FUNCTIONS,
                                                      PostgresControl, conninfo, explain, format_lsn, guc, lsn, lsn_at,
                                                      scram_verifier, silent_for, sql_literal)

__all__ = ["PostgresReplication", "PostgresControl", "lsn", "format_lsn"]


@dataclass(frozen=True)
class PostgresReplication(OnServer):
    """The replication side of one PostgreSQL cluster (host paths under the server's root).

    ``server.datadir`` must be the cluster's data directory. ``config_dir``: where ``postgres -D`` points
    when the configuration lives outside the data directory (Debian ``/etc/postgresql/<v>/<cluster>``);
    empty: the data directory. ``state_dir``: private files owned by the cluster's user (TLS copies,
    passfile, the include file). ``slot_keep_mb``: ``max_slot_wal_keep_size``. ``held_after``: seconds a commit
    may wait for the synchronous replica's acknowledgement, with the replica silent as long, before the master
    status says ``waiting`` (it hangs with its connection up), whatever ``pg_stat_replication`` still says.
    ``silent_after``: a replica that has not answered for this long is not connected (it answers at least
    every ``wal_receiver_status_interval``, 10 s by default), though its session lasts until
    ``wal_sender_timeout``. How long it has been silent is told by this host's clock (:func:`silent_for`).
    """

    server: Postgres
    state_dir: str = "/var/lib/hotsync/replication/postgresql"
    config_dir: str = ""
    slot_keep_mb: int = 1024
    held_after: float = 2.0
    silent_after: float = 25.0
    start_timeout: float = 120.0
    stop_timeout: float = 120.0
    seed_timeout: float = 6 * 3600
    control: ServerControl | None = None

    engine: ClassVar[str] = "postgresql"

    def _control(self) -> ServerControl:
        return self.control if self.control is not None else PostgresControl(self)

    # ---------------------------------------------------------------------------------- paths
    def _datadir(self) -> Path:
        d = self.root.join(self.server.datadir)
        if not (d / "PG_VERSION").is_file() and not SeedSwap.of(d).aside.is_dir():
            raise ReplicationError(f"{self.label}: {self.server.datadir} is not a cluster's data directory "
                                   "(no PG_VERSION)")
        return d

    def _config_base(self) -> Path:
        return self.root.join(self.config_dir) if self.config_dir else self._datadir()

    def _owner(self):
        return owner_of(self._datadir())

    def _state(self) -> Path:
        return private_dir(self.root.join(self.state_dir), self._owner())

    def _read_state(self) -> dict:
        try:
            return json.loads((self.root.join(self.state_dir) / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def _write_state(self, **values) -> dict:
        st = {**self._read_state(), **values}
        write_private(self._state() / "state.json", json.dumps(st, indent=1, sort_keys=True), owner=self._owner())
        return st

    # ---------------------------------------------------------------------------------- SQL
    @contextmanager
    def _sess(self, server: Postgres | None = None) -> Iterator:
        with (server or self.server)._session() as sess:
            yield sess

    def _q(self, sess, sql: str, *, db: str = "postgres", what: str, server: Postgres | None = None) -> list[list[str]]:
        return (server or self.server).query(sess, sql, db=db, what=what)

    def _one(self, sess, sql: str, *, what: str, server: Postgres | None = None) -> list[str | None]:
        rows = self._q(sess, sql, what=what, server=server)
        return [None if v == "" else v for v in rows[0]] if rows else []

    def _setting(self, sess, name: str) -> str:
        """One setting's value (an empty value is an empty string, not a missing row)."""
        return self._q(sess, f"SELECT 'v=' || current_setting({sql_literal(name)})", what=f"read {name}")[0][0][2:]

    def _q_stdin(self, sess, sql: str, *, what: str) -> None:
        prefix, env = sess
        argv = [*prefix, self.server.tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-w", "-d",
                db_conninfo("postgres"), "-f", "-"]
        # our own statements never wait for a synchronous standby (there may be none yet)
        sql = "SET synchronous_commit = local;\n" + sql
        try:
            run(argv, server=self.label, what=what, input=sql.encode(), env=env, timeout=120)
        except DatabaseError as exc:
            raise self.server._fail(what, exc) from None

    def _settings(self, sess, names) -> dict[str, dict]:
        rows = self._q(sess, "SELECT name, setting, pending_restart, coalesce(sourcefile, '') FROM pg_settings "
                             "WHERE name IN (" + ", ".join(sql_literal(n) for n in names) + ")",
                       what="read settings")
        return {r[0]: {"value": r[1], "pending": r[2] == "t", "file": r[3]} for r in rows}

    def _reload(self, sess, *, expect: dict[str, str] | None = None) -> None:
        """``pg_reload_conf()``, then wait (bounded) until the reload is seen; errors in our files raise."""
        self._q(sess, "SELECT pg_reload_conf()", what="reload the configuration")
        if expect:
            def seen():
                s = self._settings(sess, list(expect))
                return all(s.get(k, {}).get("value") == v or s.get(k, {}).get("pending") for k, v in expect.items())
            wait_for(seen, seconds=10, step=0.1)
        else:
            time.sleep(0.3)
        bad = self._q(sess, "SELECT coalesce(sourcefile, '?') || ':' || coalesce(sourceline::text, '?') || ': ' || "
                            "coalesce(name, '') || ' ' || error FROM pg_file_settings WHERE error IS NOT NULL "
                            "AND error <> 'setting could not be applied' AND error NOT LIKE '%without restarting%'",
                       what="check the configuration")
        hba = self._q(sess, "SELECT 'pg_hba.conf:' || line_number || ': ' || error "
                            "FROM pg_hba_file_rules WHERE error IS NOT NULL", what="check pg_hba.conf")
        if bad or hba:
            raise ReplicationError(f"{self.label}: the configuration has errors: "
                                   + "; ".join(r[0] for r in bad + hba))

    # ---------------------------------------------------------------------------------- files
    def _passfile(self, link: Link) -> Path:
        """The 0600 libpq passfile. Its name carries a digest of the password and the TLS files, so a
        changed credential changes ``primary_conninfo`` and the WAL receiver reconnects with it at the
        reload (a running receiver keeps its session otherwise, and cannot be terminated from SQL)."""
        pw = read_password(self.root.join(link.password_file), server=self.label)
        st = self._state()
        h = hashlib.sha256(f"{link.user}\0{pw}\0".encode())
        for name in ("own.crt", "own.key", "peer.crt"):
            if (st / name).is_file():
                h.update((st / name).read_bytes())
        path = st / f"pgpass-{h.hexdigest()[:12]}"
        esc = pw.replace("\\", "\\\\").replace(":", "\\:")
        write_private(path, f"*:*:*:{link.user}:{esc}\n", owner=self._owner())
        for old in st.glob("pgpass-*"):
            if old != path:
                old.unlink(missing_ok=True)
        self._write_state(passfile=path.name)
        return path

    def _passfile_path(self) -> Path:
        return self.root.join(self.state_dir) / self._read_state().get("passfile", "pgpass")

    def _tls(self, link: Link) -> dict[str, Path]:
        tls = install_tls(link, self.root, self._state(), self._owner(), server=self.label)
        cn = subject_of(tls["cert"]).rpartition("CN=")[2].split("/")[0]
        if cn != link.user:
            raise ReplicationError(f"{self.label}: this host's replication certificate has CN={cn}; "
                                   f"clientcert=verify-full needs CN={link.user}")
        return tls

    def _channel(self, link: Link, **extra: str) -> str:
        """The replica's connection string to the master (no password: the 0600 passfile)."""
        st = self._state()
        return conninfo(host=link.master_host, port=str(link.port), user=link.user, passfile=str(self._passfile_path()),
                        sslmode="verify-ca", sslrootcert=str(st / "peer.crt"), sslcert=str(st / "own.crt"),
                        sslkey=str(st / "own.key"), application_name=link.name, connect_timeout="10", **extra)

    def _write_include(self, *, role: str, link: Link, current: dict[str, dict] | None = None,
                       synchronous: bool | None = None) -> Path:
        """``<state_dir>/replication.conf`` for *role* (atomically) and the include line in postgresql.conf."""
        st = self._state()
        sync = link.synchronous if synchronous is None else synchronous
        cur = current or {}
        lines = [f"# Written by hotsync (PostgreSQL replication, role {role}). Replaced as a whole; do not edit.",
                 "ssl = on", f"ssl_cert_file = {guc(str(st / 'own.crt'))}",
                 f"ssl_key_file = {guc(str(st / 'own.key'))}",
                 f"ssl_ca_file = {guc(str(st / 'peer.crt'))}", "wal_log_hints = on", "hot_standby = on",
                 f"max_slot_wal_keep_size = '{int(self.slot_keep_mb)}MB'", "recovery_target_timeline = 'latest'"]
        if cur.get("wal_level", {}).get("value") == "minimal":
            lines.append("wal_level = replica")
        for name in ("max_wal_senders", "max_replication_slots"):
            if cur.get(name, {}).get("value") == "0":
                lines.append(f"{name} = 10")
        if role == "master":
            listen = [p.strip() for p in (cur.get("listen_addresses", {}).get("value") or
                                          self._read_state().get("listen", "")).split(",") if p.strip()]
            if "*" not in listen and link.master_host not in listen:
                listen.append(link.master_host)
            lines.append(f"listen_addresses = {guc(','.join(listen))}")
            lines.append(f"synchronous_standby_names = {guc(ident(link.name) if sync else '')}")
        else:
            listen = [p.strip() for p in (cur.get("listen_addresses", {}).get("value") or
                                          self._read_state().get("listen", "")).split(",") if p.strip()]
            if listen:
                lines.append(f"listen_addresses = {guc(','.join(listen))}")
            lines.append("synchronous_standby_names = ''")
            lines.append(f"primary_conninfo = {guc(self._channel(link))}")
            lines.append(f"primary_slot_name = {guc(link.name)}")
            lines.append("wal_retrieve_retry_interval = '1s'")
        path = st / INCLUDE
        write_private(path, "\n".join(lines) + "\n", owner=self._owner())
        self._write_state(role=role, master_host=link.master_host, replica_host=link.replica_host, port=link.port,
                          user=link.user, name=link.name, synchronous=sync, listen=",".join(listen))
        self._ensure_include(self._config_base() / "postgresql.conf", path)
        return path

    def _ensure_include(self, conf: Path, include: Path) -> None:
        text = conf.read_text(encoding="utf-8")
        line = f"include_if_exists = {guc(str(include))}"
        if line in text.splitlines():
            return
        st = conf.stat()
        new = (text + ("" if text.endswith("\n") else "\n")
               + "# hotsync replication (the file is managed by hotsync)\n" + line + "\n")
        write_private(conf, new, owner=owner_of(conf), mode=st.st_mode & 0o777)

    def _write_hba(self, peer: str, link: Link, base: Path | None = None, hba: Path | None = None) -> Path:
        """The managed block at the top of pg_hba.conf: the role from *peer* only, TLS + client certificate."""
        path = hba or (base or self._config_base()) / "pg_hba.conf"
        try:
            addr = ipaddress.ip_address(peer)
            where = f"{peer}/{32 if addr.version == 4 else 128}"
        except ValueError:
            where = peer
        role = ident(link.user)
        block = [HBA_BEGIN,
                 f"hostssl replication {role} {where} scram-sha-256 clientcert=verify-full",
                 f"hostssl postgres {role} {where} scram-sha-256 clientcert=verify-full",
                 f"local all {role} reject",
                 f"host all {role} all reject",
                 HBA_END]
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        kept, skipping = [], False
        for ln in text.splitlines():
            if ln == HBA_BEGIN:
                skipping = True
            elif ln == HBA_END:
                skipping = False
            elif not skipping:
                kept.append(ln)
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
        owner = owner_of(path) if path.exists() else self._owner()
        write_private(path, "\n".join(block + kept) + "\n", owner=owner, mode=mode)
        return path

    def _keep_own_config(self, datadir: Path) -> dict[str, tuple[bytes, int]]:
        if self.config_dir:
            return {}
        return {n: ((datadir / n).read_bytes(), (datadir / n).stat().st_mode & 0o777) for n in OWN_CONFIG
                if (datadir / n).is_file()}

    def _restore_own_config(self, datadir: Path, kept: dict[str, tuple[bytes, int]]) -> None:
        owner = owner_of(datadir)
        for name, (data, mode) in kept.items():
            write_private(datadir / name, data, owner=owner, mode=mode)
        auto = datadir / "postgresql.auto.conf"
        if auto.is_file():
            lines = auto.read_text(encoding="utf-8").splitlines()
            keep = [ln for ln in lines if not re.match(r"\s*(primary_conninfo|primary_slot_name)\s*=", ln)]
            if keep != lines:
                write_private(auto, "\n".join(keep) + "\n", owner=owner, mode=auto.stat().st_mode & 0o777)

    def _standby_signal(self, datadir: Path) -> None:
        write_private(datadir / "standby.signal", "", owner=owner_of(datadir))

    # ---------------------------------------------------------------------------------- replication protocol
    def _probe(self, link: Link | None) -> dict:
        """Ask the master over the replication channel: its timeline and WAL position, and our slot.
        ``{'ok': bool, 'error': str, 'timeline', 'master_lsn', 'slot': None|'missing'|'lost'|'ok', 'restart_lsn'}``"""
        st = self._read_state()
        if link is None:
            if not st.get("master_host"):
                return {"ok": False, "error": "no replication link configured"}
            host, port, user, name = st["master_host"], st["port"], st["user"], st["name"]
        else:
            host, port, user, name = link.master_host, link.port, link.user, link.name
        sd = self.root.join(self.state_dir)
        ci = conninfo(host=host, port=str(port), user=user, passfile=str(self._passfile_path()), sslmode="verify-ca",
                      sslrootcert=str(sd / "peer.crt"), sslcert=str(sd / "own.crt"), sslkey=str(sd / "own.key"),
                      connect_timeout="5", replication="true", dbname="replication", application_name="hotsync_probe")
        cp = subprocess.run([self.server.tool("psql"), "-X", "-A", "-t", "-F", "\t", "-w", "-d", ci,
                             "-c", "IDENTIFY_SYSTEM", "-c", f"READ_REPLICATION_SLOT {ident(name)}"],
                            capture_output=True, text=True, env=clean_env(), timeout=30)
        if cp.returncode != 0:
            return {"ok": False, "error": cp.stderr.strip()}
        rows = [ln.split("\t") for ln in cp.stdout.splitlines() if ln.strip()]
        out = {"ok": True, "error": "", "timeline": int(rows[0][1]), "master_lsn": rows[0][2]}
        slot = rows[1] if len(rows) > 1 else ["", "", ""]
        out["slot"] = "missing" if not slot[0] else ("lost" if len(slot) < 2 or not slot[1] else "ok")
        out["restart_lsn"] = slot[1] if len(slot) > 1 and slot[1] else None
        return out

    def _replication_command(self, link: Link, command: str, *, what: str, ok_missing: bool = False) -> str:
        ci = self._channel(link, replication="true", dbname="replication")
        cp = subprocess.run([self.server.tool("psql"), "-X", "-A", "-t", "-F", "\t", "-w", "-d", ci, "-c", command],
                            capture_output=True, text=True, env=clean_env(), timeout=120)
        if cp.returncode != 0:
            if ok_missing and "does not exist" in cp.stderr:
                return ""
            raise ReplicationError(f"{self.label}: cannot {what} on the master {link.master_host}:{link.port}: "
                                   + explain(cp.stderr.strip())[0])
        return cp.stdout

    # ---------------------------------------------------------------------------------- master
    def prepare_master(self, link: Link, *, log=print) -> Prepared:
        pw = read_password(self.root.join(link.password_file), server=self.label)
        verifier = scram_verifier(pw)
        names = ("listen_addresses", "wal_level", "max_wal_senders", "max_replication_slots", "wal_log_hints",
                 "ssl", "max_slot_wal_keep_size", "synchronous_standby_names", "port")
        with self._sess() as sess:
            if self._one(sess, "SELECT pg_is_in_recovery()", what="check the role")[0] == "t":
                raise ReplicationError(f"{self.label}: this server is a replica (in recovery): promote it first")
            cur = self._settings(sess, names)
            if int(cur["port"]["value"]) != int(link.port):
                raise ReplicationError(f"{self.label}: the server listens on port {cur['port']['value']}, "
                                       f"the replication link says {link.port}")
            hba_file = Path(self._setting(sess, "hba_file"))
            self._tls(link)
            streaming = self._standby_streaming(sess, link)
            sync_now = link.synchronous and streaming
            include = self._write_include(role="master", link=link, current=cur, synchronous=sync_now)
            self._write_hba(link.replica_host, link, hba=hba_file)
            self._reload(sess, expect={"ssl": "on", "max_slot_wal_keep_size": str(self.slot_keep_mb)})
            role = ident(link.user)
            grants = "".join(f"GRANT EXECUTE ON FUNCTION {f} TO {role};\n" for f in REWIND_FUNCTIONS) \
                + f"GRANT pg_checkpoint TO {role};\n"
            self._q_stdin(sess, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
                                f"{sql_literal(link.user)}) THEN CREATE ROLE {role}; END IF; END $$;\n"
                                f"ALTER ROLE {role} WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE "
                                f"PASSWORD {sql_literal(verifier)};\n" + grants,
                          what=f"create the replication role {link.user}")
            if auth_changed(self._state(), (self._state() / "peer.crt").read_bytes(), pw, link.replica_host,
                            owner=self._owner()):
                self._q(sess, "SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE usename = "
                              f"{sql_literal(link.user)}", what="cut replica sessions that logged in with the old pin")
            self._q(sess, f"SELECT pg_create_physical_replication_slot({sql_literal(link.name)}, true) WHERE NOT "
                          f"EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = {sql_literal(link.name)})",
                    what=f"create the replication slot {link.name}")
            after = self._settings(sess, names)
        restart = [n for n, s in after.items() if s["pending"]]
        listening = [p.strip() for p in after["listen_addresses"]["value"].split(",")]
        if link.master_host not in listening and "*" not in listening and "listen_addresses" not in restart:
            restart.append("listen_addresses")
        if after["wal_log_hints"]["value"] != "on" and "wal_log_hints" not in restart:
            restart.append("wal_log_hints")
        notes = []
        if link.synchronous and not sync_now:
            notes.append("synchronous mode not switched on yet: no replica streams, and PostgreSQL would hold every "
                         "commit until one does; call set_synchronous once the replica streams")
        log(f"{self.label}: prepared as master for {link.replica_host}"
            + (f"; RESTART NEEDED for: {', '.join(restart)}" if restart else ""))
        return Prepared(server=self.label, ready=not restart and after["ssl"]["value"] == "on", restart_needed=restart,
                        notes=notes,
                        changed=[f"include {include}", f"pg_hba.conf block for {link.user} from {link.replica_host}",
                                 f"role {link.user} (LOGIN REPLICATION)", f"slot {link.name}"],
                        config_file=str(include))

    def _standby_streaming(self, sess, link: Link) -> bool:
        return bool(self._q(sess, "SELECT 1 FROM pg_stat_replication WHERE state = 'streaming' AND application_name = "
                                  f"{sql_literal(link.name)}", what="look for the replica"))

    def take_seed(self, target: Path, *, log=print) -> None:
        """Nothing to take on the master: the replica pulls its copy with pg_basebackup through the slot."""
        return None

    def master_status(self, link: Link) -> MasterStatus:
        with self._sess() as sess:
            rec = self._one(sess, "SELECT pg_is_in_recovery(), pg_current_wal_lsn()::text WHERE NOT "
                                  "pg_is_in_recovery() UNION ALL SELECT true, NULL WHERE pg_is_in_recovery()",
                            what="check the role")
            if rec and rec[0] == "t":
                return MasterStatus(server=self.label, role="replica")
            cur = rec[1] if rec else None
            rep = self._one(sess, "SELECT state, sync_state, sent_lsn::text, replay_lsn::text, "
                                  "extract(epoch from replay_lag), host(client_addr), "
                                  "reply_time::text, pid::text FROM pg_stat_replication "
                                  f"WHERE application_name = {sql_literal(link.name)} "
                                  "ORDER BY backend_start DESC LIMIT 1",
                            what="read pg_stat_replication")
            slot = self._one(sess, "SELECT active, wal_status, safe_wal_size, restart_lsn::text FROM "
                                   f"pg_replication_slots WHERE slot_name = {sql_literal(link.name)}",
                             what="read the slot")
            ssn = self._setting(sess, "synchronous_standby_names")
            # commits waiting for the replica's acknowledgement longer than held_after: with the replica silent
            # as long, it hangs with its connection up (pg_stat_replication says "streaming" and "sync" until
            # wal_sender_timeout, 60 s by default, ends its session)
            held = self._one(sess, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep' AND "
                                   f"now() - query_start > make_interval(secs => {float(self.held_after)})",
                             what="read the commits waiting for the replica") if ssn.strip() else []
        reply_age = silent_for((self.label, link.name), rep[7] or "", rep[6] or None) if rep else None
        # a replica answers at least every wal_receiver_status_interval (10 s), at once while WAL flows
        connected = bool(rep) and rep[0] == "streaming" and (reply_age is None or reply_age < self.silent_after)
        held_n = int(held[0] or 0) if held else 0
        hung = held_n > 0 and reply_age is not None and reply_age > self.held_after
        sync = "off"
        if ssn.strip():
            sync = "on" if rep and rep[1] in ("sync", "quorum") and not hung else "waiting"
        slot_d = None
        if slot:
            slot_d = {"active": slot[0] == "t", "wal_status": slot[1],
                      "safe_wal_size": int(slot[2]) if slot[2] else None, "restart_lsn": slot[3]}
        ref = rep[3] if rep and rep[3] else (slot_d or {}).get("restart_lsn")
        lag_b = max(0, lsn_at(cur) - lsn_at(str(ref))) if cur and ref else None
        return MasterStatus(server=self.label, role="master", replica_connected=connected,
                            replica_state=rep[0] if rep else None, synchronous=sync, position=cur,
                            lag_bytes=lag_b,
                            lag_seconds=float(rep[4]) if rep and rep[4] else (0.0 if connected else None),
                            needs_seed=bool(slot_d and slot_d["wal_status"] == "lost"), slot=slot_d,
                            detail={"client": rep[5] if rep else None, "synchronous_standby_names": ssn,
                                    "commits_held": held_n, "last_reply_seconds": reply_age})

    # ---------------------------------------------------------------------------------- replica
    def _is_running(self) -> bool:
        try:
            self.server.ping()
            return True
        except DatabaseError as exc:
            if "not running" in str(exc):
                return False
            raise

    def _current_settings(self) -> dict[str, dict]:
        if not self._is_running():
            return {}
        with self._sess() as sess:
            return self._settings(sess, ("listen_addresses", "wal_level", "max_wal_senders", "max_replication_slots"))

    def _replay_position(self) -> Position:
        with self._sess() as sess:
            r = self._one(sess, "SELECT pg_last_wal_replay_lsn()::text, "
                                "(SELECT received_tli FROM pg_stat_wal_receiver), "
                                "(SELECT timeline_id FROM pg_control_checkpoint())", what="read the position")
        return Position(self.engine, r[0] or "", int(r[1] or r[2] or 0) or None)

    def _wait_streaming(self, link: Link | None, seconds: float) -> ReplicaStatus:
        def ok():
            st = self.status(link)
            return st if st.connected else None
        return wait_for(ok, seconds=seconds, step=0.25) or self.status(link)

    def configure_replica(self, link: Link, *, log=print, wait: float = 15.0) -> ReplicaStatus:
        """Re-point a running replica (password, pins, address): rewrite the include and reload
        (``primary_conninfo`` is reloadable: the WAL receiver reconnects); the status after a bounded wait."""
        self._tls(link)
        self._passfile(link)
        with self._sess() as sess:
            if self._one(sess, "SELECT pg_is_in_recovery()", what="check the role")[0] != "t":
                raise ReplicationError(f"{self.label}: this server is not a replica (seed it first)")
            cur = self._settings(sess, ("listen_addresses", "wal_level", "max_wal_senders", "max_replication_slots"))
            self._write_include(role="replica", link=link, current=cur)
            self._write_hba(link.master_host, link,
                            hba=Path(self._setting(sess, "hba_file")))
            self._reload(sess)           # a changed primary_conninfo restarts the WAL receiver

        def settled():
            st = self.status(link)
            return st if (st.connected or st.last_error) else None
        time.sleep(0.5)
        st = wait_for(settled, seconds=wait, step=0.25) or self.status(link)
        log(f"{self.label}: replica of {link.master_host}:{link.port}: {st.state}"
            + (f" ({st.last_error})" if st.last_error else ""))
        return st

    def status(self, link: Link | None = None) -> ReplicaStatus:
        with self._sess() as sess:
            r = self._one(sess, "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn()::text, "
                                "pg_last_wal_replay_lsn()::text, "
                                "extract(epoch from now() - pg_last_xact_replay_timestamp()), "
                                "(SELECT status FROM pg_stat_wal_receiver), "
                                "(SELECT latest_end_lsn::text FROM pg_stat_wal_receiver), "
                                "(SELECT extract(epoch from now() - last_msg_receipt_time) FROM pg_stat_wal_receiver), "
                                "(SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver)",
                          what="read the replica status")
            if r[0] != "t":
                cur = self._one(sess, "SELECT pg_current_wal_lsn()::text", what="read the position")[0]
                return ReplicaStatus(server=self.label, role="master", state="master", applied=cur)
        _, received, replayed, age, wr_status, latest_end, contact, sender = r
        if received and replayed and lsn_at(received) < lsn_at(replayed):
            received = replayed          # the receiver restarted at a segment start behind the replay
        connected = wr_status == "streaming"
        st = ReplicaStatus(server=self.label, role="replica", state="streaming" if connected else "connecting",
                           connected=connected, received=received, applied=replayed, master=sender,
                           detail={"receiver": wr_status, "last_contact_seconds": float(contact) if contact else None})
        rep = lsn(replayed)
        if connected:
            end = lsn(latest_end)
            st.lag_bytes = max(0, (end or 0) - (rep or 0)) if end and rep else None
            st.lag_seconds = 0.0 if (lsn(received) or 0) <= (rep or 0) or not age else max(0.0, float(age))
        probe = self._probe(link) if not connected else None
        if probe is not None:
            st.detail["probe"] = probe
            if not probe["ok"]:
                st.last_error, st.needs_seed = explain(probe["error"])
                st.state = "error"
            else:
                if probe.get("master_lsn") and rep:
                    st.lag_bytes = max(0, lsn_at(probe["master_lsn"]) - (rep or 0))
                if probe["slot"] == "lost":
                    st.needs_seed = True
                    st.last_error = ("the master invalidated this replica's slot (wal_status lost: it was away longer "
                                     "than max_slot_wal_keep_size allows): re-seed it")
                elif probe["slot"] == "missing":
                    st.last_error = "the master has no replication slot for this replica: re-seed it"
                    st.needs_seed = True
                if st.needs_seed:
                    st.state = "needs-seed"
        return st

    # ---------------------------------------------------------------------------------- seed, promote, re-pair
    def seed(self, link: Link, source: Path | None = None, *, log=print, keep_previous: str | None = None) -> Position:
        """Replace this cluster with a ``pg_basebackup`` of the master, then follow it."""
        return _failover.seed(self, link, source, log=log, keep_previous=keep_previous)

    def promote(self, *, timeout: float = 60.0, dry_run: bool = False, force: bool = False, log=print) -> Promoted:
        """Replay everything received (bounded by *timeout*), ``pg_promote``, checkpoint."""
        return _failover.promote(self, timeout=timeout, dry_run=dry_run, force=force, log=log)

    def repair(self, link: Link, save_dir: Path, takeover: Position, *, seed: Path | None = None,
               log=print) -> Repaired:
        """On the old master: save what it committed after the switch, ``pg_rewind``, follow the new master."""
        return _failover.repair(self, link, save_dir, takeover, seed=seed, log=log)

    def set_synchronous(self, link: Link, on: bool, *, log=print) -> None:
        """``synchronous_standby_names`` on the master (only while the replica streams)."""
        _failover.set_synchronous(self, link, on, log=log)
