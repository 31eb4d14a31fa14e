"""The commands the Cockpit page needs that a sysadmin can use too: ``hotsync log``, ``hotsync dumps``,
``hotsync cockpit install|status|uninstall`` (the page itself: tests/test_cockpit_page.py)."""
from __future__ import annotations

import json
import stat

from hotsync_events.sync.synclog import parse_log, read_log

LOG = """\
2026-11-23 18:00:00+0000 success (1.2s): pushed 3 changes and 0 deletions
2026-11-23 18:15:00+0000 success (1.6s, 22 files, 40960 bytes, 0 deleted): pushed 22 changes and 0 deletions
    cd+++++++++ srv/
    <f+++++++++ srv/a.txt
2026-11-23 18:30:00+0000 held (0.7s, 11 files, 0 bytes, 11 deleted): the push would delete 11 of the slave's 22 files
    srv/f1
    srv/f2
2026-11-23 18:45:00+0000 failed (30.0s, 0 files, 0 bytes, 0 deleted): rsync exit 30: timeout
a second line of that message
"""


def test_parse_log_reads_every_entry_old_and_new_format():
    entries = parse_log(LOG)
    assert [e["result"] for e in entries] == ["success", "success", "held", "failed"]
    old, new, held, failed = entries
    assert old["files"] is None and old["bytes"] is None and old["duration"] == 1.2      # before counts were logged
    assert (new["files"], new["bytes"], new["deleted"]) == (22, 40960, 0)
    assert new["details"] == ["cd+++++++++ srv/", "<f+++++++++ srv/a.txt"]
    assert held["details"] == ["srv/f1", "srv/f2"] and held["deleted"] == 11
    assert failed["message"] == "rsync exit 30: timeout\na second line of that message"
    assert new["start"] - old["start"] == 900
    assert parse_log("torn line of a rotated log\n" + LOG)[0]["time"] == "2026-11-23 18:00:00+0000"


def test_read_log_reads_the_rotated_part_first(root):
    log = root.join("/var/log/hotsync/sync.log")
    log.parent.mkdir(parents=True)
    first, rest = LOG.split("2026-11-23 18:30:00", 1)
    log.with_name("sync.log.1").write_text(first)
    log.write_text("2026-11-23 18:30:00" + rest)
    assert [e["result"] for e in read_log(root)] == ["success", "success", "held", "failed"]
    assert [e["result"] for e in read_log(root, last=2)] == ["held", "failed"]


def test_hotsync_log_filters_and_prints_json(root, run):
    log = root.join("/var/log/hotsync/sync.log")
    log.parent.mkdir(parents=True)
    log.write_text(LOG)
    cp = run("hotsync", "log", "--json", check=True)
    assert [e["result"] for e in json.loads(cp.stdout)] == ["success", "success", "held", "failed"]
    cp = run("hotsync", "log", "--json", "--result", "held", check=True)
    assert [e["details"] for e in json.loads(cp.stdout)] == [["srv/f1", "srv/f2"]]
    cp = run("hotsync", "log", "--json", "--grep", "A.TXT", check=True)
    assert [e["files"] for e in json.loads(cp.stdout)] == [22]
    cp = run("hotsync", "log", "--last", "1", check=True)
    assert cp.stdout.startswith("2026-11-23 18:45:00+0000 failed (30.0s, 0 files, 0 bytes, 0 deleted): rsync exit 30")
    assert run("hotsync", "log", "--last", "-1").returncode == 2
    assert "--result" in run("hotsync", "log", "--help").stdout


def test_hotsync_log_without_a_log(root, run):
    assert json.loads(run("hotsync", "log", "--json", check=True).stdout) == []
    assert run("hotsync", "log", check=True).stdout == ""
    assert not root.join("/var/log/hotsync").exists()           # a read-only command creates nothing


