"""PostgreSQL dumps and restores through the server's unix socket, with the client tools as argument lists.

The dump file (one per server) is an uncompressed tar holding:

* ``manifest.json``: the databases, their member names, and the row count of every table;
* ``globals.sql``: ``pg_dumpall --globals-only`` (roles, memberships, tablespaces), checked for its
  ``PostgreSQL database cluster dump complete`` line;
* ``db-NNN.pgdump``: ``pg_dump -Fc`` of each database (every database that accepts connections and is
  not a template), checked with ``pg_restore --list``; the row counts are read from
  ``pg_restore --data-only -f -`` (one line per row between ``COPY ... FROM stdin;`` and ``\\.``), which
  also reads every data block back, so a dump that cannot be read is never committed.

Credentials reach the tools through a 0600 PGPASSFILE in a private directory under the root. With
``run_as`` (and when running as root) the connecting tools run as that system user (for ``peer``
authentication); their output is written by this process.
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

from hotsync_events.dbkit.kit import (DatabaseError, Staged, check_counts, dumps_json, manifest, read_secret, run_tool,
                       start_and_wait, stderr_tail, work_dir)

GLOBALS_DONE = b"PostgreSQL database cluster dump complete"
SKIP_DATABASES = frozenset({"template0", "template1"})
MAINTENANCE_DB = "template1"


def bin_dir(explicit: str = "") -> Path:
    """The client tools' directory: *explicit*, else the newest /usr/lib/postgresql/<major>/bin."""
    if explicit:
        return Path(explicit)
    found = sorted((p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()),
                   key=lambda p: int(p.parent.name))
    return found[-1] if found else Path("/usr/bin")


def ident(name: str) -> str:
    """An SQL identifier, always quoted."""
    return '"' + name.replace('"', '""') + '"'


