#!/usr/bin/env python3
"""Where the time goes (issue 20): one real-time push of one file, and one no-op `hotsync sync`, taken apart.

Sets up a master/slave pair on loopback (tests/sync_pair.py: mutual TLS pinned as a person would) with a tree
of --files files, then measures, with real tools:

* one-file push, the notifier's path (``SyncPusher.warm()`` at the change, the list written after the settle
  window, as ``hotsync watch`` does): ``strace -f -ttt`` on the pushing process and, attached, on the slave's
  stunnel; the timeline of process starts, connects, the slave's hooks and the file's rename into place;
* no-op full sync: ``hotsync sync`` under ``strace -f -ttt`` (process timeline on both sides) and under
  ``cProfile`` (where the master's Python time goes); ``python -X importtime`` of the CLI and of the slave's
  hook module;
* the notifier's per-event work: a burst of --events files under a Notifier whose pusher does nothing
  (CPU seconds of this process per event), and what one status write costs (sync status + public status).

Prints a breakdown (milliseconds); --keep leaves the traces in the work directory. Only 127.0.0.1.
"""
from __future__ import annotations

import argparse
import io
import os
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import cmd, loadavg, machine_line, precompile, work_dir  # noqa: E402
from sync_pair import Pair  # noqa: E402

TRACE = "trace=process,connect,accept,accept4,rename,renameat,renameat2"
#: stop the traced processes only at the traced system calls (strace's default stops at every one: a no-op
#: sync took 5.9 s traced instead of 1.1 s)
SECCOMP = ["--seccomp-bpf"]


