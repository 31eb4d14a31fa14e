"""Services: start, stop, restart, reload, enable and disable the daemons plugins declare.

Plugins declare :class:`hotsync_events.types.Service` objects through the ``hotsync_services`` hook. Two
back-ends run them:

* ``systemd`` when PID 1 is systemd and the root is ``/``: ``systemctl VERB UNIT`` (a service with a
  command and no unit still runs with the process back-end there);
* ``process`` everywhere else (containers, tests, the demo, any root other than ``/``): the service's
  ``command`` runs in the foreground of its own session, its pid in ``<root>/run/hotsync/<name>.pid``
  (with the process's start time, so a recycled pid is never taken for it), its output appended to
  ``<root>/var/log/hotsync/<name>.log``. ``{root}`` in an argument is replaced by the root. Enable and
  disable only matter at boot, which this back-end does not manage: they are recorded, nothing more.

``HOTSYNC_SERVICE_BACKEND=process|systemd`` forces one. :meth:`ServiceManager.adjust` is the service step
of an event (priority 90): each service the event names, and each service a changed template names, is
brought to the state the configuration asks for, as e-smith's ``adjust-services`` does. A command is an
argument list; it never goes through a shell.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hotsync_events.paths import Root
from hotsync_events.types import Service

__all__ = ["ProcessBackend", "ServiceError", "ServiceManager", "ServiceState", "SystemdBackend", "backend_name",
           "collect_services", "service_control"]

START_GRACE = 0.3      # seconds a started daemon must survive to count as started
STOP_TIMEOUT = 30.0    # seconds between SIGTERM and SIGKILL (the notifier's last push takes up to 20)
SYSTEMCTL_TIMEOUT = 120.0


class ServiceError(Exception):
    """A service that could not be brought to the state asked for; the message says why."""


class ServiceState:
    """Whether a service runs, its pid, and a phrase for people."""

    __slots__ = ("name", "running", "pid", "detail")

    def __init__(self, name: str, running: bool, pid: int | None = None, detail: str = "") -> None:
        self.name, self.running, self.pid, self.detail = name, running, pid, detail

    def as_json(self) -> dict:
        return {"name": self.name, "running": self.running, "pid": self.pid, "detail": self.detail}


def collect_services(pm: Any, db: Any, root: Any = None) -> list[tuple[str, Service]]:
    """``[(plugin, Service)]`` in (priority, name) order; one name from two plugins is a
    :class:`~hotsync_events.manager.RegistrationError` naming both."""
    return pm.registered("hotsync_services", Service, root=root, db=db)


def service_control(root: Root, pm: Any, db: Any, *, backend: str | None = None) -> Any:
    """``control(name, verb)`` for :meth:`ActionContext.service <hotsync_events.types.ActionContext.service>`:
    the plugins' services of *root*, collected when first asked for, run by the host's back-end."""
    managers: list[ServiceManager] = []

    def control(name: str, verb: str) -> str:
        if not managers:
            managers.append(ServiceManager(root, collect_services(pm, db, root), backend=backend))
        return managers[0].do(name, verb)
    return control


def backend_name(root: Root) -> str:
    forced = os.environ.get("HOTSYNC_SERVICE_BACKEND", "")
    if forced in ("process", "systemd"):
        return forced
    if root.path != Path("/"):
        return "process"
    try:
        with open("/proc/1/comm", encoding="ascii", errors="replace") as fh:
            return "systemd" if fh.read().strip() == "systemd" else "process"
    except OSError:
        return "process"


def _proc_start(pid: int) -> tuple[str, str] | None:
    """(state letter, start time) of *pid* from /proc, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class ProcessBackend:
    """Daemons as plain processes with pidfiles and logs under the root."""

    name = "process"

    def __init__(self, root: Root) -> None:
        self.root = root

    def pidfile(self, svc: Service) -> Path:
        return self.root.run_dir / f"{svc.name}.pid"

    def logfile(self, svc: Service) -> Path:
        return self.root.log_dir / f"{svc.name}.log"

    def argv(self, svc: Service) -> list[str]:
        if not svc.command:
            raise ServiceError(f"service {svc.name} has no command for the process back-end "
                               "(Service.command); on this host it cannot be started")
        base = str(self.root.path)
        out = []
        for arg in svc.command:
            if arg == "{root}":
                out.append(base)
            else:
                out.append(arg.replace("{root}/", base.rstrip("/") + "/").replace("{root}", base))
        return out

    def status(self, svc: Service) -> ServiceState:
        path = self.pidfile(svc)
        try:
            text = path.read_text(encoding="ascii").split()
            pid, start = int(text[0]), (text[1] if len(text) > 1 else None)
        except (OSError, ValueError, IndexError):
            return ServiceState(svc.name, False, None, "stopped")
        info = _proc_start(pid)
        if info is None or info[0] in ("Z", "X") or (start is not None and info[1] != start):
            if info is not None and info[0] in ("Z", "X"):
                _reap(pid)
            return ServiceState(svc.name, False, None, f"dead (stale pidfile {path})")
        return ServiceState(svc.name, True, pid, f"running, pid {pid}")

    def start(self, svc: Service) -> str:
        import subprocess

        state = self.status(svc)
        if state.running:
            return f"already running (pid {state.pid})"
        argv = self.argv(svc)
        log = self.logfile(svc)
        log.parent.mkdir(parents=True, exist_ok=True)
        from hotsync_events.childproc import module_cwd
        from hotsync_events.fsutil import open_private_log

        # the run directory (pid files), and the working directory: never the root, a daemon run as
        # ``python -m`` would import from it
        cwd = module_cwd(self.root)
        env = {**os.environ, "HOTSYNC_ROOT": str(self.root.path), "HOTSYNC_SERVICE": svc.name}
        logfd = open_private_log(log)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logfd, stderr=logfd, env=env,
                                    cwd=cwd, start_new_session=True, close_fds=True)
        except OSError as exc:
            raise ServiceError(f"service {svc.name}: cannot run {argv[0]}: {exc.strerror or exc}") from None
        finally:
            os.close(logfd)
        info = _proc_start(proc.pid)
        from hotsync_events.fsutil import atomic_write

        atomic_write(self.pidfile(svc), f"{proc.pid} {info[1] if info else ''}\n".replace(" \n", "\n"))
        deadline = time.monotonic() + START_GRACE
        while time.monotonic() < deadline:
            rc = proc.poll()
            if rc is not None:
                self.pidfile(svc).unlink(missing_ok=True)
                raise ServiceError(f"service {svc.name} exited at once with status {rc}; the end of {log}:\n"
                                   + _tail(log))
            time.sleep(0.02)
        proc.returncode = 0  # detached: Popen must not report it as a lost child
        return f"started (pid {proc.pid})"

    def stop(self, svc: Service) -> str:
        state = self.status(svc)
        if not state.running:
            self.pidfile(svc).unlink(missing_ok=True)
            return "already stopped"
        pid = state.pid
        assert pid is not None
        # as systemd's KillMode=mixed: SIGTERM to the daemon alone (its children, e.g. the notifier's last
        # push, finish under it), then SIGKILL to whatever is left of its process group
        try:
            os.kill(pid, 15)     # SIGTERM (the signal module is slow to import)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            _reap(pid)
            info = _proc_start(pid)
            if info is None or info[0] in ("Z", "X"):
                break
            time.sleep(0.02)
        try:
            os.killpg(pid, 9)    # SIGKILL: the daemon past its timeout, its children left behind
        except OSError:
            pass
        time.sleep(0.05)
        _reap(pid)
        self.pidfile(svc).unlink(missing_ok=True)
        return f"stopped (was pid {pid})"

    def restart(self, svc: Service) -> str:
        self.stop(svc)
        return "re" + self.start(svc)

    def reload(self, svc: Service) -> str:
        state = self.status(svc)
        if not state.running:
            return self.start(svc)
        os.kill(state.pid, 1)  # type: ignore[arg-type]  # SIGHUP
        return f"reloaded (SIGHUP to pid {state.pid})"

    def enable(self, svc: Service) -> str:
        return "enabled"

    def disable(self, svc: Service) -> str:
        return "disabled"


