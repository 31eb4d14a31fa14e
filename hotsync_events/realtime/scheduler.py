"""``hotsync daemon``: run the scheduled sync every ``interval`` minutes, in the foreground.

Bounded and clean: it sleeps in steps of at most one second, re-reads the interval before each wait,
and on SIGTERM/SIGINT finishes (or, between runs, simply ends) without leaving a run half-recorded --
the push's rsync dies with it and the lock is the kernel's. The next run is due one interval after the
last run started (by anyone: cron, the notifier, a sysadmin), and not before ``first_after`` seconds
from start, so a restart never fires a push at once.
"""
from __future__ import annotations

import signal
import sys
import time

from hotsync_events.configdb import open_db
from hotsync_events.paths import Root
from hotsync_events.sync.settings import Settings
from hotsync_events.sync.status import read_status, update_status

__all__ = ["Scheduler"]


class Scheduler:
    def __init__(self, root: Root, *, max_runs: int = 0, first_after: float | None = None, log=None) -> None:
        self.root = root
        self.max_runs = max_runs
        self.first_after = first_after
        self.stopping = False
        self.in_run = False
        self.log = log or (lambda line: print(line, flush=True))

    def _stop(self, signum, frame) -> None:
        self.stopping = True
        if self.in_run:   # end the push now: its rsync is killed, the run recorded as interrupted
            raise SystemExit(128 + signum)

    def interval(self) -> float:
        db = open_db("configuration", self.root, validate=False, initialise=False, journal=False)
        return Settings.from_db(db).interval * 60.0

    def next_due(self, started: float) -> float:
        interval = self.interval()
        first = started + (interval if self.first_after is None else self.first_after)
        last = (read_status(self.root).get("last_run") or {}).get("start")
        due = first if last is None else max(float(last) + interval, first)
        return due

    def run(self) -> int:
        from hotsync_events.sync.push import run_sync

        old = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM, signal.SIGINT)}
        started = time.time()
        runs = 0
        realtime = None
        try:
            self.log(f"hotsync daemon: scheduler started for {self.root.path}")
            if not self.max_runs:   # the real-time notifier (issue 11) runs beside the schedule while enabled
                from hotsync_events.realtime.wiring import Background

                realtime = Background(self.root, check_every=None).start()
            while not self.stopping:
                due = self.next_due(started)
                update_status(self.root, lambda d: d.update(next_run=due))  # noqa: B023 - called at once
                while not self.stopping and time.time() < due:
                    time.sleep(min(1.0, max(due - time.time(), 0.01)))
                    if time.time() < due and int(time.time()) % 30 == 0:
                        due = self.next_due(started)   # another trigger ran meanwhile, or the interval changed
                if self.stopping:
                    break
                self.in_run = True
                try:
                    code = run_sync(self.root, scheduled=True, log=self.log)
                except SystemExit:
                    self.log("hotsync daemon: stopped during a run; the run was ended and recorded as failed")
                    break
                finally:
                    self.in_run = False
                runs += 1
                started = time.time() if self.first_after is not None else started
                self.first_after = None
                if code == 2:
                    self.log("hotsync daemon: this host cannot push now; trying again next interval")
                if self.max_runs and runs >= self.max_runs:
                    break
        finally:
            if realtime is not None:
                realtime.stop()
            for s, h in old.items():
                signal.signal(s, h)
        self.log(f"hotsync daemon: stopped after {runs} run(s)")
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(Scheduler(Root(sys.argv[1])).run())
