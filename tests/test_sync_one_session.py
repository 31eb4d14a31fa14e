"""A sync run that deletes nothing is one session; the guard still sees every deletion before it happens.

The master records the names it shipped at each success (:mod:`hotsync_events.sync.inventory`). When none of
them has gone, ``hotsync sync`` pushes in one session with ``--max-delete=0`` instead of a dry run and a push;
rsync then deletes nothing, whatever the record says, and exits 25 when the slave holds a file the master
does not, which sends the run through the dry run and the deletion guard at once. End to end on a real pair
(rsync daemon behind stunnel), plus the record's own rules.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from hotsync_events.paths import Root
from hotsync_events.sync import inventory
from sync_pair import Pair, tree

needs_tools = pytest.mark.skipif(not (shutil.which("rsync") and (shutil.which("stunnel4") or shutil.which("stunnel"))
                                      and shutil.which("openssl")), reason="needs rsync, stunnel4 and openssl")


def sessions(pair: Pair) -> list[str]:
    """The data sessions of the master's last run (the peer copy left out)."""
    return [k for k in pair.status(pair.master)["last_run"]["sessions"] if k != "peer"]


def seed(pair: Pair, n: int = 30) -> Path:
    data = pair.master / "srv/data"
    (data / "sub").mkdir(parents=True)
    for i in range(n):
        (data / ("sub" if i % 2 else "") / f"f{i:03d}").write_text(f"{i}\n")
    pair.include("/srv/data")
    cp = pair.sync()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return data


@pytest.mark.slow
@needs_tools
def test_a_run_that_deletes_nothing_is_one_session_a_deletion_goes_through_the_guard(pair):
    data = seed(pair)
    assert "dry" in sessions(pair)               # no record yet: the guarded path
    (data / "f000").write_text("changed\n")
    (data / "sub/new").write_text("new\n")
    cp = pair.sync()
    assert cp.returncode == 0 and "changes and 0 deletions" in cp.stdout, cp.stdout
    assert sessions(pair) == ["sync"]
    assert tree(data) == tree(pair.slave / "srv/data")
    cp = pair.sync()                            # a no-op: one session, which says so
    assert cp.returncode == 0 and "up to date" in cp.stdout and sessions(pair) == ["sync"], cp.stdout
    (data / "f002").unlink()                    # a deletion made here: the record knows it, the dry run counts it
    (data / "f004").write_text("changed\n")
    cp = pair.sync()
    assert cp.returncode == 0 and "1 deletions" in cp.stdout, cp.stdout
    assert sessions(pair) == ["dry", "sync"]
    assert tree(data) == tree(pair.slave / "srv/data")
    # a mass deletion is held as before, and nothing of it reaches the slave
    for p in sorted(data.glob("f0*"))[:10]:
        p.unlink()
    cp = pair.sync()
    assert cp.returncode == 3 and "The slave was not touched" in cp.stdout, cp.stdout
    assert sessions(pair) == ["dry"] and (pair.slave / "srv/data/f006").exists()


@pytest.mark.slow
@needs_tools
def test_files_only_the_slave_holds_are_counted_by_the_guard_before_any_is_deleted(pair):
    """The record says nothing went, yet the slave holds files the master never had (written there, left by
    an interrupted push): the one session deletes none of them and the dry run's guard decides."""
    data = seed(pair)
    sdata = pair.slave / "srv/data"
    (sdata / "planted-1").write_text("only on the slave\n")
    (sdata / "sub/planted-2").write_text("only on the slave\n")
    (data / "f001").write_text("changed\n")
    cp = pair.sync()
    assert cp.returncode == 0 and "the slave holds files this host does not have" in cp.stdout, cp.stdout
    assert sessions(pair) == ["sync", "dry", "sync"]
    assert tree(data) == tree(sdata)            # two of 32 (under MaxDeletePercent): deleted after the count
    pair.settled()
    # too many of them: held; the master's changes went through, nothing was deleted, the message says so
    for i in range(20):
        (sdata / f"planted-{i:02d}").write_text("only on the slave\n")
    (data / "f003").write_text("changed again\n")
    cp = pair.sync()
    assert cp.returncode == 3 and "Nothing was deleted on the slave" in cp.stdout, cp.stdout
    assert "MaxDeletePercent" in cp.stdout
    assert (sdata / "f003").read_text() == "changed again\n"
    assert len(list(sdata.glob("planted-*"))) == 20
    pair.settled()
    got = pair.status(pair.slave)      # every file arrived; the slave's own files wait for the guard: not torn
    assert got["last_run"]["result"] == "deletions held" and got["last_run"]["exit_status"] == 25, got
    assert not got.get("unclean") and "exit status 25" not in (got.get("last_error") or {}).get("message", "")
    # a person lets them go; the next run is one session again
    assert pair.sync("--allow-deletions").returncode == 0
    assert tree(data) == tree(sdata)
    (data / "f005").write_text("changed\n")
    assert pair.sync().returncode == 0 and sessions(pair) == ["sync"]


