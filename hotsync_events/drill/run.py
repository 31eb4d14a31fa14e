"""``hotsync drill``: prove on a slave that it can take over, without touching the pair.

:func:`run_drill` checks that the host is a slave and that the drill can run, then starts
``python -m hotsync_events.drill.inner`` as PID 1 of new mount, pid and network namespaces::

    ionice -c 3 unshare --mount --pid --fork --net --kill-child --mount-proc --propagation private python -m ...inner

at the lowest CPU priority (nice 19) and in the idle I/O class: the pair's pushes go first. A booted drill
(:func:`boot_mode`: a real host, root ``/`` and PID 1 systemd) starts the inner with ``unshare --mount``
only: :mod:`hotsync_events.drill.boot` makes the other namespaces for the drilled host's own systemd.

The inner lays an overlay over the slave's root (writes to a tmpfs), runs the promote and the health checks
there and prints its report. Everything is bounded: the drill is killed after *timeout* seconds. Nothing
survives it: ``unshare`` dies with this process (``PR_SET_PDEATHSIG``), the namespace's PID 1 with
``unshare`` (``--kill-child``), every process of the namespace with its PID 1, and the mounts with the
mount namespace; a ``kill -9`` of ``hotsync drill`` leaves no mount and no process (booted: the launcher
dies with the inner the same way and takes the drilled host's PID 1; the empty cgroup directories left
are removed by the next drill). The slave's copy, its
configuration and its daemons are only read: a push that arrives during the drill lands in the copy.

The record (:mod:`hotsync_events.drill.record`) goes to ``var/lib/hotsync/sync/drill.json``, which
``hotsync status`` shows, and a mail goes out when a drill fails and when one passes again.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from collections.abc import Callable

from hotsync_events.childproc import die_with_parent
from hotsync_events.fsutil import open_lock
from hotsync_events.paths import Root

__all__ = ["DRILL_DIR", "DrillError", "EXIT_CANNOT", "EXIT_FAILED", "EXIT_PASSED", "boot_mode", "due", "kept", "run_drill",
           "skip_units", "stop_kept"]

EXIT_PASSED, EXIT_FAILED, EXIT_CANNOT = 0, 1, 2
#: where the drill's tmpfs is mounted (in its own mount namespace only): one empty directory per drill
DRILL_DIR = "/var/lib/hotsync/drill"
DEFAULT_TIMEOUT = 900.0


class DrillError(Exception):
    """The drill cannot run here (not a slave, not root, no unshare...): the message names the fix."""


def _preflight(root: Root) -> None:
    from hotsync_events.configdb import open_db

    if not root.path.is_dir():
        raise DrillError(f"the root {root.path} does not exist (--root or HOTSYNC_ROOT)")
    if any(c in str(root.path) for c in ",:\\\n"):
        raise DrillError(f"the root {root.path} holds a comma, colon, backslash or newline, which an overlay's "
                         "lowerdir cannot name: move the root")
    db = open_db("configuration", root, validate=False, initialise=False, journal=False, create=False)
    role = (db.props("hotsync") if "hotsync" in db else {}).get("role", "")
    if role != "slave":
        raise DrillError(f"a takeover drill runs on a SLAVE: this host's hotsync role is {role or 'not set'} "
                         "(config setprop hotsync role slave MasterHost <master>)")
    if os.geteuid() != 0:
        raise DrillError("the drill mounts an overlay in private namespaces: run it as root")
    for tool in ("unshare", "mount"):
        if shutil.which(tool) is None:
            raise DrillError(f"no {tool} command: install util-linux (apt-get install util-linux)")


def due(root: Root, now: float | None = None) -> tuple[bool, str]:
    """Whether ``DrillSchedule`` asks for a drill now (``hotsync drill --scheduled``), and why."""
    from hotsync_events.configdb import open_db
    from hotsync_events.sync.drill_status import SCHEDULES, read_drill, schedule_of

    now = time.time() if now is None else now
    db = open_db("configuration", root, validate=False, initialise=False, journal=False, create=False)
    schedule = schedule_of(db)
    period = SCHEDULES.get(schedule)
    if not period:
        return False, "DrillSchedule is off"
    last = ((read_drill(root) or {}).get("last") or {}).get("time")
    if last is not None and now - float(last) < period - 3600:
        return False, f"the last drill ran {int((now - float(last)) // 3600)} h ago ({schedule} schedule)"
    return True, f"{schedule} schedule"


def _clean_stale(base: Path, keep: frozenset[str] = frozenset()) -> None:
    """Remove the empty directories of drills that were killed (their tmpfs vanished with them); never one
    of a drilled host ``--keep`` left up (*keep*: their ids): removing it would unmount its file systems."""
    for d in base.iterdir() if base.is_dir() else ():
        if d.name in keep:
            continue
        try:
            d.rmdir()
        except OSError:
            pass


#: the drill is background work: the lowest CPU priority, and the idle I/O class where ionice exists, so
#: that the pair's pushes (and the slave's own services) go first (bench/drill.py measures it)
NICE = 19


def boot_mode(root: Root, want: bool | None) -> tuple[bool, str]:
    """Whether the drill boots the drilled host's own systemd (:mod:`hotsync_events.drill.boot`), and why.

    *want*: ``--boot`` (True), ``--no-boot`` (False) or neither (None: boot on a systemd host whose root is
    ``/``, where the promote would go through systemd). DrillError when ``--boot`` cannot be honoured."""
    from hotsync_events.drill.boot import cannot_boot
    from hotsync_events.events.services import backend_name

    if want is False:
        return False, "--no-boot: the services ran with the process back-end"
    whole = root.path == Path("/")
    if want:
        if not whole:
            raise DrillError(f"--boot starts the drilled host's own systemd, which needs a whole system as the root "
                             f"(/), not {root.path}: run without --boot (the services then run with the process "
                             "back-end)")
        why = cannot_boot("/")
        if why:
            raise DrillError(f"--boot: {why}; or run with --no-boot (the services then run with the process "
                             "back-end)")
        return True, "--boot"
    if not whole:
        return False, f"the root {root.path} is not a whole system: the services ran with the process back-end"
    if os.environ.get("HOTSYNC_SERVICE_BACKEND") == "process":
        return False, "HOTSYNC_SERVICE_BACKEND=process forces the process back-end: the services ran with it"
    if backend_name(root) != "systemd":
        return False, "this host's PID 1 is not systemd: the services ran with the process back-end"
    why = cannot_boot("/")
    if why:
        return False, f"the drilled host could not boot its own systemd ({why}): the services ran with the " \
                      "process back-end"
    return True, "a systemd host: the drilled host booted its own systemd"


def skip_units(root: Root) -> list[str]:
    """``hotsync DrillSkipUnits``: units the drilled host must not start (they run on the slave, but need
    what a drill has not: its disks, its network, its hardware). DrillError naming the fix for a bad name."""
    from hotsync_events.configdb import open_db
    from hotsync_events.drill.boot import UNIT_NAME

    db = open_db("configuration", root, validate=False, initialise=False, journal=False, create=False)
    raw = (db.props("hotsync") if "hotsync" in db else {}).get("DrillSkipUnits") or ""
    units = [u.strip() for u in raw.replace(",", " ").split() if u.strip()]
    for u in units:
        if not UNIT_NAME.fullmatch(u):
            raise DrillError(f"hotsync DrillSkipUnits holds {u!r}, which is not a unit name (e.g. kdump.service): "
                             "config setprop hotsync DrillSkipUnits 'a.service,b.service'")
    return units


def _inner_argv(root: Root, scratch: Path, size: str, keep: bool, boot: bool = False,
                skip: list[str] | None = None) -> list[str]:
    ionice = ["ionice", "-c", "3"] if shutil.which("ionice") else []
    # booted: systemd must be PID 1 of the pid namespace, so the inner only takes a mount namespace (for the
    # overlay) and the booted host's launcher makes the others (drill.boot)
    ns = ["--mount"] if boot else ["--mount", "--pid", "--fork", "--net", "--kill-child", "--mount-proc"]
    argv = [*ionice, "unshare", *ns, "--propagation", "private", sys.executable, "-m", "hotsync_events.drill.inner",
            "--lower", str(root.path), "--scratch", str(scratch), "--size", size]
    return (argv + (["--keep"] if keep else []) + (["--boot"] if boot else [])
            + [f"--skip={u}" for u in (skip or [])])


def run_drill(root: Root, *, timeout: float = DEFAULT_TIMEOUT, size: str = "50%", keep: bool = False,
              log: Callable[[str], None] = print, mail: bool = True, boot: bool | None = None) -> dict:
    """Run one drill; returns its record (``result`` passed or failed, ``causes``...), also written to the
    slave's status. DrillError when it cannot run at all. *boot*: see :func:`boot_mode`."""
    from hotsync_events.drill.record import finish_record
    from hotsync_events.sync.status import state_dir

    _preflight(root)
    booted, why = boot_mode(root, boot)
    skip = skip_units(root) if booted else []
    if not size or any(c in size for c in ",\n") or not (size.rstrip("%kKmMgG").isdigit()):
        raise DrillError(f"--size {size!r} is not a tmpfs size: say 2g, 512m or 50%")
    lock_fd = open_lock(state_dir(root) / "drill.lock")
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        raise DrillError("another drill is running on this host: wait for it (hotsync status shows the last one)") \
            from None
    try:
        base = root.join(DRILL_DIR)
        base.mkdir(parents=True, exist_ok=True, mode=0o755)
        _clean_stale(base, frozenset(ident for _, _, ident in kept(root)))
        scratch = base / uuid.uuid4().hex[:12]
        scratch.mkdir(mode=0o755)       # the drilled host's servers run as their own users
        before = _pre_state(root)
        from hotsync_events.drill.boot import kill_host_cgroups, sweep_cgroups

        try:
            sweep_cgroups()          # what a killed booted drill left: empty cgroup directories
        except OSError:
            pass
        try:
            report, extra = _run_inner(root, scratch, size, keep, timeout, log, booted, skip)
        finally:
            if booted and not keep:
                kill_host_cgroups(scratch.name)   # what the inner did not power off (an error): nothing stays
            if not keep:
                for d in (scratch, base):        # the base too when empty: the slave's state as it was
                    try:
                        d.rmdir()
                    except OSError:
                        pass
        report.update(extra)
        report["mode"] = "booted" if booted else "process"
        if not booted and root.path == Path("/"):
            report.setdefault("notes", []).append(why)
        report["data_age_at_start"] = before.get("data_age")
        return finish_record(root, report, mail=mail, log=log)
    finally:
        os.close(lock_fd)


