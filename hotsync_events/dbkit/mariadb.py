"""MariaDB dumps and restores through the server's unix socket, with the client tools as argument lists.

The dump file (one per server) is plain SQL that ``mariadb < file`` could load by hand:

1. ``mariadb-dump --single-transaction --routines --events --triggers --add-drop-database --databases
   ...``: every database but information_schema, performance_schema, sys and mysql (the system schema is
   never copied as tables), all in one consistent snapshot of the InnoDB tables;
2. ``mariadb-dump --system=users --insert-ignore``: users and grants (``CREATE USER IF NOT EXISTS``,
   ``GRANT``);
3. a last comment line ``-- hotsync-manifest: {json}`` with the row count of every table, counted from
   the dump itself (so it is exactly what the snapshot held, whatever ran meanwhile).

Each part must end with the tool's ``-- Dump completed`` line. Credentials go to the client through a
0600 option file in a private directory under the root, never on the command line.
"""
from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from hotsync_events.paths import Root

from hotsync_events.dbkit.kit import (DatabaseError, Staged, check_counts, work_dir, dumps_json, find_program, manifest, read_secret,
                       run_tool, start_and_wait, stderr_tail)

SYSTEM_DATABASES = frozenset({"information_schema", "performance_schema", "sys", "mysql"})
COMPLETED = b"-- Dump completed"
MANIFEST_PREFIX = b"-- hotsync-manifest: "
DUMP_OPTIONS = ("--single-transaction", "--routines", "--events", "--triggers", "--skip-dump-date",
                "--add-drop-database", "--hex-blob", "--max-allowed-packet=1G")


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class MariaDB:
    """One MariaDB server reached through its unix socket (host paths, resolved under *root*)."""

    root: Root
    socket: str = "/run/mysqld/mysqld.sock"
    user: str = "root"
    password_file: str = ""
    datadir: str = "/var/lib/mysql"
    unit: str = "mariadb.service"
    key: str = "mysqld"             # config key the props come from (named in errors)

    @property
    def label(self) -> str:
        return f"MariaDB at {self.socket}"

    def with_root(self, root: Root) -> MariaDB:
        return self if root == self.root else replace(self, root=root)

    # ---------------------------------------------------------------------------------- connection
    @contextmanager
    def _client(self) -> Iterator[list[str]]:
        """``[--defaults-file=F, --socket=S, --user=U]``: the options every client tool starts with."""
        password = read_secret(self.root, self.password_file, server=self.label,
                               prop=f"{self.key} PasswordFile")
        with work_dir(self.root.join("/run/hotsync"), prefix="mariadb-credentials") as tmp:
            cnf = tmp / "client.cnf"
            # over the unix socket: no TLS (the 10.11 clients negotiate it even there once the server has a
            # certificate, e.g. for replication, which only costs CPU on a local socket)
            lines = ["[client]", "skip-ssl"]
            if password is not None:
                lines.append("password=" + _option_value(password, self.label))
            fd = os.open(cnf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")
            yield [f"--defaults-file={cnf}", f"--socket={self.root.join(self.socket)}", f"--user={self.user}"]

    def _fail(self, what: str, exc: DatabaseError) -> DatabaseError:
        text = str(exc)
        if "Access denied" in text or "1045" in text or "1698" in text:
            return DatabaseError(f"{self.label}: access denied for user {self.user!r}: check {self.key} "
                                 f"DumpUser and PasswordFile ({what})")
        if "2002" in text or "Can't connect" in text or "No such file" in text:
            return DatabaseError(f"{self.label}: the server is not running (no socket {self.socket}) ({what})")
        return exc

    def query(self, cli: list[str], sql: str, *, what: str) -> list[list[str]]:
        """Rows of *sql* (tab-separated batch output; ask for HEX() of names that may hold odd bytes)."""
        argv = [find_program("mariadb", "mysql"), *cli, "--batch", "--skip-column-names", "-e", sql]
        try:
            cp = run_tool(argv, server=self.label, what=what, timeout=600)
        except DatabaseError as exc:
            raise self._fail(what, exc) from None
        return [ln.split("\t") for ln in cp.stdout.decode("utf-8", "surrogateescape").splitlines() if ln]

    def ping(self) -> None:
        with self._client() as cli:
            self.query(cli, "SELECT 1", what="connect")

    def databases(self, cli: list[str]) -> list[str]:
        rows = self.query(cli, "SELECT HEX(SCHEMA_NAME) FROM information_schema.SCHEMATA ORDER BY 1",
                          what="list databases")
        names = (bytes.fromhex(r[0]).decode("utf-8", "surrogateescape") for r in rows)
        return sorted(n for n in names if n not in SYSTEM_DATABASES)

    # ---------------------------------------------------------------------------------- dump
    def dump(self, target: Path, databases: Sequence[str] | None = None, *, log=print) -> Path:
        """Write a checked dump of *databases* (None: all) to *target*; the old one stays on failure."""
        dump_tool = find_program("mariadb-dump", "mysqldump")
        with self._client() as cli, Staged(target) as staged:
            names = self.databases(cli) if databases is None else list(databases)
            with open(staged.path, "wb") as out:
                if names:
                    self._run_dump([dump_tool, *cli, *DUMP_OPTIONS, "--databases", *names], out,
                                   what=f"dump {len(names)} database(s)")
                data_end = out.tell()
                self._run_dump([dump_tool, *cli, "--skip-dump-date", "--system=users", "--insert-ignore"], out,
                               what="dump users and grants")
                out.flush()
                counts = count_rows(staged.path, data_end) if names else {}
                for name in names:
                    counts.setdefault(name, {})
                man = manifest("mariadb", self.label, counts, whole_server=databases is None,
                               users_offset=data_end)
                out.write(MANIFEST_PREFIX + dumps_json(man).encode() + b"\n")
            staged.commit()
        rows = sum(sum(t.values()) for t in counts.values())
        log(f"{self.label}: dumped {len(names)} database(s), {rows} rows, to {target}")
        return target

    def _run_dump(self, argv: list[str], out, *, what: str) -> None:
        out.flush()
        start = out.tell()
        try:
            run_tool(argv, server=self.label, what=what, stdout=out)
        except DatabaseError as exc:
            raise self._fail(what, exc) from None
        out.seek(0, os.SEEK_END)
        end = out.tell()
        with open(out.name, "rb") as fh:
            fh.seek(max(start, end - 256))
            tail = fh.read()
        if tail.rstrip().rpartition(b"\n")[2].strip() != COMPLETED:
            raise DatabaseError(f"{self.label}: cannot {what}: the dump has no '-- Dump completed' line "
                                "(incomplete output)")

    # ---------------------------------------------------------------------------------- restore
    def restore(self, source: Path, *, log=print) -> None:
        """Load the dump at *source* into this server and check every table's row count."""
        man = read_manifest(source, self.label)
        self.ensure_running(log=log)
        with self._client() as cli:
            if man.get("whole_server"):
                for name in self.databases(cli):
                    if name not in man["databases"]:
                        self.query(cli, f"DROP DATABASE {quote(name)}", what=f"drop database {name}")
                        log(f"{self.label}: dropped database {name} (not on the master)")
            self._load(cli, source, int(man["users_offset"]))
            check_counts(self.label, man["databases"], self.count_tables(cli, man["databases"]))
        log(f"{self.label}: restored {len(man['databases'])} database(s) from {source}, row counts match")

    def _load(self, cli: list[str], source: Path, users_offset: int) -> None:
        """Feed the dump to ``mariadb``; user lines for our own account are left out, so it keeps working."""
        mine = tuple(s.encode() for s in (f"`{self.user}`@`localhost`", f"'{self.user}'@'localhost'"))
        argv = [find_program("mariadb", "mysql"), *cli, "--binary-mode", "--max-allowed-packet=1G"]
        with tempfile.TemporaryFile() as err_file:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err_file)
            stdin = proc.stdin
            assert stdin is not None    # stdin=PIPE
            try:
                with open(source, "rb") as src:
                    left = users_offset
                    while left > 0:
                        chunk = src.read(min(left, 1 << 20))
                        if not chunk:
                            break
                        stdin.write(chunk)
                        left -= len(chunk)
                    for line in src:
                        if line.startswith(MANIFEST_PREFIX) or any(m in line for m in mine):
                            continue
                        stdin.write(line)
                stdin.close()
            except BrokenPipeError:
                pass
            finally:
                code = proc.wait()
            if code != 0:
                err_file.seek(0)
                exc = DatabaseError(f"{self.label}: cannot load {source}: exit {code}"
                                    + stderr_tail(err_file.read()))
                raise self._fail(f"load {source}", exc)

    def count_tables(self, cli: list[str], expected: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for db, tables in expected.items():
            names = sorted(tables)
            have = {r[0] for r in self.query(
                cli, "SELECT HEX(TABLE_NAME) FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                     f"UNHEX('{db.encode('utf-8', 'surrogateescape').hex()}')", what=f"list tables of {db}")}
            out[db] = {}
            present = [t for t in names if t.encode("utf-8", "surrogateescape").hex().upper() in have]
            for i in range(0, len(present), 200):
                part = present[i:i + 200]
                sql = " UNION ALL ".join(f"SELECT {j}, COUNT(*) FROM {quote(db)}.{quote(t)}"
                                         for j, t in enumerate(part))
                for idx, n in self.query(cli, sql, what=f"count rows in {db}"):
                    out[db][part[int(idx)]] = int(n)
        return out

    # ---------------------------------------------------------------------------------- server
    def ensure_running(self, *, log=print, wait: float = 60) -> None:
        """Connect; if the server is down, start it (systemd on the real root, else the process back-end)."""
        start_and_wait(self, lambda: self._spawn(log), wait=wait)

    def _spawn(self, log) -> None:
        """Process back-end: ``mariadbd`` on the data directory under the root, socket only, as its owner."""
        datadir = self.root.join(self.datadir)
        if not (datadir / "mysql").is_dir():
            raise DatabaseError(f"{self.label}: the server is not running and {self.datadir} holds no "
                                "initialised data directory to start it from")
        owner = pwd.getpwuid(datadir.stat().st_uid)
        sock = self.root.join(self.socket)
        sock.parent.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(sock.parent, owner.pw_uid, owner.pw_gid)
        log_dir = self.root.join("/var/log/hotsync")
        log_dir.mkdir(parents=True, exist_ok=True)
        # the pid file beside the socket (a directory the server's user owns), the log on the server's
        # stderr opened here: the server runs as the data directory's owner, who may write in neither
        # /run/hotsync nor /var/log/hotsync (a real host's MariaDB runs as mysql)
        argv = [find_program("mariadbd", "mysqld", dirs=("/usr/sbin",)), "--no-defaults", f"--datadir={datadir}",
                f"--socket={sock}", f"--pid-file={sock.parent / 'mysqld.pid'}", "--skip-networking"]
        if os.geteuid() == 0:
            argv.append(f"--user={owner.pw_name}")
        log(f"{self.label}: starting the server (process back-end), log in {log_dir / 'mysqld.log'}")
        with open(log_dir / "mysqld.log", "ab") as logf:
            subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True,
                             close_fds=True)


def _option_value(value: str, server: str) -> str:
    """*value* for a MariaDB option file: backslashes doubled, wrapped in a quote it does not contain.

    The option-file reader ends a value at a ``#`` outside quotes and tracks both quote kinds, so the
    wrapping quote must be one the value does not hold.
    """
    esc = value.replace("\\", "\\\\")
    for q in ("'", '"'):
        if q not in value:
            return q + esc + q
    if "#" not in value and value == value.strip():
        return esc
    raise DatabaseError(f"{server}: the password holds both quote kinds and '#', which a MariaDB option "
                        "file cannot carry; change the password")


# ------------------------------------------------------------------------------------------ parsing
_IDENT = re.compile(rb"`((?:[^`]|``)*)`")
_STRING = re.compile(rb"'[^'\\]*(?:\\.[^'\\]*)*'", re.S)


def _ident(line: bytes, start: int) -> tuple[str, int]:
    m = _IDENT.match(line, start)
    if not m:
        raise ValueError(f"no identifier in {line[:80]!r}")
    return m.group(1).replace(b"``", b"`").decode("utf-8", "surrogateescape"), m.end()


def _tuples(values: bytes) -> int:
    """Rows in ``(..),(..);`` once quoted strings are blanked (a string may hold '),(')."""
    bare = _STRING.sub(b"''", values).strip().rstrip(b";").strip()
    return 0 if not bare else bare.count(b"),(") + 1


def count_rows(path: Path, end: int) -> dict[str, dict[str, int]]:
    """Rows per database and table in the data part (the first *end* bytes) of a mariadb-dump file.

    mariadb-dump writes ``INSERT INTO `t` VALUES`` then one row per line (a row cannot hold a raw
    newline: the tool escapes it), the last ending in ``;``; older tools put the rows on the INSERT line.
    """
    counts: dict[str, dict[str, int]] = {}
    db = ""         # set by the USE line that `--databases` writes before each database's tables
    table = ""      # set by the INSERT (or CREATE TABLE) line before its rows
    in_rows = False
    with open(path, "rb") as fh:
        pos = 0
        for line in fh:
            pos += len(line)
            if pos > end:
                break
            if in_rows:
                counts[db][table] += 1
                if line.rstrip(b"\r\n").endswith(b";"):
                    in_rows = False
                continue
            if line.startswith(b"INSERT INTO `"):
                table, at = _ident(line, 12)
                counts.setdefault(db, {}).setdefault(table, 0)
                rest = line[at:].strip()
                if rest == b"VALUES":
                    in_rows = True
                elif rest.startswith(b"VALUES"):
                    counts[db][table] += _tuples(rest[6:])
            elif line.startswith(b"USE `"):
                db, _ = _ident(line, 4)
                counts.setdefault(db, {})
            elif line.startswith(b"CREATE TABLE `"):
                table, _ = _ident(line, 13)
                counts.setdefault(db, {}).setdefault(table, 0)
    return counts


def read_manifest(source: Path, server: str) -> dict:
    """The manifest line at the end of a dump file; DatabaseError if the file is missing or incomplete."""
    try:
        with open(source, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            step = 1 << 16
            while True:
                fh.seek(max(0, size - step))
                tail = fh.read()
                at = tail.rfind(b"\n" + MANIFEST_PREFIX)
                if at >= 0 or step >= size:
                    break
                step *= 4
    except FileNotFoundError:
        raise DatabaseError(f"{server}: no dump at {source}") from None
    if at < 0 and not tail.startswith(MANIFEST_PREFIX):
        raise DatabaseError(f"{server}: dump {source} is incomplete (no manifest line)")
    line = tail[at + 1:] if at >= 0 else tail
    try:
        man = json.loads(line[len(MANIFEST_PREFIX):].decode())
    except ValueError:
        raise DatabaseError(f"{server}: dump {source} has a damaged manifest line") from None
    if man.get("engine") != "mariadb":
        raise DatabaseError(f"{server}: {source} is not a MariaDB dump (engine {man.get('engine')!r})")
    return man
