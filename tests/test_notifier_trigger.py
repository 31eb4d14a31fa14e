"""Unit tests of the notifier's trigger (leading edge, settle, one follow-up, collapse, backoff) with a
fake clock, and of the exclude matcher. No threads, no files: the timing rules, exactly."""
from __future__ import annotations

import pytest

from hotsync_events.realtime.debounce import Trigger
from hotsync_events.realtime.notifier import ExcludeMatcher


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def tick(self, dt: float) -> None:
        self.t += dt


@pytest.fixture
def clock():
    return Clock()


def make(clock, **kw) -> Trigger:
    kw.setdefault("settle", 0.05)
    return Trigger(clock=clock, **kw)


def test_idle_has_nothing_to_do(clock):
    t = make(clock)
    assert t.due_in() is None and t.take() is None and not t.pending


def test_leading_edge_waits_only_the_settle_window(clock):
    t = make(clock)
    t.change("/srv/a")
    assert t.due_in() == pytest.approx(0.05)
    assert t.take() is None                       # not yet
    clock.tick(0.03)
    t.change("/srv/b")                            # inside the window: joins, does not push the start back
    assert t.due_in() == pytest.approx(0.02)
    clock.tick(0.02)
    batch = t.take()
    assert batch.paths == ("/srv/a", "/srv/b") and not batch.full
    assert batch.first_change == pytest.approx(1000.0)


def test_steady_trickle_cannot_starve_the_push(clock):
    t = make(clock, settle=0.05)
    t.change("/a")
    for _ in range(4):                            # a change every 10 ms
        clock.tick(0.01)
        t.change("/b")
    clock.tick(0.01)
    assert t.take() is not None                   # 50 ms after the first change, whatever follows


def test_changes_during_a_push_make_exactly_one_follow_up(clock):
    t = make(clock)
    t.change("/a")
    clock.tick(0.05)
    first = t.take()
    assert first.paths == ("/a",)
    for i in range(100):                          # a burst while the push runs
        clock.tick(0.001)
        t.change(f"/burst/{i}")
        assert t.take() is None and t.due_in() is None   # nothing starts while one runs
    clock.tick(0.2)
    assert t.finish(True).notice is None
    follow = t.take()                             # as soon as the push ends: no settle again
    assert follow is not None and len(follow.paths) == 100
    t.finish(True)
    assert t.take() is None and t.due_in() is None


def test_a_change_after_the_push_waits_the_settle_again(clock):
    t = make(clock)
    t.change("/a")
    clock.tick(0.05)
    t.take()
    clock.tick(0.1)
    t.finish(True)
    clock.tick(1.0)
    t.change("/b")
    assert t.due_in() == pytest.approx(0.05)


def test_same_path_twice_is_sent_once(clock):
    t = make(clock)
    for _ in range(5):
        t.change("/a")
    clock.tick(0.05)
    assert t.take().paths == ("/a",)


def test_dirty_set_over_the_limit_collapses_to_a_full_sync(clock):
    t = make(clock, max_batch=100)
    for i in range(100):
        t.change(f"/f{i}")
    assert len(t.dirty) == 100 and t.full_reason is None
    t.change("/one-more")
    assert t.full_reason and "100" in t.full_reason and not t.dirty
    for i in range(10_000):                       # further changes cost no memory
        t.change(f"/g{i}")
    assert not t.dirty and t.stats.collapses == 1
    clock.tick(0.05)
    batch = t.take()
    assert batch.full and batch.paths is None


def test_need_full_wins_over_the_list(clock):
    t = make(clock)
    t.change("/a")
    t.need_full("a directory was renamed")
    t.change("/b")
    clock.tick(0.05)
    b = t.take()
    assert b.full and b.reason == "a directory was renamed"


def test_overflow_is_counted_and_forces_a_full_sync(clock):
    t = make(clock)
    t.overflow()
    t.overflow()
    assert t.stats.overflows == 2
    clock.tick(0.05)
    assert t.take().full


