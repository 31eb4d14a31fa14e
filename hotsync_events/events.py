"""Events: ``signal-event EVENT [ARGS...]`` runs every action attached to EVENT, in ``(priority, name)`` order.

Actions come from three places, sorted together:

* plugins, through the ``hotsync_actions`` hook (:class:`hotsync_events.types.Action`, a Python callable);
* executables ``<root>/etc/hotsync/events/<EVENT>/S<NN><name>`` (NN = priority), for authors who write
  shell; they run as ``[path, EVENT, *ARGS]`` (never through a shell) with ``HOTSYNC_ROOT`` and
  ``HOTSYNC_EVENT`` set, stdin closed, stdout and stderr captured, and a timeout. A comment line
  ``# hotsync-timeout: SECONDS`` or ``# hotsync-critical: yes`` in the first 1 KiB sets those per action;
* two implicit steps, as in e-smith: ``generic_template_expand`` at priority 5 (the templates registered
  for the event, plus ``events/<EVENT>/templates2expand/<target path>`` files) and ``adjust-services`` at
  90 (the services registered for the event, and those whose rendered files changed).

Each action's outcome (SUCCESS or FAILED, duration, output) goes to ``<root>/var/log/hotsync/events.log``
and to syslog when ``/dev/log`` exists (``HOTSYNC_SYSLOG=0`` turns that off). A failed action does not
stop the event unless it is ``critical``; the event then fails and names the failed actions. Events are
serialised per root with ``<root>/run/hotsync/events.lock``; an action that signals another event of
the same root runs it inside the lock it already holds. Before every event the plugins' config schemas
are installed and the schema defaults applied to the configuration database.
"""
from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .paths import Root, root_from
from .types import Action, Template, check_name

__all__ = ["DEFAULT_TIMEOUT", "STANDARD_EVENTS", "EventError", "EventResult", "Plan", "Step", "StepResult",
           "UnknownEvent",
           "event_lock", "known_events", "plan_event", "prepare_db", "run_plan", "signal_event"]

DEFAULT_TIMEOUT = 300.0
TEMPLATES_STEP = "generic_template_expand"
SERVICES_STEP = "adjust-services"
TEMPLATES_PRIORITY = 5
SERVICES_PRIORITY = 90
LOCK_WAIT = 3600.0
_EXEC = re.compile(r"S(\d\d)(.+)")
_HEADER = re.compile(rb"^#\s*hotsync-(timeout|critical):\s*(\S+)", re.M)
_SKIP = ("~", ".swp", ".orig", ".rpmsave", ".rpmnew", ".rpmorig", ".bak")
_LOCKED_ENV = "HOTSYNC_EVENT_LOCKED"
_HELD: set[str] = set()   # roots whose event lock this process holds


class EventError(Exception):
    """An event that cannot be planned or run at all (exit code 2 for a bad request, 4 otherwise)."""

    exit_code = 4


class UnknownEvent(EventError):
    """No plugin and no events directory defines the event."""

    exit_code = 2

    def __init__(self, event: str, known: list[str]) -> None:
        self.event, self.known = event, known
        import difflib

        close = difflib.get_close_matches(event, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown event {event!r}: no plugin and no events directory defines it.{hint} "
                         f"Known events: {', '.join(known) or 'none'}")


class _Record:
    """A plain record with slots (dataclasses cost start-up time on every signal-event)."""

    __slots__: tuple[str, ...] = ()

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Step(_Record):
    """One planned step: a plugin's action, an executable, or one of the implicit steps.

    ``kind`` is action, executable, templates, services or error; ``origin`` the plugin's name, the
    executable's path, or "core".
    """

    __slots__ = ("name", "priority", "kind", "origin", "critical", "timeout", "action", "path", "detail")

    def __init__(self, name: str, priority: int, kind: str, origin: str, critical: bool = False,
                 timeout: float | None = None, action: Action | None = None, path: Path | None = None,
                 detail: str = "") -> None:
        self.name, self.priority, self.kind, self.origin = name, priority, kind, origin
        self.critical, self.timeout, self.action, self.path, self.detail = critical, timeout, action, path, detail

    @property
    def sort_key(self) -> tuple[int, str]:
        return (self.priority, self.name)

    def as_json(self) -> dict:
        return {"action": self.name, "priority": self.priority, "kind": self.kind, "from": self.origin,
                "critical": self.critical, "timeout": self.timeout, "detail": self.detail}


