"""The sysadmin's verbs of ``config`` / ``db NAME``: ``info``, ``search``, ``history`` and the hidden
``__complete`` helper of the bash completion.

Registered in :data:`hotsync_events.cli.config.EXTRA_VERBS`, so this module (and what it imports) is only
loaded when one of these verbs runs: ``config getprop`` does not pay for it. The work is done by
:mod:`hotsync_events.configdb.info`, :mod:`hotsync_events.configdb.historyview` and :mod:`hotsync_events.cli.complete`.
"""
from __future__ import annotations

import json

from hotsync_events.cli.config import EXIT_MISSING, EXIT_OK, EXIT_USAGE, Session, Usage, _out

INFO_USAGE = """\
usage: config info [--json] [--no-refs] KEY [PROP]
  What KEY (or its PROP) means: description, type, allowed values, default, whether it is secret, the
  schema (core or plugin) that declared it, its current value, and the events whose templates, actions
  and services read it (a static scan of templates and plugin code; --no-refs skips it).
examples:
  config info hotsync role
  config info hotsync
  config info --json rsyncd password
"""
SEARCH_USAGE = """\
usage: config search [--key RE] [--prop RE] [--value RE] [--non-default] [--json] [--show-secrets]
  Rows KEY PROP=VALUE whose key, prop and value match the Python regular expressions (anywhere in the
  name; anchor with ^ and $). Secrets are masked, and --value matches the masked text unless
  --show-secrets. --non-default keeps the values that differ from the schema's default.
examples:
  config search --value '^master$'
  config search --key '^hotsync$' --non-default
  config search --prop '(?i)port$' --json
"""
HISTORY_USAGE = """\
usage: config history [KEY] [--since WHEN] [--last N] [--json] [--show-secrets]
  Every change of the database, oldest first, in the order the changes landed: time, user(uid), the
  command that made it, key prop: old -> new. Secret values are masked when written.
  WHEN: an ISO date or time (2026-11-23, 2026-11-23T18:00, '2026-11-23 18:00:00+01:00'), a span back from
  now (90s, 30m, 1h, 2d, 1w), today, yesterday or @EPOCH.
examples:
  config history hotsync
  config history --since 1h
  config history hotsync --since yesterday --json
  config history --last 20
"""


def _parse(args: list, flags: set, valued: set, usage: str) -> tuple:
    """``(options, positionals)``; ``--opt VALUE`` and ``--opt=VALUE`` both work."""
    opts: dict = {}
    pos: list = []
    it = iter(args)
    for a in it:
        if a in ("-h", "--help"):
            raise _Help(usage)
        if a == "--":
            pos.extend(it)
            break
        if a.startswith("-") and len(a) > 1:
            name, eq, value = a.partition("=")
            if name in flags and not eq:
                opts[name] = True
            elif name in valued:
                if not eq:
                    value = next(it, None)
                    if value is None:
                        raise Usage(f"option {name} needs a value; " + _first(usage))
                opts[name] = value
            else:
                known = ", ".join(sorted(flags | valued))
                raise Usage(f"unknown option {a!r} (options: {known}); " + _first(usage))
        else:
            pos.append(a)
    return opts, pos


class _Help(Exception):
    pass


def _first(usage: str) -> str:
    return usage.splitlines()[0]


def _json_out(doc) -> None:
    _out(json.dumps(doc, ensure_ascii=False, sort_keys=True, indent=2) + "\n")


def _stderr(s: Session, text: str) -> None:
    import sys

    sys.stderr.write(f"{s.prog}: {text}\n")


def _helped(fn):
    def verb(s: Session, args: list) -> int:
        try:
            return fn(s, args)
        except _Help as h:
            _out(str(h))
            return EXIT_OK
    verb.__doc__ = fn.__doc__
    return verb


# ------------------------------------------------------------------------------------------- info
@_helped
def verb_info(s: Session, args: list) -> int:
    """``info [--json] KEY [PROP]``"""
    opts, pos = _parse(args, {"--json", "--no-refs"}, set(), INFO_USAGE)
    if not 1 <= len(pos) <= 2:
        raise Usage(f"info needs KEY [PROP], got {len(pos)} argument(s); " + _first(INFO_USAGE))
    from hotsync_events.configdb.info import describe, info_text

    pm = None
    refs = "--no-refs" not in opts
    if refs:
        pm = _plugin_manager(s)
    try:
        doc = describe(s.root, s.dbname, pos[0], pos[1] if len(pos) > 1 else None, pm=pm, refs=refs,
                       show_secrets=s.show_secrets)
    except LookupError as exc:
        _stderr(s, str(exc.args[0]))
        return EXIT_MISSING
    if pm is None and refs:
        doc["read_by"]["notes"].append("plugins could not be loaded: only packaged templates, "
                                       "templates-custom and the events directories were scanned")
    if "--json" in opts:
        _json_out(doc)
    else:
        _out(info_text(doc))
    return EXIT_OK


