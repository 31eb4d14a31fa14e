"""pytest fixtures for hotsync plugin authors, loaded through the ``pytest11`` entry point ``hotsync``.

Installing hotsync-events makes these fixtures available in every test suite; loading this module costs
nothing and changes nothing (it imports only the standard library; every fixture imports what it needs
when a test asks for it). Tell the fixtures which plugin you test by overriding ``hotsync_test_plugins`` in
your ``conftest.py``::

    import pytest
    import hotsync_myapp

    @pytest.fixture
    def hotsync_test_plugins():
        return [hotsync_myapp]          # modules or objects; ("name", obj) pairs to choose the name

Fixtures:

``hotsync_root``      a throw-away host root (a temp dir); ``HOTSYNC_ROOT`` points at it.
``hotsync_db``        its ``configuration`` database (schema defaults applied, your plugin's schema too).
``hotsync_pm``        a plugin manager holding only ``hotsync_test_plugins`` (no built-ins, no entry points).
``hotsync_event``     ``hotsync_event("myapp-save", "arg")`` signals an event on the root, returns the
                      :class:`~hotsync_events.events.EventResult` (``.ok``, ``.failed``, ``.results``).
``hotsync_two_roots`` a master and a slave root; ``.sync()`` pushes master to slave with the sync's own list
                      builder and rsync options (a local rsync instead of the TLS daemon), ``.promote()``
                      runs the promote steps on the slave.

Helpers for tests: :func:`write_tree`, :func:`local_push`, :func:`promote`, :func:`paths_report`.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import pytest

__all__ = ["TwoRoots", "local_push", "make_pm", "paths_report", "promote", "write_tree"]


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

    Dumps run first (unless ``hotsync databases`` is disabled or *dumps* is False), then the sync's list
    builder makes the include and exclude lists and rsync runs with the push's own options (minus the
    daemon's password file). A failed dump or rsync raises AssertionError with the reason.
    """
    from hotsync_events.sync.lists import build_lists
    from hotsync_events.sync.rsync import push_args
    from hotsync_events.types import DumpContext

    pm.root = master
    db = _open_db(master, pm)
    dumped = sorted(pm.collect("hotsync_dumps", db=db, root=master), key=lambda t: (t[1].priority, t[1].name))
    if dumps and (db.getprop("hotsync", "databases") or "enabled") != "disabled":
        for plugin, d in dumped:
            d.run(DumpContext(root=master, db=db, target=master.join(d.path), log=lambda m: None))
    errors = [e for e in pm.hook_errors if e[1] in ("hotsync_sync_paths", "hotsync_dumps", "hotsync_detect")]
    if errors:
        raise AssertionError("plugins could not say what to ship: " + "; ".join(map(str, errors)))
    lists = build_lists(master, db, pm, [(d.path, f"dump {d.name} (plugin {p})") for p, d in dumped])
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


def promote(pm: Any, root: Any, *, restore_dumps: bool = True) -> list:
    """On the slave *root*: restore the shipped dumps, then run the promote steps in order; returns outcomes."""
    from hotsync_events.promote.steps import run_promote_steps
    from hotsync_events.types import DumpContext

    pm.root = root
    db = _open_db(root, pm)
    if restore_dumps:
        dumped = sorted(pm.collect("hotsync_dumps", db=db, root=root), key=lambda t: (t[1].priority, t[1].name))
        for _plugin, d in dumped:
            if d.restore is not None and root.join(d.path).exists():
                d.restore(DumpContext(root=root, db=db, target=root.join(d.path), log=lambda m: None))
    return run_promote_steps(pm, root, db, log=lambda m: None)


class TwoRoots:
    """A master root and a slave root sharing one plugin manager's plugins."""

    def __init__(self, master: Any, slave: Any, plugins: Iterable[Any]) -> None:
        self.master, self.slave, self.plugins = master, slave, list(plugins)

    def pm(self):
        return make_pm(self.plugins)

    def sync(self, **kw: Any) -> list[str]:
        return local_push(self.master, self.slave, self.pm(), **kw)

    def promote(self, **kw: Any) -> list:
        return promote(self.pm(), self.slave, **kw)


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
    pm.root = hotsync_root
    return pm


@pytest.fixture
def hotsync_db(hotsync_root, hotsync_pm):
    """The root's ``configuration`` database, with the plugins' schemas installed."""
    return _open_db(hotsync_root, hotsync_pm)


@pytest.fixture
def hotsync_event(hotsync_root, hotsync_pm, monkeypatch: pytest.MonkeyPatch):
    """``hotsync_event(name, *args)``: signal an event on the root with the plugins under test."""
    from hotsync_events.events import signal_event

    monkeypatch.setenv("HOTSYNC_SYSLOG", "0")
    monkeypatch.setenv("HOTSYNC_SERVICE_BACKEND", "process")

    def run(event: str, *args: str, timeout: float | None = 60):
        return signal_event(event, args, root=hotsync_root, pm=hotsync_pm, timeout=timeout)
    return run


@pytest.fixture
def hotsync_two_roots(tmp_path: Path, hotsync_test_plugins):
    """A master and a slave root; ``.sync()`` pushes, ``.promote()`` promotes the slave."""
    from hotsync_events.paths import Root

    (tmp_path / "master").mkdir()
    (tmp_path / "slave").mkdir()
    return TwoRoots(Root(tmp_path / "master"), Root(tmp_path / "slave"), hotsync_test_plugins)
