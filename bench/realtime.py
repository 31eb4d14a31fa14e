#!/usr/bin/env python3
"""Real-time sync against its baselines, every target of issue 20 in one run, the ratios printed.

Systems, each pushing from its own copy of the same tree (the same files, the same sizes):

  hotsync    `hotsync watch` on a master/slave pair made with the manual's commands (tests/sync_pair.py:
             the slave pins the master's fingerprint, the master's first push accepts the slave's): every
             push is rsync -> stunnel (mutual TLS) -> stunnel -> rsync --server --daemon with the slave's
             pre/post-xfer hooks, and the guards
  lsyncd-0   Debian's lsyncd 2.2 (/usr/bin/lsyncd), default.rsync, `delay = 0`, archive, to a plain rsync
             daemon on 127.0.0.1 (no TLS, no hooks), rsync options as deployed (--peer-nodelay adds
             --sockopts=TCP_NODELAY)
  rsync      the baseline: one plain `rsync -a` per change (of the changed file; for a burst, one run of the
             burst's directory; for a rename, one run of the whole tree) to the same plain daemon

Phases (issue 20's targets):
  latency    --writes small files (512-4096 B) 0.3-1.5 s apart; close() to the same bytes on the replica,
             p50/p95/max; once on the machine as it is ("quiet") and once with 2 CPU-bound processes per
             core running beside it ("loaded")
  burst      --burst new files of 1 KiB by a separate writer process: the writer's time while the system
             watches over its time alone (nothing watching); first write to replica equal over one plain
             rsync of the same burst; CPU seconds of the watcher and its children (and of the receiver)
  rename     a directory of --rename files renamed: time until the replica shows it and bytes the receiving
             daemon took in, over one plain `rsync -a --delete` of the tree after the same rename

Scheduling: every daemon runs in a session of its own, as a service would (hotsync's notifier and the
slave's listener, lsyncd, the plain rsync daemon), and so does each CPU hog. With the kernel's autogroups
(on where no cpu cgroup separates services, as on a default Debian host) a session is a scheduling group:
under load each group gets its share, so a push's latency follows the CPU it costs. The header says
whether autogroups are on.

Options: --quick (a smoke run: tiny sizes, a few seconds of writes), --systems, --phases, --no-loaded,
--json FILE (the figures, for scripts). Only 127.0.0.1; every wait is bounded; everything lives under one
temp directory, removed at the end, and every process started here is stopped by its pid.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import (CpuHogs, PlainDaemon, cmd, loadavg, log_offset, machine_line, pair_client, pct,  # noqa: E402
                      precompile, fs_line, received_bytes, rss_kb, table, tree_cpu, wait_for, work_dir)
from sync_pair import Pair  # noqa: E402  (benchlib put tests/ on the path)

PER_DIR = 200
WRITER = r"""
import os, sys, time
top, n, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
blob = b"x" * 1024
t0 = time.monotonic()
for i in range(n):
    if i % per == 0:
        os.mkdir(os.path.join(top, "b%03d" % (i // per)))
    with open(os.path.join(top, "b%03d" % (i // per), "f%03d" % (i % per)), "wb") as fh:
        fh.write(blob)
t1 = time.monotonic()
c = os.times()
print(t0, t1, c.user + c.system)
"""


def make_tree(top: Path, files: int, rename_files: int) -> None:
    """*files* files of 64 bytes in directories of 200, and ``big/`` with *rename_files* more."""
    big = top / "big"
    big.mkdir(parents=True)
    for i in range(rename_files):
        (big / f"f{i:05d}").write_bytes(os.urandom(32).hex().encode())
    d = 0
    left = files
    while left > 0:
        sub = top / f"d{d:04d}"
        sub.mkdir()
        for i in range(min(PER_DIR, left)):
            (sub / f"f{i:03d}").write_bytes(os.urandom(32).hex().encode())
        left -= PER_DIR
        d += 1


def write_burst(top: Path, n: int) -> dict:
    """A separate process writes *n* files of 1 KiB under *top*: its first/last write times and CPU."""
    top.mkdir(parents=True)
    cp = subprocess.run([sys.executable, "-c", WRITER, str(top), str(n), str(PER_DIR)], capture_output=True,
                        text=True, timeout=600, check=True)
    t0, t1, cpu = (float(x) for x in cp.stdout.split())
    return {"t_first": t0, "t_last": t1, "writer_s": t1 - t0, "writer_cpu": cpu}


def burst_complete(replica: Path, n: int):
    names = [Path(f"b{i // PER_DIR:03d}") / f"f{i % PER_DIR:03d}" for i in range(n)]

    def done() -> bool:
        for rel in reversed(names):           # the last written is the likeliest missing
            try:
                if (replica / rel).stat().st_size != 1024:
                    return False
            except OSError:
                return False
        return True
    return done


# ------------------------------------------------------------------------------------------ systems
class System:
    name = ""
    pid: int | None = None         # the watcher (its children count with it)
    receiver: int | None = None    # the receiving side's long-lived process (its children count with it)

    def __init__(self, b: Bench) -> None:
        self.b = b

    src: Path            # the tree this system pushes from
    dst: Path            # where the replica of src is

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def idle(self) -> None:          # until nothing is in flight
        time.sleep(0.5)

    def after_write(self, path: Path) -> None:    # the per-change baseline pushes here
        pass

    def bytes_log(self) -> Path:
        return self.b.plain.log


class Hotsync(System):
    name = "hotsync"

    def __init__(self, b: Bench) -> None:
        super().__init__(b)
        self.src = b.pair.master / "srv/bench"
        self.dst = b.pair.slave / "srv/bench"
        self.status = b.pair.master / "run/hotsync/realtime.json"

    def _status(self) -> dict:
        try:
            return json.loads(self.status.read_text())
        except (OSError, ValueError):
            return {}

    def start(self) -> None:
        self.status.unlink(missing_ok=True)
        env = {**os.environ, "HOTSYNC_ROOT": str(self.b.pair.master)}
        self.logf = open(self.b.work / "watch.log", "a")  # noqa: SIM115 - the watcher's log, closed in stop()
        self.proc = subprocess.Popen([cmd("hotsync"), "watch", "--force"], env=env, stdout=self.logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        self.receiver = self.b.slave_stunnel()
        ok = wait_for(lambda: self.proc.poll() is not None or (
            self._status().get("full_syncs", 0) >= 1 and not self._status().get("full_sync_pending")
            and self._status().get("running") is None), 300, 0.1)
        if not ok or self.proc.poll() is not None:
            raise RuntimeError("hotsync watch did not finish its first full sync: "
                               + (self.b.work / "watch.log").read_text()[-800:])

    def idle(self) -> None:
        def quiet() -> bool:
            st = self._status()
            return st.get("running") is None and not st.get("queued_paths") and not st.get("full_sync_pending")
        time.sleep(0.3)
        wait_for(quiet, 60, 0.05)
        time.sleep(1.2)           # the status file is written at most once a second

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()

    def bytes_log(self) -> Path:
        return self.b.pair.slave / "var/log/hotsync/rsyncd.log"


class Lsyncd(System):
    name = "lsyncd-0"

    def __init__(self, b: Bench) -> None:
        super().__init__(b)
        self.src = b.src / "lsyncd"
        self.dst = b.plain_dest / "lsyncd"

    def start(self) -> None:
        cfg = self.b.work / "lsyncd.lua"
        self.log = self.b.work / "lsyncd.log"
        self.log.unlink(missing_ok=True)
        extra = ', _extra = { "--sockopts=TCP_NODELAY" }' if self.b.args.peer_nodelay else ""
        cfg.write_text(f"""settings {{ logfile = "{self.log}", statusFile = "{self.b.work}/lsyncd.status",
  nodaemon = true, insist = true }}
sync {{ default.rsync, source = "{self.src}/", target = "{self.b.plain.url('lsyncd/')}", delay = 0,
  rsync = {{ archive = true{extra} }} }}
""")
        self.proc = subprocess.Popen(["lsyncd", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self.pid = self.proc.pid
        self.receiver = self.b.plain.pid
        ok = wait_for(lambda: self.proc.poll() is not None or (
            self.log.exists() and "finished" in self.log.read_text(errors="replace")), 300, 0.1)
        if not ok or self.proc.poll() is not None:
            raise RuntimeError(f"lsyncd did not finish its start-up sync (exit {self.proc.poll()})")

    def idle(self) -> None:
        time.sleep(1.5)      # lsyncd has no "idle" signal; its delay is 0 and its queue drains fast

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class PlainRsync(System):
    name = "rsync"

    def __init__(self, b: Bench) -> None:
        super().__init__(b)
        self.src = b.src / "rsync"
        self.dst = b.plain_dest / "rsync"
        self.receiver = b.plain.pid

    def after_write(self, path: Path) -> None:
        rel = path.relative_to(self.src)
        subprocess.run(["rsync", "-a", *self.b.peer_opts, str(path), self.b.plain.url(f"rsync/{rel.parent}/")],
                       check=False, timeout=60)

    def push_all(self) -> float:
        t0 = time.monotonic()
        subprocess.run(["rsync", "-a", "--delete", *self.b.peer_opts, f"{self.src}/", self.b.plain.url("rsync/")],
                       check=False, timeout=600)
        return time.monotonic() - t0


# ------------------------------------------------------------------------------------------ the bench
class Bench:
    def __init__(self, work: Path, args) -> None:
        self.work = work
        self.args = args
        self.src = work / "src"
        self.plain_dest = work / "plain"
        self.peer_opts = ["--sockopts=TCP_NODELAY"] if args.peer_nodelay else []
        self.res: dict = {"config": {k: v for k, v in vars(args).items() if k != "json"}, "load": {}}

    def note_load(self, label: str) -> None:
        # each phase starts on a settled machine: the setup's (or the previous phase's) dirty pages written
        # back first, for every system alike (the first writes of a phase otherwise met the write-back)
        os.sync()
        time.sleep(1.0)
        self.res["load"][label] = loadavg()

    def setup(self) -> None:
        t0 = time.monotonic()
        proto = self.work / "proto"
        make_tree(proto, self.args.files, self.args.rename)
        (self.work / "pair").mkdir()
        self.pair = Pair(self.work / "pair").pair()     # mutual TLS pinned as a person would (sync_pair.py)
        for top in (self.src / "lsyncd", self.src / "rsync", self.plain_dest / "lsyncd", self.plain_dest / "rsync",
                    self.pair.master / "srv/bench", self.pair.slave / "srv/bench"):
            top.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-a", str(proto), str(top)], check=True)
        self.plain = PlainDaemon(self.work, self.plain_dest, nodelay=True)
        self.pair.include("/srv/bench")
        # a rename of --rename files is a deletion of as many on the slave: with the default MaxDeletePercent
        # (20) the guard would hold it on a tree under 5x its size. The guard's dry run runs all the same.
        self.pair.config(self.pair.master, "setprop", "hotsync", "MaxDeletePercent", "60")
        cp = self.pair.sync()
        if cp.returncode != 0:
            raise RuntimeError(f"the first hotsync sync failed: {cp.stdout[-600:]}{cp.stderr[-600:]}")
        print(f"setup: {self.args.files + self.args.rename} files x 4 copies, pair paired and synced in "
              f"{time.monotonic() - t0:.1f} s", flush=True)

    def slave_stunnel(self) -> int | None:
        for pf in (self.pair.slave / "run/hotsync").glob("*stunnel*.pid"):
            try:
                return int(pf.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        return None

    def teardown(self) -> None:
        try:
            self.plain.stop()
        except Exception:
            pass
        try:
            self.pair.close()
        except Exception:
            pass

    # ---------------------------------------------------------------------------------- latency
    def latency(self, s: System, label: str) -> list[float]:
        d = s.src / f"lat-{label}"
        d.mkdir()
        replica = s.dst / d.name
        if not isinstance(s, PlainRsync):
            wait_for(replica.is_dir, 30)
        else:
            subprocess.run(["rsync", "-a", str(d), self.plain.url("rsync/")], check=False, timeout=60)
        pending: dict[str, tuple[bytes, float]] = {}
        lock = threading.Lock()
        lat: list[float] = []
        done = threading.Event()
        rnd = random.Random(7)

        def poller() -> None:
            t_stop = time.monotonic() + self.args.writes * 3 + 120      # bounded whatever happens
            while (not done.is_set() or pending) and time.monotonic() < t_stop:
                with lock:
                    items = list(pending.items())
                for name, (data, t) in items:
                    try:
                        if (replica / name).read_bytes() == data:
                            lat.append(time.monotonic() - t)
                            with lock:
                                del pending[name]
                            continue
                    except OSError:
                        pass
                    if time.monotonic() - t > 30:
                        lat.append(float("inf"))
                        with lock:
                            del pending[name]
                time.sleep(0.002)

        th = threading.Thread(target=poller)
        th.start()
        lo, hi = self.args.gap
        for i in range(self.args.writes):
            data = os.urandom(rnd.randrange(512, 4096))
            p = d / f"w{i:04d}"
            with open(p, "wb") as fh:
                fh.write(data)
            t = time.monotonic()
            with lock:
                pending[p.name] = (data, t)
            s.after_write(p)
            time.sleep(max(0.0, rnd.uniform(lo, hi) - (time.monotonic() - t)))
        done.set()
        th.join()
        return lat

    # ---------------------------------------------------------------------------------- burst
    def burst_alone(self, k: int) -> dict:
        """The writer with nothing watching, then one plain rsync of the same files (the baselines)."""
        top = self.src / "rsync" / f"burst-alone{k}"
        w = write_burst(top, self.args.burst)
        t0 = time.monotonic()
        off = log_offset(self.plain.log)
        subprocess.run(["rsync", "-a", *self.peer_opts, f"{top}/", self.plain.url(f"rsync/{top.name}/")],
                       check=True, timeout=600)
        w["rsync_s"] = time.monotonic() - t0
        wait_for(lambda: received_bytes(self.plain.log, off)[1] >= 1, 5, 0.05)   # the daemon logs as it ends
        w["rsync_bytes"] = received_bytes(self.plain.log, off)[0]
        ok = burst_complete(self.plain_dest / "rsync" / top.name, self.args.burst)()
        if not ok:
            raise RuntimeError("the plain rsync of the burst left the replica incomplete")
        w["flags_s"] = self.burst_with_flags(top, k)
        return w

    def burst_with_flags(self, top: Path, k: int) -> float:
        """One rsync of the same burst with the notifier's own options, through the pair's TLS leg and the
        slave's daemon and hooks, without hotsync around it (as bench/sync.py's "same flags"): what the
        options and the transport cost apart from the notifier. The copy lands beside the bench's tree on the
        slave and is removed from there after."""
        staged = self.work / "flags" / f"k{k}"
        (staged / "srv/bench").mkdir(parents=True)
        os.rename(top, staged / "srv/bench" / f"flags-burst{k}")
        env, client = pair_client(self.pair, self.work / "flags", "realtime")
        # the notifier's push options (hotsync_events.sync.rsync.push_args without --delay-updates)
        flags = ["rsync", "-aHAX", "--no-D", "--relative", "--numeric-ids", "--delete",
                 "--partial-dir=.hotsync-partial", "--modify-window=-1", *client]
        t0 = time.monotonic()
        subprocess.run([*flags, f"{staged}/./srv/bench/flags-burst{k}", "hotsyncuser@x::hotsync/"], check=True,
                       timeout=600, env=env, capture_output=True)
        took = time.monotonic() - t0
        got = self.pair.slave / "srv/bench" / f"flags-burst{k}"
        if not burst_complete(got, self.args.burst)():
            raise RuntimeError("the rsync of the burst with hotsync's options left the slave incomplete")
        shutil.rmtree(got)          # the slave as the pair left it (the master never had these files)
        shutil.rmtree(staged)
        return took

    def burst(self, s: System) -> dict:
        top = s.src / "burst"
        s.idle()
        cpu0, rcv0 = tree_cpu(s.pid), tree_cpu(s.receiver)
        w = write_burst(top, self.args.burst)
        done = burst_complete(s.dst / "burst", self.args.burst)
        if not wait_for(done, self.args.wait_max, 0.01):
            logs = [p for p in (getattr(s, "log", None), self.work / "watch.log", self.plain.log) if p]
            tail = "".join(f"\n--- {p}:\n" + p.read_text(errors="replace")[-1500:] for p in logs if p.exists())
            raise RuntimeError(f"{s.name}: the replica did not hold the burst after {self.args.wait_max} s{tail}")
        t_equal = time.monotonic()
        s.idle()
        w.update(first_to_equal=t_equal - w["t_first"], last_to_equal=t_equal - w["t_last"],
                 cpu=tree_cpu(s.pid) - cpu0, receiver_cpu=tree_cpu(s.receiver) - rcv0,
                 rss_kb=rss_kb(s.pid) if s.pid else 0)
        return w

    # ---------------------------------------------------------------------------------- rename
    def rename(self, s: System) -> dict:
        src, dst = s.src / "big", s.src / "big-renamed"
        if isinstance(s, PlainRsync):
            s.push_all()                               # the replica equal before the rename
        s.idle()
        log = s.bytes_log()
        off = log_offset(log)
        os.rename(src, dst)
        t0 = time.monotonic()
        if isinstance(s, PlainRsync):
            s.push_all()
        old, new = s.dst / "big", s.dst / "big-renamed"

        def done() -> bool:
            if old.exists() or not new.is_dir():
                return False
            try:
                return sum(1 for _ in os.scandir(new)) >= self.args.rename
            except OSError:
                return False

        if not wait_for(done, self.args.wait_max, 0.01):
            raise RuntimeError(f"the replica did not show the rename after {self.args.wait_max} s")
        took = time.monotonic() - t0
        s.idle()
        got, sessions = received_bytes(log, off)
        return {"seconds": took, "bytes": got, "sessions": sessions}

    # ---------------------------------------------------------------------------------- runs
    def run(self) -> None:
        a = self.args
        makers = {"hotsync": Hotsync, "lsyncd-0": Lsyncd, "rsync": PlainRsync}
        systems = [makers[n](self) for n in a.systems]
        if "burst" in a.phases:
            self.note_load("burst alone (before)")
            self.res["burst_alone"] = [self.burst_alone(0)]
        for cond in (["quiet"] + ([] if a.no_loaded else ["loaded"])) if "latency" in a.phases else ["quiet"]:
            for s in systems:
                if cond == "loaded" and "latency" not in a.phases:
                    continue
                r = self.res.setdefault(s.name, {})
                print(f"== {s.name} ({cond})  load average {loadavg()}", flush=True)
                s.start()
                try:
                    if "latency" in a.phases:
                        self.note_load(f"{s.name} latency {cond}")
                        if cond == "loaded":
                            with CpuHogs(2, limit=a.writes * 3 + 120):
                                lat = self.latency(s, cond)
                        else:
                            lat = self.latency(s, cond)
                        r[f"latency_{cond}"] = {"p50": pct(lat, 0.5), "p95": pct(lat, 0.95), "max": max(lat),
                                                "n": len(lat), "all": [round(x, 4) for x in lat]}
                        print(f"   latency ({cond}): p50 {pct(lat, .5):.3f} s  p95 {pct(lat, .95):.3f} s  "
                              f"max {max(lat):.3f} s  ({len(lat)} writes)", flush=True)
                    if cond == "quiet" and "burst" in a.phases and not isinstance(s, PlainRsync):
                        self.note_load(f"{s.name} burst")
                        r["burst"] = b = self.burst(s)
                        print(f"   burst of {a.burst}: writer {b['writer_s']:.2f} s; first write -> equal "
                              f"{b['first_to_equal']:.2f} s (last write -> equal {b['last_to_equal']:.2f} s); "
                              f"CPU watcher+children {b['cpu']:.2f} s, receiver {b['receiver_cpu']:.2f} s", flush=True)
                    if cond == "quiet" and "rename" in a.phases and (s.name != "lsyncd-0" or a.lsyncd_rename):
                        self.note_load(f"{s.name} rename")
                        r["rename"] = x = self.rename(s)
                        print(f"   rename of a {a.rename}-file directory: {x['seconds']:.2f} s, "
                              f"{x['bytes']:,} bytes received in {x['sessions']} session(s)", flush=True)
                finally:
                    s.stop()
        if "burst" in a.phases:
            self.note_load("burst alone (after)")
            self.res["burst_alone"].append(self.burst_alone(1))

    # ---------------------------------------------------------------------------------- report
    def report(self) -> list[tuple[str, float, float, float, str]]:
        """Print every figure beside its baseline, and the targets; returns the target rows."""
        R = self.res
        hs, ls, rs = R.get("hotsync", {}), R.get("lsyncd-0", {}), R.get("rsync", {})
        rows = [["", "hotsync (TLS)", "lsyncd-0", "rsync -a", "hotsync/lsyncd", "hotsync/rsync"]]

        def f(x, fmt="{:.3f}"):
            return "-" if x is None else fmt.format(x)

        def ratio(x, y):
            return "-" if x is None or not y else f"{x / y:.2f}x"

        for cond in ("quiet", "loaded"):
            for q in ("p50", "p95", "max"):
                h, ly, r = ((d.get(f"latency_{cond}") or {}).get(q) for d in (hs, ls, rs))
                if h is None and ly is None and r is None:
                    continue
                rows.append([f"latency {cond} {q} (s)", f(h), f(ly), f(r), ratio(h, ly), ratio(h, r)])
        alone = R.get("burst_alone") or []
        if alone:
            w_alone = sum(x["writer_s"] for x in alone) / len(alone)
            r_alone = sum(x["rsync_s"] for x in alone) / len(alone)
            f_alone = sum(x["flags_s"] for x in alone) / len(alone)
            hb, lb = hs.get("burst") or {}, ls.get("burst") or {}
            rows.append(["burst: writer time (s)", f(hb.get("writer_s"), "{:.2f}"), f(lb.get("writer_s"), "{:.2f}"),
                         f(w_alone, "{:.2f}") + " alone", ratio(hb.get("writer_s"), lb.get("writer_s")),
                         ratio(hb.get("writer_s"), w_alone)])
            rows.append(["burst: first write -> equal (s)", f(hb.get("first_to_equal"), "{:.2f}"),
                         f(lb.get("first_to_equal"), "{:.2f}"), f(r_alone, "{:.2f}") + " 1 rsync",
                         ratio(hb.get("first_to_equal"), lb.get("first_to_equal")),
                         ratio(hb.get("first_to_equal"), r_alone)])
            rows.append(["burst: last write -> equal (s)", f(hb.get("last_to_equal"), "{:.2f}"),
                         f(lb.get("last_to_equal"), "{:.2f}"), "-", ratio(hb.get("last_to_equal"), lb.get("last_to_equal")), "-"])
            rows.append(["burst: CPU watcher+children (s)", f(hb.get("cpu"), "{:.2f}"), f(lb.get("cpu"), "{:.2f}"), "-",
                         ratio(hb.get("cpu"), lb.get("cpu")), "-"])
            rows.append(["burst: CPU receiver side (s)", f(hb.get("receiver_cpu"), "{:.2f}"),
                         f(lb.get("receiver_cpu"), "{:.2f}"), "-", ratio(hb.get("receiver_cpu"), lb.get("receiver_cpu")), "-"])
        hr, lr, rr = (d.get("rename") or {} for d in (hs, ls, rs))
        if hr or rr:
            rows.append(["rename: time (s)", f(hr.get("seconds"), "{:.2f}"), f(lr.get("seconds"), "{:.2f}"),
                         f(rr.get("seconds"), "{:.2f}"), ratio(hr.get("seconds"), lr.get("seconds")),
                         ratio(hr.get("seconds"), rr.get("seconds"))])
            rows.append(["rename: bytes received", f(hr.get("bytes"), "{:,}"), f(lr.get("bytes"), "{:,}"),
                         f(rr.get("bytes"), "{:,}"), ratio(hr.get("bytes"), lr.get("bytes")),
                         ratio(hr.get("bytes"), rr.get("bytes"))])
        print("\n== results (ratios: hotsync's figure over the baseline's; lower is better)")
        print(table(rows))
        if alone:
            print("   baselines of the burst: " + "; ".join(
                f"writer alone {x['writer_s']:.2f} s, one plain rsync {x['rsync_s']:.2f} s ({x['rsync_bytes']:,} B), "
                f"one rsync with hotsync's options through the pair {x['flags_s']:.2f} s" for x in alone))
        targets: list[tuple[str, float, float, float, str]] = []

        def target(label, value, base, limit, baseline):
            if value is None or not base:
                return
            targets.append((label, value, base, value / base, "met" if value / base <= limit else "MISSED"))
            fmt = "{:,.0f}" if value > 1000 else "{:.3f}"
            print(f"{label:<52} {fmt.format(value):>10} vs {baseline} {fmt.format(base)} = {value / base:5.2f}x "
                  f"(<= {limit:g}x): "
                  f"{'met' if value / base <= limit else 'MISSED'}")

        print("\n== issue 20 targets")
        for cond, absolute in (("quiet", 0.1), ("loaded", 0.3)):
            h = (hs.get(f"latency_{cond}") or {}).get("p95")
            l_ = (ls.get(f"latency_{cond}") or {}).get("p95")
            target(f"latency p95 {cond}, through TLS vs lsyncd delay=0", h, l_, 1.0, "lsyncd")
            if h is not None:
                targets.append((f"latency p95 {cond} absolute", h, absolute, h / absolute,
                                "met" if h <= absolute else "MISSED"))
                print(f"{'latency p95 ' + cond + ' absolute':<52} {h:>10.3f} s (<= {absolute} s): "
                      f"{'met' if h <= absolute else 'MISSED'}")
        if alone:
            hb = hs.get("burst") or {}
            target("burst: writer slowdown (watched / alone)", hb.get("writer_s"), w_alone, 2.0, "alone")
            target("burst: first write -> equal vs one plain rsync", hb.get("first_to_equal"), r_alone, 1.3, "rsync")
            target("burst: (info) the same vs one rsync, same options+TLS", hb.get("first_to_equal"), f_alone, 1.3,
                   "flags")
            target("burst: (info) one rsync, same options+TLS vs plain", f_alone, r_alone, 1.3, "rsync")
            target("burst: CPU watcher+children vs lsyncd (info)", hb.get("cpu"), (ls.get("burst") or {}).get("cpu"),
                   1.0, "lsyncd")
        if hr and rr:
            target("rename: time vs one plain rsync", hr.get("seconds"), rr.get("seconds"), 1.2, "rsync")
            target("rename: bytes vs one plain rsync", hr.get("bytes"), rr.get("bytes"), 1.2, "rsync")
        print("load average during the phases: " + "; ".join(f"{k}: {v}" for k, v in R["load"].items()))
        return targets


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes, a few writes")
    p.add_argument("--systems", default="hotsync,lsyncd-0,rsync")
    p.add_argument("--phases", default="latency,burst,rename")
    p.add_argument("--no-loaded", action="store_true", help="skip the latency run beside the CPU hogs")
    p.add_argument("--files", type=int, default=20000, help="files of the tree besides the renamed directory")
    p.add_argument("--writes", type=int, default=30)
    p.add_argument("--burst", type=int, default=10000)
    p.add_argument("--rename", type=int, default=10000)
    p.add_argument("--peer-nodelay", action="store_true", help="give lsyncd and plain rsync TCP_NODELAY too")
    p.add_argument("--lsyncd-rename", action="store_true", help="also time lsyncd's rename (slow: ~50 s)")
    p.add_argument("--json", metavar="FILE", help="write the figures there")
    a = p.parse_args(argv)
    a.gap = (0.3, 1.5)
    a.wait_max = 300.0
    if a.quick:
        a.wait_max = 60.0
        a.files, a.writes, a.burst, a.rename, a.gap = 400, 4, 300, 200, (0.05, 0.15)
    a.systems = [s for s in a.systems.split(",") if s]
    a.phases = [s for s in a.phases.split(",") if s]
    return a


def autogroups() -> str:
    """Whether the kernel groups each session for the scheduler (``kernel.sched_autogroup_enabled``)."""
    try:
        return "on" if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1" else "off"
    except OSError:
        return "unknown"


def main(argv=None) -> int:
    a = parse(argv)
    for tool in ["rsync", "stunnel4"] + (["lsyncd"] if "lsyncd-0" in a.systems else []):
        if shutil.which(tool) is None:
            print(f"bench/realtime.py: {tool} is not installed", file=sys.stderr)
            return 2
    lv = subprocess.run(["lsyncd", "-version"], capture_output=True, text=True).stdout.strip().replace("\n", " ") \
        if shutil.which("lsyncd") else "-"
    work = work_dir("hotsync-bench-rt.")
    print(f"bench/realtime.py: tree {a.files} + {a.rename} files, {a.writes} writes, burst {a.burst}, "
          f"rename {a.rename}; {machine_line()}; lsyncd {lv}; {precompile()}; autogroups "
          f"{autogroups()}; {fs_line(work)}", flush=True)
    b = Bench(work, a)
    try:
        b.setup()
        b.run()
        targets = b.report()
        if a.json:
            Path(a.json).write_text(json.dumps({**b.res, "targets": targets}, indent=1, default=str))
    finally:
        b.teardown()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
