"""Run a program with TCP_NODELAY on its standard input's socket: the slave's stunnel starts rsync through it.

stunnel hands the program it runs for a connection (``exec``) one end of a loopback TCP pair (Debian's build)
and sets TCP_NODELAY only on its own end. rsync's protocol writes small messages and waits for answers, so
on rsync's end Nagle's algorithm held a message back until stunnel's delayed acknowledgement of the one
before (40 ms, several times per session). This sets the option on rsync's end, then becomes the program:

    python -I -S nodelay.py /usr/bin/rsync rsync --server --daemon --config=... .

Standard library C modules only, run as a script (no package import): it starts in a few milliseconds.
A standard input that is not a TCP socket (a socketpair, a pipe) is left as it is.
"""
import _socket
import os
import sys


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.stderr.write("usage: nodelay.py PROGRAM ARGV0 [ARG...]\n")
        os._exit(2)
    try:
        sock = _socket.socket(fileno=0)
        try:
            if sock.family in (_socket.AF_INET, _socket.AF_INET6):
                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        finally:
            sock.detach()           # fd 0 stays open for the program
    except OSError:
        pass
    os.execv(argv[0], argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
