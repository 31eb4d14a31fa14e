#!/usr/bin/env python3
"""Real-time sync beside lsyncd and plain rsync, all in the same run, on one large tree (issue 11).

Systems (run one after the other on the same master tree):
  hotsync     `hotsync watch` on a master/slave pair made with the project's own commands: every push
              goes rsync -> stunnel (TLS) -> stunnel -> rsync daemon, with the sync's guards
  lsyncd-0    Debian's lsyncd, default.rsync, delay = 0     -> a plain rsync daemon on loopback (no TLS)
  lsyncd-1    the same, delay = 1
  lsyncd-15   the same, default delay (15 s)
  rsync -a    one plain `rsync -a --delete` of the whole tree per change (the baseline)

Phases per system: latency (one small file every 0.3-1.5 s for HOTSYNC_BENCH_SECONDS, close() to the same
bytes on the slave: p50/p95/max), burst (HOTSYNC_BENCH_BURST new files at once: from the last close()
until the slave holds them all), rename (a directory of HOTSYNC_BENCH_RENAME files renamed: time and
bytes the receiving daemon took in), and the RSS of the watcher on the tree. Every figure is printed
beside its peers' and as a ratio to ours.

Environment: HOTSYNC_BENCH_FILES (200000), HOTSYNC_BENCH_SECONDS (60), HOTSYNC_BENCH_BURST (10000),
HOTSYNC_BENCH_RENAME (10000), HOTSYNC_BENCH_SYSTEMS (comma list, default all). Needs root-free loopback
only; everything runs under one temp directory that is removed at the end.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FILES = int(os.environ.get("HOTSYNC_BENCH_FILES", "200000"))
SECONDS = float(os.environ.get("HOTSYNC_BENCH_SECONDS", "60"))
BURST = int(os.environ.get("HOTSYNC_BENCH_BURST", "10000"))
RENAME = int(os.environ.get("HOTSYNC_BENCH_RENAME", "10000"))
SYSTEMS = [s for s in os.environ.get("HOTSYNC_BENCH_SYSTEMS", "hotsync,lsyncd-0,lsyncd-1,lsyncd-15,rsync").split(",") if s]
PER_DIR = 200
#: the peers run with their default rsync options, as deployed (and as issue 11 measured them);
#: HOTSYNC_BENCH_PEER_NODELAY=1 gives them --sockopts=TCP_NODELAY too (hotsync's pushes always have it)
PEER_OPTS = ["--sockopts=TCP_NODELAY"] if os.environ.get("HOTSYNC_BENCH_PEER_NODELAY") == "1" else []
BIN = Path(sys.executable).parent
PASSWORD = "Bench-pass-1"


def cmd(name: str) -> str:
    p = BIN / name
    return str(p) if p.exists() else (shutil.which(name) or name)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


# ------------------------------------------------------------------------------------------ the tree
def make_tree(top: Path, files: int, rename_files: int) -> None:
    """``files`` files of 64 bytes in directories of 200; ``big/`` holds the ``rename_files`` of them."""
    top.mkdir(parents=True, exist_ok=True)
    big = top / "big"
    big.mkdir()
    for i in range(min(rename_files, files)):
        (big / f"f{i:05d}").write_bytes(os.urandom(32).hex().encode())
    left = files - min(rename_files, files)
    d = 0
    while left > 0:
        sub = top / f"d{d:05d}"
        sub.mkdir()
        for i in range(min(PER_DIR, left)):
            (sub / f"f{i:03d}").write_bytes(os.urandom(32).hex().encode())
        left -= PER_DIR
        d += 1


# ------------------------------------------------------------------------------------------ daemons
class PlainDaemon:
    """The peers' receiver: a plain rsync daemon on loopback, logging each session's byte counts."""

    def __init__(self, work: Path, dest: Path) -> None:
        self.port = free_port()
        self.log = work / "rsyncd.log"
        self.conf = work / "rsyncd.conf"
        self.conf.write_text(f"pid file = {work}/rsyncd.pid\nuse chroot = false\nnumeric ids = yes\n"
                             f"socket options = TCP_NODELAY\nlog file = {self.log}\nmunge symlinks = no\n"
                             f"[data]\npath = {dest}\nread only = false\nuid = 0\ngid = 0\n")
        self.proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={self.conf}",
                                      "--address=127.0.0.1", f"--port={self.port}"])
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"rsync://127.0.0.1:{self.port}/data/"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def received_bytes(log: Path, offset: int) -> tuple[int, int]:
    """Bytes the daemon received in the sessions logged after *offset*; ``(bytes, new offset)``."""
    try:
        with open(log, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
            end = fh.tell()
    except OSError:
        return 0, offset
    total = sum(int(m.group(1).replace(",", "")) for m in re.finditer(r"received ([\d,]+) bytes", text))
    return total, end


# ------------------------------------------------------------------------------------------ systems
class System:
    name = ""
    pid: int | None = None

    def __init__(self, bench: Bench) -> None:
        self.b = bench

    @property
    def slave_top(self) -> Path:
        raise NotImplementedError

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def after_write(self) -> None:     # the plain-rsync baseline pushes here
        pass
    def bytes_since(self, offset: int) -> tuple[int, int]:
        return received_bytes(self.b.plain.log, offset)


class Hotsync(System):
    name = "hotsync"

    @property
    def slave_top(self) -> Path:
        return self.b.slave_root / "srv" / "bench"

    def start(self) -> None:
        env = {**os.environ, "HOTSYNC_ROOT": str(self.b.master_root)}
        self.logf = open(self.b.work / "watch.log", "w")  # noqa: SIM115 - the watcher's log, closed in stop()
        self.proc = subprocess.Popen([cmd("hotsync"), "watch"], env=env, stdout=self.logf, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        # ready when its start-up full sync is done
        status = self.b.master_root / "run" / "hotsync" / "realtime.json"
        t0 = time.monotonic()
        while time.monotonic() - t0 < 600:
            if self.proc.poll() is not None:
                raise RuntimeError("hotsync watch exited: " + (self.b.work / "watch.log").read_text()[-500:])
            try:
                import json

                st = json.loads(status.read_text())
                if st.get("full_syncs", 0) >= 1 and not st.get("full_sync_pending") and st.get("running") is None:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError("hotsync watch did not finish its first full sync")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.logf.close()

    def bytes_since(self, offset: int) -> tuple[int, int]:
        return received_bytes(self.b.slave_root / "var" / "log" / "hotsync" / "rsyncd.log", offset)


class Lsyncd(System):
    def __init__(self, bench: Bench, delay: int | None) -> None:
        super().__init__(bench)
        self.delay = delay
        self.name = f"lsyncd-{15 if delay is None else delay}"

    @property
    def slave_top(self) -> Path:
        return self.b.plain_dest / "srv" / "bench"

    def start(self) -> None:
        cfg = self.b.work / f"{self.name}.lua"
        self.log = self.b.work / f"{self.name}.log"
        delay = "" if self.delay is None else f"delay = {self.delay},"
        extra = ', _extra = { "--sockopts=TCP_NODELAY" }' if PEER_OPTS else ""
        cfg.write_text(f"""settings {{ logfile = "{self.log}", statusFile = "{self.b.work}/{self.name}.status",
  nodaemon = true, insist = true }}