def test_the_record_walks_without_following_links_and_reads_back(tmp_path):
    root = Root(tmp_path)
    top = tmp_path / "srv/data"
    (top / "a/b").mkdir(parents=True)
    (top / "a/b/f").write_text("x")
    (top / "name with\nnewline").write_text("x")
    (top / "bad-\udcff".encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")).write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("x")
    os.symlink(outside, top / "link")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/one.conf").write_text("x")
    listing = inventory.walk(root, ["/srv/data", "/etc/one.conf", "/not/there"])
    assert listing is not None and listing.gone is None
    names = listing.names()
    assert b"/srv/data/a/b/f" in names and b"/srv/data/link" in names and b"/etc/one.conf" in names
    assert b"/srv/data/name with\nnewline" in names and b"/srv/data/bad-\xff" in names
    assert not any(n.startswith(b"/srv/data/link/") for n in names) and b"/not/there" not in names
    key = inventory.slave_key("10.0.0.2:273", "SHA256:ab", 3)
    assert inventory.load(root, key) is None and inventory.gone(None, listing) is None
    inventory.save(root, listing, key)
    assert inventory.load(root, key).names() == names
    assert oct(os.stat(root.join(inventory.INVENTORY_FILE)).st_mode & 0o777) == "0o600"
    # a record made for another slave, another pinned certificate or another epoch is no record
    for other in (("10.0.0.3:273", "SHA256:ab", 3), ("10.0.0.2:273", "SHA256:cd", 3), ("10.0.0.2:273", "SHA256:ab", 4)):
        assert inventory.load(root, inventory.slave_key(*other)) is None
    (top / "a/b/f").unlink()
    now = inventory.walk(root, ["/srv/data", "/etc/one.conf"], previous=inventory.load(root, key))
    assert now.gone == 1 and inventory.gone(inventory.load(root, key), now) == 1
    # excluded directories are not on the slave: their churn says nothing about deletions
    (top / "cache/x").mkdir(parents=True)
    (top / "cache/x/y").write_text("x")
    kept = inventory.walk(root, ["/srv/data"], ["cache/"])
    assert kept is not None and not any(b"/cache" in n for n in kept.names()) and b"/srv/data/a" in kept.names()
    assert inventory.walk(root, ["/srv/data"], limit=3) is None      # past the limit: no record
    root.join(inventory.INVENTORY_FILE).write_bytes(b"hotsync-inventory 4 " + key.encode() + b"\nnot zlib")
    assert inventory.load(root, key) is None          # unreadable: the guarded path, nothing else
    import marshal
    import zlib
    good = (1, 2, 3, (b"f",), (b"sub",))
    for body in (marshal.dumps([1, 2]), marshal.dumps(((), (), {b"/x": (1, 2, 3, "f", ())}, 1.0)), b"\xff\x00",
                 marshal.dumps(((), (), {b"/x": good}, 1))):
        root.join(inventory.INVENTORY_FILE).write_bytes(b"hotsync-inventory 4 " + key.encode() + b"\n"
                                                       + zlib.compress(body))
        assert inventory.load(root, key) is None      # not a record this version wrote: none
    # a subdirectory name the walk would open must be one plain component: a damaged record is no record
    for bad in (b"..", b".", b"", b"a/b", b"a\0b"):
        body = marshal.dumps(((), (), {b"/x": (1, 2, 3, (), (bad,))}, 1.0))
        root.join(inventory.INVENTORY_FILE).write_bytes(b"hotsync-inventory 4 " + key.encode() + b"\n"
                                                       + zlib.compress(body))
        assert inventory.load(root, key) is None, bad
    root.join(inventory.INVENTORY_FILE).write_bytes(b"something else")
    assert inventory.load(root, key) is None
    inventory.save(root, None)
    assert inventory.load(root, key) is None


class _Clock:
    """A stand-in for the inventory module's ``time``: the walk's clock, moved by the test."""

    def __init__(self) -> None:
        self.ns = time.time_ns()

    def time_ns(self) -> int:
        return self.ns


def test_the_record_lists_again_only_the_directories_whose_change_time_moved(tmp_path, monkeypatch):
    root = Root(tmp_path)
    top = tmp_path / "srv/data"
    for d in ("a", "b", "b/c"):
        (top / d).mkdir(parents=True)
        for i in range(3):
            (top / d / f"f{i}").write_text("x")
    inc = ["/srv/data", "/etc/gone.conf"]
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/gone.conf").write_text("x")
    clock = _Clock()
    monkeypatch.setattr(inventory, "time", clock)
    clock.ns = time.time_ns()              # the files were made just now
    first = inventory.walk(root, inc)
    # just listed: every change time is too fresh to trust, so the next walk lists every directory again
    assert all(d[2] == 0 for d in first.dirs.values())
    listed = []
    real_scandir = os.scandir

    def counting(path):
        listed.append(os.fsdecode(path)[len(str(tmp_path)):])
        return real_scandir(path)

    monkeypatch.setattr(inventory.os, "scandir", counting)
    clock.ns += 10_000_000_000             # ten seconds on: the change times are settled
    second = inventory.walk(root, inc, previous=first)
    assert second.gone == 0 and second.changed          # the same names, now with trusted change times
    assert sorted(listed) == ["/srv/data", "/srv/data/a", "/srv/data/b", "/srv/data/b/c"]
    listed.clear()
    third = inventory.walk(root, inc, previous=second)
    assert third.gone == 0 and not third.changed and listed == []     # nothing moved: nothing listed
    # a file removed deep down: only its directory is listed again, and the walk counts it gone
    (top / "b/c/f1").unlink()
    (top / "a/new").write_text("x")                      # a new name is not a deletion
    clock.ns = time.time_ns() + 10_000_000_000
    fourth = inventory.walk(root, inc, previous=third)
    assert sorted(listed) == ["/srv/data/a", "/srv/data/b/c"] and fourth.gone == 1 and fourth.changed
    assert fourth.gone == inventory.gone(third, fourth)
    # a directory moved away: all its names are gone; an include path gone: it is counted too
    listed.clear()
    os.rename(top / "b", tmp_path / "b-away")
    (tmp_path / "etc/gone.conf").unlink()
    clock.ns = time.time_ns() + 10_000_000_000
    fifth = inventory.walk(root, inc, previous=fourth)
    assert fifth.gone == inventory.gone(fourth, fifth) == 1 + 3 + 1 + 2 + 1 and listed == ["/srv/data"]
    os.rename(tmp_path / "b-away", top / "b")
    clock.ns = time.time_ns() + 10_000_000_000
    sixth = inventory.walk(root, inc, previous=fifth)
    assert sixth.gone == 0
    seventh = inventory.walk(root, inc, previous=sixth)
    # a directory with the recorded change time but another inode, or another device (something mounted
    # on it), is listed again: a change time alone does not say it is the same directory
    real_lstat = os.lstat
    for field in ("st_ino", "st_dev"):
        def other(path, field=field):
            st = real_lstat(path)
            if os.fsdecode(path).endswith("/srv/data/a"):
                values = {f: getattr(st, f) for f in ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid",
                                                      "st_size", "st_atime", "st_mtime", "st_ctime")}
                values[field] += 1000
                return _Stat(values, st.st_ctime_ns)
            return st
        monkeypatch.setattr(inventory.os, "lstat", other)
        listed.clear()
        assert inventory.walk(root, inc, previous=seventh).gone == 0 and listed == ["/srv/data/a"], field
    monkeypatch.setattr(inventory.os, "lstat", real_lstat)
    # the record ages: once its last full listing is a day old, and on --full, every directory is listed
    listed.clear()
    assert inventory.walk(root, inc, previous=seventh, relist=True).gone == 0 and len(listed) == 4
    listed.clear()
    clock.ns += inventory.RELIST_AFTER * 1_000_000_000
    aged = inventory.walk(root, inc, previous=seventh)
    assert aged.gone == 0 and len(listed) == 4 and aged.changed and aged.listed_at > seventh.listed_at
    # a directory replaced by another of the same name: listed again, its lost names counted
    listed.clear()
    (top / "a").rename(tmp_path / "a-old")
    (top / "a").mkdir()
    (top / "a/f0").write_text("x")
    clock.ns = time.time_ns() + 10_000_000_000
    eighth = inventory.walk(root, inc, previous=aged)
    assert "/srv/data/a" in listed and eighth.gone == inventory.gone(aged, eighth) == 3
    # another exclude list: the names are compared, not the directories
    ninth = inventory.walk(root, inc, ["c/"], previous=eighth)
    assert ninth.gone == inventory.gone(eighth, ninth) == 1 + 2


class _Stat:
    """An ``os.stat_result`` with some fields changed (``st_ctime_ns`` kept)."""

    def __init__(self, values: dict, ctime_ns: int) -> None:
        self.__dict__.update(values)
        self.st_ctime_ns = ctime_ns


@pytest.mark.slow
@needs_tools
def test_a_directory_on_the_slave_where_the_master_has_a_file_goes_through_the_guard(pair):
    """The one session cannot put the file in place (that needs a deletion: rsync fails the file, 23, and says
    deletions stopped): the run goes on through the dry run and the guard, and the file lands."""
    data = seed(pair)
    (pair.slave / "srv/data/newfile/inner").mkdir(parents=True)
    (pair.slave / "srv/data/newfile/inner/old").write_text("only on the slave\n")
    (data / "newfile").write_text("the master's file\n")
    cp = pair.sync()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert sessions(pair) == ["sync", "dry", "sync"]
    assert (pair.slave / "srv/data/newfile").read_text() == "the master's file\n"
    assert tree(data) == tree(pair.slave / "srv/data")
