"""What bench/realtime.py and bench/sync.py share: the machine's load, CPU of a process tree, a CPU hog, a
plain rsync daemon on loopback (the baselines' receiver), the baselines' way through a pair's TLS leg,
percentiles and a table printer.

Nothing here talks to anything but 127.0.0.1; every loop is bounded in count or time.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

TICK = os.sysconf("SC_CLK_TCK")
BIN = Path(sys.executable).parent


def cmd(name: str) -> str:
    p = BIN / name
    return str(p) if p.exists() else (shutil.which(name) or name)


def precompile() -> str:
    """Byte-compile the checkout as an installed package is (``make bench`` does the same): with
    PYTHONDONTWRITEBYTECODE set (as in some shells and CI), every CLI run and every slave hook would compile
    its ~70 modules from source again, which the benches must not count."""
    top = HERE.parent
    dirs = [str(top / d) for d in ("hotsync_events", "plugins") if (top / d).is_dir()]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *dirs], capture_output=True, check=False)
    return "byte-compiled" + (" (PYTHONDONTWRITEBYTECODE is set here)" if os.environ.get("PYTHONDONTWRITEBYTECODE")
                              else "")


def work_dir(prefix: str) -> Path:
    """A fresh directory for a bench's trees, under ``$HOTSYNC_BENCH_DIR`` (else ``/var/tmp``), with a fresh
    ext4 file system of its own mounted on it (a 6 GiB sparse image on a loop device, removed at exit) when
    run as root with ``mkfs.ext4`` (``HOTSYNC_BENCH_FRESH_FS=0``: none).

    Why: on this kind of machine the test suite and the benches create and delete millions of files, and
    creating a file on the shared disk's ext4 then costs what its block group's history makes it: 10,000
    files of 1 KiB took 0.28-0.34 s in some directories and 3.8-5.3 s in others, the same hour (/tmp,
    /var/tmp, /root), which swamped the writer's and the receivers' figures. Every system of a run works in
    the same file system, so the ratios stay like for like."""
    import atexit
    import tempfile

    base = os.environ.get("HOTSYNC_BENCH_DIR") or "/var/tmp"
    if not os.path.isdir(base):
        raise SystemExit(f"{base} is not a directory: set HOTSYNC_BENCH_DIR to where the bench may work")
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4") or os.environ.get("HOTSYNC_BENCH_FRESH_FS") == "0":
        return work
    image = work.with_name(work.name + ".img")
    with open(image, "wb") as fh:
        fh.truncate(6 << 30)
    # 1.5 million inodes (the realtime bench makes about 300,000 files); the inode tables written now: no
    # lazy initialisation in the kernel's background while the bench measures
    subprocess.run(["mkfs.ext4", "-q", "-F", "-N", "1500000", "-E", "lazy_itable_init=0,lazy_journal_init=0",
                    str(image)], check=True, timeout=300)
    subprocess.run(["mount", "-o", "loop", str(image), str(work)], check=True, timeout=60)

    def remove() -> None:
        subprocess.run(["umount", "-l", str(work)], check=False, timeout=60)
        image.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    atexit.register(remove)
    return work


def fs_line(work: Path) -> str:
    """What the bench works on, for its header."""
    cp = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "--target", str(work)], capture_output=True,
                        text=True, timeout=30)
    return f"work dir {work} ({cp.stdout.strip() or 'unknown file system'})"


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "?"


def machine_line() -> str:
    rsync = subprocess.run(["rsync", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return f"{os.cpu_count()} CPUs, load average {loadavg()}; {rsync}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


# ------------------------------------------------------------------------------------------ CPU of a tree
def _stat(pid: int) -> tuple[int, int] | None:
    """``(ppid, utime+stime+cutime+cstime in ticks)`` of a live process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2:].split()
    # fields after the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return int(rest[1]), sum(int(x) for x in rest[11:15])


