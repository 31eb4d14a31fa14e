"""Template expansion: a target file is a directory of Mako fragments rendered and concatenated in name order.

Where fragments come from, lowest precedence first (e-smith's expand queue):

1. the core: ``templates/<target path>/<NN-name>`` of this package (:func:`hotsync_events.paths.data_dir`);
2. plugins: each directory the ``hotsync_template_dirs`` hook returns, laid out the same way;
3. the sysadmin: ``<root>/etc/hotsync/templates-custom/<target path>/<fragment>``.

A fragment of the same name in a later source replaces the earlier one, a new name is merged in; an empty
fragment is skipped, so an empty file in templates-custom switches a packaged fragment off. A plain file
(not a directory) at ``<source>/<target path>`` replaces the whole set, as in e-smith. Two plugins giving
one target the same fragment name is an error naming both.

Each fragment is its own Mako template, rendered with ``strict_undefined``: a name that is neither a
config key nor a context variable, a missing key or a missing prop is an error naming the target, the
fragment and the line, never an empty string. Fragments share the ``shared`` dict. The context:

* ``db``: the configuration database, read-only (``db.hotsync.role``, ``db["backup-data"].status``,
  ``db.getprop("hotsync", "role", "")``, ``db.get("key")`` is None when absent, ``"key" in db``);
* every key whose name is a Python identifier, as a variable (``${hotsync.role}``, ``${rsyncd.TCPPort}``);
* ``open_db(name)``: another database of the root, read-only; ``root``: the root directory (``str``);
  ``event`` and ``args``: the event expanding the file (None and () from ``expand-template``);
  ``target``: the target path as on the host; ``shared``: a dict the fragments of one target share;
* escaping helpers: ``line(v)`` (refuses a line break: line-oriented files), ``quote(v)`` (POSIX shell),
  ``xml(v)`` (XML/HTML text and attributes), ``json(v)`` (a JSON value).

Output is written with :func:`hotsync_events.fsutil.atomic_write`, owner and mode set on the temp file
before the rename, and only when the content changed; a failing fragment leaves the old file. Within an
event (``expand_many(..., use_cache=True)``), a target whose inputs (its fragments, the database files,
its metadata, the event and the output file itself) are exactly as at its last expansion is reported
unchanged without loading Mako; ``HOTSYNC_TEMPLATE_CACHE=0`` turns that off. Templates must therefore be
functions of those inputs (no clock, no reading of other files).
"""
from __future__ import annotations

import keyword
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotsync_events import __version__
from hotsync_events.paths import Root, data_dir
from hotsync_events.types import Template

__all__ = ["ExpandResult", "TemplateError", "TemplateDataError", "expand", "expand_many", "fragments_of",
           "template_sources", "registered_templates"]

SKIP_SUFFIXES = ("~", ".swp", ".orig", ".rpmsave", ".rpmnew", ".rpmorig", ".pyc", ".bak")
CUSTOM = "templates-custom"
#: names the context sets itself (and Mako reserves): a config key of such a name is only in ``db``
RESERVED = frozenset({"db", "open_db", "root", "event", "args", "target", "shared", "line", "quote", "xml", "json",
                      "context", "caller", "capture", "local", "self", "parent", "next", "loop", "UNDEFINED",
                      "STOP_RENDERING", "pageargs"})


class TemplateError(Exception):
    """A target that cannot be rendered; the message names the target, the fragment and the line."""


class TemplateDataError(Exception):
    """Raised inside a fragment: a key, a prop or a value it needs is missing or unusable."""


@dataclass
class ExpandResult:
    """The outcome of one target: ``status`` is changed, unchanged or failed."""

    path: str
    status: str
    error: str = ""
    services: tuple[str, ...] = ()
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.status != "failed"


# ------------------------------------------------------------------------------------------- sources
def template_sources(pm: Any, root: Root) -> list[tuple[str, Path]]:
    """``(origin, directory)`` of every fragment source, lowest precedence first."""
    out: list[tuple[str, Path]] = []
    try:
        out.append(("core", data_dir("templates")))
    except FileNotFoundError:
        pass
    if pm is not None:
        for plugin, d in pm.collect("hotsync_template_dirs"):
            out.append((plugin, Path(d)))
    out.append((CUSTOM, root.etc_dir / CUSTOM))
    return out


def _rel(target: str) -> str:
    if not isinstance(target, str) or not target.startswith("/") or "/../" in f"{target}/" or "\0" in target:
        raise TemplateError(f"template target {target!r} must be an absolute path without '..'")
    rel = target.strip("/")
    if not rel:
        raise TemplateError("template target '/' is not a file")
    return rel


