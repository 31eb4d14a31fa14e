"""The drill inside its namespaces: ``python -m hotsync_events.drill.inner``, started by
:mod:`hotsync_events.drill.run` through ``unshare``. In process mode it is PID 1 of private mount, pid and
network namespaces and runs every step below itself. Booted (``--boot``), it has a mount namespace of its
own: it lays the overlay (1), then :mod:`hotsync_events.drill.booted` boots the drilled host's systemd on
it, runs this module again inside that host (``--inside``: 3 and 4, on ``/``) and powers it off after 5.

1. a tmpfs on the scratch directory; on it the upper and work directories of an overlay whose lower
   directory is the slave's root: the copy is only read, every write lands in the tmpfs;
2. loopback up (the network namespace has nothing else: no byte can reach the real master);
3. the real promote on the overlay's merged directory as a root (``--force`` semantics: the master is
   alive by design), every phase as ``hotsync-promote`` runs it, the services started;
4. the health checks, the core's and the plugins';
5. the report, one JSON document on the file descriptor the parent reads (stdout at the start; the promote's
   own output goes to stderr), then exit: the kernel ends every process of the pid namespace with its
   PID 1, and the mounts go with the mount namespace.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable

__all__ = ["main"]

PAUSE_ENV = "HOTSYNC_DRILL_PAUSE_AT"     # tests: "<phase>:<seconds>" sleeps there (to kill the drill mid-way)
FAIL_ENV = "HOTSYNC_DRILL_FAIL_MOUNT"    # tests: the overlay mount fails (a broken kernel)
#: the drilled host's volatile directories: fresh tmpfs, as at boot (relative to the root, with their mode)
#: file systems that hold no data of the host's (under a root of ``/``): not stacked into the drill
PSEUDO_FS = frozenset({"proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "ramfs", "cgroup", "cgroup2", "mqueue",
                       "debugfs", "tracefs", "securityfs", "pstore", "bpf", "hugetlbfs", "configfs", "fusectl",
                       "binfmt_misc", "autofs", "rpc_pipefs", "nsfs", "efivarfs", "selinuxfs", "fuse.lxcfs"})
VOLATILE = (("run", "0755"), ("var/run", "0755"), ("tmp", "1777"), ("var/tmp", "1777"))


def _pause(phase: str) -> None:
    want = os.environ.get(PAUSE_ENV, "")
    name, _, secs = want.partition(":")
    if name == phase:
        time.sleep(float(secs or 3600))


def _lo_up() -> None:
    """``ip link set lo up`` without ip(8): SIOCGIFFLAGS / SIOCSIFFLAGS on a socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), 0x8913, req))[1]
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sH14x", b"lo", flags | 1))


def _mount(*argv: str) -> None:
    cp = subprocess.run(["mount", *argv], capture_output=True, text=True, timeout=60)
    if cp.returncode != 0:
        raise RuntimeError(f"mount {' '.join(argv)}: {(cp.stderr or cp.stdout).strip()}")


def setup(lower: str, scratch: str, size: str) -> str:
    """Mount the tmpfs and the overlay; return the merged directory (the drilled host's root)."""
    _mount("--make-rprivate", "/")
    _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "hotsync-drill", scratch)   # servers run as their users
    for d in ("upper", "work", "merged"):
        os.mkdir(os.path.join(scratch, d), 0o755)
    merged = os.path.join(scratch, "merged")
    if os.environ.get(FAIL_ENV):
        raise RuntimeError("overlay mount refused (test)")
    _mount("-t", "overlay", "hotsync-drill", "-o",
           f"lowerdir={lower},upperdir={scratch}/upper,workdir={scratch}/work", merged)
    _stack_submounts(lower, scratch, merged)
    # a fresh /run and /tmp for the drilled host: the copy's sockets (the slave's own running database
    # servers listen on unix sockets there, which a network namespace does not separate) and pidfiles are
    # out of its reach; its servers start their own on the overlay
    for rel, mode in VOLATILE:
        path = os.path.join(merged, rel)
        if os.path.islink(path):
            continue
        os.makedirs(path, mode=0o755, exist_ok=True)
        _mount("-t", "tmpfs", "-o", f"size={size},mode={mode}", "hotsync-drill-" + rel.replace("/", "-"), path)
    return merged


