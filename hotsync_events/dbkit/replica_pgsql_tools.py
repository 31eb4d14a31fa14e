"""PostgreSQL replication: LSN, GUC and conninfo helpers, the SCRAM verifier, error explanations and the
cluster's stop/start (:class:`PostgresControl`); used by :mod:`hotsync_events.dbkit.replica_pgsql`."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from hotsync_events.dbkit.kit import systemd_running
from hotsync_events.dbkit.pgsql import Postgres
from hotsync_events.dbkit.replica import (ReplicationError, answers_within, as_user, clean_env, run, spawn_daemon)

if TYPE_CHECKING:
    from hotsync_events.dbkit.replica_pgsql import PostgresReplication

INCLUDE = "replication.conf"
HBA_BEGIN = "# BEGIN hotsync replication (managed by hotsync; replaced as a whole, do not edit)"
HBA_END = "# END hotsync replication"
OWN_CONFIG = ("postgresql.conf", "pg_hba.conf", "pg_ident.conf")
REWIND_FUNCTIONS = ("pg_catalog.pg_ls_dir(text, boolean, boolean)", "pg_catalog.pg_stat_file(text, boolean)",
                    "pg_catalog.pg_read_binary_file(text)",
                    "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)")


def lsn(text: str | None) -> int | None:
    """``'0/3000060'`` -> an integer (None for NULL/empty)."""
    if not text or "/" not in text:
        return None
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def lsn_at(text: str | None) -> int:
    """:func:`lsn` where a position is known to be there (0 when it is not)."""
    return lsn(text) or 0


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def guc(value: str) -> str:
    """A postgresql.conf string value."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def sql_literal(value: str) -> str:
    """A standard SQL string literal (standard_conforming_strings: backslashes are plain)."""
    return "'" + value.replace("'", "''") + "'"


def conninfo(**params: str) -> str:
    """A libpq key='value' connection string (backslash and quote escaped)."""
    return " ".join(f"{k}='" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'" for k, v in params.items())


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for *password* (ASCII: SASLprep leaves it unchanged)."""
    if not password.isascii():
        raise ValueError("the replication password must be ASCII (PostgreSQL normalises others with SASLprep)")
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server_key)}"


def explain(message: str) -> tuple[str, bool]:
    """(a sentence for the sysadmin, whether a re-seed is needed) for a libpq / walreceiver error."""
    m = " ".join(message.split())
    if "has already been removed" in m:
        return (f"the master no longer has the WAL this replica needs (slot invalidated or missing): re-seed it: "
                f"{m}", True)
    if "password authentication failed" in m:
        return (f"the master refused the replication login (wrong password, or this host's certificate CN is "
                f"not the role, or its address is not the one allowed): {m}", False)
    if "no pg_hba.conf entry" in m or "pg_hba.conf rejects" in m:
        return f"the master does not allow this host's address or account (pg_hba): {m}", False
    if "certificate verify failed" in m:
        return f"TLS: the master's certificate is not the pinned one: {m}", False
    if "unknown ca" in m or "certificate unknown" in m or "bad certificate" in m or "alert" in m:
        return f"TLS: the master does not trust this host's certificate (it pins another one): {m}", False
    if "does not exist" in m and "slot" in m:
        return f"the master has no replication slot for this replica (prepare the master, or re-seed): {m}", False
    if "Connection refused" in m or "timeout expired" in m or "could not connect" in m:
        return f"cannot reach the master: {m}", False
    return m, False


class PostgresControl:
    """Stop and start a cluster: systemd on the real root, else ``postgres -D`` as the data directory's
    owner (stdout/stderr to ``<root>/var/log/hotsync/postgresql.log``) and ``pg_ctl stop -m fast``."""

    def __init__(self, repl: PostgresReplication) -> None:
        self.repl = repl

    def start(self, *, log=print, extra: tuple[str, ...] = (), server: Postgres | None = None) -> None:
        r = self.repl
        srv = server or r.server
        if systemd_running(srv.root) and not extra:
            run(["systemctl", "start", srv.unit], server=srv.label, what=f"start {srv.unit}", timeout=300)
        else:
            datadir = r._datadir()
            if (datadir / "postmaster.pid").exists():
                raise ReplicationError(f"{srv.label}: {datadir}/postmaster.pid exists: the server is running "
                                       "(or died without cleaning up)")
            logf = srv.root.join("/var/log/hotsync/postgresql.log")
            logf.parent.mkdir(parents=True, exist_ok=True)
            argv = [*as_user(r._owner()), srv.tool("postgres"), "-D", str(r._config_base()), *extra]
            log(f"{srv.label}: starting the server (postgres -D {r._config_base()}"
                + (" " + " ".join(extra) if extra else "") + ")")
            spawn_daemon(argv, log_file=logf)
        hint = answers_within(srv, r.start_timeout)
        if hint is not None:
            raise ReplicationError(f"{srv.label}: the server does not answer {r.start_timeout:.0f} s after its "
                                   f"start: {hint} (see its log)")

    def stop(self, *, log=print) -> None:
        r = self.repl
        srv = r.server
        if systemd_running(srv.root):
            run(["systemctl", "stop", srv.unit], server=srv.label, what=f"stop {srv.unit}", timeout=300)
            return
        datadir = r._datadir()
        if not (datadir / "postmaster.pid").exists():
            return
        log(f"{srv.label}: stopping the server (fast)")
        cp = subprocess.run([*as_user(r._owner()), srv.tool("pg_ctl"), "stop", "-D", str(datadir), "-m", "fast", "-w",
                             "-t", str(int(r.stop_timeout))],
                            capture_output=True, text=True, env=clean_env(), timeout=r.stop_timeout + 30)
        if cp.returncode != 0 and (datadir / "postmaster.pid").exists():
            raise ReplicationError(f"{srv.label}: cannot stop the server: {cp.stderr.strip()}")


#: (server, slot) -> (WAL sender's pid, the replica's last reply_time as it said it, this host's monotonic clock
#: when that reply was first seen): how long a replica has been silent, on this host's clock
_REPLIES: dict[tuple[str, str], tuple[str, str, float]] = {}


def silent_for(key: tuple[str, str], sender: str, reply_time: str | None, *,
               clock: Callable[[], float] = time.monotonic) -> float | None:
    """Seconds the replica of *key* has not answered, on this host's clock, or None when unknown (the first
    look at this WAL sender). ``pg_stat_replication.reply_time`` is stamped by the replica's clock, which may be
    minutes off this one: it is compared only with itself (a new value is a new answer), never with ``now()``.
    Looked at every few seconds (the guard), the silence is known to within one look."""
    now = clock()
    seen = _REPLIES.get(key)
    if reply_time is None:
        _REPLIES.pop(key, None)
        return None
    if seen is None or seen[0] != sender:
        _REPLIES[key] = (sender, reply_time, now)
        return None
    if seen[1] != reply_time:
        _REPLIES[key] = (sender, reply_time, now)
        return 0.0
    return now - seen[2]
