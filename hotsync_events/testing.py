"""pytest fixtures for hotsync plugin authors, loaded through the ``pytest11`` entry point ``hotsync``.

Install ``hotsync-events[test]`` (it brings pytest) and these fixtures are available in your test suite;
loading this module costs nothing and changes nothing (every fixture imports what it needs when a test asks
for it). Tell the fixtures which plugin you test by overriding ``hotsync_test_plugins`` in your
``conftest.py``::

    import pytest
    import hotsync_myapp

    @pytest.fixture
    def hotsync_test_plugins():
        return [hotsync_myapp]          # modules or objects; ("name", obj) pairs to choose the name

Fixtures (each stops what it started: services started by an event or a promote are stopped at the end):

``hotsync_root``      a throw-away host root (a :class:`~hotsync_events.paths.Root` in a temp dir);
                      ``HOTSYNC_ROOT`` points at it.
``hotsync_db``        its ``configuration`` database (schema defaults applied, your plugin's schema too).
``hotsync_pm``        a plugin manager holding only ``hotsync_test_plugins`` (no built-ins, no entry points).
``hotsync_event``     ``hotsync_event("myapp-save", "arg")`` signals an event on the root, returns the
                      :class:`~hotsync_events.events.EventResult` (``.ok``, ``.failed``, ``.results``).
``hotsync_two_roots`` a :class:`TwoRoots`: a master and a slave root. ``.sync()`` pushes master to slave
                      as ``hotsync sync`` does (the core's dumps, lists and rsync options; a local rsync
                      instead of the TLS daemon), ``.promote()`` does what ``hotsync-promote`` does with
                      the plugins (restore the dumps, run the promote steps, bring the services up on the
                      new master), ``.master_db`` / ``.slave_db`` are their databases, ``.services`` the
                      service calls made (``[("myapp", "start"), ...]``).

Helpers for tests: :func:`write_tree`, :func:`local_push`, :func:`promote`, :func:`paths_report`,
:func:`make_pm`. A plugin's failure inside them (a dump, a restore, a hook) is an AssertionError naming the
plugin and the hook or dump.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

__all__ = ["RecordingServices", "TwoRoots", "local_push", "make_pm", "paths_report", "promote", "write_tree"]


# ------------------------------------------------------------------------------------------ helpers
def write_tree(root: Any, files: Mapping[str, str | bytes | None]) -> None:
    """Create host paths under *root*: a value is the file's content; None makes a directory."""
    for path, content in files.items():
        target = root.join(path)
        if content is None or path.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode())


def make_pm(plugins: Iterable[Any] = (), *, builtins: bool | Iterable[str] = False):
    """A plugin manager with *plugins* (modules/objects or ``(name, obj)``); refuses a plugin that fails to load.

    A misspelt hook or a wrong argument fails here with the plugin's and the hook's name, as it would
    in ``hotsync plugins``.
    """
    from hotsync_events.manager import get_plugin_manager

    pm = get_plugin_manager(builtins=builtins, entrypoints=False, disabled=())
    for p in plugins:
        name, obj = p if isinstance(p, tuple) else (getattr(p, "__name__", type(p).__name__).rpartition(".")[2], p)
        info = pm.add_plugin(obj, name, origin="test")
        if info is not None and info.error:
            raise pytest.UsageError(f"hotsync plugin {name} was refused: {info.error}")
    return pm


def _open_db(root: Any, pm: Any):
    from hotsync_events.configdb import open_db
    from hotsync_events.manager import install_schemas

    problems = install_schemas(pm, root)
    if problems:
        raise AssertionError("plugin schema problems: " + "; ".join(problems))
    return open_db("configuration", root)


def paths_report(root: Any, pm: Any) -> dict:
    """What ``hotsync paths --json`` says for *root* with the plugins of *pm*."""
    from hotsync_events.sync.shipping import shipping_plan as plan

    return plan(root, pm=pm, db=_open_db(root, pm))