@dataclass
class Fragment:
    name: str
    path: Path
    origin: str
    stat: tuple = field(default=(), repr=False)


def fragments_of(target: str, sources: list[tuple[str, Path]]) -> list[Fragment]:
    """The fragments of *target* in render order (name order), after overrides. TemplateError if none."""
    rel = _rel(target)
    chosen: dict[str, Fragment] = {}
    seen = False
    for origin, base in sources:
        here = base / rel
        try:
            st = here.stat()
        except OSError:
            continue
        seen = True
        if not os.path.isdir(here):  # a single-file template replaces every fragment before it
            chosen = {"": Fragment(here.name, here, origin, _stamp(st))}
            continue
        chosen.pop("", None)
        with os.scandir(here) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name.endswith(SKIP_SUFFIXES) or not entry.is_file():
                continue
            have = chosen.get(name)
            if (have is not None and origin not in ("core", CUSTOM) and have.origin not in ("core", CUSTOM)
                    and have.origin != origin):
                raise TemplateError(f"template {target}: fragment {name} is given by plugin {have.origin} "
                                    f"({have.path}) and by plugin {origin} ({entry.path}); one must rename it")
            chosen[name] = Fragment(name, Path(entry.path), origin, _stamp(entry.stat()))
    if not seen:
        raise TemplateError(f"no templates were found for {target} (looked in: "
                            + ", ".join(str(b / rel) for _, b in sources) + ")")
    # an empty fragment is skipped: an empty file in templates-custom switches a packaged one off
    return [f for _, f in sorted(chosen.items()) if f.stat[1] > 0]


def _stamp(st: os.stat_result) -> tuple:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def registered_templates(pm: Any, db: Any, root: Any = None) -> dict[str, tuple[str, Template]]:
    """``{target path: (plugin, Template)}`` from the ``hotsync_templates`` hook; one path registered
    differently by two plugins is a :class:`~hotsync_events.manager.RegistrationError` naming both."""
    if pm is None:
        return {}
    return {t.path: (p, t) for p, t in pm.registered("hotsync_templates", Template, root=root, db=db,
                                                     unique=("path",), same_ok=True)}


# ------------------------------------------------------------------------------------------- context
class RecordView:
    """One record of a database, read-only; a missing prop is a TemplateDataError naming key and prop."""

    __slots__ = ("_db", "_key")

    def __init__(self, db: Any, key: str) -> None:
        self._db = db
        self._key = key

    def _props(self) -> dict:
        return self._db.props(self._key)

    @property
    def type(self) -> str:
        return self._db.get(self._key) or ""

    @property
    def key(self) -> str:
        return self._key

    def get(self, prop: str, default: Any = None) -> Any:
        return self._props().get(prop, default)

    def __getitem__(self, prop: str) -> str:
        props = self._props()
        if prop not in props:
            raise TemplateDataError(f"key {self._key!r} of the {self._db.name} database has no prop {prop!r}"
                                    f" (it has: {', '.join(sorted(props)) or 'no props'}); use "
                                    f"{self._key}.get({prop!r}, default) for an optional one")
        return props[prop]

    def __getattr__(self, prop: str) -> str:
        if prop.startswith("__"):
            raise AttributeError(prop)
        return self[prop]

    def __contains__(self, prop: str) -> bool:
        return prop in self._props()

    def items(self):
        return sorted(self._props().items())

    def __str__(self) -> str:
        return self.type

    def __repr__(self) -> str:
        return f"<record {self._key} of {self._db.name}>"


class DBView:
    """A database, read-only, for templates; a missing key is a TemplateDataError naming it."""

    __slots__ = ("_db",)

    def __init__(self, db: Any) -> None:
        self._db = db

    @property
    def name(self) -> str:
        return self._db.name

    def __getitem__(self, key: str) -> RecordView:
        if key not in self._db:
            raise TemplateDataError(f"no key {key!r} in the {self._db.name} database; use db.get({key!r}) "
                                    "for an optional one")
        return RecordView(self._db, key)

    def __getattr__(self, key: str) -> RecordView:
        if key.startswith("__"):
            raise AttributeError(key)
        return self[key]

    def get(self, key: str, default: Any = None) -> Any:
        return RecordView(self._db, key) if key in self._db else default

    def getprop(self, key: str, prop: str, *default: Any) -> Any:
        if default:
            return self._db.getprop(key, prop, default[0])
        return self[key][prop]

    def keys(self) -> list[str]:
        return self._db.keys()

    def __contains__(self, key: str) -> bool:
        return key in self._db

    def __iter__(self):
        return iter(self._db.keys())


