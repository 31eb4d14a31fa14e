"""Shared fixtures: a throw-away root per test, a fresh plugin manager per test, the CLI on PATH.

And one rule for the whole suite: where ``CI`` is set, a test that would be skipped (a missing tool, file
or privilege) fails instead, naming what is missing. A test skipped in CI is a test missing; on a
developer's machine without root a skip stays a skip, its reason printed by ``-ra``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hotsync_events.paths import Root
from hotsync_events.manager import get_plugin_manager

BIN = Path(sys.executable).parent

# booted hosts (a real systemd as PID 1): the fixtures booted and booted_sandbox, for tests marked booted
pytest_plugins = ["booted"]


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _fail_skip_in_ci(report) -> None:
    from golden import in_ci

    if report.skipped and not hasattr(report, "wasxfail") and in_ci():
        report.outcome = "failed"
        report.longrepr = (f"skipped in CI: {_skip_reason(report)} -- CI must run every test: install what is "
                           "missing (make deps) or run as root")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    _fail_skip_in_ci(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield
    _fail_skip_in_ci(report)
    return report


@pytest.fixture
def root(tmp_path, monkeypatch) -> Root:
    """An empty host root; HOTSYNC_ROOT points at it for the test's subprocesses."""
    r = tmp_path / "root"
    r.mkdir()
    monkeypatch.setenv("HOTSYNC_ROOT", str(r))
    return Root(r)


@pytest.fixture
def pm():
    """A fresh plugin manager with the built-in plugins and no third-party entry points."""
    return get_plugin_manager(entrypoints=False)


def command(name: str) -> str:
    """The path of one of our console scripts in the running venv."""
    path = BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


@pytest.fixture
def run():
    """``run("config", "getprop", ...)`` runs one of our commands; returns the CompletedProcess."""
    def _run(cmd: str, *args: str, input: str | None = None, env: dict | None = None, timeout: float = 120,
             check: bool = False) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **(env or {})}
        cp = subprocess.run([command(cmd), *args], input=input, capture_output=True, text=True,
                            env=full_env, timeout=timeout)
        if check and cp.returncode != 0:
            raise AssertionError(f"{cmd} {' '.join(args)} exited {cp.returncode}: {cp.stderr}")
        return cp
    return _run


@pytest.fixture
def pair(tmp_path):
    """A master and a slave root under *tmp_path*, paired as the manual says (sync_pair.Pair); a module that
    needs another kind of pair (with mail, a netns) defines its own ``pair``."""
    from sync_pair import Pair

    p = Pair(tmp_path)
    try:
        yield p.pair()
    finally:
        p.close()


@pytest.fixture
def smtp():
    """A real SMTP receiver (aiosmtpd) on a free loopback port: a sync_pair.Inbox (``.port``, ``.messages``)."""
    from aiosmtpd.controller import Controller
    from sync_pair import Inbox, free_port

    inbox = Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=free_port())
    ctl.start()
    inbox.port = ctl.port
    try:
        yield inbox
    finally:
        ctl.stop()
