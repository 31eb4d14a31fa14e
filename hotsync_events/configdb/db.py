"""The configuration database: one e-smith style file per database, under the root.

``ConfigDB`` has the verbs of the ``db`` command. Readers take no lock and always see a whole file.
Writers take an exclusive ``flock`` on ``<file>.lock``, re-read the file under it, apply their change,
validate it against the schema and write the new file with temp file, fsync, rename, fsync of the
directory. So N processes changing the same key lose no update, and a writer killed at any moment leaves
the old file or the new one.

Nothing here imports pluggy, Mako or watchdog: ``config getprop`` must start fast.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections import namedtuple
from pathlib import Path

from hotsync_events.configdb.format import (UNKNOWN, KeyError_, Record, check_key, check_prop, decode_record, encode_record, find_raw,
                       is_legacy, parse_text, render_text)
from hotsync_events.fsutil import atomic_write, open_lock, remove_dead_temps
from hotsync_events.paths import Root, root_from

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `config getprop` must start fast
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

__all__ = ["Change", "ConfigDB", "DBError", "InvalidName", "MissingKey", "is_db_name", "open_db"]


class DBError(Exception):
    """Base of the database's errors; ``exit_code`` is what the CLI exits with."""

    exit_code = 4


class MissingKey(DBError):
    """The key (or prop) does not exist."""

    exit_code = 1


class InvalidName(DBError):
    """A key or prop name the format cannot hold."""

    exit_code = 2


class Change(namedtuple("Change", "db key prop old new")):
    """One prop that a write changes. ``prop`` is None for the record's type; old/new None = absent.

    Immutable (a named tuple: cheaper to import than a frozen dataclass).
    """

    __slots__ = ()


#: validator(db_name, key, old_record_or_None, new_record) raises on a refused value
#: journal(db_name, changes, source) is called under the lock, before the new file replaces the old;
#: source says what made the changes when it was not the command itself ("" or e.g. "schema defaults")
if TYPE_CHECKING:   # the type checker's aliases; at run time the strings that document them
    Validator = Callable[[str, str, Record | None, Record], None]
    Journal = Callable[[str, list, str], None]
else:
    Validator = "Callable[[str, str, Record | None, Record], None]"
    Journal = "Callable[[str, list, str], None]"


