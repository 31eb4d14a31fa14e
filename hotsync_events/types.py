"""The small frozen objects that registration hooks return. The core validates, sorts and runs them.

Every list the core builds from them is sorted by ``(priority, name)``; nothing depends on the order in
which pluggy calls the plugins.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hotsync_events.configdb import ConfigDB
    from hotsync_events.paths import Root

__all__ = ["Action", "ActionContext", "Dump", "DumpContext", "HealthCheck", "PromoteStep", "Replica", "SchemaFile",
           "Service", "SyncPath", "Template", "check_name", "run_failure"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]*")
SERVICE_VERBS = frozenset({"start", "stop", "restart", "reload", "enable", "disable"})


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"invalid {kind} name {name!r}: use letters, digits and _ . @ + - "
                         "(starting with a letter or digit)")
    return name


def run_failure(rv: Any) -> str | None:
    """The one success rule of every ``run`` (and ``restore``) callable a plugin gives: an action's, a
    promote step's, a dump's. It succeeds when it returns None, True or 0 without raising; any other value
    (False, a non-zero number, a string...) fails it, and so does an exception (the caller catches that).
    Returns None on success, else why it failed (``returned 3``)."""
    if rv is None or rv is True or (type(rv) is int and rv == 0):
        return None
    return f"returned {rv!r}"


@dataclass(frozen=True)
class ActionContext:
    """What an action's ``run`` (and a promote step's) gets: the event, its arguments and the host it runs on."""

    event: str                       #: the event (``promote`` for a promote step)
    args: tuple[str, ...]            #: the event's arguments (``signal-event EVENT ARGS...``)
    root: Root                       #: the host this runs on: every path is ``root.join("/etc/...")``
    db: ConfigDB                     #: the ``configuration`` database; write it with ``db.setprop(...)``
    pm: Any = None                   #: the plugin manager, for an action that asks the other plugins
    log: Callable[[str], None] = print   #: a line for the event's log (an action's output is captured too)
    control: Callable[[str, str], str] | None = field(default=None, repr=False, compare=False)

    def service(self, name: str, verb: str) -> str:
        """Start, stop, restart, reload, enable or disable the service *name* that a plugin declares
        (``hotsync_services``) on this host, through the host's back-end (systemd on a real host, a process
        under any other root). Returns what was done; raises ``ServiceError`` saying why it could not."""
        if self.control is None:
            raise RuntimeError(f"no service control here: {verb} {name} is for an event's action or a promote step")
        return self.control(name, verb)


@dataclass(frozen=True)
class Action:
    """One step of an event, run in ``(priority, name)`` order with the events directory's executables.

    ``run(ctx)`` succeeds as every ``run`` does (:func:`run_failure`: None, True or 0, nothing raised). A
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
    """What a dump's ``run`` and ``restore`` get.

    For ``run`` (on the master, before each push), ``target`` is a fresh temp file beside the dump's place,
    not created yet: write the dump there. The core renames it over the last good dump, fsynced and 0600,
    only when ``run`` succeeded; a failed ``run`` leaves the last good dump as it was. For ``restore`` (on
    the slave, at promote), ``target`` is the shipped dump to load.
    """

    root: Root                       #: the host this runs on (look only under it)
    db: ConfigDB                     #: its ``configuration`` database (read it)
    target: Path                     #: the file to write (run) or to load (restore), a real path
    log: Callable[[str], None] = print   #: progress lines, shown by ``hotsync sync -v`` and the promote


@dataclass(frozen=True)
class Dump:
    """A consistent dump the master takes before each push and ships with it.

    ``run(ctx)`` writes ``ctx.target`` (through a temp file, checked, then renamed) or raises; a failed
    dump keeps the last good one and fails the sync. ``path`` is the host path of the dump file, which the
    sync ships; ``restore(ctx)`` loads it on the slave at promote (ctx.target is then the dump to load).
    ``at_promote`` False: a logical backup only (of a server that runs as a streaming replica): shipped like
    any dump, loaded by ``hotsync restore-databases`` when a person asks, never by the promote.
    """

    name: str
    path: str
    run: Callable[[DumpContext], Any]
    restore: Callable[[DumpContext], Any] | None = None
    priority: int = 50
    at_promote: bool = True

    def __post_init__(self) -> None:
        check_name("dump", self.name)
        if not self.path.startswith("/") or "/../" in f"{self.path}/":
            raise ValueError(f"dump {self.name}: path {self.path!r} must be absolute, without '..'")


@dataclass(frozen=True)
class Replica:
    """A database server this plugin runs as a streaming replica of the master's, instead of a dump.

    ``engine`` implements :class:`hotsync_events.dbkit.replica.ReplicationEngine` (the kit's MariaDB and
    PostgreSQL engines do); the core knows no engine and calls only ``status`` (slave) or
    ``master_status`` (master) for ``hotsync status``, and ``promote`` at ``hotsync-promote`` (the takeover
    position goes into the promote's journal). ``link`` is the channel as this host sees it
    (:class:`hotsync_events.dbkit.replica.Link`); None while the pair is not configured (the status then
    asks the local server only). ``promote_timeout``: seconds the promote waits for the replay to catch up.
    ``master_link``: on a slave, the channel once it is the master (the old master its replica); after the
    promote the core runs ``engine.prepare_master(master_link)`` so the old master can be re-paired as its
    replica (None: nothing prepared).
    """

    name: str
    engine: Any
    link: Any = None
    promote_timeout: float = 60.0
    priority: int = 50
    master_link: Any = None
    key: str = ""               # the configuration key that describes the server (named in the messages)

    def __post_init__(self) -> None:
        check_name("replica", self.name)


@dataclass(frozen=True)
class PromoteStep:
    """One step of ``hotsync-promote`` that turns this slave into the master.

    The promote runs every active plugin's steps after the databases are restored, in
    ``(priority, name)`` order. ``run(ctx)`` gets an :class:`ActionContext` whose ``event`` is
    ``promote`` (no args); it succeeds as every ``run`` does (:func:`run_failure`: None, True or 0, nothing
    raised). A failed step is reported and the promote goes on, unless the step is ``critical``: then
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


@dataclass(frozen=True)
class HealthCheck:
    """One way to tell that this plugin's application works on a host that just took over.

    ``hotsync drill`` runs every active plugin's checks (and the core's: each dump restored, the
    configuration database valid, the services up) after a promote on a throw-away overlay of the slave's
    copy, in ``(priority, name)`` order. ``run(ctx)`` gets an :class:`ActionContext` whose ``event`` is
    ``drill``; it passes as every ``run`` does (:func:`run_failure`: None, True or 0, nothing raised) and
    may return a string to fail with that reason. A check that has not returned after ``timeout`` seconds
    fails (it runs in a child process, which is killed). A check answers a question (a port answers, a
    query returns rows, a file parses, a command exits 0); it changes nothing.
    """

    name: str
    run: Callable[[ActionContext], Any]
    timeout: float = 30.0
    priority: int = 50

    def __post_init__(self) -> None:
        check_name("health check", self.name)
        if not isinstance(self.priority, int) or not 0 <= self.priority <= 99:
            raise ValueError(f"health check {self.name}: priority {self.priority!r} is not a whole number from 0 to 99")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or not 0 < self.timeout <= 3600:
            raise ValueError(f"health check {self.name}: timeout {self.timeout!r} is not a number of seconds "
                             "above 0 and at most 3600")
        if not callable(self.run):
            raise ValueError(f"health check {self.name}: run is not callable")
