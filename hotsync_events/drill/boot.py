"""A booted drill: systemd as PID 1 of the drill's namespaces, on the overlay of a real host's ``/``.

On a real host the promote starts services through systemd, restores each database through its unit, and
the runbook ends with a reboot that starts every enabled unit. A drill that ran all that with the process
back-end would check another host than the one that takes over. So on a host whose root is ``/`` and whose
PID 1 is systemd, ``hotsync drill`` boots the overlay (``--boot``; ``--no-boot`` for the process back-end):

* **its namespaces**: new pid, mount, uts, ipc, network (loopback only) and cgroup namespaces. Before
  systemd starts: a fresh ``/proc`` with ``/proc/sys`` read-only but for ``/proc/sys/net``, a read-only
  ``/sys``, a ``/dev`` of its own (null, zero, full, random, urandom, tty, a new devpts, a pty as
  ``/dev/console`` whose output the drill keeps), tmpfs ``/run`` and ``/tmp``, a boot id and a machine id
  of its own, and cgroups of its own (``hotsync-drill/<id>`` below the caller's cgroup in each hierarchy,
  the root of the drilled host's cgroup namespace: what its systemd makes stays there).
* **what it starts**: systemd boots into ``hotsync-drill.target`` (sysinit only: no service of the host
  starts by itself), with the units that act on the machine's kernel, clock or console masked
  (:data:`MACHINE_UNITS`), ``fstab=no`` (the host's disks are the overlay's lower layer, not devices the
  drill may mount), and without the capabilities that reach the machine's kernel, clock or console
  (:data:`DROPPED_CAPS`, as systemd-nspawn drops them). The promote and the checks run inside
  (``nsenter``), then ``default.target`` starts, as the reboot after a real promote would.
* **its end**: PID 1 is the child of a launcher that dies with the drill (``PR_SET_PDEATHSIG``,
  ``unshare --kill-child``): a killed drill takes its whole pid namespace, and its mounts with it. The
  empty cgroup directories a killed drill leaves are removed by the next (:func:`sweep_cgroups`).

The same recipe boots the test suite's hosts (``tests/booted.py``).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

__all__ = ["BootError", "BootedHost", "CGROUP_GROUP", "DROPPED_CAPS", "MACHINE_UNITS", "SYSTEMD", "UNIT_NAME",
           "TARGET", "boot_script", "cannot_boot", "bounding", "cgroup_layout", "cgroup_pids", "enter_argv", "enter_cgroups",
           "host_cgroups", "kill_host_cgroups", "kill_until_gone", "make_cgroup", "own_cgroups", "remove_cgroups", "remove_host_cgroups", "sweep_cgroups"]

SYSTEMD = "/lib/systemd/systemd"
CONTAINER = "hotsync-drill"                     # systemd's $container: it knows it is not on the machine
CGROUP_GROUP = "hotsync-drill"
TARGET = "hotsync-drill.target"
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: units that act on the machine's kernel, clock, console, hardware or network rather than on the booted
#: host (a namespace does not separate them, or they need devices and links a drill has not): always masked.
#: What one of them would say in a drill is nothing about the takeover. ``hotsync DrillSkipUnits`` adds more.
MACHINE_UNITS = ("console-getty.service", "getty@tty1.service", "systemd-modules-load.service",
                 "systemd-timesyncd.service", "systemd-pstore.service", "kdump.service", "kdump-tools.service",
                 "irqbalance.service", "mcelog.service", "smartd.service", "smartmontools.service",
                 "auditd.service", "lm-sensors.service", "chronyd.service", "chrony.service", "ntpd.service",
                 "ntp.service", "ntpsec.service", "network.service", "networking.service",
                 "NetworkManager.service", "NetworkManager-wait-online.service", "systemd-networkd.service",
                 "systemd-networkd-wait-online.service", "wpa_supplicant.service", "ModemManager.service")
#: capabilities a drilled host's processes do not get: those systemd-nspawn drops (the machine's kernel,
#: clock, console), and ``mknod`` (its /dev has no device of the machine's, and must get none); ``sys_boot``
#: stays: in a pid namespace of its own, ``reboot()`` only ends that namespace (``kexec`` is masked above)
DROPPED_CAPS = ("sys_module", "sys_time", "sys_rawio", "syslog", "wake_alarm", "block_suspend", "mac_admin",
                "mac_override", "mknod")
#: under the drilled host's /proc: read-only (bound on themselves), as systemd-nspawn and container runtimes
PROC_READONLY = ("sys", "sysrq-trigger", "irq", "bus", "fs", "scsi", "acpi", "asound")
#: the launcher's PATH: cron gives ``/usr/bin:/bin`` only, and chroot is in /usr/sbin
HOST_ENV = {"PATH": HOST_PATH, "LANG": "C.UTF-8"}
UNIT_NAME = re.compile(r"[A-Za-z0-9@_:][A-Za-z0-9@._:\\-]*\."
                       r"(service|socket|timer|path|mount|automount|device|target|scope|slice|swap)")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
TARGET_UNIT = """\
[Unit]
Description=hotsync takeover drill: booted, no service of the host started yet
Documentation=man:hotsync(8)
Requires=sysinit.target
After=sysinit.target
AllowIsolate=yes
"""


def bounding(caps: Sequence[str] = DROPPED_CAPS) -> str:
    """setpriv's option that drops *caps* (default :data:`DROPPED_CAPS`) from the bounding set."""
    return "--bounding-set=" + ",".join("-" + c for c in caps)


