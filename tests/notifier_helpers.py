"""Helpers of the notifier's live tests: a private rsync daemon on loopback, a pusher speaking to it with
the product's own push arguments, tree comparison and a bounded random workload."""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from hotsync_events.realtime.notifier import PushResult
from hotsync_events.realtime.pusher import list_push_args
from hotsync_events.sync.rsync import push_args
from hotsync_events.sync.symlinks import MUNGED


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port: int, timeout: float = 10.0) -> bool:
    """Whether something listens on 127.0.0.1:*port* within *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


class RsyncDaemon:
    """``rsync --daemon`` on 127.0.0.1 with a temp config, module ``data`` writing into ``dest``."""

    def __init__(self, workdir: Path, dest: Path) -> None:
        self.workdir, self.dest = workdir, dest
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.conf = workdir / "rsyncd.conf"
        self.conf.write_text(
            f"pid file = {workdir}/rsyncd.pid\nuse chroot = false\nnumeric ids = yes\n"
            "socket options = TCP_NODELAY\nmunge symlinks = no\n"
            f"[data]\npath = {dest}\nread only = false\nuid = 0\ngid = 0\n")

    @property
    def url(self) -> str:
        return f"rsync://127.0.0.1:{self.port}/data/"

    def start(self) -> None:
        (self.workdir / "rsyncd.pid").unlink(missing_ok=True)
        self.proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={self.conf}",
                                      "--address=127.0.0.1", f"--port={self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.port):
            raise RuntimeError("rsync daemon did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class DaemonPusher:
    """The notifier's pusher against a plain daemon: the product's own argument lists
    (:func:`~hotsync_events.sync.rsync.push_args`, made a list push by
    :func:`~hotsync_events.realtime.pusher.list_push_args`), the TLS leg and the guards left out. Records
    every call."""

    def __init__(self, master_root: Path, includes: list[str], url: str, timeout: int = 10,
                 excludes: tuple[str, ...] = ()) -> None:
        self.src = str(master_root)
        self.includes = includes
        self.url = url
        self.timeout = timeout
        self.calls: list[tuple[int | None, bool, float]] = []
        run = Path(tempfile.mkdtemp(prefix="pusher-"))
        self.exclude_file = run / "exclude"
        self.exclude_file.write_text("".join(f"- {e}\n" for e in excludes))
        self.password_file = run / "password"      # the plain daemon asks none: rsync never reads it
        self.password_file.write_text("unused\n")
        os.chmod(self.password_file, 0o600)

    def args(self, sources: list[str]) -> list[str]:
        a = push_args(sources=sources, exclude_file=str(self.exclude_file), password_file=str(self.password_file),
                      timeout=self.timeout)
        assert a[-1].startswith("rsync://")
        return [*a[:-1], self.url]

    #: new directories come as one name each, sent whole (as the product's pusher does)
    sends_whole_dirs = True

    def __call__(self, paths, *, recursive: bool = False):
        t0 = time.monotonic()
        if paths is None:
            srcs = [f"{self.src}/.{p}" for p in self.includes if os.path.lexists(self.src + p)]
            cp = subprocess.run(self.args(srcs), capture_output=True, text=True)
        else:
            data = "".join(p.lstrip("/") + "\0" for p in paths)
            cp = subprocess.run(list_push_args(self.args([self.src + "/"]), recursive=recursive), input=data,
                                capture_output=True, text=True)
        ok = cp.returncode in (0, 24)
        self.calls.append((None if paths is None else len(paths), ok, time.monotonic() - t0))
        return PushResult(ok, cp.stderr.strip()[-300:], unreachable=cp.returncode in (10, 35))


def watch_process(root: Path, timeout: float = 30) -> subprocess.Popen:
    """``hotsync watch`` on *root*, once its start-up full sync is done."""
    import json
    import sys

    hotsync = str(Path(sys.executable).parent / "hotsync")
    proc = subprocess.Popen([hotsync, "watch", "-v", "--force", "--retry-max", "2"],
                            env={**os.environ, "HOTSYNC_ROOT": str(root)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    status = root / "run/hotsync/realtime.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            st = json.loads(status.read_text())
            if st.get("full_syncs") and st.get("running") is None:
                return proc
        except (OSError, ValueError):
            pass
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the notifier did not come up")


def stop_process(proc: subprocess.Popen) -> str:
    """End a :func:`watch_process` (a clean stop) and return its log."""
    proc.terminate()
    return proc.communicate(timeout=60)[0]


def tree_digest(top: Path, skip_suffix: str = ".swp") -> dict[str, tuple]:
    """Every entry below *top*: type, mode, size and content hash (files), target (links)."""
    out: dict[str, tuple] = {}
    if not top.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d != ".hotsync-partial"]
        for name in dirnames + filenames:
            if name.endswith(skip_suffix):
                continue
            p = Path(dirpath, name)
            rel = str(p.relative_to(top))
            try:
                st = p.lstat()
                if p.is_symlink():     # as the master has it: a slave stores it munged (sync.symlinks)
                    out[rel] = ("l", os.readlink(p).removeprefix(MUNGED))
                elif p.is_dir():
                    out[rel] = ("d", st.st_mode & 0o7777)
                else:
                    out[rel] = ("f", st.st_mode & 0o7777, st.st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            except FileNotFoundError:      # rsync's temp file, or the workload, moved it meanwhile
                out[rel] = ("gone",)
    return out


def wait_equal(a: Path, b: Path, timeout: float) -> tuple[bool, float]:
    t0 = time.monotonic()
    while True:
        if tree_digest(a) == tree_digest(b):
            return True, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            return False, time.monotonic() - t0
        time.sleep(0.05)


def random_workload(top: Path, seconds: float, seed: int, max_ops: int = 3000, pause: float = 0.002) -> int:
    """Create, append, overwrite, rename files and directories, delete, chmod, for *seconds* at most."""
    rnd = random.Random(seed)
    top.mkdir(parents=True, exist_ok=True)
    ops = 0
    t_end = time.monotonic() + seconds

    def files():
        return [p for p in top.rglob("*") if p.is_file() and not p.is_symlink()]

    def dirs():
        return [top] + [p for p in top.rglob("*") if p.is_dir() and not p.is_symlink()]

    while time.monotonic() < t_end and ops < max_ops:
        op = rnd.choice(["create", "create", "create", "append", "overwrite", "rename", "renamedir", "mkdir",
                         "delete", "rmdir", "chmod", "symlink"])
        try:
            if op == "create":
                d = rnd.choice(dirs())
                (d / f"f{rnd.randrange(10**6)}").write_bytes(os.urandom(rnd.randrange(0, 4096)))
            elif op == "append" and files():
                with open(rnd.choice(files()), "ab") as fh:
                    fh.write(os.urandom(rnd.randrange(1, 512)))
            elif op == "overwrite" and files():
                rnd.choice(files()).write_bytes(os.urandom(rnd.randrange(0, 2048)))
            elif op == "rename" and files():
                f = rnd.choice(files())
                f.rename(rnd.choice(dirs()) / f"r{rnd.randrange(10**6)}")
            elif op == "renamedir" and len(dirs()) > 1:
                d = rnd.choice(dirs()[1:])
                d.rename(d.parent / f"rd{rnd.randrange(10**6)}")
            elif op == "mkdir":
                (rnd.choice(dirs()) / f"d{rnd.randrange(10**6)}").mkdir()
            elif op == "delete" and files():
                rnd.choice(files()).unlink()
            elif op == "rmdir" and len(dirs()) > 1:
                shutil.rmtree(rnd.choice(dirs()[1:]))
            elif op == "chmod" and files():
                rnd.choice(files()).chmod(rnd.choice([0o600, 0o640, 0o644, 0o755]))
            elif op == "symlink":
                (rnd.choice(dirs()) / f"l{rnd.randrange(10**6)}").symlink_to(f"target{rnd.randrange(9)}")
        except (FileNotFoundError, FileExistsError, OSError):
            pass   # the tree moved under our feet: that is the point
        ops += 1
        time.sleep(pause)
    return ops


def rss_kb(pid: int | None = None) -> int:
    with open(f"/proc/{pid or 'self'}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
