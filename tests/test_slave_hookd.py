"""The slave's hooks answered by the server forked for the session (sync/hookd.py), with real processes:
the shell rsync runs asks it and prints its answer; without it (no channel, a dead server) the shell runs
the hook program, which decides the same; a real pair's sessions start no Python for their hooks at all."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hotsync_events.sync import hookd, nodelay
from hotsync_events.sync.xfer import hook_argv, package_top
from sync_pair import SERVER_ENV
from sync_pair import Pair

FALLBACK = "sh -c 'echo FALLBACK-RAN; exit 99'"


def _hook(tmp_path: Path, action: str = "pre", *, server: bool = True, env: dict | None = None,
          fallback: str = FALLBACK) -> subprocess.CompletedProcess:
    """Run the hook's shell line as rsync would (sh -c, RSYNC_* in its environment), through the launcher
    (which forks the server and becomes the shell) or alone."""
    line = hookd.hook_command(action, str(tmp_path), fallback)
    shell = ["/bin/sh", "sh", "-c", line]
    argv = [sys.executable, *nodelay.exec_args(*shell, hookd=package_top())] if server else shell[:1] + shell[2:]
    full = {"PATH": "/usr/bin:/bin", "RSYNC_PID": "4242", "RSYNC_MODULE_NAME": "hotsync",
            "RSYNC_HOST_ADDR": "127.0.0.1", **SERVER_ENV, **(env or {})}
    return subprocess.run(argv, input="", capture_output=True, text=True, env=full, timeout=60)


def test_the_server_answers_the_hook_and_the_fallback_does_not_run(tmp_path):
    cp = _hook(tmp_path)       # a root with no configuration: refused, as the hook program refuses
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert cp.stdout.startswith("refused by the slave: ") and "FALLBACK" not in cp.stdout, cp.stdout
    assert "this host is not a slave" in cp.stdout      # the reason, on one line
    same = subprocess.run(hook_argv("pre", str(tmp_path)), capture_output=True, text=True, timeout=60,
                          env={"RSYNC_PID": "4242", "RSYNC_MODULE_NAME": "hotsync", "RSYNC_HOST_ADDR": "127.0.0.1",
                               **SERVER_ENV})
    assert same.returncode == 1 and same.stdout.strip() == cp.stdout.strip()   # the program decides the same
    post = _hook(tmp_path, "post")
    assert post.returncode == 0 and "FALLBACK" not in post.stdout, (post.stdout, post.stderr)


def test_without_an_answer_the_shell_runs_the_hook_program(tmp_path):
    alone = _hook(tmp_path, server=False)                                  # no channel at all
    assert alone.returncode == 99 and "FALLBACK-RAN" in alone.stdout
    claimed = _hook(tmp_path, server=False, env={hookd.ENV: str(hookd.HOOK_FD)})   # said, but fd 7 is closed
    assert claimed.returncode == 99 and "FALLBACK-RAN" in claimed.stdout
    # fd 7 open on something that never answers (what a dead server leaves): the program runs
    line = hookd.hook_command("pre", str(tmp_path), FALLBACK)
    dead = subprocess.run(["/bin/sh", "-c", f"exec 7<>/dev/null; {line}"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", hookd.ENV: "7"}, timeout=30)
    assert dead.returncode == 99 and "FALLBACK-RAN" in dead.stdout


def test_the_server_refuses_what_it_cannot_read():
    assert hookd.answer("pre x /tmp")[0] == 1
    assert hookd.answer("rm 1 /")[0] == 1
    code, message = hookd.answer("pre 999999999 /tmp")          # no such process: refused, never passed
    assert code == 1 and message.startswith("refused by the slave: its pre/post-xfer hook failed")


def test_the_hook_line_needs_no_program_and_no_percent(tmp_path):
    line = hookd.hook_command("post", "/srv/a b", "exec false")
    assert "%" not in line and "'/srv/a b'" in line
    assert hookd.hook_command("pre", "/srv/a\\tb", "prog") == "exec prog"    # echo would read \t: the program
    with pytest.raises(ValueError):
        hookd.hook_command("early", "/", "true")


def _attached(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        if re.search(r"^TracerPid:\s+[1-9]", status, re.M):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("rsync") and (shutil.which("stunnel4") or shutil.which("stunnel"))
                         and shutil.which("openssl") and shutil.which("strace")),
                    reason="needs rsync, stunnel4, openssl and strace")
def test_a_pairs_sessions_start_no_python_for_their_hooks(tmp_path):
    (tmp_path / "pair").mkdir()
    pair = Pair(tmp_path / "pair")
    try:
        pair.pair()
        data = pair.master / "srv/data"
        data.mkdir(parents=True)
        (data / "a").write_text("a\n")
        pair.include("/srv/data")
        assert pair.sync().returncode == 0
        pair.settled()
        stunnel = int((pair.slave / "run/hotsync/hotsync-stunnel.pid").read_text().split()[0])
        trace = tmp_path / "execs"
        st = subprocess.Popen(["strace", "-f", "-qq", "-s", "800", "-e", "trace=execve", "-o", str(trace),
                               "-p", str(stunnel)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert _attached(stunnel)
            (data / "b").write_text("b\n")
            cp = pair.sync()
            assert cp.returncode == 0, cp.stdout + cp.stderr
            pair.settled()
        finally:
            st.terminate()
            st.wait(30)
        text = trace.read_text()
        assert re.search(r'"sh", "-c", ".*HOTSYNC_HOOKD.*echo \\"pre ', text), text[-2000:]
        assert re.search(r'"sh", "-c", ".*HOTSYNC_HOOKD.*echo \\"post ', text), text[-2000:]
        assert not re.search(r'execve\("[^"]*python[^"]*", \[[^\]]*"(pre|post)"', text), text[-3000:]
        from hotsync_events.paths import Root
        from hotsync_events.sync.listener import socket_path

        if socket_path(Root(str(pair.slave))) is not None:
            # nor any interpreter for the session: the listener spawns rsync and forks the hooks' server, warm
            assert not re.search(r'execve\("[^"]*python', text), text[-3000:]
            assert re.search(r'execve\("[^"]*rsync", \["[^"]*rsync", "--server", "--daemon"', text), text[-3000:]
        else:       # a root too deep for a socket: stunnel's exec of the launcher, which forks the server
            assert re.search(r'execve\("[^"]*python[^"]*", \[[^\]]*"--hookd=', text), text[-3000:]
        # the server did the hooks' work: the session is recorded as the program would record it
        st_ = pair.status(pair.slave)
        assert st_["last_run"]["exit_status"] == 0 and not st_.get("receiving")
        assert (pair.slave / "srv/data/b").read_text() == "b\n"
    finally:
        pair.close()
