"""The example plugin, tested with the fixtures hotsync-events ships (pytest11 entry point ``hotsync``)."""
import shutil
from importlib.metadata import entry_points

import pytest

from hotsync_events.testing import paths_report, write_tree

TREE = {"/etc/acme-notes.conf": "port = 8080\n", "/var/lib/acme-notes/n1.txt": "hello",
        "/var/lib/acme-notes/index/segment": "stale"}


def test_registered_in_the_hotsync_entry_point_group():
    assert any(ep.name == "example" and ep.value == "hotsync_example" for ep in entry_points(group="hotsync"))


def test_inactive_without_acme_notes(hotsync_root, hotsync_pm):
    assert hotsync_pm.detect(hotsync_root) == {"example": False}
    assert paths_report(hotsync_root, hotsync_pm)["include"] == []


def test_paths_and_who_asked(hotsync_root, hotsync_pm):
    write_tree(hotsync_root, TREE)
    report = paths_report(hotsync_root, hotsync_pm)
    assert {i["path"]: i["from"] for i in report["include"]} == {
        "/etc/acme-notes.conf": ["plugin example"], "/var/lib/acme-notes": ["plugin example"]}
    assert {"pattern": "/var/lib/acme-notes/index/", "from": ["plugin example"]} in report["exclude"]


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
def test_two_roots_sync_then_promote(hotsync_two_roots):
    write_tree(hotsync_two_roots.master, TREE)
    hotsync_two_roots.sync()
    slave = hotsync_two_roots.slave
    assert slave.join("/var/lib/acme-notes/n1.txt").read_text() == "hello"
    assert not slave.join("/var/lib/acme-notes/index/segment").exists()
    write_tree(slave, {"/var/lib/acme-notes/index/segment": "the slave's own stale index"})
    outcomes = hotsync_two_roots.promote()
    assert [(o.name, o.status) for o in outcomes] == [("acme-notes-drop-index", "success")]
    assert not slave.join("/var/lib/acme-notes/index").exists()


def test_post_restore_data_requests_a_reindex(hotsync_root, hotsync_event):
    write_tree(hotsync_root, TREE)
    result = hotsync_event("post-restore-data")
    assert result.ok, [(r.step.name, r.reason, r.output) for r in result.failed]
    assert "acme-notes-reindex" in [r.step.name for r in result.results]
    assert hotsync_root.join("/var/lib/acme-notes/reindex-requested").read_text() == "requested by post-restore-data\n"
