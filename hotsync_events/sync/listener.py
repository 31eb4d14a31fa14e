"""The slave's listener: stunnel for TLS, and rsync for each connection, started from a process already warm.

``hotsync-stunnel`` (the unit, or the process back-end's service) runs :func:`main` (``python -I -m``: the
working directory, the master's files land there, is never on its path). It binds a Unix socket in a
directory only root may enter, starts stunnel with the slave's configuration, and stays beside it. stunnel
keeps doing what makes a push trusted: the TLS handshake, the master's pinned certificate, the timeouts. For
each connection it accepted, stunnel connects to the socket (``connect``) and first writes the master's
address as a PROXY protocol line (``protocol = proxy``). The listener reads that line, forks the hooks'
server (:mod:`hotsync_events.sync.hookd`, its code imported once, here) and spawns ``rsync --server
--daemon`` (``posix_spawn``: no copy of this process) with the connection as its input and output,
``REMOTE_HOST`` set to the master's address as stunnel's ``exec`` set it, and the hooks' channel at fd 7.
rsync sees the same daemon session as before, with the same hooks and the same checks.

What this removes from every push (docs/realtime.md): an interpreter's start (the launcher of
:mod:`hotsync_events.sync.nodelay`, which stunnel's ``exec`` needed for ``TCP_NODELAY`` on its loopback TCP
pair: a Unix socket has no Nagle algorithm) and the import of the hooks' code in each session's server.

Trust: the socket's directory is root's and 0700, and a connection whose peer is not this listener's own
user (root) is closed unread (``SO_PEERCRED``), so the address line can only come from stunnel, which
writes it only after the handshake verified the master's certificate. A line that is not a well-formed
PROXY v1 header for TCP over IPv4 or IPv6 ends the connection before rsync starts.

A root whose socket path would not fit a Unix socket address (108 bytes) keeps the per-connection launcher:
:func:`socket_path` says None, the save event renders stunnel's ``exec`` instead, and the listener only
supervises stunnel.
"""
from __future__ import annotations

import argparse
import errno
import fcntl
import gc
import ipaddress
import os
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

from hotsync_events.paths import Root
from hotsync_events.sync.hookd import ENV, HOOK_FD

__all__ = ["SOCKET", "parse_proxy_line", "socket_path", "main"]

#: host path of the socket stunnel connects to (its directory: root's, 0700; short, for deep roots)
SOCKET = "/run/hotsync/sock/rsync"
#: a Unix socket address holds at most 107 bytes and a NUL
_SUN_PATH = 107
#: a PROXY protocol v1 line is at most 107 bytes with its CRLF
_MAX_LINE = 107
#: seconds the listener waits for stunnel's address line (written as it connects)
_HEADER_TIMEOUT = 2.0
#: seconds stunnel gets to end after SIGTERM before it is killed
_STOP_TIMEOUT = 10.0


def socket_path(root: Root) -> str | None:
    """The socket's path under *root*, or None when it would not fit a Unix socket address."""
    path = str(root.join(SOCKET))
    # and room for the name it is bound under first (:func:`_temp_name`: a pid of up to 7 digits)
    return path if len(os.fsencode(_temp_name(path, 4194304))) <= _SUN_PATH else None


def _temp_name(path: str, pid: int) -> str:
    return os.path.join(os.path.dirname(path), f".{pid}")


def parse_proxy_line(line: bytes) -> tuple[str, int]:
    """``(address, port)`` of the client from a PROXY protocol v1 line (``PROXY TCP4 SRC DST SPORT DPORT``,
    CRLF included); ValueError names what is wrong."""
    if len(line) > _MAX_LINE or not line.endswith(b"\r\n"):
        raise ValueError("the address line is too long or not ended by CRLF")
    parts = line[:-2].split(b" ")
    if len(parts) != 6 or parts[0] != b"PROXY" or parts[1] not in (b"TCP4", b"TCP6"):
        raise ValueError("the address line is not a PROXY v1 header for TCP")
    try:
        src = ipaddress.ip_address(parts[2].decode("ascii"))
        ipaddress.ip_address(parts[3].decode("ascii"))
        ports = [int(p) for p in parts[4:]]
    except (UnicodeDecodeError, ValueError):
        raise ValueError("the address line holds a malformed address or port") from None
    if (src.version == 4) != (parts[1] == b"TCP4") or not all(0 < p < 65536 and str(p).encode() == q
                                                               for p, q in zip(ports, parts[4:])):
        raise ValueError("the address line holds a malformed address or port")
    return parts[2].decode("ascii"), ports[0]     # as stunnel wrote it (and as it set REMOTE_HOST for exec)


