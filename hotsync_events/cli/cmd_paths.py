"""``hotsync paths``: what a push ships and keeps out, and who asked for each path.

The lists are built by the sync's own list builder (:func:`hotsync_events.sync.lists.build_lists`), from
the active plugins' ``hotsync_sync_paths``, the files of their ``hotsync_dumps`` and the sysadmin's
``include.d``/``exclude.d``, so what this prints is what ``hotsync sync`` uses.
"""
from __future__ import annotations

import json
import sys

HELP = "show what the sync ships and what it keeps out, and which plugin or list asked for each path"
EPILOG = """\
examples:
  hotsync paths                   includes (with their plugin), excludes, dumps, inactive plugins
  hotsync paths --json            the same as JSON, for scripts and tests
"""


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def plan(root, pm=None, db=None) -> dict:
    """The paths report as a dict (the ``--json`` output). Host paths only, never the root's own path."""
    from hotsync_events.configdb import open_db
    from hotsync_events.manager import get_plugin_manager, install_schemas
    from hotsync_events.sync.lists import PROTECTED, build_lists

    if pm is None:
        pm = get_plugin_manager()
        if root.state_dir.is_dir():        # a report: nothing is created on a host that is not set up
            install_schemas(pm, root)
    pm.root = root
    if db is None:
        db = open_db("configuration", root, validate=False, journal=False, create=False)
    active = pm.detect(root, db)
    problems: list[str] = []
    dumps = sorted(pm.collect("hotsync_dumps", db=db, root=root), key=lambda t: (t[1].priority, t[1].name))
    dump_paths = [(d.path, f"dump {d.name} (plugin {p})") for p, d in dumps]
    realtime: dict[str, bool] = {}
    for _plugin, sp in pm.collect("hotsync_sync_paths", db=db, root=root):
        if not sp.exclude:
            key = "/" + "/".join(x for x in sp.path.split("/") if x not in ("", "."))
            realtime[key] = realtime.get(key, True) and sp.realtime
    try:
        lists = build_lists(root, db, pm, dump_paths)
    except ValueError as exc:
        problems.append(str(exc))
        lists = None
    problems += [f"plugin {p}: hook {h}: {e}" for p, h, e in pm.hook_errors]

    def who(origins: list[str]) -> list[str]:
        base = str(root.path).rstrip("/") + "/"
        return sorted({o.replace(base, "/", 1) if o.startswith(base) else o for o in origins})

    out = {
        "databases": (db.getprop("hotsync", "databases") or "enabled"),
        "include": [], "exclude": [], "protected": list(PROTECTED),
        "dumps": [{"name": d.name, "path": d.path, "plugin": p, "priority": d.priority,
                   "restore": d.restore is not None} for p, d in dumps],
        "plugins": {"active": sorted(n for n, a in active.items() if a),
                    "inactive": sorted(n for n, a in active.items() if not a)},
        "problems": problems, "warnings": [],
    }
    if lists is not None:
        base = str(root.path).rstrip("/") + "/"
        problems += [p.replace(base, "/") for p in lists.problems]    # lines left out: bad, or refused areas
        out["warnings"] = [w.replace(base, "/") for w in lists.warnings]
        ex_origins = getattr(lists, "exclude_origins", {})
        out["include"] = [{"path": p, "from": who(lists.origins.get(p, [])), "realtime": realtime.get(p, False),
                           "exists": root.join(p).exists()} for p in lists.includes]
        out["exclude"] = [{"pattern": x, "from": who(ex_origins.get(x, []))} for x in lists.excludes]
    return out


def run(args) -> int:
    from hotsync_events.paths import root_from
    from hotsync_events.manager import PluginClash

    root = root_from(getattr(args, "root", None))
    try:
        report = plan(root)
    except PluginClash as exc:
        print(f"hotsync paths: {exc}", file=sys.stderr)
        return 4
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(f"synced ({len(report['include'])} paths; * = realtime, ? = missing on this host now):")
        for i in report["include"]:
            mark = ("*" if i["realtime"] else " ") + (" " if i["exists"] else "?")
            print(f"  {mark} {i['path']:<52} {', '.join(i['from'])}")
        print(f"excluded ({len(report['exclude'])} patterns, plus {len(report['protected'])} protected paths):")
        for x in report["exclude"]:
            print(f"    {x['pattern']:<52} {', '.join(x['from'])}")
        print(f"dumps (databases {report['databases']}):")
        for d in report["dumps"]:
            print(f"    {d['path']:<52} {d['name']} (plugin {d['plugin']})")
        print("active plugins:   " + (", ".join(report["plugins"]["active"]) or "none"))
        print("inactive plugins: " + (", ".join(report["plugins"]["inactive"]) or "none"))
        for p in report["problems"]:
            print(f"problem: {p}")
        for w in report["warnings"]:
            print(f"warning: {w}")
    return 1 if report["problems"] else 0
