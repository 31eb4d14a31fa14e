"""``hotsync-promote``: make this slave the master, after showing what it holds and each step it takes.

A thin CLI over :mod:`hotsync_events.promote`. Exit codes: 0 promoted (or a dry run that would go on),
1 refused (torn state, master alive; ``--force`` overrides), 2 cannot (not a slave, never synced, no
terminal to ask on, declined, bad usage), 3 promoted but some steps failed (listed), 4 stopped before
the role changed: a critical step, a replica that did not take over, an unexpected error (fix it, run
again: it resumes).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hotsync_events.promote.verify import Assessment

DESCRIPTION = "Promote this HotSync slave to master: verify its copy, fence the old master, restore, take over."
EPILOG = """\
Run it on the SLAVE when the master is dead (ideally inside tmux or screen). Before changing anything it
shows when the master's last complete sync arrived, how old that data is, whether the last received run
completed, and each step it will take; then it asks.

examples:
  hotsync-promote --dry-run          look only: the state of the copy and the plan
  hotsync-promote                    ask, then promote
  hotsync-promote --yes              promote without asking (scripts: needs no terminal)
  hotsync-promote --yes --force      promote although the master pushed recently or the copy is torn
  hotsync-promote --json --dry-run   the same facts as JSON

A promote that was killed is resumed by running the same command again. See docs/promote.md.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hotsync-promote", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", metavar="DIR", help="the host's root directory (default $HOTSYNC_ROOT, else /)")
    from hotsync_events.cli._common import version_line

    p.add_argument("--version", action="version", version=version_line("hotsync-promote"))
    p.add_argument("--yes", "-y", action="store_true", help="do not ask (you read the plan: --dry-run)")
    p.add_argument("--force", action="store_true",
                   help="promote although the copy is torn or the master pushed recently (split-brain risk)")
    p.add_argument("--dry-run", "-n", action="store_true", help="show the state and the plan, change nothing")
    p.add_argument("--json", action="store_true", help="print the facts and the outcome as JSON")
    return p


def _iso(ts) -> str:
    from hotsync_events.sync.status import iso

    return iso(ts) or "never"


def render(a: Assessment, out) -> None:
    from hotsync_events.promote.verify import MISSED_BEATS
    from hotsync_events.sync.fence import age_words
    from hotsync_events.promote import plan_lines

    w = lambda s="": print(s, file=out)  # noqa: E731
    w(f"HotSync promote of {a['root']}" + ("  (RESUMING an interrupted promote)" if a["resuming"] else ""))
    w(f"  this host:                  hotsync role {a['role'] or 'not set'} ({a['status']}), master {a['master'] or '?'}")
    w(f"  last complete sync arrived: {_iso(a['last_complete_sync'])}")
    w(f"  age of that data:           {age_words(a['data_age']) if a['data_age'] is not None else 'no data'}")
    last = a.get("last_received")
    if last:
        done = "COMPLETED" if last.get("result") == "success" else f"DID NOT COMPLETE (rsync exit {last.get('exit_status')})"
        w(f"  last received run:          {done}, {_iso(last.get('start'))} -> {_iso(last.get('end'))}")
    else:
        w("  last received run:          none")
    live = list(a["receiving"])
    w("  push in progress:           " + ("; ".join(f"from {r.get('from')} since {_iso(r.get('start'))}"
                                                  + ("" if r["alive"] else " (cut off)") for r in live) or "none"))
    w(f"  master's last contact:      {age_words(a['contact_age']) + ' ago' if a['contact_age'] is not None else 'never'}"
      f" (alive-window {age_words(a['window'])}: "
      + (f"{MISSED_BEATS} missed heartbeats of {a['heartbeat']} s from its real-time notifier)" if a.get("heartbeat")
         else f"two intervals of {a['interval_minutes']} min"
         + (", real-time sync on but no heartbeat heard" if a["realtime"] else "") + ")"))
    w(f"  pair epoch:                 {a['epoch']} -> {a['next_epoch']}")
    w("Steps:")
    for line in plan_lines(a):
        w(f"  {line}")
    for warn in a["warnings"]:
        w(f"  warning: {warn}")