def local_push(master: Any, slave: Any, pm: Any, *, dumps: bool = True, rsync: str = "rsync") -> list[str]:
    """Push *master* to *slave* as ``hotsync sync`` would, with a local rsync; returns the shipped includes.

    The dumps are taken by the core's one dump path (unless ``hotsync databases`` is disabled or *dumps* is
    False): ``ctx.target`` a temp file renamed over the last good dump, 0600. Then the sync's list builder
    makes the include and exclude lists and rsync runs with the push's own options (minus the daemon's
    password file). A failed dump, hook or rsync raises AssertionError naming the plugin and the reason.
    """
    from hotsync_events.sync.databases import collect_dumps, databases_enabled, take_dumps
    from hotsync_events.sync.lists import build_lists
    from hotsync_events.sync.rsync import push_args

    db = _open_db(master, pm)
    dumped = collect_dumps(pm, db, master)
    if dumps and databases_enabled(db):
        errors = take_dumps(master, db, pm, log=lambda m: None, dumps=dumped)
        if errors:
            raise AssertionError("dumps failed: " + "; ".join(errors))
    _no_hook_errors(pm, ("hotsync_sync_paths", "hotsync_dumps", "hotsync_detect"), "could not say what to ship")
    lists = build_lists(master, db, pm, [(d.path, f"dump {d.name} (plugin {p})") for p, d in dumped])
    _no_hook_errors(pm, ("hotsync_sync_paths",), "could not say what to ship")
    sources = [f"{master.path}/./{p.lstrip('/')}" for p in lists.includes if os.path.lexists(master.join(p))]
    if not sources:
        return []
    with tempfile.NamedTemporaryFile("w", suffix=".exclude", delete=False) as fh:
        fh.write(lists.exclude_file_text())
    try:
        args = push_args(sources=sources, exclude_file=fh.name, password_file="", timeout=120, rsync=rsync)
        args = [a for a in args[:-1] if not a.startswith("--password-file=")] + [f"{slave.path}/"]
        cp = subprocess.run(args, capture_output=True, text=True, timeout=300)
    finally:
        os.unlink(fh.name)
    if cp.returncode != 0:
        raise AssertionError(f"rsync exited {cp.returncode}: {cp.stderr.strip()[-2000:]}")
    return lists.includes


def _no_hook_errors(pm: Any, hooks: Iterable[str], what: str) -> None:
    from hotsync_events.manager import hook_problem

    errors = [hook_problem(*e) for e in pm.hook_errors if e[1] in hooks]
    if errors:
        raise AssertionError(f"plugins {what}: " + "; ".join(errors))


