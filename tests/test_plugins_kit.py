"""The plugin contract and the author kit: detection, named built-ins, ``hotsync paths`` (golden),
``hotsync plugins`` activity, authors' mistakes refused with names, docs/plugins.md against the hookspecs.
"""
from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path

import pytest

from hotsync_events import hookimpl, hookspecs
from hotsync_events.paths import Root
from hotsync_events.manager import get_plugin_manager
from hotsync_events.promote.steps import PromoteStepError, collect_promote_steps
from hotsync_events.testing import make_pm, write_tree
from hotsync_events.types import Action, PromoteStep, SyncPath

from golden import check_golden

HERE = Path(__file__).parent
DOCS = HERE.parent / "docs" / "plugins.md"


# ------------------------------------------------------------------------------------ fake plugins
class Present:
    @hookimpl
    def hotsync_detect(self, root):
        return root.join("/opt/present").exists()

    @hookimpl
    def hotsync_sync_paths(self, db):
        return [SyncPath("/opt/present/data/")]

    @hookimpl
    def hotsync_promote_steps(self, db):
        return [PromoteStep("present-b", lambda ctx: None, priority=20),
                PromoteStep("present-a", lambda ctx: None, priority=20),
                PromoteStep("present-first", lambda ctx: None, priority=10)]


class NoDetect:
    @hookimpl
    def hotsync_sync_paths(self, db):
        return [SyncPath("/opt/always/")]


def test_detection_drops_everything_of_an_inactive_plugin(tmp_path):
    root = Root(tmp_path)
    pm = make_pm([("present", Present()), ("always", NoDetect())])
    assert pm.collect("hotsync_sync_paths", db=None, root=root) == [("always", SyncPath("/opt/always/"))]
    assert collect_promote_steps(pm, None, root) == []
    write_tree(root, {"/opt/present/": None})
    assert [p for p, _ in pm.collect("hotsync_sync_paths", db=None, root=root)] == ["always", "present"]
    assert [s.name for _, s in collect_promote_steps(pm, None, root)] == ["present-first", "present-a", "present-b"]
    assert pm.detect(root) == {"present": True, "always": True}


def test_detection_that_raises_makes_the_plugin_inactive_and_is_reported(tmp_path):
    class Broken:
        @hookimpl
        def hotsync_detect(self):
            raise OSError("cannot look")

        @hookimpl
        def hotsync_sync_paths(self):
            return [SyncPath("/opt/broken/")]

    pm = make_pm([("broken", Broken())])
    assert pm.collect("hotsync_sync_paths", db=None, root=Root(tmp_path)) == []
    assert ("broken", "hotsync_detect", "OSError: cannot look") in pm.hook_errors


def test_named_builtin_entries(monkeypatch):
    pm = get_plugin_manager(builtins=["samba-audit=hotsync_plugins.samba_audit", "hotsync_plugins.cups"],
                            entrypoints=False, disabled=())
    assert sorted(pm.infos) == ["cups", "samba-audit"]
    assert pm.infos["samba-audit"].module == "hotsync_plugins.samba_audit" and pm.infos["samba-audit"].error is None


# ------------------------------------------------------------------------------------ authors' mistakes
def test_misspelt_hook_refused_at_load_naming_plugin_and_hook():
    class Typo:
        @hookimpl
        def hotsync_sync_path(self, db):
            return []

    with pytest.raises(pytest.UsageError, match=r"hotsync plugin typo was refused: .*no such hook hotsync_sync_path"):
        make_pm([("typo", Typo())])


def test_wrong_argument_refused_at_load_naming_plugin_and_hook():
    class WrongArgs:
        @hookimpl
        def hotsync_promote_steps(self, database):
            return []

    pm = get_plugin_manager(builtins=False, entrypoints=False, disabled=())
    info = pm.add_plugin(WrongArgs(), "wrongargs")
    assert info.error and "wrongargs" in info.error and "hotsync_promote_steps" in info.error
    assert "database" in info.error


def test_path_outside_the_root_refused_naming_the_plugin(tmp_path, run):
    class Escape:
        @hookimpl
        def hotsync_sync_paths(self, db):
            return [SyncPath("/var/lib/../../../etc/shadow")]

    pm = make_pm([("escape", Escape())])
    root = Root(tmp_path)
    assert pm.collect("hotsync_sync_paths", db=None, root=root) == []
    [(plugin, hook, error)] = pm.hook_errors
    assert (plugin, hook) == ("escape", "hotsync_sync_paths") and "'..'" in error
    from hotsync_events.testing import paths_report

    report = paths_report(root, pm)
    assert any("plugin escape" in p and "hotsync_sync_paths" in p for p in report["problems"])


