"""``config VERB ...`` and ``db NAME VERB ...``: the e-smith database commands.

Exit codes: 0 done; 1 a missing key or prop (nothing printed); 2 a usage error (the usage is printed);
3 a value the schema refuses; 4 any other error (I/O, a broken schema). Arguments are parsed by hand:
this is the command a sysadmin and every script runs most, and it must start fast.
"""
from __future__ import annotations

import os
import sys

from hotsync_events.configdb import ConfigDB, DBError, open_db
from hotsync_events.paths import root_from

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `config getprop` must start fast
if TYPE_CHECKING:
    from hotsync_events.configdb.schema import Schema

EXIT_OK, EXIT_MISSING, EXIT_USAGE, EXIT_INVALID, EXIT_ERROR = 0, 1, 2, 3, 4
MASK = "********"

USAGE_VERBS = """\
verbs:
  show [KEY]                       each key as KEY=TYPE, then its props indented (secrets masked)
  keys                             every key, one a line
  get KEY                          the type of KEY
  getprop KEY PROP                 the value of PROP (exit 1, no output, when missing)
  set KEY TYPE [PROP VALUE]...     create or replace KEY with exactly these props
  setprop KEY PROP VALUE [PROP VALUE]...   change props of an existing KEY (a secret given as - is read
                                   from standard input, or asked for on a terminal; a prop the schema does
                                   not know for KEY is refused as a typo, unless --force)
  delprop KEY PROP...              remove props
  delete KEY                       remove KEY
  printjson [KEY]                  JSON: {"name","type","props"} (a list without KEY; secrets masked)
  info [--json] KEY [PROP]         what it means: description, allowed values, default, secret, who declared
                                   it, the events that read it
  search [--key RE] [--prop RE] [--value RE] [--non-default] [--json]
                                   KEY PROP=VALUE rows that match (exit 1 when none; secrets masked)
  history [KEY] [--since WHEN] [--last N] [--json]
                                   every change: time, user(uid), command, key prop: old -> new
                                   (WHEN: 2026-11-23, 2026-11-23T18:00, 30m, 1h, 2d, today)
options (before the verb):
  --root DIR                       the host's root directory (default $HOTSYNC_ROOT, else /)
  --show-secrets                   show secret props in clear (show, printjson, search, history, info)
exit codes: 0 done, 1 missing key or prop, 2 usage error, 3 value refused by the schema, 4 other error
"""
CONFIG_USAGE = "usage: config [--root DIR] [--show-secrets] VERB [ARGS...]\n" + USAGE_VERBS + """\
examples:
  config setprop hotsync role master SlaveHost 192.168.1.20
  config getprop hotsync role
  config show hotsync
  config set myapp service status enabled TCPPort 8080
  config info hotsync role             what role means and which values it takes
  config search --value '^master$'     which props hold exactly "master"
  config search --key hotsync --non-default
  config history hotsync --since 1d    what changed in hotsync since yesterday, by whom
  source <(config __complete --script)   bash completion for config, db, signal-event, hotsync
"""
DB_USAGE = "usage: db [--root DIR] [--show-secrets] NAME VERB [ARGS...]\n" + USAGE_VERBS + """\
examples:
  db configuration show hotsync        (the same as: config show hotsync)
  db accounts keys
  db configuration info rsyncd password
  db configuration search --prop '^status$' --json
  db configuration history --since 2h
"""


class Usage(Exception):
    pass


def _out(text: str) -> None:
    sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))


def _err(prog: str, text: str) -> None:
    sys.stderr.write(f"{prog}: {text}\n")


