"""``hotsync restore-databases``: load the shipped database dumps into this host's servers (the slave)."""
from __future__ import annotations

import sys

from hotsync_events.paths import root_from

HELP = "restore the database dumps shipped by the master into this host's servers, then check row counts"
EPILOG = """\
Each plugin that gives a dump (hotsync_dumps hook) restores it: the local server is started if needed,
the dump is loaded, and every table's row count is checked against what the master recorded at dump
time. Run by the promote; run it by hand to test a slave's dumps. It replaces the local databases.

examples:
  hotsync restore-databases               restore every shipped dump
  hotsync restore-databases --only mysql  restore one dump, by name
  hotsync restore-databases --list        show the dumps and whether each was shipped
"""


def add_arguments(parser) -> None:
    parser.add_argument("--only", action="append", metavar="NAME", help="restore only this dump (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the dumps, restore nothing")


def run(args) -> int:
    from hotsync_events.sync.databases import DumpsError, plan, restore_all
    from hotsync_events.manager import RegistrationError

    root = root_from(getattr(args, "root", None))
    try:
        dumps = plan(root, only=args.only)
    except (DumpsError, RegistrationError) as exc:
        print(f"hotsync restore-databases: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for plugin, dump, shipped in dumps:
            print(f"{dump.name:<16} {plugin:<16} {'shipped' if shipped else 'missing'}  {dump.path}")
        if not dumps:
            print("no database dumps on this host")
        return 0
    backups = [d.name for _, d, _ in dumps if not d.at_promote and d.name not in (args.only or [])]
    for name in backups:    # over a live replica it would diverge it: only when a person names it
        print(f"{name}: a backup beside a database replica, skipped (name it to load it over that server: "
              f"hotsync restore-databases --only {name}; promote or stop the replica first)")
    dumps = [t for t in dumps if t[1].name not in backups]
    failed = restore_all(root, dumps, log=print, err=lambda m: print(m, file=sys.stderr))
    return 1 if failed else 0