class Plan(_Record):
    """The ordered steps of one event, with what the implicit steps need."""

    __slots__ = ("event", "args", "steps", "templates", "services", "sources", "warnings")

    def __init__(self, event: str, args: tuple[str, ...], steps: list[Step], templates: list[Template] | None = None,
                 services: list | None = None, sources: list | None = None, warnings: list[str] | None = None) -> None:
        self.event, self.args, self.steps = event, args, steps
        self.templates = templates if templates is not None else []
        self.services = services if services is not None else []      # [(plugin, Service)]
        self.sources = sources if sources is not None else []         # template sources
        self.warnings = warnings if warnings is not None else []


class StepResult(_Record):
    """What one step did: ``status`` is success, failed or skipped."""

    __slots__ = ("step", "status", "duration", "output", "exit", "reason")

    def __init__(self, step: Step, status: str, duration: float = 0.0, output: str = "", exit: int | None = None,
                 reason: str = "") -> None:
        self.step, self.status, self.duration, self.output, self.exit, self.reason = (
            step, status, duration, output, exit, reason)

    def as_json(self) -> dict:
        return {"action": self.step.name, "status": self.status, "time": round(self.duration, 4),
                "exit": self.exit, "reason": self.reason, "output": self.output}


class EventResult(_Record):
    """The outcome of an event: every step's result in order."""

    __slots__ = ("event", "args", "results", "duration", "warnings")

    def __init__(self, event: str, args: tuple[str, ...], results: list[StepResult], duration: float = 0.0,
                 warnings: list[str] | None = None) -> None:
        self.event, self.args, self.results, self.duration = event, args, results, duration
        self.warnings = warnings if warnings is not None else []

    @property
    def failed(self) -> list[StepResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed


class Progress:
    """Receives the steps of an event as they run (the CLI prints them). Every method is optional."""

    def begin(self, plan: Plan) -> None: ...
    def start(self, index: int, step: Step, total: int) -> None: ...
    def end(self, index: int, result: StepResult, total: int) -> None: ...
    def finish(self, result: EventResult) -> None: ...


# ---------------------------------------------------------------------------------------------- planning
def _executables(root: Root, event: str) -> tuple[list[Step], list[str]]:
    folder = root.etc_dir / "events" / event
    steps: list[Step] = []
    warnings: list[str] = []
    try:
        it = os.scandir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return steps, warnings
    with it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        name = entry.name
        if name.startswith(".") or name.endswith(_SKIP) or entry.is_dir():
            continue
        m = _EXEC.fullmatch(name)
        if m is None:
            warnings.append(f"skipping {entry.path}: an event handler is named S<NN><name>, NN the priority")
            continue
        if not os.access(entry.path, os.X_OK):
            warnings.append(f"skipping non-executable event handler {entry.path} (chmod +x it to run it)")
            continue
        try:
            check_name("action", m.group(2))
        except ValueError as exc:
            warnings.append(f"skipping {entry.path}: {exc}")
            continue
        step = Step(m.group(2), int(m.group(1)), "executable", entry.path, path=Path(entry.path))
        try:
            with open(entry.path, "rb") as fh:
                head = fh.read(1024)
        except OSError:
            head = b""
        for key, value in _HEADER.findall(head):
            if key == b"timeout":
                try:
                    step.timeout = float(value)
                except ValueError:
                    warnings.append(f"{entry.path}: hotsync-timeout {value.decode(errors='replace')!r} is not "
                                    "a number of seconds; using the default")
            else:
                step.critical = value.lower() in (b"yes", b"true", b"1")
        steps.append(step)
    return steps, warnings


def _templates2expand(root: Root, event: str) -> list[str]:
    base = root.etc_dir / "events" / event / "templates2expand"
    out = []
    for dirpath, _dirs, files in os.walk(base):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), base)
            out.append("/" + rel.replace(os.sep, "/"))
    return sorted(out)


