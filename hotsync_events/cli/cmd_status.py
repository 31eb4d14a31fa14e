"""``hotsync status``: this side of the pair in a sysadmin's words, or as JSON."""
from __future__ import annotations

import json
import re
import time

from hotsync_events.sync.fence import age_words

#: control characters (C0 but tab and newline, DEL, C1): what the other host named (a file, a path, a
#: reason) reaches the terminal as escapes, never as the terminal's commands
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _say(*args, **kw) -> None:
    """``print``, with control characters shown as ``\\xNN``."""
    print(*(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(a)) for a in args), **kw)


HELP = "show this host's sync state: health, role, peer, last run, last success, age of the slave's copy"
EPILOG = """\
exit status: 0; with --check, the health as monitoring plugins say it: 0 ok, 1 warning, 2 critical,
3 unknown. A user who may not read root's state gets the public part ("limited": true in --json: the
role, the runs' times, results and counts, the copy's age, the health; no message, path or secret),
written at each change of the status; 4 when there is none yet.

examples:
  hotsync status
  hotsync status --json | python3 -m json.tool
  hotsync status --check              HOTSYNC OK - master: ... | copy_age=12s;1200;2100 last_run=12s queued=0
  hotsync status --prometheus > /var/lib/node_exporter/textfile/hotsync.prom
"""


def add_arguments(parser) -> None:
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON (with a health field)")
    out.add_argument("--check", action="store_true",
                     help="one line for monitoring, with perfdata; exit 0 ok, 1 warning, 2 critical, 3 unknown")
    out.add_argument("--prometheus", action="store_true",
                     help="node-exporter's textfile-collector format (hotsync_health, hotsync_copy_age_seconds, ...)")


def _age(seconds: float | None) -> str:
    return "never synced" if seconds is None else age_words(seconds)


def _promote_lines(info: dict, age) -> None:
    """The promote (issue 7): this master was fenced, or this host was promoted and when."""
    from hotsync_events.sync.status import iso

    f = info.get("fenced")
    if f:
        _say(f"FENCED:            since {iso(f.get('time'))}: {f.get('message')}")
    p = info.get("promote")
    if p and info["role"] == "master":
        t = p.get("timings") or {}
        _say(f"promoted:          {iso(p.get('time'))}, pair epoch {p.get('epoch')}, took {p.get('duration', 0):.1f} s "
              f"(verify {t.get('verify', 0):.1f}, fence {t.get('fence', 0):.1f}, databases {t.get('databases', 0):.1f}, "
              f"steps {t.get('steps', 0):.1f})")
        _say(f"                   accepted the data of {iso(p.get('last_complete_sync'))}, "
              f"{age(p.get('data_age'))} old" + (" (--force)" if p.get("forced") else ""))
    if info.get("fence") and info["role"] == "master" and info.get("fence_listener"):
        _say(f"fence:             pushes to this host are refused (epoch {info['fence'].get('epoch')}); "
              f"old master {info['fence'].get('old_master') or '?'} learns it at its next try")


def _drill_line(info: dict) -> None:
    """The last takeover drill (``hotsync drill``) and the schedule."""
    from hotsync_events.sync.status import iso

    d = info.get("drill")
    sched = info.get("drill_schedule") or "off"
    if not d:
        _say(f"takeover drill:    never (DrillSchedule {sched}; run hotsync drill)")
        return
    if d.get("error"):
        _say(f"takeover drill:    {d['error']}")
        return
    what = "PASSED" if d.get("result") == "passed" else "FAILED: " + "; ".join(d.get("causes") or [])[:300]
    took = f", promote {d['promote_time']:.1f} s" if d.get("promote_time") is not None else ""
    age = f", data {int(d['data_age'])} s old" if d.get("data_age") is not None else ""
    kind = "booted drill" if d.get("mode") == "booted" else "drill"
    _say(f"takeover drill:    {iso(d.get('time'))}: {what} ({kind} {d.get('wall_time') or 0:.1f} s{took}{age}; "
          f"DrillSchedule {sched})")


def _limited(root, args, exc) -> int:
    """The status for a user who may not read root's state: the public snapshot, or why there is none."""
    import sys

    from hotsync_events.sync.public import limited_info
    from hotsync_events.sync.status import iso

    info = limited_info(root)
    if info is None:
        _say(f"hotsync status: {exc.strerror}: {exc.filename}; this host's state is root's, and it has no public "
              "status yet (written at its next sync or received push); run as root", file=sys.stderr)
        return 3 if args.check else 4
    health = info["health"]
    code = _machine_output(args, info)
    if code is not None:
        return code
    _say(f"health:            {health['state'].upper()}: " + "; ".join(r.split(": ", 1)[1] for r in health["reasons"]))
    _say(f"role:              {info.get('role') or 'not set'} ({info.get('status')})")
    _say(f"peer:              {info.get('peer') or 'not configured'}")
    last = info.get("last_run")
    _say("last run:          " + (f"{iso(last.get('start'))} -> {iso(last.get('end'))}: {last.get('result')}"
                                   if last else "never"))
    ok = info.get("last_success")
    _say(f"last success:      {iso(ok.get('end')) if ok else 'never'}")
    _say(f"slave's copy age:  {_age(info.get('copy_age'))}")
    _say(f"limited:           the public part only, as of {iso(info.get('written'))}; run as root for the whole status")
    return 0


