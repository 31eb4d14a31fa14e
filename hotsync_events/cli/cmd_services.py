"""``hotsync services``: the services plugins declare, their back-end and whether they run."""
from __future__ import annotations

import json
import sys

from hotsync_events.paths import root_from

HELP = "list the services: plugin, systemd unit or command, enabled in the configuration, running or not"
EPILOG = """\
examples:
  hotsync services
  hotsync services --json | python3 -m json.tool
  hotsync --root /srv/slave services
  HOTSYNC_SERVICE_BACKEND=process hotsync services
"""


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    from hotsync_events.configdb import open_db
    from hotsync_events.manager import PluginClash, RegistrationError, get_plugin_manager
    from hotsync_events.events.services import ServiceError, ServiceManager, collect_services

    root = root_from(getattr(args, "root", None))
    try:
        pm = get_plugin_manager()
        pm.root = root
        db = open_db("configuration", root, initialise=False, journal=False)
        mgr = ServiceManager(root, collect_services(pm, db))
    except (PluginClash, ServiceError, RegistrationError) as exc:
        print(f"hotsync services: {exc}", file=sys.stderr)
        return 4
    rows = mgr.table()
    problems = [f"plugin {p}: hook {h}: {e}" for p, h, e in pm.hook_errors]
    if args.json:
        print(json.dumps({"backend": mgr.backend.name, "services": rows, "problems": problems}, indent=2,
                         sort_keys=True))
    else:
        if not rows:
            print("no services are declared")
        w = max([len(r["name"]) for r in rows] + [12]) + 1
        for r in rows:
            want = "enabled" if r["enabled"] else "disabled"
            print(f"{r['name']:<{w}} {want:<9} {r['state']:<24} {r['backend']:<8} plugin {r['plugin']}")
            how = r["unit"] if r["backend"] == "systemd" else " ".join(r["command"] or ["(no command)"])
            print(f"{'':<{w}} {how}")
            if r["events"]:
                print(f"{'':<{w}} events: " + ", ".join(f"{e}={v}" for e, v in r["events"].items()))
        for p in problems:
            print(f"problem: {p}")
    return 1 if problems else 0