sync {{ default.rsync, source = "{self.b.master_top}/", target = "{self.b.plain.url}srv/bench/", {delay}
  rsync = {{ archive = true{extra} }} }}
""")
        self.proc = subprocess.Popen(["lsyncd", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.proc.pid
        t0 = time.monotonic()
        while time.monotonic() - t0 < 600:
            if self.log.exists() and "finished" in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"lsyncd exited {self.proc.returncode}")
            time.sleep(0.2)
        raise RuntimeError("lsyncd did not finish its start-up sync")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class PlainRsync(System):
    name = "rsync -a"

    @property
    def slave_top(self) -> Path:
        return self.b.plain_dest / "srv" / "bench"

    def push(self) -> float:
        t0 = time.monotonic()
        subprocess.run(["rsync", "-a", "--delete", *PEER_OPTS, f"{self.b.master_top}/",
                        f"{self.b.plain.url}srv/bench/"], check=False)
        return time.monotonic() - t0

    def start(self) -> None:
        self.push()

    def after_write(self) -> None:
        self.push()


# ------------------------------------------------------------------------------------------ the bench
class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.master_root = work / "master"
        self.slave_root = work / "slave"
        self.master_top = self.master_root / "srv" / "bench"
        self.plain_dest = work / "plain"
        self.results: dict[str, dict] = {}

    # ---------------------------------------------------------------------------------- setup
    def setup(self) -> None:
        t0 = time.monotonic()
        make_tree(self.master_top, FILES, RENAME)
        print(f"tree: {FILES} files in {time.monotonic() - t0:.1f} s", flush=True)
        (self.plain_dest / "srv").mkdir(parents=True)
        subprocess.run(["cp", "-a", str(self.master_top), str(self.plain_dest / "srv" / "bench")], check=True)
        self.plain = PlainDaemon(self.work, self.plain_dest)
        if "hotsync" in SYSTEMS:
            self.pair()

    def pair(self) -> None:
        port = free_port()
        m, s = str(self.master_root), str(self.slave_root)
        (self.slave_root / "srv").mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(self.master_top), str(self.slave_root / "srv" / "bench")], check=True)
        steps = [(s, ["config", "setprop", "rsyncd", "password", PASSWORD]),
                 (s, ["config", "setprop", "hotsync", "role", "slave", "MasterHost", "127.0.0.1", "port", str(port)]),
                 (s, ["signal-event", "nethserver-hotsync-save"]),
                 (m, ["config", "setprop", "rsyncd", "password", PASSWORD]),
                 (m, ["config", "setprop", "hotsync", "role", "master", "SlaveHost", "127.0.0.1", "port", str(port)]),
                 (m, ["signal-event", "nethserver-hotsync-save"])]
        for r, argv in steps:
            cp = subprocess.run([cmd(argv[0]), *argv[1:]], env={**os.environ, "HOTSYNC_ROOT": r},
                                capture_output=True, text=True)
            if cp.returncode != 0:
                raise RuntimeError(f"pairing: {' '.join(argv)} failed: {cp.stdout[-300:]} {cp.stderr[-300:]}")
        inc = self.master_root / "etc" / "hotsync" / "include.d"
        inc.mkdir(parents=True, exist_ok=True)
        (inc / "bench.include").write_text("/srv/bench\n")
        t0 = time.monotonic()
        cp = subprocess.run([cmd("hotsync"), "sync"], env={**os.environ, "HOTSYNC_ROOT": m}, capture_output=True, text=True)
        if cp.returncode != 0:
            raise RuntimeError(f"first hotsync sync failed: {cp.stdout[-500:]} {cp.stderr[-500:]}")
        print(f"pair ready, first hotsync sync {time.monotonic() - t0:.1f} s", flush=True)

    def teardown(self) -> None:
        self.plain.stop()
        for r in (self.slave_root, self.master_root):
            if (r / "var").exists():
                subprocess.run([cmd("config"), "setprop", "hotsync", "status", "disabled"],
                               env={**os.environ, "HOTSYNC_ROOT": str(r)}, capture_output=True)
                subprocess.run([cmd("signal-event"), "nethserver-hotsync-save"],
                               env={**os.environ, "HOTSYNC_ROOT": str(r)}, capture_output=True)

    # ---------------------------------------------------------------------------------- phases
    def latency(self, sysm: System) -> list[float]:
        lat_dir = self.master_top / f"lat-{sysm.name.replace(' ', '')}"
        lat_dir.mkdir()
        slave_dir = sysm.slave_top / lat_dir.name
        if not isinstance(sysm, PlainRsync):
            self.wait_for(lambda: slave_dir.is_dir(), 30)
        pending: dict[str, tuple[bytes, float]] = {}
        lock = threading.Lock()
        lat: list[float] = []
        done = threading.Event()
        rnd = random.Random(7)

        def poller():
            while not done.is_set() or pending:
                with lock:
                    items = list(pending.items())
                for name, (data, t) in items:
                    try:
                        if (slave_dir / name).read_bytes() == data:
                            lat.append(time.monotonic() - t)
                            with lock:
                                del pending[name]
                    except OSError:
                        pass
                    if time.monotonic() - t > 60:
                        with lock:
                            pending.pop(name, None)
                        lat.append(float("inf"))
                time.sleep(0.002)

        th = threading.Thread(target=poller)
        th.start()
        t_end = time.monotonic() + SECONDS
        i = 0
        while time.monotonic() < t_end:
            data = os.urandom(rnd.randrange(512, 4096))
            name = f"w{i:04d}"
            with open(lat_dir / name, "wb") as fh:
                fh.write(data)
            t = time.monotonic()
            with lock:
                pending[name] = (data, t)
            sysm.after_write()
            i += 1
            time.sleep(max(0.0, rnd.uniform(0.3, 1.5) - (time.monotonic() - t)))
        done.set()
        th.join()
        return lat

    def burst(self, sysm: System) -> float:
        top = self.master_top / f"burst-{sysm.name.replace(' ', '')}"
        names = []
        top.mkdir()
        n = 0
        while n < BURST:
            sub = top / f"b{n // PER_DIR:03d}"
            sub.mkdir(exist_ok=True)
            for i in range(min(PER_DIR, BURST - n)):
                p = sub / f"f{i:03d}"
                p.write_bytes(b"x" * 1024)
                names.append(p.relative_to(self.master_top))
            n += PER_DIR
        t_last = time.monotonic()
        sysm.after_write()

        def complete():
            for rel in reversed(names):
                try:
                    if (sysm.slave_top / rel).stat().st_size != 1024:
                        return False
                except OSError:
                    return False
            return True

        self.wait_for(complete, 300, step=0.01)
        return time.monotonic() - t_last

    def rename(self, sysm: System, k: int) -> tuple[float, int]:
        src = self.master_top / ("big" if k == 0 else f"big{k}")
        if not src.exists():
            src = next(self.master_top.glob("big*"))
        dst = self.master_top / f"big{k + 1}"
        time.sleep(1.0)                        # let earlier pushes end; count only this one's bytes
        _, off = sysm.bytes_since(0)
        os.rename(src, dst)
        t0 = time.monotonic()
        sysm.after_write()
        old, new = sysm.slave_top / src.name, sysm.slave_top / dst.name

        def complete():
            if old.exists() or not new.is_dir():
                return False
            try:
                return sum(1 for _ in os.scandir(new)) >= min(RENAME, FILES)
            except OSError:
                return False

        self.wait_for(complete, 300, step=0.01)
        took = time.monotonic() - t0
        time.sleep(1.5 if not sysm.name.startswith("lsyncd") else 0.5)
        got, _ = sysm.bytes_since(off)
        return took, got

    @staticmethod
    def wait_for(pred, timeout: float, step: float = 0.05) -> None:
        t0 = time.monotonic()
        while not pred():
            if time.monotonic() - t0 > timeout:
                raise RuntimeError("timed out waiting for the slave")
            time.sleep(step)

    def run_system(self, sysm: System, k: int) -> None:
        print(f"== {sysm.name}", flush=True)
        t0 = time.monotonic()
        sysm.start()
        res: dict = {"startup": time.monotonic() - t0}
        peak = [rss_kb(sysm.pid) if sysm.pid else 0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                if sysm.pid:
                    peak[0] = max(peak[0], rss_kb(sysm.pid))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            res["rss_idle"] = rss_kb(sysm.pid) if sysm.pid else 0
            lat = self.latency(sysm)
            res.update(p50=pct(lat, 0.5), p95=pct(lat, 0.95), max=max(lat) if lat else float("nan"), n=len(lat))
            print(f"   latency p50 {res['p50']:.3f} s, p95 {res['p95']:.3f} s, max {res['max']:.3f} s ({len(lat)} writes)", flush=True)
            res["burst"] = self.burst(sysm)
            print(f"   burst of {BURST}: {res['burst']:.2f} s after the last write", flush=True)
            res["rename_s"], res["rename_bytes"] = self.rename(sysm, k)
            print(f"   rename of {RENAME} files: {res['rename_s']:.2f} s, {res['rename_bytes']:,} bytes received", flush=True)
        finally:
            stop.set()
            sampler.join()
            sysm.stop()
        res["rss_peak"] = peak[0]
        self.results[sysm.name] = res

    # ---------------------------------------------------------------------------------- report
    def report(self, plain_burst: float | None) -> None:
        names = list(self.results)
        ours = self.results.get("hotsync")
        print("\n== results (ratio = figure / hotsync's; lower is better for every row)")
        rows = [("latency p50 (s)", "p50", "{:.3f}"), ("latency p95 (s)", "p95", "{:.3f}"),
                ("latency max (s)", "max", "{:.3f}"), ("burst, last write -> equal (s)", "burst", "{:.2f}"),
                ("rename: time (s)", "rename_s", "{:.2f}"), ("rename: bytes received", "rename_bytes", "{:,}"),
                ("watcher RSS idle (MB)", "rss_idle", "{:.1f}"), ("watcher RSS peak (MB)", "rss_peak", "{:.1f}")]
        print(f"{'':32}" + "".join(f"{n:>22}" for n in names))
        for label, key, fmt in rows:
            line = f"{label:32}"
            for n in names:
                v = self.results[n].get(key)
                if v is None:
                    line += f"{'-':>22}"
                    continue
                shown = v / 1024 if key.startswith("rss") else v
                cell = fmt.format(shown)
                if ours and n != "hotsync" and ours.get(key):
                    cell += f" ({v / ours[key]:.2f}x)"
                line += f"{cell:>22}"
            print(line)
        if ours:
            print("\n== targets")
            print(f"latency p95 through TLS: {ours['p95']:.3f} s (target <= 0.3 s): "
                  f"{'met' if ours['p95'] <= 0.3 else 'MISSED'}")
            if "rsync -a" in self.results:
                base = self.results["rsync -a"]["burst"]
                r = ours["burst"] / base
                print(f"burst: hotsync {ours['burst']:.2f} s vs one plain full rsync {base:.2f} s = {r:.2f}x "
                      f"(target <= 1.3x): {'met' if r <= 1.3 else 'MISSED'}")
            print(f"notifier RSS on the {FILES}-file tree: peak {ours['rss_peak'] / 1024:.1f} MB (target <= 80 MB): "
                  f"{'met' if ours['rss_peak'] <= 80 * 1024 else 'MISSED'}")


def main() -> int:
    for tool in ("rsync", "lsyncd") if any(s.startswith("lsyncd") for s in SYSTEMS) else ("rsync",):
        if shutil.which(tool) is None:
            print(f"bench/realtime.py: {tool} is not installed", file=sys.stderr)
            return 2
    v = subprocess.run(["lsyncd", "-version"], capture_output=True, text=True).stdout.strip() if shutil.which("lsyncd") else "-"
    print(f"bench/realtime.py: {FILES} files, latency phase {SECONDS:.0f} s, burst {BURST}, rename {RENAME}; "
          f"{v}; {subprocess.run(['rsync', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}")
    work = Path(tempfile.mkdtemp(prefix="hotsync-bench-rt."))
    bench = Bench(work)
    try:
        bench.setup()
        makers = {"hotsync": lambda: Hotsync(bench), "lsyncd-0": lambda: Lsyncd(bench, 0),
                  "lsyncd-1": lambda: Lsyncd(bench, 1), "lsyncd-15": lambda: Lsyncd(bench, None),
                  "rsync": lambda: PlainRsync(bench)}
        for k, name in enumerate(SYSTEMS):
            try:
                bench.run_system(makers[name](), k)
            except Exception as exc:
                print(f"   {name}: FAILED: {exc}", flush=True)
        bench.report(None)
    finally:
        bench.teardown()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