class RecordingServices:
    """A service back-end that runs nothing: it records each call (``calls``) and the state asked for.

    :class:`TwoRoots` uses it by default, so a plugin's services (real daemons on a real host) need not exist
    on the test machine; ``TwoRoots(..., services="process")`` runs their ``command`` instead."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.running: set[str] = set()

    def status(self, svc: Any) -> Any:
        from hotsync_events.events.services import ServiceState

        up = svc.name in self.running
        return ServiceState(svc.name, up, None, "running (recorded)" if up else "stopped (recorded)")

    def _verb(self, verb: str, svc: Any) -> str:
        self.calls.append((svc.name, verb))
        if verb in ("start", "restart", "reload"):
            self.running.add(svc.name)
        elif verb == "stop":
            self.running.discard(svc.name)
        return f"{svc.name}: {verb} (recorded)"

    def __getattr__(self, verb: str) -> Any:
        if verb in ("start", "stop", "restart", "reload", "enable", "disable"):
            return lambda svc: self._verb(verb, svc)
        raise AttributeError(verb)


def promote(pm: Any, root: Any, *, restore_dumps: bool = True, services: Any = None,
            event: str = "nethserver-hotsync-save") -> list:
    """On the slave *root*, what ``hotsync-promote`` does with the plugins: restore the shipped dumps (the
    core's restore), run the promote steps in order (``ctx.service`` works), then bring the services up as
    the new master's *event* does. Returns the steps' outcomes; a failed restore or a failed service is an
    AssertionError naming the dump or the service. *services* is the back-end (``"process"``, a
    :class:`RecordingServices`, default: a fresh recording one)."""
    from hotsync_events.events.services import ServiceManager, collect_services
    from hotsync_events.promote.steps import run_promote_steps
    from hotsync_events.sync.databases import plan, restore_all

    db = _open_db(root, pm)
    if restore_dumps:
        errors: list[str] = []
        restore_all(root, plan(root, pm=pm, db=db), db=db, log=lambda m: None, err=errors.append)
        if errors:
            raise AssertionError("restores failed: " + "; ".join(errors))
    mgr = ServiceManager(root, collect_services(pm, db, root), backend=services or RecordingServices())
    outcomes = run_promote_steps(pm, root, db, log=lambda m: None, control=mgr.do)
    db.reload()
    with db.transaction() as txn:       # the new master's role, as the promote's role phase writes it
        from hotsync_events.configdb.format import Record

        rec = txn.record("hotsync") or Record("configuration")
        txn.put("hotsync", Record(rec.type, {**rec.props, "role": "master", "SlaveHost": ""}))
    _, failed = mgr.adjust(event)
    if failed:
        raise AssertionError(f"services failed on the new master: {', '.join(failed)}")
    return outcomes


def _stop_services(root: Any, pm: Any) -> None:
    """Stop what the process back-end runs for the plugins' services under *root* (a fixture's teardown)."""
    from hotsync_events.configdb import open_db
    from hotsync_events.events.services import ProcessBackend, collect_services

    try:
        db = open_db("configuration", root, validate=False, create=False)
        declared = collect_services(pm, db, root)
    except Exception:
        return
    backend = ProcessBackend(root)
    for _plugin, svc in declared:
        if svc.command and backend.status(svc).running:
            backend.stop(svc)


class TwoRoots:
    """A master root and a slave root sharing one plugin manager's plugins."""

    def __init__(self, master: Any, slave: Any, plugins: Iterable[Any], *, services: Any = None) -> None:
        self.master, self.slave, self.plugins = master, slave, list(plugins)
        self.backend = services if services is not None else RecordingServices()

    def pm(self) -> Any:
        return make_pm(self.plugins)

    @property
    def master_db(self) -> Any:
        return _open_db(self.master, self.pm())

    @property
    def slave_db(self) -> Any:
        return _open_db(self.slave, self.pm())

    @property
    def services(self) -> list[tuple[str, str]]:
        """The service calls the promote made (recording back-end): ``[(name, verb), ...]``."""
        return list(getattr(self.backend, "calls", []))

    def sync(self, **kw: Any) -> list[str]:
        return local_push(self.master, self.slave, self.pm(), **kw)

    def promote(self, **kw: Any) -> list:
        return promote(self.pm(), self.slave, services=self.backend, **kw)

    def close(self) -> None:
        for root in (self.master, self.slave):
            _stop_services(root, self.pm())


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture
def hotsync_test_plugins() -> list:
    """The plugins under test: override this fixture in your conftest.py."""
    return []


@pytest.fixture
def hotsync_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A throw-away host root; ``HOTSYNC_ROOT`` points at it for the test and its subprocesses."""
    from hotsync_events.paths import Root

    path = tmp_path / "root"
    path.mkdir()
    monkeypatch.setenv("HOTSYNC_ROOT", str(path))
    return Root(path)


@pytest.fixture
def hotsync_pm(hotsync_test_plugins, hotsync_root):
    """A plugin manager holding only the plugins under test, looking at ``hotsync_root``."""
    pm = make_pm(hotsync_test_plugins)
    pm.root = hotsync_root      # hooks called without a root look here
    return pm


@pytest.fixture
def hotsync_db(hotsync_root, hotsync_pm):
    """The root's ``configuration`` database, with the plugins' schemas installed."""
    return _open_db(hotsync_root, hotsync_pm)


@pytest.fixture
def hotsync_event(hotsync_root, hotsync_pm, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``hotsync_event(name, *args)``: signal an event on the root with the plugins under test. The services
    it starts (process back-end) are stopped when the test ends."""
    from hotsync_events.events import signal_event

    monkeypatch.setenv("HOTSYNC_SYSLOG", "0")
    monkeypatch.setenv("HOTSYNC_SERVICE_BACKEND", "process")

    def run(event: str, *args: str, timeout: float | None = 60):
        return signal_event(event, args, root=hotsync_root, pm=hotsync_pm, timeout=timeout)
    yield run
    _stop_services(hotsync_root, hotsync_pm)


@pytest.fixture
def hotsync_two_roots(tmp_path: Path, hotsync_test_plugins) -> Iterator[TwoRoots]:
    """A master and a slave root (:class:`TwoRoots`); ``.sync()`` pushes, ``.promote()`` promotes the slave."""
    from hotsync_events.paths import Root

    (tmp_path / "master").mkdir()
    (tmp_path / "slave").mkdir()
    two = TwoRoots(Root(tmp_path / "master"), Root(tmp_path / "slave"), hotsync_test_plugins)
    yield two
    two.close()