def _pre_state(root: Root) -> dict:
    from hotsync_events.sync.status import read_status

    ok = read_status(root).get("last_success") or {}
    end = ok.get("end")
    return {"data_age": None if end is None else round(time.time() - float(end), 1)}


def _run_inner(root: Root, scratch: Path, size: str, keep: bool, timeout: float,
               log: Callable[[str], None], boot: bool = False, skip: list[str] | None = None) -> tuple[dict, dict]:
    t0 = time.time()
    argv = _inner_argv(root, scratch, size, keep, boot, skip)
    env = {k: v for k, v in os.environ.items() if k not in ("HOTSYNC_SERVICE_BACKEND",)}
    die = die_with_parent()

    def preexec() -> None:   # pragma: no cover - runs in the child, after setsid()
        os.nice(NICE)
        try:      # its own session is its own scheduler autogroup: give the group the same low weight
            with open("/proc/self/autogroup", "w") as fh:
                fh.write(str(NICE))
        except OSError:
            pass
        if not keep:
            die()
    from hotsync_events.childproc import module_cwd

    try:
        cwd = module_cwd(root)
    except OSError as exc:
        raise DrillError(f"cannot make {root.run_dir} (the drill starts there): {exc.strerror or exc}") from None
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, preexec_fn=preexec, start_new_session=True, cwd=cwd)
    lines: list[str] = []

    def pump() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append(line)
            del lines[:-400]
            log(line)
    t = threading.Thread(target=pump, daemon=True)
    t.start()
    out: list[bytes] = []

    def read_report() -> None:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        out.append(first)
    r = threading.Thread(target=read_report, daemon=True)
    r.start()
    r.join(timeout)
    timed_out = r.is_alive()
    extra: dict = {"started": t0, "wall_time": None, "timeout": timeout}
    if timed_out:
        proc.kill()      # unshare dies; --kill-child takes the namespace's PID 1, and every process with it
        proc.wait()
        if boot:         # a kept booted host does not die with the inner: its cgroups name every process
            from hotsync_events.drill.boot import kill_host_cgroups

            kill_host_cgroups(scratch.name)
    elif not keep:
        try:
            proc.wait(timeout=max(5.0, timeout - (time.time() - t0)))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    t.join(2 if not keep else 0.2)
    extra["wall_time"] = round(time.time() - t0, 3)
    try:
        report = json.loads(out[0].decode()) if out and out[0].strip() else None
    except ValueError:
        report = None
    if timed_out:
        report = {"causes": [f"the drill did not finish within {timeout:g} s and was killed (its namespaces, "
                             "mounts and processes with it)"], "notes": []}
    elif report is None:
        tail = "; ".join(ln for ln in lines[-5:] if ln.strip())
        report = {"causes": [f"the drill's namespace ended without a report (exit {proc.returncode}): "
                             f"{tail or 'no output'}"], "notes": []}
    if keep and not timed_out and not boot:        # booted: the report names the booted host's PID 1
        extra["keep"] = {"unshare_pid": proc.pid, "pid": _ns_pid1(proc.pid)}
    return report, extra


