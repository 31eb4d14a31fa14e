"""The notifier against a real rsync daemon on loopback: a random workload, a forced overflow, a slave
outage under steady writes. Trees are compared entry by entry (type, mode, size, content, link target)."""
from __future__ import annotations

import gc
import os
import threading
import time

import pytest

from hotsync_events.realtime.notifier import Notifier
from hotsync_events.paths import Root
from notifier_helpers import DaemonPusher, RsyncDaemon, random_workload, rss_kb, tree_digest, wait_equal

pytestmark = pytest.mark.slow


@pytest.fixture
def pair(tmp_path):
    master = Root(tmp_path / "master")
    slave = tmp_path / "slave"
    (master.path / "srv" / "data").mkdir(parents=True)
    (master.path / "srv" / "data" / "seed").write_text("seed\n")
    slave.mkdir()
    daemon = RsyncDaemon(tmp_path, slave)
    daemon.start()
    yield master, slave, daemon
    daemon.stop()


def started(master, daemon, **kw):
    pusher = DaemonPusher(master.path, ["/srv/data"], daemon.url, excludes=("*.swp", "cache/"))
    kw.setdefault("retry_max", 1.0)
    n = Notifier(master, ["/srv/data"], ["*.swp", "cache/"], pusher, **kw).start()
    return n, pusher


def wait_idle(n: Notifier, timeout: float = 20) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        st = n.status()
        if st["running"] is None and not st["queued_paths"] and not st["full_sync_pending"] and n.trigger.retry_at is None:
            return
        time.sleep(0.02)
    raise AssertionError(f"notifier still busy: {n.status()}")


def test_random_workload_ends_with_equal_trees(pair):
    master, slave, daemon = pair
    n, _pusher = started(master, daemon)
    try:
        wait_idle(n)
        top = master.join("/srv/data")
        ops = random_workload(top, seconds=8, seed=11, max_ops=2500)
        # excluded files never reach the slave and never trigger a push
        (top / "x.swp").write_text("editor swap")
        ok, _took = wait_equal(top, slave / "srv" / "data", timeout=15)
        if not ok:
            a, b = tree_digest(top), tree_digest(slave / "srv" / "data")
            diff = sorted(set(a.items()) ^ set(b.items()))[:10]
            pytest.fail(f"trees differ after {ops} operations: {diff}")
        assert ops > 200
        assert n.status()["pushes"] >= 2
        assert not (slave / "srv" / "data" / "x.swp").exists()
    finally:
        n.stop()


def test_equal_within_one_push_after_the_workload(pair):
    """After the last write, one push (the follow-up) brings the slave level: no stragglers."""
    master, slave, daemon = pair
    n, pusher = started(master, daemon)
    try:
        wait_idle(n)
        top = master.join("/srv/data")
        random_workload(top, seconds=3, seed=5, max_ops=800)
        before = len(pusher.calls)
        # wait for whatever was running or queued at the end of the workload
        wait_idle(n)
        after = len(pusher.calls)
        assert after - before <= 2      # the running push and at most one follow-up
        assert tree_digest(top) == tree_digest(slave / "srv" / "data")
    finally:
        n.stop()


def test_injected_overflow_ends_in_a_full_sync_and_equal_trees(pair):
    master, slave, daemon = pair
    n, pusher = started(master, daemon)
    try:
        wait_idle(n)
        top = master.join("/srv/data")
        n.stop()
        # changes no watch told anyone about, as when the kernel drops events
        for i in range(50):
            (top / f"lost{i}").write_text(f"lost {i}\n")
        (top / "seed").unlink()
        # ...then start over and tell it the queue overflowed: only the full sync can repair this
        n, pusher = started(master, daemon, initial_full=False)
        wait_idle(n)
        assert tree_digest(top) != tree_digest(slave / "srv" / "data")
        calls = len(pusher.calls)
        n.inject_overflow()
        wait_idle(n)
        assert n.status()["overflows"] == 1
        assert None in [c[0] for c in pusher.calls[calls:]]      # a full sync ran
        assert tree_digest(top) == tree_digest(slave / "srv" / "data")
        # and the rebuilt watches still work
        (top / "after").write_text("after overflow\n")
        ok, _ = wait_equal(top, slave / "srv" / "data", timeout=5)
        assert ok
    finally:
        n.stop()


def test_slave_down_under_steady_writes_converges_with_bounded_memory(pair):
    master, slave, daemon = pair
    mails = []
    n, _pusher = started(master, daemon, max_batch=500, mailer=lambda s, b: mails.append(s))
    top = master.join("/srv/data")
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set() and i < 20000:
            (top / f"w{i % 3000}").write_bytes(os.urandom(64))
            i += 1
            time.sleep(0.001)

    try:
        wait_idle(n)
        daemon.stop()
        gc.collect()
        rss0 = rss_kb()
        t = threading.Thread(target=writer)
        t.start()
        peak_dirty = 0
        t_end = time.monotonic() + 6
        while time.monotonic() < t_end:
            peak_dirty = max(peak_dirty, len(n.trigger.dirty))
            time.sleep(0.01)
        rss1 = rss_kb()
        failures = n.status()["failures"]
        assert failures >= 2                      # it kept trying, with backoff (cap 1 s here)
        assert failures <= 25                     # but not in a tight loop (that would be hundreds)
        assert peak_dirty <= 500                  # the dirty set collapsed instead of growing
        assert rss1 - rss0 < 50_000               # KiB: no queue growing with the writes
        daemon.start()
        time.sleep(1.5)
        stop.set()
        t.join()
        ok, _ = wait_equal(top, slave / "srv" / "data", timeout=20)
        assert ok
        wait_idle(n)
        assert n.status()["failing_for"] is None
        assert mails.count("hotsync: the real-time push to the slave is failing") == 1
        assert mails.count("hotsync: the real-time push to the slave works again") == 1
    finally:
        stop.set()
        n.stop()
