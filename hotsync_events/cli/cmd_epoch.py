"""``hotsync epoch``: show this host's pair epoch, or correct it (see :mod:`hotsync_events.sync.fence`)."""
from __future__ import annotations

HELP = "show this host's pair epoch (the promote counter that fences an old master), or correct it"
EPILOG = """\
The epoch goes up by one at each promote; a host refuses pushes from a master whose epoch is older
(STALE) and a master that is refused by a promoted slave of a newer epoch stands down (FENCED). It
never changes by what a push carries. Should it ever be wrong (a host restored from an old backup,
or a mistake), a person sets it here, and the change is recorded in `hotsync status`.

examples:
  hotsync epoch                        this host's epoch
  hotsync epoch set 3 --why "restored from backup; the pair is at epoch 3 (hotsync epoch on the master)"
"""


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    s = sub.add_parser("set", help="set this host's epoch (lower or higher); recorded with the reason")
    s.add_argument("epoch", type=int, help="the new epoch (0 or more)")
    s.add_argument("--why", required=True, help="why, in words (kept in the status with the old value)")


def run(args) -> int:
    import sys

    from hotsync_events.sync.fence import read_epoch, set_epoch
    from hotsync_events.paths import root_from

    root = root_from(getattr(args, "root", None))
    if getattr(args, "action", None) != "set":
        print(read_epoch(root))
        return 0
    if args.epoch < 0:
        print("hotsync epoch: the epoch is 0 or more", file=sys.stderr)
        return 2
    if not root.state_dir.is_dir():
        print(f"hotsync epoch: {root.path} holds no HotSync host (no {root.state_dir}); check --root",
              file=sys.stderr)
        return 2
    old = set_epoch(root, args.epoch, args.why)
    print(f"hotsync epoch: {old} -> {args.epoch} ({args.why})")
    return 0
