"""Bash completion words for ``config``, ``db``, ``signal-event`` and ``hotsync``.

The script ``hotsync_events/cli/completion/hotsync.bash`` (installed with the package) hands the command
line up to the cursor to ``config __complete CMD LINE``, which prints the candidates, one a line, already
filtered by the word being completed; ``__dirs__`` asks bash to complete a directory (``--root``).
Keys and props come from the database and the schema digest (:func:`hotsync_events.configdb.info.schema_summary`,
so no configobj import on a warm cache), allowed values from the schema, events from the events
directories under the root and what ``signal-event`` lists (cached for a few minutes).
Nothing here loads plugins.
"""
from __future__ import annotations

import os
import time

from hotsync_events.paths import Root, data_dir, root_from

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: completion must start fast
if TYPE_CHECKING:
    from hotsync_events.configdb import ConfigDB

__all__ = ["DIRS", "candidates", "script_path", "split_line"]

DIRS = "__dirs__"
GLOBAL_OPTS = ["--root", "--show-secrets", "--help"]
VERB_OPTS = {
    "search": ["--key", "--prop", "--value", "--non-default", "--json", "--show-secrets"],
    "history": ["--since", "--last", "--json", "--show-secrets"],
    "info": ["--json", "--no-refs"],
    "show": ["--show-secrets"],
    "printjson": ["--show-secrets"],
}
VALUE_OPTS = {"--key", "--prop", "--value", "--since", "--last"}
SINCE_WORDS = ["10m", "1h", "1d", "7d", "today", "yesterday"]
EVENTS_CACHE_SECONDS = 300


def script_path():
    """The bash completion script shipped with the package."""
    from pathlib import Path

    return Path(__file__).resolve().parent / "completion" / "hotsync.bash"


def split_line(line: str) -> tuple:
    """``(words before the cursor, the word being completed)`` of a command line cut at the cursor."""
    import shlex

    lex = shlex.shlex(line, posix=True)
    lex.whitespace_split = True
    lex.commenters = ""
    try:
        words = list(lex)
    except ValueError:  # an open quote: split naively, the quote starts the current word
        words = [w.lstrip("'\"") for w in line.split()]
    if not line or line[-1].isspace():
        return words, ""
    return words[:-1], (words[-1] if words else "")


def candidates(cmd: str, line: str) -> list:
    """The completions of *line* (cut at the cursor) for command *cmd*."""
    words, cur = split_line(line)
    name = os.path.basename(cmd)
    if cur.startswith("--root="):
        return [DIRS]
    if name == "config":
        out = _db_command(words[1:], cur, "configuration")
    elif name == "db":
        out = _db_command(words[1:], cur, None)
    elif name == "signal-event":
        out = _signal_event(words[1:], cur)
    elif name == "hotsync":
        out = _hotsync(words[1:], cur)
    else:
        out = []
    if out == [DIRS]:
        return out
    return [w for w in dict.fromkeys(out) if w.startswith(cur)]     # each once, in order


# ------------------------------------------------------------------------------------- config, db
def _root_of(words: list) -> Root:
    root_arg = None
    for i, w in enumerate(words):
        if w == "--root" and i + 1 < len(words):
            root_arg = words[i + 1]
        elif w.startswith("--root="):
            root_arg = w[len("--root="):]
    return root_from(root_arg)


