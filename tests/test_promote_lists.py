"""The include/exclude lists travel beside the config database and are installed at promote
(hotsync_events.sync.peerlists); the end-to-end proof is tests/test_promote.py's first test."""
from __future__ import annotations

from hotsync_events.paths import Root
from hotsync_events.sync.lists import PEER_DIR, build_lists
from hotsync_events.sync.peerlists import export_lists, install_lists


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_export_mirrors_the_lists_and_drops_stale_ones(tmp_path):
    root = Root(tmp_path / "m")
    peer = tmp_path / "export/peer"
    _write(root.etc_dir / "include.d/a.include", "/srv/a\n")
    _write(root.etc_dir / "include.d/notes.txt", "not a list\n")
    _write(root.etc_dir / "exclude.d/b.exclude", "*.tmp\n")
    assert export_lists(root, peer) == ["include.d/a.include", "exclude.d/b.exclude"]
    assert (peer / "lists/include.d/a.include").read_text() == "/srv/a\n"
    assert not (peer / "lists/include.d/notes.txt").exists()
    (root.etc_dir / "include.d/a.include").unlink()
    assert export_lists(root, peer) == ["exclude.d/b.exclude"]
    assert not (peer / "lists/include.d/a.include").exists()
    assert (peer / "lists/include.d").is_dir()        # empty: "the master has no include list"


def test_install_gives_the_new_master_the_old_masters_lists_and_loses_nothing(tmp_path):
    master, slave = Root(tmp_path / "m"), Root(tmp_path / "s")
    _write(master.etc_dir / "include.d/data.include", "/srv/data\n/srv/more\n")
    _write(master.etc_dir / "exclude.d/cache.exclude", "/srv/data/cache/\n")
    _write(master.etc_dir / "include.d/same.include", "/srv/same\n")
    # the slave's own settings: one differing file of the same name, one of its own, one identical
    _write(slave.etc_dir / "include.d/data.include", "/srv/old\n")
    _write(slave.etc_dir / "include.d/own.include", "/srv/own\n")
    _write(slave.etc_dir / "include.d/same.include", "/srv/same\n")
    export_lists(master, slave.join(PEER_DIR))
    logged = []
    out = install_lists(slave, slave.join(PEER_DIR), log=logged.append)
    assert out["installed"] == ["include.d/data.include", "exclude.d/cache.exclude"]
    assert out["unchanged"] == ["include.d/same.include"]
    assert out["kept_aside"] == ["include.d/data.include.pre-promote"]
    assert out["kept_own"] == ["include.d/own.include"]
    assert (slave.etc_dir / "include.d/data.include.pre-promote").read_text() == "/srv/old\n"
    assert "kept as include.d/data.include.pre-promote" in logged[0]
    old, new = build_lists(master, None), build_lists(slave, None)
    assert set(old.includes) <= set(new.includes) and set(new.includes) - set(old.includes) == {"/srv/own"}
    assert new.excludes == old.excludes
    # again (a promote resumed after a kill): nothing more changes
    before = sorted(p.name for p in (slave.etc_dir / "include.d").iterdir())
    again = install_lists(slave, slave.join(PEER_DIR), log=logged.append)
    assert again["installed"] == [] and again["kept_aside"] == []
    assert sorted(p.name for p in (slave.etc_dir / "include.d").iterdir()) == before


def test_nothing_shipped_keeps_this_hosts_lists(tmp_path):
    slave = Root(tmp_path / "s")
    _write(slave.etc_dir / "include.d/own.include", "/srv/own\n")
    logged = []
    assert install_lists(slave, slave.join(PEER_DIR), log=logged.append) == {"shipped": False}
    assert (slave.etc_dir / "include.d/own.include").read_text() == "/srv/own\n"
    assert "kept" in logged[0]
