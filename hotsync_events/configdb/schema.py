"""The schema of the config databases: configobj configspec files checked with ``validate``.

Packaged specs live in ``db/<database>.spec``. A plugin extends a database through the
``hotsync_config_schema`` hook; the plugin manager installs those spec files under
``<root>/var/lib/hotsync/schema/<database>/<plugin>.spec`` (as a package install drops its defaults
into e-smith's defaults tree), so validating a ``config setprop`` never needs to load plugins.

A spec file is a configspec. Each section is a key; ``__type__`` is the record type created with the
defaults; every other entry is a prop and its check, with these keywords beside ``validate``'s own:

* ``default=`` the value a missing prop gets when the database is initialised and before every event;
* ``secret=True`` shown masked by ``show``, ``printjson``, ``search`` and ``history``;
* ``force=True`` the default overwrites the current value, as e-smith's ``force`` tree does;
* ``replaced_by='name'`` an old name a database may hold but nothing reads: a write is refused, naming
  the prop to set instead;
* ``local=True`` the prop is this host's own (its role, its peer, its ports): ``hotsync-promote`` keeps
  it when it applies the master's copy of the database.

The comment lines just above a section or a prop are its description (``config info``). Props that no
spec names are accepted as they are: the database is open, as e-smith's is.
"""
from __future__ import annotations

import ipaddress
import re
import sys
import types
from collections import namedtuple
from pathlib import Path

from configobj import ConfigObj

from hotsync_events.configdb.db import DBError, Record
from hotsync_events.paths import Root, data_dir


def _import_validate():
    """``configobj.validate``, without the pprint it imports for its doctests only.

    ``from pprint import pprint`` at validate's top pulls dataclasses and inspect (ast, dis, tokenize):
    about 10 ms, 40% of Python's own start-up, at every ``config setprop``. While validate is imported,
    ``pprint`` is a stand-in whose ``pprint`` loads the real module when called; the stand-in leaves
    ``sys.modules`` right after, so everyone else who imports pprint gets the real one.
    """
    if "pprint" in sys.modules:
        from configobj import validate
        return validate

    def pprint(*args, **kwargs):  # what validate's doctests call; loads the real pprint then
        import pprint as real

        return real.pprint(*args, **kwargs)

    stand_in = types.ModuleType("pprint")
    vars(stand_in)["pprint"] = pprint
    sys.modules["pprint"] = stand_in
    try:
        from configobj import validate
    finally:
        if sys.modules.get("pprint") is stand_in:
            del sys.modules["pprint"]
    return validate


_v = _import_validate()

TYPE_CHECKING = False  # typing (and dataclasses) cost `config setprop` milliseconds at every start
if TYPE_CHECKING:
    from collections.abc import Callable

    from configobj.validate import Validator

__all__ = ["InvalidValue", "KeySpec", "PropSpec", "Schema", "SchemaError", "apply_defaults", "load",
           "secret_test", "spec_files", "validator_for"]

META_KEYWORDS = ("secret", "force", "local")


class SchemaError(DBError):
    """A spec file that cannot be used (syntax, an unknown check, two sources defining one prop).

    A DBError (exit 4), so a command that needs the schema says what is wrong instead of a traceback.
    """

    exit_code = 4


class InvalidValue(DBError):
    """A value the schema refuses. The message names the key, the prop, the value and what is allowed."""

    exit_code = 3