class _Ctx:
    """Lazy access to one database and its schema digest."""

    def __init__(self, root: Root, dbname: str) -> None:
        self.root = root
        self.dbname = dbname
        self._db: ConfigDB | None = None
        self._summary: dict | None = None

    @property
    def db(self):
        if self._db is None:
            from hotsync_events.configdb import open_db

            self._db = open_db(self.dbname, self.root, validate=False, journal=False, initialise=False)
        return self._db

    @property
    def summary(self) -> dict:
        if self._summary is None:
            try:
                from hotsync_events.configdb.info import schema_summary

                self._summary = schema_summary(self.root, self.dbname)
            except Exception:  # a broken spec must not break the shell
                self._summary = {}
        return self._summary

    def keys(self, *, schema: bool = True) -> list:
        keys = list(self.db.keys())
        return keys + sorted(self.summary) if schema else keys

    def props(self, key: str, *, schema: bool = True) -> list:
        have = sorted(self.db.props(key))
        spec = sorted(self.summary.get(key, {}).get("props", {})) if schema else []
        return have + spec

    def all_props(self) -> list:
        names = set()
        for ks in self.summary.values():
            names.update(ks.get("props", {}))
        return sorted(names)

    def values(self, key: str, prop: str) -> list:
        ps = self.summary.get(key, {}).get("props", {}).get(prop) or {}
        if ps.get("function") == "option":
            return [a for a in ps.get("args", []) if a]
        if ps.get("function") == "boolean":
            return ["yes", "no"]
        if ps.get("secret"):
            return []
        current = self.db.getprop(key, prop)
        out = [current] if current else []
        if ps.get("default"):
            out.append(ps["default"])
        return out

    def types(self, key: str) -> list:
        out = []
        if self.db.get(key):
            out.append(self.db.get(key))
        if self.summary.get(key, {}).get("type"):
            out.append(self.summary[key]["type"])
        return [*out, "configuration", "service"]


def _db_names(root: Root) -> list:
    names: set[str] = set()
    try:
        names.update(p.stem for p in data_dir("db").glob("*.spec"))
    except FileNotFoundError:
        pass
    if root.db_dir.is_dir():
        names.update(n for n in os.listdir(root.db_dir) if not n.startswith(".") and "." not in n)
    return sorted(names)


def _verbs() -> list:
    from hotsync_events.cli.config import EXTRA_VERBS, VERBS

    return sorted(v for v in [*VERBS, *EXTRA_VERBS] if not v.startswith("_"))


def _db_command(words: list, cur: str, fixed_db: str | None) -> list:
    if words and words[-1] == "--root":
        return [DIRS]
    root = _root_of(words)
    i = 0
    while i < len(words) and words[i].startswith("-"):
        i += 2 if words[i] == "--root" else 1
    dbname = fixed_db
    if dbname is None:
        if i >= len(words):
            return GLOBAL_OPTS if cur.startswith("-") else _db_names(root)
        dbname = words[i]
        i += 1
    if i >= len(words):
        return GLOBAL_OPTS if cur.startswith("-") else _verbs()
    verb, args = words[i], words[i + 1:]
    ctx = _Ctx(root, dbname)
    return _verb_args(ctx, verb, args, cur)


def _verb_args(ctx: _Ctx, verb: str, args: list, cur: str) -> list:
    opts = VERB_OPTS.get(verb, [])
    prev = args[-1] if args else None
    if prev in VALUE_OPTS and prev in opts:
        if prev == "--key":
            return ctx.keys()
        if prev == "--prop":
            return ctx.all_props()
        if prev == "--since":
            return SINCE_WORDS
        return []
    if cur.startswith("-") and opts:
        return opts
    pos = []
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a in VALUE_OPTS:
            skip = True
        elif not a.startswith("--"):
            pos.append(a)
    n = len(pos)
    if verb in ("show", "get", "delete", "printjson"):
        return ctx.keys(schema=False) if n == 0 else []
    if verb == "getprop":
        return ctx.keys(schema=False) if n == 0 else (ctx.props(pos[0], schema=False) if n == 1 else [])
    if verb == "delprop":
        return ctx.keys(schema=False) if n == 0 else [p for p in ctx.props(pos[0], schema=False) if p not in pos[1:]]
    if verb in ("info", "history"):
        if n == 0:
            return ctx.keys()
        return ctx.props(pos[0]) if n == 1 and verb == "info" else []
    if verb in ("setprop", "set"):
        if n == 0:
            return ctx.keys(schema=(verb == "set"))
        key, rest = pos[0], pos[1:]
        if verb == "set":
            if not rest:
                return ctx.types(key)
            rest = rest[1:]
        if len(rest) % 2 == 0:
            given = set(rest[0::2])
            return [p for p in ctx.props(key) if p not in given]
        return ctx.values(key, rest[-1])
    return []