def _line(value: Any) -> str:
    text = str(value)
    if "\n" in text or "\r" in text or "\0" in text:
        raise TemplateDataError(f"value {text!r} holds a line break, which this line-oriented file cannot hold")
    return text


def _quote(value: Any) -> str:
    import shlex

    return shlex.quote(str(value))


def _xml(value: Any) -> str:
    import html

    return html.escape(str(value), quote=True)


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def make_context(root: Root, db: Any, target: str, event: str | None = None, args: Iterable[str] = ()) -> dict:
    """The names a fragment sees (see the module docstring)."""
    import builtins

    def open_other(name: str) -> DBView:
        from hotsync_events.configdb import open_db

        return DBView(open_db(name, root, initialise=False, journal=False))

    ctx: dict[str, Any] = {}
    if db is not None:
        for key in db.keys():
            if key.isidentifier() and not keyword.iskeyword(key) and key not in RESERVED \
                    and not hasattr(builtins, key):
                ctx[key] = RecordView(db, key)
    ctx.update(db=DBView(db) if db is not None else None, open_db=open_other, root=str(root.path), event=event,
               args=tuple(args), target=target, shared={}, line=_line, quote=_quote, xml=_xml, json=_json)
    return ctx


# ------------------------------------------------------------------------------------------- rendering
def render(target: str, fragments: list[Fragment], context: dict) -> str:
    """Render every fragment with one context and concatenate them; TemplateError names the failing one."""
    from mako.template import Template as MakoTemplate

    out: list[str] = []
    for frag in fragments:
        where = f"template {target}, fragment {frag.path}"
        try:
            source = frag.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TemplateError(f"{where}: cannot read it: {exc}") from None
        try:
            mt = MakoTemplate(text=source, uri=str(frag.path), strict_undefined=True, input_encoding="utf-8")
        except Exception as exc:  # mako's SyntaxException/CompileException carry the line
            line = getattr(exc, "lineno", None)
            raise TemplateError(f"{where}, line {line or '?'}: {_plain(exc)}") from None
        try:
            out.append(mt.render_unicode(**context))
        except Exception as exc:
            line = _fragment_line(mt, exc, source)
            raise TemplateError(f"{where}, line {line or '?'}: {_explain(exc, context)}") from None
    return "".join(out)


def _plain(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, TemplateDataError) else f"{type(exc).__name__}: {exc}"


def _explain(exc: BaseException, context: dict) -> str:
    if isinstance(exc, NameError) and str(exc).endswith("is not defined"):
        return (f"{exc}: no such key in the configuration database nor template variable "
                "(use db.get('key') for an optional key; variables: db, open_db, root, event, args, target, "
                "shared, line, quote, xml, json)")
    return _plain(exc)


def _fragment_line(mt: Any, exc: BaseException, source: str) -> int | None:
    """The fragment line an exception comes from, through Mako's line map of the generated module."""
    import re

    if isinstance(exc, NameError):
        m = re.match(r"'([A-Za-z_][A-Za-z0-9_]*)' is not defined", str(exc))
        if m:  # strict_undefined raises at the top of the body: find the name's first use instead
            for n, text in enumerate(source.splitlines(), 1):
                if re.search(rf"\b{m.group(1)}\b", text):
                    return n
    from mako.template import ModuleInfo

    modname = getattr(mt.module, "__name__", None)
    tb = exc.__traceback__
    pyline = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == modname:
            pyline = tb.tb_lineno
        tb = tb.tb_next
    if pyline is None:
        return None
    try:
        meta = ModuleInfo.get_module_source_metadata(mt.code, full_line_map=True)
        return meta["full_line_map"][pyline - 1] or None
    except Exception:
        return None


# ------------------------------------------------------------------------------------------- writing
def _ids(owner: str | None, group: str | None) -> tuple[int | None, int | None]:
    """uid, gid to give the file; None when we cannot change owners (not running as root)."""
    if os.geteuid() != 0:
        return None, None
    import grp
    import pwd

    uid = gid = None
    if owner is not None:
        try:
            uid = pwd.getpwnam(owner).pw_uid
        except KeyError:
            raise TemplateError(f"owner {owner!r} is not a user on this host") from None
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise TemplateError(f"group {group!r} is not a group on this host") from None
    return uid, gid


