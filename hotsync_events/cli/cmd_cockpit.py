"""``hotsync cockpit``: install, check or remove the Cockpit page (docs/cockpit.md)."""
from __future__ import annotations

HELP = "install (or check, or remove) this host's Cockpit page under /usr/share/cockpit/hotsync"
EPILOG = """\
The page (status, settings, held pushes, history and logs, takeover) runs the same commands a sysadmin
types (hotsync status --json, config, signal-event --json, hotsync-promote --json): every rule stays the
commands'. `install` copies it to <root>/usr/share/cockpit/hotsync/ (Cockpit then lists "HotSync" in
its menu: reload the browser); run it again after an upgrade. The Debian package installs the same files
there itself.

exit status: 0 done (status: installed and current), 1 not installed or out of date (status), 2 usage.

examples:
  hotsync cockpit install
  hotsync cockpit status              installed? the same files as this version's?
  hotsync cockpit install --dest /usr/local/share/cockpit/hotsync
  hotsync cockpit uninstall
"""


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    for name, what in (("install", "copy the page to its Cockpit folder (replacing an older copy)"),
                       ("status", "say whether the page is installed and current"),
                       ("uninstall", "remove the installed page")):
        p = sub.add_parser(name, help=what, description=what)
        p.add_argument("--dest", metavar="DIR",
                       help="the package folder (default <root>/usr/share/cockpit/hotsync)")
        p.add_argument("--json", action="store_true", help="print JSON") if name == "status" else None


def run(args) -> int:
    import json
    import sys

    from hotsync_events.cockpit.install import install, installed_state, uninstall
    from hotsync_events.paths import root_from

    root = root_from(getattr(args, "root", None))
    action = getattr(args, "action", None)
    if action is None:
        print("hotsync cockpit: say install, status or uninstall (hotsync cockpit --help)", file=sys.stderr)
        return 2
    if action == "install":
        target = install(root, args.dest)
        if not getattr(args, "quiet", False):
            print(f"hotsync cockpit: installed the page in {target}; reload Cockpit in the browser (menu: HotSync)")
        return 0
    if action == "uninstall":
        if uninstall(root, args.dest):
            print("hotsync cockpit: removed the page")
        else:
            print("hotsync cockpit: the page was not installed")
        return 0
    st = installed_state(root, args.dest)
    if args.json:
        print(json.dumps(st, indent=1, sort_keys=True))
    else:
        print(f"{st['path']}: " + ("installed, current" if st["current"] else
                                     "installed, but not this version's files: hotsync cockpit install"
                                     if st["installed"] else "not installed: hotsync cockpit install"))
    return 0 if st["current"] else 1