def _unescape(field: str) -> str:
    """A path of /proc/self/mountinfo (space, tab, newline and backslash written in octal)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def submounts(lower: str, scratch: str, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """The mount points strictly under *lower* that hold files (not /proc, /sys, a tmpfs...), outside
    *scratch*, shallowest first: an overlay does not cross mounts, so each gets one of its own."""
    out = []
    base = lower.rstrip("/") + "/"
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields, rest = left.split(), right.split()
            if len(fields) < 5 or not rest:
                continue
            point = _unescape(fields[4])
            if point in (base, scratch) or not point.startswith(base) or point.startswith(scratch.rstrip("/") + "/"):
                continue
            if rest[0] in PSEUDO_FS:
                continue
            out.append(point)
    return sorted(set(out), key=lambda p: (p.count("/"), p))


def _stack_submounts(lower: str, scratch: str, merged: str) -> None:
    """An overlay of each file system mounted under *lower* (a root of ``/`` with ``/var`` or ``/home`` of
    their own), on the same place in *merged*, its writes in the tmpfs too."""
    for n, point in enumerate(submounts(lower, scratch)):
        rel = os.path.relpath(point, lower)
        target = os.path.join(merged, rel)
        if not os.path.isdir(target) or os.path.islink(target) or any(c in point for c in ",:\\\n"):
            continue
        layer = os.path.join(scratch, "sub", str(n))
        os.makedirs(os.path.join(layer, "upper"))
        os.makedirs(os.path.join(layer, "work"))
        _mount("-t", "overlay", "hotsync-drill", "-o",
               f"lowerdir={point},upperdir={layer}/upper,workdir={layer}/work", target)


def drill(lower: str, merged: str, log: Callable[[str], None], *, booted: bool = False,
          failed_at_boot: list[str] | None = None) -> dict:
    """Promote the overlay, run the checks; the report (no exception escapes for a failed step).

    *booted*: this runs inside the drilled host's own systemd (:mod:`hotsync_events.drill.booted`), *merged*
    is ``/``: the services go through systemd, and after the promote the default target starts
    (*failed_at_boot*: the units that had failed before the promote)."""
    from hotsync_events.paths import Root
    from hotsync_events.promote import EXIT_CRITICAL, assess
    from hotsync_events.promote.run import Promote
    from hotsync_events.sync.status import read_status

    root = Root(merged)
    os.environ["HOTSYNC_ROOT"] = merged
    if not booted:
        os.environ["HOTSYNC_SERVICE_BACKEND"] = "process"     # never the machine's systemd, whatever the root
    causes: list[str] = []
    notes: list[str] = []
    rep: dict = {"causes": causes, "notes": notes}
    from hotsync_events.manager import plugin_manager

    pm = plugin_manager(root)
    pm.root = root
    t0 = time.monotonic()
    a = assess(root, pm)
    verify_s = time.monotonic() - t0
    rep["assessment"] = {k: a.get(k) for k in ("last_complete_sync", "data_age", "master", "epoch", "next_epoch",
                                                "dumps", "steps", "warnings")}
    hard = [r for r in a["refusals"] if not r["force"]]
    if hard:
        causes += ["promote refused: " + r["text"] for r in hard]
        return rep
    st = read_status(root)
    for r in a["refusals"]:
        if r["why"] == "torn" and st.get("unclean"):
            causes.append("the copy is torn (a real promote would need --force): " + r["text"])
        elif r["why"] == "peer-schema":
            causes.append("the master's configuration copy does not pass this host's schema: " + r["text"])
        elif r["why"] == "torn":
            notes.append(f"a push was arriving when the drill started (the copy goes on receiving it): {r['text'][:200]}")
        else:
            notes.append(f"{r['why']} (expected in a drill, the master is alive): {r['text'][:200]}")
    _pause("promote")
    promote_log: list[str] = []

    def plog(m: str) -> None:
        promote_log.append(m)
        log(m)
    run = Promote(root, a, pm=pm, force=True, log=plog, err=plog)
    try:
        code = run.run(verify_s)
    except Exception as exc:       # a phase that raised: the drill names it
        code = -1
        causes.append(f"promote phase crashed: {type(exc).__name__}: {exc}")
    j = run.j
    rec = j.get("record") or {}
    rep["promote"] = {"exit": code, "timings": {k: round(v, 3) for k, v in (j.get("timings") or {}).items()},
                      "duration": rec.get("duration") or round(time.time() - j.get("started", time.time()), 3),
                      "steps": j.get("steps"), "dbs": j.get("dbs"), "services_ok": j.get("services_ok"),
                      "log": promote_log[-200:]}
    if code == EXIT_CRITICAL:
        causes.append(f"promote stopped at the critical step {j.get('critical')}: "
                      + str((j.get("steps") or {}).get(j.get("critical") or "", {}).get("error")))
    for name, s in sorted((j.get("steps") or {}).items()):
        if s.get("status") == "failed" and name != j.get("critical"):
            causes.append(f"promote step {name} (plugin {s.get('plugin', '?')}) failed: {s.get('error')}")
    for name, s in sorted((j.get("dbs") or {}).items()):
        if str(s).startswith("failed"):
            causes.append(f"database {name} did not restore: {str(s)[8:]}")
    for name, s in sorted((j.get("replicas") or {}).items()):
        if s.get("status") != "success":      # the live replica server is out of the drill's reach (fresh /run, own net)
            notes.append(f"database replica {name}: its promote cannot be drilled (the live replica server is out "
                         f"of the drill's reach): {str(s.get('status'))[:200]}")
    if j.get("services_ok") is False:
        causes.append("the save event (services) failed: "
                      + "; ".join(m for m in promote_log if "FAILED" in m and m.startswith("services"))[:500])
    if booted:
        from hotsync_events.drill.booted import start_default_target

        rep["reboot"] = start_default_target(causes, notes, log, before=failed_at_boot or [])
    _pause("checks")
    rep["checks"] = checks(root, pm, j, a.get("dumps") or [], log)
    for c in rep["checks"]:
        if c["status"] != "passed":
            causes.append(f"health check {c['name']} (plugin {c['plugin']}) "
                          + ("timed out" if c["status"] == "timeout" else "failed") + f": {c['detail']}")
    return rep


def checks(root, pm, journal: dict, planned: list[dict], log: Callable[[str], None]) -> list[dict]:
    from hotsync_events.configdb import open_db
    from hotsync_events.drill.checks import DRILL_EVENT, collect_checks, run_checks
    from hotsync_events.events.services import service_control
    from hotsync_events.manager import RegistrationError
    from hotsync_events.types import ActionContext

    db = open_db("configuration", root)
    try:
        found = collect_checks(pm, db, root, journal, planned)
    except RegistrationError as exc:
        return [{"name": "*", "plugin": "*", "status": "failed", "time": 0, "detail": str(exc)}]
    broken = [f"plugin {p}: {e}" for p, h, e in pm.hook_errors if h == "hotsync_health_checks"]
    ctx = ActionContext(event=DRILL_EVENT, args=(), root=root, db=db, pm=pm, log=log,
                        control=service_control(root, pm, db))
    out = [c.as_json() for c in run_checks(found, ctx, log=log)]
    out += [{"name": "hotsync_health_checks", "plugin": b.split(":")[0][7:], "status": "failed", "time": 0,
             "detail": b} for b in broken]
    return out


def _log_tails(merged: str, lines: int = 15) -> dict[str, str]:
    """The end of each service log of the drilled host (var/log/hotsync): why a server did not start."""
    out = {}
    d = os.path.join(merged, "var/log/hotsync")
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else ():
        try:
            with open(os.path.join(d, name), "rb") as fh:
                fh.seek(0, 2)
                fh.seek(max(0, fh.tell() - 8192))
                out[name] = "\n".join(fh.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            continue
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hotsync-drill-inner")
    p.add_argument("--lower")
    p.add_argument("--scratch")
    p.add_argument("--size", default="50%")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--boot", action="store_true", help="boot systemd on the overlay, run the drill inside it")
    p.add_argument("--skip", action="append", default=[], metavar="UNIT",
                   help="(with --boot) a unit the drilled host must not start (hotsync DrillSkipUnits)")
    p.add_argument("--inside", action="store_true", help="(in the booted host) the drill itself")
    args = p.parse_args(argv)
    if not args.inside and not (args.lower and args.scratch):
        p.error("--lower and --scratch are required")
    report_fd = os.dup(1)            # the report goes here; everything else (the promote's prints) to stderr
    os.dup2(2, 1)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.time()
    rep: dict = {"causes": [], "notes": []}
    host = None             # booted: the drilled host, powered off after the report is out
    try:
        if args.inside:
            from hotsync_events.drill.booted import inside

            rep.update(inside(log))
        else:
            if not args.boot:
                _lo_up()
            merged = setup(args.lower, args.scratch, args.size)
            rep["merged"] = merged
            log(f"drill: overlay of {args.lower} mounted on {merged} (writes go to a tmpfs)"
                + ("" if args.boot else "; network: loopback only"))
            _pause("mounted")
            if args.boot:
                from hotsync_events.drill.booted import booted

                part, host = booted(merged, args.scratch, args.keep, log, skip=args.skip)
                rep.update(part)
            else:
                rep.update(drill(args.lower, merged, log))
    except Exception as exc:
        rep["causes"].append(f"the drill could not run: {type(exc).__name__}: {exc}")
    if rep["causes"] and (rep.get("merged") or args.inside) and "logs" not in rep:
        rep["logs"] = _log_tails("/" if args.inside else rep["merged"])
    rep["duration"] = round(time.time() - t0, 3)
    rep["result"] = "failed" if rep["causes"] else "passed"
    rep["pid"] = os.getpid()
    with os.fdopen(report_fd, "w") as fh:
        fh.write(json.dumps(rep, default=str) + "\n")
    if host is not None and not args.keep:
        host.stop()          # after the report: a slow power-off never turns a finished drill into a killed one
    if args.keep and not args.boot:
        log("drill: --keep: the drilled host stays up until its namespace's PID 1 is killed")
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        while True:
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
