"""``hotsync sync``: push this master's data to its slave now (see :mod:`hotsync_events.sync.push`)."""
from __future__ import annotations

import sys

HELP = "push this master's data to its slave now (dumps, guards, rsync through TLS)"
EPILOG = """\
exit status: 0 pushed (or nothing to push), 1 the push failed, 2 this host cannot push (not a
configured, enabled master, or no person pinned the slave's certificate yet), 3 held back by a safety
guard (the slave was not touched), 75 another sync is running (one follow-up run is queued; on a
terminal it waits for it instead, unless --no-wait), 130 interrupted (Ctrl-C: recorded, no alert).

The first push after pairing is a person's: on a terminal it shows the slave's certificate
fingerprint and asks before pinning it; a script names it with --accept-fingerprint. The schedule,
the real-time notifier and --dry-run never pin.

examples:
  hotsync sync                     push now
  hotsync sync --dry-run           show what would change and what would be deleted
  hotsync sync --allow-deletions   let a mass deletion or an emptied source through, once
  hotsync sync --accept-fingerprint SHA256:AB:...   pin the slave's certificate (compare it with
                                                    `hotsync status` on the slave first)
"""


def add_arguments(parser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="change nothing; list what a push would do")
    parser.add_argument("--full", action="store_true",
                        help="compare file contents (checksums), not size and time: a verification pass")
    parser.add_argument("--allow-deletions", action="store_true",
                        help="let this run delete more than MaxDeletePercent, or empty a vanished source")
    parser.add_argument("--accept-fingerprint", metavar="SHA256:...",
                        help="pin the slave's certificate if it has this fingerprint (see `hotsync status` there)")
    parser.add_argument("--scheduled", action="store_true",
                        help="run only if no run started within the interval (cron); never queue")
    parser.add_argument("--no-wait", action="store_true",
                        help="while another sync runs, exit at once (75) with one follow-up queued; on a terminal "
                             "the default is to wait for it, then run")


def run(args) -> int:
    from hotsync_events.paths import root_from
    from hotsync_events.sync.push import run_sync

    quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
    terminal = sys.stdin.isatty() and sys.stdout.isatty()
    progress = _Progress() if terminal and not quiet and not args.scheduled else None

    def log(line: str) -> None:
        if progress is not None:
            progress.clear()
        bad = line.startswith(("hotsync sync: FAILED", "hotsync sync: HELD BACK", "hotsync sync: warning"))
        if quiet and not bad:
            return
        print(line, file=sys.stdout if not line.startswith("hotsync sync: FAILED") else sys.stderr, flush=True)

    def ask(question: str) -> bool:
        try:
            return input(f"hotsync sync: {question} [y/N] ").strip().lower() in ("y", "yes")
        except EOFError:
            return False

    # a person at a terminal is asked before a first pin, and waits for a sync that runs; cron, the notifier
    # and scripts never are asked, and (with --no-wait, or without a terminal) do not wait
    person = terminal and not args.scheduled
    try:
        return run_sync(root_from(getattr(args, "root", None)), dry_run=args.dry_run, full=args.full,
                        allow_deletions=args.allow_deletions, accept_fingerprint=args.accept_fingerprint,
                        scheduled=args.scheduled, log=log, ask=ask if person else None,
                        wait=person and not args.no_wait, verbose=verbose, progress=progress)
    finally:
        if progress is not None:
            progress.clear()


class _Progress:
    """One line on the terminal, rewritten in place: files sent, bytes, rate (from rsync's progress)."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, files: int, sent: int, rate: str, percent: str) -> None:
        mb = sent / 1e6
        sys.stderr.write(f"\r  pushing: {percent:>4} {files} files, {mb:,.1f} MB, {rate}   ")
        sys.stderr.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.shown = False