# ---------------------------------------------------------------------------------------------- checks
_HOSTNAME = re.compile(r"(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")
_EMAIL = re.compile(r"[A-Za-z0-9.!#%&'*+/=?^_`{}~-]+@[A-Za-z0-9.-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _is_host(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(_HOSTNAME.fullmatch(value)) and not value.replace(".", "").isdigit()


def check_host(value, *args, **kw):
    """An IP address (v4 or v6) or a host name, and nothing else; empty unsets it."""
    if not isinstance(value, str) or (value and not _is_host(value)):
        raise _v.VdtValueError(value)
    return value


def check_email(value, *args, **kw):
    """A mail address, ``user@domain``."""
    if not isinstance(value, str) or not _EMAIL.fullmatch(value):
        raise _v.VdtValueError(value)
    return value


def check_hostport(value, *args, **kw):
    """``host`` or ``host:port`` (IPv6 as ``[addr]:port``)."""
    if not isinstance(value, str):
        raise _v.VdtTypeError(value)
    host, port = value, None
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else (None if not rest else "x")
        if ":" not in host:          # brackets are for IPv6 addresses only: "[evil]" is no host
            raise _v.VdtValueError(value)
    elif value.count(":") == 1:
        host, port = value.split(":")
    if not _is_host(host) or (port is not None and not (port.isdigit() and 0 < int(port) < 65536)):
        raise _v.VdtValueError(value)
    return value


def check_password(value, min=1, max=256, **kw):
    """A secret on one line: printable characters, no leading or trailing space."""
    if not isinstance(value, str):
        raise _v.VdtTypeError(value)
    if value == "":
        return value
    if _CONTROL.search(value) or value != value.strip() or not int(min) <= len(value) <= int(max):
        raise _v.VdtValueError(value)
    return value


def check_line(value, min=0, max=4096, **kw):
    """One line of text, no control characters."""
    if not isinstance(value, str):
        raise _v.VdtTypeError(value)
    if _CONTROL.search(value) or not int(min) <= len(value) <= int(max):
        raise _v.VdtValueError(value)
    return value


def check_fingerprint(value, *args, **kw):
    """A certificate's SHA-256 fingerprint (``SHA256:AB:CD:...``, colons and case free); empty unsets it."""
    if not isinstance(value, str):
        raise _v.VdtTypeError(value)
    hexs = value.strip().upper().removeprefix("SHA256:").replace(":", "")
    if value and (len(hexs) != 64 or any(c not in "0123456789ABCDEF" for c in hexs)):
        raise _v.VdtValueError(value)
    return value


_CUSTOM = {"host": check_host, "email": check_email, "hostport": check_hostport,
           "password": check_password, "line": check_line, "fingerprint": check_fingerprint}

# what each check allows, in words, for error messages and ``config info``
_ALLOWED_WORDS = {
    "host": "an IP address or a host name",
    "fingerprint": "a SHA-256 certificate fingerprint (SHA256:AB:CD:..., as hotsync status prints it)",
    "email": "a mail address (user@domain)",
    "hostport": "host or host:port",
    "password": "one line of printable characters without leading or trailing spaces",
    "line": "one line of text without control characters",
    "boolean": "yes/no, true/false, on/off, 1/0",
    "string": "a string",
    "ip_addr": "an IPv4 address",
}


def _validator() -> Validator:
    def tolerant(fn):
        def check(value, *args, **kw):
            for meta in (*META_KEYWORDS, "replaced_by"):
                kw.pop(meta, None)
            return fn(value, *args, **kw)
        return check

    base = _v.Validator()
    funcs = {name: tolerant(fn) for name, fn in {**base.functions, **_CUSTOM}.items()}
    return _v.Validator(funcs)


# ---------------------------------------------------------------------------------------------- model
class PropSpec(namedtuple("PropSpec",
                          "key prop check function args default secret force description source local replaced_by",
                          defaults=(False, None))):
    """One prop of a key: its ``validate`` check (function name and arguments), default, flags, description.

    Immutable; a named tuple rather than a frozen dataclass so that loading the schema stays cheap.
    """

    __slots__ = ()

    @property
    def allowed(self) -> str:
        """What values are allowed, in words."""
        if self.function == "option":
            opts = [a for a in self.args if a != ""]
            return "one of " + ", ".join(opts) + (" (or empty)" if "" in self.args else "")
        if self.function == "integer":
            return _range_words("a whole number", self.args)
        if self.function in ("password", "line", "string"):
            kw = dict(self.args)
            if "min" in kw or "max" in kw:
                return f"{_ALLOWED_WORDS[self.function]}, {_length(kw)}"
        if self.function in _ALLOWED_WORDS:
            return _ALLOWED_WORDS[self.function]
        return self.check


def _length(kw: dict) -> str:
    return f"{kw.get('min', 0)} to {kw['max']} characters" if "max" in kw else f"at least {kw['min']} characters"


def _range_words(what: str, kwargs: tuple) -> str:
    kw = dict(kwargs)
    lo, hi = kw.get("min"), kw.get("max")
    if lo is not None and hi is not None:
        return f"{what} from {lo} to {hi}"
    if lo is not None:
        return f"{what} of at least {lo}"
    if hi is not None:
        return f"{what} of at most {hi}"
    return what


class KeySpec(namedtuple("KeySpec", "key type description source props")):
    """One key of a database: the record type it is created with and its props (name -> PropSpec)."""

    __slots__ = ()

    def __new__(cls, key: str, type: str, description: str, source: str, props: dict | None = None):
        return super().__new__(cls, key, type, description, source, {} if props is None else props)


class Schema:
    """The merged spec of one database."""

    def __init__(self, db: str, keys: dict[str, KeySpec]) -> None:
        self.db = db
        self.keys = keys
        self._validator: Validator | None = None

    def prop(self, key: str, prop: str) -> PropSpec | None:
        ks = self.keys.get(key)
        return None if ks is None else ks.props.get(prop)

    def is_secret(self, key: str, prop: str) -> bool:
        ps = self.prop(key, prop)
        return bool(ps and ps.secret)

    def check(self, key: str, prop: str, value: str) -> None:
        """Raise InvalidValue unless *value* is allowed for *key* *prop*."""
        ps = self.prop(key, prop)
        if ps is None:
            return
        if ps.replaced_by and value != ps.default:   # an old name, never read: point to the one that is
            raise InvalidValue(f"{self.db} {key} {prop} is an old name, not read any more: set {key} "
                               f"{ps.replaced_by} instead (config setprop {key} {ps.replaced_by} {value})")
        if self._validator is None:
            self._validator = _validator()
        try:
            self._validator.check(ps.check, value)
        except _v.ValidateError:
            raise InvalidValue(self._refusal(ps, value)) from None

    def _refusal(self, ps: PropSpec, value: str) -> str:
        shown = "********" if ps.secret else value
        msg = f"refused {self.db} {ps.key} {ps.prop}={shown!r}: allowed is {ps.allowed}"
        near = None if ps.secret else nearest(value, _CHOICES.get(ps.function) or (
            [a for a in ps.args if a] if ps.function == "option" else []))
        if near:
            msg += f". Did you mean {near!r}?"
        return msg


_CHOICES = {"boolean": ["yes", "no", "true", "false", "on", "off"]}


def nearest(value: str, choices: list) -> str | None:
    """The allowed value *value* is most likely a typo of (``mastr`` -> ``master``), or None.

    Case-insensitive (``MASTER`` -> ``master``); a value already allowed is not "near" anything.
    """
    if not choices or value in choices:
        return None
    import difflib  # only when a value is refused

    lowered = {c.lower(): c for c in reversed(choices)}
    near = difflib.get_close_matches(value.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[near[0]] if near else None


# ---------------------------------------------------------------------------------------------- loading
def spec_files(root: Root, db: str) -> list[tuple[str, Path]]:
    """``(source, path)`` of every spec of *db*: the packaged one, then the plugins' installed ones."""
    out = []
    packaged = data_dir("db") / f"{db}.spec"
    if packaged.is_file():
        out.append(("core", packaged))
    installed = root.state_dir / "schema" / db
    if installed.is_dir():
        out.extend((p.stem, p) for p in sorted(installed.glob("*.spec")))
    return out


_CACHE: dict[tuple, Schema] = {}


def load(root: Root, db: str = "configuration") -> Schema:
    """The merged schema of *db* under *root*. SchemaError names both sources of a clash."""
    files = spec_files(root, db)
    stamp = tuple((src, str(p), p.stat().st_mtime_ns) for src, p in files)
    cached = _CACHE.get((db, stamp))
    if cached is not None:
        return cached
    keys: dict[str, KeySpec] = {}
    parser = _v.Validator()
    for source, path in files:
        for ks in parse_spec(path, source, parser):
            have = keys.get(ks.key)
            if have is None:
                keys[ks.key] = ks
                continue
            for name, ps in ks.props.items():
                if name in have.props:
                    raise SchemaError(
                        f"prop {ks.key} {name} of the {db} database is defined twice: by {have.props[name].source} "
                        f"and by {source}")
                have.props[name] = ps
    schema = _CACHE[(db, stamp)] = Schema(db, keys)
    return schema


def parse_spec(path: Path, source: str, parser: Validator | None = None) -> list[KeySpec]:
    parser = parser or _v.Validator()
    try:
        spec = ConfigObj(str(path), list_values=False, _inspec=True, encoding="utf-8")
    except Exception as exc:  # configobj raises several types
        raise SchemaError(f"spec file {path} of {source}: {exc}") from None
    out = []
    for key in spec.sections:
        section = spec[key]
        comment = spec.comments.get(key) or (_last_paragraph(spec.initial_comment) if key == spec.sections[0] else [])
        ks = KeySpec(key=key, type=str(section.get("__type__", "configuration")),
                     description=_comment(comment), source=source)
        for prop in section.scalars:
            if prop == "__type__":
                continue
            check = section[prop]
            try:
                fname, args, kwargs, default = parser._parse_with_caching(check)
            except _v.ValidateError as exc:
                raise SchemaError(f"spec file {path}: [{key}] {prop}: {exc}") from None
            if fname not in parser.functions and fname not in _CUSTOM:
                raise SchemaError(f"spec file {path}: [{key}] {prop}: unknown check {fname!r}")
            flags = {m: str(kwargs.pop(m, "false")).lower() in ("true", "yes", "1") for m in META_KEYWORDS}
            replaced_by = kwargs.pop("replaced_by", None)
            fargs = tuple(args) if fname == "option" else tuple(sorted(kwargs.items()))
            ks.props[prop] = PropSpec(key=key, prop=prop, check=check, function=fname, args=fargs,
                                      default=None if default is None else str(default),
                                      secret=flags["secret"], force=flags["force"],
                                      description=_comment(section.comments.get(prop)), source=source,
                                      local=flags["local"], replaced_by=replaced_by)
        out.append(ks)
    return out


def _last_paragraph(lines) -> list:
    """configobj files the comment of the first section into the file's initial comment: take its tail."""
    lines = list(lines or [])
    while lines and not lines[-1].strip():
        lines.pop()
    tail: list = []
    while lines and lines[-1].strip():
        tail.insert(0, lines.pop())
    return tail if lines or len(tail) <= 1 else tail[-1:]


def _comment(lines) -> str:
    text = " ".join(line.lstrip("#").strip() for line in (lines or []) if line.strip())
    return text


# ---------------------------------------------------------------------------------------------- use
def validator_for(root: Root) -> Callable[[str, str, Record | None, Record], None]:
    """A ConfigDB validator: checks each prop a write changes against the schema of its database."""

    def validate(db: str, key: str, old: Record | None, new: Record) -> None:
        schema = load(root, db)
        if key not in schema.keys:
            return
        before = {} if old is None else old.props
        for prop, value in new.props.items():
            if before.get(prop) != value:
                schema.check(key, prop, value)

    return validate


def secret_test(root: Root) -> Callable[[str, str, str], bool]:
    """``secret(db, key, prop)``: whether the schema marks that prop secret."""
    return lambda db, key, prop: load(root, db).is_secret(key, prop)


def default_records(schema: Schema) -> dict[str, Record]:
    """Every key the schema gives a type, with the props that have a default (a new database's content)."""
    out = {}
    for key, ks in schema.keys.items():
        rec = Record(ks.type)
        for prop, ps in ks.props.items():
            if ps.default is not None:
                rec.props[prop] = ps.default
        out[key] = rec
    return out


def apply_defaults(db, schema: Schema) -> list:
    """Give missing keys and props their defaults; ``force`` props are always reset. Returns the changes."""
    with db.transaction() as txn:
        txn.source = "schema defaults"
        for key, ks in schema.keys.items():
            rec = txn.record(key)
            new = Record(ks.type) if rec is None else rec.copy()
            for prop, ps in ks.props.items():
                if ps.default is None:
                    continue
                if ps.force or prop not in new.props:
                    new.props[prop] = ps.default
            if new != rec:
                txn.put(key, new)
    return txn.changes
