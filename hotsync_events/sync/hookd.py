"""The slave's hooks answered by a Python process already running: no interpreter start in a push's path.

The slave's listener (:mod:`hotsync_events.sync.listener`) forks this server for each session, beside the
rsync it spawns, with the hooks' code (:mod:`hotsync_events.sync.xfer`) imported already. (For a root too
deep for the listener's socket, the launcher stunnel starts instead, :mod:`hotsync_events.sync.nodelay`,
forks it before it becomes rsync, and it imports that code while the session starts.) When rsync runs its
``pre-xfer exec`` and ``post-xfer exec`` (a shell, :func:`hook_command`), the shell asks the server and
prints its answer, with shell builtins only. A session used to start Python twice (about 30 ms each, far
more on a loaded machine, and the pre-xfer one is in the latency of every real-time push).

The channel is one end of a socketpair that rsync inherits at :data:`HOOK_FD` and passes to its hooks, and
``HOTSYNC_HOOKD`` in rsync's environment says it is there. Nothing else holds it: the master's bytes reach
rsync's protocol, which has no way to write to a descriptor. A request is one line, ``pre|post PID ROOT``;
the server reads the hook's environment (``RSYNC_*``, as rsync set it) from ``/proc/PID/environ`` and
answers one line, ``CODE MESSAGE``. It does what the hook would (:func:`~hotsync_events.sync.xfer.pre_xfer`,
:func:`~hotsync_events.sync.xfer.post_xfer`), reading the configuration and the status afresh each time, and
ends when rsync and its hooks have closed the channel. When the server is not there or does not answer,
the shell runs the hook itself (:func:`~hotsync_events.sync.xfer.hook_argv`): the same checks, slower.
"""
from __future__ import annotations

import os
import socket

__all__ = ["ENV", "HOOK_FD", "hook_command", "serve"]

#: the descriptor rsync and its hooks hold the channel on (rsync's own files take 3 and up, and 10 and more)
HOOK_FD = 7
ENV = "HOTSYNC_HOOKD"
#: the longest request line read (an action, a pid and a root path)
MAX_LINE = 8192


def hook_command(action: str, root: str, fallback: str) -> str:
    """The shell line rsync runs for *action* (``pre`` or ``post``) on *root*: ask the server, print its
    message, exit with its code; without an answer, run *fallback* (the hook as a program). No ``%`` (rsyncd
    expands ``%VAR%``) and no external program."""
    import shlex

    if action not in ("pre", "post"):
        raise ValueError(f"no {action!r} hook")
    if "\\" in root:          # dash's echo would read it as an escape: the program only
        return f"exec {fallback}"
    fd = HOOK_FD
    return (f'if [ "${{{ENV}-}}" = {fd} ] && {{ echo "{action} $$ "{shlex.quote(root)} >&{fd}; }} 2>/dev/null '
            f'&& read -r c m <&{fd}; then [ -z "$m" ] || echo "$m"; exit "$c"; fi; exec {fallback}')


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as fh:
        raw = fh.read()
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    return env


def answer(line: str) -> tuple[int, str]:
    """``(exit code, message)`` for one request line."""
    from hotsync_events.paths import Root
    from hotsync_events.sync import xfer

    action, _, rest = line.partition(" ")
    pid, _, root = rest.partition(" ")
    if action not in ("pre", "post") or not pid.isdigit() or not root:
        return 1, "refused by the slave: its hook sent a malformed request"
    try:
        env = _environ(int(pid))
    except OSError as exc:     # the hook is gone, or not ours to read: refused, never passed
        return 1, f"refused by the slave: its pre/post-xfer hook failed: {type(exc).__name__}: {exc}"
    return xfer.run_hook(action, Root(root), env)


def serve(sock: socket.socket) -> None:
    """Answer requests on *sock* until every other holder of the channel closed it."""
    os.umask(0o077)
    from hotsync_events.sync import xfer  # noqa: F401  (the imports, now: the first request must not wait)

    buf = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except InterruptedError:
            continue
        except OSError:
            return
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            code, message = answer(raw.decode("utf-8", "surrogateescape"))
            code = 0 if code == 0 else 1      # dash's exit takes its code modulo 256
            # one line; dash's echo reads backslash escapes, so each backslash is doubled
            text = " ".join(message.split()).replace("\\", "\\\\")
            sock.sendall(f"{int(code)} {text}\n".encode("utf-8", "surrogateescape"))
        if len(buf) > MAX_LINE:
            return
