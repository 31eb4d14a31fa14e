"""``signal-event [--root DIR] [--list] [--json] [--timeout S] EVENT [ARGS...]``: run an event's actions.

Hand-parsed (no argparse) and lazily importing: it runs on every configuration change and its start-up
is measured by ``bench/signal_event.py``. Options stop at EVENT: what follows goes to the actions.
"""
from __future__ import annotations

import os
import sys

USAGE = "usage: signal-event [--root DIR] [--list] [--json] [--timeout SECONDS] EVENT [ARGS...]"
HELP = f"""{USAGE}

Run every action attached to EVENT in (priority, name) order: plugins' actions, the executables
<root>/etc/hotsync/events/EVENT/S<NN><name>, template expansion (priority 5) and service adjustment
(priority 90). ARGS go to every action. Exit 0 when every action succeeded, 1 when one failed (they are
named), 2 for a bad request such as an unknown event.

options:
  --root DIR       the host's root directory (default $HOTSYNC_ROOT, else /)
  --list           print the plan of EVENT (priority, action, where it comes from) without running it;
                   without EVENT, list the known events
  --json           print one JSON object per step as it starts and as it ends (a progress stream)
  --timeout S      seconds an action may run before it is stopped (default $HOTSYNC_ACTION_TIMEOUT,
                   else 300); an action's own timeout (Action.timeout, '# hotsync-timeout: S') wins
  -h, --help       this help

examples:
  signal-event nethserver-hotsync-save
  signal-event --list nethserver-hotsync-save
  signal-event --list
  signal-event --json nethserver-hotsync-save | python3 -c 'import sys,json; [print(json.loads(l)) for l in sys.stdin]'
  signal-event --root /srv/slave --timeout 60 nethserver-hotsync-save
  HOTSYNC_ROOT=/srv/master signal-event user-create alice

log: <root>/var/log/hotsync/events.log"""


class Usage(Exception):
    pass


def parse(argv: list[str]) -> dict:
    opts: dict = {"root": None, "list": False, "json": False, "timeout": None, "event": None, "args": []}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            opts["help"] = True
            return opts
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            break
        name, eq, value = a.partition("=")
        if name in ("--list", "--json"):
            if eq:
                raise Usage(f"{name} takes no value")
            opts[name[2:]] = True
        elif name in ("--root", "--timeout"):
            if not eq:
                i += 1
                if i >= len(argv):
                    raise Usage(f"{name} needs a value")
                value = argv[i]
            if name == "--timeout":
                try:
                    t = float(value)
                except ValueError:
                    t = -1.0
                if not t > 0:
                    raise Usage(f"--timeout needs a positive number of seconds, got {value!r}")
                opts["timeout"] = t
            else:
                opts["root"] = value
        else:
            raise Usage(f"unknown option {a!r}; allowed: --root, --list, --json, --timeout, --help")
        i += 1
    if i < len(argv):
        opts["event"] = argv[i]
        opts["args"] = argv[i + 1:]
    return opts