def conninfo(dbname: str) -> str:
    """A libpq connection string naming *dbname* (so no database name is ever read as a URI)."""
    return "dbname='" + dbname.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Postgres:
    """One PostgreSQL server reached through its socket directory and port (host paths under *root*)."""

    root: Root
    socket_dir: str = "/run/postgresql"
    port: int = 5432
    user: str = "postgres"
    password_file: str = ""
    datadir: str = "/var/lib/postgresql"
    run_as: str = ""
    bindir: str = ""
    unit: str = "postgresql.service"
    key: str = "postgresql"

    @property
    def label(self) -> str:
        return f"PostgreSQL at {self.socket_dir}/.s.PGSQL.{self.port}"

    def with_root(self, root: Root) -> Postgres:
        return self if root == self.root else replace(self, root=root)

    def tool(self, name: str) -> str:
        return str(bin_dir(self.bindir) / name)

    # ---------------------------------------------------------------------------------- connection
    def _runner(self) -> pwd.struct_passwd | None:
        if not self.run_as or os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(self.run_as)
        except KeyError:
            raise DatabaseError(f"{self.label}: system user {self.run_as!r} ({self.key} RunAs) does not exist") from None

    @contextmanager
    def _session(self) -> Iterator[tuple[list[str], dict]]:
        """``(prefix, env)``: the argv prefix (runuser when needed) and the environment for client tools."""
        password = read_secret(self.root, self.password_file, server=self.label, prop=f"{self.key} PasswordFile")
        runner = self._runner()
        with work_dir(self.root.join("/run/hotsync"), prefix="pgsql-credentials") as tmp:
            env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
            env.update(PGHOST=str(self.root.join(self.socket_dir)), PGPORT=str(self.port), PGUSER=self.user,
                       PGCONNECT_TIMEOUT="10", PGAPPNAME="hotsync")
            if password is not None:
                passfile = tmp / "pgpass"
                esc = password.replace("\\", "\\\\").replace(":", "\\:")
                fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(f"*:*:*:*:{esc}\n")
                if runner is not None:
                    os.chown(tmp, runner.pw_uid, runner.pw_gid)
                    os.chown(passfile, runner.pw_uid, runner.pw_gid)
                env["PGPASSFILE"] = str(passfile)
            else:
                env["PGPASSFILE"] = os.devnull
            prefix = ["runuser", "-u", runner.pw_name, "--"] if runner is not None else []
            yield prefix, env

    def _fail(self, what: str, exc: DatabaseError) -> DatabaseError:
        text = str(exc)
        if "password authentication failed" in text or "no password supplied" in text \
                or "Peer authentication failed" in text or ("role " in text and "does not exist" in text):
            return DatabaseError(f"{self.label}: authentication failed for user {self.user!r}: check "
                                 f"{self.key} DumpUser, PasswordFile and RunAs ({what}){stderr_tail(text, 1)}")
        if ".s.PGSQL" in text and ("No such file or directory" in text or "Connection refused" in text):
            return DatabaseError(f"{self.label}: the server is not running (no socket) ({what})")
        return exc

    def _run(self, sess, argv: list[str], *, what: str, **kw) -> subprocess.CompletedProcess:
        prefix, env = sess
        try:
            return run_tool([*prefix, *argv], server=self.label, what=what, env=env, **kw)
        except DatabaseError as exc:
            raise self._fail(what, exc) from None

    def query(self, sess, sql: str, *, db: str = MAINTENANCE_DB, what: str) -> list[list[str]]:
        argv = [self.tool("psql"), "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-w",
                "-d", conninfo(db), "-c", sql]
        cp = self._run(sess, argv, what=what, timeout=600)
        return [ln.split("\t") for ln in cp.stdout.decode("utf-8", "surrogateescape").splitlines() if ln]

    def ping(self) -> None:
        with self._session() as sess:
            self.query(sess, "SELECT 1", what="connect")

    def databases(self, sess) -> list[str]:
        rows = self.query(sess, "SELECT encode(convert_to(datname, 'UTF8'), 'hex') FROM pg_database "
                                "WHERE datallowconn AND NOT datistemplate", what="list databases")
        return sorted(n for n in (bytes.fromhex(r[0]).decode("utf-8", "surrogateescape") for r in rows)
                      if n not in SKIP_DATABASES)

    # ---------------------------------------------------------------------------------- dump
    def dump(self, target: Path, databases: Sequence[str] | None = None, *, log=print) -> Path:
        """Write a checked dump bundle of *databases* (None: all) to *target*; the old one stays on failure."""
        with self._session() as sess, Staged(target) as staged, work_dir(target.parent) as work:
            names = self.databases(sess) if databases is None else list(databases)
            with open(work / "globals.sql", "wb") as out:
                self._run(sess, [self.tool("pg_dumpall"), "--globals-only", "-w"], what="dump roles (globals)",
                          stdout=out)
            if GLOBALS_DONE not in _tail(work / "globals.sql"):
                raise DatabaseError(f"{self.label}: cannot dump roles: pg_dumpall output is incomplete")
            members, counts = {}, {}
            for i, name in enumerate(names):
                member = f"db-{i:03d}.pgdump"
                with open(work / member, "wb") as out:
                    self._run(sess, [self.tool("pg_dump"), "-Fc", "-w", "-d", conninfo(name)],
                              what=f"dump database {name}", stdout=out)
                run_tool([self.tool("pg_restore"), "--list", str(work / member)], server=self.label,
                         what=f"check the dump of {name} (pg_restore --list)", stdout=subprocess.DEVNULL)
                members[name] = member
                counts[name] = self._count_rows(work / member, name)
            man = manifest("postgresql", self.label, counts, whole_server=databases is None, members=members)
            (work / "manifest.json").write_text(dumps_json(man), encoding="utf-8")
            import tarfile   # here: the plugins load at every command, a dump is rare

            with tarfile.open(staged.path, "w", format=tarfile.PAX_FORMAT) as tar:
                for member in ["manifest.json", "globals.sql", *members.values()]:
                    tar.add(work / member, arcname=member, recursive=False)
            staged.commit()
        rows = sum(sum(t.values()) for t in counts.values())
        log(f"{self.label}: dumped {len(names)} database(s), {rows} rows, to {target}")
        return target

    def _count_rows(self, path: Path, name: str) -> dict[str, int]:
        """Rows per table, from the COPY blocks of ``pg_restore --data-only -f -`` (reads all data back)."""
        argv = [self.tool("pg_restore"), "--data-only", "-f", "-", str(path)]
        counts: dict[str, int] = {}
        table = None
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
            stdout = proc.stdout
            assert stdout is not None    # stdout=PIPE
            try:
                for line in stdout:
                    if table is None:
                        if line.startswith(b"COPY ") and line.endswith(b" FROM stdin;\n"):
                            table = _copy_table(line)
                            counts[table] = 0
                    elif line == b"\\.\n":
                        table = None
                    else:
                        counts[table] += 1
            finally:
                stdout.close()
                code = proc.wait()
            if code != 0 or table is not None:
                err.seek(0)
                raise DatabaseError(f"{self.label}: cannot read back the dump of {name}: pg_restore exited {code}"
                                    + stderr_tail(err.read()))
        return counts

    # ---------------------------------------------------------------------------------- restore
    def restore(self, source: Path, *, log=print) -> None:
        """Load the bundle at *source*: roles, then each database (dropped and re-created); check row counts."""
        if not source.is_file():
            raise DatabaseError(f"{self.label}: no dump at {source}")
        import tarfile

        self.ensure_running(log=log)
        with self._session() as sess, work_dir(source.parent) as work:
            try:
                with tarfile.open(source, "r:") as tar:
                    tar.extractall(work, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(work)
                man = json.loads((work / "manifest.json").read_text(encoding="utf-8"))
            except (tarfile.TarError, OSError, ValueError) as exc:
                raise DatabaseError(f"{self.label}: dump {source} cannot be read: {exc}") from None
            if man.get("engine") != "postgresql":
                raise DatabaseError(f"{self.label}: {source} is not a PostgreSQL dump")
            self._load_globals(sess, work / "globals.sql")
            wanted = man["databases"]
            existing = self.databases(sess)
            if man.get("whole_server"):
                for name in existing:
                    if name not in wanted:
                        self.query(sess, f"DROP DATABASE {ident(name)} WITH (FORCE)", what=f"drop database {name}")
                        log(f"{self.label}: dropped database {name} (not on the master)")
            for name, member in man["members"].items():
                self.query(sess, f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE)", what=f"drop database {name}")
                with open(work / member, "rb") as dump:
                    self._run(sess, [self.tool("pg_restore"), "-w", "--create", "--exit-on-error",
                                     "-d", conninfo(MAINTENANCE_DB)], what=f"restore database {name}",
                              stdin=dump, stdout=subprocess.DEVNULL)
            check_counts(self.label, wanted, self.count_tables(sess, wanted))
        log(f"{self.label}: restored {len(wanted)} database(s) from {source}, row counts match")

    def _load_globals(self, sess, path: Path) -> None:
        """Roles from the master; lines about our own role are left out, so our login keeps working."""
        me = {self.user, ident(self.user)}
        kept = []
        for line in path.read_bytes().decode("utf-8", "surrogateescape").splitlines(keepends=True):
            words = line.split(None, 3)
            if len(words) >= 3 and words[0] in ("CREATE", "ALTER") and words[1] == "ROLE" \
                    and words[2].rstrip(";") in me:
                continue
            kept.append(line)
        path.write_bytes("".join(kept).encode("utf-8", "surrogateescape"))
        os.chmod(path, 0o644)
        with open(path, "rb") as fh:
            cp = self._run(sess, [self.tool("psql"), "-X", "-q", "-w", "-d", conninfo(MAINTENANCE_DB), "-f", "-"],
                           what="restore roles (globals)", stdin=fh, stdout=subprocess.DEVNULL)
        errors = [ln for ln in cp.stderr.decode("utf-8", "replace").splitlines()
                  if "ERROR:" in ln and "already exists" not in ln]
        if errors:
            raise DatabaseError(f"{self.label}: cannot restore roles: " + " | ".join(errors[:5]))

    def count_tables(self, sess, expected: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for db, tables in expected.items():
            names = sorted(tables)
            out[db] = {}
            for i in range(0, len(names), 200):
                part = names[i:i + 200]
                sql = " UNION ALL ".join(f"SELECT {j}, count(*) FROM ONLY {t}" for j, t in enumerate(part))
                for idx, n in self.query(sess, sql, db=db, what=f"count rows in {db}"):
                    out[db][part[int(idx)]] = int(n)
        return out

    # ---------------------------------------------------------------------------------- server
    def ensure_running(self, *, log=print, wait: float = 60) -> None:
        """Connect; if the server is down, start it (systemd on the real root, else the process back-end)."""
        start_and_wait(self, lambda: self._spawn(log), wait=wait, starting=("not running", "starting up"))

    def _spawn(self, log) -> None:
        """Process back-end: ``postgres -D DataDir -k SocketDir`` as the data directory's owner, no TCP."""
        datadir = self.root.join(self.datadir)
        if not (datadir / "PG_VERSION").is_file():
            raise DatabaseError(f"{self.label}: the server is not running and {self.datadir} holds no "
                                "initialised cluster to start it from")
        owner = pwd.getpwuid(datadir.stat().st_uid)
        sock = self.root.join(self.socket_dir)
        sock.mkdir(parents=True, exist_ok=True)
        log_dir = self.root.join("/var/log/hotsync")
        log_dir.mkdir(parents=True, exist_ok=True)
        argv = [self.tool("postgres"), "-D", str(datadir), "-k", str(sock), "-p", str(self.port),
                "-c", "listen_addresses="]
        if os.geteuid() == 0:
            if owner.pw_uid == 0:
                raise DatabaseError(f"{self.label}: {self.datadir} is owned by root; PostgreSQL refuses to run as root")
            os.chown(sock, owner.pw_uid, owner.pw_gid)
            argv = ["runuser", "-u", owner.pw_name, "--", *argv]
        log(f"{self.label}: starting the server (process back-end), log in {log_dir / 'postgresql.log'}")
        with open(log_dir / "postgresql.log", "ab") as logf:
            subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True,
                             close_fds=True)


# ------------------------------------------------------------------------------------------ parsing
_QUALIFIED = re.compile(r'((?:"(?:[^"]|"")*"|[^\s."(]+)(?:\.(?:"(?:[^"]|"")*"|[^\s."(]+))*)')


def _copy_table(line: bytes) -> str:
    """The qualified name (SQL, as pg_dump quotes it) in ``COPY schema.table (cols) FROM stdin;``."""
    text = line[5:].decode("utf-8", "surrogateescape")
    m = _QUALIFIED.match(text)
    if not m:
        raise DatabaseError(f"unexpected COPY line in a dump: {text[:80]!r}")
    return m.group(1)


def _tail(path: Path, size: int = 512) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - size))
        return fh.read()
