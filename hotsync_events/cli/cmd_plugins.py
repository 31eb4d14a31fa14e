"""``hotsync plugins``: each plugin's name, version, origin, hooks and load error."""
from __future__ import annotations

import json

from hotsync_events.paths import root_from
from hotsync_events.manager import PluginClash, get_plugin_manager, install_schemas

HELP = ("list the plugins: name, version, where it came from, whether its package is on this host (active), "
        "its hooks, and why it failed to load")
EPILOG = """\
examples:
  hotsync plugins
  hotsync plugins --json | python3 -m json.tool
  HOTSYNC_DISABLE_PLUGINS=nextcloud hotsync plugins
"""


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    import sys

    try:
        pm = get_plugin_manager()
    except PluginClash as exc:
        print(f"hotsync plugins: {exc}", file=sys.stderr)
        return 4
    root = root_from(getattr(args, "root", None))
    pm.root = root
    try:
        problems = install_schemas(pm, root)
    except OSError as exc:  # e.g. not root on /: still list the plugins
        problems = [f"cannot install the plugins' schema files under {root.state_dir / 'schema'}: {exc}"]
    pm.detect(root)     # is each plugin's package on this host (hotsync_detect)?
    infos = pm.plugin_infos()
    broken = [i for i in infos if i.error]
    problems += [f"plugin {p}: hook {h}: {e}" for p, h, e in pm.hook_errors]   # a hook that raised
    if args.json:
        print(json.dumps({"plugins": [i.as_json() for i in infos], "problems": problems}, indent=2, sort_keys=True))
    else:
        for i in infos:
            state = "blocked" if i.blocked else ("BROKEN" if i.error else ("active" if i.active else "inactive"))
            print(f"{i.name:<16} {i.version:<10} {state:<8} {i.origin}")
            if i.hooks:
                print(f"{'':<16} hooks: {', '.join(i.hooks)}")
            if i.error:
                print(f"{'':<16} error: {i.error}")
        for p in problems:
            print(f"problem: {p}")
        if not infos:
            print("no plugins")
    return 1 if broken or problems else 0