class ConfigDB:
    """One database file. Reads are lock-free; every write is one locked, atomic transaction."""

    def __init__(self, path: str | os.PathLike, *, name: str | None = None,
                 validator: Validator | None = None, journal: Journal | None = None) -> None:
        self.path = Path(path)
        self.name = name or self.path.name
        self.validator = validator
        self.journal = journal
        self._text: str | None = None
        self._raw: dict[str, str] | None = None
        self._legacy = False
        self._cache: dict[str, Record] = {}

    def __repr__(self) -> str:
        return f"ConfigDB({str(self.path)!r})"

    # ------------------------------------------------------------------ reading
    @property
    def exists(self) -> bool:
        return self.path.exists()

    def reload(self) -> ConfigDB:
        """Drop what was read; the next read sees the file as it is now."""
        self._text = self._raw = None
        self._cache.clear()
        return self

    def _read(self) -> str:
        if self._text is None:
            try:
                self._text = self.path.read_text(encoding="utf-8", errors="surrogateescape")
            except FileNotFoundError:
                self._text = ""
            self._legacy = is_legacy(self._text)
        return self._text

    def _index(self) -> dict[str, str]:
        if self._raw is None:
            self._raw, self._legacy = parse_text(self._read())
        return self._raw

    def _lookup(self, key: str) -> str | None:
        """The raw value of one key: searched for in the text until something needs the whole index."""
        if self._raw is None:
            raw = find_raw(self._read(), key)
            if raw is not UNKNOWN:
                return raw
        return self._index().get(key)

    def keys(self) -> list[str]:
        return sorted(self._index())

    def __contains__(self, key: str) -> bool:
        return key in self._index()

    def record(self, key: str) -> Record | None:
        """The record of *key* (a copy the caller may change), or None."""
        rec = self._cache.get(key)
        if rec is None:
            raw = self._lookup(key)
            if raw is None:
                return None
            rec = self._cache[key] = decode_record(raw, self._legacy)
        return rec.copy()

    def records(self) -> Iterator[tuple[str, Record]]:
        for key in self.keys():
            yield key, self.record(key)  # type: ignore[misc]

    def get(self, key: str) -> str | None:
        """The type of *key*, or None when it is missing."""
        rec = self.record(key)
        return None if rec is None else rec.type

    def getprop(self, key: str, prop: str, default: str | None = None) -> str | None:
        rec = self.record(key)
        if rec is None:
            return default
        return rec.props.get(prop, default)

    def props(self, key: str) -> dict[str, str]:
        rec = self.record(key)
        return {} if rec is None else rec.props

    def as_dict(self) -> dict[str, dict]:
        """Every record as ``{key: {"type": t, "props": {...}}}``."""
        return {k: {"type": r.type, "props": dict(r.props)} for k, r in self.records()}

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Lock, re-read, let the caller change records, then validate and commit them at once.

        An exception inside the block changes nothing.
        """
        lock_fd = open_lock(f"{self.path}.lock")
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            self.reload()
            txn = Transaction(self)
            yield txn
            txn._commit()
        finally:
            os.close(lock_fd)  # closing releases the flock
            self.reload()

    def set(self, key: str, rtype: str, props: Mapping[str, str] | None = None) -> list[Change]:
        """Create or replace *key* with *rtype* and exactly *props*."""
        with self.transaction() as txn:
            txn.set(key, rtype, props or {})
        return txn.changes

    def setprop(self, key: str, props: Mapping[str, str]) -> list[Change]:
        """Set props of an existing key; MissingKey if there is none."""
        with self.transaction() as txn:
            txn.setprop(key, props)
        return txn.changes

    def delprop(self, key: str, *props: str) -> list[Change]:
        with self.transaction() as txn:
            txn.delprop(key, *props)
        return txn.changes

    def delete(self, key: str) -> list[Change]:
        with self.transaction() as txn:
            txn.delete(key)
        return txn.changes


class Transaction:
    """The records of a locked database, changed in memory until the transaction commits."""

    def __init__(self, db: ConfigDB) -> None:
        self.db = db
        self._changed: dict[str, Record | None] = {}
        self.changes: list[Change] = []
        self.source = ""   # for the history: what made these changes, when not the command itself

    # reads inside the transaction see its own changes
    def record(self, key: str) -> Record | None:
        if key in self._changed:
            rec = self._changed[key]
            return None if rec is None else rec.copy()
        return self.db.record(key)

    def keys(self) -> list[str]:
        keys = set(self.db.keys())
        for key, rec in self._changed.items():
            (keys.add if rec is not None else keys.discard)(key)
        return sorted(keys)

    def __contains__(self, key: str) -> bool:
        return self.record(key) is not None

    def getprop(self, key: str, prop: str, default: str | None = None) -> str | None:
        rec = self.record(key)
        return default if rec is None else rec.props.get(prop, default)

    def put(self, key: str, record: Record | None) -> None:
        """Stage *record* (None deletes) for *key*."""
        check_name(key, kind="key")
        if record is not None:
            for prop in record.props:
                check_name(prop, kind="prop")
        self._changed[key] = None if record is None else record.copy()

    def set(self, key: str, rtype: str, props: Mapping[str, str]) -> None:
        self.put(key, Record(rtype, dict(props)))

    def setprop(self, key: str, props: Mapping[str, str]) -> None:
        rec = self.record(key)
        if rec is None:
            cmd = "config" if self.db.name == "configuration" else f"db {self.db.name}"
            raise MissingKey(f"no key {key!r} in the {self.db.name} database; create it first with: "
                             f"{cmd} set {key} TYPE [PROP VALUE]...")
        rec.props.update(props)
        self.put(key, rec)

    def delprop(self, key: str, *props: str) -> None:
        rec = self.record(key)
        if rec is None:
            raise MissingKey(f"no key {key!r} in the {self.db.name} database")
        for prop in props:
            rec.props.pop(prop, None)
        self.put(key, rec)

    def delete(self, key: str) -> None:
        if self.record(key) is None:
            raise MissingKey(f"no key {key!r} in the {self.db.name} database")
        self.put(key, None)

    def _commit(self) -> None:
        db = self.db
        raw = dict(db._index())
        changes: list[Change] = []
        for key, new in sorted(self._changed.items()):
            old = db.record(key)
            if old == new:
                continue
            if new is not None and db.validator is not None:
                db.validator(db.name, key, old, new)
            changes.extend(_diff(db.name, key, old, new))
            if new is None:
                raw.pop(key, None)
            else:
                raw[key] = encode_record(new)
        self.changes = changes
        if not changes and db.exists and not db._legacy:
            return
        if db._legacy:  # first write of a NethServer file: re-encode every record in our dialect (a staged
            # record that equals the old one was skipped above and is still in the legacy encoding)
            raw = {k: encode_record(self.record(k)) for k in raw}  # type: ignore[arg-type]
        if db.journal is not None and changes:
            db.journal(db.name, changes, self.source)
        remove_dead_temps(db.path)  # what writers killed mid-write left beside the file
        # surrogateescape: bytes that are not UTF-8 (an old hand edit) were read as surrogates; keep them as they are
        atomic_write(db.path, render_text(raw).encode("utf-8", "surrogateescape"), mode=0o640)


def check_name(name: str, *, kind: str) -> str:
    try:
        return check_key(name) if kind == "key" else check_prop(name)
    except KeyError_ as exc:
        raise InvalidName(str(exc)) from None


def _diff(db: str, key: str, old: Record | None, new: Record | None) -> list[Change]:
    out: list[Change] = []
    otype = None if old is None else old.type
    ntype = None if new is None else new.type
    if otype != ntype:
        out.append(Change(db, key, None, otype, ntype))
    oprops = {} if old is None else old.props
    nprops = {} if new is None else new.props
    for prop in sorted(set(oprops) | set(nprops)):
        if oprops.get(prop) != nprops.get(prop):
            out.append(Change(db, key, prop, oprops.get(prop), nprops.get(prop)))
    return out


_DB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]*")


def is_db_name(name: str) -> bool:
    """Whether *name* can name a database: a file under the root's db dir, no '/', no '..'."""
    return _DB_NAME.fullmatch(name) is not None


