"""What every command does the same way: ``--version``, Ctrl-C, a closed stdout."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable

__all__ = ["console", "version_line"]


def version_line(prog: str) -> str:
    from hotsync_events import __version__

    return f"{prog} (hotsync-events) {__version__}"


def console(prog: str, main: Callable[[], int]) -> int:
    """Run a command's *main*: Ctrl-C ends it with one line and exit status 130 (no traceback: it is a
    person's deliberate stop), a closed stdout (``| head``) ends it quietly with 141."""
    try:
        return main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