def test_action_name_clash_refused_naming_both_plugins(tmp_path):
    from hotsync_events.configdb import open_db
    from hotsync_events.events import EventError, plan_event

    def maker(tag):
        class P:
            @hookimpl
            def hotsync_actions(self, db):
                return [Action(event="post-restore-data", name="restore-things", run=lambda ctx: None)]
        return P()

    pm = make_pm([("alpha", maker("a")), ("beta", maker("b"))])
    root = Root(tmp_path)
    with pytest.raises(EventError, match=r"restore-things.*alpha.*beta"):
        plan_event("post-restore-data", root=root, db=open_db("configuration", root), pm=pm)


def test_promote_step_clash_refused_naming_both_plugins(tmp_path):
    def maker():
        class P:
            @hookimpl
            def hotsync_promote_steps(self, db):
                return [PromoteStep("start-app", lambda ctx: None)]
        return P()

    pm = make_pm([("alpha", maker()), ("beta", maker())])
    with pytest.raises(PromoteStepError, match="plugin alpha and plugin beta"):
        collect_promote_steps(pm, None, Root(tmp_path))


def test_critical_promote_step_stops_the_later_ones(tmp_path):
    from hotsync_events.promote.steps import run_promote_steps

    def boom(ctx):
        raise RuntimeError("disk full")

    class P:
        @hookimpl
        def hotsync_promote_steps(self, db):
            return [PromoteStep("a-ok", lambda ctx: None, priority=10), PromoteStep("b-fails", boom, priority=20),
                    PromoteStep("c-critical", lambda ctx: 3, priority=30, critical=True),
                    PromoteStep("d-never", lambda ctx: None, priority=40)]

    out = run_promote_steps(make_pm([("p", P())]), Root(tmp_path), None, log=lambda m: None)
    assert [(o.name, o.status) for o in out] == [("a-ok", "success"), ("b-fails", "failed"),
                                                 ("c-critical", "failed"), ("d-never", "skipped")]
    assert out[1].error == "RuntimeError: disk full"


# ------------------------------------------------------------------------------------ CLIs
def every_package_tree(root: Root) -> None:
    from test_plugins_packages import PACKAGES

    for spec in PACKAGES.values():
        write_tree(root, {**spec["activate"], **spec["tree"]})
    write_tree(root, {"/var/lib/mysql/": None, "/var/lib/postgresql/": None,
                      "/var/opt/rh/rh-mariadb105/lib/mysql/": None, "/var/opt/rh/rh-postgresql12/lib/pgsql/data/": None,
                      "/etc/hotsync/include.d/custom.include": "# the sysadmin's own\n/srv/projects\n",
                      "/etc/hotsync/exclude.d/custom.exclude": "*.iso\n"})


def test_paths_json_golden_every_package(root, run):
    """``hotsync paths --json`` on a host with every supported package (HOTSYNC_UPDATE_GOLDEN=1 rewrites it)."""
    every_package_tree(root)
    cp = run("hotsync", "paths", "--json", env={"HOTSYNC_DISABLE_PLUGINS": "hotsync"})
    assert cp.returncode == 0, cp.stderr + cp.stdout
    report = json.loads(cp.stdout)
    builtin = {i.name for i in get_plugin_manager(entrypoints=False, disabled=()).plugin_infos()} - {"hotsync"}
    report["plugins"] = {k: [n for n in v if n in builtin] for k, v in report["plugins"].items()}
    assert report["plugins"]["inactive"] == [] and len(report["plugins"]["active"]) == 19
    assert str(root.path) not in cp.stdout
    check_golden("paths-every-package.json", json.dumps(report, indent=2, sort_keys=True) + "\n")


def test_paths_shows_who_asked_and_inactive(root, run):
    write_tree(root, {"/etc/dnsmasq.conf": "x", "/etc/hotsync/include.d/a.include": "/srv/a\n"})
    cp = run("hotsync", "paths", env={"HOTSYNC_DISABLE_PLUGINS": "hotsync"})
    assert cp.returncode == 0, cp.stderr
    assert re.search(r"/var/lib/dnsmasq/dnsmasq.leases\s+plugin dnsmasq", cp.stdout)
    assert re.search(r"/srv/a\s+/etc/hotsync/include.d/a.include:1", cp.stdout)
    assert "inactive plugins: " in cp.stdout and "nextcloud" in cp.stdout.split("inactive plugins: ")[1]


