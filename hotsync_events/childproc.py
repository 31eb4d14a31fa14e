"""Child processes that die with us: the ``preexec_fn`` behind every rsync and database tool we start; and
the one answer to "does process N still run" (:func:`alive`), for pid files, locks and status records.

``PR_SET_PDEATHSIG`` makes the kernel send SIGKILL to the child when its parent dies, so a ``kill -9``
of a sync or a notifier leaves no orphan rsync pushing on, nor a dump tool writing on. libc is loaded
in the parent, on the first call: between fork and exec the child only makes the one ``prctl`` call
(importing or loading a library there could block on a lock another thread held at the fork).
"""
from __future__ import annotations

import os
import signal
from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Literal

__all__ = ["alive", "die_with_parent", "module_cwd"]

PR_SET_PDEATHSIG = 1
_prctl: Callable[..., int] | Literal[False] | None = None   # libc's prctl once looked up; False: there is none


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that asks the kernel to kill the child when this process dies.

    Where libc or prctl is missing it does nothing (the child then simply outlives a killed parent).
    """
    global _prctl
    if _prctl is None:
        try:
            import ctypes   # here: most commands start no child, and ctypes costs a few ms to import

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _prctl = False
    prctl = _prctl

    def preexec() -> None:   # pragma: no cover - runs in the child
        if prctl:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return preexec


def alive(pid: object, *, reap: bool = False) -> bool:
    """Whether process *pid* still runs. False for a value that is no pid, a process that is gone, or a
    zombie; True for a process that exists, another user's too (a user may not signal root's process, only
    learn that it exists). *reap*: a zombie child of this process is reaped first (a daemon it spawned and
    waits for nowhere else); never for a child a ``Popen`` waits for, whose exit status that would take."""
    try:
        n = int(pid)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return False
    if n <= 0:
        return False
    if reap:
        try:
            if os.waitpid(n, os.WNOHANG)[0] == n:
                return False
        except ChildProcessError:
            pass
    try:
        with open(f"/proc/{n}/stat", "rb") as fh:
            if fh.read().rpartition(b")")[2].split()[0] == b"Z":
                return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(n, 0)
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def module_cwd(root) -> str:
    """The working directory for a ``python -m`` child of *root* (a :class:`~hotsync_events.paths.Root`).

    ``-m`` puts the working directory first on the module path: a file a push wrote there (``/json.py`` on a
    slave whose master shipped it) would run as root. This root's ``/run/hotsync`` is one a push never
    writes (:data:`hotsync_events.sync.policy.REFUSED`), unlike ``/`` or the root itself."""
    d = root.run_dir
    d.mkdir(parents=True, exist_ok=True)
    return str(d)
