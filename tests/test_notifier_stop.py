"""The last push at a clean stop of the notifier: what changed since the last push is pushed before it
ends (SIGTERM, ``systemctl stop``, a shutdown), bounded by a timeout, and recorded in the status."""
from __future__ import annotations

import json
import shutil
import sys
import threading
import time

import pytest

from hotsync_events.events.services import ProcessBackend
from hotsync_events.paths import Root
from hotsync_events.realtime.notifier import Notifier, PushResult
from hotsync_events.types import Service


class Recorder:
    """A pusher that records its calls; ``block`` makes incremental pushes hang until released."""

    def __init__(self, block: bool = False) -> None:
        self.calls: list = []
        self.block = block
        self.release = threading.Event()

    def __call__(self, paths):
        self.calls.append(paths)
        if paths is not None and self.block:
            self.release.wait(30)
        return PushResult(True)


def _started(root: Root, pusher, **kw) -> Notifier:
    (root.path / "srv/data").mkdir(parents=True, exist_ok=True)
    # a 30 s settle: a change waits, as one made just before a stop does
    return Notifier(root, ["/srv/data"], [], pusher, settle=30.0, retry_max=1.0, initial_full=False, **kw).start()


def test_a_clean_stop_pushes_what_is_pending_and_records_it(tmp_path):
    root = Root(tmp_path)
    pusher = Recorder()
    n = _started(root, pusher)
    (tmp_path / "srv/data/late").write_text("written just before the stop\n")
    time.sleep(0.1)
    assert pusher.calls == []           # a 30 s settle: nothing pushed yet
    n.stop()
    assert pusher.calls == [["/srv/data/late"]]
    rec = n.last_stop
    assert rec["ok"] and rec["paths"] == 1 and not rec["timed_out"]
    status = json.loads((tmp_path / "run/hotsync/realtime.json").read_text())
    assert status["last_stop"]["paths"] == 1 and status["running_now"] is False
    kept = json.loads((tmp_path / "var/lib/hotsync/sync/status.json").read_text())
    assert kept["notifier_last_stop"]["ok"] is True       # outlives /run (a shutdown)


def test_the_last_push_is_bounded_by_its_timeout(tmp_path):
    root = Root(tmp_path)
    pusher = Recorder(block=True)
    n = _started(root, pusher)
    (tmp_path / "srv/data/slow").write_text("x\n")
    time.sleep(0.1)
    t0 = time.monotonic()
    n.stop(last_push=0.5)
    took = time.monotonic() - t0
    pusher.release.set()
    assert took < 5, took
    assert n.last_stop["timed_out"] and not n.last_stop["ok"]
    assert "did not end within 0.5 s" in n.last_stop["error"]


class SlowWhole(Recorder):
    """A pusher that sends new directories whole; its first push takes most of the stop's time."""

    sends_whole_dirs = True

    def __call__(self, paths, *, recursive=False):
        self.calls.append((paths, recursive))
        if len(self.calls) == 1:
            time.sleep(0.95)
        return PushResult(True)


def test_no_push_is_started_when_the_last_push_has_no_time_left(tmp_path):
    """The first batch of the last push uses the stop's time; the directory kept apart for a plain batch is
    not pushed in what is left (the process would kill it mid-session): recorded as timed out."""
    root = Root(tmp_path)
    (tmp_path / "srv/data/old").mkdir(parents=True)
    pusher = SlowWhole()
    n = _started(root, pusher)
    (tmp_path / "srv/data/new").mkdir()
    (tmp_path / "srv/data/new/f").write_text("x\n")
    (tmp_path / "srv/data/old").chmod(0o700)            # a directory that existed: kept apart, never walked
    time.sleep(0.1)
    n.stop(last_push=1.0)
    assert pusher.calls == [(["/srv/data/new"], True)]
    assert n.last_stop["timed_out"] and not n.last_stop["ok"]
    assert "changes left for the next full sync" in n.last_stop["error"]


def test_nothing_pending_nothing_pushed(tmp_path):
    root = Root(tmp_path)
    pusher = Recorder()
    n = _started(root, pusher)
    n.stop()
    assert pusher.calls == [] and n.last_stop["paths"] == 0


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("rsync") and (shutil.which("stunnel4") or shutil.which("stunnel"))
                         and shutil.which("openssl")), reason="needs rsync, stunnel4 and openssl")
def test_sigterm_to_the_watch_service_pushes_the_last_change(tmp_path):
    """`hotsync watch` as a service of the process back-end, stopped with SIGTERM: the change it had not
    pushed yet (a 10 s settle) reaches the slave before it ends; `hotsync status` says so."""
    from sync_pair import Pair, cli

    p = Pair(tmp_path)
    try:
        pair = p.pair()
        pair.include("/srv/data")
        top = pair.master / "srv/data"
        top.mkdir(parents=True)
        (top / "seed").write_text("seed\n")
        assert pair.sync().returncode == 0
        pair.config(pair.master, "setprop", "hotsync", "RealtimeSettle", "10000")
        svc = Service("hotsync-watch-test", command=(sys.executable, "-m", "hotsync_events.cli.hotsync", "--root",
                                                      "{root}", "watch", "--force"))
        backend = ProcessBackend(Root(pair.master))
        backend.start(svc)
        status_file = pair.master / "run/hotsync/realtime.json"
        deadline = time.monotonic() + 30
        while True:                            # up once its start-up full sync is done
            try:
                st = json.loads(status_file.read_text())
                if st.get("full_syncs") and st.get("running") is None:
                    break
            except (OSError, ValueError):
                pass
            assert time.monotonic() < deadline, backend.logfile(svc).read_text()[-3000:]
            time.sleep(0.1)
        (top / "last").write_text("the last change\n")
        time.sleep(0.2)
        assert not (pair.slave / "srv/data/last").exists()      # still settling
        t0 = time.monotonic()
        assert backend.stop(svc).startswith("stopped")
        assert time.monotonic() - t0 < 25
        log = backend.logfile(svc).read_text()
        last = pair.slave / "srv/data/last"
        assert last.exists() and last.read_text() == "the last change\n", log[-3000:]
        assert "the last push succeeded" in log
        out = cli("hotsync", "status", root=pair.master).stdout
        assert "last stop push:" in out and "1 path(s), ok" in out, out
    finally:
        p.close()


def test_the_status_words_a_stop_that_pushed_nothing(tmp_path):
    from hotsync_events.sync.notifier_status import last_stop_text

    assert "nothing was pending" in last_stop_text({"at": 0, "paths": 0, "ok": True})
    assert "FAILED" in last_stop_text({"at": 0, "paths": None, "ok": False, "error": "x", "seconds": 1})