class Session:
    """What one command line asked for."""

    def __init__(self, prog: str, dbname: str, root, show_secrets: bool) -> None:
        self.prog = prog
        self.dbname = dbname
        self.root = root
        self.show_secrets = show_secrets
        self._secret: Schema | None = None

    def db(self, *, write: bool = False) -> ConfigDB:
        """The database; a read-only command creates nothing (a missing one reads as its defaults)."""
        return open_db(self.dbname, self.root, validate=write, journal=write, create=write)

    def is_secret(self, key: str, prop: str) -> bool:
        if self.show_secrets:
            return False
        if self._secret is None:
            from hotsync_events.configdb.schema import load

            self._secret = load(self.root, self.dbname)
        return self._secret.is_secret(key, prop)

    def shown(self, key: str, prop: str, value: str) -> str:
        return MASK if value and self.is_secret(key, prop) else value


def _show_value(value: str) -> str:
    """A value as NethServer's ``db show`` prints it: as it is, a newline as a newline. A carriage return,
    which the original cannot store, is shown as ``\\r`` (this format's own escape)."""
    return value.replace("\r", "\\r") if "\r" in value else value


# --------------------------------------------------------------------------------------------- verbs
def verb_show(s: Session, args: list[str]) -> int:
    _nargs(args, 0, 1)
    db = s.db()
    keys = args or db.keys()
    lines = []
    for key in keys:
        rec = db.record(key)
        if rec is None:
            return EXIT_MISSING
        lines.append(f"{key}={_show_value(rec.type)}\n")
        lines.extend(f"    {p}={_show_value(s.shown(key, p, v))}\n" for p, v in sorted(rec.props.items()))
    if not keys:
        return EXIT_MISSING
    _out("".join(lines))
    return EXIT_OK


def verb_keys(s: Session, args: list[str]) -> int:
    _nargs(args, 0, 0)
    keys = s.db().keys()
    _out("".join(k + "\n" for k in keys))
    return EXIT_OK if keys else EXIT_MISSING


def verb_get(s: Session, args: list[str]) -> int:
    _nargs(args, 1, 1)
    rtype = s.db().get(args[0])
    if rtype is None:
        return EXIT_MISSING
    _out(rtype + "\n")
    return EXIT_OK


def verb_getprop(s: Session, args: list[str]) -> int:
    _nargs(args, 2, 2)
    value = s.db().getprop(args[0], args[1])
    if value is None:
        return EXIT_MISSING
    _out(value + "\n")
    return EXIT_OK


def _pairs(args: list[str], what: str) -> dict[str, str]:
    if len(args) % 2:
        raise Usage(f"{what}: props come in PROP VALUE pairs; {args[-1]!r} has no value")
    return dict(zip(args[0::2], args[1::2]))


def _secrets_from_stdin(s: Session, key: str, props: dict[str, str]) -> dict[str, str]:
    """A secret prop given as ``-`` is read from standard input (one line), or asked for twice without echo
    on a terminal: a password then never shows in ``ps`` or the shell's history."""
    wanted = [p for p, v in props.items() if v == "-" and _schema_secret(s, key, p)]
    if not wanted:
        return props
    if len(wanted) > 1:
        raise Usage(f"only one secret can be read from standard input at a time, not {', '.join(wanted)}")
    prop = wanted[0]
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass(f"{key} {prop}: ")
        if getpass.getpass(f"{key} {prop} again: ") != first:
            raise Usage(f"the two {prop} entries differ; nothing was changed")
        value = first
    else:
        line = sys.stdin.readline()
        value = line[:-1] if line.endswith("\n") else line
        if value.endswith("\r"):
            value = value[:-1]
    return {**props, prop: value}


def _schema_secret(s: Session, key: str, prop: str) -> bool:
    from hotsync_events.configdb.schema import load

    return load(s.root, s.dbname).is_secret(key, prop)


class Refused(Exception):
    """A change the schema knows to be a slip (an unknown prop of a key it describes, a missing key)."""


