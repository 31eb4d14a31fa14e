"""``hotsync replicas``: set up this host's database replicas now (see :mod:`hotsync_events.sync.replsetup`)."""
from __future__ import annotations

HELP = "set up the database replicas (DatabaseMode replica) now: the master prepares and offers a seed, the slave seeds"
EPILOG = """\
Each `hotsync sync` does the master's part and each full push starts the slave's, so this is only
needed to see it happen, or to ask for a new seed. The channel is made from what the pair already
trusts (the pinned host certificates and keys): nothing to copy by hand
(docs/replication.md, "Pairing and seeding").

exit status: 0 set up (or nothing to do); 1 a replica could not be set up (the message says why);
2 no replica is wanted here (no DatabaseMode replica) or another setup runs.

examples:
  hotsync replicas setup              this host's part for its role, now
  hotsync replicas setup --seed       master: offer a new seed now; slave: seed again from the newest offer
  hotsync replicas setup --json       the records (also in hotsync status --json, replication_setup)
  hotsync replicas guard              (the service hotsync-replica-guard) keep a synchronous replica that is
                                      away from holding the master's commits
  hotsync replicas check              slave (cron, every 5 minutes): mail once when its replicas stop
                                      following the master, once when they follow again
"""


def add_arguments(parser) -> None:
    import argparse

    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    s = sub.add_parser("setup", help="this host's part for its role, now")
    s.add_argument("--seed", action="store_true", help="master: offer a new seed; slave: seed from the newest offer")
    s.add_argument("--json", action="store_true", help="print the records as JSON")
    s.add_argument("--background", action="store_true", help=argparse.SUPPRESS)
    sub.add_parser("guard", help="master: switch a synchronous replica that acknowledges nothing to asynchronous "
                                 "(the service hotsync-replica-guard runs it)")
    sub.add_parser("check", help="look at the replicas and mail once when they break, once when they work again "
                                 "(the slave's cron runs it; the master's sync does it after each run)")


def run(args) -> int:
    import json
    import os
    import sys
    import time

    from hotsync_events.paths import root_from
    from hotsync_events.sync.replsetup import setup

    root = root_from(getattr(args, "root", None))
    if getattr(args, "action", None) == "guard":
        import signal

        from hotsync_events.sync.replguard import run_guard

        stopping: list[int] = []
        signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
        return run_guard(root, stop=lambda: bool(stopping), log=lambda m: print(m, flush=True))
    if getattr(args, "action", None) == "check":
        return _check(root, quiet=getattr(args, "quiet", False))
    if getattr(args, "action", None) != "setup":
        print("hotsync replicas: say what to do: hotsync replicas setup (see hotsync replicas --help)",
              file=sys.stderr)
        return 2
    quiet = getattr(args, "quiet", False)
    lines: list[str] = []

    def log(msg: str) -> None:
        lines.append(msg)
        if not quiet and not args.background:
            print(msg)

    if args.background:
        os.umask(0o022)     # started by the slave's hook server (umask 077): the servers' users reach their files
    result = setup(root, force_seed=args.seed, wait=not args.background, log=log)
    if args.background and lines:      # nobody watches: the lines go to the replicas' log
        path = root.log_dir / "replicas.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
        with open(fd, "a", encoding="utf-8", errors="backslashreplace") as fh:
            fh.writelines(f"{stamp} {m}\n" for m in lines)
    if result is None:
        if not args.background:
            print("hotsync replicas: nothing to set up here: no database server has DatabaseMode replica (config "
                  "info mysqld / postgresql), or another setup runs", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=1, sort_keys=True))
    elif not quiet and not args.background:
        for n, r in result.items():
            what = r.get("error") or (f"waiting {r['waiting']}" if r.get("waiting") else r.get("state") or "prepared")
            print(f"database replica {n} ({r.get('engine')}, {r.get('role')}): {what}")
    return 1 if any(r.get("error") for r in result.values()) else 0


def _check(root, *, quiet: bool) -> int:
    """``hotsync replicas check``: 0 the replicas follow (or none runs here), 1 some replica is broken."""
    import sys

    from hotsync_events.configdb import open_db
    from hotsync_events.sync.replicas import alert_replicas
    from hotsync_events.sync.settings import Settings

    try:
        db = open_db("configuration", root, validate=False, initialise=False, journal=False)
        state = alert_replicas(root, db, Settings.from_db(db), log=(lambda m: None) if quiet else print,
                               who="hotsync replicas check")
    except Exception as exc:     # one line for cron's mail, not a traceback
        said = f"hotsync replicas check: cannot look at the replicas: {type(exc).__name__}: {exc}"
        if _new_error(root, said):
            print(said, file=sys.stderr)
        return 1
    _error_gone(root)
    if state is None:
        if not quiet:
            print("hotsync replicas check: no database server runs as a replica here (DatabaseMode replica)",
                  file=sys.stderr)
        return 0
    if not quiet:
        for why in state["current"]:
            print(f"hotsync replicas check: {why}")
    return 1 if state["current"] else 0


#: a lasting error of the check is said again (a cron mail) at most this often
ERROR_AGAIN = 3600.0


def _new_error(root, said: str, now: float | None = None) -> bool:
    """Whether *said* is to be said (mailed by cron): a new error, or the same one an hour later; a lasting one
    must not mail every 5 minutes. When the record cannot be kept, always (better a mail too many)."""
    import re
    import time

    from hotsync_events.sync.status import read_status, update_status

    now = time.time() if now is None else now
    try:
        same = re.sub(r"[0-9]+", "#", said)          # the same error, whatever times or pids it names
        last = read_status(root).get("replica_check_error") or {}
        if last.get("same") == same and now - float(last.get("at") or 0) < ERROR_AGAIN:
            return False
        update_status(root, lambda d: d.update(replica_check_error={"said": said, "same": same, "at": now}))
    except Exception:
        return True
    return True


def _error_gone(root) -> None:
    """The check worked: an error it said before is over (the same error again is new)."""
    from hotsync_events.sync.status import read_status, update_status

    try:
        if "replica_check_error" in read_status(root):
            update_status(root, lambda d: d.pop("replica_check_error", None))
    except Exception:
        pass
