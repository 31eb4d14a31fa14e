"""rsync on the slave with TCP_NODELAY on its standard input's socket: the slave's stunnel starts it so.

stunnel hands the program it runs for a connection (``exec``) one end of a loopback TCP pair (Debian's
build) and sets TCP_NODELAY only on its own end. rsync's protocol writes small messages and waits for
answers, so on rsync's end Nagle's algorithm held a message back until stunnel's delayed acknowledgement of
the one before (40 ms, at least once per session). :data:`CODE` sets the option on rsync's end, then
becomes rsync; a standard input that is not a TCP socket (a socketpair, a pipe) is left as it is.

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
os.execv(sys.argv[1], sys.argv[2:])
"""


def exec_args(program: str, *argv: str) -> list[str]:
    """stunnel's ``execArgs`` (after ``python``): run *program* with *argv* (its ``argv[0]`` first) through
    :data:`CODE`. No word holds a space; *program* and *argv* must not either."""
    word = "exec(__import__('base64').b64decode('" + base64.b64encode(CODE.encode()).decode("ascii") + "'))"
    return ["-I", "-S", "-c", word, program, *argv]
