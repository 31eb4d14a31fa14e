"""``hotsync SUBCOMMAND``: the HotSync tool. Each subcommand lives in a module of its own.

A subcommand module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``;
it is imported only when its subcommand runs (or for ``--help``).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from hotsync_events.cli._common import console, version_line

#: subcommand -> module (relative to this package)
SUBCOMMANDS: dict[str, str] = {
    "plugins": ".cmd_plugins",
    "sync": ".cmd_sync",
    "status": ".cmd_status",
    "daemon": ".cmd_daemon",
    "watch": ".cmd_watch",
    "paths": ".cmd_paths",
    "services": ".cmd_services",
    "restore-databases": ".cmd_restore_databases",
    "epoch": ".cmd_epoch",
    "log": ".cmd_log",
    "dumps": ".cmd_dumps",
    "cockpit": ".cmd_cockpit",
    "drill": ".cmd_drill",
    "replicas": ".cmd_replicas",
}

EPILOG = """\
examples:
  hotsync plugins                 which plugins are loaded, from where, with which hooks
  hotsync plugins --json          the same as JSON, for scripts
  hotsync paths                   what the sync ships and keeps out, and which plugin asked
"""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotsync", description="HotSync: master/slave sync of this host.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", help="the host's root directory (default $HOTSYNC_ROOT, else /)")
    parser.add_argument("--version", action="version", version=version_line("hotsync"))
    parser.add_argument("-q", "--quiet", action="store_true", help="say only what went wrong")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="say more (every path a push changes; every push the notifier makes)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in SUBCOMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name)
            continue
        mod = importlib.import_module(modname, __package__)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP,
                           epilog=getattr(mod, "EPILOG", None), formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--root", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    return console("hotsync", lambda: _main(argv))


def _main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    wanted = next((a for a in argv if a in SUBCOMMANDS), None)
    parser = build_parser(only=wanted if wanted and "-h" not in argv[:1] and "--help" not in argv[:1] else None)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    return int(args._module.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
