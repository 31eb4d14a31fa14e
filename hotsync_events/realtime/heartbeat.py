"""The real-time notifier's heartbeat: an idle master tells its slave it is alive.

A master that changes nothing pushes nothing, and a slave asked to promote could not tell it from a dead
one. So :class:`Heartbeat` asks the pusher for a heartbeat
(:meth:`~hotsync_events.realtime.pusher.SyncPusher.beat`: a dry run of an empty list, kind ``beat``) when
the notifier starts, then once it has pushed nothing for ``RealtimeHeartbeat`` seconds. A heartbeat says
the period (``beat=N`` in its early input); the slave records it as ``last_beat``, each real-time push
refreshes its time (a busy notifier pushes instead of beating), and the slave's promote takes a master
silent for a few periods as possibly down (:mod:`hotsync_events.promote.verify`). A clean stop says
``beat=0``: no more heartbeats, so the slave goes back to the schedule's window.

The heartbeat runs in a thread of its own and takes no sync lock (it writes nothing): a long full sync,
its dumps or another command's sync never hold it back.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["BEAT_REFUSED", "BEAT_STOP", "Heartbeat"]

log = logging.getLogger("hotsync.notifier")

#: seconds between two asks of a slave that refused a heartbeat (one of an older version)
BEAT_REFUSED = 600
#: the longest the last heartbeat, at a clean stop, may take (and one at any other time)
BEAT_STOP, BEAT_LIMIT = 3.0, 10.0
#: how a slave of a version without heartbeats refuses one: its parser of the session's first line does not
#: know ``beat=``, so it finds no epoch there (a master of this version always sends one)
OLD_SLAVE = "carries no pair epoch"
#: after a heartbeat met a session of this master at the slave's door, the next try comes this soon
BUSY_AGAIN = 1.0


class Heartbeat:
    """Beats through *pusher* (one with a ``beat()``; none: it never beats) at its start, then after every
    *every* seconds without a push."""

    def __init__(self, pusher: Any, every: float, on_beat: Callable[[], None] | None = None) -> None:
        self.pusher: Any = pusher
        self.on_beat = on_beat                    # told after each heartbeat (the notifier's status is dirty)
        self.every = int(every) if callable(getattr(pusher, "beat", None)) else 0
        self._contact = float("-inf")             # the last push or heartbeat (none yet: beat at once)
        self._taken = False                       # a heartbeat got through (the slave knows the period)
        self._lock = threading.Lock()             # one heartbeat at a time: beat=0 is the last word
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict = {"every": self.every, "last": None, "ok": None, "error": None, "failed": 0}

    def touch(self) -> None:
        """A push reached (or tried) the slave: the next heartbeat is one period from now (once one got
        through: until then the slave does not know the period, and a push does not tell it)."""
        if self._taken:
            self._contact = time.monotonic()

    def start(self) -> None:
        if self.every <= 0 or self._thread is not None:
            return
        self.pusher.beat_every = self.every
        self._thread = threading.Thread(target=self._loop, name="hotsync-heartbeat", daemon=True)
        self._thread.start()

    def stop(self, last: bool = True) -> None:
        """End the thread; with *last*, tell the slave no more heartbeats come (``beat=0``), so its promote
        goes back to the schedule's window: the master may well live on without its notifier."""
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join(BEAT_LIMIT + 1)
        self._thread = None
        if not last:
            return
        with self._lock:      # a periodic heartbeat still under way ends first: this is the last word
            deadline = time.monotonic() + BEAT_STOP
            while True:       # the slave may still be ending the last push's session (one at a time)
                error = self._beat(every=0, limit=max(deadline - time.monotonic(), 0.5))
                if error is None or "max connections" not in error or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        if error is not None:
            log.warning("could not tell the slave that the heartbeats stop (%s): until this master's next push "
                        "or heartbeat, its promote may take it for down after %d s", error, 4 * self.every)

    def status(self) -> dict:
        """What the status file shows: the period, the last heartbeat's time and outcome."""
        return dict(self._last)

    def beat(self, **kw) -> str | None:
        """One heartbeat, recorded for :meth:`status`. Returns why it failed, None if the slave took it;
        "stopped" once :meth:`stop` began (nothing is sent then but its last word)."""
        with self._lock:
            if self._stop.is_set():
                return "stopped"
            return self._beat(**kw)

    def _beat(self, **kw) -> str | None:
        error: str | None
        try:
            ok = self.pusher.beat(**kw)
            error = None if ok else (getattr(self.pusher, "beat_error", None) or "the slave did not take it")
        except Exception as exc:   # a heartbeat is a courtesy: the notifier goes on
            log.exception("heartbeat failed")
            error = f"{type(exc).__name__}: {exc}"
        busy = error is not None and "max connections" in error     # a session of this master: it hears it
        if error is None and kw.get("every") != 0:
            self._taken = True
        self._last.update(last=time.time(), ok=error is None or (None if busy else False), error=error,
                          failed=0 if error is None else self._last["failed"] + (0 if busy else 1))
        if self.on_beat is not None:
            self.on_beat()
        return error

    def _loop(self) -> None:
        wait = float(self.every)
        while not self._stop.is_set():
            due = self._contact + wait - time.monotonic()
            if due > 0:
                self._stop.wait(min(due, 1.0))
                continue
            self._contact = time.monotonic()
            error = self.beat()
            # a slave of an older version does not know heartbeats: ask again rarely, so its own record of the
            # last refused push keeps saying something else. Any other refusal may pass: the usual period
            old = error is not None and OLD_SLAVE in error
            if old and wait < BEAT_REFUSED:
                log.warning("the slave refuses this master's heartbeat (%s): a version without heartbeats? "
                            "asking again every %d s", error, BEAT_REFUSED)
            busy = error is not None and "max connections" in error
            # busy before the slave learnt the period: soon again (after that, the slave counts the
            # session that keeps it busy as this master's contact)
            wait = float(BEAT_REFUSED) if old else BUSY_AGAIN if busy and not self._taken else float(self.every)
