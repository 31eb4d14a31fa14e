"""A directory made on the master goes to the slave whole (issue 20): the notifier lists it as one name and
the push copies it recursively, instead of listing every name made in it (rsync looks each listed name up
component by component, which made a burst of new files 1.5x slower than a walk of their directory). The
master's excludes hold inside it, and a deletion the walk would make is held by the same guard as a listed
one. A directory that existed (its attributes changed) is never walked: that batch stays a plain list.

Units on the trigger; a real pair (rsync, stunnel, the slave's daemon and hooks) for the rest."""
from __future__ import annotations

import json
import re
import shutil
import time

import pytest

from hotsync_events.realtime.debounce import Trigger
from notifier_helpers import stop_process, watch_process
from sync_pair import cli

NEED = pytest.mark.skipif(not (shutil.which("rsync") and (shutil.which("stunnel4") or shutil.which("stunnel"))),
                          reason="needs rsync and stunnel4")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _batch(trigger: Trigger, clock: Clock):
    clock.t += 10
    batch = trigger.take()
    assert batch is not None
    trigger.finish(True)
    return batch


def test_new_directories_go_whole_and_only_the_topmost():
    clock = Clock()
    t = Trigger(clock=clock, whole_dirs=True)
    t.change("/srv/d", directory="new")
    t.change("/srv/d", directory="old")      # its mode set right after mkdir: still new
    t.change("/srv/d/a", directory="new")
    for name in ("/srv/d/a/f1", "/srv/d/a/f2", "/srv/d/f3", "/srv/d2-not-under-d", "/srv/x/gone"):
        t.change(name)
    b = _batch(t, clock)
    assert b.recursive and b.paths == ("/srv/d", "/srv/d2-not-under-d", "/srv/x/gone")
    # the next batch: d is not new any more, a name made in it is listed
    t.change("/srv/d/later")
    b = _batch(t, clock)
    assert b.recursive and b.paths == ("/srv/d/later",)


def test_a_directory_that_existed_waits_for_a_plain_batch_of_its_own():
    """``tar x`` and ``cp -a`` set a directory's mode and times last: a directory that existed is never
    walked, it goes in a plain list right after the recursive batch; one in a new directory is walked."""
    clock = Clock()
    t = Trigger(clock=clock, whole_dirs=True)
    t.change("/srv/d", directory="new")
    t.change("/srv/d/sub", directory="old")  # its times set by tar: walked with /srv/d anyway
    t.change("/srv/d/f")
    t.change("/srv/old", directory="old")    # chmod of a directory that holds a whole tree
    t.change("/srv/file")
    b = _batch(t, clock)
    assert b.recursive and b.paths == ("/srv/d", "/srv/file")
    assert t.due_in() == 0                   # the directory kept apart is due at once
    b = t.take()
    assert b is not None and not b.recursive and b.paths == ("/srv/old",)
    t.finish(True)
    assert t.due_in() is None
    # a write during every push cannot put a directory kept apart off: the next batch is it, alone
    t.change("/srv/d2", directory="new")
    t.change("/srv/old2", directory="old")
    clock.t += 10
    b = t.take()
    assert b is not None and b.recursive and b.paths == ("/srv/d2",)
    t.change("/srv/log")                     # written while it runs
    t.finish(True)
    b = t.take()
    assert b is not None and not b.recursive and b.paths == ("/srv/old2",)
    t.change("/srv/log2")
    t.finish(True)
    b = t.take()
    assert b is not None and b.recursive and b.paths == ("/srv/log", "/srv/log2")
    t.finish(True)
    # a batch of old directories only is plain, and a pusher that recurses does not warm up for it
    t.change("/srv/old", directory="old")
    assert t.plain_next
    t.change("/srv/new", directory="new")
    assert not t.plain_next
    b = _batch(t, clock)
    assert b.recursive and b.paths == ("/srv/new",)


