"""A master root and a slave root paired on loopback with the manual's commands, for the sync tests.

Real rsync, real stunnel, real rsync daemon: everything runs through our CLIs (``config``,
``signal-event``, ``hotsync``). :meth:`Pair.close` stops every daemon the pair started (the save event
with ``status disabled``, then by pid from the pidfiles), so a failing test leaves nothing running.
"""
from __future__ import annotations

import hashlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from hotsync_events.sync.symlinks import MUNGED

BIN = Path(sys.executable).parent
PASSWORD = "Check-pass-1"
#: what rsync's daemon passes the pre-xfer hook for a HotSync master's full push (RSYNC_ARGn, rsync 3.5)
MASTER_ARGS = ["rsyncd", "--server", "-lHogtpAXrRe.LsfxCIvu", "--log-format=%i", "--no-msgs2stderr", "--timeout=20",
               "--max-delete=-1", "--delete", "--stats", "-@-1", "--partial-dir", ".hotsync-partial", "--delay-updates",
               "--numeric-ids", ".", "/"]
SERVER_ENV = {f"RSYNC_ARG{i}": a for i, a in enumerate(MASTER_ARGS)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(name: str, *args: str, root: Path, timeout: float = 120, input: str | None = None,
        env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "HOTSYNC_ROOT": str(root), **(env or {})}
    return subprocess.run([str(BIN / name), *args], capture_output=True, text=True, env=full, timeout=timeout,
                          input=input)


class Inbox:
    """The aiosmtpd handler of the ``smtp`` fixture (conftest.py): the mail it received, parsed."""

    def __init__(self) -> None:
        self.messages: list = []
        self.port = 0

    async def handle_DATA(self, server, session, envelope):
        from email import message_from_bytes

        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


class Pair:
    def __init__(self, base: Path, *, smtp_port: int | None = None, master_host: str = "127.0.0.1",
                 realtime: bool = False) -> None:
        self.master = base / "master"
        self.slave = base / "slave"
        self.master.mkdir()
        self.slave.mkdir()
        self.port = free_port()
        self.rsyncd_port = free_port()
        self.smtp_port = smtp_port
        self.master_host = master_host
        self.realtime = realtime     # off by default: the notifier would push on its own beside the test

    # ------------------------------------------------------------------ setup, the manual's way
    def config(self, root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cp = cli("config", *args, root=root)
        if check and cp.returncode != 0:
            raise AssertionError(f"config {' '.join(args)} on {root}: {cp.stderr}{cp.stdout}")
        return cp

    def save(self, root: Path, check: bool = True) -> subprocess.CompletedProcess:
        cp = cli("signal-event", "nethserver-hotsync-save", root=root)
        if check and cp.returncode != 0:
            raise AssertionError(f"signal-event on {root} failed:\n{cp.stdout}{cp.stderr}")
        return cp

    def pair(self) -> Pair:
        S, M = self.slave, self.master
        self.config(S, "setprop", "rsyncd", "password", PASSWORD, "TCPPort", str(self.rsyncd_port))
        self.config(S, "setprop", "hotsync", "role", "slave", "MasterHost", self.master_host, "port", str(self.port))
        self.save(S)
        self.config(M, "setprop", "rsyncd", "password", PASSWORD)
        self.config(M, "setprop", "hotsync", "role", "master", "SlaveHost", "127.0.0.1", "port", str(self.port),
                    "timeout", "20", "realtime", "enabled" if self.realtime else "disabled")
        if self.smtp_port:
            self.config(M, "setprop", "hotsync", "SmartHost", f"127.0.0.1:{self.smtp_port}", "MailTo",
                        "admin@example.org")
        self.save(M)
        return self.pin_both()

    def pin_both(self) -> Pair:
        """Mutual TLS, as the docs say: the slave pins the master's certificate by its fingerprint, then the
        master pins the slave's at its first push (the fingerprints compared by a person)."""
        S, M = self.slave, self.master
        self.config(S, "setprop", "hotsync", "MasterFingerprint", self.fingerprint(M))
        self.save(S)
        self.wait_listening()
        cp = self.sync("--accept-fingerprint", self.fingerprint(S))
        if cp.returncode != 0:
            raise AssertionError(f"the first push did not pair the hosts:\n{cp.stdout}{cp.stderr}")
        return self

    def fingerprint(self, root: Path) -> str:
        """That host's own certificate fingerprint, from its ``hotsync status --json``."""
        return self.status(root)["fingerprint"]

    def wait_listening(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"the slave's stunnel does not listen on {self.port}")

    # ------------------------------------------------------------------ use
    def sync(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return cli("hotsync", "sync", *args, root=self.master, timeout=timeout)

    def settled(self, timeout: float = 20) -> None:
        """Until the slave has recorded the sessions it received (its post-xfer hook runs after the master's
        rsync ended): no session in progress there."""
        import json

        path = self.slave / "var/lib/hotsync/sync/status.json"
        deadline = time.monotonic() + timeout
        while True:
            try:
                receiving = json.loads(path.read_text()).get("receiving")
            except (OSError, ValueError):
                receiving = None
            if not receiving:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the slave still records sessions in progress: {receiving}")
            time.sleep(0.02)

    @staticmethod
    def snapshots_written(root: Path, timeout: float = 20) -> None:
        """Until no detached writer of *root*'s public status snapshot runs or waits (sync/public.py): its temp
        file may appear and vanish under a copy of the tree meanwhile."""
        import fcntl

        locks = root / "run/hotsync"
        deadline = time.monotonic() + timeout
        while True:
            fds = []
            try:
                for name in ("public.queue.lock", "public.write.lock"):     # the order the writers take them
                    fd = os.open(locks / name, os.O_RDWR | os.O_CREAT, 0o600)
                    fds.append(fd)
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except FileNotFoundError:
                return                      # no lock directory: no writer ever ran
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"a public status writer of {root} still runs") from None
                time.sleep(0.02)
            finally:
                for fd in fds:
                    os.close(fd)

    def status(self, root: Path) -> dict:
        import json

        cp = cli("hotsync", "status", "--json", root=root)
        assert cp.returncode == 0, cp.stderr
        return json.loads(cp.stdout)

    def include(self, *paths: str) -> None:
        d = self.master / "etc/hotsync/include.d"
        d.mkdir(parents=True, exist_ok=True)
        (d / "test.include").write_text("".join(f"{p}\n" for p in paths))

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        for root in (self.master, self.slave):
            try:
                cli("config", "setprop", "hotsync", "status", "disabled", root=root, timeout=30)
                cli("signal-event", "nethserver-hotsync-save", root=root, timeout=60)
            except Exception:
                pass
            run = root / "run/hotsync"
            for pidfile in run.glob("*.pid") if run.is_dir() else ():
                try:
                    pid = int(pidfile.read_text().split()[0])
                    os.killpg(pid, signal.SIGKILL)
                except (OSError, ValueError, IndexError):
                    pass


def tree(base: Path) -> dict:
    """``{relative path: (type, mode, uid, gid, size, sha256 | link target, hard-link group)}``."""
    out: dict = {}
    inodes: dict = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            try:
                st = p.lstat()
                rel = str(p.relative_to(base))
                if stat.S_ISLNK(st.st_mode):      # as the master has it: a slave stores it munged (sync.symlinks)
                    what = ("l", os.readlink(p).removeprefix(MUNGED))
                elif stat.S_ISDIR(st.st_mode):
                    what = ("d", None)
                else:
                    what = ("f", hashlib.sha256(p.read_bytes()).hexdigest())
            except FileNotFoundError:   # gone since it was listed (a push's temp file renamed): not in the tree
                continue
            group = None
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                group = inodes.setdefault(st.st_ino, rel)
            out[rel] = (what[0], stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                        st.st_size if what[0] == "f" else None, what[1], group)
    # a hard-link group is named by its first member in walk order: make it order-independent
    groups: dict = {}
    for rel, v in sorted(out.items()):
        if v[6] is not None:
            groups.setdefault(v[6], rel)
    return {rel: (*v[:6], (groups[v[6]] if v[6] is not None else None)) for rel, v in out.items()}