def _read_line(sock: socket.socket) -> bytes:
    """The first line stunnel wrote, and nothing of what follows it (rsync's protocol); at most
    :data:`_HEADER_TIMEOUT` seconds in all."""
    deadline = time.monotonic() + _HEADER_TIMEOUT
    data = b""
    while not data.endswith(b"\r\n") and len(data) < _MAX_LINE:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no address line in time")
        sock.settimeout(left)
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def _prepare_dir(path: Path) -> None:
    """The socket's directory: made 0700, and refused unless it is a directory of this user's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise SystemExit(f"hotsync listener: {path} is not a directory of this user's: remove it, then restart "
                         "hotsync-stunnel")
    os.chmod(path, 0o700)


def _listen(path: str) -> socket.socket:
    """The listening socket at *path*: a socket left by a listener that died is replaced; a live one (another
    listener on this root) or anything but a socket there is refused with what to do."""
    p = Path(path)
    _prepare_dir(p.parent)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise SystemExit(f"hotsync listener: {path} is not a socket: remove it, then restart hotsync-stunnel")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(path)
            except OSError:
                pass                  # nobody listens: left by a listener that was killed, replaced below
            else:
                raise SystemExit(f"hotsync listener: another listener serves {path} (hotsync services shows "
                                 "it): stop it first")
    # bound and listening under a name of its own, then renamed into place: whoever finds the socket can
    # connect at once (another listener's probe above never takes a starting one for a dead one)
    tmp = _temp_name(path, os.getpid())
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(tmp)
    os.chmod(tmp, 0o600)
    sock.listen(64)
    sock.setblocking(False)
    os.rename(tmp, path)
    return sock


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_dev) if stat.S_ISSOCK(st.st_mode) else None


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]        # (pid, uid, gid)


def _serve_hooks(b: socket.socket) -> None:
    """In the hooks' server's child: answer the session's hooks until rsync and its hooks closed the
    channel. Never returns."""
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)      # the listener's handlers are not this process's
        signal.set_wakeup_fd(-1)
        gc.disable()                  # short-lived: no collection touches (and copies) the listener's pages
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1):
            os.dup2(null, fd)
        keep = b.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, 1 << 16)
        from hotsync_events.sync.hookd import serve

        serve(b)
    except BaseException as exc:      # the hooks then run as programs: the same checks, slower
        try:
            os.write(2, f"hotsync hooks' server: {type(exc).__name__}: {exc}\n".encode())
        except OSError:
            pass
    finally:
        os._exit(0)


def _spawn(conn: socket.socket, addr: str, port: int, rsync: list[str]) -> int:
    """Start the session for *conn*: the hooks' server (forked) and rsync (spawned, the connection as its
    input and output, the hooks' channel at fd 7); rsync's pid."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid = os.fork()
        if pid == 0:
            a.close()
            _serve_hooks(b)
        b.close()
        # descriptors above rsync's targets, so no duplication lands on its own source
        c = fcntl.fcntl(conn.fileno(), fcntl.F_DUPFD_CLOEXEC, 10)
        h = fcntl.fcntl(a.fileno(), fcntl.F_DUPFD_CLOEXEC, 10)
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("REMOTE_")}
            env.update(REMOTE_HOST=addr, REMOTE_PORT=str(port), **{ENV: str(HOOK_FD)})
            # posix_spawn: no copy of this process (a vfork), what rsync holds is exactly 0, 1, 2 and the
            # channel (every other descriptor here is close-on-exec)
            return os.posix_spawn(rsync[0], rsync, env, file_actions=[
                (os.POSIX_SPAWN_DUP2, c, 0), (os.POSIX_SPAWN_DUP2, c, 1), (os.POSIX_SPAWN_DUP2, h, HOOK_FD)])
        finally:
            os.close(c)
            os.close(h)
    finally:
        a.close()
        b.close()


