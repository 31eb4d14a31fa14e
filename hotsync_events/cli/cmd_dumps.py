"""``hotsync dumps``: the database dumps the active plugins declare on this host, with their age."""
from __future__ import annotations

HELP = "list the database dumps of this host: which plugin, where, when taken (their age), how big"
EPILOG = """\
On the master a dump is the last good one the sync took before a push; on the slave it is the copy the
last push shipped, so its age is how far the slave's databases lag behind. Nothing is dumped or read
here: `hotsync sync` takes the dumps, `hotsync restore-databases` loads them.

exit status: 0; 1 the plugins declare dumps wrongly (two with one name or path); 4 not readable (root's).

examples:
  hotsync dumps
  hotsync dumps --json        {"enabled", "dumps": [{"name", "plugin", "path", "exists", "time", "age", "size"}]}
"""


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    import json

    from hotsync_events.configdb import open_db
    from hotsync_events.sync.dumpinfo import dump_files
    from hotsync_events.manager import plugin_manager
    from hotsync_events.sync.fence import age_words
    from hotsync_events.paths import root_from
    from hotsync_events.sync.status import iso

    root = root_from(getattr(args, "root", None))
    try:
        db = open_db("configuration", root, validate=False, journal=False, create=False)
        info = dump_files(root, plugin_manager(root), db)
    except PermissionError as exc:
        import sys

        print(f"hotsync dumps: {exc.strerror}: {exc.filename}: this host's configuration is root's; run as root",
              file=sys.stderr)
        return 4
    if args.json:
        print(json.dumps(info, indent=1, sort_keys=True))
        return 0
    if info["error"]:
        print(f"hotsync dumps: {info['error']}")
        return 1
    if not info["enabled"]:
        print("databases: disabled (config setprop hotsync databases enabled): no dump is taken")
    if not info["dumps"]:
        print("no database dumps: no active plugin declares one on this host")
    for d in info["dumps"]:
        when = f"{iso(d['time'])}, {age_words(d['age'])} old, {d['size']} bytes" if d["exists"] else "not taken yet"
        print(f"{d['name']:<16} {d['plugin']:<14} {d['path']}: {when}")
    return 0