def _replicas_dry_run(root, pm, result: dict, log) -> None:
    """The database replicas' part of the dry run: where each would take over, its lag, what would be lost."""
    if pm is None:
        return
    from hotsync_events.configdb import open_db
    from hotsync_events.sync.replicas import promote_replicas, replicas_wanted

    db = open_db("configuration", root, validate=False, journal=False, create=False)
    if not replicas_wanted(db):
        return
    lines: list[str] = []
    try:
        promote_replicas(root, db, pm, {}, dry_run=True, log=lines.append, err=lines.append)
    except Exception as exc:  # a dry run reports
        lines.append(f"database replicas: cannot tell: {exc}")
    for line in lines:
        log(line)
    result["replicas"] = lines


def main(argv: list[str] | None = None) -> int:
    from hotsync_events.paths import root_from
    from hotsync_events import promote as P

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    root = root_from(args.root)
    out = sys.stderr if args.json else sys.stdout
    log = lambda m: print(m, file=out, flush=True)  # noqa: E731
    t0 = time.monotonic()
    try:
        from hotsync_events.manager import plugin_manager

        pm = plugin_manager(root)
        pm.root = root
    except Exception as exc:  # a broken plugin set still lets the sysadmin see the state
        pm = None
        log(f"hotsync-promote: warning: plugins could not be loaded ({exc}); plugin steps are not shown")
    a = P.assess(root, pm)
    verify_seconds = time.monotonic() - t0
    result: dict = {"assessment": a, "dry_run": args.dry_run, "promoted": False}
    hard = [r for r in a["refusals"] if not r["force"]]
    if not hard:          # a host that cannot be promoted at all hears why first, without a plan to read
        render(a, out)

    def finish(code: int, message: str = "") -> int:
        if message:
            print(f"hotsync-promote: {message}", file=sys.stderr if code else out, flush=True)
        if args.json:
            result.update(exit=code, message=message)
            print(json.dumps(result, indent=2, sort_keys=True, default=str))
        return code

    soft = [r for r in a["refusals"] if r["force"]]
    if hard:
        return finish(P.EXIT_CANNOT, "REFUSED: " + "; ".join(r["text"] for r in hard))
    if args.dry_run:     # the replicas' own dry run changes nothing: shown even while the master may be alive
        _replicas_dry_run(root, pm, result, log)
    if soft and not args.force:
        return finish(P.EXIT_REFUSED, "REFUSED: " + "; ".join(r["text"] for r in soft)
                      + ". If you are sure, run again with --force.")
    for r in soft:
        log(f"hotsync-promote: WARNING (--force): {r['text']}")
    if args.dry_run:
        return finish(P.EXIT_OK, "dry run: nothing was changed")
    if not args.yes:
        if not sys.stdin.isatty():
            return finish(P.EXIT_CANNOT, "REFUSED: no terminal to ask on; read the plan above (or --dry-run) "
                                         "and run again with --yes")
        try:
            answer = input("Promote this host to MASTER now? Type 'yes' to go on: ")
        except EOFError:
            answer = ""
        if answer.strip().lower() != "yes":
            return finish(P.EXIT_CANNOT, "not promoted (you did not type yes)")
    run = P.Promote(root, a, pm=pm, force=args.force, log=log, err=lambda m: print(m, file=sys.stderr, flush=True))
    code = run.run(verify_seconds)
    result["journal"] = run.j
    if code == P.EXIT_CRITICAL:
        return finish(code, "the promote stopped before this host became master; run hotsync-promote again to resume")
    rec = run.j.get("record") or {}
    t = rec.get("timings", {})
    result["promoted"] = True
    log("")
    log(f"PROMOTED: this host is the master now (pair epoch {rec.get('epoch')}), with the data of "
        f"{_iso(rec.get('last_complete_sync'))} (age {round(rec.get('data_age') or 0)} s when accepted).")
    log("wall time: " + ", ".join(f"{k} {t.get(k, 0.0):.2f}s" for k in P.PHASES) + f"; total {rec.get('duration', 0):.2f}s")
    if rec.get("failed_steps") or rec.get("failed_databases"):
        log("FAILED (the rest went on): " + ", ".join(rec.get("failed_databases", []) + rec.get("failed_steps", [])))
    log("What remains to do by hand:")
    for i, step in enumerate(P.MANUAL_STEPS, 1):
        log(f"  {i}. " + step.format(old=rec.get("old_master") or "the old master",
                                      synced=_iso(rec.get("last_complete_sync"))))
    log("To complete the promotion to master, launch: signal-event post-restore-data")
    return finish(code)


def entry() -> int:
    """The console script: Ctrl-C and a closed stdout (``| head``) end quietly, as every command does."""
    from hotsync_events.cli._common import console

    return console("hotsync-promote", main)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(entry())