def _plugin_manager(s: Session):
    """The installed plugins (for the templates and actions that read a value), or None if they fail."""
    try:
        from hotsync_events.manager import get_plugin_manager

        return get_plugin_manager()
    except Exception as exc:  # a plugin clash or a broken install: info still works, statically
        _stderr(s, f"note: plugins not loaded ({type(exc).__name__}: {exc})")
        return None


# ------------------------------------------------------------------------------------------- search
@_helped
def verb_search(s: Session, args: list) -> int:
    """``search [--key RE] [--prop RE] [--value RE] [--non-default] [--json]``"""
    opts, pos = _parse(args, {"--json", "--non-default", "--show-secrets"}, {"--key", "--prop", "--value"},
                       SEARCH_USAGE)
    if pos:
        raise Usage(f"search takes no arguments, only options (got {pos[0]!r}); did you mean "
                    f"--key {pos[0]}?; " + _first(SEARCH_USAGE))
    from hotsync_events.configdb import open_db
    from hotsync_events.configdb.info import SearchError, schema_summary, search, search_text

    show = s.show_secrets or "--show-secrets" in opts
    db = open_db(s.dbname, s.root, validate=False, journal=False, initialise=False)
    try:
        summary = schema_summary(s.root, s.dbname)
        rows = search(db, summary, key=opts.get("--key"), prop=opts.get("--prop"), value=opts.get("--value"),
                      non_default="--non-default" in opts, show_secrets=show)
    except SearchError as exc:
        raise Usage(str(exc)) from None
    if "--json" in opts:
        _json_out(rows)
    else:
        _out(search_text(rows, with_default="--non-default" in opts))
    return EXIT_OK if rows else EXIT_MISSING


# ------------------------------------------------------------------------------------------- history
@_helped
def verb_history(s: Session, args: list) -> int:
    """``history [KEY] [--since WHEN] [--last N] [--json]``"""
    opts, pos = _parse(args, {"--json", "--show-secrets"}, {"--since", "--last", "-n"}, HISTORY_USAGE)
    if len(pos) > 1:
        raise Usage(f"history takes at most one KEY, got {len(pos)}; " + _first(HISTORY_USAGE))
    from hotsync_events.configdb.historyview import WhenError, entries, entry_text, parse_when

    since = None
    if "--since" in opts:
        try:
            since = parse_when(opts["--since"])
        except WhenError as exc:
            raise Usage(f"--since: {exc}") from None
    last = opts.get("--last", opts.get("-n"))
    if last is not None:
        if not str(last).isdigit() or int(last) < 1:
            raise Usage(f"--last: {last!r} is not a whole number of at least 1")
        last = int(last)
    secret = None
    if not (s.show_secrets or "--show-secrets" in opts):
        from hotsync_events.configdb.info import schema_summary

        digests: dict = {}

        def secret(db: str, key: str, prop: str) -> bool:
            if db not in digests:
                try:
                    digests[db] = schema_summary(s.root, db)
                except Exception:
                    digests[db] = {}
            return bool(digests[db].get(key, {}).get("props", {}).get(prop, {}).get("secret"))

    found = entries(s.root, db=s.dbname, key=pos[0] if pos else None, since=since, last=last, secret=secret)
    if "--json" in opts:
        _json_out(found)
    else:
        _out("".join(entry_text(e) for e in found))
    return EXIT_OK


# ------------------------------------------------------------------------------------------- completion
def verb_complete(s: Session, args: list) -> int:
    """``__complete CMD LINE``: the completions of LINE (cut at the cursor), one a line.

    ``__complete --script`` prints the bash completion script; ``--path`` where it is installed.
    """
    from hotsync_events.cli.complete import candidates, script_path

    if args[:1] == ["--script"]:
        _out(script_path().read_text(encoding="utf-8"))
        return EXIT_OK
    if args[:1] == ["--path"]:
        _out(f"{script_path()}\n")
        return EXIT_OK
    if len(args) != 2:
        raise Usage("__complete needs CMD LINE (it is called by the bash completion script)")
    try:
        words = candidates(args[0], args[1])
    except Exception:  # never print a traceback into someone's prompt
        return EXIT_USAGE
    _out("".join(w + "\n" for w in words))
    return EXIT_OK
