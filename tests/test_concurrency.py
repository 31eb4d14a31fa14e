"""Writers in parallel lose no update; a writer killed at any moment leaves the old or the new database."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

from conftest import command

from hotsync_events.configdb import ConfigDB
from hotsync_events.fsutil import CRASH_ENV

WRITERS = 8


def _db(root):
    return ConfigDB(root.db_dir / "configuration")


def test_eight_concurrent_setprop_commands_lose_no_update(root, run):
    run("config", "set", "probe", "thing", check=True)
    per_writer = 8
    script = "; ".join(f'"$0" setprop probe "w$1_{i}" {i} || exit 1' for i in range(per_writer))
    procs = [subprocess.Popen(["sh", "-c", script, command("config"), str(w)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for w in range(WRITERS)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    props = _db(root).props("probe")
    assert props == {f"w{w}_{i}": str(i) for w in range(WRITERS) for i in range(per_writer)}


COUNTER = """
import sys
from hotsync_events.configdb import open_db
db = open_db("configuration", sys.argv[1])
for _ in range(int(sys.argv[2])):
    with db.transaction() as txn:   # read-modify-write under the lock
        txn.setprop("counter", {"n": str(int(txn.getprop("counter", "n")) + 1)})
"""


def test_read_modify_write_transactions_in_eight_processes(root, run):
    run("config", "set", "counter", "thing", "n", "0", check=True)
    n = 15
    procs = [subprocess.Popen([sys.executable, "-c", COUNTER, str(root.path), str(n)], stderr=subprocess.PIPE,
                              text=True) for _ in range(WRITERS)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert _db(root).getprop("counter", "n") == str(WRITERS * n)


def _fill(root, run, keys=3000):
    """A database big enough that a write takes a while (more moments to be killed in)."""
    run("config", "set", "state", "thing", "n", "0", "a", "0", "b", "0", check=True)
    db = _db(root)
    with db.transaction() as txn:
        for i in range(keys):
            txn.set(f"filler{i:05d}", "thing", {"v": f"value {i} " * 4})


def _check_state(root, allowed: set[int], keys: int = 3000) -> int:
    db = ConfigDB(root.db_dir / "configuration")
    rec = db.record("state")
    assert rec is not None, "the record is gone"
    n = int(rec.props["n"])
    assert rec.props == {"n": str(n), "a": str(n), "b": str(n)}, rec      # one write's state, whole
    assert n in allowed, (n, allowed)
    assert len(db.keys()) > keys
    return n


def test_writer_killed_at_any_moment_leaves_old_or_new(root, run):
    _fill(root, run)
    rng = random.Random(1234)
    cfg = command("config")
    # calibrate: kill around the end of a write's life, where it locks, writes the temp file and renames
    t = time.monotonic()
    run("config", "setprop", "filler00000", "v", "calibration", check=True)     # a real write
    life = time.monotonic() - t
    current, kills, completed, strays = 0, 0, 0, 0
    deadline = time.monotonic() + 40
    for attempt in range(1, 121):
        # enough kills, and some of them inside the write itself (a temp file left behind): the case proved
        if time.monotonic() > deadline or (kills >= 5 and strays >= 3 and attempt > 12):
            break
        new = current + 1
        # one writer in four dies inside the rename window for sure (temp file complete, not yet renamed);
        # the others are killed at a random moment around the end of their life
        env = {**os.environ, CRASH_ENV: "configuration"} if attempt % 4 == 0 else None
        p = subprocess.Popen([cfg, "setprop", "state", "n", str(new), "a", str(new), "b", str(new)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(rng.uniform(0.3 * life, 1.5 * life))
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.wait(timeout=30)
        if p.returncode == 0:
            completed += 1
        strays += any(".tmp-" in f.name for f in root.db_dir.iterdir())
        current = _check_state(root, {current, new})
    print(f"{kills} writers killed ({strays} in mid-write, leaving a temp file), {completed} completed")
    assert kills >= 5, f"{kills} writers killed, {completed} completed"
    assert strays >= 1, f"none of the {kills} kills landed inside a write: the rename window was never hit"
    # whatever the killed writers left behind breaks nothing: the next write and read work
    run("config", "setprop", "state", "n", "999", "a", "999", "b", "999", check=True, timeout=30)
    assert _check_state(root, {999}) == 999
    assert run("config", "getprop", "state", "n").stdout == "999\n"
    assert "state" in run("config", "keys").stdout.split()
    leftovers = [p.name for p in root.db_dir.iterdir() if ".tmp-" in p.name]
    assert leftovers == [], f"temp files of killed writers were not cleaned up: {leftovers}"


def test_reader_never_sees_a_partial_file(root, run):
    """Readers take no lock: while a writer rewrites a big file, every read is a whole file."""
    _fill(root, run, keys=2000)
    writer = subprocess.Popen(
        ["sh", "-c", 'for i in 1 2 3 4 5 6 7 8 9 10 11 12; do "$0" setprop state n $i a $i b $i || exit 1; done',
         command("config")], stderr=subprocess.PIPE, text=True)
    reads = 0
    deadline = time.monotonic() + 60
    while writer.poll() is None and time.monotonic() < deadline:
        _check_state(root, set(range(13)), keys=2000)
        reads += 1
    _, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    assert reads > 0
    assert _check_state(root, {12}, keys=2000) == 12


def test_stray_temp_file_of_a_dead_writer_breaks_nothing(root, run):
    run("config", "set", "k", "thing", "a", "1", check=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stray = root.db_dir / f".configuration.tmp-{dead}"
    stray.write_text("k=half a fi")
    assert run("config", "getprop", "k", "a").stdout == "1\n"
    run("config", "setprop", "k", "a", "2", check=True)
    assert run("config", "getprop", "k", "a").stdout == "2\n"
    assert run("config", "keys").stdout.split().count("k") == 1
    assert not stray.exists()     # the next writer removes what a dead writer left


LOOPING_WRITER = """
import sys
from hotsync_events.configdb import open_db
db = open_db("configuration", sys.argv[1])
n = int(sys.argv[2])
while True:
    n += 1
    db.setprop("state", {"n": str(n), "a": str(n), "b": str(n)})
    print(n, flush=True)
"""


def test_looping_writer_killed_at_random_moments(root, run):
    """A process that does nothing but write, killed at random: most kills land inside a write."""
    _fill(root, run)
    rng = random.Random(99)
    current, strays, rounds = 0, 0, 0
    deadline = time.monotonic() + 30
    while (rounds < 40 or strays < 3) and rounds < 80 and time.monotonic() < deadline:
        rounds += 1
        p = subprocess.Popen([sys.executable, "-c", LOOPING_WRITER, str(root.path), str(current)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.15, 0.4))
        os.kill(p.pid, signal.SIGKILL)
        out, err = p.communicate(timeout=30)
        assert p.returncode == -signal.SIGKILL, err
        done = [int(x) for x in out.split()]
        last = done[-1] if done else current
        strays += any(".tmp-" in f.name for f in root.db_dir.iterdir())
        current = _check_state(root, {last, last + 1})
    print(f"{rounds} kills, {strays} in mid-write")
    assert rounds >= 5
    assert strays >= 1, f"none of the {rounds} kills landed inside a write"
    run("config", "setprop", "state", "n", "7", "a", "7", "b", "7", check=True, timeout=30)
    assert _check_state(root, {7}) == 7
    assert [f.name for f in root.db_dir.iterdir() if ".tmp-" in f.name] == []