def _ns_pid1(unshare_pid: int) -> int | None:
    """The namespace's PID 1 as this namespace numbers it (the only child of ``unshare``)."""
    try:
        kids = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
        return int(kids[0]) if kids else None
    except (OSError, ValueError):
        return None


def kept(root: Root) -> list[tuple[int, str, str]]:
    """The drilled hosts ``--keep`` left up on this root: ``(pid, mode, id)``, each checked by what it is (a
    process whose root or scratch directory is a drill directory of *root*), never by a pid alone."""
    from hotsync_events.drill.boot import CONTAINER, SYSTEMD

    base = str(root.join(DRILL_DIR)).rstrip("/") + "/"
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if argv[0] == SYSTEMD.encode():
                # its root is <base><id>/merged (with the path of our own root in front when we are chrooted)
                where = os.readlink(f"/proc/{pid}/root")
                m = re.search(r"/([0-9a-f]{12})/merged$", where)
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                if (m and where.endswith(f"{base}{m.group(1)}/merged")
                        and Path(base, m.group(1)).is_dir() and f"container={CONTAINER}".encode() in env):
                    found.append((pid, "booted", m.group(1)))
            elif (b"hotsync_events.drill.inner" in argv and b"--keep" in argv and b"--boot" not in argv
                  and not argv[0].endswith(b"unshare")):      # the namespace's PID 1, not its unshare
                scratch = argv[argv.index(b"--scratch") + 1].decode() if b"--scratch" in argv else ""
                if scratch.startswith(base):
                    found.append((pid, "process", scratch[len(base):].split("/")[0]))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(found)


