"""``hotsync watch``: the real-time notifier in the foreground (see :mod:`hotsync_events.realtime.notifier`)."""
from __future__ import annotations

HELP = "push every change to the slave within a fraction of a second (inotify), in the foreground"
EPILOG = """\
Watches every synced path (the plugins' and include.d lists, excludes honoured) and pushes just the
changed paths, 50 ms (RealtimeSettle) after the first change; changes made during a push go in one
follow-up push. A renamed directory is renamed on the slave. Falls back to one full sync after a kernel
queue overflow, a directory moved in (or a rename the slave cannot replay), more than RealtimeMaxBatch
changed paths, or a failed push (retried with a growing delay, capped). Runs on an
enabled master while `hotsync realtime` is enabled; `hotsync daemon` runs it too.

Changes of the include/exclude lists and of the settings are picked up within 30 s (the notifier restarts
with a full sync). Signals: TERM/INT stop it; HUP re-reads the paths and settings at once.

examples:
  hotsync watch
  hotsync watch -v                 log every push
  config setprop hotsync RealtimeSettle 20 RealtimeMaxBatch 20000
"""


def add_arguments(parser) -> None:
    parser.add_argument("--force", action="store_true", help="run even while `hotsync realtime` is disabled")
    parser.add_argument("--retry-max", type=float, default=30.0, metavar="SECONDS",
                        help="longest wait between two retries while the slave is unreachable (default 30)")
    parser.add_argument("--duration", type=float, default=0.0, metavar="SECONDS",
                        help="stop after this long (0: run until a signal)")


def run(args) -> int:
    import logging
    import signal
    import sys
    import threading
    import time

    from hotsync_events.realtime.wiring import Background
    from hotsync_events.paths import root_from

    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
                        format="%(asctime)s hotsync watch: %(message)s")
    logging.getLogger("watchdog").setLevel(logging.WARNING)
    if not 0.5 <= args.retry_max <= 86400:
        print(f"hotsync watch: --retry-max {args.retry_max:g}: allowed is 0.5 to 86400 seconds", file=sys.stderr)
        return 2
    if args.duration < 0:
        print(f"hotsync watch: --duration {args.duration:g}: allowed is 0 (no limit) or more seconds", file=sys.stderr)
        return 2
    root = root_from(getattr(args, "root", None))
    stop = threading.Event()
    reload = threading.Event()

    def on_signal(signum, _frame):
        (reload if signum == signal.SIGHUP else stop).set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    bg = Background(root, force=args.force, retry_max=args.retry_max)
    bg.step()
    if bg.notifier is None and _refused(root, args.force, bg.why_not or ""):
        print(f"hotsync watch: {bg.why_not}", file=sys.stderr)
        return 2
    if bg.notifier is None:     # not yet (no path to watch, no pin): it starts as soon as it can; a service waits
        print(f"hotsync watch: not watching yet: {bg.why_not}", file=sys.stderr)
    bg.start()            # from now on: follows changes of the lists, the settings and the pin
    log = logging.getLogger("hotsync.notifier")
    t_end = time.monotonic() + args.duration if args.duration > 0 else None
    try:
        while not stop.is_set():
            stop.wait(0.5)
            if t_end is not None and time.monotonic() >= t_end:
                break
            if reload.is_set():
                reload.clear()
                log.info("SIGHUP: re-reading the paths and settings")
                bg.reload()
    finally:
        bg.stop()
    return 0


def _refused(root, force: bool, why: str) -> bool:
    """Whether the notifier must not run here at all (another one runs, not an enabled master, real-time
    disabled), as opposed to not yet (nothing to watch, the first push waits for a person)."""
    from hotsync_events.configdb import open_db
    from hotsync_events.realtime.settings import RealtimeSettings
    from hotsync_events.sync.settings import Settings

    db = open_db("configuration", root, validate=False, journal=False, create=False)
    return (why.startswith("another notifier") or Settings.from_db(db).master_problem() is not None
            or not (force or RealtimeSettings.from_db(db).enabled))