def _tail(path: Path, lines: int = 10) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class SystemdBackend:
    """``systemctl`` on the service's unit."""

    name = "systemd"

    def __init__(self, root: Root) -> None:
        self.root = root

    def _unit(self, svc: Service) -> str:
        if not svc.unit:
            raise ServiceError(f"service {svc.name} has no systemd unit (Service.unit)")
        return svc.unit

    def _ctl(self, *args: str) -> tuple[int, str]:
        import subprocess

        try:
            cp = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT,
                                stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 1, str(exc)
        return cp.returncode, (cp.stdout + cp.stderr).strip()

    def status(self, svc: Service) -> ServiceState:
        unit = self._unit(svc)
        rc, out = self._ctl("is-active", unit)
        pid = None
        if rc == 0:
            _, p = self._ctl("show", "-p", "MainPID", "--value", unit)
            pid = int(p) if p.isdigit() and p != "0" else None
        return ServiceState(svc.name, rc == 0, pid, out or ("active" if rc == 0 else "inactive"))

    def _do(self, verb: str, svc: Service) -> str:
        unit = self._unit(svc)
        if verb in ("start", "restart", "reload", "enable"):
            # a unit file or drop-in rendered (or removed) since systemd loaded it: load it again first
            _, need = self._ctl("show", "-p", "NeedDaemonReload", "--value", unit)
            if need.strip() == "yes":
                self._ctl("daemon-reload")
        rc, out = self._ctl(verb, unit)
        if rc == 0 and verb == "disable":
            self._ctl("reset-failed", unit)     # a unit the configuration turned off no longer shows as failed
        if rc != 0:
            raise ServiceError(f"systemctl {verb} {svc.unit} failed ({rc}): {out}")
        return {"start": "started", "stop": "stopped", "restart": "restarted", "reload": "reloaded",
                "enable": "enabled", "disable": "disabled"}[verb]

    def start(self, svc: Service) -> str:
        return self._do("start", svc)

    def stop(self, svc: Service) -> str:
        return self._do("stop", svc)

    def restart(self, svc: Service) -> str:
        return self._do("restart", svc)

    def reload(self, svc: Service) -> str:
        return self._do("reload", svc)

    def enable(self, svc: Service) -> str:
        return self._do("enable", svc)

    def disable(self, svc: Service) -> str:
        return self._do("disable", svc)


