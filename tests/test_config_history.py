"""`config history`: golden output, filters, --since forms, rotation by size, 8 concurrent writers, and a
writer killed with SIGKILL in a loop (the db always parses; every change that landed has its entry)."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from hotsync_events.configdb import history
from hotsync_events.configdb import open_db
from hotsync_events.configdb.format import parse_text
from hotsync_events.configdb.history import history_path
from hotsync_events.configdb.historyview import WhenError, entries, parse_when

from golden import check_golden

T0 = 1795000000.0  # 2026-11-18 11:06:40 UTC


def _entry(t, key, prop, old, new, *, db="configuration", user="alice", uid=1000, command=None):
    command = command or f"config setprop {key} {prop} {new}"
    return {"command": command, "db": db, "key": key, "prop": prop, "old": old, "new": new, "pid": 4242,
            "time": t, "uid": uid, "user": user}


@pytest.fixture
def crafted(root):
    """A history with fixed times, two databases, a type change, a secret and a torn last line."""
    lines = [
        _entry(T0, "hotsync", None, None, "configuration", command="config setprop hotsync role master"),
        _entry(T0, "hotsync", "role", None, "master", command="config setprop hotsync role master"),
        _entry(T0 + 60, "rsyncd", "password", "", "********", command="config setprop rsyncd password ********"),
        _entry(T0 + 3600, "alice", "Uid", None, "1000", db="accounts", command="db accounts set alice user Uid 1000"),
        _entry(T0 + 7200, "hotsync", "role", "master", "slave", user="root", uid=0),
        _entry(T0 + 7260, "hotsync", "SlaveHost", "", "10.0.0.2 x", user="root", uid=0),
    ]
    path = history_path(root)
    path.parent.mkdir(parents=True)
    text = "".join(json.dumps(e, sort_keys=True) + "\n" for e in lines) + '{"command": "config setprop hots'
    path.write_text(text)
    return root


def utc_env():
    return {"TZ": "UTC"}


def test_history_text_golden(crafted, run):
    cp = run("config", "history", env=utc_env(), check=True)
    check_golden("config_ux/history.txt", cp.stdout)


def test_history_key_since_golden(crafted, run):
    cp = run("config", "history", "hotsync", "--since", "2026-11-18T12:30:00Z", env=utc_env(), check=True)
    check_golden("config_ux/history-hotsync-since.txt", cp.stdout)


def test_history_json_golden(crafted, run):
    cp = run("config", "history", "hotsync", "--json", env=utc_env(), check=True)
    doc = json.loads(cp.stdout)
    assert [e["new"] for e in doc] == ["configuration", "master", "slave", "10.0.0.2 x"]
    check_golden("config_ux/history-hotsync.json", cp.stdout)


def test_history_db_and_last(crafted, run):
    cp = run("db", "accounts", "history", env=utc_env(), check=True)
    assert cp.stdout == ("2026-11-18 12:06:40  alice(1000)  db accounts set alice user Uid 1000  "
                         "alice Uid: (none) -> 1000\n")
    cp = run("config", "history", "--last", "2", env=utc_env(), check=True)
    assert [line.rsplit(": ", 1)[0].split("  ")[-1] for line in cp.stdout.splitlines()] == [
        "hotsync role", "hotsync SlaveHost"]
    assert run("config", "history", "--last", "0").returncode == 2
    assert run("config", "history", "a", "b").returncode == 2


def test_history_bad_since(crafted, run):
    cp = run("config", "history", "--since", "last tuesday")
    assert cp.returncode == 2 and "invalid time 'last tuesday'" in cp.stderr and "30m" in cp.stderr


def test_history_remasks_props_that_became_secret(root, run):
    """An entry written before a prop was declared secret is masked when shown."""
    path = history_path(root)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_entry(T0, "rsyncd", "password", "", "Old-Clear-1")) + "\n")
    run("config", "keys")
    assert "Old-Clear-1" not in run("config", "history", check=True).stdout
    assert "Old-Clear-1" in run("config", "history", "--show-secrets", check=True).stdout


@pytest.mark.parametrize("text,expected", [
    ("30m", T0 - 1800), ("1h", T0 - 3600), ("2d", T0 - 2 * 86400), ("1w", T0 - 7 * 86400), ("90s", T0 - 90),
    ("2 hours ago", T0 - 7200), ("@1700000000", 1700000000.0), ("now", T0),
    ("2026-11-18T05:00:00Z", T0 - 22000), ("2026-11-18 12:06:40+01:00", T0), ("2026-11-18T11:06:41", None),
])
def test_parse_when(text, expected):
    if expected is None:  # a local time: compare with what the C library makes of it
        expected = time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    assert parse_when(text, now=T0) == pytest.approx(expected)


def test_parse_when_local_and_errors(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert parse_when("2026-11-18", now=T0) == pytest.approx(T0 - (11 * 3600 + 6 * 60 + 40))
        assert parse_when("today", now=T0) == pytest.approx(T0 - (11 * 3600 + 6 * 60 + 40))
        assert parse_when("yesterday", now=T0) == pytest.approx(T0 - (11 * 3600 + 6 * 60 + 40) - 86400)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    for bad in ("", "soon", "12x", "2026-13-01", "@x"):
        with pytest.raises(WhenError):
            parse_when(bad, now=T0)


def test_history_records_the_command_user_and_masks_secrets(root, run):
    run("config", "setprop", "rsyncd", "password", "Hist-Secret-9", check=True)
    run("config", "setprop", "hotsync", "role", "master", check=True)
    raw = history_path(root).read_text()
    assert "Hist-Secret-9" not in raw
    last = entries(root)[-1]
    assert last["command"] == "config setprop hotsync role master" and last["uid"] == os.getuid()
    pw = [e for e in entries(root) if e["prop"] == "password" and e["new"]]
    assert pw[-1]["new"] == "********" and pw[-1]["command"] == "config setprop rsyncd password ********"


def test_schema_defaults_are_marked_as_such(root, run):
    """The first command on a fresh root fills in the defaults: its history says so, apart from its own change."""
    run("config", "setprop", "rsyncd", "password", "Hist-Secret-9", check=True)
    by_source = {(e["key"], e["prop"]): e.get("source") for e in entries(root)}
    assert by_source[("hotsync", "MailTo")] == "schema defaults"
    pw = [e for e in entries(root) if e["prop"] == "password"]
    assert [e.get("source") for e in pw] == ["schema defaults", None]     # "" by default, then the command's
    text = run("config", "history", "hotsync", check=True).stdout
    assert "config setprop rsyncd password ******** (schema defaults)  hotsync MailTo: (none) -> root@localhost" in text


# ------------------------------------------------------------------------------------------- rotation
def test_rotation_by_size(root, monkeypatch):
    monkeypatch.setattr(history, "MAX_BYTES", 4000)
    monkeypatch.setattr(sys, "argv", ["config", "setprop"])  # entries' size must not depend on pytest's argv
    db = open_db("configuration", root)
    db.set("counter", "thing", {"n": "0"})
    for i in range(1, 121):
        db.setprop("counter", {"n": str(i)})
    path = history_path(root)
    sizes = [path.with_name(f"{path.name}.{i}").stat().st_size for i in (1, 2, 3)]
    assert all(s <= 4000 for s in sizes) and path.stat().st_size <= 4000
    assert not path.with_name(f"{path.name}.4").exists()
    kept = [int(e["new"]) for e in entries(root, key="counter") if e["prop"] == "n"]
    # the oldest entries were dropped with the oldest file; what is kept is contiguous and ends at 120
    assert kept == list(range(kept[0], 121)) and kept[0] > 1
    assert len(kept) >= 40


def test_torn_line_is_closed_before_the_next_entry(root):
    db = open_db("configuration", root)
    db.set("counter", "thing", {"n": "0"})
    with open(history_path(root), "a") as f:
        f.write('{"command": "torn by a kill')
    db.setprop("counter", {"n": "1"})
    assert [e["new"] for e in entries(root, key="counter") if e["prop"] == "n"] == ["0", "1"]


# ------------------------------------------------------------------------------------------- concurrency
WRITER = textwrap.dedent("""
    import sys
    from hotsync_events.configdb import open_db
    root, me, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    db = open_db("configuration", root)
    for i in range(n):
        with db.transaction() as txn:  # read-modify-write: the counter says in which order changes landed
            c = int(txn.getprop("counter", "n"))
            txn.setprop("counter", {"n": str(c + 1), "by": me})
        db.setprop("hotsync", {f"w{me}": str(i)})
