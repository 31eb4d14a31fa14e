"""``hotsync daemon``: the foreground scheduler (see :mod:`hotsync_events.realtime.scheduler`)."""
from __future__ import annotations

HELP = "run scheduled syncs every `interval` minutes in the foreground until SIGTERM"
EPILOG = """\
Used by the process back-end as service hotsync-scheduler (where systemd runs, cron reads
/etc/cron.d/hotsync instead). The first run comes one interval after start; a run that another
trigger started meanwhile counts.

examples:
  hotsync daemon
  hotsync daemon --max-runs 1 --first-after 0     one scheduled run now, then exit
"""


def add_arguments(parser) -> None:
    parser.add_argument("--max-runs", type=int, default=0, help="exit after this many runs (0: never)")
    parser.add_argument("--first-after", type=float, default=None, metavar="SECONDS",
                        help="wait this long before the first run (default: one interval)")


def run(args) -> int:
    from hotsync_events.paths import root_from
    from hotsync_events.realtime.scheduler import Scheduler

    return Scheduler(root_from(getattr(args, "root", None)), max_runs=args.max_runs,
                     first_after=args.first_after).run()