def test_names_in_a_new_directory_do_not_count_against_max_batch():
    """A ``cp -r`` of more names than ``RealtimeMaxBatch`` into a new directory stays one recursive push, not a
    full sync of every include; past the limit the names under it are not even kept."""
    clock = Clock()
    t = Trigger(clock=clock, whole_dirs=True, max_batch=10)
    t.change("/srv/d", directory="new")
    for i in range(50):
        t.change(f"/srv/d/f{i}")
    t.change("/srv/old", directory="old")
    assert t.full_reason is None and len(t.dirty) == 2
    assert not t.move("/srv/a", "/srv/b")     # renames would rewrite names no longer kept: a full sync
    for i in range(11):
        t.change(f"/srv/x{i}")                # names outside it still count
    assert t.full_reason == "more than 10 changed paths" and t.stats.collapses == 1
    t = Trigger(clock=clock, max_batch=10)     # no whole directories: the old limit
    t.change("/srv/d", directory="new")
    for i in range(11):
        t.change(f"/srv/d/f{i}")
    assert t.full_reason is not None


def test_renames_and_a_pusher_that_does_not_recurse_keep_plain_lists():
    clock = Clock()
    t = Trigger(clock=clock, whole_dirs=True)
    t.change("/srv/d", directory="new")
    t.change("/srv/d/f")
    assert t.move("/srv/p/a", "/srv/p/b")
    b = _batch(t, clock)
    assert not b.recursive and "/srv/d/f" in (b.paths or ())
    t = Trigger(clock=clock)                  # whole_dirs off (a pusher without sends_whole_dirs)
    t.change("/srv/d", directory="new")
    t.change("/srv/d/f")
    b = _batch(t, clock)
    assert not b.recursive and b.paths == ("/srv/d", "/srv/d/f")


def test_a_path_only_the_full_sync_pushes_is_neither_listed_nor_walked(tmp_path):
    """A plugin's ``realtime=False`` path inside a watched include: its events are dropped, and a new
    directory that holds it is not sent whole (the walk would push it in real time)."""
    from watchdog.events import DirCreatedEvent

    from hotsync_events import hookimpl
    from hotsync_events.configdb import open_db
    from hotsync_events.manager import get_plugin_manager
    from hotsync_events.paths import Root
    from hotsync_events.realtime.notifier import Notifier, PushResult
    from hotsync_events.realtime.wiring import watch_lists
    from hotsync_events.types import SyncPath

    class Plugin:
        @hookimpl
        def hotsync_sync_paths(self, db, root):
            return [SyncPath("/srv/app"), SyncPath("/srv/app/live/db", realtime=False)]

    root = Root(tmp_path)
    pm = get_plugin_manager(entrypoints=False)
    pm.register(Plugin(), name="app")
    lists = watch_lists(root, open_db("configuration", root), pm)
    assert "/srv/app" in lists.includes and lists.unwalked == ["/srv/app/live/db"]
    assert "/srv/app/live/db" in lists.excludes

    def pusher(paths, **kw):
        return PushResult(True)
    pusher.sends_whole_dirs = True         # type: ignore[attr-defined]
    n = Notifier(root, lists.includes, lists.excludes, pusher, unwalked=lists.unwalked)
    assert n._wanted(str(root.join("/srv/app/live/db/ibdata1")), False) is None
    assert n._kind(DirCreatedEvent(str(root.join("/srv/app/live"))), "/srv/app/live") == "old"
    assert n._kind(DirCreatedEvent(str(root.join("/srv/app/other"))), "/srv/app/other") == "new"


def test_the_last_push_at_a_stop_takes_the_directories_kept_apart_too(tmp_path):
    """A chmod of a directory just before a shutdown reaches the slave: the last push runs the recursive batch
    and then the plain batch it kept apart."""
    from hotsync_events.paths import Root
    from hotsync_events.realtime.notifier import Notifier, PushResult

    calls: list[tuple] = []

    def pusher(paths, **kw):
        calls.append((tuple(paths or ()), kw.get("recursive", False)))
        return PushResult(True)
    pusher.sends_whole_dirs = True         # type: ignore[attr-defined]
    n = Notifier(Root(tmp_path), ["/srv"], [], pusher)
    n.trigger.change("/srv/new", directory="new")
    n.trigger.change("/srv/old", directory="old")
    n._last_push(10.0)
    assert calls == [(("/srv/new",), True), (("/srv/old",), False)]
    assert n.last_stop is not None and n.last_stop["ok"] and n.last_stop["paths"] == 2


