"""What the slave's per-session machinery does now that it is fast (issue 20), proved with real processes:
rsync's end of stunnel's loopback pair gets TCP_NODELAY, the hooks start isolated, and the public status
snapshot written after a hook has answered ends up showing the newest state, however many sessions race."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from hotsync_events.paths import Root
from hotsync_events.sync import nodelay, public
from hotsync_events.sync.status import read_status, update_status
from hotsync_events.sync.xfer import hook_argv


def _probe() -> str:
    """A program that prints TCP_NODELAY of its fd 0 and exits (what rsync would find)."""
    return ("import socket,sys;s=socket.socket(fileno=0);"
            "print(s.getsockopt(socket.IPPROTO_TCP,socket.TCP_NODELAY));s.detach()")


def test_the_launcher_sets_tcp_nodelay_on_rsyncs_end_of_a_tcp_pair_then_becomes_the_program():
    srv = socket.create_server(("127.0.0.1", 0))
    theirs = socket.create_connection(srv.getsockname())
    mine, _ = srv.accept()
    srv.close()
    try:
        assert theirs.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0     # as stunnel leaves it
        args = nodelay.exec_args(sys.executable, "python", "-c", _probe())
        assert not any(" " in a for a in args[:4]), args                         # stunnel's execArgs: no quoting
        cp = subprocess.run([sys.executable, *args], stdin=theirs.fileno(), capture_output=True, text=True,
                            timeout=30)
        assert cp.returncode == 0, cp.stderr
        assert cp.stdout.strip() == "1"
    finally:
        theirs.close()
        mine.close()


def test_the_launcher_leaves_a_pipe_alone():
    args = nodelay.exec_args(sys.executable, "python", "-c", "print('ran')")
    cp = subprocess.run([sys.executable, *args], input="", capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0 and cp.stdout.strip() == "ran", cp.stderr


def test_the_hooks_start_isolated_and_import_nothing_from_the_environment(tmp_path):
    argv = hook_argv("pre", str(tmp_path))
    assert argv[1:3] == ["-I", "-S"] and argv[-3:] == ["pre", "--root", str(tmp_path)]
    # PYTHONPATH and the current directory are not read: a module planted there (one the hook imports from
    # the standard library) is not imported
    (tmp_path / "json.py").write_text("raise SystemExit('planted module imported')\n")
    cp = subprocess.run(argv, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)}, capture_output=True,
                        text=True, timeout=60)
    assert "planted" not in cp.stdout + cp.stderr
    assert "refused by the slave" in cp.stdout       # no configuration here: it refuses, it does not crash


def test_the_public_snapshot_written_later_shows_the_newest_state(tmp_path):
    root = Root(str(tmp_path))
    for i in range(20):                  # a burst of sessions, each leaving the snapshot to a detached child
        update_status(root, lambda d, i=i: d.update(last_run={"start": i, "end": i, "result": "success",
                                                                   "kind": "realtime"}), public_later=True)
    assert read_status(root)["last_run"]["start"] == 19
    deadline = time.monotonic() + 20
    seen = None
    while time.monotonic() < deadline:
        try:
            seen = json.loads((tmp_path / public.PUBLIC_FILE.lstrip("/")).read_text())
        except (OSError, ValueError):
            seen = None
        if seen and (seen.get("last_run") or {}).get("start") == 19:
            break
        time.sleep(0.05)
    assert seen and seen["last_run"]["start"] == 19, seen
    # the children are gone (none left waiting on the locks), and no temp file is left beside the snapshot
    time.sleep(0.5)
    assert not [p for p in (tmp_path / "var/lib/hotsync").iterdir() if ".tmp-" in p.name]


def test_one_answer_to_whether_a_process_runs():
    from hotsync_events.childproc import alive

    assert alive(os.getpid()) and alive(str(os.getpid())) and alive(1)        # pid 1: another's, still alive
    for junk in (None, "", "x", -1, 0, "12a"):
        assert not alive(junk), junk
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and alive(child.pid):   # a zombie counts as gone, and is left to Popen
        time.sleep(0.02)
    assert not alive(child.pid)
    assert child.wait(5) == 0                                   # its exit status was not taken
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    time.sleep(0.2)
    assert not alive(pid, reap=True)                            # a child of ours nobody waits for: reaped
    try:
        os.waitpid(pid, os.WNOHANG)
        raise AssertionError("the zombie was not reaped")
    except ChildProcessError:
        pass


def test_the_snapshot_child_keeps_none_of_the_callers_descriptors(tmp_path):
    """A sync writes its status holding the sync lock (an flock): the detached snapshot writer must not keep
    that lock (nor any other descriptor of its caller) once the caller lets it go."""
    import fcntl

    root = Root(str(tmp_path))
    lock = tmp_path / "sync.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    update_status(root, lambda d: d.update(role="master"), public_later=True)
    os.close(fd)                      # the caller is done with it; a child holding a copy would keep it locked
    probe = ("import fcntl,os,sys;f=os.open(sys.argv[1],os.O_RDWR);"
             "fcntl.flock(f,fcntl.LOCK_EX|fcntl.LOCK_NB);print('free')")
    cp = subprocess.run([sys.executable, "-c", probe, str(lock)], capture_output=True, text=True, timeout=30)
    assert cp.stdout.strip() == "free", cp.stderr