def _known_props(s: Session, key: str, props: dict[str, str], force: bool) -> None:
    """For a key the schema describes, every prop must be one it knows: a typo (``SlaveHots``, ``Role``)
    is refused with the nearest known name, unless ``--force`` (NethServer stored anything)."""
    if force:
        return
    from hotsync_events.configdb.schema import load

    ks = load(s.root, s.dbname).keys.get(key)
    if ks is None:
        return
    rec = s.db().record(key)
    known = set(ks.props) | set(rec.props if rec else ())
    unknown = [p for p in props if p and p not in known]    # an invalid name is the database's to refuse
    if not unknown:
        return
    from hotsync_events.configdb.info import suggest

    why = []
    for prop in unknown:
        near = suggest(prop, known)
        why.append(f"{key} has no prop {prop!r}" + (f"; did you mean {near!r}?" if near else ""))
    if any(p in load(s.root, s.dbname).keys for p in unknown):
        why.append(f"(one setprop changes one key: change {next(p for p in unknown if p in load(s.root, s.dbname).keys)}"
                   " with a setprop of its own)")
    raise Refused("; ".join(why) + f"; nothing was changed. Known props of {key}: {', '.join(sorted(known))}. "
                  "--force stores an unknown prop anyway")


def _missing_key(s: Session, key: str) -> str:
    """What to say about a key that is not there: the nearest key, or how to create one."""
    from hotsync_events.configdb.info import suggest
    from hotsync_events.configdb.schema import load

    near = suggest(key, set(load(s.root, s.dbname).keys) | set(s.db().keys()))
    cmd = "config" if s.dbname == "configuration" else f"{s.prog} {s.dbname}"
    if near and near != key:
        return f"no key {key!r} in the {s.dbname} database; did you mean {near!r}?"
    return f"no key {key!r} in the {s.dbname} database; create it first with: {cmd} set {key} TYPE [PROP VALUE]..."


def _force(args: list[str]) -> tuple[list[str], bool]:
    return [a for a in args if a != "--force"], "--force" in args


def verb_set(s: Session, args: list[str]) -> int:
    args, force = _force(args)
    if len(args) < 2:
        raise Usage("set needs KEY TYPE [PROP VALUE]...")
    props = _pairs(args[2:], "set")
    _known_props(s, args[0], props, force)
    s.db(write=True).set(args[0], args[1], _secrets_from_stdin(s, args[0], props))
    return EXIT_OK


def verb_setprop(s: Session, args: list[str]) -> int:
    args, force = _force(args)
    if len(args) < 3:
        raise Usage("setprop needs KEY PROP VALUE [PROP VALUE]...")
    props = _pairs(args[1:], "setprop")
    db = s.db(write=True)                  # a first write on a fresh host fills in the defaults first
    if db.record(args[0]) is None:
        raise Refused(_missing_key(s, args[0]))
    _known_props(s, args[0], props, force)
    db.setprop(args[0], _secrets_from_stdin(s, args[0], props))
    return EXIT_OK


def verb_delprop(s: Session, args: list[str]) -> int:
    if len(args) < 2:
        raise Usage("delprop needs KEY PROP...")
    db = s.db(write=True)
    if db.record(args[0]) is None:     # as NethServer's db: nothing to delete is not an error
        return EXIT_OK
    db.delprop(args[0], *args[1:])
    return EXIT_OK


def verb_delete(s: Session, args: list[str]) -> int:
    _nargs(args, 1, 1)
    s.db(write=True).delete(args[0])
    return EXIT_OK


def _json_record(s: Session, key: str, rec) -> dict:
    """As NethServer's ``db printjson``: ``props`` only when the key has some."""
    doc = {"name": key, "type": rec.type}
    if rec.props:
        doc["props"] = {p: s.shown(key, p, v) for p, v in sorted(rec.props.items())}
    return doc


def verb_printjson(s: Session, args: list[str]) -> int:
    import json  # here, not at the top: `config getprop` starts without it

    _nargs(args, 0, 1)
    db = s.db()
    if args:
        rec = db.record(args[0])
        if rec is None:
            return EXIT_MISSING
        doc: object = _json_record(s, args[0], rec)
    else:
        doc = [_json_record(s, k, r) for k, r in db.records()]
    _out(json.dumps(doc, ensure_ascii=False, sort_keys=True) + "\n")
    return EXIT_OK


