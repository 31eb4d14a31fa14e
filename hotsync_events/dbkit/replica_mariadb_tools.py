"""MariaDB replication: SQL and GTID helpers, error explanations, seed checks and the server's
stop/start (:class:`MariaDBControl`); used by :mod:`hotsync_events.dbkit.replica_mariadb`."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from hotsync_events.dbkit.kit import DatabaseError, find_program, run_tool, systemd_running
from hotsync_events.childproc import alive
from hotsync_events.dbkit.replica import ReplicationError, answers_within, owner_of, run, spawn_daemon, wait_for

if TYPE_CHECKING:
    from hotsync_events.dbkit.replica_mariadb import MariaDBReplication


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


def unescape(value: str) -> str:
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

    def __init__(self, repl: MariaDBReplication) -> None:
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
                    pid = int(Path(pid_file or "").read_text().split()[0])
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
                return not alive(pid, reap=True)   # the daemon spawned here: reaped once gone
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
        hint = answers_within(srv, self.repl.start_timeout)
        if hint is not None:
            if "access denied" in hint:
                hint += (" -- after a seed the server holds the master's accounts: this host's password "
                         "file must hold the master's password for that account (or use unix_socket)")
            raise ReplicationError(f"{srv.label}: the server does not answer {self.repl.start_timeout:.0f} s "
                                   f"after its start: {hint}")


def run_stdin_file(argv: list[str], src, *, server: str, what: str, timeout: float = 6 * 3600) -> None:
    run_tool(argv, server=server, what=what, stdin=src, stdout=subprocess.DEVNULL, timeout=timeout)


def backup_gtid(backup: Path, server: str) -> str:
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


def check_versions(backup: Path, server: str) -> None:
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
