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
    """The paths report as a dict (the ``--json`` output): :func:`hotsync_events.sync.shipping.shipping_plan`."""
    from hotsync_events.sync.shipping import shipping_plan

    return shipping_plan(root, pm, db)


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