class Listener:
    """stunnel and the socket beside it, until stunnel ends or a signal stops both."""

    def __init__(self, stunnel: list[str], rsync: list[str], path: str | None) -> None:
        self.stunnel_argv, self.rsync, self.path = stunnel, rsync, path
        self.stop_signal: int | None = None
        self.stunnel: subprocess.Popen | None = None    # its returncode is set by _reap, never by Popen

    def _signal(self, signum, _frame) -> None:
        if signum == signal.SIGHUP:
            if self.stunnel is not None and self.stunnel.returncode is None:
                try:      # by its pid: Popen.send_signal would reap an ended stunnel behind the loop's back
                    os.kill(self.stunnel.pid, signal.SIGHUP)      # stunnel reads its configuration again
                except OSError:
                    pass
        elif signum != signal.SIGCHLD:
            self.stop_signal = signum

    def _reap(self) -> None:
        """Reap the ended sessions (rsync, the hooks' servers) and note stunnel's end."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.stunnel is not None and pid == self.stunnel.pid:
                self.stunnel.returncode = os.waitstatus_to_exitcode(status)

    def run(self) -> int:
        from hotsync_events.childproc import die_with_parent

        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, self._signal)
        sock = _listen(self.path) if self.path else None
        ident = _file_id(self.path) if self.path else None
        # stunnel first: one that cannot start (its configuration, its port) ends this listener at once; it
        # dies with the listener, however the listener ends
        self.stunnel = subprocess.Popen(self.stunnel_argv, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent())
        # imported once: each session's hooks' server, and the status snapshot it leaves behind, fork them warm
        from hotsync_events.sync import fence, hookd, report, xfer  # noqa: F401

        gc.freeze()       # what is loaded now stays out of every collection: the forks share its pages
        watched = [wake_r] + ([sock.fileno()] if sock is not None else [])
        try:
            while self.stop_signal is None:
                self._reap()
                if self.stunnel.returncode is not None:
                    self._log(f"stunnel ended with status {self.stunnel.returncode}")
                    return self.stunnel.returncode or 1
                ready, _, _ = select.select(watched, [], [], 5.0)
                if wake_r in ready:
                    try:
                        while os.read(wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                if sock is not None and sock.fileno() in ready and self.stop_signal is None:
                    self._accept(sock)
            return 0
        finally:
            if sock is not None:
                sock.close()
                if self.path and ident is not None and _file_id(self.path) == ident:
                    os.unlink(self.path)          # ours still: a later listener finds the place clean
            self._stop_stunnel()

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(64):
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:        # out of descriptors: the next turn tries again
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    time.sleep(0.1)
                return
            with conn:
                try:
                    uid = _peer_uid(conn)
                    if uid != os.geteuid():        # only stunnel (this user) may hand over a connection
                        self._log(f"connection from user {uid} closed: only stunnel's may be taken")
                        continue
                    # stunnel writes the line as it connects: it is here already (bounded, and only root
                    # can connect at all)
                    addr, port = parse_proxy_line(_read_line(conn))
                    conn.setblocking(True)
                except (OSError, ValueError) as exc:
                    self._log(f"connection closed before rsync: {exc}")
                    continue
                try:
                    _spawn(conn, addr, port, self.rsync)
                except OSError as exc:
                    self._log(f"cannot start rsync for a connection from {addr}: {exc}")

    @staticmethod
    def _log(text: str) -> None:
        print(f"hotsync listener: {text}", file=sys.stderr, flush=True)

    def _stop_stunnel(self) -> None:
        st = self.stunnel
        if st is None or st.returncode is not None:
            return
        st.terminate()
        try:
            st.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            st.kill()
            st.wait(5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hotsync_events.sync.listener",
                                description="The slave's listener: stunnel, and rsync for each connection.")
    p.add_argument("--root", default=os.environ.get("HOTSYNC_ROOT", "/"))
    p.add_argument("--rsync", default="rsync", help="the rsync program")
    p.add_argument("--config", default="/etc/rsyncd.conf", help="rsyncd.conf's host path")
    p.add_argument("stunnel", nargs=argparse.REMAINDER, help="stunnel's command line (program, configuration)")
    a = p.parse_args(argv)
    if not a.stunnel:
        p.error("stunnel's command line is missing")
    from shutil import which

    root = Root(a.root)
    rsync = which(a.rsync) or a.rsync
    if not os.path.isabs(rsync):       # never a program found in the working directory
        p.error(f"rsync {a.rsync!r} not found: install rsync, or give its full path with --rsync")
    # only this listener's own descriptors reach what it starts: whatever it inherited stays here
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass
    from hotsync_events.sync.symlinks import migrate

    try:       # a copy's links from before munging (an upgrade, a host that was a master): munged once; a
        # data session waits for it (the pre-xfer hook tries again)
        why = migrate(root, log=lambda m: print(f"hotsync listener: {m}", file=sys.stderr, flush=True))
        if why:
            print(f"hotsync listener: links: {why}", file=sys.stderr, flush=True)
    except Exception as exc:      # never the listener's failure: the next start tries again
        print(f"hotsync listener: links: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    conf = str(root.join(a.config))
    listener = Listener(a.stunnel, [rsync, "--server", "--daemon", f"--config={conf}", "."], socket_path(root))
    return listener.run()


if __name__ == "__main__":
    sys.exit(main())
