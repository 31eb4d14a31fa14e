"""Man pages (section 8) for the commands, written at build time from the commands' own parsers.

    python scripts/manpages.py OUTDIR        # one OUTDIR/<command>.8 per command; prints their paths

``hotsync``, ``expand-template`` and ``hotsync-promote`` build argparse parsers (``build_parser()``): their
page is made from the parser (synopsis, description, each option, each ``hotsync`` subcommand with its
options, the epilog). ``config``, ``db`` and ``signal-event`` parse their arguments by hand: their page
is their ``--help`` text. Either way the page says what ``--help`` says, so it cannot drift from it.

Run it with the interpreter the package is installed in (make deb: the package's venv). The page date is
``$SOURCE_DATE_EPOCH`` when set (reproducible builds), else today.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import import_module, metadata
from pathlib import Path

#: command -> (one-line summary for NAME, how to get its parser or help text)
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("read and change the configuration database", "help:hotsync_events.cli.config:config_main"),
    "db": ("read and change any configuration database by name", "help:hotsync_events.cli.config:db_main"),
    "signal-event": ("run the actions of an event in order", "help:hotsync_events.cli.signal_event:main"),
    "expand-template": ("render a configuration file from its template fragments",
                        "argparse:hotsync_events.cli.expand_template:build_parser"),
    "hotsync": ("master/slave sync of this host", "argparse:hotsync_events.cli.hotsync:build_parser"),
    "hotsync-promote": ("turn this HotSync slave into the master",
                        "argparse:hotsync_events.cli.promote:build_parser"),
}
SECTION = "8"


def esc(text: str) -> str:
    """Text for roff: backslashes and hyphens escaped, a leading dot or quote made literal."""
    out = []
    for line in text.replace("\\", "\\e").replace("-", "\\-").splitlines():
        out.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(out)


def preformatted(text: str) -> str:
    return ".nf\n" + esc(text.strip("\n")) + "\n.fi"


def _load(spec: str) -> Callable:
    module, _, name = spec.partition(":")
    return getattr(import_module(module), name)


def help_text(spec: str) -> str:
    """What ``COMMAND --help`` prints (run in a child: these commands write to the real stdout's buffer)."""
    module, _, name = spec.partition(":")
    code = f"import sys; from {module} import {name}; sys.exit({name}(['--help']))"
    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if cp.returncode != 0 or not cp.stdout.startswith("usage: "):
        raise SystemExit(f"manpages.py: {spec} --help exited {cp.returncode}: {cp.stderr.strip()}")
    return cp.stdout


def _usage(parser: argparse.ArgumentParser) -> str:
    """The usage line, one paragraph (roff fills it to the reader's width)."""
    return ".PP\n" + esc(" ".join(parser.format_usage().removeprefix("usage: ").split()))


def _options(parser: argparse.ArgumentParser) -> list[str]:
    """``.TP`` entries for each argument that --help shows (subcommand lists are rendered apart)."""
    lines = []
    for action in parser._actions:   # argparse keeps no public list of its arguments
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        shown = action.metavar if action.metavar is not None else (
            action.dest.upper() if action.option_strings else action.dest)
        name = " ".join(shown) if isinstance(shown, tuple) else shown
        if action.option_strings:
            arg = f" \\fI{esc(name)}\\fR" if action.nargs != 0 else ""
            head = ", ".join(f"\\fB{esc(o)}\\fR{arg}" for o in action.option_strings)
        else:
            head = f"\\fI{esc(name)}\\fR"
        lines += [".TP", head, esc(" ".join((action.help or "").split()))]
    return lines


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices.items())
    return []


def page_from_parser(name: str, summary: str, parser: argparse.ArgumentParser) -> list[str]:
    lines = [".SH SYNOPSIS", _usage(parser), ".SH DESCRIPTION", esc(parser.description or summary),
             ".SH OPTIONS", *_options(parser)]
    subs = _subcommands(parser)
    if subs:
        lines.append(".SH COMMANDS")
        for sub_name, sub in subs:
            lines += [f".SS {esc(sub_name)}", _usage(sub), ".PP", esc(sub.description or "")]
            opts = _options(sub)
            if opts:
                lines += [".PP", "Options:", ".RS", *opts, ".RE"]
            if sub.epilog:
                lines += [".PP", preformatted(sub.epilog)]
    if parser.epilog:
        lines += [".SH NOTES", preformatted(parser.epilog)]
    return lines


def page_from_help(text: str) -> list[str]:
    usage, _, rest = text.strip("\n").partition("\n")
    return [".SH SYNOPSIS", esc(" ".join(usage.removeprefix("usage: ").split())), ".SH DESCRIPTION",
            preformatted(rest)]


def render(name: str, version: str, date: str) -> str:
    summary, source = COMMANDS[name]
    kind, _, spec = source.partition(":")
    body = page_from_parser(name, summary, _load(spec)()) if kind == "argparse" else page_from_help(help_text(spec))
    others = ", ".join(f"\\fB{esc(o)}\\fR({SECTION})" for o in COMMANDS if o != name)
    head = [f'.TH "{name.upper()}" "{SECTION}" "{date}" "hotsync-events {version}" "HotSync"',
            ".SH NAME", f"{esc(name)} \\- {esc(summary)}"]
    tail = [".SH FILES", ".TP", "/var/lib/hotsync/db/", "the configuration databases", ".TP", "/var/log/hotsync/",
            "logs: events, syncs, configuration history", ".TP", "/etc/hotsync/",
            "the administrator's include/exclude lists and custom templates",
            ".SH SEE ALSO", others]
    return "\n".join(head + body + tail) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: manpages.py OUTDIR", file=sys.stderr)
        return 2
    out = Path(args[0])
    os.environ["COLUMNS"] = "80"   # argparse wraps usage lines to the terminal: the same page on every build
    out.mkdir(parents=True, exist_ok=True)
    stamp = float(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
    date = time.strftime("%Y-%m-%d", time.gmtime(stamp))
    version = metadata.version("hotsync-events")
    for name in COMMANDS:
        path = out / f"{name}.{SECTION}"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(render(name, version, date), encoding="utf-8")
        os.replace(tmp, path)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