# ------------------------------------------------------------------------------------- signal-event
def _signal_event(words: list, cur: str) -> list:
    if words and words[-1] == "--root":
        return [DIRS]
    if words and words[-1] == "--timeout":
        return []
    root = _root_of(words)
    pos = []
    skip = False
    for w in words:
        if skip:
            skip = False
        elif w in ("--root", "--timeout"):
            skip = True
        elif not w.startswith("-"):
            pos.append(w)
    if cur.startswith("-") and not pos:
        return ["--list", "--json", "--timeout", "--root", "--help"]
    if pos:
        return []
    return event_names(root)


def _list_events_argv() -> list | None:
    """How this installation's ``signal-event`` lists the known events, read from its source (not run):
    ``--list-events``, or ``--list`` without an event; None when it cannot."""
    import importlib.util

    for modname in ("hotsync_events.cli.signal_event", "hotsync_events.events.run"):
        try:
            spec = importlib.util.find_spec(modname)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.origin:
            continue
        try:
            with open(spec.origin, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        if "--list-events" in text:
            return ["--list-events"]
        if "without EVENT, list the known events" in text:
            return ["--list"]
    return None


def event_names(root: Root) -> list:
    """Events of the events directories under *root*, plus those ``signal-event`` lists (cached a while
    in ``<root>/var/lib/hotsync/cache/events.list``: asking it loads every plugin)."""
    names: set[str] = set()
    edir = root.etc_dir / "events"
    if edir.is_dir():
        names.update(n for n in os.listdir(edir) if not n.startswith(".") and (edir / n).is_dir())
    cache = root.state_dir / "cache" / "events.list"
    try:
        fresh = time.time() - cache.stat().st_mtime < EVENTS_CACHE_SECONDS
        listed = cache.read_text(encoding="utf-8").split()
    except OSError:
        fresh, listed = False, []
    if not fresh:
        argv = _list_events_argv()
        if argv is not None:
            listed = _ask_signal_event(root, argv) or listed
    names.update(listed)
    return sorted(names)


def _ask_signal_event(root: Root, argv: list) -> list:
    import shutil
    import subprocess
    import sys

    beside = os.path.join(os.path.dirname(sys.executable), "signal-event")
    exe = beside if os.path.exists(beside) else shutil.which("signal-event")
    if not exe:
        return []
    try:
        cp = subprocess.run([exe, "--root", str(root), *argv], capture_output=True, text=True,
                            timeout=5, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return []
    if cp.returncode != 0:
        return []
    listed = sorted({line.split()[0] for line in cp.stdout.splitlines()
                     if line.strip() and not line.startswith(("#", " "))})
    try:
        from hotsync_events.fsutil import atomic_write

        atomic_write(root.state_dir / "cache" / "events.list", "".join(n + "\n" for n in listed))
    except OSError:
        pass
    return listed


# ------------------------------------------------------------------------------------- hotsync
def _hotsync(words: list, cur: str) -> list:
    if words and words[-1] == "--root":
        return [DIRS]
    from hotsync_events.cli.hotsync import SUBCOMMANDS

    sub = next((w for w in words if w in SUBCOMMANDS), None)
    if sub is None:
        return ["--root", "--help"] if cur.startswith("-") else sorted(SUBCOMMANDS)
    if not cur.startswith("-"):
        return []
    import re

    from hotsync_events.cli.hotsync import build_parser

    import contextlib
    import io

    buf = io.StringIO()
    try:  # the subcommand's own --help, through argparse's public behaviour
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
            build_parser(only=sub).parse_args([sub, "--help"])
    except SystemExit:
        pass
    except Exception:
        return ["--root", "--help"]
    text = buf.getvalue()
    return sorted(set(re.findall(r"(?<![\w-])(--[A-Za-z][\w-]*)", text)) | {"--root", "--help"})
