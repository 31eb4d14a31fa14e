"""Running one step of an event, and the event log.

* A plugin's Python action runs in-process, its output (``print``, ``ctx.log``, and whatever programs it
  starts write to fd 1 and 2) captured, with a timeout (``SIGALRM``, main thread only).
* An executable runs as ``[path, event, *args]`` in a session of its own, stdin closed, stdout and
  stderr sent to the capture; at its timeout the whole session gets SIGTERM, then SIGKILL.

The capture is an anonymous file under ``<root>/run/hotsync``, not a pipe: a daemon an action leaves
behind cannot hold the event up by keeping a pipe open.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from hotsync_events.paths import Root

__all__ = ["ActionTimeout", "EventLog", "Scratch", "run_callable", "run_executable"]

OUTPUT_LIMIT = 256 * 1024   # bytes of an action's output kept (the end of it)

#: (status, exit code, output, reason) of one step
Outcome = "tuple[str, int | None, str, str]"


class ActionTimeout(BaseException):
    """Raised in a Python action when its time is up (a BaseException: ``except Exception`` won't eat it)."""


class Scratch:
    """One anonymous file that collects the output of each step of an event in turn.

    Each step's output is what was appended since it began (no truncating between steps: cheaper, and a
    daemon an action left behind writing to it cannot corrupt the next step's beginning).
    """

    def __init__(self, root: Root) -> None:
        root.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.fd = os.open(root.run_dir, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except (AttributeError, OSError):
            path = root.run_dir / f".event-output-{os.getpid()}"
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            os.unlink(path)
        self.start = 0
        self.stream: Any = None        # sys.stdout and sys.stderr of Python actions, made on first use
        self.saved: Any = None         # the event's own fd 1 and 2 (None: closed), saved on first use

    def begin(self) -> int:
        self.start = os.lseek(self.fd, 0, os.SEEK_END)
        return self.fd

    def text(self) -> str:
        end = os.lseek(self.fd, 0, os.SEEK_END)
        start = max(self.start, end - OUTPUT_LIMIT)
        data = os.pread(self.fd, end - start, start) if end > start else b""
        cut = start - self.start
        return (f"[... {cut} bytes cut ...]\n" if cut else "") + data.decode("utf-8", "replace")

    def close(self) -> None:
        if self.stream is not None:
            try:
                self.stream.close()
            except OSError:
                pass
        for fd in self.saved or ():
            if fd is not None:
                os.close(fd)
        os.close(self.fd)


class _Captured:
    """fd 1 and 2, sys.stdout and sys.stderr go to the scratch file while a Python action runs."""

    def __init__(self, scratch: Scratch) -> None:
        self.scratch = scratch

    def __enter__(self) -> _Captured:
        for s in (sys.stdout, sys.stderr):
            try:
                s.flush()
            except Exception:
                pass
        sc = self.scratch
        fd = sc.begin()
        if sc.saved is None:
            sc.saved = tuple(_dup_or_none(n) for n in (1, 2))
        if sc.stream is None or sc.stream.closed:
            sc.stream = open(os.dup(fd), "w", encoding="utf-8", errors="replace", buffering=1)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        self.saved_sys = (sys.stdout, sys.stderr)
        sys.stdout = sys.stderr = sc.stream
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.scratch.stream.flush()
        except Exception:
            pass
        sys.stdout, sys.stderr = self.saved_sys
        for n, saved in zip((1, 2), self.scratch.saved):
            if saved is None:
                os.close(n)
            else:
                os.dup2(saved, n)


def _dup_or_none(fd: int) -> int | None:
    try:
        return os.dup(fd)
    except OSError:
        return None


def _log_to_stdout(message: str) -> None:
    print(message, flush=True)


def run_callable(run: Any, ctx_kwargs: dict, timeout: float | None, scratch: Scratch):
    """Call a plugin's ``run(ctx)``; it fails as any ``run`` does (:func:`hotsync_events.types.run_failure`)."""
    try:
        import _signal as signal   # the C module: `signal` converts its constants to enums at import
    except ImportError:  # pragma: no cover
        import signal

    from hotsync_events.types import ActionContext, run_failure

    ctx = ActionContext(log=_log_to_stdout, **ctx_kwargs)
    status, reason = "success", ""
    code: int | None = 0

    def on_alarm(signum: int, frame: Any) -> None:
        raise ActionTimeout()

    old = None
    outer = (0.0, 0.0)   # a timer someone else armed (pytest-timeout does): put it back afterwards
    if timeout:
        try:
            old = signal.signal(signal.SIGALRM, on_alarm)
            outer = signal.setitimer(signal.ITIMER_REAL, timeout)
        except ValueError:  # not the main thread: in-process code cannot be timed out
            old = None
    armed = time.monotonic()
    with _Captured(scratch):
        try:
            rv = run(ctx)
            failure = run_failure(rv)
            if failure:
                status, reason = "failed", failure
                code = int(rv) if type(rv) is int and 0 < rv < 256 else 1
        except ActionTimeout:
            status, code, reason = "failed", None, f"timed out after {timeout:g} s"
        except Exception as exc:
            import traceback

            traceback.print_exc()
            status, code, reason = "failed", None, f"{type(exc).__name__}: {exc}"
        finally:
            if old is not None:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
                if outer[0] > 0:
                    left = outer[0] - (time.monotonic() - armed)
                    signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), outer[1])
    return status, code, scratch.text(), reason


def run_executable(argv: list[str], env: dict, cwd: str, timeout: float | None, scratch: Scratch):
    """Run an executable action; never through a shell. Its whole session is killed at the timeout."""
    import signal
    import subprocess

    fd = scratch.begin()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, env=env, cwd=cwd,
                                start_new_session=True, close_fds=True)
    except OSError as exc:
        return "failed", None, "", f"cannot run it: {exc.strerror or exc}"
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        return "failed", proc.returncode, scratch.text(), f"timed out after {timeout:g} s (killed)"
    output = scratch.text()
    if rc == 0:
        return "success", 0, output, ""
    if rc < 0:
        return "failed", rc, output, f"killed by signal {-rc}"
    return "failed", rc, output, f"exit {rc}"


class EventLog:
    """Appends to ``<root>/var/log/hotsync/events.log``, and to syslog (local1) when ``/dev/log`` exists.

    ``HOTSYNC_SYSLOG=0`` keeps events out of syslog (the tests and the bench set it).
    """

    def __init__(self, root: Root) -> None:
        self.path: Path = root.log_dir / "events.log"
        self._fh: Any = None
        self._syslog: Any = None
        if os.environ.get("HOTSYNC_SYSLOG", "1") != "0" and os.path.exists("/dev/log"):
            try:
                import syslog

                syslog.openlog("hotsync-event", syslog.LOG_PID, syslog.LOG_LOCAL1)
                self._syslog = syslog
            except Exception:
                self._syslog = None

    def write(self, line: str, output: str = "", syslog: bool = True) -> None:
        if self._fh is None:
            from hotsync_events.fsutil import open_private_log

            self._fh = open(open_private_log(self.path), "a", encoding="utf-8", errors="replace")  # noqa: SIM115 - kept open, close()d
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        text = f"{stamp}Z [{os.getpid()}] {line}\n"
        if output:
            text += "".join(f"    | {o}\n" for o in output.rstrip("\n").splitlines())
        self._fh.write(text)
        self._fh.flush()
        if syslog and self._syslog is not None:
            try:
                self._syslog.syslog(self._syslog.LOG_INFO, line)
            except Exception:
                pass

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