def make_tree(top: Path, files: int) -> None:
    blob = os.urandom(1024)
    for d in range(max(1, files // 200)):
        sub = top / f"d{d:03}"
        sub.mkdir(parents=True)
        for f in range(200):
            (sub / f"f{f:03}").write_bytes(blob[f:] + blob[:f])


class Strace:
    """``strace -f -ttt`` attached to *pid* (and what it forks) until :meth:`stop`."""

    def __init__(self, pid: int, out: Path, trace: str = TRACE) -> None:
        self.out = out
        self.proc = subprocess.Popen(["strace", "-f", "-ttt", "-qq", "-s", "600", "-e", trace, "-o", str(out),
                                      "-p", str(pid)], stderr=subprocess.DEVNULL)
        time.sleep(0.5)      # attached

    def stop(self) -> list[str]:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.out.read_text(errors="replace").splitlines()


class TracedSlave:
    """The slave's stunnel (the TLS listener that runs rsync and its hooks for each session) restarted under
    ``strace --seccomp-bpf -f -ttt`` (low overhead: only the traced calls stop); :meth:`stop` ends it by pid
    and starts the slave's own service again (the save event)."""

    def __init__(self, pair: Pair, out: Path) -> None:
        self.pair, self.out = pair, out
        pidfile = pair.slave / "run/hotsync/hotsync-stunnel.pid"
        old = int(pidfile.read_text().split()[0])
        os.kill(old, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.path.exists(f"/proc/{old}"):
            time.sleep(0.05)
        env = {**os.environ, "HOTSYNC_ROOT": str(pair.slave), "HOTSYNC_SERVICE": "hotsync-stunnel"}
        # the service's own command line, as the process back-end runs it: the listener (sync/listener.py) with
        # stunnel beside it
        from hotsync_events.childproc import module_cwd
        from hotsync_events.configdb import open_db
        from hotsync_events.events.services import ProcessBackend, collect_services
        from hotsync_events.manager import plugin_manager
        from hotsync_events.paths import Root

        root = Root(str(pair.slave))
        svc = next(s for _p, s in collect_services(plugin_manager(root), open_db("configuration", root), root)
                   if s.name == "hotsync-stunnel")
        self.proc = subprocess.Popen(["strace", *SECCOMP, "-f", "-ttt", "-qq", "-s", "600", "-e", TRACE, "-o", str(out),
                                      *ProcessBackend(root).argv(svc)], env=env,
                                     cwd=module_cwd(root), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        pair.wait_listening(10)

    def lines(self) -> list[str]:
        return self.out.read_text(errors="replace").splitlines()

    def stop(self) -> None:
        try:
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            kids = []
        for k in kids:                       # the listener (and its stunnel), traced by our strace
            try:
                os.kill(int(k), signal.SIGTERM)
            except OSError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.pair.save(self.pair.slave, check=False)     # the slave's own service again


#: a hook's start: the shell that asks the hooks' server (sync/hookd.py), or the hook program (python ... pre)
HOOK = r'execve\("[^"]*(python[^"]*", \[[^\]]*"{0}"|sh", \["sh", "-c", ".*?HOTSYNC_HOOKD.*?echo \\"{0} )'
_LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")


def events(lines: list[str]) -> list[tuple[float, int, str]]:
    """``(time, pid, text)``; a call another process interrupted (``<unfinished ...>`` ... ``<... resumed>``)
    is joined back into one line, at its start time."""
    out = []
    pending: dict[int, tuple[float, str]] = {}
    for ln in lines:
        m = _LINE.match(ln)
        if not m:
            continue
        t, pid, text = float(m.group(2)), int(m.group(1)), m.group(3)
        if text.endswith("<unfinished ...>"):
            pending[pid] = (t, text[:-len("<unfinished ...>")].rstrip())
            continue
        r = re.match(r"<\.\.\. \w+ resumed>(.*)$", text)
        if r and pid in pending:
            t0, head = pending.pop(pid)
            out.append((t0, pid, head + r.group(1)))
            continue
        out.append((t, pid, text))
    out.sort(key=lambda e: e[0])
    return out


def first(evs, pattern: str, after: float = 0.0, pid: int | None = None):
    rx = re.compile(pattern)
    for t, p, text in evs:
        if t >= after and (pid is None or p == pid) and rx.search(text):
            return t, p, text
    return None


def exits_of(evs, pid: int):
    for t, p, text in evs:
        if p == pid and ("+++ exited" in text or "exit_group(" in text):
            return t
    return None


def execs(evs) -> list[tuple[float, int, str, float | None]]:
    """``(start, pid, program and first args, end)`` of every execve that succeeded."""
    out = []
    for t, p, text in evs:
        m = re.match(r'execve\("([^"]+)", \[([^\]]*)\]', text)
        if m and "= 0" in text:
            args = " ".join(a.strip('"') for a in m.group(2).split(", ")[:6])
            out.append((t, p, args, exits_of([e for e in evs if e[0] >= t], p)))
    return out


# ------------------------------------------------------------------------------------------ one-file push
PUSH_DRIVER = r"""
import os, sys, time
from hotsync_events.paths import Root
from hotsync_events.realtime.pusher import SyncPusher
root = Root(sys.argv[1]); path = sys.argv[2]; n = int(sys.argv[3]); settle = float(sys.argv[4])
pusher = SyncPusher(root)
pusher.incremental([path])       # the first push builds the lists and files (once per notifier)
time.sleep(1.0)
for i in range(n):
    with open(root.join(path), "wb") as fh:
        fh.write(os.urandom(1000 + i))
    t0 = time.time()
    pusher.warm()                 # at the first change
    t1 = time.time()
    time.sleep(settle)            # RealtimeSettle
    t2 = time.time()
    r = pusher.incremental([path])
    t3 = time.time()
    print("PUSH %.6f %.6f %.6f %.6f %s" % (t0, t1, t2, t3, r.ok), flush=True)
    time.sleep(0.7)               # the slave's post-xfer ends; the next push would wait for it (max connections = 1)
"""


def run_push_driver(pair: Pair, n: int, trace: Path | None = None) -> list[tuple[float, ...]]:
    rel = "/srv/bench/d000/f000"
    env = {**os.environ, "HOTSYNC_ROOT": str(pair.master)}
    pre = ["strace", *SECCOMP, "-f", "-ttt", "-qq", "-s", "600", "-e", TRACE, "-o", str(trace)] if trace else []
    cp = subprocess.run([*pre, sys.executable, "-c", PUSH_DRIVER, str(pair.master), rel, str(n), "0.05"], env=env,
                        capture_output=True, text=True, timeout=300)
    pushes = [tuple(float(x) for x in ln.split()[1:5]) for ln in cp.stdout.splitlines() if ln.startswith("PUSH")]
    if len(pushes) != n:
        raise RuntimeError(f"push driver: {cp.stdout[-500:]} {cp.stderr[-1500:]}")
    return pushes


def one_file_push(pair: Pair, work: Path, n: int, slave_trace: TracedSlave) -> dict:
    out = work / "push.master.trace"
    pushes = run_push_driver(pair, n, out)
    time.sleep(1.0)
    slave = events(slave_trace.lines())
    master = events(out.read_text().splitlines())
    rows: dict[str, list[float]] = {}

    def add(k, v):
        if v is not None:
            rows.setdefault(k, []).append(v * 1000)

    for t0, t1, t2, t3 in pushes:
        # master side: the rsync of this push, its stunnel
        m_rsync = first(master, r'execve\("[^"]*rsync"', after=t0 - 0.001)
        m_stunnel = first(master, r'execve\("[^"]*stunnel4?"', after=t0 - 0.001)
        m_conn = first(master, rf"connect\(.*sin_port=htons\({pair.port}\)", after=t0 - 0.001)
        rsync_exit = exits_of([e for e in master if e[0] >= (m_rsync[0] if m_rsync else t0)], m_rsync[1]) if m_rsync else None
        # slave side
        acc = first(slave, r"accept4?\(", after=t0 - 0.001)
        s_rsync = first(slave, r'execve\("[^"]*rsync", \["[^"]*rsync", "--server"', after=t0 - 0.001)
        early = first(slave, r'execve\("/bin/sh", \["sh", "-c", "(mkdir|d=)', after=t0 - 0.001)
        pre = first(slave, HOOK.format("pre"), after=t0 - 0.001)
        pre_end = exits_of([e for e in slave if e[0] >= pre[0]], pre[1]) if pre else None
        landed = first(slave, r'rename(at2?)?\(.*f000', after=t0 - 0.001)
        post = first(slave, HOOK.format("post"), after=t0 - 0.001)
        post_end = exits_of([e for e in slave if e[0] >= post[0]], post[1]) if post else None
        s_rsync_end = exits_of([e for e in slave if e[0] >= s_rsync[0]], s_rsync[1]) if s_rsync else None
        add("master: warm() to rsync exec", m_rsync and m_rsync[0] - t0)
        add("master: rsync exec to stunnel client exec", m_stunnel and m_rsync and m_stunnel[0] - m_rsync[0])
        add("master: stunnel exec to TCP connect", m_conn and m_stunnel and m_conn[0] - m_stunnel[0])
        add("slave: accept to exec of rsync --server (TLS handshake, verify, fork)",
            acc and s_rsync and s_rsync[0] - acc[0])
        add("slave: rsync start to early exec (greeting, auth)", early and s_rsync and early[0] - s_rsync[0])
        add("slave: early exec to pre-xfer hook start", pre and early and pre[0] - early[0])
        add("slave: pre-xfer hook (its server answers, or python)", pre and pre_end and pre_end - pre[0])
        add("slave: pre-xfer end (after the change)", pre_end and pre_end - t0)
        add("slave: pre-xfer end to file renamed into place", landed and pre_end and landed[0] - pre_end)
        add("  (settle window, waited by the notifier)", t2 - t1)
        add("slave: file in place to post-xfer hook start", post and landed and post[0] - landed[0])
        add("slave: post-xfer hook (its server answers, or python)", post and post_end and post_end - post[0])
        add("slave: rsync --server exit after post-xfer", s_rsync_end and post_end and s_rsync_end - post_end)
        add("master: rsync exit after the file landed", rsync_exit and landed and rsync_exit - landed[0])
        add("TOTAL change (warm) to file in place on the slave", landed and landed[0] - t0)
        add("TOTAL change to master's rsync exit (the push as the notifier sees it)", t3 - t0)
        add("TOTAL change to slave session fully ended (next push may start)", s_rsync_end and s_rsync_end - t0)
        add("TCP connect to file in place", landed and m_conn and landed[0] - m_conn[0])
    return {k: statistics.median(v) for k, v in rows.items()} | {"_n": n, "_all": rows}


# ------------------------------------------------------------------------------------------ no-op sync
def noop_walls(pair: Pair, rounds: int) -> list[float]:
    env = {**os.environ, "HOTSYNC_ROOT": str(pair.master)}
    walls = []
    for _ in range(rounds):
        t0 = time.monotonic()
        subprocess.run([cmd("hotsync"), "sync"], env=env, capture_output=True, check=True)
        walls.append(time.monotonic() - t0)
    return walls


def noop_sync(pair: Pair, work: Path, slave_trace: TracedSlave) -> dict:
    """The process timeline of one no-op sync on both sides, and the master's Python under cProfile."""
    env = {**os.environ, "HOTSYNC_ROOT": str(pair.master)}
    hs = [cmd("hotsync"), "sync"]
    res: dict = {}
    out = work / "noop.master.trace"
    t_start = time.time()
    subprocess.run(["strace", *SECCOMP, "-f", "-ttt", "-qq", "-s", "600", "-e", TRACE, "-o", str(out), *hs], env=env,
                   capture_output=True, check=True)
    t_end = time.time()
    time.sleep(1.0)
    slave = [e for e in events(slave_trace.lines()) if e[0] >= t_start]
    master = events(out.read_text().splitlines())
    res["traced_wall"] = t_end - t_start
    res["master_execs"] = [(round((s - t_start) * 1000), round(((e or s) - s) * 1000), a) for s, _p, a, e in execs(master)]
    res["slave_execs"] = [(round((s - t_start) * 1000), round(((e or s) - s) * 1000), a) for s, _p, a, e in execs(slave)]
    # cProfile of the master's Python (in this process: the CLI's own main)
    code = ("import cProfile, pstats, sys\nfrom hotsync_events.cli.hotsync import main\nsys.argv=['hotsync','sync']\n"
            f"cProfile.run('try:\\n main()\\nexcept SystemExit: pass', {str(work / 'noop.prof')!r})\n")
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    s = io.StringIO()
    pstats.Stats(str(work / "noop.prof"), stream=s).sort_stats("cumulative").print_stats(45)
    res["cprofile"] = s.getvalue()
    return res


def importtime(pair: Pair) -> dict:
    """Python start and imports: the CLI's, and the slave hook's, from ``-X importtime`` and wall time."""
    env = {**os.environ, "HOTSYNC_ROOT": str(pair.master)}
    out: dict = {}
    for label, argv in (("python -c pass", [sys.executable, "-c", "pass"]),
                        ("python -S -c pass", [sys.executable, "-S", "-c", "pass"]),
                        ("hotsync --help", [cmd("hotsync"), "--help"]),
                        ("import hotsync_events.sync.xfer", [sys.executable, "-c", "import hotsync_events.sync.xfer"]),
                        ("import hotsync_events.sync.push + plugins",
                         [sys.executable, "-c", "import hotsync_events.sync.push\n"
                          "from hotsync_events.manager import get_plugin_manager\nget_plugin_manager()"])):
        walls = []
        for _ in range(5):
            t0 = time.monotonic()
            subprocess.run(argv, env=env, capture_output=True)
            walls.append(time.monotonic() - t0)
        out[label] = statistics.median(walls) * 1000
    cp = subprocess.run([sys.executable, "-X", "importtime", "-c",
                         "import hotsync_events.sync.push\nfrom hotsync_events.manager import get_plugin_manager\n"
                         "get_plugin_manager()"], env=env, capture_output=True, text=True)
    top = []
    for ln in cp.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", ln)
        if m and len(m.group(3)) <= 2:
            top.append((int(m.group(2)) / 1000, m.group(4)))
    out["top_imports_ms"] = sorted(top, reverse=True)[:15]
    return out


# ------------------------------------------------------------------------------------------ notifier work
NOTIFIER_DRIVER = r"""
import os, sys, time, resource
from hotsync_events.paths import Root
from hotsync_events.realtime.notifier import Notifier, PushResult
root = Root(sys.argv[1]); n = int(sys.argv[2])
seen = []
def pusher(paths):
    seen.append(0 if paths is None else len(paths))
    return PushResult(True)
top = root.join("/srv/ev"); top.mkdir(parents=True, exist_ok=True)
nt = Notifier(root, ["/srv/ev"], [], pusher, initial_full=False, max_batch=10**9).start()
time.sleep(0.5)
r0 = resource.getrusage(resource.RUSAGE_SELF)
c0 = os.times()
sub = top / "b"; sub.mkdir()
w0 = time.monotonic()
for i in range(n):                # the writer is this process too: its own cost is measured alone below
    with open(sub / ("f%05d" % i), "wb") as fh:
        fh.write(b"x")
w1 = time.monotonic()
deadline = time.monotonic() + 60
while sum(seen) < n and time.monotonic() < deadline:
    time.sleep(0.01)
c1 = os.times()
nt.stop()
print("EV", n, sum(seen), c1.user + c1.system - c0.user - c0.system, w1 - w0)
"""

WRITER_ALONE = r"""
import os, sys, time
top = sys.argv[1]; n = int(sys.argv[2]); os.makedirs(top)
c0 = os.times()
for i in range(n):
    with open(os.path.join(top, "f%05d" % i), "wb") as fh:
        fh.write(b"x")
c1 = os.times()
print("W", c1.user + c1.system - c0.user - c0.system)
"""


def notifier_work(work: Path, n: int) -> dict:
    root = work / "evroot"
    root.mkdir()
    cp = subprocess.run([sys.executable, "-c", NOTIFIER_DRIVER, str(root), str(n)], capture_output=True, text=True,
                        timeout=120, env={**os.environ, "HOTSYNC_ROOT": str(root)})
    line = next((ln for ln in cp.stdout.splitlines() if ln.startswith("EV")), None)
    if line is None:
        raise RuntimeError(cp.stderr[-1500:])
    _, n_, got, cpu, _wall = line.split()
    w = subprocess.run([sys.executable, "-c", WRITER_ALONE, str(work / "alone"), str(n)], capture_output=True,
                       text=True, timeout=120)
    alone = float(w.stdout.split()[1])
    return {"events_written": int(n_), "paths_pushed": int(got), "cpu_s": float(cpu), "writer_alone_cpu_s": alone,
            "per_event_us": (float(cpu) - alone) / int(n_) * 1e6}


def status_write_cost(pair: Pair) -> dict:
    """One update_status on the slave (what each pre/post hook does), with and without the public snapshot."""
    code = r"""
import sys, time
from hotsync_events.paths import Root
from hotsync_events.sync import status, public
root = Root(sys.argv[1])
def t(fn, k=20):
    xs = []
    for _ in range(k):
        t0 = time.perf_counter(); fn(); xs.append(time.perf_counter() - t0)
    xs.sort(); return xs[len(xs) // 2] * 1000
full = t(lambda: status.update_status(root, lambda d: d.update(bench=time.time())))
pub = t(lambda: public.write_public(root))
from hotsync_events.sync.report import collect
col = t(lambda: collect(root))
print("ST %.2f %.2f %.2f" % (full, pub, col))
"""
    cp = subprocess.run([sys.executable, "-c", code, str(pair.slave)], capture_output=True, text=True, timeout=120)
    line = next((ln for ln in cp.stdout.splitlines() if ln.startswith("ST")), None)
    if line is None:
        return {"error": cp.stderr[-800:]}
    full, pub, col = (float(x) for x in line.split()[1:])
    return {"update_status (incl. public) ms": full, "write_public ms": pub, "report.collect ms": col}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--pushes", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--events", type=int, default=10000)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args(argv)
    if shutil.which("strace") is None:
        print("bench/breakdown.py: needs strace", file=sys.stderr)
        return 2
    work = work_dir("hotsync-breakdown.")
    print(f"bench/breakdown.py: {a.files} files; {machine_line()}; {precompile()}", flush=True)
    (work / "pair").mkdir()
    pair = Pair(work / "pair")
    try:
        pair.pair()
        make_tree(pair.master / "srv/bench", a.files)
        pair.include("/srv/bench")
        cp = pair.sync()
        assert cp.returncode == 0, cp.stdout + cp.stderr
        print(f"\n== untraced: {a.pushes} one-file pushes (notifier path) and {a.rounds} no-op syncs; load {loadavg()}",
              flush=True)
        totals = [t3 - t0 for t0, _t1, _t2, t3 in run_push_driver(pair, a.pushes)]
        walls = noop_walls(pair, a.rounds)
        print(f"  one-file push, change to master's rsync exit: median {statistics.median(totals) * 1000:.0f} ms "
              f"(min {min(totals) * 1000:.0f}, max {max(totals) * 1000:.0f})")
        print(f"  no-op hotsync sync wall: median {statistics.median(walls) * 1000:.0f} ms "
              f"(min {min(walls) * 1000:.0f}, max {max(walls) * 1000:.0f})")
        traced = TracedSlave(pair, work / "slave.trace")
        try:
            print(f"\n== one-file push under strace --seccomp-bpf (both sides), median of {a.pushes}; "
                  f"load {loadavg()}", flush=True)
            p = one_file_push(pair, work, a.pushes, traced)
            for k, v in p.items():
                if not k.startswith("_"):
                    print(f"  {k:<78} {v:8.1f} ms")
            print(f"\n== no-op hotsync sync of {a.files} files under strace --seccomp-bpf; load {loadavg()}",
                  flush=True)
            r = noop_sync(pair, work, traced)
        finally:
            traced.stop()
        print(f"  traced run {r['traced_wall'] * 1000:.0f} ms")
        print("  master processes (start ms after the command, duration ms, program):")
        for s_, d, what in r["master_execs"]:
            print(f"    +{s_:6d} {d:6d}  {what[:110]}")
        print("  slave processes:")
        for s_, d, what in r["slave_execs"]:
            print(f"    +{s_:6d} {d:6d}  {what[:110]}")
        print("  cProfile of the master's python (cumulative):")
        print("\n".join("    " + ln for ln in r["cprofile"].splitlines()[:70]))
        print(f"\n== python start and imports; load {loadavg()}", flush=True)
        it = importtime(pair)
        for k, v in it.items():
            if k != "top_imports_ms":
                print(f"  {k:<50} {v:8.1f} ms")
        print("  largest top-level imports (cumulative ms): " + ", ".join(f"{m} {t:.0f}" for t, m in it["top_imports_ms"]))
        print(f"\n== status writes (slave); load {loadavg()}", flush=True)
        for k, v in status_write_cost(pair).items():
            print(f"  {k:<50} {v}")
        print(f"\n== notifier per-event work ({a.events} files, a pusher that does nothing); load {loadavg()}", flush=True)
        for k, v in notifier_work(work, a.events).items():
            print(f"  {k:<50} {v}")
    finally:
        pair.close()
        if a.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