class ServiceManager:
    """The services of one root and the back-end that runs them."""

    def __init__(self, root: Root, services: Iterable[Service] | Iterable[tuple[str, Service]],
                 backend: Any = None, passive: bool = False) -> None:
        """*backend*: ``"systemd"``, ``"process"``, a back-end object (start/stop/.../status of a Service),
        or None for the host's (:func:`backend_name`)."""
        self.root = root
        self.passive = passive      # a slave: services marked ``writer`` are kept stopped (Service.writer)
        self.services: dict[str, Service] = {}
        self.origin: dict[str, str] = {}
        for item in services:
            plugin, svc = item if isinstance(item, tuple) else ("", item)
            self.services[svc.name] = svc
            self.origin[svc.name] = plugin
        if backend is not None and not isinstance(backend, str):
            self.backend: Any = backend
        else:
            name = backend or backend_name(root)
            self.backend = SystemdBackend(root) if name == "systemd" else ProcessBackend(root)
        self._process = self.backend if isinstance(self.backend, ProcessBackend) else ProcessBackend(root)

    def backend_for(self, svc: Service) -> Any:
        """systemd for a service with a unit on a systemd host; else the process back-end."""
        if isinstance(self.backend, SystemdBackend) and not svc.unit and svc.command:
            return self._process
        return self.backend

    def get(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise ServiceError(f"no service {name!r}; known: {', '.join(sorted(self.services)) or 'none'}") from None

    def do(self, name: str, verb: str) -> str:
        if verb not in ("start", "stop", "restart", "reload", "enable", "disable", "status"):
            raise ServiceError(f"unknown service verb {verb!r}; allowed: start, stop, restart, reload, enable, "
                               "disable, status")
        svc = self.get(name)
        if verb == "status":
            return self.backend_for(svc).status(svc).detail
        return getattr(self.backend_for(svc), verb)(svc)

    def status(self, name: str) -> ServiceState:
        svc = self.get(name)
        return self.backend_for(svc).status(svc)

    def table(self) -> list[dict]:
        """Every service with its declaration and state (``hotsync services``)."""
        rows = []
        for name in sorted(self.services):
            svc = self.services[name]
            backend = self.backend_for(svc)
            st = backend.status(svc)
            command = None
            if svc.command:
                command = backend.argv(svc) if isinstance(backend, ProcessBackend) else list(svc.command)
            rows.append({"name": name, "plugin": self.origin.get(name, ""), "unit": svc.unit,
                         "command": command, "enabled": svc.enabled,
                         "writer": svc.writer, "events": dict(sorted(svc.events.items())), "backend": backend.name,
                         "running": st.running, "pid": st.pid, "state": st.detail})
        return rows

    def adjust(self, event: str, changed: Iterable[tuple[str, str]] = ()) -> tuple[list[str], list[str]]:
        """The service step of *event*; *changed* is ``(template path, service)`` of changed files.

        Returns (report lines, failed service names). A disabled service is stopped (and disabled); an
        enabled one is started if it is not running, then restarted for a changed file, or given the
        verb the event asks for. A service a template names that no plugin declares fails.
        """
        restart_for: dict[str, list[str]] = {}
        for path, name in changed:
            restart_for.setdefault(name, []).append(path)
        lines: list[str] = []
        failed: list[str] = []
        names = sorted({n for n, s in self.services.items() if event in s.events} | set(restart_for))
        for name in names:
            svc = self.services.get(name)
            if svc is None:
                lines.append(f"{name}: FAILED: named by {', '.join(restart_for[name])}, but no plugin declares "
                             "a service of that name")
                failed.append(name)
                continue
            try:
                lines.append(f"{name}: {self._adjust_one(svc, svc.events.get(event), restart_for.get(name))}")
            except ServiceError as exc:
                lines.append(f"{name}: FAILED: {exc}")
                failed.append(name)
            except OSError as exc:
                lines.append(f"{name}: FAILED: {exc}")
                failed.append(name)
        return lines, failed

    def _adjust_one(self, svc: Service, verb: str | None, changed: list[str] | None) -> str:
        b = self.backend_for(svc)
        if self.passive and svc.writer:
            msg = b.stop(svc) if b.status(svc).running else "stays stopped"
            return f"{msg} (writes synced data: kept stopped on a slave)"
        if not svc.enabled:
            running = b.status(svc).running
            msg = b.stop(svc) if running else "stays stopped"
            if b.name == "systemd":
                b.disable(svc)
            return f"{msg} (disabled in the configuration)"
        if verb in ("stop", "disable"):
            msg = b.stop(svc)
            return f"{b.disable(svc)}, {msg}" if verb == "disable" else msg
        if b.name == "systemd":
            b.enable(svc)
        state = b.status(svc)
        if not state.running:
            return b.start(svc) + (f" (for {', '.join(changed)})" if changed else "")
        if changed:
            return b.restart(svc) + f" for {', '.join(changed)}"
        if verb == "restart":
            return b.restart(svc)
        if verb == "reload":
            return b.reload(svc)
        return f"running (pid {state.pid})" if state.pid else "running"
