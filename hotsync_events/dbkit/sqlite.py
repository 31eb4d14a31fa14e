"""SQLite: a database file dumped consistently with SQLite's online backup, restored over the file.

Many applications keep their data in one SQLite file. Copying that file while the application writes
gives a torn copy; :class:`SQLite` takes SQLite's own online backup (a consistent snapshot even while the
application writes, WAL or not), checks it (``PRAGMA integrity_check``, a manifest of tables and row
counts), and the restore puts a checked copy in place through a temp file and a rename. Leave the live
file (and its ``-wal``/``-shm``/``-journal`` companions) out of the sync: only the dump travels::

    @hookimpl
    def hotsync_sync_paths():
        yield SyncPath("/var/lib/acme-crm/crm.sqlite*", exclude=True)

    @hookimpl
    def hotsync_dumps():
        yield sqlite_dump("acme-crm", "/var/lib/acme-crm/crm.sqlite")
"""
from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from hotsync_events.dbkit.kit import DUMP_DIR, DatabaseError, Staged, check_counts, engine_dump, manifest
from hotsync_events.fsutil import fsync_dir
from hotsync_events.paths import Root
from hotsync_events.types import Dump

__all__ = ["SQLite", "sqlite_dump"]

_TIMEOUT = 30.0   # seconds a locked database is waited for


@dataclass(frozen=True)
class SQLite:
    """One SQLite database file (a host path, under *root*)."""

    root: Root
    path: str
    owner: tuple[int, int] | None = None     # (uid, gid) the restored file gets; None: the file's or root's

    @property
    def label(self) -> str:
        return f"SQLite database {self.path}"

    def with_root(self, root: Root) -> SQLite:
        return self if root == self.root else replace(self, root=root)

    def _connect(self, path: Path, *, readonly: bool) -> sqlite3.Connection:
        uri = f"file:{path}?mode={'ro' if readonly else 'rwc'}"
        try:
            return sqlite3.connect(uri, uri=True, timeout=_TIMEOUT, isolation_level=None)
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.label}: cannot open {path}: {exc}") from None

    def ping(self) -> None:
        live = self.root.join(self.path)
        if not live.is_file():
            raise DatabaseError(f"{self.label}: there is no such file under {self.root.path}")
        con = self._connect(live, readonly=True)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.label}: {exc}") from None
        finally:
            con.close()

    def ensure_running(self, *, log: Callable[[str], None] = print, wait: float = 60) -> None:
        """A file needs no server: nothing to start."""

    @staticmethod
    def _counts(con: sqlite3.Connection) -> dict[str, int]:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                            "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {t: con.execute(f'SELECT count(*) FROM "{t.replace(chr(34), chr(34) * 2)}"').fetchone()[0]
                for t in tables}

    def _check(self, con: sqlite3.Connection, what: str) -> None:
        ok = con.execute("PRAGMA integrity_check").fetchone()
        if not ok or ok[0] != "ok":
            raise DatabaseError(f"{self.label}: {what} fails SQLite's integrity check: {ok and ok[0]}")

    def dump(self, target: Path, databases: Sequence[str] | None = None, *,
             log: Callable[[str], None] = print) -> Path:
        """A consistent copy of the file (SQLite's online backup) at *target*, integrity-checked, with its
        manifest (tables and row counts) in a table ``hotsync_manifest`` of the copy."""
        self.ping()
        src = self._connect(self.root.join(self.path), readonly=True)
        try:
            with Staged(Path(target)) as staged:
                dst = self._connect(staged.path, readonly=False)
                try:
                    src.backup(dst)
                    self._check(dst, "the backup")
                    counts = self._counts(dst)
                    doc = manifest("sqlite", self.label, {"main": counts}, whole_server=True)
                    dst.execute("CREATE TABLE hotsync_manifest (doc TEXT NOT NULL)")
                    dst.execute("INSERT INTO hotsync_manifest VALUES (?)", (json.dumps(doc, sort_keys=True),))
                finally:
                    dst.close()
                staged.commit()
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.label}: backup failed: {exc}") from None
        finally:
            src.close()
        log(f"{self.label}: dumped {len(counts)} table(s), {sum(counts.values())} rows, to {target}")
        return Path(target)

    def restore(self, source: Path, *, log: Callable[[str], None] = print) -> None:
        """Put the checked content of the dump *source* in place of the live file (temp file, fsync, rename)."""
        live = self.root.join(self.path)
        live.parent.mkdir(parents=True, exist_ok=True)
        tmp = live.with_name(f".{live.name}.hotsync-restore-{os.getpid()}")
        try:
            con = self._connect(Path(source), readonly=True)
            out = self._connect(tmp, readonly=False)
            try:
                con.backup(out)
                doc = json.loads(out.execute("SELECT doc FROM hotsync_manifest").fetchone()[0])
                out.execute("DROP TABLE hotsync_manifest")
                self._check(out, "the restored copy")
                check_counts(self.label, doc["databases"], {"main": self._counts(out)})
            except (sqlite3.Error, TypeError, KeyError, ValueError) as exc:
                raise DatabaseError(f"{self.label}: the dump {source} cannot be restored: {exc}") from None
            finally:
                con.close()
                out.close()
            st = live.stat() if live.exists() else None
            owner = self.owner or ((st.st_uid, st.st_gid) if st else None)
            if owner and os.geteuid() == 0:
                os.chown(tmp, *owner)
            os.chmod(tmp, st.st_mode & 0o7777 if st else 0o640)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            for extra in ("-wal", "-shm", "-journal"):      # the old file's journals belong to the old file
                try:
                    os.unlink(f"{live}{extra}")
                except FileNotFoundError:
                    pass
            os.replace(tmp, live)
            fsync_dir(live.parent)
        finally:
            if tmp.exists():
                tmp.unlink()
        log(f"{self.label}: restored from {source}")


def sqlite_dump(name: str, path: str, *, dump_path: str | None = None, priority: int = 50) -> Dump:
    """A Dump of the SQLite file *path* (a host path), shipped as ``/var/lib/hotsync/dumps/<name>.sqlite``
    (or *dump_path*) and restored over *path* at promote."""
    return engine_dump(name, dump_path or f"{DUMP_DIR}/{name}.sqlite", SQLite(Root("/"), path), priority=priority)
