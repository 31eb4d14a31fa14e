"""The heartbeat's rules without daemons: when it beats, what counts as a failure, the old slave's
back-off, the stop's last word, and the time limit that kills the whole session."""
from __future__ import annotations

import os
import time

from hotsync_events.realtime import heartbeat as hb
from hotsync_events.realtime.heartbeat import Heartbeat
from hotsync_events.realtime.pusher import _rsync


class FakePusher:
    def __init__(self, answers=()):
        self.calls: list[dict] = []
        self.answers = list(answers)     # beat_error per call (None: taken)
        self.beat_every = 0
        self.beat_error = None

    def beat(self, **kw):
        self.calls.append(kw)
        self.beat_error = self.answers.pop(0) if self.answers else None
        return self.beat_error is None


def _until(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.01)
    return pred()


def test_beats_at_start_then_after_quiet_and_says_beat_0_at_a_clean_stop():
    p = FakePusher()
    h = Heartbeat(p, 1)
    h.start()
    try:
        assert _until(lambda: len(p.calls) == 1) and p.beat_every == 1      # at once: the slave learns the period
        h.touch()                                                           # a push: the next beat waits
        time.sleep(0.5)
        assert len(p.calls) == 1
        assert _until(lambda: len(p.calls) == 2, 3)
    finally:
        h.stop()
    assert p.calls[-1] == {"every": 0, "limit": p.calls[-1]["limit"]} and p.calls[-1]["limit"] <= hb.BEAT_STOP


def test_a_slave_busy_with_a_session_is_no_failure_and_the_stop_retries_it():
    p = FakePusher(["rsync exit 5: @ERROR: max connections (1) reached -- try again later"] * 3)
    h = Heartbeat(p, 600)
    assert h.beat() is not None and h.status()["failed"] == 0 and h.status()["ok"] is None
    h._thread = _Joined()     # as if started: the stop's last word, retried while the slave is busy
    h.stop()
    assert [c.get("every") for c in p.calls] == [None, 0, 0, 0]        # busy twice, then taken


def test_an_old_slave_is_asked_rarely_and_other_refusals_keep_the_period(monkeypatch):
    monkeypatch.setattr(hb, "BEAT_REFUSED", 3)
    # what a slave of the version before heartbeats says: its parser of the first line does not know beat=
    old = ("rsync exit 5: refused by the slave: the push carries no pair epoch (an rsync client of its own, or "
           "a master of an older version): only a HotSync master may push here")
    p = FakePusher([old, None])
    h = Heartbeat(p, 1)
    h.start()
    try:
        assert _until(lambda: len(p.calls) == 1)
        time.sleep(1.6)
        assert len(p.calls) == 1                                            # backed off: not after 1 s
        assert _until(lambda: len(p.calls) == 2, 4)
    finally:
        h.stop(last=False)
    p = FakePusher(["rsync exit 5: refused by the slave: the push comes from 10.0.0.9, not from MasterHost x"])
    h = Heartbeat(p, 1)
    h.start()
    try:
        assert _until(lambda: len(p.calls) == 2, 4)                         # the usual period
        assert h.status()["failed"] == 0 and h.status()["ok"] is True     # the second one, taken
    finally:
        h.stop(last=False)


def test_a_busy_slave_is_asked_again_soon_until_it_knows_the_period_and_pushes_wait_for_that(monkeypatch):
    monkeypatch.setattr(hb, "BUSY_AGAIN", 0.2)
    busy = "rsync exit 5: @ERROR: max connections (1) reached -- try again later"
    p = FakePusher([busy, busy])
    h = Heartbeat(p, 30)
    h.start()
    try:
        h.touch()                                   # a push before any heartbeat got through: no delay
        assert _until(lambda: len(p.calls) == 3, 3) and h.status()["ok"] is True
        h.touch()
        time.sleep(0.5)
        assert len(p.calls) == 3                    # from now on a push delays the next heartbeat
    finally:
        h.stop(last=False)


def test_the_last_word_waits_for_a_heartbeat_under_way_and_none_follows_it():
    import threading

    gate = threading.Event()

    class Slow(FakePusher):
        def beat(self, **kw):
            if kw.get("every") != 0:
                gate.wait(5)
            return super().beat(**kw)

    p = Slow()
    h = Heartbeat(p, 1)
    h.start()
    assert _until(lambda: h._lock.locked())         # the first heartbeat is under way
    t = threading.Thread(target=h.stop)
    t.start()
    time.sleep(0.2)
    gate.set()
    t.join(10)
    assert [c.get("every") for c in p.calls] == [None, 0]
    assert h.beat() == "stopped" and len(p.calls) == 2


def test_a_pusher_without_beat_never_beats():
    h = Heartbeat(object(), 20)
    h.start()
    assert h._thread is None and h.every == 0
    h.stop()


def test_the_time_limit_kills_the_whole_session_and_returns_in_time(tmp_path):
    # a remote shell that keeps the pipes open after rsync is gone: the whole group goes
    script = tmp_path / "slow.sh"
    script.write_text("#!/bin/sh\n(sleep 30; echo late) &\nsleep 30\n")
    script.chmod(0o755)
    t0 = time.monotonic()
    rc, _out, err = _rsync([str(script)], dict(os.environ), b"", timeout=0.5)
    assert time.monotonic() - t0 < 4 and rc == -1 and "no answer within 0.5 s" in err


class _Joined:
    def join(self, timeout=None):
        return None

    def is_alive(self):
        return False