def test_failure_backs_off_exponentially_up_to_the_cap_then_recovers_once(clock):
    t = make(clock, retry_min=0.5, retry_max=4.0)
    t.change("/a")
    clock.tick(0.05)
    t.take()
    out = t.finish(False, "connection refused")
    assert out.notice == "failed" and out.retry_in == 0.5
    delays = [out.retry_in]
    for _ in range(6):
        t.change("/more")                         # changes while down: no memory, no earlier retry
        assert not t.dirty and t.full_reason
        wait = t.due_in()
        assert wait == pytest.approx(delays[-1])
        clock.tick(wait - 0.01)
        assert t.take() is None
        clock.tick(0.01)
        b = t.take()
        assert b.full                             # after the slave was unreachable: a full sync
        out = t.finish(False, "connection refused")
        assert out.notice is None                 # mailed once, on the first failure
        delays.append(out.retry_in)
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    clock.tick(4.0)
    b = t.take()
    assert b.full
    assert t.finish(True).notice == "recovered"
    t.change("/x")
    assert t.due_in() == pytest.approx(0.05)      # backoff reset
    clock.tick(0.05)
    t.take()
    assert t.finish(True).notice is None


def test_failure_keeps_the_age_of_the_oldest_change(clock):
    t = make(clock)
    t.change("/a")
    clock.tick(0.05)
    t.take()
    clock.tick(1)
    t.finish(False, "x")
    assert t.first_change == pytest.approx(1000.0)


def test_status_snapshot(clock):
    t = make(clock)
    t.change("/a")
    clock.tick(0.05)
    t.take()
    clock.tick(0.02)
    t.finish(True, wall=5.0)
    snap = t.snapshot()
    assert snap["pushes"] == 1 and snap["queued_paths"] == 0
    assert snap["last_push"]["paths"] == 1 and snap["last_push"]["latency"] == pytest.approx(0.07)
    assert snap["last_push"]["seconds"] == pytest.approx(0.02)


def test_bad_settings_are_refused(clock):
    with pytest.raises(ValueError):
        Trigger(settle=-1, clock=clock)
    with pytest.raises(ValueError):
        Trigger(max_batch=0, clock=clock)


@pytest.mark.parametrize("pattern,path,is_dir,excluded", [
    ("*.tmp", "/srv/a/b.tmp", False, True),
    ("*.tmp", "/srv/a.tmp/inside", False, True),       # an excluded dir excludes its content
    ("*.tmp", "/srv/a/b.tmpx", False, False),
    ("cache/", "/srv/app/cache", True, True),
    ("cache/", "/srv/app/cache", False, False),         # trailing slash: directories only
    ("cache/", "/srv/app/cache/x", False, True),
    ("/var/cache", "/var/cache/x", False, True),
    ("/var/cache", "/srv/var/cache/x", False, False),   # anchored at /
    ("app/tmp", "/srv/app/tmp/f", False, True),
    ("app/tmp", "/srv/xapp/tmp/f", False, False),
    ("/srv/**/log", "/srv/a/b/log", False, True),
    ("- *.swp", "/srv/.f.swp", False, True),
    ("+ keep", "/srv/keep", False, False),
    ("/var/lib/hotsync/sync/", "/var/lib/hotsync/sync/status.json", False, True),
    (".hotsync-partial/", "/srv/.hotsync-partial", True, True),
    ("file?.log", "/srv/file1.log", False, True),
    ("file?.log", "/srv/file/.log", False, False),
    ("[ab].txt", "/srv/a.txt", False, True),
    ("[!ab].txt", "/srv/a.txt", False, False),
])
def test_exclude_matcher(pattern, path, is_dir, excluded):
    assert ExcludeMatcher([pattern]).excluded(path, is_dir) is excluded


def test_exclude_matcher_empty_and_several():
    assert not ExcludeMatcher([]).excluded("/srv/x")
    m = ExcludeMatcher(["# comment", "", "*.o", "/tmp/"])
    assert m.excluded("/srv/a.o") and m.excluded("/tmp/x") and not m.excluded("/srv/a.c")
