"""rsync on the slave with TCP_NODELAY on its standard input's socket: the slave's stunnel starts it so.

stunnel hands the program it runs for a connection (``exec``) one end of a loopback TCP pair (Debian's
build) and sets TCP_NODELAY only on its own end. rsync's protocol writes small messages and waits for
answers, so on rsync's end Nagle's algorithm held a message back until stunnel's delayed acknowledgement of
the one before (40 ms, at least once per session). :data:`CODE` sets the option on rsync's end, then
becomes rsync; a standard input that is not a TCP socket (a socketpair, a pipe) is left as it is. Given
``--hookd=DIR`` first, it forks the server of the slave's hooks before (:mod:`hotsync_events.sync.hookd`).

stunnel's ``execArgs`` splits on spaces and knows no quoting, so the code travels base64-encoded in one
word (:func:`exec_args`), run by ``python -I -S -c``: standard library C modules only, a few milliseconds.
"""
from __future__ import annotations

import base64

__all__ = ["CODE", "exec_args"]

CODE = """\
import _socket, os, sys
try:
    sock = _socket.socket(fileno=0)
    try:
        if sock.family in (_socket.AF_INET, _socket.AF_INET6):
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
    finally:
        sock.detach()
except OSError:
    pass
args = sys.argv[1:]
if args and args[0].startswith("--hookd="):
    # the hooks' server (sync/hookd.py): forked now, it imports while the session starts; rsync and the
    # hooks it runs hold the other end of the channel at fd 7, and HOTSYNC_HOOKD says so
    top = args.pop(0)[8:]
    try:
        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        pid = os.fork()
    except OSError:
        pid = -1
    if pid == 0:
        try:
            a.close()
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1):      # not the connection: it closes when rsync ends
                os.dup2(null, fd)
            sys.path.insert(0, top)
            from hotsync_events.sync.hookd import serve
            serve(b)
        except BaseException as exc:   # said where stunnel's output goes; the hooks run as programs meanwhile
            os.write(2, ("hotsync hooks' server: %s: %s\\n" % (type(exc).__name__, exc)).encode())
        finally:
            os._exit(0)
    elif pid > 0:
        b.close()
        os.dup2(a.fileno(), 7)
        a.close()
        os.environ["HOTSYNC_HOOKD"] = "7"
os.execv(args[0], args[1:])
"""


def exec_args(program: str, *argv: str, hookd: str | None = None) -> list[str]:
    """stunnel's ``execArgs`` (after ``python``): run *program* with *argv* (its ``argv[0]`` first) through
    :data:`CODE`; with *hookd* (the directory holding this package), with the hooks' server beside it
    (:mod:`hotsync_events.sync.hookd`). No word holds a space; *program*, *argv* and *hookd* must not either."""
    word = "exec(__import__('base64').b64decode('" + base64.b64encode(CODE.encode()).decode("ascii") + "'))"
    return ["-I", "-S", "-c", word, *([f"--hookd={hookd}"] if hookd else []), program, *argv]