VERBS = {
    "show": verb_show, "keys": verb_keys, "get": verb_get, "getprop": verb_getprop, "set": verb_set,
    "setprop": verb_setprop, "delprop": verb_delprop, "delete": verb_delete, "printjson": verb_printjson,
}
# verbs defined elsewhere, imported only when used: name -> "module:function"
EXTRA_VERBS: dict[str, str] = {
    "info": ".config_ux:verb_info", "search": ".config_ux:verb_search", "history": ".config_ux:verb_history",
    "__complete": ".config_ux:verb_complete",  # hidden: the bash completion's helper
}


def _nargs(args: list[str], lo: int, hi: int) -> None:
    if not lo <= len(args) <= hi:
        raise Usage(f"expected {lo if lo == hi else f'{lo} to {hi}'} argument(s), got {len(args)}")


def _verb(name: str):
    if name in VERBS:
        return VERBS[name]
    if name in EXTRA_VERBS:
        import importlib

        mod, _, fn = EXTRA_VERBS[name].partition(":")
        return getattr(importlib.import_module(mod, __package__), fn)
    return None


def run(prog: str, argv: list[str], *, fixed_db: str | None) -> int:
    usage = CONFIG_USAGE if fixed_db else DB_USAGE
    root_arg = None
    show_secrets = False
    args = list(argv)
    try:
        while args and args[0].startswith("-"):
            opt = args.pop(0)
            if opt in ("-h", "--help"):
                _out(usage)
                return EXIT_OK
            if opt == "--version":
                from hotsync_events.cli._common import version_line

                _out(version_line(prog) + "\n")
                return EXIT_OK
            if opt == "--show-secrets":
                show_secrets = True
            elif opt == "--root" or opt.startswith("--root="):
                root_arg = opt[len("--root="):] if "=" in opt else (args.pop(0) if args else "")
                if not root_arg:  # never fall back to $HOTSYNC_ROOT or / when a root was asked for
                    raise Usage("--root needs a DIR")
            elif opt == "--":
                break
            else:
                raise Usage(f"unknown option {opt!r}")
        dbname = fixed_db
        if dbname is None:
            if not args:
                raise Usage("missing database NAME")
            dbname = args.pop(0)
        if not args:
            raise Usage("missing VERB")
        verb = args.pop(0)
        fn = _verb(verb)
        if fn is None:
            import difflib  # only on this error path

            known = sorted(v for v in [*VERBS, *EXTRA_VERBS] if not v.startswith("_"))
            near = difflib.get_close_matches(verb, known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise Usage(f"unknown verb {verb!r}{hint}; verbs: {', '.join(known)}")
        if verb in ("show", "printjson", "search", "history", "info") and "--show-secrets" in args:
            args.remove("--show-secrets")
            show_secrets = True
        session = Session(prog, dbname, root_from(root_arg), show_secrets)
        return fn(session, args)
    except Usage as exc:
        _err(prog, str(exc))
        sys.stderr.write(usage.splitlines()[0] + f"\n(`{prog} --help` lists the verbs)\n")
        return EXIT_USAGE
    except Refused as exc:
        _err(prog, str(exc))
        return EXIT_MISSING if str(exc).startswith("no key") else EXIT_INVALID
    except DBError as exc:
        _err(prog, str(exc))
        return exc.exit_code
    except BrokenPipeError:  # `config show | head`: the reader has all it wanted (before OSError, its base)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (OSError, ValueError) as exc:
        _err(prog, f"{type(exc).__name__}: {exc}")
        return EXIT_ERROR


def config_main(argv: list[str] | None = None) -> int:
    from hotsync_events.cli._common import console

    return console("config", lambda: run("config", sys.argv[1:] if argv is None else argv, fixed_db="configuration"))


def db_main(argv: list[str] | None = None) -> int:
    from hotsync_events.cli._common import console

    return console("db", lambda: run("db", sys.argv[1:] if argv is None else argv, fixed_db=None))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(config_main())