def write_output(out: Path, text: str, *, mode: int, owner: str | None, group: str | None) -> bool:
    """Write *text* to *out* atomically if it differs; fix mode and owner either way. True if changed."""
    from hotsync_events.fsutil import atomic_write

    if out.is_dir():
        raise TemplateError(f"{out} is a directory")
    data = text.encode("utf-8")
    uid, gid = _ids(owner, group)
    try:
        current = out.read_bytes()
    except FileNotFoundError:
        current = None
    if current == data:
        st = out.stat()
        if st.st_mode & 0o7777 != mode:
            os.chmod(out, mode)
        if (uid is not None and st.st_uid != uid) or (gid is not None and st.st_gid != gid):
            os.chown(out, -1 if uid is None else uid, -1 if gid is None else gid)
        return False
    atomic_write(out, data, mode=mode, uid=uid, gid=gid)
    return True


def expand(target: str, *, root: Root, db: Any = None, pm: Any = None, template: Template | None = None,
           event: str | None = None, args: Iterable[str] = (), output: Path | None = None,
           sources: list[tuple[str, Path]] | None = None) -> ExpandResult:
    """Render *target* and write it (to *output*, default the target under the root).

    Without a registered *template*, an existing file keeps its mode and owner (0644 for a new one).
    Never raises for a bad template: the result is ``failed`` with the error.
    """
    try:
        sources = sources if sources is not None else template_sources(pm, root)
        frags = fragments_of(target, sources)
        text = render(target, frags, make_context(root, db, target, event, args))
        out = output if output is not None else root.join(target)
        owner: str | None
        group: str | None
        if template is not None:
            mode, owner, group = template.mode, template.owner, template.group
        else:
            try:
                st = out.stat()
                mode, owner, group = st.st_mode & 0o7777, _name_of_uid(st.st_uid), _name_of_gid(st.st_gid)
            except FileNotFoundError:
                mode, owner, group = 0o644, None, None
        changed = write_output(out, text, mode=mode, owner=owner, group=group)
    except TemplateError as exc:
        return ExpandResult(target, "failed", str(exc))
    except OSError as exc:
        return ExpandResult(target, "failed", f"template {target}: {exc}")
    return ExpandResult(target, "changed" if changed else "unchanged",
                        services=template.services if template is not None else ())


def _name_of_uid(uid: int) -> str | None:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _name_of_gid(gid: int) -> str | None:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


# ------------------------------------------------------------------------------------------- events
def _db_stamp(root: Root) -> list:
    try:
        with os.scandir(root.db_dir) as it:
            return sorted((e.name, *_stamp(e.stat())) for e in it
                          if e.is_file() and not e.name.startswith(".") and not e.name.endswith(".lock"))
    except FileNotFoundError:
        return []


def _out_stamp(path: Path) -> list | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode, st.st_uid, st.st_gid]


def expand_many(templates: list[Template], *, root: Root, db: Any, pm: Any, event: str | None = None,
                args: Iterable[str] = (), use_cache: bool = True,
                sources: list[tuple[str, Path]] | None = None) -> list[ExpandResult]:
    """Expand each of *templates* (in path order) for *event*; one failure does not stop the others."""
    import marshal

    args = tuple(args)
    use_cache = use_cache and os.environ.get("HOTSYNC_TEMPLATE_CACHE", "1") != "0"
    cache_file = root.state_dir / "cache" / "templates"   # marshal: no import to read it
    cache: dict = {}
    if use_cache:
        try:
            cache = marshal.loads(cache_file.read_bytes())
            if not isinstance(cache, dict):
                cache = {}
        except (OSError, ValueError, EOFError, TypeError):
            cache = {}
    new_cache = dict(cache)
    sources = sources if sources else template_sources(pm, root)
    dbs = _db_stamp(root)
    results = []
    for tpl in sorted(templates, key=lambda t: t.path):
        out = root.join(tpl.path)
        key = None
        if use_cache:
            try:
                frags = [[str(f.path), *f.stat] for f in fragments_of(tpl.path, sources)]
            except TemplateError:
                frags = None
            if frags is not None:
                key = repr([__version__, str(root.path), tpl.path, tpl.owner, tpl.group, tpl.mode, frags,
                            dbs, event, args])
                have = cache.get(tpl.path)
                if have is not None and have.get("key") == key and have.get("out") == _out_stamp(out):
                    results.append(ExpandResult(tpl.path, "unchanged", services=tpl.services, cached=True))
                    continue
        res = expand(tpl.path, root=root, db=db, pm=pm, template=tpl, event=event, args=args, sources=sources)
        results.append(res)
        if key is not None and res.ok:
            new_cache[tpl.path] = {"key": key, "out": _out_stamp(out)}
        else:
            new_cache.pop(tpl.path, None)
    if use_cache and new_cache != cache:
        from hotsync_events.fsutil import atomic_write

        atomic_write(cache_file, marshal.dumps(new_cache), mode=0o600)
    return results