def test_a_push_logs_its_counts(root):
    """The master's log entry carries the counts the chart draws (push._append_log)."""
    from hotsync_events.sync.push import Outcome, _append_log

    _append_log(root, Outcome("success", "pushed 2 changes and 1 deletions", details=["x"], files=2, bytes=300,
                              deleted=1), 1000.0, 1001.5)
    (entry,) = read_log(root)
    assert (entry["result"], entry["duration"], entry["files"], entry["bytes"], entry["deleted"]) == \
        ("success", 1.5, 2, 300, 1)
    assert entry["details"] == ["x"]


def test_hotsync_dumps_lists_the_declared_dumps(root, run):
    run("config", "setprop", "hotsync", "role", "master", check=True)
    info = json.loads(run("hotsync", "dumps", "--json", check=True).stdout)
    assert info["enabled"] is True and info["error"] is None and isinstance(info["dumps"], list)
    run("config", "setprop", "hotsync", "databases", "disabled", check=True)
    assert "databases: disabled" in run("hotsync", "dumps", check=True).stdout
    assert json.loads(run("hotsync", "dumps", "--json", check=True).stdout)["enabled"] is False


def test_hotsync_dumps_gives_the_age_of_each_dump(root, pm):
    import time

    from hotsync_events.configdb import open_db
    from hotsync_events.sync.dumpinfo import dump_files
    from hotsync_events import hookimpl
    from hotsync_events.types import Dump

    class One:
        @hookimpl
        def hotsync_dumps(self, db):
            return [Dump(name="shop", path="/var/lib/hotsync/dumps/shop.sql", run=lambda ctx: None),
                    Dump(name="crm", path="/var/lib/hotsync/dumps/crm.sql", run=lambda ctx: None)]

    pm.register(One(), name="one")
    f = root.join("/var/lib/hotsync/dumps/shop.sql")
    f.parent.mkdir(parents=True)
    f.write_text("-- dump\n")
    import os

    os.utime(f, (time.time() - 120, time.time() - 120))
    db = open_db("configuration", root, validate=False, journal=False, create=False)
    info = dump_files(root, pm, db)
    by = {d["name"]: d for d in info["dumps"]}
    assert by["shop"]["exists"] and 119 < by["shop"]["age"] < 200 and by["shop"]["size"] == 8
    assert by["shop"]["plugin"] == "one"
    assert by["crm"] == {"name": "crm", "plugin": "one", "path": "/var/lib/hotsync/dumps/crm.sql", "exists": False,
                         "time": None, "age": None, "size": None}


def test_hotsync_cockpit_install_status_uninstall(root, run):
    from hotsync_events.cockpit.install import PACKAGE_FILES, source_dir

    target = root.join("/usr/share/cockpit/hotsync")
    cp = run("hotsync", "cockpit", "status")
    assert cp.returncode == 1 and "not installed" in cp.stdout
    cp = run("hotsync", "cockpit", "install", check=True)
    assert str(target) in cp.stdout
    assert sorted(p.name for p in target.iterdir()) == sorted(PACKAGE_FILES)
    for name in PACKAGE_FILES:
        assert (target / name).read_bytes() == (source_dir() / name).read_bytes()
        assert stat.S_IMODE((target / name).stat().st_mode) == 0o644
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["menu"]["index"]["label"] == "HotSync"
    assert json.loads(run("hotsync", "cockpit", "status", "--json", check=True).stdout) == \
        {"path": str(target), "installed": True, "current": True}
    (target / "hotsync.js").write_text("old\n")               # an older version's files: replaced whole
    (target / "stale.js").write_text("old\n")
    assert run("hotsync", "cockpit", "status").returncode == 1
    run("hotsync", "cockpit", "install", check=True)
    assert sorted(p.name for p in target.iterdir()) == sorted(PACKAGE_FILES)
    assert run("hotsync", "cockpit", "status").returncode == 0
    assert [p.name for p in target.parent.iterdir()] == ["hotsync"]     # no temp folder left beside it
    assert "removed" in run("hotsync", "cockpit", "uninstall", check=True).stdout
    assert not target.exists()
    assert run("hotsync", "cockpit").returncode == 2