def stop_kept(root: Root, log: Callable[[str], None] = print, timeout: float = 120.0) -> tuple[list[str], list[str]]:
    """``hotsync drill --stop``: power off each drilled host ``--keep`` left up on this root (SIGKILL to its
    PID 1 past *timeout*: the kernel ends its whole pid namespace), remove what it left. Refused while a
    drill runs (it holds the drill lock): its host is not a kept one. Returns (ids stopped, ids left up)."""
    import signal

    from hotsync_events.drill.boot import HOST_ENV, host_cgroups, kill_host_cgroups
    from hotsync_events.sync.status import state_dir

    if os.geteuid() != 0:
        raise DrillError("a kept drilled host is root's: run hotsync drill --stop as root")
    lock_fd = open_lock(state_dir(root) / "drill.lock")
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        raise DrillError("a drill is running on this host (it is not a kept one): wait for it, then run "
                         "hotsync drill --stop again") from None
    stopped: list[str] = []
    left: list[str] = []
    try:
        for pid, mode, ident in kept(root):
            cgroups = host_cgroups(ident, pid) if mode == "booted" else []
            try:
                if mode == "booted":
                    subprocess.run(["nsenter", "-t", str(pid), "-a", "-r", "systemctl", "poweroff", "--no-block"],
                                   capture_output=True, timeout=30, env=HOST_ENV, stdin=subprocess.DEVNULL)
                else:
                    os.kill(pid, signal.SIGTERM)
            except (OSError, subprocess.TimeoutExpired) as exc:
                log(f"hotsync drill: {ident}: could not ask it to stop ({exc}): killing it")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.1)
            try:
                os.kill(pid, signal.SIGKILL)           # past the timeout: the pull of the plug
            except ProcessLookupError:
                pass
            if mode == "booted":
                kill_host_cgroups(ident, cgroups=cgroups)
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.05)
            if Path(f"/proc/{pid}").exists():
                log(f"hotsync drill: the kept drilled host {ident} ({mode}, pid {pid}) is still up")
                left.append(ident)
            else:
                log(f"hotsync drill: stopped the kept drilled host {ident} ({mode}, pid {pid})")
                stopped.append(ident)
        _clean_stale(root.join(DRILL_DIR), frozenset(left))
    finally:
        os.close(lock_fd)
    return stopped, left
