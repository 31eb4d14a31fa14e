"""What the config databases hold and mean: ``config info`` and ``config search``.

``info`` documents a key or a prop from the schema (description, check, allowed values, default,
secret, the spec that declared it), adds its current value and the places that read it
(:mod:`hotsync_events.configdb.refs`). ``search`` lists the key/prop/value rows that match regular
expressions, secrets masked.

Both read the schema through :func:`schema_summary`: a JSON digest of the parsed spec files, cached
under ``<root>/var/lib/hotsync/cache/`` and keyed on the spec files' paths, sizes and mtimes, so that
``config search`` and the completion helper do not pay for importing configobj at every start. A cache
that cannot be written (a read-only root, a non-root user) only costs that speed.
"""
from __future__ import annotations

import json
import re

from hotsync_events.paths import Root, data_dir

__all__ = ["MASK", "SearchError", "describe", "info_text", "schema_summary", "search", "search_text",
           "spec_paths", "suggest"]

MASK = "********"
CACHE_VERSION = 2   # 2: props carry "local"


class SearchError(ValueError):
    """A search pattern that is not a valid regular expression (the message names it)."""


# ----------------------------------------------------------------------------------- schema digest
def spec_paths(root: Root, db: str) -> list:
    """``(source, path)`` of *db*'s spec files, as :func:`hotsync_events.configdb.schema.spec_files` lists them.

    Repeated here (three lines) so that finding the cache's stamp does not import configobj.
    """
    out = []
    try:
        packaged = data_dir("db") / f"{db}.spec"
    except FileNotFoundError:
        packaged = None
    if packaged is not None and packaged.is_file():
        out.append(("core", packaged))
    installed = root.state_dir / "schema" / db
    if installed.is_dir():
        out.extend((p.stem, p) for p in sorted(installed.glob("*.spec")))
    return out


def _stamp(files: list) -> list:
    stamp = []
    for source, path in files:
        st = path.stat()
        stamp.append([source, str(path), st.st_size, st.st_mtime_ns])
    return stamp


def cache_path(root: Root, db: str):
    return root.state_dir / "cache" / f"schema-{db}.json"


def schema_summary(root: Root, db: str = "configuration") -> dict:
    """``{key: {"type", "description", "source", "props": {prop: {...}}}}`` for *db*.

    Each prop holds check, function, args, default, secret, force, local, description, source, allowed
    (words) and spec (the file that declared it). Read from the cache when the spec files did not change;
    otherwise the schema is loaded (:func:`hotsync_events.configdb.schema.load`) and the cache rewritten.
    """
    files = spec_paths(root, db)
    stamp = _stamp(files)
    path = cache_path(root, db)
    try:
        with open(path, encoding="utf-8") as f:
            cached = json.load(f)
        if cached.get("version") == CACHE_VERSION and cached.get("stamp") == stamp:
            return cached["keys"]
    except (OSError, ValueError, AttributeError):
        pass
    keys = _summarise(root, db, {src: str(p) for src, p in files})
    if not root.state_dir.is_dir():     # a host not set up: a cache is no reason to create its tree
        return keys
    try:
        from hotsync_events.fsutil import atomic_write

        atomic_write(path, json.dumps({"version": CACHE_VERSION, "db": db, "stamp": stamp, "keys": keys},
                                      sort_keys=True, ensure_ascii=False), mode=0o644)
    except OSError:
        pass
    return keys


def _summarise(root: Root, db: str, spec_of: dict) -> dict:
    from hotsync_events.configdb.schema import load

    schema = load(root, db)
    out = {}
    for key, ks in schema.keys.items():
        props = {}
        for prop, ps in ks.props.items():
            props[prop] = {
                "check": ps.check, "function": ps.function,
                "args": list(ps.args) if ps.function == "option" else [list(a) for a in ps.args],
                "default": ps.default, "secret": ps.secret, "force": ps.force, "local": ps.local,
                "description": ps.description, "source": ps.source, "allowed": ps.allowed,
                "spec": spec_of.get(ps.source, ""),
            }
        out[key] = {"type": ks.type, "description": ks.description, "source": ks.source,
                    "spec": spec_of.get(ks.source, ""), "props": props}
    return out


def suggest(word: str, choices) -> str | None:
    """The nearest of *choices* to a mistyped *word* (case-insensitive), or None."""
    import difflib

    lowered = {c.lower(): c for c in choices if c}
    near = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[near[0]] if near else None


