"""Running an event: ``signal-event EVENT [ARGS...]`` runs every action attached to EVENT, in ``(priority, name)`` order.

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from hotsync_events.paths import Root, root_from
from hotsync_events.events.plan import EventError, Plan, Step, _hook_errors, _Record, plan_event
from hotsync_events.types import check_name

__all__ = ["DEFAULT_TIMEOUT", "EventResult", "Progress", "StepResult", "event_lock", "prepare_db", "run_plan",
           "signal_event"]

DEFAULT_TIMEOUT = 300.0
LOCK_WAIT = 3600.0
_LOCKED_ENV = "HOTSYNC_EVENT_LOCKED"
_HELD: set[str] = set()   # roots whose event lock this process holds


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


class ProgressLike(Protocol):
    """What a run calls: a :class:`Progress` (subclassed), or any object with its four methods."""

    def begin(self, plan: Plan) -> None: ...
    def start(self, index: int, step: Step, total: int) -> None: ...
    def end(self, index: int, result: StepResult, total: int) -> None: ...
    def finish(self, result: EventResult) -> None: ...


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
    from hotsync_events.paths import data_dir

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
        from hotsync_events.manager import install_schemas

        problems = install_schemas(pm, root)
    stamp_file = root.state_dir / "cache" / "defaults.stamp"
    try:
        if stamp_file.read_text(encoding="utf-8") == _defaults_stamp(root):
            return problems
    except OSError:
        pass
    from hotsync_events.configdb import schema
    from hotsync_events.configdb import open_db
    from hotsync_events.fsutil import atomic_write

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
    from hotsync_events.fsutil import open_lock

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
                        raise EventError(f"gave up after {wait:.0f} s waiting for {holder or 'another event'}") from None
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
             progress: ProgressLike | None = None) -> EventResult:
    """Run the steps of *plan* in order; a failed critical step skips the rest."""
    from hotsync_events.events.runner import EventLog, Scratch, run_callable, run_executable

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
    from hotsync_events.events.services import service_control

    ctx = {"event": plan.event, "args": plan.args, "root": root, "db": db, "pm": pm,
           "control": service_control(root, pm, db)}
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
    from hotsync_events.events.templates import expand_many

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
    from hotsync_events.events.services import ServiceError, ServiceManager, collect_services
    from hotsync_events.manager import RegistrationError

    try:
        with _hook_errors(pm) as errors:
            services = collect_services(pm, db)
    except (ServiceError, RegistrationError) as exc:
        return "failed", 1, str(exc), str(exc)
    passive = db is not None and db.getprop("hotsync", "role", "") == "slave"   # Service.writer stays stopped
    lines, failed = ServiceManager(root, services, passive=passive).adjust(plan.event, changed)
    for p, h, e in errors:   # the services of a plugin whose hook raised could not be adjusted
        lines.append(f"plugin {p}: hook {h} raised {e}")
        failed.append(f"plugin {p}")
    if failed:
        return "failed", 1, "\n".join(lines), f"services failed: {', '.join(failed)}"
    return "success", 0, "\n".join(lines), ""


def signal_event(event: str, args: tuple[str, ...] | list[str] = (), *, root: Root | str | None = None,
                 pm: Any = None, timeout: float | None = None, progress: ProgressLike | None = None,
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
            from hotsync_events.manager import plugin_manager

            pm = plugin_manager(root)
        elif getattr(pm, "root", None) is None:
            pm.root = root
        memo = getattr(pm, "detect_memo", None)
        pm.detect_memo = {}   # plugins' detection answers, reused while the configuration is unchanged
        try:
            problems = prepare_db(pm, root)
            from hotsync_events.configdb import open_db

            db = open_db("configuration", root)
            plan = plan_event(event, tuple(args), root=root, db=db, pm=pm)
            plan.warnings[:0] = problems + [f"plugin {i.name} ({i.origin}) is broken: {i.error}"
                                            for i in pm.plugin_infos() if i.error]
            return run_plan(plan, root=root, db=db, pm=pm, timeout=timeout, progress=progress)
        finally:
            pm.detect_memo = memo