class BootError(RuntimeError):
    """A host that did not boot, or did not stop, in time; the message ends with its console."""


# ------------------------------------------------------------------------------------------- can we?
def cgroup_layout(cgroup_dir: str = "/sys/fs/cgroup") -> str:
    """``unified`` (cgroup v2 only), ``hybrid`` (systemd's v1 named hierarchy and v2 beside it), or ``""``."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            if left.split()[4:5] == [cgroup_dir] and right.split()[:1] == ["cgroup2"]:
                return "unified"
    if all(os.path.exists(f"{cgroup_dir}/{h}/cgroup.procs") for h in ("systemd", "unified")):
        return "hybrid"
    return ""


def cannot_boot(system: str = "/") -> str | None:
    """Why a host cannot be booted here (None when it can): the drill says it, a test skips with it."""
    if os.geteuid() != 0:
        return "booting a host needs root (namespaces, mounts, cgroups)"
    for tool in ("unshare", "nsenter", "setpriv", "chroot"):
        if not any(os.access(f"{d}/{tool}", os.X_OK) for d in ("/usr/bin", "/usr/sbin", "/bin", "/sbin")):
            return f"no {tool} command (util-linux, coreutils)"
    if not os.access(os.path.join(system, SYSTEMD.lstrip("/")), os.X_OK):
        return f"no systemd at {SYSTEMD}"
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError as exc:
        return f"cannot read /proc/filesystems: {exc}"
    if not re.search(r"\boverlay\b", filesystems):
        return "the kernel has no overlayfs"
    if not cgroup_layout():
        return "no cgroup layout systemd can boot in (cgroup v2 at /sys/fs/cgroup, or systemd's hybrid one)"
    try:
        cp = subprocess.run(["unshare", "--pid", "--fork", "--mount", "--uts", "--ipc", "--net", "--cgroup", "true"],
                            capture_output=True, text=True, timeout=30, env=HOST_ENV, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot make new namespaces: {exc}"
    if cp.returncode != 0:
        return f"the kernel refuses new namespaces: {cp.stderr.strip()[:200]}"
    return None


# ------------------------------------------------------------------------------------------- cgroups
def own_cgroups(pid: int | str = "self") -> list[Path]:
    """The cgroup directory of process *pid* (this one by default) in each cgroup hierarchy mounted at or
    under /sys/fs/cgroup."""
    mine: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup", encoding="utf-8") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            mine[controllers or "(v2)"] = path
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields, (fstype, _, superopts) = left.split(), right.split()[:3]
            root, point = fields[3], fields[4]
            if root != "/" or not (point == "/sys/fs/cgroup" or point.startswith("/sys/fs/cgroup/")):
                continue
            if fstype == "cgroup2":
                key = "(v2)"
            elif fstype == "cgroup":
                opts = set(superopts.split(","))
                key = next((k for k in mine if k != "(v2)" and set(k.split(",")) <= opts), "")
            else:
                continue
            if key in mine:
                found.append(Path(point + mine[key].rstrip("/")))
    return sorted(set(found))


def make_cgroup(path: Path) -> None:
    """mkdir a cgroup and its missing parents; in cpuset, each gets its parent's cpus and mems (a new cpuset
    cgroup has none, and takes no process), and ``clone_children`` so the host's own cgroups get them too."""
    missing = [p for p in [path, *path.parents] if not p.exists()]
    for d in reversed(missing):
        d.mkdir()
        if (d / "cpuset.cpus").exists() and (d / "cgroup.clone_children").exists():      # cgroup v1's cpuset
            for name in ("cpuset.cpus", "cpuset.mems"):
                (d / name).write_text((d.parent / name).read_text())
            (d / "cgroup.clone_children").write_text("1")


