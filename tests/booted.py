"""Booted hosts for tests: a real systemd as PID 1 of its own namespaces, on an overlay of this machine's ``/``.

The recipe and its trap are in the team's ``systemd-sandbox.md``: booted on the machine's own ``/``, systemd
empties the machine's ``/tmp`` and starts the image's services on the real data directories. So a
:class:`Host` never does that:

* **its files**: an overlay of ``/`` whose upper layer is a tmpfs mounted at ``SANDBOX_DIR/<id>``
  (``/var/tmp/hotsync-booted``, never under ``/tmp``); everything the host writes, installs or deletes lands
  in that tmpfs. The host gets a fresh ``/etc/machine-id``, its own ``/etc/hostname`` and ``/etc/hosts``.
* **its namespaces**: new pid, mount, uts, ipc, network and cgroup namespaces (``unshare``). Inside, before
  systemd starts: a fresh ``/proc`` with ``/proc/sys`` read-only but for ``/proc/sys/net`` (per network
  namespace), a fresh read-only ``/sys`` (so udev triggers nothing on the machine's devices), a ``/dev``
  of its own (null, zero, full, random, urandom, tty, a new devpts, ``/dev/console`` a pty whose output is
  the host's log), tmpfs ``/run`` and ``/tmp``, a boot id of its own (a new one each boot), and cgroups
  of its own: in every hierarchy, ``hotsync-booted/<id>`` below the test process's own cgroup is the
  root of the host's cgroup namespace; the systemd (v1, named) and unified (v2) hierarchies are mounted
  afresh inside it (systemd mounts the v1 controllers itself), so what the host's systemd makes stays
  below that directory and goes with it.
* **its services**: every unit this image enables (``/etc/systemd/system/*.wants``, ``*.requires``, SysV
  ``S`` links of scripts with no native unit) and the recipe's list (MariaDB, PostgreSQL, slapd, the
  gettys) are masked on systemd's command line (``systemd.mask=``), plus the few that would act on the
  machine's kernel (modules, time). ``container=hotsync-booted`` tells systemd it is in a container, and
  its processes (and the commands :meth:`Host.run` starts) lack the capabilities that reach the machine's
  kernel, clock or console (:data:`DROPPED_CAPS`, as systemd-nspawn drops them).

**Reboot keeps the disk.** The tmpfs and the overlay are mounted in the machine's mount namespace, not in
the host's, so they outlive the host's PID 1: :meth:`Host.reboot` powers systemd off (its namespaces, and
every mount made inside them, go with it), then boots the same overlay again. What was installed and
written survives, ``/run`` and ``/tmp`` start empty, as on a real machine. :meth:`Host.kill` is the
pulled plug: SIGKILL to PID 1, no shutdown. Unlike a real disk the tmpfs loses nothing unsynced.

**Cleanup.** The ``unshare`` process gets PR_SET_PDEATHSIG (it dies with the test process) and
``--kill-child`` (PID 1 dies with it, and with PID 1 the kernel kills the whole pid namespace), so a killed
test leaves no process behind. What it does leave, the mounts and the cgroup directories, :func:`sweep`
removes at the next start: each sandbox has a state file naming the process that owns it, and only
sandboxes whose owner is dead are swept, so two test runs on one machine leave each other alone.
:func:`leftovers` lists what is left of a sandbox (mounts, processes, cgroups), for tests to assert on.

Every wait is bounded in count and time. Needs root, ``unshare``/``nsenter`` (util-linux), overlayfs and
Debian's ``/lib/systemd/systemd``; :func:`cannot_boot` says what is missing.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pytest

from hotsync_events.drill.boot import (DROPPED_CAPS, HOST_PATH, SYSTEMD, boot_script, cgroup_pids, enter_argv,
                                       enter_cgroups, kill_until_gone, own_cgroups, remove_cgroups)
from hotsync_events.drill.boot import cannot_boot as drill_cannot_boot

#: what a test host's processes do not get: the drill's list but mknod (a real slave replicates device nodes)
HOST_CAPS = tuple(c for c in DROPPED_CAPS if c != "mknod")

__all__ = ["BootError", "Host", "HostCommandError", "SANDBOX_DIR", "cannot_boot", "image_masks", "leftovers",
           "link", "sweep"]

SANDBOX_DIR = Path("/var/tmp/hotsync-booted")
CGROUP_GROUP = "hotsync-booted"
CONTAINER = "hotsync-booted"                    # systemd's $container: it knows it is not on the machine
#: always masked: the recipe's list, and what would act on the machine's kernel rather than the host
ALWAYS_MASKED = ("mariadb.service", "postgresql.service", "slapd.service", "console-getty.service",
                 "getty@tty1.service", "systemd-modules-load.service", "systemd-timesyncd.service",
                 "systemd-pstore.service")
POLL = 0.25                 # seconds between two looks at a booting or stopping host
BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class BootError(RuntimeError):
    """A host that did not boot, or did not stop, in time; the message ends with its log."""


class HostCommandError(RuntimeError):
    """A command run in a host that failed; the message has its exit code and output."""

    def __init__(self, host: str, argv: Sequence[str], cp: subprocess.CompletedProcess) -> None:
        self.returncode = cp.returncode
        self.stdout, self.stderr = cp.stdout, cp.stderr
        super().__init__(f"{host}: {shlex.join(argv)} exited {cp.returncode}\n--- stdout\n{_tail(cp.stdout)}"
                         f"\n--- stderr\n{_tail(cp.stderr)}")


def _tail(text: str | None, lines: int = 30) -> str:
    return "\n".join((text or "").splitlines()[-lines:])


def _sh(*argv: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess:
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and cp.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {cp.returncode}: {cp.stderr.strip() or cp.stdout.strip()}")
    return cp


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------- can we?
def cannot_boot() -> str | None:
    """Why this machine cannot boot a host (None when it can): the reason a test skips with. The drill's
    own answer (``drill.boot.cannot_boot``: root, the tools, systemd, overlayfs, a cgroup layout, the
    namespaces), and ip(8) for the veth links."""
    if not os.access("/usr/bin/ip", os.X_OK) and not os.access("/sbin/ip", os.X_OK):
        return "booted hosts need ip (iproute2)"
    why = drill_cannot_boot()
    return f"booted hosts: {why}" if why else None


def image_masks(root: Path = Path("/")) -> list[str]:
    """The units a boot of *root* must not start: what the image enables, and :data:`ALWAYS_MASKED`.

    Enabled = named in ``etc/systemd/system/*.wants`` or ``*.requires`` (targets excepted: they start
    only what is itself listed), or a SysV script with an ``S`` link and no native unit of its name.
    """
    names = set(ALWAYS_MASKED)
    etc = root / "etc/systemd/system"
    for wants in sorted(etc.glob("*.wants")) + sorted(etc.glob("*.requires")):
        names.update(p.name for p in wants.iterdir() if not p.name.endswith(".target"))
    native = {p.name for d in ("lib/systemd/system", "etc/systemd/system", "usr/lib/systemd/system")
              for p in (root / d).glob("*.service")}
    for rc in sorted(root.glob("etc/rc[2345S].d")):
        for link_ in rc.glob("S[0-9][0-9]*"):
            unit = re.sub(r"\.sh$", "", link_.name[3:]) + ".service"
            if unit not in native:
                names.add(unit)
    return sorted(names)


# ------------------------------------------------------------------------------------------- state
def _proc_start(pid: int) -> str | None:
    """The start time of *pid* (clock ticks since boot), or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int | None, start: str | None) -> bool:
    return pid is not None and _proc_start(pid) is not None and (start is None or _proc_start(pid) == start)


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below *path* in this mount namespace, deepest first."""
    prefix = str(path).rstrip("/")
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def _processes_rooted_in(path: Path) -> list[int]:
    """Processes whose root directory is at or below *path* (a host's PID 1 and everything inside)."""
    prefix = str(path).rstrip("/")
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            where = os.readlink(f"/proc/{entry.name}/root")
        except OSError:
            continue
        if where == prefix or where.startswith(prefix + "/"):
            pids.append(int(entry.name))
    return pids


def leftovers(sandbox: Path, cgroups: Iterable[Path] = ()) -> list[str]:
    """What is left of a sandbox: mounts, processes, cgroups, files. Empty when it is all gone."""
    cgroups = list(cgroups)
    left = [f"mount {m}" for m in _mounts_under(sandbox)]
    left += [f"process {p} rooted in {sandbox}" for p in _processes_rooted_in(sandbox)]
    left += [f"process {p} in its cgroups" for p in cgroup_pids(cgroups)]
    left += [f"cgroup {d}" for d in cgroups if d.exists()]
    left += [f"file {p}" for p in (sandbox, sandbox.with_name(sandbox.name + ".json")) if p.exists()]
    return left


def _kill_and_unmount(sandbox: Path, cgroups: Iterable[Path], deadline: float) -> None:
    """SIGKILL every process of the sandbox, then unmount it and remove its directories and cgroups."""
    cgroups = list(cgroups)
    kill_until_gone(lambda: set(_processes_rooted_in(sandbox)) | set(cgroup_pids(cgroups)), deadline)
    for point in _mounts_under(sandbox):
        cp = _sh("umount", point, check=False)
        if cp.returncode != 0:
            _sh("umount", "--lazy", point, check=False)
    for path in (sandbox / "merged", sandbox):
        try:
            if path.is_dir():
                path.rmdir()
        except OSError:
            pass
    remove_cgroups(cgroups)
    sandbox.with_name(sandbox.name + ".json").unlink(missing_ok=True)


def sweep(base: Path = SANDBOX_DIR, timeout: float = 30.0) -> list[str]:
    """Remove the sandboxes whose owner (the test process that made them) is dead; returns their ids.

    Leaves alone the sandboxes of a test run still going, on this machine, beside this one.
    """
    if not base.is_dir():
        return []
    deadline = time.monotonic() + timeout
    swept = []
    for state_file in sorted(base.glob("*.json")):
        ident = state_file.stem
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            state = {}
        if _alive(state.get("owner"), state.get("owner_start")):
            continue
        _kill_and_unmount(base / ident, [Path(c) for c in state.get("cgroups", [])], deadline)
        swept.append(ident)
    # a sandbox directory without a state file: made by a run killed between mkdir and the state write
    for path in sorted(p for p in base.iterdir() if p.is_dir()):
        if not (base / f"{path.name}.json").exists():
            _kill_and_unmount(path, [], deadline)
            swept.append(path.name)
    # the logs of hosts that are gone: kept after a test for a look, until the next run's sweep
    for log in base.glob("*.log"):
        if not (base / f"{log.stem}.json").exists():
            log.unlink(missing_ok=True)
    return swept


# ------------------------------------------------------------------------------------------- the host
class Host:
    """One booted host: ``Host(name).boot()``, then :meth:`run`, :meth:`reboot`, :meth:`poweroff`, :meth:`kill`.

    ``.pid`` is its PID 1 (systemd) as the machine sees it; ``.root`` its file system from outside.
    :meth:`destroy` powers it off if needed and removes everything; it is safe to call twice.
    """

    def __init__(self, name: str, base: Path = SANDBOX_DIR, masks: Iterable[str] | None = None) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name):
            raise ValueError(f"host name {name!r}: lower-case letters, digits and '-', at most 31")
        self.name = name
        self.base = base
        self.ident = f"{name}-{uuid.uuid4().hex[:8]}"
        self.dir = base / self.ident              # the tmpfs: upper/, work/, merged/
        self.root = self.dir / "merged"           # the host's / seen from the machine
        self.log = base / f"{self.ident}.log"
        self.masks = sorted(masks) if masks is not None else image_masks()
        self.machine_id = uuid.uuid4().hex
        #: its cgroups on the machine: below this process's own cgroup in each hierarchy (so whatever limits
        #: the test run has, the host has too), ``hotsync-booted/<id>``; the host's cgroup namespace root
        self.cgroups = [c / CGROUP_GROUP / self.ident for c in own_cgroups()]
        self.pid: int | None = None
        self.boots = 0
        self.boot_seconds: list[float] = []       # from boot() to "running|degraded", each boot
        self._proc: subprocess.Popen | None = None
        self._console: tuple[int, int] | None = None
        self._drain: threading.Thread | None = None
        self._stop_drain = threading.Event()
        self._boot_started = 0.0
        self._prepared = False

    def __repr__(self) -> str:
        return f"<Host {self.name} pid={self.pid} {self.ident}>"

    # ---------------------------------------------------------------- files
    def _save_state(self) -> None:
        me = os.getpid()
        _write_atomic(self.base / f"{self.ident}.json",
                      json.dumps({"owner": me, "owner_start": _proc_start(me), "name": self.name,
                                  "pid": self.pid, "root": str(self.root),
                                  "cgroups": [str(c) for c in self.cgroups]}) + "\n")

    def prepare(self) -> None:
        """Mount the tmpfs and the overlay, write the host's identity. Done once; reboots keep it."""
        if self._prepared:
            return
        self.base.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.dir.mkdir(mode=0o700)
        self._save_state()                         # before the first mount: a killed run is swept
        _sh("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(self.dir))
        for sub in ("upper", "work", "merged"):
            (self.dir / sub).mkdir()
        _sh("mount", "-t", "overlay", "overlay", "-o",
            f"lowerdir=/,upperdir={self.dir / 'upper'},workdir={self.dir / 'work'}", str(self.root))
        self._prepared = True
        etc = self.root / "etc"
        _write_atomic(etc / "machine-id", self.machine_id + "\n", 0o444)
        _write_atomic(etc / "hostname", self.name + "\n")
        _write_atomic(etc / "hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{self.name}\n"
                                     "::1\tlocalhost ip6-localhost ip6-loopback\n")

    def path(self, inside: str) -> Path:
        """The machine's path of *inside* (a path in the host): read or write the host's files from outside."""
        return self.root / inside.lstrip("/")

    # ---------------------------------------------------------------- boot
    def _script(self, console: str) -> str:
        """What runs in the new namespaces before systemd (``drill.boot.boot_script``): the host's /proc, /sys,
        /dev, /run, /tmp and cgroups, then systemd with the masks."""
        return boot_script(self.root, console=console, boot_id=self.dir / "boot_id", container=CONTAINER,
                           hostname=self.name, systemd_args=[f"systemd.mask={u}" for u in self.masks],
                           caps=HOST_CAPS)

    def boot(self) -> Host:
        """Start systemd as PID 1 of the host (returns at once; :meth:`wait_running` waits for the boot)."""
        if self.running():
            raise BootError(f"{self.name} is already running (pid {self.pid})")
        from hotsync_events.childproc import die_with_parent

        self.prepare()
        _write_atomic(self.dir / "boot_id", str(uuid.uuid4()) + "\n", 0o444)
        master, slave = os.openpty()
        self._console = (master, slave)
        self._stop_drain.clear()
        self._drain = threading.Thread(target=self._drain_console, args=(master,), daemon=True,
                                       name=f"console-{self.name}")
        self._drain.start()
        with open(self.log, "ab") as fh:
            fh.write(f"==== boot {self.boots + 1} of {self.name} ({self.ident})\n".encode())
        argv = ["sh", "-c", enter_cgroups(self.cgroups) + "; exec unshare --pid --fork --kill-child --mount --uts "
                "--ipc --net --cgroup sh -c \"$0\"", self._script(os.ttyname(slave))]
        logfd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            self._boot_started = time.monotonic()
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logfd, stderr=logfd,
                                          start_new_session=True, preexec_fn=die_with_parent())
        finally:
            os.close(logfd)
        self.pid = self._find_pid1(self._proc)
        self.boots += 1
        self._save_state()
        return self

    def _find_pid1(self, proc: subprocess.Popen, timeout: float = 15.0) -> int:
        """The pid of unshare's child once it is systemd (``exec``'d from the set-up shell)."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.05) + 1):
            if time.monotonic() > deadline:
                break
            if proc.poll() is not None:
                raise BootError(f"{self.name}: the launcher exited {proc.returncode} before systemd started\n"
                                + self.log_tail())
            try:
                children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
                if children:
                    cmd = Path(f"/proc/{children[0]}/cmdline").read_bytes().split(b"\0")[0]
                    if cmd == SYSTEMD.encode():
                        return int(children[0])
            except OSError:
                pass
            time.sleep(0.05)
        raise BootError(f"{self.name}: systemd did not start within {timeout:.0f}s\n" + self.log_tail())

    def _drain_console(self, master: int) -> None:
        """Copy the host's /dev/console to its log until the host is gone (or stop is asked)."""
        import select

        with open(self.log, "ab", buffering=0) as out:
            while not self._stop_drain.is_set():   # ends with the host: stop is asked, or the pty goes
                try:
                    ready, _, _ = select.select([master], [], [], 0.5)
                    if ready:
                        out.write(os.read(master, 65536).replace(b"\r\n", b"\n"))
                except OSError:
                    return

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def state(self) -> str:
        """``systemctl is-system-running``'s answer, or ``down``/``unreachable``."""
        if not self.running():
            return "down"
        try:
            cp = self.run(["systemctl", "is-system-running"], check=False, timeout=10)
        except subprocess.TimeoutExpired:
            return "unreachable"
        return cp.stdout.strip() or "unreachable"

    def wait_running(self, timeout: float = BOOT_TIMEOUT) -> str:
        """Wait until systemd says ``running`` or ``degraded``; returns which. BootError after *timeout*."""
        deadline = time.monotonic() + timeout
        state = "down"
        for _ in range(int(timeout / POLL) + 1):
            state = self.state()
            if state in ("running", "degraded"):
                self.boot_seconds.append(round(time.monotonic() - self._boot_started, 2))
                return state
            if state == "down" or time.monotonic() > deadline:
                break
            time.sleep(POLL)
        jobs = self.run(["systemctl", "list-jobs", "--no-pager"], check=False, timeout=10).stdout \
            if self.running() else "(host down)"
        raise BootError(f"{self.name}: not up after {timeout:.0f}s (state {state})\njobs:\n{_tail(jobs)}\n"
                        + self.log_tail())

    def failed_units(self) -> list[str]:
        cp = self.run(["systemctl", "list-units", "--failed", "--plain", "--no-legend", "--no-pager"], check=False)
        return [line.split()[0] for line in cp.stdout.splitlines() if line.strip()]

    # ---------------------------------------------------------------- commands
    def run(self, cmd: Sequence[str] | str, *, check: bool = True, timeout: float = 60.0, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run *cmd* (a list, or a string for ``sh -c``) as root in the host, with a clean environment.

        ``nsenter -t PID -a -r -w``: all of the host's namespaces, its root and working directory.
        """
        if not self.running() or self.pid is None:
            raise BootError(f"{self.name} is not running")
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        base_env = {"PATH": HOST_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
        cp = subprocess.run([*self._enter(), *argv], capture_output=True, text=True, timeout=timeout, input=input,
                            env={**base_env, **(env or {})}, stdin=None if input is not None else subprocess.DEVNULL)
        if check and cp.returncode != 0:
            raise HostCommandError(self.name, argv, cp)
        return cp

    def _enter(self) -> list[str]:
        """The argv prefix that runs a command in the host: into its root cgroups, then its namespaces."""
        return enter_argv(self.pid, self.cgroups, HOST_CAPS)

    # ---------------------------------------------------------------- stop
    def _wait_gone(self, timeout: float) -> bool:
        assert self._proc is not None
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _after_stop(self) -> None:
        """Close the console, forget PID 1; the state file (if the sandbox exists) says no host runs."""
        self._stop_drain.set()
        if self._drain is not None:
            self._drain.join(timeout=5)
        if self._console is not None:
            for fd in self._console:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._console = None
        self.pid = None
        if self._prepared:
            self._save_state()

    def poweroff(self, timeout: float = STOP_TIMEOUT) -> None:
        """``systemctl poweroff`` and wait for PID 1 to end; BootError (after a hard kill) past *timeout*."""
        if not self.running():
            self._after_stop()
            return
        subprocess.run([*self._enter(), "systemctl", "poweroff", "--no-block"], capture_output=True, timeout=30,
                       env={"PATH": HOST_PATH})
        if not self._wait_gone(timeout):
            tail = self.log_tail()
            self.kill()
            raise BootError(f"{self.name}: did not power off within {timeout:.0f}s (killed)\n{tail}")
        self._after_stop()

    def kill(self) -> None:
        """Pull the plug: SIGKILL to PID 1; the kernel ends everything in its pid namespace."""
        if self.running() and self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if not self._wait_gone(15):
                assert self._proc is not None
                self._proc.kill()
                self._wait_gone(5)
        self._after_stop()

    def reboot(self, timeout: float = BOOT_TIMEOUT) -> str:
        """Power off, boot the same overlay again (its upper layer, on the tmpfs, stays), wait until up."""
        self.poweroff()
        remove_cgroups(self.cgroups)
        return self.boot().wait_running(timeout)

    def destroy(self) -> None:
        """Power off (kill if it will not), unmount, remove the sandbox, its cgroups and its state file."""
        try:
            if self.running():
                try:
                    self.poweroff(timeout=20)
                except BootError:
                    pass
        finally:
            self.kill()
            _kill_and_unmount(self.dir, self.cgroups, time.monotonic() + 30)
            self._prepared = False

    def leftovers(self) -> list[str]:
        """What is left of this host on the machine (see :func:`leftovers`)."""
        return leftovers(self.dir, self.cgroups)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log})"
        return f"--- the end of {self.log}\n" + _tail(text, lines)


def link(a: Host, b: Host, addr_a: str, addr_b: str, prefix: int = 24, dev_a: str = "va", dev_b: str = "vb") -> None:
    """Join *a* and *b* with a veth pair (``dev_a`` in a, ``dev_b`` in b), addresses up, loopback up.

    Use addresses that exist only inside the hosts' network namespaces.
    """
    if a.pid is None or b.pid is None:
        raise BootError("link: both hosts must be running")
    _sh("ip", "link", "add", dev_a, "netns", str(a.pid), "type", "veth", "peer", "name", dev_b, "netns", str(b.pid))
    for host, dev, addr in ((a, dev_a, addr_a), (b, dev_b, addr_b)):
        host.run(["ip", "addr", "add", f"{addr}/{prefix}", "dev", dev])
        host.run(["ip", "link", "set", dev, "up"])
        host.run(["ip", "link", "set", "lo", "up"])


# ------------------------------------------------------------------------------------------- fixtures
class Hosts:
    """The ``booted`` fixture: boots hosts for one test and destroys them after it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.made: list[Host] = []

    def boot(self, *names: str, mask: Iterable[str] = (), timeout: float = BOOT_TIMEOUT) -> list[Host]:
        """Boot hosts named *names* side by side (*mask*: units masked on top of :func:`image_masks`);
        returns them up (running or degraded)."""
        masks = image_masks() + list(mask)
        hosts = [Host(n, self.base, masks=masks) for n in names]
        self.made.extend(hosts)
        for h in hosts:
            h.boot()
        for h in hosts:
            h.wait_running(timeout)
        return hosts

    def destroy_all(self) -> None:
        errors = []
        for h in reversed(self.made):
            try:
                h.destroy()
            except Exception as exc:   # every host gets its cleanup; the first error is reported after
                errors.append(f"{h.name}: {exc}")
        if errors:
            raise RuntimeError("cleanup of booted hosts: " + "; ".join(errors))


@pytest.fixture(scope="session")
def booted_sandbox() -> Path:
    """Skips when this machine cannot boot hosts; sweeps what dead test runs left; the sandbox dir."""
    reason = cannot_boot()
    if reason:
        pytest.skip(reason)
    sweep(SANDBOX_DIR)
    return SANDBOX_DIR


@pytest.fixture
def booted(booted_sandbox: Path) -> Iterator[Hosts]:
    """``booted.boot("a", "b")``: hosts booted for this test, powered off and removed after it."""
    hosts = Hosts(booted_sandbox)
    try:
        yield hosts
    finally:
        hosts.destroy_all()