# ----------------------------------------------------------------------------------- info
def describe(root: Root, dbname: str, key: str, prop: str | None = None, *, db=None, pm=None,
             refs: bool = True, show_secrets: bool = False) -> dict:
    """Everything known about *key* (and *prop*) of database *dbname*, as a JSON-ready dict.

    Raises LookupError (message with a did-you-mean) when neither the schema nor the database knows it.
    *pm* is a plugin manager used to find the plugins' templates and actions that read the value; without
    one only the packaged templates, templates-custom and the events directories are scanned.
    """
    from hotsync_events.configdb.db import open_db

    summary = schema_summary(root, dbname)
    db = db or open_db(dbname, root, validate=False, journal=False, initialise=False)
    ks = summary.get(key)
    rec = db.record(key)
    if ks is None and rec is None:
        hint = suggest(key, set(summary) | set(db.keys()))
        raise LookupError(f"no key {key!r} in the {dbname} database or its schema"
                          + (f"; did you mean {hint!r}?" if hint else ""))
    props = (ks or {}).get("props", {})

    def masked(p: str, value):
        if value and not show_secrets and props.get(p, {}).get("secret"):
            return MASK
        return value

    out: dict = {"db": dbname, "key": key}
    if prop is None:
        out.update({
            "described": ks is not None,
            "description": (ks or {}).get("description", ""),
            "type": rec.type if rec is not None else (ks or {}).get("type"),
            "schema_type": (ks or {}).get("type"),
            "source": (ks or {}).get("source"), "spec": (ks or {}).get("spec"),
            "exists": rec is not None,
            "props": [],
        })
        names = sorted(set(props) | set(rec.props if rec is not None else ()), key=str.lower)
        for p in names:
            ps = props.get(p)
            value = None if rec is None else rec.props.get(p)
            out["props"].append({
                "prop": p, "described": ps is not None,
                "description": (ps or {}).get("description", ""), "allowed": (ps or {}).get("allowed"),
                "default": masked(p, (ps or {}).get("default")), "secret": bool((ps or {}).get("secret")),
                "local": bool((ps or {}).get("local")), "value": masked(p, value),
            })
    else:
        ps = props.get(prop)
        value = None if rec is None else rec.props.get(prop)
        if ps is None and value is None:
            hint = suggest(prop, set(props) | set(rec.props if rec is not None else ()))
            raise LookupError(f"no prop {prop!r} of key {key!r} in the {dbname} database or its schema"
                              + (f"; did you mean {hint!r}?" if hint else ""))
        ps = ps or {}
        out.update({
            "prop": prop, "described": bool(ps),
            "description": ps.get("description", ""),
            "type": ps.get("function"), "check": ps.get("check"), "allowed": ps.get("allowed"),
            "options": [a for a in ps.get("args", []) if ps.get("function") == "option"],
            "default": masked(prop, ps.get("default")), "secret": bool(ps.get("secret")),
            "force": bool(ps.get("force")), "local": bool(ps.get("local")),
            "source": ps.get("source"), "spec": ps.get("spec"),
            "key_exists": rec is not None, "value": masked(prop, value),
        })
    if refs:
        from hotsync_events.configdb.refs import find_references

        out["read_by"] = find_references(root, dbname, key, prop, db=db, pm=pm)
    return out


def _v(value) -> str:
    if value is None:
        return "(none)"
    if value == "":
        return "'' (empty)"
    return _shown(value)


def _shown(value: str) -> str:
    if "\n" in value or "\r" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return value


def _declared(d: dict) -> str:
    src = d.get("source")
    if not src:
        return "no schema (the database is open: any prop is accepted as it is)"
    who = "the core schema" if src == "core" else f"plugin {src}"
    return f"{who} ({d['spec']})" if d.get("spec") else who


def info_text(d: dict) -> str:
    """The human form of :func:`describe`'s result."""
    lines = []
    if "prop" in d:
        lines.append(f"{d['key']} {d['prop']}  ({d['db']} database)")
        lines.append(f"  description:  {d['description'] or '(none in the schema)'}")
        if d["described"]:
            lines.append(f"  type:         {d['type']}   check: {d['check']}")
            lines.append(f"  allowed:      {d['allowed']}")
            lines.append(f"  default:      {_v(d['default'])}")
        lines.append(f"  secret:       {'yes (shown masked; --show-secrets shows it)' if d['secret'] else 'no'}")
        if d.get("force"):
            lines.append("  force:        yes (the default overwrites the value before every event)")
        lines.append("  local:        " + ("yes (this host's own: hotsync-promote keeps it when it applies the "
                                           "master's copy of the database)" if d.get("local") else "no"))
        lines.append(f"  declared by:  {_declared(d)}")
        current = _v(d["value"]) if d["key_exists"] else f"(no key {d['key']} yet)"
        lines.append(f"  current:      {current}")
    else:
        lines.append(f"{d['key']}  ({d['db']} database, record type {d['type'] or '(none)'})")
        lines.append(f"  description:  {d['description'] or '(none in the schema)'}")
        lines.append(f"  declared by:  {_declared(d)}")
        if not d["exists"]:
            lines.append(f"  current:      (no key {d['key']} yet)")
        if d["props"]:
            lines.append("  props:")
            width = max(len(p["prop"]) for p in d["props"])
            for p in d["props"]:
                value = _v(p["value"])
                what = p["description"] or "(no description)"
                lines.append(f"    {p['prop']:<{width}}  = {value}")
                lines.append(f"    {'':<{width}}    {what}")
                if p["allowed"]:
                    lines.append(f"    {'':<{width}}    allowed: {p['allowed']}; default {_v(p['default'])}"
                                 + ("; secret" if p["secret"] else "") + ("; local" if p.get("local") else ""))
    refs = d.get("read_by")
    if refs is not None:
        lines.extend(refs_text(refs))
    return "\n".join(lines) + "\n"