def cgroup_pids(cgroups: Iterable[Path]) -> list[int]:
    """Every process in *cgroups* and below."""
    pids: set[int] = set()
    for top in cgroups:
        if not top.is_dir():
            continue
        for procs in [top / "cgroup.procs", *top.rglob("*/cgroup.procs")]:
            try:
                pids.update(int(p) for p in procs.read_text().split())
            except (OSError, ValueError):
                pass
    return sorted(pids)


def remove_cgroups(cgroups: Iterable[Path]) -> None:
    """rmdir cgroup trees, deepest first (a cgroup directory holds no files of its own), then their parent
    once no other tree uses it."""
    for top in cgroups:
        if not top.is_dir():
            continue
        for d in [*sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)), top, top.parent]:
            try:
                d.rmdir()
            except OSError:
                pass


def sweep_cgroups(group: str = CGROUP_GROUP, min_age: float = 5.0) -> list[Path]:
    """Remove what killed drills left below this process's cgroups: each ``<group>/<id>`` tree with no
    process in it, made more than *min_age* seconds ago (a drill starting beside this one has made its tree
    and not yet entered it). Returns the trees removed."""
    gone = []
    now = time.time()
    for mine in own_cgroups():
        base = mine / group
        for tree in sorted(base.iterdir()) if base.is_dir() else ():
            try:
                young = now - tree.stat().st_mtime < min_age
            except OSError:
                continue
            if tree.is_dir() and not young and not cgroup_pids([tree]):
                remove_cgroups([tree])
                if not tree.exists():
                    gone.append(tree)
    return gone


def host_cgroups(ident: str, pid: int | None = None) -> list[Path]:
    """The cgroups of the booted host *ident*: ``hotsync-drill/<ident>`` below this process's own; with
    *pid* (a process of that host), found from where that process is, whoever made the host."""
    if pid is None:
        return [c / CGROUP_GROUP / ident for c in own_cgroups()]
    mark = f"/{CGROUP_GROUP}/{ident}"
    return sorted({Path(str(c)[:str(c).index(mark) + len(mark)]) for c in own_cgroups(pid) if mark in str(c)})


def remove_host_cgroups(ident: str, wait: float = 5.0, cgroups: list[Path] | None = None) -> list[Path]:
    """Remove the booted host *ident*'s cgroups (or *cgroups*) once their processes are gone (the kernel
    frees a cgroup a moment after its last process is reaped: retried for *wait* seconds). Returns what
    is left."""
    cgroups = host_cgroups(ident) if cgroups is None else cgroups
    deadline = time.monotonic() + wait
    for _ in range(int(wait / 0.05) + 1):
        remove_cgroups(cgroups)
        left = [c for c in cgroups if c.exists()]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)
    return [c for c in cgroups if c.exists()]


