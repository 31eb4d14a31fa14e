"""``hotsync log``: the master's sync log (one entry per run), filtered, in words or as JSON."""
from __future__ import annotations

HELP = "show the sync log: one entry per run (time, result, duration, files, bytes, message, details)"
EPILOG = """\
The log is var/log/hotsync/sync.log (and the rotated sync.log.1), written by every sync run on the
master (not by the real-time notifier's pushes, nor by dry runs). Entries are printed oldest first.

exit status: 0 (also when no entry matches); 2 usage error; 4 the log may not be read (it is root's).

examples:
  hotsync log                          the last 20 runs
  hotsync log --result held            the pushes a guard held back, with what they would have deleted
  hotsync log --grep invoices --last 0 every run that names "invoices", however old
  hotsync log --json --last 100        the last 100 runs as a JSON list (the Cockpit page's chart)
"""

RESULTS = ("success", "failed", "held", "interrupted", "cancelled")


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {time, start, result, duration, files, bytes, deleted, message, details}")
    parser.add_argument("--last", type=int, default=None, metavar="N",
                        help="only the last N matching entries (default 20 in words, 100 with --json; 0: all)")
    parser.add_argument("--result", choices=RESULTS, action="append",
                        help="only runs with this result (may be repeated)")
    parser.add_argument("--grep", metavar="TEXT", help="only runs whose message or details contain TEXT (any case)")


def run(args) -> int:
    import json
    import sys

    from hotsync_events.paths import root_from
    from hotsync_events.sync.synclog import read_log

    if args.last is not None and args.last < 0:
        print("hotsync log: --last is 0 or more", file=sys.stderr)
        return 2
    root = root_from(getattr(args, "root", None))
    try:
        entries = read_log(root)
    except PermissionError as exc:
        print(f"hotsync log: {exc.strerror}: {exc.filename}: the sync log is root's (it names files); run as root",
              file=sys.stderr)
        return 4
    if args.result:
        entries = [e for e in entries if e["result"] in args.result]
    if args.grep:
        needle = args.grep.lower()
        entries = [e for e in entries
                   if needle in e["message"].lower() or any(needle in d.lower() for d in e["details"])]
    last = args.last if args.last is not None else (100 if args.json else 20)
    if last:
        entries = entries[-last:]
    if args.json:
        print(json.dumps(entries, indent=1, ensure_ascii=False))
        return 0
    for e in entries:
        counts = "" if e["files"] is None else f", {e['files']} files, {e['bytes']} bytes, {e['deleted']} deleted"
        print(f"{e['time']} {e['result']} ({e['duration']:.1f}s{counts}): {e['message']}")
        for d in e["details"]:
            print(f"    {d}")
    return 0
