"""``hotsync drill``: a takeover drill on this slave (a promote on a throw-away overlay, then health checks)."""
from __future__ import annotations

import json
import sys

HELP = "prove that this slave can take over: promote a throw-away overlay of its copy, check the services"
EPILOG = """\
On the SLAVE, as root. The drill lays an overlay over this host's root (its writes go to a tmpfs; the copy
is only read), and in private mount, pid and network namespaces (loopback only: the master is never
contacted) runs the real promote there, every phase, then the health checks: each dump restored, the
configuration database valid, the services up, and each plugin's own checks. Then everything is gone: no
mount, no process, also after kill -9. Pushes from the master go on landing in the copy meanwhile.

On a real host (root /, PID 1 systemd) the drilled host boots its own systemd on the overlay: the promote
and its services go through systemd, then default.target starts as the reboot after a promote would, and a
unit that fails there fails the drill. Elsewhere (--no-boot, a root that is one directory of a machine)
the services run with the process back-end.

The verdict, the causes of a failure, how long the promote took and the age of the data it used go to
hotsync status (a warning when the last drill failed, or is older than DrillSchedule), and a mail goes
to MailTo when a drill fails and when one passes again.

exit status: 0 passed; 1 failed (the causes are listed); 2 cannot run here (not a slave, not root...).

examples:
  hotsync drill                        one drill now
  hotsync drill --json                 the record as JSON
  hotsync drill --keep                 leave the drilled host up to look at (it says how to enter it)
  hotsync drill --stop                 power off what --keep left up
  config setprop hotsync DrillSchedule weekly; signal-event nethserver-hotsync-save    drills on a schedule
"""


def add_arguments(parser) -> None:
    parser.add_argument("--timeout", type=float, default=900.0, metavar="SECONDS",
                        help="kill the drill after this long (default 900)")
    parser.add_argument("--size", default="50%", metavar="SIZE",
                        help="the tmpfs that takes the drill's writes (default 50%% of RAM; e.g. 2g)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--keep", action="store_true",
                      help="leave the drilled host up (its services running) for a person to look at")
    boot = parser.add_mutually_exclusive_group()
    boot.add_argument("--boot", dest="boot", action="store_true", default=None,
                      help="boot the drilled host's own systemd (the default on a systemd host whose root is /)")
    boot.add_argument("--no-boot", dest="boot", action="store_false", default=None,
                      help="no systemd: the services run with the process back-end")
    what.add_argument("--stop", action="store_true",
                      help="power off the drilled hosts --keep left up on this host, and remove what they left")
    what.add_argument("--scheduled", action="store_true",
                      help="only when DrillSchedule asks for one now (what the cron entry runs)")
    parser.add_argument("--no-mail", action="store_true", help="send no failure or recovery mail")
    parser.add_argument("--json", action="store_true", help="print the record as JSON")


def run(args) -> int:
    from hotsync_events.drill import EXIT_CANNOT, EXIT_FAILED, EXIT_PASSED, DrillError, due, run_drill
    from hotsync_events.paths import root_from

    root = root_from(getattr(args, "root", None))
    quiet = getattr(args, "quiet", False)
    if not 0 < args.timeout <= 86400:
        print("hotsync drill: --timeout must be between 1 and 86400 seconds", file=sys.stderr)
        return EXIT_CANNOT
    if args.stop:
        from hotsync_events.drill import stop_kept

        try:
            stopped, left = stop_kept(root, log=(lambda m: None) if quiet else print)
        except DrillError as exc:
            print(f"hotsync drill: {exc}", file=sys.stderr)
            return EXIT_CANNOT
        if not stopped and not left and not quiet:
            print("hotsync drill: no drilled host is kept up on this host")
        return EXIT_FAILED if left else EXIT_PASSED
    if args.scheduled:
        try:
            go, why = due(root)
        except Exception as exc:
            print(f"hotsync drill: {exc}", file=sys.stderr)
            return EXIT_CANNOT
        if not go:
            if not quiet:
                print(f"hotsync drill: not due: {why}")
            return EXIT_PASSED
    out = sys.stderr if args.json else sys.stdout
    log = (lambda m: None) if quiet else (lambda m: print(m, file=out, flush=True))
    try:
        rec = run_drill(root, timeout=args.timeout, size=args.size, keep=args.keep, log=log, mail=not args.no_mail,
                        boot=args.boot)
    except DrillError as exc:
        print(f"hotsync drill: {exc}", file=sys.stderr)
        return EXIT_CANNOT
    except PermissionError as exc:
        print(f"hotsync drill: {exc.strerror}: {exc.filename}; the drill reads and mounts root's files: run it as root",
              file=sys.stderr)
        return EXIT_CANNOT
    except OSError as exc:
        print(f"hotsync drill: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return EXIT_CANNOT
    if args.json:
        print(json.dumps(rec, indent=2, sort_keys=True, default=str))
    elif not quiet or rec["result"] == "failed":
        _summary(rec, out)
    return EXIT_FAILED if rec["result"] == "failed" else EXIT_PASSED


def _summary(rec: dict, out) -> None:
    w = lambda s="": print(s, file=out)  # noqa: E731
    w("")
    for c in rec.get("checks") or []:
        w(f"  check {c['name']:<28} {c['status'].upper():<8} {c.get('time', 0):6.2f}s  {c.get('detail', '')[:120]}")
    t = rec.get("promote_timings") or {}
    if rec.get("promote_time") is not None:
        w(f"  promote would take {rec['promote_time']:.1f} s ("
          + ", ".join(f"{k} {v:.1f}" for k, v in t.items()) + ")")
    if rec.get("data_age") is not None:
        w(f"  age of the data the drill used: {int(rec['data_age'])} s")
    for n in rec.get("notes") or []:
        w(f"  note: {n}")
    if rec["result"] == "failed":
        w("DRILL FAILED:")
        for c in rec.get("causes") or []:
            w(f"  * {c}")
    else:
        w(f"DRILL PASSED in {rec.get('wall_time') or 0:.1f} s: this slave can take over.")
    boot, reboot = rec.get("boot") or {}, rec.get("reboot") or {}
    if boot:
        w(f"  booted its own systemd in {boot.get('seconds', 0):.1f} s" + (
          f"; after the promote {reboot['target']} started {len(reboot.get('services_active') or [])} services "
          f"in {reboot.get('seconds', 0):.1f} s" if reboot.get("target") else "; the promote did not get to its "
          "default target"))
    keep = rec.get("keep")
    if keep and keep.get("booted"):
        w(f"The drilled host is up, booted: enter it with  nsenter -t {keep.get('pid')} -a -r -w sh  ; stop it with  "
          "hotsync drill --stop  (it powers off every kept drilled host of this root, and nothing else)")
    elif keep:
        w(f"The drilled host is up: enter it with  nsenter -t {keep.get('pid')} -m -p -n sh  ; "
          "stop it with  hotsync drill --stop  (every process and mount of it goes)")
