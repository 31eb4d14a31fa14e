"""``expand-template [--root DIR] PATH [--output FILE]``: render one target from its Mako fragments."""
from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Render the target PATH (as on the host, e.g. /etc/rsyncd.conf) from its fragments: templates/PATH/* of
the core and the plugins, and <root>/etc/hotsync/templates-custom/PATH/* (which override fragments of the
same name or add new ones). The file is written atomically and only when its content changed. A fragment
that fails (a missing key or prop, a syntax error) is reported with its line, and the old file stays."""

EPILOG = """\
examples:
  expand-template /etc/rsyncd.conf
  expand-template /etc/rsyncd.conf --output -            # print it, write nothing
  expand-template --root /srv/slave /etc/stunnel/hotsync.conf
  expand-template /etc/rsyncd.conf --output /tmp/rsyncd.conf.new   # a path under the root

exit status: 0 written or unchanged, 1 the template failed, 2 bad usage
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="expand-template", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    from hotsync_events.cli._common import version_line

    p.add_argument("--version", action="version", version=version_line("expand-template"))
    p.add_argument("--root", help="the host's root directory (default $HOTSYNC_ROOT, else /)")
    p.add_argument("path", metavar="PATH", help="the target as on the host, e.g. /etc/rsyncd.conf")
    p.add_argument("--output", metavar="FILE",
                   help="write here instead (a host path, under the root); '-' prints to stdout")
    return p


def main(argv: list[str] | None = None) -> int:
    from hotsync_events.cli._common import console

    return console("expand-template", lambda: _main(argv))


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hotsync_events.configdb import open_db
    from hotsync_events.paths import RootError, root_from
    from hotsync_events.manager import get_plugin_manager
    from hotsync_events.events.templates import TemplateError, expand, fragments_of, make_context, registered_templates, render
    from hotsync_events.manager import RegistrationError
    from hotsync_events.events.templates import template_sources

    root = root_from(args.root)
    if not args.path.startswith("/"):
        print(f"expand-template: PATH must be absolute, as on the host (e.g. /etc/rsyncd.conf), got {args.path!r}",
              file=sys.stderr)
        return 2
    pm = get_plugin_manager()
    pm.root = root
    db = open_db("configuration", root)
    try:
        reg = registered_templates(pm, db)
        sources = template_sources(pm, root)
        if args.output == "-":
            text = render(args.path, fragments_of(args.path, sources), make_context(root, db, args.path))
            sys.stdout.write(text)
            return 0
        output = root.join(args.output) if args.output else None
    except (TemplateError, RegistrationError, RootError) as exc:
        print(f"expand-template: ERROR: {exc}", file=sys.stderr)
        return 1
    for plugin, hook, err in pm.hook_errors:
        print(f"expand-template: warning: plugin {plugin}: hook {hook} raised {err}", file=sys.stderr)
    template = reg[args.path][1] if args.path in reg else None
    res = expand(args.path, root=root, db=db, pm=pm, template=template, output=output, sources=sources)
    if not res.ok:
        print(f"expand-template: ERROR: {res.error}; {output or root.join(args.path)} was left as it was",
              file=sys.stderr)
        return 1
    print(f"{res.status} {output or root.join(args.path)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
