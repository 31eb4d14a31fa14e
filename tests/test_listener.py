"""The slave's listener (hotsync_events/sync/listener.py): stunnel hands it each connection over a Unix
socket, the master's address first; it forks rsync for it, warm.

The end-to-end proof is every pair test (tests/sync_pair.py runs the listener through the save event). Here:
the address line's parser, the socket's guards (its directory, who may connect), what a session's rsync
gets (its address, the hooks' channel, nothing else of the listener's), and the fall-back for a root whose
socket path is too long.
"""
from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hotsync_events.paths import Root
from hotsync_events.sync import listener
from hotsync_events.sync.listener import parse_proxy_line, socket_path


@pytest.mark.parametrize("line, want", [
    (b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 273\r\n", ("192.0.2.7", 40000)),
    (b"PROXY TCP6 2001:db8::7 2001:db8::1 1 65535\r\n", ("2001:db8::7", 1)),
    (b"PROXY TCP6 ::ffff:192.0.2.7 ::ffff:192.0.2.1 5 273\r\n", ("::ffff:192.0.2.7", 5)),
])
def test_a_proxy_line_gives_the_masters_address(line, want):
    assert parse_proxy_line(line) == want


@pytest.mark.parametrize("line", [
    b"PROXY UNKNOWN\r\n",                                         # stunnel knows the address: never this
    b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 273\n",               # no CR
    b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 273",                 # no end: the line was cut
    b"PROXY TCP4 192.0.2.7  192.0.2.1 40000 273\r\n",            # two spaces
    b"PROXY TCP4 2001:db8::7 192.0.2.1 40000 273\r\n",           # an IPv6 address said to be IPv4
    b"PROXY TCP6 192.0.2.7 192.0.2.1 40000 273\r\n",             # and the other way
    b"PROXY TCP4 192.0.2.7 192.0.2.1 040000 273\r\n",            # a port with a leading zero
    b"PROXY TCP4 192.0.2.7 192.0.2.1 0 273\r\n",                 # port 0
    b"PROXY TCP4 192.0.2.7 192.0.2.1 70000 273\r\n",             # past 65535
    b"PROXY TCP4 master.example 192.0.2.1 40000 273\r\n",        # a name, not an address
    b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 273 x\r\n",           # a seventh word
    b"\x0d\x0a\x0d\x0a\x00\x0d\x0aQUIT\x0a" + b"\x21\x11\x00\x0c" + b"\0" * 12,   # PROXY v2 (binary)
    b"@RSYNCD: 32.0 sha512\n",                                   # rsync's greeting: no address line at all
    b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 273" + b" " * 80 + b"\r\n",   # too long
])
def test_anything_but_a_well_formed_proxy_line_is_refused(line):
    with pytest.raises(ValueError):
        parse_proxy_line(line)


def test_the_socket_path_lives_under_the_root_and_fits_a_socket_address(tmp_path):
    assert socket_path(Root("/")) == listener.SOCKET
    assert socket_path(Root(str(tmp_path))) == str(tmp_path) + listener.SOCKET
    deep = tmp_path / ("d" * 90)
    assert socket_path(Root(str(deep))) is None       # too long for sun_path: stunnel's exec instead


def _start(tmp_path: Path, rsync: list[str], env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """The listener on a root under *tmp_path*, with a stand-in for stunnel (a process that waits) and
    *rsync* as the program each session becomes."""
    root = tmp_path / "r"
    root.mkdir(exist_ok=True)
    code = ("import sys; from hotsync_events.sync import listener; "
            f"l = listener.Listener([{sys.executable!r}, '-c', 'import time; time.sleep(120)'], "
            f"{rsync!r}, listener.socket_path(listener.Root({str(root)!r}))); sys.exit(l.run())")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    path = str(root) + listener.SOCKET
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.02)
    assert os.path.exists(path)
    return proc, path


def _stop(proc: subprocess.Popen) -> bytes:
    proc.terminate()
    try:
        _out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
    return err


# what a session's program sees: its environment's address and hooks' channel, its descriptors, its input
SHOW = r"""
import os, sys
fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
blocking = os.get_blocking(0) and os.get_blocking(1)
data = sys.stdin.buffer.read(5)
os.write(7, ("pre %d /nonexistent-root\n" % os.getpid()).encode())     # as a hook asks the hooks' server
answer = os.read(7, 4096).decode().split(" ", 1)[0]
os.write(1, ("%s|%s|%s|%s|%r|%s|%s\n" % (os.environ.get("REMOTE_HOST"), os.environ.get("REMOTE_PORT"),
             os.environ.get("HOTSYNC_HOOKD"), fds, data, blocking, answer)).encode())
"""


def test_a_session_gets_the_masters_address_the_hooks_channel_and_nothing_else(tmp_path):
    proc, path = _start(tmp_path, [sys.executable, "-c", SHOW], env={"REMOTE_HOST": "203.0.113.9"})
    try:
        d = Path(path).parent
        assert stat.S_IMODE(d.stat().st_mode) == 0o700 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with socket.socket(socket.AF_UNIX) as c:
            c.settimeout(20)
            c.connect(path)
            # the address line and the first bytes of the protocol in one write: rsync gets the latter whole
            c.sendall(b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 273\r\nhello")
            c.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := c.recv(4096):
                out += chunk
        host, port, hookd, fds, data, blocking, answer = out.decode().strip().split("|")
        assert (host, port, hookd) == ("192.0.2.7", "40000", "7")     # the line's, not the listener's own
        assert data == "b'hello'" and blocking == "True"
        assert answer == "1"          # the hooks' server answered on fd 7 (no configuration there: refused)
        # stdin, stdout, stderr, the hooks' channel; the listener's socket and pipes are not inherited (the
        # one more is the directory listing's own descriptor)
        assert fds == "[0, 1, 2, 3, 7]", fds
    finally:
        _stop(proc)


def test_a_connection_without_an_address_line_never_starts_rsync(tmp_path):
    marker = tmp_path / "started"
    proc, path = _start(tmp_path, [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('x')"])
    try:
        for junk in (b"@RSYNCD: 32.0 sha512\n", b"PROXY UNKNOWN\r\n", b"PROXY TCP4 x y 1 2\r\n", b"x" * 500):
            with socket.socket(socket.AF_UNIX) as c:
                c.settimeout(20)
                c.connect(path)
                c.sendall(junk)
                c.shutdown(socket.SHUT_WR)
                try:
                    assert c.recv(100) == b""          # closed, nothing answered
                except ConnectionResetError:           # closed with bytes unread
                    pass
        time.sleep(1.0)                                # a wrongly started "rsync" would have written by now
        assert not marker.exists()
    finally:
        err = _stop(proc)
    assert err.count(b"connection closed before rsync") == 4, err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another user")
def test_only_root_may_hand_over_a_connection(tmp_path):
    """The socket's directory keeps other users out; were it opened by mistake, a connection from another
    user is still closed unread (SO_PEERCRED): an address line is believed only from stunnel."""
    import tempfile

    marker = tmp_path / "started"
    base = Path(tempfile.mkdtemp(prefix="hs-listener-", dir="/tmp"))      # a path another user can walk
    try:
        os.chmod(base, 0o755)
        proc, path = _start(base, [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('x')"])
        try:
            for d in Path(path).parents:
                if str(d).startswith(str(base)):
                    os.chmod(d, 0o755)                 # the mistake: the directory opened to everyone
            os.chmod(path, 0o666)
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(r)
                    os.setgid(65534)
                    os.setuid(65534)
                    c = socket.socket(socket.AF_UNIX)
                    c.settimeout(20)
                    c.connect(path)
                    try:
                        c.sendall(b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 273\r\n@RSYNCD: 32.0\n")
                        got = "closed" if c.recv(100) == b"" else "answered"
                    except (BrokenPipeError, ConnectionResetError):
                        got = "closed"
                    os.write(w, got.encode())
                except BaseException as exc:
                    os.write(w, f"error {exc!r}".encode())
                finally:
                    os._exit(0)
            os.close(w)
            os.waitpid(pid, 0)
            with os.fdopen(r, "rb") as fh:
                got = fh.read().decode()
            assert got == "closed", got            # connected (the mistake), then closed unread
            time.sleep(1.0)
            assert not marker.exists()
        finally:
            err = _stop(proc)
        assert b"connection from user 65534 closed" in err, err
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_planted_socket_directory_is_refused(tmp_path):
    root = tmp_path / "r"
    d = root / Path(listener.SOCKET).parent.relative_to("/")
    d.parent.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    d.symlink_to(elsewhere)
    with pytest.raises(SystemExit, match="not a directory of this user's"):
        listener._listen(str(root) + listener.SOCKET)
    assert not list(elsewhere.iterdir())


def test_a_live_listeners_socket_is_never_taken_over(tmp_path):
    proc, path = _start(tmp_path, ["true"])
    try:
        with pytest.raises(SystemExit, match="another listener serves"):
            listener._listen(path)
        with socket.socket(socket.AF_UNIX) as c:    # still the first listener's
            c.settimeout(10)
            c.connect(path)
    finally:
        _stop(proc)
    assert not os.path.exists(path)                  # it removed its own socket as it ended


def test_a_stale_socket_is_replaced_and_anything_else_refused(tmp_path):
    path = str(tmp_path / "r") + listener.SOCKET
    first = listener._listen(path)
    first.close()                                    # a listener killed: its socket file stays
    second = listener._listen(path)
    second.close()
    os.unlink(path)
    Path(path).write_text("not a socket")
    with pytest.raises(SystemExit, match="is not a socket"):
        listener._listen(path)
    assert Path(path).read_text() == "not a socket"


def test_a_reload_after_stunnel_died_still_ends_the_listener(tmp_path):
    """SIGHUP (systemctl reload) must not hide stunnel's end: the listener ends with it, and the service
    manager restarts both."""
    import signal

    root = tmp_path / "r"
    root.mkdir()
    flag = tmp_path / "go"
    standin = tmp_path / "stunnel.py"       # a stunnel that ends with status 4 once told to
    standin.write_text(f"import os, sys, time\nwhile not os.path.exists({str(flag)!r}):\n    time.sleep(0.02)\n"
                       "sys.exit(4)\n")
    code = ("import sys; from hotsync_events.sync import listener; "
            f"l = listener.Listener([{sys.executable!r}, {str(standin)!r}], "
            f"['true'], listener.socket_path(listener.Root({str(root)!r}))); sys.exit(l.run())")
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
    try:
        kid = _child(proc.pid)                       # the listener's handlers are set before it starts stunnel
        os.kill(proc.pid, signal.SIGSTOP)            # stunnel ends while the listener cannot reap it
        flag.write_text("x")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _state(kid) != "Z":
            time.sleep(0.02)
        assert _state(kid) == "Z"
        os.kill(proc.pid, signal.SIGHUP)
        os.kill(proc.pid, signal.SIGCONT)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 4 and b"stunnel ended with status 4" in err


def _state(pid: int) -> str:
    """A process's state letter, or "gone"."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def _child(pid: int) -> int:
    """The first child of *pid* (waited for: bounded)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            kids = []
        if kids:
            return int(kids[0])
        time.sleep(0.02)
    raise AssertionError(f"process {pid} started no child")


def test_stunnel_dies_with_a_killed_listener(tmp_path):
    proc, _path = _start(tmp_path, ["true"])
    kid = _child(proc.pid)
    proc.kill()
    proc.communicate(timeout=20)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _state(kid) not in ("Z", "gone"):
        time.sleep(0.05)
    assert _state(kid) in ("Z", "gone")


def test_the_listener_runs_isolated_from_its_working_directory(tmp_path):
    """The service's working directory is the root a push writes into: a module planted there (one the
    listener imports from the standard library) is never imported."""
    from hotsync_plugins import hotsync as plugin

    src = Path(plugin.__file__).read_text()
    assert '"-I", "-m", "hotsync_events.sync.listener"' in src
    unit = (Path(__file__).resolve().parents[1] / "debian/units/hotsync-stunnel.service").read_text()
    assert "bin/python -I -m hotsync_events.sync.listener" in unit
    (tmp_path / "argparse.py").write_text("raise SystemExit('planted module imported')\n")
    cp = subprocess.run([sys.executable, "-I", "-m", "hotsync_events.sync.listener", "--root", str(tmp_path),
                         "--rsync", "/nonexistent/rsync"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "planted" not in cp.stdout + cp.stderr
    assert cp.returncode == 2 and "stunnel's command line is missing" in cp.stderr


def test_the_listener_ends_with_stunnel_and_stops_it_on_sigterm(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    code = ("import sys; from hotsync_events.sync import listener; "
            f"l = listener.Listener([{sys.executable!r}, '-c', 'import sys; sys.exit(3)'], ['true'], "
            f"listener.socket_path(listener.Root({str(root)!r}))); sys.exit(l.run())")
    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 3 and "stunnel ended with status 3" in cp.stderr
    proc, _path = _start(tmp_path, ["true"])
    kid = _child(proc.pid)
    _stop(proc)
    assert proc.returncode == 0
    assert _state(kid) in ("Z", "gone")


def _first_push(pair) -> Path:
    """One file under /srv/data pushed to the slave; the master's data directory."""
    data = pair.master / "srv/data"
    data.mkdir(parents=True)
    (data / "a").write_text("a\n")
    pair.include("/srv/data")
    cp = pair.sync()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert (pair.slave / "srv/data/a").read_text() == "a\n"
    return data


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("rsync") and (shutil.which("stunnel4") or shutil.which("stunnel"))),
                    reason="needs rsync and stunnel4")
def test_a_root_too_deep_for_a_socket_keeps_stunnels_exec_and_syncs(tmp_path):
    """The save event renders stunnel's exec of the per-connection launcher when the socket path would not
    fit a socket address; pushes work the same."""
    from sync_pair import Pair

    deep = tmp_path / ("d" * 90)
    deep.mkdir()
    pair = Pair(deep)
    try:
        pair.pair()
        conf = (pair.slave / "etc/stunnel/hotsync.conf").read_text()
        assert "execArgs" in conf and "protocol = proxy" not in conf
        _first_push(pair)
    finally:
        pair.close()


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("rsync") and (shutil.which("stunnel4") or shutil.which("stunnel"))),
                    reason="needs rsync and stunnel4")
def test_a_pairs_slave_takes_pushes_through_the_listener(tmp_path):
    """stunnel connects to the listener's socket with the master's address first; rsync's daemon sees that
    address (the slave's status), and a push from a host that is not MasterHost is refused."""
    from sync_pair import Pair, cli

    pair = Pair(tmp_path)
    try:
        pair.pair()
        conf = (pair.slave / "etc/stunnel/hotsync.conf").read_text()
        assert "protocol = proxy" in conf and f"connect = {pair.slave}{listener.SOCKET}" in conf
        assert "execArgs" not in conf.split("[hotsync]")[1].split("[hotsync-pair]")[0]
        data = _first_push(pair)
        pair.settled()
        from hotsync_events.sync.status import read_status

        assert read_status(Root(str(pair.slave)))["last_received"]["from"] == "127.0.0.1"
        # the slave expects its master elsewhere: the same push is refused by address
        assert cli("config", "setprop", "hotsync", "MasterHost", "192.0.2.44", root=pair.slave).returncode == 0
        assert cli("signal-event", "nethserver-hotsync-save", root=pair.slave).returncode == 0
        pair.wait_listening(20)
        (data / "b").write_text("b\n")
        cp = pair.sync()
        assert cp.returncode != 0
        # rsyncd's own "hosts allow" (MasterHost) turns it away before any hook: it saw the master's address
        assert "the slave refused this host" in cp.stderr, cp.stdout + cp.stderr
        assert not (pair.slave / "srv/data/b").exists()
    finally:
        pair.close()