def open_db(name: str = "configuration", root: Root | str | None = None, *, validate: bool = True,
            initialise: bool = True, journal: bool = True, create: bool = True) -> ConfigDB:
    """Open database *name* under *root*, with the schema's validation and the change history.

    A database that does not exist yet is created with its schema's defaults, as a package install
    would do, so a sysadmin's first ``config setprop`` just works. With ``create=False`` (a read-only
    command) nothing is written: a missing database reads as its schema's defaults, in memory.
    """
    root = root if isinstance(root, Root) else root_from(root)
    if not is_db_name(name):
        raise InvalidName(f"invalid database name {name!r}: use letters, digits and _ . @ + - "
                          "(starting with a letter or digit)")
    db = ConfigDB(root.db_dir / name, name=name)
    if validate:
        db.validator = _LazyValidator(root)
    if journal:
        from hotsync_events.configdb.history import journal_for

        db.journal = journal_for(root)
    if initialise and not db.exists:
        from hotsync_events.configdb import schema

        if create:
            schema.apply_defaults(db, schema.load(root, name))
        else:
            db._raw = {k: encode_record(r) for k, r in schema.default_records(schema.load(root, name)).items()}
            db._text, db._legacy = "", False
    return db


class _LazyValidator:
    """Loads the schema (configobj, validate) on the first write, not when the database is opened."""

    def __init__(self, root: Root) -> None:
        self.root = root
        self._check: Validator | None = None

    def __call__(self, db: str, key: str, old: Record | None, new: Record) -> None:
        if self._check is None:
            from hotsync_events.configdb.schema import validator_for

            self._check = validator_for(self.root)
        self._check(db, key, old, new)