def tree_cpu(pid: int | None) -> float:
    """CPU seconds of *pid*, its reaped children (cutime/cstime), and its live descendants."""
    if not pid:
        return 0.0
    parents: dict[int, int] = {}
    own: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st is not None:
                parents[int(d)], own[int(d)] = st
    if pid not in own:
        return 0.0
    total, todo = 0, [pid]
    seen: set[int] = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        total += own.get(p, 0)
        todo.extend(c for c, pp in parents.items() if pp == p)
    return total / TICK


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# ------------------------------------------------------------------------------------------ load
class CpuHogs:
    """``per_core`` CPU-bound processes per core (busy loops at normal priority), each ending by itself
    after *limit* seconds at the latest; :meth:`stop` ends them at once (by pid)."""

    def __init__(self, per_core: int = 2, limit: float = 900.0) -> None:
        self.n = per_core * (os.cpu_count() or 1)
        self.limit = limit
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> CpuHogs:
        code = f"import time\nt = time.monotonic() + {self.limit}\nwhile time.monotonic() < t:\n    pass\n"
        # each in a session of its own, as a service or a batch job would be: with the kernel's autogroups (on
        # where no cpu cgroup separates services) a session is a scheduling group
        self.procs = [subprocess.Popen([sys.executable, "-c", code], start_new_session=True) for _ in range(self.n)]
        time.sleep(0.5)             # let the scheduler see them
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []


# ------------------------------------------------------------------------------------------ plain daemon
class PlainDaemon:
    """The baselines' receiver: a plain rsync daemon on 127.0.0.1 (no TLS, no hooks), logging byte counts."""

    def __init__(self, work: Path, dest: Path, nodelay: bool = True) -> None:
        self.port = free_port()
        self.log = work / "plain-rsyncd.log"
        self.conf = work / "plain-rsyncd.conf"
        dest.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(f"pid file = {work}/plain-rsyncd.pid\nuse chroot = false\nnumeric ids = yes\n"
                             + ("socket options = TCP_NODELAY\n" if nodelay else "")
                             + f"log file = {self.log}\nmunge symlinks = no\nreverse lookup = no\n"
                             f"[data]\npath = {dest}\nread only = false\n"
                             + ("uid = 0\ngid = 0\n" if os.geteuid() == 0 else ""))
        self.proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={self.conf}",
                                      "--address=127.0.0.1", f"--port={self.port}"], start_new_session=True)
        self.pid = self.proc.pid
        from notifier_helpers import wait_port     # tests/ (on the path beside sync_pair)

        if not wait_port(self.port):
            raise RuntimeError("the plain rsync daemon does not listen")

    def url(self, sub: str = "") -> str:
        return f"rsync://127.0.0.1:{self.port}/data/{sub}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def pair_client(pair, work: Path, kind: str) -> tuple[dict, list[str]]:
    """``(env, rsync client options)`` of a baseline that pushes through *pair*'s TLS leg and the slave's
    daemon and hooks the way hotsync does: stunnel's client as rsync's remote shell, over pipes
    (RSYNC_CONNECT_PROG's loopback TCP pair would slow it with Nagle stalls hotsync does not have); the pair's
    password; an early input of session *kind* at the pair's epoch (the slave accepts no push without one);
    no incremental recursion, which the slave refuses (docs/security.md). Its files go in *work*."""
    from sync_pair import PASSWORD

    from hotsync_events.paths import Root
    from hotsync_events.sync import fence

    work.mkdir(parents=True, exist_ok=True)
    pw, early = work / "pw", work / f"early.{kind}"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    early.write_text(f"hotsync-epoch {fence.read_epoch(Root(pair.master))} kind={kind} nonce={os.urandom(16).hex()}\n")
    env = {**os.environ, "HOTSYNC_STUNNEL": str(shutil.which("stunnel4") or shutil.which("stunnel")),
           "HOTSYNC_STUNNEL_CONF": f"{pair.master}/etc/stunnel/hotsync-client.conf"}
    return env, ["-e", """sh -c 'exec "$HOTSYNC_STUNNEL" "$HOTSYNC_STUNNEL_CONF"' stunnel""",
                 f"--password-file={pw}", f"--early-input={early}", "--stderr=client", "--no-inc-recursive"]


def log_offset(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


def received_bytes(log: Path, offset: int) -> tuple[int, int]:
    """``(bytes the daemon received, sessions)`` in the sessions logged after *offset* (an rsync daemon's
    ``sent X bytes  received Y bytes`` lines)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return 0, 0
    found = re.findall(r"received ([\d,]+) bytes", text)
    return sum(int(x.replace(",", "")) for x in found), len(found)


def wait_for(pred, timeout: float, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        out.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
    return "\n".join(out)