# ------------------------------------------------------------------------------------------- the boot
def boot_script(merged: Path, *, console: str, boot_id: Path, systemd_args: Sequence[str],
                container: str = CONTAINER, hostname: str | None = None, layout: str | None = None,
                caps: Sequence[str] = DROPPED_CAPS) -> str:
    """The shell that runs in the new namespaces before systemd: the host's /proc, /sys, /dev, /run, /tmp
    and cgroups, then ``exec`` of systemd chrooted into *merged* (with *systemd_args*, without *caps*)."""
    M = shlex.quote(str(merged))
    layout = layout or cgroup_layout()
    lines = [
        "set -eu",
        "mount --make-rprivate /",
        f"mount -t proc -o nosuid,nodev,noexec proc {M}/proc",
        # what is not scoped to a namespace is the machine's (sysctls, interrupts, buses): read-only; the
        # network's sysctls are the host's own
        *(f"if [ -e {M}/proc/{p} ]; then mount --bind {M}/proc/{p} {M}/proc/{p}; "
          f"mount -o remount,bind,ro {M}/proc/{p}; fi" for p in PROC_READONLY),
        f"mount --bind {M}/proc/sys/net {M}/proc/sys/net", f"mount -o remount,bind,rw {M}/proc/sys/net",
        f"mount --bind {shlex.quote(str(boot_id))} {M}/proc/sys/kernel/random/boot_id",
        f"mount -t sysfs -o ro,nosuid,nodev,noexec sysfs {M}/sys",
    ]
    if layout == "unified":
        lines.append(f"mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 {M}/sys/fs/cgroup")
    else:      # hybrid: systemd mounts the v1 controllers itself
        lines += [f"mount -t tmpfs -o nosuid,nodev,noexec,mode=0755 tmpfs {M}/sys/fs/cgroup",
                  f"mkdir {M}/sys/fs/cgroup/systemd {M}/sys/fs/cgroup/unified",
                  f"mount -t cgroup -o none,name=systemd,nosuid,nodev,noexec cgroup {M}/sys/fs/cgroup/systemd",
                  f"mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 {M}/sys/fs/cgroup/unified"]
    lines.append(f"mount -t tmpfs -o nosuid,mode=0755,size=64m tmpfs {M}/dev")
    for dev in DEVICES:
        lines += [f"touch {M}/dev/{dev}", f"mount --bind /dev/{dev} {M}/dev/{dev}"]
    lines += [
        f"mkdir -m 0755 {M}/dev/pts {M}/dev/shm {M}/dev/mqueue",
        f"mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts {M}/dev/pts",
        f"ln -s pts/ptmx {M}/dev/ptmx",
        f"mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs {M}/dev/shm",
        f"ln -s /proc/self/fd {M}/dev/fd", f"ln -s /proc/self/fd/0 {M}/dev/stdin",
        f"ln -s /proc/self/fd/1 {M}/dev/stdout", f"ln -s /proc/self/fd/2 {M}/dev/stderr",
        f"touch {M}/dev/console", f"mount --bind {shlex.quote(console)} {M}/dev/console",
        f"mount -t tmpfs -o nosuid,nodev,mode=0755,size=20% tmpfs {M}/run",
        f"mount -t tmpfs -o nosuid,nodev,mode=1777,size=25% tmpfs {M}/tmp",
    ]
    if hostname:
        lines.append(f"hostname {shlex.quote(hostname)}")
    lines.append(
        f"exec setpriv {bounding(caps)} -- chroot {M} /usr/bin/env -i container={shlex.quote(container)} {SYSTEMD} "
        "--system " + " ".join(shlex.quote(a) for a in systemd_args)
        # the pty by its machine path: a plain /dev/console here, before the chroot, is the machine's
        + f" <{shlex.quote(console)} >{shlex.quote(console)} 2>&1")
    return "\n".join(lines) + "\n"


def enter_cgroups(cgroups: Iterable[Path]) -> str:
    """Shell lines that move the calling shell into *cgroups* (made first), joined with ``&&``: a move that
    fails stops what follows."""
    out = []
    for d in cgroups:
        make_cgroup(d)
        out.append(f"echo $$ > {shlex.quote(str(d / 'cgroup.procs'))}")
    return " && ".join(out) or "true"


def kill_until_gone(pids: Callable[[], Iterable[int]], deadline: float) -> None:
    """SIGKILL what *pids* () names, again and again, until it names nothing or *deadline* (monotonic)."""
    import signal

    for _ in range(1000):
        left = set(pids())
        if not left or time.monotonic() > deadline:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def enter_argv(pid: int | None, cgroups: Iterable[Path], caps: Sequence[str] = DROPPED_CAPS) -> list[str]:
    """The argv prefix that runs a command in the booted host whose PID 1 is *pid*: into its *cgroups*, then
    all its namespaces, its root and working directory, without *caps*."""
    moves = "; ".join(f"echo $$ > {shlex.quote(str(d / 'cgroup.procs'))}" for d in cgroups)
    return ["sh", "-c", f"{moves}; exec setpriv {bounding(caps)} -- nsenter -t {pid} -a -r -w -- \"$@\"",
            "nsenter"]