""")


def test_eight_concurrent_writers(root, tmp_path):
    open_db("configuration", root).set("counter", "thing", {"n": "0"})
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    n = 15
    procs = [subprocess.Popen([sys.executable, str(script), str(root.path), str(w), str(n)]) for w in range(8)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    es = entries(root)
    counter = [e for e in es if e["key"] == "counter" and e["prop"] == "n"]
    # every increment has its entry, in the order the increments landed: 0->1, 1->2, ... 119->120
    assert [(e["old"], e["new"]) for e in counter] == [(None, "0")] + [(str(i), str(i + 1)) for i in range(8 * n)]
    assert open_db("configuration", root).getprop("counter", "n") == str(8 * n)
    for w in range(8):
        mine = [e["new"] for e in es if e["key"] == "hotsync" and e["prop"] == f"w{w}"]
        assert mine == [str(i) for i in range(n)]
    times = [e["time"] for e in es]
    assert times == sorted(times)


def test_writer_killed_in_a_loop(root, tmp_path):
    """SIGKILL at random moments: the db always parses, and every value the counter took has its entry."""
    db = open_db("configuration", root)
    db.set("counter", "thing", {"n": "0"})
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(12)
    deadline = time.monotonic() + 40
    kills = 0
    while kills < 25 and time.monotonic() < deadline:
        p = subprocess.Popen([sys.executable, str(script), str(root.path), "k", "1000"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.08, 0.4))
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        kills += 1
        raw, _legacy = parse_text((root.db_dir / "configuration").read_text())
        value = int(db.reload().getprop("counter", "n"))
        assert "counter" in raw and "hotsync" in raw
        logged = {int(e["new"]) for e in entries(root) if e["key"] == "counter" and e["prop"] == "n"}
        missing = set(range(value + 1)) - logged
        assert not missing, f"changes without their entry after {kills} kills: {sorted(missing)[:10]}"
    assert kills >= 10 and value > 0
    # a last clean write still works and is logged after whatever the kills left behind
    db.setprop("counter", {"n": str(value + 1)})
    assert entries(root)[-1]["new"] == str(value + 1)


def _plain_reading(root) -> list:
    """The oracle: every file read whole, oldest first, each line decoded (a torn line skipped)."""
    path = history_path(root)
    out = []
    for f in [path.with_name(f"{path.name}.{i}") for i in range(history.KEEP, 0, -1)] + [path]:
        if f.exists():
            for line in f.read_text().splitlines():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    return out


def test_filters_agree_with_a_plain_reading(root, monkeypatch):
    """entries() (mmap, needle search, binary search on time, reading backwards) == filtering a plain reading."""
    rng = random.Random(3)
    path = history_path(root)
    path.parent.mkdir(parents=True)
    monkeypatch.setattr(history, "MAX_BYTES", 3000)
    lines = []
    t = T0
    for i in range(400):
        t += rng.choice([0, 0, 0.5, 30])
        key = rng.choice(["hotsync", "rsyncd", "k1", "hot", 'we"ird'])
        lines.append(json.dumps(_entry(t, key, rng.choice(["a", "b", None]), str(i - 1), str(i),
                                       db=rng.choice(["configuration", "configuration", "accounts"])),
                                sort_keys=True) + "\n")
    # spread over rotated files as the journal would, with one torn line in the middle
    chunks = ["".join(lines[:130]), "".join(lines[130:260]) + '{"torn', "\n" + "".join(lines[260:])]
    for suffix, chunk in zip([".2", ".1", ""], chunks):
        path.with_name(path.name + suffix).write_text(chunk)
    everything = _plain_reading(root)
    assert len(everything) == 400
    for db in (None, "configuration", "accounts"):
        for key in (None, "hotsync", "hot", 'we"ird', "absent"):
            for since in (None, T0, T0 + 2000, T0 + 10 ** 6):
                want = [e for e in everything if (db is None or e["db"] == db) and (key is None or e["key"] == key)
                        and (since is None or e["time"] >= since)]
                assert entries(root, db=db, key=key, since=since) == want, (db, key, since)
                for last in (1, 7, 1000):
                    assert entries(root, db=db, key=key, since=since, last=last) == want[-last:], (db, key, since)


def test_reading_while_a_writer_rotates(root, tmp_path):
    """A reader (no lock) racing a writer that rotates every few writes sees a gap-free, ordered window."""
    open_db("configuration", root).set("counter", "thing", {"n": "0"})
    script = tmp_path / "rotating_writer.py"
    script.write_text("from hotsync_events.configdb import history\nhistory.MAX_BYTES = 2500\n" + WRITER)
    p = subprocess.Popen([sys.executable, str(script), str(root.path), "r", "150"])
    try:
        reads = 0
        deadline = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < deadline:
            seen = [int(e["new"]) for e in entries(root, key="counter") if e["prop"] == "n"]
            if len(seen) > 1:
                assert seen == list(range(seen[0], seen[-1] + 1)), seen
                reads += 1
    finally:
        assert p.wait(timeout=120) == 0
    assert reads > 5


def test_reading_takes_no_lock(root, run):
    """With the database's lock and the log's lock both held, `config history` still answers at once."""
    import fcntl

    run("config", "setprop", "hotsync", "role", "master", check=True)
    held = []
    for lock in (root.db_dir / "configuration.lock", history_path(root).with_name("config-history.log.lock")):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.append(fd)
    try:
        cp = run("config", "history", "hotsync", "--last", "1", timeout=20, check=True)
        assert "hotsync role: \"\" -> master" in cp.stdout
        assert run("config", "search", "--value", "^master$", timeout=20, check=True).stdout == "hotsync role=master\n"
    finally:
        for fd in held:
            os.close(fd)
