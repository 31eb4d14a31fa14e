"""Planning an event: which steps run, in which order, from where.

Actions come from three places, sorted together by ``(priority, name)``:

* plugins, through the ``hotsync_actions`` hook (:class:`hotsync_events.types.Action`, a Python callable);
* executables ``<root>/etc/hotsync/events/<EVENT>/S<NN><name>`` (NN = priority), for authors who write
  shell. A comment line ``# hotsync-timeout: SECONDS`` or ``# hotsync-critical: yes`` in the first 1 KiB
  sets those per action;
* two implicit steps, as in e-smith: ``generic_template_expand`` at priority 5 (the templates registered
  for the event, plus ``events/<EVENT>/templates2expand/<target path>`` files) and ``adjust-services`` at
  90 (the services registered for the event, and those whose rendered files changed).

Two steps of one name are a clash naming both origins; a plugin whose hook raised becomes a failing step.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hotsync_events.paths import Root
from hotsync_events.types import Action, Template, check_name

__all__ = ["STANDARD_EVENTS", "EventError", "Plan", "Step", "UnknownEvent", "known_events", "plan_event"]

TEMPLATES_STEP = "generic_template_expand"
SERVICES_STEP = "adjust-services"
TEMPLATES_PRIORITY = 5
SERVICES_PRIORITY = 90
_EXEC = re.compile(r"S(\d\d)(.+)")
_HEADER = re.compile(rb"^#\s*hotsync-(timeout|critical):\s*(\S+)", re.M)
_SKIP = ("~", ".swp", ".orig", ".rpmsave", ".rpmnew", ".rpmorig", ".bak")


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


def _collect(pm: Any, db: Any, root: Root) -> tuple[list, dict, list, list[str]]:
    """Actions, templates, services from the plugins; a hook that failed becomes a problem line."""
    from hotsync_events.events.services import ServiceError, collect_services
    from hotsync_events.events.templates import TemplateError, registered_templates
    from hotsync_events.manager import RegistrationError, hook_problem

    with _hook_errors(pm) as errors:
        try:
            actions = pm.registered("hotsync_actions", Action, root=root, db=db, unique=())
            templates = registered_templates(pm, db, root)
            services = collect_services(pm, db, root)
        except (TemplateError, ServiceError, RegistrationError) as exc:
            raise EventError(str(exc)) from None
    return actions, templates, services, [hook_problem(*e) for e in errors]


def known_events(root: Root, db: Any, pm: Any) -> list[str]:
    """Every event a plugin or an events directory defines."""
    actions, templates, services, _ = _collect(pm, db, root)
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
    actions, templates, services, problems = _collect(pm, db, root)
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
        from hotsync_events.events.templates import template_sources

        from hotsync_events.manager import hook_problem

        with _hook_errors(pm) as errors:
            plan.sources = template_sources(pm, root)
        problems += [hook_problem(*e) for e in errors]
        add(Step(TEMPLATES_STEP, TEMPLATES_PRIORITY, "templates", "core", detail=", ".join(t.path for t in tpls)))
    svc_names = sorted({s.name for _, s in services if event in s.events} | {n for t in tpls for n in t.services})
    if svc_names:
        add(Step(SERVICES_STEP, SERVICES_PRIORITY, "services", "core", detail=", ".join(svc_names)))
    for i, problem in enumerate(problems):  # a plugin that could not say what it wants fails the event
        add(Step(f"plugin-error-{i + 1}", 0, "error", problem.split(":")[0], detail=problem))
    steps.sort(key=lambda s: s.sort_key)
    return plan


