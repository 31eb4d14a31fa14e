"""What a failed push says when the slave's rsync daemon, reached through TLS, ended the session itself."""
from __future__ import annotations

from types import SimpleNamespace

from hotsync_events.paths import Root
from hotsync_events.sync.link import failure_outcome


def test_a_daemon_error_is_not_taken_for_a_refused_certificate(tmp_path):
    # seen on a booted slave whose /run/hotsync was gone after a reboot: rsync ran, its lock file could not open
    stderr = "@ERROR: failed to open lock file\nrsync error: error starting client-server protocol (code 5)\n"
    run = SimpleNamespace(returncode=5, stderr=stderr, stats={},
                          error_lines=lambda: [ln for ln in stderr.splitlines() if ln])
    cfg = SimpleNamespace(password="x", slave_host="192.0.2.2")
    out = failure_outcome(Root(tmp_path), cfg, run, "the push failed")
    assert "the slave's rsync daemon ended the session: failed to open lock file" in out.message, out.message
    assert "certificate" not in out.message