@contextmanager
def _hook_errors(pm: Any) -> Iterator[list]:
    """The errors plugins' hooks raise inside the block (pm.hook_errors keeps each error only once)."""
    saved = pm.hook_errors
    fresh: list = []
    pm.hook_errors = fresh
    try:
        yield fresh
    finally:
        pm.hook_errors = saved + [e for e in fresh if e not in saved]


def _collect(pm: Any, db: Any) -> tuple[list, dict, list, list[str]]:
    """Actions, templates, services from the plugins; a hook that raised becomes a problem line."""
    from .services import ServiceError, collect_services
    from .templates import TemplateError, registered_templates

    problems: list[str] = []
    actions = []
    with _hook_errors(pm) as errors:
        for plugin, item in pm.collect("hotsync_actions", db=db):
            if isinstance(item, Action):
                actions.append((plugin, item))
            else:
                problems.append(f"plugin {plugin}: hotsync_actions returned {item!r}, not an Action")
        try:
            templates = registered_templates(pm, db)
            services = collect_services(pm, db)
        except (TemplateError, ServiceError) as exc:
            raise EventError(str(exc)) from None
    problems += [f"plugin {p}: hook {h} raised {e}" for p, h, e in errors]
    return actions, templates, services, problems


def known_events(root: Root, db: Any, pm: Any) -> list[str]:
    """Every event a plugin or an events directory defines."""
    actions, templates, services, _ = _collect(pm, db)
    return _known(root, actions, templates, services)


#: events a NethServer sysadmin runs by hand (the manual, the promote's runbook): always known, each does
#: what the active plugins and the events directories give it, which may be nothing at all
STANDARD_EVENTS = ("nethserver-hotsync-save", "nethserver-hotsync-update", "post-restore-config",
                   "post-restore-data", "pre-backup-config", "pre-backup-data", "pre-restore-config",
                   "pre-restore-data")