def test_the_page_talks_only_through_the_commands():
    """No file is read or written behind the commands' back: the page's only way out is cockpit.spawn
    (no cockpit.file, no http, no dbus but Cockpit's own superuser state)."""
    from hotsync_events.cockpit.install import source_dir

    js = (source_dir() / "hotsync.js").read_text()
    for banned in ("cockpit.file", "cockpit.http", "fetch(", "XMLHttpRequest", "cockpit.dbus", "cockpit.script"):
        assert banned not in js, banned
    spawned = set()
    import re

    for m in re.finditer(r'(?:\brun|runStream)\(\[\s*"([^"]+)"|\bargv = \[\s*"([^"]+)"', js):
        spawned.add(m.group(1) or m.group(2))
    assert spawned == {"hotsync", "config", "signal-event", "hotsync-promote", "hostname"}, spawned
    assert js.count("cockpit.spawn(") == 2          # inside run() and runStream(), nowhere else
    html = (source_dir() / "index.html").read_text()
    assert "<script>" not in html and 'src="../base1/cockpit.js"' in html     # Cockpit's CSP: no inline script


def _master_with_a_failed_run(root, run):
    import time

    from hotsync_events.sync.status import update_status

    run("config", "setprop", "hotsync", "role", "master", "SlaveHost", "192.0.2.20", check=True)
    t = time.time()
    update_status(root, lambda d: d.update(
        last_success={"start": t - 70, "end": t - 60, "result": "success", "files": 3, "bytes": 10,
                      "message": "pushed", "sources": {"/srv/secret-name": 3}},
        last_run={"start": t - 10, "end": t - 5, "result": "failed", "files": 0, "bytes": 0,
                  "message": "rsync exit 23: /srv/secret-name/payroll.ods could not be read"},
        last_error={"time": t - 5, "message": "rsync exit 23", "details": ["/srv/secret-name/payroll.ods"]}))
    return t


def test_a_status_change_writes_the_public_part_without_messages_nor_paths(root, run):
    import os

    t = _master_with_a_failed_run(root, run)
    path = root.join("/var/lib/hotsync/status.public.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    text = path.read_text()
    assert "secret-name" not in text and "payroll" not in text and "rsync exit" not in text
    snap = json.loads(text)
    assert snap["role"] == "master" and snap["peer"].startswith("192.0.2.20")
    assert snap["last_run"] == {"start": t - 10, "end": t - 5, "result": "failed", "files": 0, "bytes": 0}
    assert snap["last_error"] == {"time": t - 5}
    from hotsync_events.sync.public import limited_info

    info = limited_info(root, now=t + 100)
    assert info["limited"] is True and 159 < info["copy_age"] < 161
    assert info["health"]["state"] == "warning"            # the last run failed; no message to show
    assert "the last run failed" in " ".join(info["health"]["reasons"])
    os.unlink(path)
    assert limited_info(root) is None


def test_hotsync_status_for_a_user_who_may_not_read_roots_state(root, run, monkeypatch, capsys):
    """Run as a user without root, collect() meets a PermissionError on the config database: the status is
    then the public part (the page's read-only view, a monitoring agent that is not root)."""
    import argparse

    from hotsync_events.cli import cmd_status
    from hotsync_events.sync import report

    _master_with_a_failed_run(root, run)

    def denied(_root):
        raise PermissionError(13, "Permission denied", str(root.join("/var/lib/hotsync/db/configuration")))

    monkeypatch.setattr(report, "collect", denied)
    args = argparse.Namespace(root=str(root), json=True, check=False, prometheus=False)
    assert cmd_status.run(args) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["limited"] is True and info["role"] == "master" and info["last_run"]["result"] == "failed"
    assert cmd_status.run(argparse.Namespace(root=str(root), json=False, check=True, prometheus=False)) == 1
    assert capsys.readouterr().out.startswith("HOTSYNC WARNING - master: ")
    assert cmd_status.run(argparse.Namespace(root=str(root), json=False, check=False, prometheus=False)) == 0
    assert "limited:           the public part only" in capsys.readouterr().out
    root.join("/var/lib/hotsync/status.public.json").unlink()
    assert cmd_status.run(args) == 4
    assert "no public status yet" in capsys.readouterr().err
