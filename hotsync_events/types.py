"""The small frozen objects that registration hooks return. The core validates, sorts and runs them.

Every list the core builds from them is sorted by ``(priority, name)``; nothing depends on the order in
which pluggy calls the plugins.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = ["Action", "ActionContext", "Dump", "DumpContext", "PromoteStep", "SchemaFile", "Service", "SyncPath",
           "Template", "check_name"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]*")
SERVICE_VERBS = frozenset({"start", "stop", "restart", "reload", "enable", "disable"})


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"invalid {kind} name {name!r}: use letters, digits and _ . @ + - "
                         "(starting with a letter or digit)")
    return name


@dataclass(frozen=True)
class ActionContext:
    """What an action's ``run`` gets: the event, its arguments and the host it runs on."""

    event: str
    args: tuple[str, ...]
    root: Any            # hotsync_events.paths.Root
    db: Any              # hotsync_events.configdb.db.ConfigDB of the `configuration` database
    pm: Any = None       # the plugin manager, for actions that ask other plugins
    log: Callable[[str], None] = print


@dataclass(frozen=True)
class Action:
    """One step of an event, run in ``(priority, name)`` order with the events directory's executables.

    ``run(ctx)`` returns None (or 0) on success; a non-zero int, or an exception, fails the action. A
    failed action fails alone unless it is ``critical``: then the actions after it are not run.
    """

    event: str
    name: str
    run: Callable[[ActionContext], Any]
    priority: int = 50
    critical: bool = False
    timeout: float | None = None

    def __post_init__(self) -> None:
        check_name("event", self.event)
        check_name("action", self.name)
        if not isinstance(self.priority, int) or not 0 <= self.priority <= 99:
            raise ValueError(f"action {self.name}: priority {self.priority!r} is not a whole number from 0 to 99")
        if not callable(self.run):
            raise ValueError(f"action {self.name}: run is not callable")


@dataclass(frozen=True)
class Template:
    """A file rendered from the fragments of ``templates/<path>/`` (and templates-custom).

    ``path`` is the target as on the host (``/etc/rsyncd.conf``). ``services`` are restarted by the
    event when the file's content changed.
    """

    path: str
    events: tuple[str, ...] = ()
    owner: str = "root"
    group: str = "root"
    mode: int = 0o644
    services: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.startswith("/") or "/../" in f"{self.path}/":
            raise ValueError(f"template path {self.path!r} must be absolute, without '..'")
        for ev in self.events:
            check_name("event", ev)
        object.__setattr__(self, "events", tuple(self.events))
        object.__setattr__(self, "services", tuple(self.services))


@dataclass(frozen=True)
class Service:
    """A daemon a plugin owns.

    ``unit`` is its systemd unit; ``command`` the argument list the process back-end runs in the
    foreground (``{root}`` in an argument is replaced by the root). ``events`` maps an event to what it
    does to the service: start, stop, restart, reload, enable or disable. ``enabled`` is whether the
    service should run at all on this host now (plugins compute it from the config database); a
    disabled service is stopped by every event that names it. ``writer`` marks a service that writes
    synced data: it is kept stopped while the host is a slave.
    """

    name: str
    unit: str | None = None
    command: tuple[str, ...] | None = None
    events: Mapping[str, str] = field(default_factory=dict)
    enabled: bool = True
    writer: bool = False

    def __post_init__(self) -> None:
        check_name("service", self.name)
        for ev, verb in self.events.items():
            check_name("event", ev)
            if verb not in SERVICE_VERBS:
                raise ValueError(f"service {self.name}: event {ev} does {verb!r}; allowed: "
                                 + ", ".join(sorted(SERVICE_VERBS)))
        object.__setattr__(self, "events", dict(self.events))
        if self.command is not None:
            object.__setattr__(self, "command", tuple(self.command))

    def __hash__(self) -> int:
        return hash(self.name)


@dataclass(frozen=True)
class SchemaFile:
    """A configspec file that extends database ``db`` (see :mod:`hotsync_events.configdb.schema`)."""

    db: str
    path: Path

    def __post_init__(self) -> None:
        check_name("database", self.db)
        object.__setattr__(self, "path", Path(self.path))


@dataclass(frozen=True)
class SyncPath:
    """A path the master pushes to the slave (or, with ``exclude``, keeps out of the push).

    ``path`` is as on the host (``/var/lib/nextcloud/``); a directory is synced with its contents. An
    exclude is an rsync pattern relative to the root of the transfer, or an absolute host path.
    ``realtime`` False keeps the path out of the watchdog notifier (synced by the scheduled run only).
    """

    path: str
    exclude: bool = False
    realtime: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path or "\n" in self.path or "\0" in self.path:
            raise ValueError(f"sync path {self.path!r} must be a non-empty line")
        if not self.exclude and (not self.path.startswith("/") or "/../" in f"{self.path}/"):
            raise ValueError(f"sync path {self.path!r} must be absolute, without '..'")


@dataclass(frozen=True)
class DumpContext:
    """What a dump's ``run`` gets. ``target`` is the file (under the root) to write the dump to."""

    root: Any
    db: Any
    target: Path
    log: Callable[[str], None] = print


@dataclass(frozen=True)
class Dump:
    """A consistent dump the master takes before each push and ships with it.

    ``run(ctx)`` writes ``ctx.target`` (through a temp file, checked, then renamed) or raises; a failed
    dump keeps the last good one and fails the sync. ``path`` is the host path of the dump file, which the
    sync ships; ``restore(ctx)`` loads it on the slave at promote (ctx.target is then the dump to load).
    """

    name: str
    path: str
    run: Callable[[DumpContext], Any]
    restore: Callable[[DumpContext], Any] | None = None
    priority: int = 50

    def __post_init__(self) -> None:
        check_name("dump", self.name)
        if not self.path.startswith("/") or "/../" in f"{self.path}/":
            raise ValueError(f"dump {self.name}: path {self.path!r} must be absolute, without '..'")


@dataclass(frozen=True)
class PromoteStep:
    """One step of ``hotsync-promote`` that turns this slave into the master.

    The promote runs every active plugin's steps after the databases are restored, in
    ``(priority, name)`` order. ``run(ctx)`` gets an :class:`ActionContext` whose ``event`` is
    ``promote`` (no args); it returns None (or 0) on success, and a non-zero int or an exception fails
    the step. A failed step is reported and the promote goes on, unless the step is ``critical``: then
    the steps after it are not run and the promote fails. Steps must be safe to run twice (a killed
    promote is run again). What must happen after ``signal-event post-restore-data`` is an ordinary
    :class:`Action` on that event instead.
    """

    name: str
    run: Callable[[ActionContext], Any]
    priority: int = 50
    critical: bool = False

    def __post_init__(self) -> None:
        check_name("promote step", self.name)
        if not isinstance(self.priority, int) or not 0 <= self.priority <= 99:
            raise ValueError(f"promote step {self.name}: priority {self.priority!r} is not a whole number from 0 to 99")
        if not callable(self.run):
            raise ValueError(f"promote step {self.name}: run is not callable")