def _known(root: Root, actions: list, templates: dict, services: list) -> list[str]:
    names = {a.event for _, a in actions} | set(STANDARD_EVENTS)
    for _, t in templates.values():
        names.update(t.events)
    for _, s in services:
        names.update(s.events)
    try:
        with os.scandir(root.etc_dir / "events") as it:
            names.update(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    except FileNotFoundError:
        pass
    return sorted(names)


def plan_event(event: str, args: tuple[str, ...] | list[str] = (), *, root: Root, db: Any, pm: Any) -> Plan:
    """The ordered steps of *event*. UnknownEvent if nothing defines it; EventError for a clash."""
    try:
        check_name("event", event)
    except ValueError as exc:
        raise EventError(str(exc)) from None
    actions, templates, services, problems = _collect(pm, db)
    known = _known(root, actions, templates, services)
    if event not in known:
        raise UnknownEvent(event, known)
    execs, warnings = _executables(root, event)
    steps: list[Step] = []
    by_name: dict[str, Step] = {}

    def add(step: Step) -> None:
        have = by_name.get(step.name)
        if have is not None:
            raise EventError(f"event {event}: two actions are named {step.name!r}: from {have.origin} and "
                             f"from {step.origin}; rename one")
        by_name[step.name] = step
        steps.append(step)

    for plugin, a in actions:
        if a.event == event:
            add(Step(a.name, a.priority, "action", plugin, critical=a.critical, timeout=a.timeout, action=a))
    for step in execs:
        add(step)
    wanted = {path: tpl for _, tpl in templates.values() for path in [tpl.path] if event in tpl.events}
    for path in _templates2expand(root, event):
        wanted.setdefault(path, templates[path][1] if path in templates else Template(path, events=(event,)))
    tpls = [wanted[p] for p in sorted(wanted)]
    plan = Plan(event, tuple(args), steps, tpls, services, warnings=warnings)
    if tpls:
        from .templates import template_sources

        with _hook_errors(pm) as errors:
            plan.sources = template_sources(pm, root)
        problems += [f"plugin {p}: hook {h} raised {e}" for p, h, e in errors]
        add(Step(TEMPLATES_STEP, TEMPLATES_PRIORITY, "templates", "core", detail=", ".join(t.path for t in tpls)))
    svc_names = sorted({s.name for _, s in services if event in s.events} | {n for t in tpls for n in t.services})
    if svc_names:
        add(Step(SERVICES_STEP, SERVICES_PRIORITY, "services", "core", detail=", ".join(svc_names)))
    for i, problem in enumerate(problems):  # a plugin that could not say what it wants fails the event
        add(Step(f"plugin-error-{i + 1}", 0, "error", problem.split(":")[0], detail=problem))
    steps.sort(key=lambda s: s.sort_key)
    return plan


# ---------------------------------------------------------------------------------------------- preparing
def _schemas_current(pm: Any, root: Root) -> bool:
    """Whether the plugins' spec files are installed as they are (then install_schemas has nothing to do)."""
    wanted: dict[Path, bytes] = {}
    base = root.state_dir / "schema"
    saved = pm.hook_errors
    pm.hook_errors = []   # install_schemas, if it runs, records them
    try:
        for plugin, sf in pm.collect("hotsync_config_schema", root=root):
            try:
                target = base / sf.db / f"{plugin}.spec"
                wanted[target] = wanted.get(target, b"") + Path(sf.path).read_bytes()
            except (OSError, AttributeError, TypeError):
                return False
        if pm.hook_errors:
            return False
    finally:
        pm.hook_errors = saved
    have = set(base.glob("*/*.spec")) if base.is_dir() else set()
    if have != set(wanted):
        return False
    return all(p.read_bytes() == text for p, text in wanted.items())


def _defaults_stamp(root: Root) -> str:
    from .paths import data_dir

    files = [data_dir("db") / "configuration.spec", root.db_dir / "configuration"]
    schema_dir = root.state_dir / "schema" / "configuration"
    if schema_dir.is_dir():
        files += sorted(schema_dir.glob("*.spec"))
    parts = []
    for f in files:
        try:
            st = f.stat()
            parts.append(f"{f}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{f}:-")
    return "\n".join(parts) + "\n"


def prepare_db(pm: Any, root: Root) -> list[str]:
    """Install the plugins' config schemas and apply the schema defaults; returns the problems found.

    Both are skipped when nothing they depend on changed since the last time (same spec files, same
    database file): the result would be the same.
    """
    problems: list[str] = []
    if not _schemas_current(pm, root):
        from .plugins import install_schemas

        problems = install_schemas(pm, root)
    stamp_file = root.state_dir / "cache" / "defaults.stamp"
    try:
        if stamp_file.read_text(encoding="utf-8") == _defaults_stamp(root):
            return problems
    except OSError:
        pass
    from . import schema
    from .configdb import open_db
    from .fsutil import atomic_write

    db = open_db("configuration", root)
    schema.apply_defaults(db, schema.load(root, "configuration"))
    atomic_write(stamp_file, _defaults_stamp(root), mode=0o600)
    return problems


# ---------------------------------------------------------------------------------------------- locking
@contextmanager
def event_lock(root: Root, event: str, notify: Callable[[str], None] | None = None,
               wait: float | None = None) -> Iterator[None]:
    """Hold the root's event lock; *notify* hears "waiting for ..." when another event holds it.

    Re-entrant: an action of the running event (a Python action, or an executable, recognised by the
    ``HOTSYNC_EVENT_LOCKED`` it inherits) that signals another event runs it under the held lock.
    """
    import fcntl

    key = str(root.path)
    inherited = os.environ.get(_LOCKED_ENV, "")
    if key in _HELD:
        yield
        return
    from .fsutil import open_lock

    fd = open_lock(root.run_dir / "events.lock")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
            if inherited and inherited == f"{key}:{_holder_pid(holder)}":
                yield   # signalled by an action of the event that holds the lock
                return
            if notify is not None:
                notify(f"waiting for {holder or 'another event'} to finish (events of {key} run one at a time)")
            wait = float(os.environ.get("HOTSYNC_EVENT_WAIT", LOCK_WAIT)) if wait is None else wait
            deadline = time.monotonic() + wait
            while True:
                time.sleep(0.05)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise EventError(f"gave up after {wait:.0f} s waiting for {holder or 'another event'}")
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.pwrite(fd, f"signal-event {event} (pid {os.getpid()}, since {stamp})\n".encode(), 0)
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _holder_pid(holder: str) -> str:
    m = re.search(r"\(pid (\d+)", holder)
    return m.group(1) if m else "?"


# ---------------------------------------------------------------------------------------------- running
def run_plan(plan: Plan, *, root: Root, db: Any, pm: Any, timeout: float | None = None,
             progress: Progress | None = None) -> EventResult:
    """Run the steps of *plan* in order; a failed critical step skips the rest."""
    from .runner import EventLog, Scratch, run_callable, run_executable

    progress = progress or Progress()
    log = EventLog(root)
    timeout = _default_timeout() if timeout is None else timeout
    started = time.monotonic()
    log.write(f"Event: {' '.join((plan.event, *plan.args))}")
    for w in plan.warnings:
        log.write(f"Warning: {w}", syslog=False)
    progress.begin(plan)
    total = len(plan.steps)
    results: list[StepResult] = []
    changed: list[tuple[str, str]] = []
    stop_reason = ""
    scratch = Scratch(root)
    ctx = {"event": plan.event, "args": plan.args, "root": root, "db": db, "pm": pm}
    env = dict(os.environ)
    env.update(HOTSYNC_ROOT=str(root.path), HOTSYNC_EVENT=plan.event, **{_LOCKED_ENV: f"{root.path}:{os.getpid()}"})
    seen = _db_state(db)
    try:
        for i, step in enumerate(plan.steps, 1):
            now = _db_state(db)
            if now != seen:   # an action (or a program it ran) changed the database: read it again
                db.reload()
                seen = now
            if stop_reason:
                res = StepResult(step, "skipped", reason=stop_reason)
                results.append(res)
                progress.end(i, res, total)
                continue
            progress.start(i, step, total)
            t0 = time.monotonic()
            limit = step.timeout if step.timeout is not None else timeout
            if step.kind == "action":
                outcome = run_callable(step.action.run, ctx, limit, scratch)  # type: ignore[union-attr]
            elif step.kind == "executable":
                outcome = run_executable([str(step.path), plan.event, *plan.args], env, str(root.path), limit,
                                         scratch)
            elif step.kind == "templates":
                outcome = _run_templates(plan, root, db, pm, changed)
            elif step.kind == "services":
                outcome = _run_services(plan, root, db, pm, changed)
            else:
                outcome = ("failed", None, step.detail, step.detail)
            res = StepResult(step, outcome[0], time.monotonic() - t0, outcome[2], outcome[1], outcome[3])
            results.append(res)
            where = step.path if step.kind == "executable" else step.origin
            verdict = "SUCCESS" if res.status == "success" else f"FAILED: {res.reason}"
            log.write(f"Action: {step.name} ({where}) {verdict} [{res.duration:.3f}s]", res.output)
            progress.end(i, res, total)
            if res.status == "failed" and step.critical:
                stop_reason = f"critical action {step.name} failed"
    finally:
        scratch.close()
    result = EventResult(plan.event, plan.args, results, time.monotonic() - started, list(plan.warnings))
    failed = ", ".join(r.step.name for r in result.failed)
    log.write(f"Event: {plan.event} " + ("SUCCESS" if result.ok else f"FAILED ({failed})"))
    log.close()
    progress.finish(result)
    return result


def _db_state(db: Any) -> tuple | None:
    try:
        st = os.stat(db.path)
    except (OSError, AttributeError, TypeError):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _default_timeout() -> float:
    try:
        return float(os.environ.get("HOTSYNC_ACTION_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


def _run_templates(plan: Plan, root: Root, db: Any, pm: Any, changed: list) -> tuple[str, int | None, str, str]:
    from .templates import expand_many

    lines, bad = [], []
    for res in expand_many(plan.templates, root=root, db=db, pm=pm, event=plan.event, args=plan.args,
                           sources=plan.sources):
        if res.status == "failed":
            bad.append(res.path)
            lines.append(f"FAILED {res.error}")
            continue
        lines.append(f"{res.status:<9} {res.path}")
        if res.status == "changed":
            changed.extend((res.path, s) for s in res.services)
    if bad:
        return "failed", 1, "\n".join(lines), f"template expansion failed: {', '.join(bad)}"
    return "success", 0, "\n".join(lines), ""


def _run_services(plan: Plan, root: Root, db: Any, pm: Any, changed: list) -> tuple[str, int | None, str, str]:
    """Adjust the services, as the plugins declare them now (the actions before may have changed config)."""
    from .services import ServiceError, ServiceManager, collect_services

    try:
        with _hook_errors(pm) as errors:
            services = collect_services(pm, db)
    except ServiceError as exc:
        return "failed", 1, str(exc), str(exc)
    passive = db is not None and db.getprop("hotsync", "role", "") == "slave"   # Service.writer stays stopped
    lines, failed = ServiceManager(root, services, passive=passive).adjust(plan.event, changed)
    for p, h, e in errors:   # the services of a plugin whose hook raised could not be adjusted
        lines.append(f"plugin {p}: hook {h} raised {e}")
        failed.append(f"plugin {p}")
    if failed:
        return "failed", 1, "\n".join(lines), f"services failed: {', '.join(failed)}"
    return "success", 0, "\n".join(lines), ""


def plugin_manager(root: Root) -> Any:
    """Built-in and installed plugins, the installed ones found through the root's entry-point cache."""
    from .entrypoints import entry_points
    from .plugins import get_plugin_manager

    pm = get_plugin_manager(entrypoints=False)
    pm.load_entrypoints(eps=entry_points("hotsync", root.state_dir / "cache"))
    pm.root = root   # plugins detect their application under this root
    return pm


def signal_event(event: str, args: tuple[str, ...] | list[str] = (), *, root: Root | str | None = None,
                 pm: Any = None, timeout: float | None = None, progress: Progress | None = None,
                 notify: Callable[[str], None] | None = None) -> EventResult:
    """Signal *event*: lock the root, prepare the database, plan, run. The library form of ``signal-event``.

    Raises UnknownEvent / EventError when the event cannot run at all; action failures are in the
    result (``result.ok``, ``result.failed``).
    """
    root = root if isinstance(root, Root) else root_from(root)
    try:
        check_name("event", event)
    except ValueError as exc:
        raise EventError(str(exc)) from None
    with event_lock(root, event, notify=notify):
        if pm is None:
            pm = plugin_manager(root)
        elif getattr(pm, "root", None) is None:
            pm.root = root
        memo = getattr(pm, "detect_memo", None)
        pm.detect_memo = {}   # plugins' detection answers, reused while the configuration is unchanged
        try:
            problems = prepare_db(pm, root)
            from .configdb import open_db

            db = open_db("configuration", root)
            plan = plan_event(event, tuple(args), root=root, db=db, pm=pm)
            plan.warnings[:0] = problems + [f"plugin {i.name} ({i.origin}) is broken: {i.error}"
                                            for i in pm.plugin_infos() if i.error]
            return run_plan(plan, root=root, db=db, pm=pm, timeout=timeout, progress=progress)
        finally:
            pm.detect_memo = memo