def _quiet_stdout() -> None:
    """The reader of our stdout went away (``| head``): keep running the event, print nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


class _Out:
    """stdout that survives a closed pipe: an event half-run because nobody reads its progress is worse."""

    def __init__(self, out=None) -> None:
        self.out = out or sys.stdout
        self.dead = False

    def write(self, text: str) -> None:
        if self.dead:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except (BrokenPipeError, ValueError):
            self.dead = True
            _quiet_stdout()

    def flush(self) -> None:
        pass


class HumanProgress:
    """One line per action: ``[2/5] 15 broken ... FAILED (exit 3) 0.01s`` and the output of failures."""

    def __init__(self, out=None) -> None:
        self.out = _Out(out)
        self.width = 28

    def begin(self, plan) -> None:
        self.width = max([len(s.name) for s in plan.steps] + [12]) + 2
        for w in plan.warnings:
            print(f"signal-event: warning: {w}", file=sys.stderr, flush=True)
        print(f"{plan.event}: {len(plan.steps)} actions", file=self.out, flush=True)

    def start(self, index, step, total) -> None:
        self.out.write(f"  [{index}/{total}] {step.priority:02d} {step.name:<{self.width}}")
        self.out.flush()

    def end(self, index, res, total) -> None:
        if res.status == "skipped":
            self.out.write(f"  [{index}/{total}] {res.step.priority:02d} {res.step.name:<{self.width}}"
                           f"skipped ({res.reason})\n")
            self.out.flush()
            return
        verdict = "SUCCESS" if res.status == "success" else f"FAILED ({res.reason})"
        self.out.write(f"{verdict} {res.duration:.2f}s\n")
        if res.status == "failed" and res.output.strip():
            for line in res.output.rstrip("\n").splitlines()[-15:]:
                self.out.write(f"        {line}\n")
        elif res.step.kind in ("templates", "services") and res.output.strip():
            for line in res.output.rstrip("\n").splitlines():
                if not line.startswith("unchanged"):
                    self.out.write(f"        {line}\n")
        self.out.flush()

    def finish(self, result) -> None:
        if result.ok:
            print(f"{result.event}: SUCCESS ({result.duration:.2f}s)", file=self.out, flush=True)


class JsonProgress:
    """One JSON object per line on stdout: the plan, each step starting and ending, the outcome."""

    def __init__(self, out=None) -> None:
        import json

        self.out = _Out(out)
        self.dumps = json.dumps
        self.pid = os.getpid()
        self.event = ""

    def _emit(self, obj: dict) -> None:
        obj["pid"] = self.pid
        self.out.write(self.dumps(obj) + "\n")
        self.out.flush()

    def begin(self, plan) -> None:
        self.event = plan.event
        self._emit({"event": plan.event, "args": list(plan.args), "steps": len(plan.steps),
                    "warnings": plan.warnings})

    def start(self, index, step, total) -> None:
        self._emit({"event": self.event, "step": index, "state": "running", **step.as_json()})

    def end(self, index, res, total) -> None:
        self._emit({"event": self.event, "step": index, "state": "done",
                    "progress": f"{index / total:.2f}", **res.as_json()})

    def finish(self, result) -> None:
        self._emit({"event": result.event, "status": "success" if result.ok else "failed",
                    "failed": [r.step.name for r in result.failed], "time": round(result.duration, 4)})


def _list(opts: dict, root) -> int:
    from hotsync_events.configdb import open_db
    from hotsync_events.events import known_events, plan_event
    from hotsync_events.manager import plugin_manager

    pm = plugin_manager(root)
    db = open_db("configuration", root, initialise=False, journal=False)
    if opts["event"] is None:
        events = known_events(root, db, pm)
        if opts["json"]:
            import json

            print(json.dumps({"events": events}))
        else:
            print("\n".join(events) if events else "no events are defined")
        return 0
    plan = plan_event(opts["event"], tuple(opts["args"]), root=root, db=db, pm=pm)
    if opts["json"]:
        import json

        print(json.dumps({"event": plan.event, "args": list(plan.args), "steps": [s.as_json() for s in plan.steps],
                          "warnings": plan.warnings}))
        return 0
    width = max([len(s.name) for s in plan.steps] + [6]) + 2
    print(f"{plan.event}: {len(plan.steps)} actions, run in this order")
    print(f"  {'PRI':<4}{'ACTION':<{width}}FROM")
    for s in plan.steps:
        origin = {"action": f"plugin {s.origin}", "executable": s.origin}.get(s.kind, s.origin)
        if s.detail:
            origin += f": {s.detail}"
        flags = "".join([" [critical]" if s.critical else "",
                         f" [timeout {s.timeout:g}s]" if s.timeout is not None else ""])
        print(f"  {s.priority:02d}  {s.name:<{width}}{origin}{flags}")
    for w in plan.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    from hotsync_events.cli._common import console

    return console("signal-event", lambda: _main(argv))


def _main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--version"]:
        from hotsync_events.cli._common import version_line

        print(version_line("signal-event"))
        return 0
    try:
        opts = parse(argv)
    except Usage as exc:
        print(f"signal-event: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    if opts.get("help"):
        print(HELP)
        return 0
    from hotsync_events.events import EventError
    from hotsync_events.paths import root_from

    root = root_from(opts["root"])
    try:
        if opts["list"]:
            return _list(opts, root)
        if opts["event"] is None:
            print(f"signal-event: which event? (signal-event --list shows them)\n{USAGE}", file=sys.stderr)
            return 2
        from hotsync_events.events import signal_event

        progress = JsonProgress() if opts["json"] else HumanProgress()
        result = signal_event(opts["event"], tuple(opts["args"]), root=root, timeout=opts["timeout"],
                              progress=progress,
                              notify=lambda msg: print(f"signal-event: {msg}", file=sys.stderr, flush=True))
    except EventError as exc:
        print(f"signal-event: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a db or schema error: say what, not a traceback
        code = getattr(exc, "exit_code", None)
        if code is None:
            raise
        print(f"signal-event: {exc}", file=sys.stderr)
        return code
    if not result.ok:
        names = ", ".join(f"{r.step.name} ({r.reason})" for r in result.failed)
        skipped = [r.step.name for r in result.results if r.status == "skipped"]
        more = f"; not run after a critical failure: {', '.join(skipped)}" if skipped else ""
        print(f"signal-event: event {result.event} FAILED: {names}{more}. Log: {root.log_dir / 'events.log'}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