def test_plugins_json_says_active(root, run):
    write_tree(root, {"/usr/share/nextcloud/": None})
    data = json.loads(run("hotsync", "plugins", "--json").stdout)
    active = {p["name"]: p["active"] for p in data["plugins"]}
    assert active["nextcloud"] is True and active["mattermost"] is False
    assert "nextcloud" in run("hotsync", "plugins").stdout


# ------------------------------------------------------------------------------------ docs
def hookspec_signatures() -> dict[str, list[str]]:
    return {name: list(inspect.signature(fn).parameters)
            for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("hotsync_")}


def test_docs_reference_every_hook_with_its_arguments():
    """Like datasette's test_docs: each hook has a ``### name(args)`` heading in docs/plugins.md, and back."""
    text = DOCS.read_text()
    headings = dict(re.findall(r"^### (hotsync_\w+)\(([^)]*)\)\s*$", text, re.M))
    specs = hookspec_signatures()
    assert sorted(headings) == sorted(specs), "docs/plugins.md and hookspecs.py list different hooks"
    for name, args in specs.items():
        assert [a.strip() for a in headings[name].split(",") if a.strip()] == args, name


def test_docs_tutorial_plugin_is_short_and_loads(tmp_path):
    """The tutorial's plugin (the first python block) is under 40 lines and loads without errors."""
    code = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.S).group(1)
    assert len(code.strip().splitlines()) < 40
    mod = tmp_path / "hotsync_tutorial.py"
    mod.write_text(code)
    import importlib.util

    spec = importlib.util.spec_from_file_location("hotsync_tutorial", mod)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    make_pm([("tutorial", module)])


# ------------------------------------------------------------------------------------ the pytest11 fixtures
class Notes:
    """A tiny plugin for the fixtures' own test: one path, one post-restore action, one promote step."""

    @hookimpl
    def hotsync_detect(self, root):
        return root.join("/etc/notes.conf").exists()

    @hookimpl
    def hotsync_sync_paths(self, db):
        return [SyncPath("/var/lib/notes/"), SyncPath("/var/lib/notes/cache/", exclude=True)]

    @hookimpl
    def hotsync_actions(self, db):
        def mark(ctx):
            ctx.root.join("/var/lib/notes/marked").write_text(ctx.event)
        return [Action(event="post-restore-data", name="notes-mark", run=mark)]

    @hookimpl
    def hotsync_promote_steps(self, db):
        return [PromoteStep("notes-clear-cache", lambda ctx: None)]


@pytest.fixture
def hotsync_test_plugins():
    return [("notes", Notes())]


def test_fixtures_root_pm_db(hotsync_root, hotsync_pm, hotsync_db):
    assert os.environ["HOTSYNC_ROOT"] == str(hotsync_root.path)
    assert sorted(hotsync_pm.infos) == ["notes"] and hotsync_pm.root == hotsync_root
    assert hotsync_db.path.is_relative_to(hotsync_root.path)


def test_fixture_event(hotsync_root, hotsync_event):
    write_tree(hotsync_root, {"/etc/notes.conf": "", "/var/lib/notes/": None})
    result = hotsync_event("post-restore-data")
    assert result.ok and hotsync_root.join("/var/lib/notes/marked").read_text() == "post-restore-data"


@pytest.mark.skipif(__import__("shutil").which("rsync") is None, reason="rsync is not installed")
def test_fixture_two_roots(hotsync_two_roots):
    write_tree(hotsync_two_roots.master, {"/etc/notes.conf": "", "/var/lib/notes/a": "a", "/var/lib/notes/cache/c": "c"})
    assert hotsync_two_roots.sync() == ["/var/lib/notes"]
    assert hotsync_two_roots.slave.join("/var/lib/notes/a").read_text() == "a"
    assert not hotsync_two_roots.slave.join("/var/lib/notes/cache").exists()
    write_tree(hotsync_two_roots.slave, {"/etc/notes.conf": ""})
    assert [(o.name, o.status) for o in hotsync_two_roots.promote()] == [("notes-clear-cache", "success")]


def test_pytest_plugin_is_registered_and_light():
    from importlib.metadata import entry_points
    import subprocess
    import sys

    assert [ep.value for ep in entry_points(group="pytest11") if ep.name == "hotsync"] == ["hotsync_events.testing"]
    code = ("import sys, hotsync_events.testing; "
            "print(sorted(m for m in sys.modules if m.startswith(('hotsync_', 'mako', 'configobj'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['hotsync_events', 'hotsync_events.testing']"