def kill_host_cgroups(ident: str, wait: float = 10.0, cgroups: list[Path] | None = None) -> list[Path]:
    """SIGKILL every process of the booted host *ident* (its cgroups, or *cgroups*: the launcher, systemd
    and all it started), then remove the cgroups. For a drill killed at its timeout, kept or not."""
    cgroups = host_cgroups(ident) if cgroups is None else cgroups
    deadline = time.monotonic() + wait
    kill_until_gone(lambda: cgroup_pids(cgroups), deadline)
    return remove_host_cgroups(ident, wait=max(0.5, deadline - time.monotonic()), cgroups=cgroups)


class BootedHost:
    """The drilled host booted on *merged*: :meth:`boot`, :meth:`wait_running`, :meth:`run`, :meth:`stop`.

    *scratch* is the drill's tmpfs (the boot id goes there); *ident* names its cgroups. With *detach*
    the launcher does not die with this process (``hotsync drill --keep``).
    """

    def __init__(self, merged: Path, scratch: Path, ident: str, *, detach: bool = False,
                 masks: Sequence[str] = MACHINE_UNITS) -> None:
        self.merged, self.scratch, self.ident, self.detach = merged, scratch, ident, detach
        self.masks = list(masks)
        self.cgroups = host_cgroups(ident)
        self.pid: int | None = None
        self.console: list[str] = []
        self._proc: subprocess.Popen | None = None
        self._pty: tuple[int, int] | None = None
        self._stop = threading.Event()

    def prepare(self) -> None:
        """The host's identity and its boot target, written on the overlay (its upper layer)."""
        import uuid

        from hotsync_events.fsutil import atomic_write

        etc = self.merged / "etc"
        atomic_write(etc / "machine-id", uuid.uuid4().hex + "\n", mode=0o444)
        (etc / "systemd/system").mkdir(parents=True, exist_ok=True)
        atomic_write(etc / "systemd/system" / TARGET, TARGET_UNIT, mode=0o644)
        atomic_write(self.scratch / "boot_id", str(uuid.uuid4()) + "\n", mode=0o444)

    def boot(self) -> None:
        """Start systemd as PID 1 of the host (returns once it runs; :meth:`wait_running` waits for the boot)."""
        from hotsync_events.childproc import die_with_parent

        self.prepare()
        master, slave = os.openpty()
        self._pty = (master, slave)
        if self.detach:
            # a kept host outlives this process: its console must too (systemd retries a console whose pty
            # has no master, and a shutdown then never ends); cat copies it to the drill's tmpfs until the
            # host's last process closes it
            with open(self.scratch / "console.log", "ab") as out:
                subprocess.Popen(["cat"], stdin=master, stdout=out, stderr=subprocess.DEVNULL, close_fds=True,
                                 start_new_session=True)
        else:
            threading.Thread(target=self._drain, args=(master,), daemon=True, name="drill-console").start()
        args = [f"systemd.unit={TARGET}", "fstab=no", *(f"systemd.mask={u}" for u in self.masks)]
        script = boot_script(self.merged, console=os.ttyname(slave), boot_id=self.scratch / "boot_id",
                             systemd_args=args)
        # oom_score_adj 1000: when memory runs short the kernel picks the drill's processes first (units that
        # set their own OOMScoreAdjust keep theirs); a cgroup move that fails stops the launch (the drilled
        # systemd would build its tree in the caller's cgroup)
        argv = ["sh", "-c", "echo 1000 > /proc/self/oom_score_adj && " + enter_cgroups(self.cgroups)
                + " && exec unshare --pid --fork --kill-child --mount --uts --ipc --net --cgroup sh -c \"$0\"", script]
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=HOST_ENV,
                                      start_new_session=True, close_fds=True,
                                      preexec_fn=None if self.detach else die_with_parent())
        try:
            self.pid = self._find_pid1()
        except BootError:
            kill_host_cgroups(self.ident, cgroups=self.cgroups)    # a launcher that never got to systemd
            if self._proc.poll() is None:
                self._proc.kill()
            raise

    def _find_pid1(self, timeout: float = 15.0) -> int:
        """The pid of unshare's child once it is systemd (``exec``'d from the set-up shell)."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.05) + 1):
            if self._proc.poll() is not None:
                raise BootError(f"the launcher exited {self._proc.returncode} before systemd started"
                                + self.console_tail())
            try:
                pid = self._proc.pid
                kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                if kids and Path(f"/proc/{kids[0]}/cmdline").read_bytes().split(b"\0")[0] == SYSTEMD.encode():
                    return int(kids[0])
            except OSError:
                pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise BootError(f"systemd did not start within {timeout:.0f} s" + self.console_tail())

    def _drain(self, master: int) -> None:
        """Keep the last lines of the host's console (its pty) until the host is gone."""
        import select

        partial = b""
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([master], [], [], 0.5)
                if not ready:
                    continue
                data = partial + os.read(master, 65536)
            except OSError:
                return
            *lines, partial = data.replace(b"\r\n", b"\n").split(b"\n")
            self.console.extend(ln.decode("utf-8", "replace") for ln in lines)
            del self.console[:-300]

    def console_tail(self, n: int = 25) -> str:
        """The last *n* lines of the console, for an error message ("" when there are none)."""
        lines = [ln for ln in self.console if ln.strip()][-n:]
        return ("\n--- the drilled host's console:\n" + "\n".join(lines)) if lines else ""

    def enter(self) -> list[str]:
        """The argv prefix that runs a command in the host (:func:`enter_argv`)."""
        return enter_argv(self.pid, self.cgroups)

    def run(self, argv: Sequence[str], *, timeout: float = 60.0, env: dict[str, str] | None = None,
            stderr: int | None = subprocess.PIPE) -> subprocess.CompletedProcess:
        """Run *argv* as root in the host with a clean environment (plus *env*); its output captured."""
        if self.pid is None:
            raise BootError("the drilled host is not running")
        base = {"PATH": HOST_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
        return subprocess.run([*self.enter(), *argv], stdout=subprocess.PIPE, stderr=stderr, text=True,
                              timeout=timeout, env={**base, **(env or {})}, stdin=subprocess.DEVNULL)

    def wait_running(self, timeout: float = 120.0, poll: float = 0.25) -> tuple[str, float]:
        """Wait until systemd has reached its boot target (``running`` or ``degraded``): (state, seconds)."""
        t0 = time.monotonic()
        state = "down"
        for _ in range(int(timeout / poll) + 1):
            if self._proc is None or self._proc.poll() is not None:
                raise BootError("the drilled host's systemd ended while booting" + self.console_tail())
            try:
                state = self.run(["systemctl", "is-system-running"], timeout=10).stdout.strip() or "unreachable"
            except subprocess.TimeoutExpired:
                state = "unreachable"
            if state in ("running", "degraded"):
                return state, round(time.monotonic() - t0, 2)
            if time.monotonic() - t0 > timeout:
                break
            time.sleep(poll)
        raise BootError(f"the drilled host did not boot within {timeout:.0f} s (state {state})" + self.console_tail())

    def stop(self, timeout: float = 30.0) -> None:
        """Power the host off (SIGKILL to its PID 1 past *timeout*), then remove its cgroups."""
        if self._proc is not None and self._proc.poll() is None:
            try:
                self.run(["systemctl", "poweroff", "--no-block"], timeout=10)
            except (subprocess.TimeoutExpired, BootError):
                pass
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()          # which cleans up after it
                return
        self._after()

    def kill(self) -> None:
        """Pull the plug: SIGKILL to PID 1; the kernel ends everything in its pid namespace."""
        import signal

        if self._proc is not None and self._proc.poll() is None and self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._after()

    def _after(self) -> None:
        self._stop.set()
        if self._pty is not None:
            for fd in self._pty:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._pty = None
        self.pid = None
        kill_host_cgroups(self.ident, wait=2.0, cgroups=self.cgroups)