def refs_text(refs: dict) -> list:
    events = refs.get("events") or []
    lines = [f"  read by events: {', '.join(events) if events else '(none found)'}"]
    for t in refs.get("templates", []):
        frags = ", ".join(f"{f['fragment']} ({f['source']})" for f in t["fragments"])
        ev = ", ".join(t["events"]) if t["events"] else "no event registered"
        lines.append(f"    template {t['target']}: {frags}; {ev}")
    for a in refs.get("actions", []):
        lines.append(f"    action {a['name']} of event {a['event']} ({a['source']})")
    for s in refs.get("services", []):
        lines.append(f"    service {s['name']} ({s['source']}): {', '.join(s['events']) or 'no event'}")
    for c in refs.get("core", []):
        lines.append(f"    core {c['module']}: {', '.join(c['functions'])} (when it runs, not an event)")
    for n in refs.get("notes", []):
        lines.append(f"    note: {n}")
    return lines


# ----------------------------------------------------------------------------------- search
def _compile(what: str, pattern: str | None):
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise SearchError(f"invalid {what} pattern {pattern!r}: {exc} (a Python regular expression, "
                          "e.g. '^hot' or 'Port$')") from None


def search(db, summary: dict, *, key: str | None = None, prop: str | None = None, value: str | None = None,
           non_default: bool = False, show_secrets: bool = False) -> list:
    """Rows ``{"key", "prop", "value", "default", "secret"}`` whose key, prop and value match.

    Patterns are Python regular expressions, matched anywhere (``re.search``). A secret value is masked,
    and the value pattern sees the masked value, so a search cannot guess a secret; ``show_secrets``
    lifts both. ``non_default`` keeps only the values that differ from the schema's default (a prop
    without a default is always kept).
    """
    from hotsync_events.configdb.format import decode_record, parse_text

    kre, pre, vre = _compile("--key", key), _compile("--prop", prop), _compile("--value", value)
    try:  # the file's raw index: 10,000 records are split here, not built into Record objects
        text = db.path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        text = ""
    index, legacy = parse_text(text)
    rows = []
    for k in sorted(index):
        if kre is not None and kre.search(k) is None:
            continue
        raw = index[k]
        names: list[str] | dict[str, str]
        if legacy or "\\" in raw:
            props = decode_record(raw, legacy).props
            names = sorted(props)
        else:  # our writer keeps props sorted
            f = raw.split("|")
            if len(f) % 2 == 0:
                f.append("")
            props = dict(zip(f[1::2], f[2::2]))
            names = props
        ks = summary.get(k)
        kspec = ks["props"] if ks else None
        for p in names:
            if pre is not None and pre.search(p) is None:
                continue
            v = props[p]
            ps = kspec.get(p) if kspec else None
            if ps is None:  # not in the schema: no default, not secret
                if vre is None or vre.search(v) is not None:
                    rows.append({"key": k, "prop": p, "value": v, "default": None, "secret": False})
                continue
            secret = bool(ps.get("secret"))
            default = ps.get("default")
            if non_default and default is not None and v == default:
                continue
            shown = MASK if secret and v and not show_secrets else v
            if vre is not None and vre.search(shown) is None:
                continue
            shown_default = MASK if secret and default and not show_secrets else default
            rows.append({"key": k, "prop": p, "value": shown, "default": shown_default, "secret": secret})
    return rows


def search_text(rows: list, *, with_default: bool = False) -> str:
    out = []
    for r in rows:
        line = f"{r['key']} {r['prop']}={_shown(r['value'])}"
        if with_default:
            line += "  (no default)" if r["default"] is None else f"  (default {_shown(r['default']) or chr(39) * 2})"
        out.append(line + "\n")
    return "".join(out)

