"""A tiny foreground daemon for the process back-end: ``python -m hotsync_testplugin.daemon ROOT``.

Prints a line at start, appends ``reload`` to ROOT/var/lib/testplugin/hup on SIGHUP, exits on SIGTERM
and by itself after 300 s at most (a test that forgets it does not leave it forever).
"""
import os
import signal
import sys
import time


def main() -> int:
    root = sys.argv[1]
    hup = os.path.join(root, "var/lib/testplugin/hup")

    def on_hup(signum, frame):
        os.makedirs(os.path.dirname(hup), exist_ok=True)
        with open(hup, "a", encoding="utf-8") as fh:
            fh.write("reload\n")

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(0))
    print(f"testplugin daemon {os.getpid()} serving {root}", flush=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