def _machine_output(args, info: dict) -> int | None:
    """``--check``, ``--prometheus`` or ``--json`` of *info*: the exit code, or None when text is wanted."""
    from hotsync_events.sync.health import check_line, prometheus

    health = info["health"]
    if args.check:
        _say(check_line(health, info["role"]))
        return int(health["code"])
    if args.prometheus:
        print(prometheus(info, health), end="")     # for a scraper, in its own format
        return 0
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))      # every control character a JSON escape
        return 0
    return None


def run(args) -> int:
    from hotsync_events.paths import root_from
    from hotsync_events.sync.report import collect

    root = root_from(getattr(args, "root", None))
    try:
        info = collect(root)
    except PermissionError as exc:      # not root: what any user may read (sync/public.py)
        return _limited(root, args, exc)
    from hotsync_events.sync.notifier_status import status_lines

    health = info["health"]
    code = _machine_output(args, info)
    if code is not None:
        return code
    from hotsync_events.sync.status import iso

    now = time.time()
    _say(f"health:            {health['state'].upper()}: " + "; ".join(r.split(": ", 1)[1] for r in health["reasons"]))
    _say(f"role:              {info['role'] or 'not set'} ({info['status']})")
    _say(f"peer:              {info['peer'] or 'not configured'}")
    _promote_lines(info, _age)
    if info.get("running"):
        r = info["running"]
        _say(f"running now:       since {iso(r.get('start'))} (pid {r.get('pid')})")
    last = info.get("last_run")
    if last:
        what = f"{last.get('result')}"
        if info["role"] == "master":
            what += f", {last.get('files', 0)} files, {last.get('bytes', 0)} bytes sent"
        else:
            what += f", rsync exit {last.get('exit_status')}"
        _say(f"last run:          {iso(last.get('start'))} -> {iso(last.get('end'))}: {what}")
        if last.get("message"):
            _say(f"                   {last['message']}")
    else:
        _say("last run:          never")
    ok = info.get("last_success")
    _say(f"last success:      {iso(ok.get('end')) if ok else 'never'}")
    _say(f"slave's copy age:  {_age(info.get('copy_age'))}")
    if info["role"] == "master":
        nxt = info.get("next_run")
        _say(f"next run:          {str(iso(nxt)) + (' (due)' if nxt <= now else '') if nxt else 'not scheduled'}")
    _say(f"certificate:       {info.get('fingerprint') or 'none yet (signal-event nethserver-hotsync-save)'}"
          "   (this host's; its peer pins it)")
    if info["role"] == "master":
        _say(f"pinned slave cert: {info.get('peer_fingerprint') or 'none yet: the first hotsync sync, by a person'}")
        if info.get("awaiting_person"):
            _say(f"WAITING:           {info['awaiting_person']}")
    elif info["role"] == "slave":
        _say(f"master cert:       {info.get('pairing')}: MasterFingerprint {info.get('master_fingerprint') or 'unset'}"
              + (f", trusted {info['peer_fingerprint']}" if info.get("peer_fingerprint") else ""))
        if info.get("master_presented") and info["master_presented"] != info.get("peer_fingerprint"):
            _say(f"                   a master presented {info['master_presented']}: if it is yours, run "
                  f"config setprop hotsync MasterFingerprint {info['master_presented']}; "
                  "signal-event nethserver-hotsync-save")
        beat = info.get("last_beat") or {}
        if beat:
            _say(f"master heartbeat:  {iso(beat.get('time'))} from {beat.get('from')} "
                 + (f"(its real-time notifier beats every {beat['every']} s of quiet)" if beat.get("every") else
                    "(its real-time notifier said it stopped beating)" if beat.get("every") == 0 else ""))
        if info.get("keep_aside"):
            _say("keep aside:        the first push from the new master keeps what it replaces or deletes here")
        for k in info.get("kept") or []:
            _say(f"kept aside:        {k['path']} ({k['files']} files, {iso(k['time'])}): what a first push after a "
                  "re-pair replaced or deleted here; keep what you need, then remove the folder")
        _drill_line(info)
        if info.get("peer_refused"):
            _say(f"peer copy REFUSED: {iso(info['peer_refused'].get('time'))}: "
                  + "; ".join(info["peer_refused"].get("problems", [])[:3]))
    if info.get("replicas") is not None:
        from hotsync_events.sync.replicas import replica_lines

        for line in replica_lines(info["replicas"]) or ["databases:         DatabaseMode replica, but no plugin "
                                                        "declares a replica on this host"]:
            _say(line)
    err = info.get("last_error")
    if err:
        _say(f"last error:        {iso(err.get('time'))}: {err.get('message')}")
    if info.get("last_refused"):
        r = info["last_refused"]
        _say(f"last refused push: {iso(r.get('time'))} from {r.get('from')}: {r.get('reason')}")
    alert = info.get("alert") or {}
    if alert.get("sent"):
        _say(f"alert:             failure mail sent to {alert.get('to')} at {iso(alert.get('time'))}; "
              "the next one goes on recovery")
    if alert.get("error"):
        _say(f"alert:             mail could not be sent: {alert['error']}")
    if info["role"] == "master" or info.get("realtime"):
        for line in status_lines(root):
            _say(line)
    from hotsync_events.sync.units import unit_lines

    for line in unit_lines(info.get("units")):
        _say(line)
    return 0