def _largest_push(log: str) -> int:
    return max((int(n) for n in re.findall(r"pushing (\d+) path\(s\)", log)), default=0)


@pytest.mark.slow
@NEED
def test_a_new_tree_goes_whole_and_the_excludes_hold_inside_it(pair):
    pair.include("/srv/data")
    d = pair.master / "etc/hotsync/exclude.d"
    d.mkdir(parents=True)
    (d / "test.exclude").write_text("*.tmp\n/srv/data/new/cache/\n")
    top = pair.master / "srv/data"
    top.mkdir(parents=True)
    (top / "seed").write_text("seed\n")
    # one batch for the whole tree: the settle window outlasts the writing
    assert cli("config", "setprop", "hotsync", "RealtimeSettle", "2000", root=pair.master).returncode == 0
    assert pair.sync().returncode == 0
    proc = watch_process(pair.master)
    log = ""
    try:
        new = top / "new"
        for sub in ("a", "b", "c/deeper"):
            (new / sub).mkdir(parents=True)
            for i in range(100):
                (new / sub / f"f{i:03}").write_text(f"{sub} {i}\n")
        (new / "cache").mkdir()
        (new / "cache/big").write_text("a cache\n")
        (new / "x.tmp").write_text("scratch\n")
        want = [p.relative_to(pair.master) for p in new.rglob("f*")]
        deadline = time.monotonic() + 30
        while not all((pair.slave / p).exists() for p in want):
            assert time.monotonic() < deadline, "the new tree did not reach the slave"
            time.sleep(0.1)
    finally:
        log = stop_process(proc)
    S = pair.slave / "srv/data/new"
    assert (S / "c/deeper/f099").read_text() == "c/deeper 99\n"
    assert not (S / "cache").exists() and not (S / "x.tmp").exists()
    assert 1 <= _largest_push(log) < 10, log[-3000:]     # one name (and the seed's directory), not 300


@pytest.mark.slow
@NEED
def test_a_directory_made_anew_over_an_old_one_is_held_by_the_guard(pair):
    """rm -r of a synced directory and a new one of the same name: the push of the new one whole would delete
    the old one's files on the slave; the push deletes nothing first, the dry run counts them, and past
    MaxDeletePercent the guard holds them, as it holds a listed deletion."""
    pair.include("/srv/data")
    old = pair.master / "srv/data/old"
    old.mkdir(parents=True)
    for i in range(50):
        (old / f"f{i:03}").write_text(f"{i}\n")
    assert cli("config", "setprop", "hotsync", "MaxDeletePercent", "20", root=pair.master).returncode == 0
    assert cli("config", "setprop", "hotsync", "RealtimeSettle", "1000", root=pair.master).returncode == 0
    assert pair.sync().returncode == 0
    proc = watch_process(pair.master)
    log = ""
    try:
        shutil.rmtree(old)
        old.mkdir()
        (old / "only").write_text("the new one\n")
        deadline = time.monotonic() + 30
        status = pair.master / "var/lib/hotsync/sync/status.json"
        while json.loads(status.read_text()).get("last_run", {}).get("result") != "held":
            assert time.monotonic() < deadline, "the guard did not hold the deletion"
            time.sleep(0.1)
    finally:
        log = stop_process(proc)
    S = pair.slave / "srv/data/old"
    assert len(list(S.glob("f*"))) == 50, log[-3000:]        # not one deleted
    last = json.loads((pair.master / "var/lib/hotsync/sync/status.json").read_text())["last_run"]
    assert "--allow-deletions" in last["message"], last
    cp = pair.sync("--allow-deletions")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert sorted(p.name for p in S.iterdir()) == ["only"]
