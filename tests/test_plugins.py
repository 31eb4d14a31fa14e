"""The plugin manager: broken plugins, name clashes, the blocklist, bad hooks, entry points, plugin schemas."""
from __future__ import annotations

import json
import os
import sys
import textwrap
import types

import pytest

from hotsync_events import hookimpl
from hotsync_events.manager import PluginClash, get_plugin_manager, install_schemas
from hotsync_events.types import SchemaFile


def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(mod, k, v)
    return mod


def _schema_hook(path):
    @hookimpl
    def hotsync_config_schema():
        return [SchemaFile("configuration", path)]
    return hotsync_config_schema


def _empty_pm(**kw):
    return get_plugin_manager(builtins=False, entrypoints=False, **kw)


# --------------------------------------------------------------------------------------------- manager
def test_each_test_gets_a_fresh_manager(pm):
    assert pm.get_plugin("probe-plugin") is None
    pm.add_plugin(_module("probe_plugin"), "probe-plugin")
    assert _empty_pm().get_plugin("probe-plugin") is None
    assert get_plugin_manager(entrypoints=False).get_plugin("probe-plugin") is None


def test_builtin_plugins_load_without_errors(pm):
    broken = {i.name: i.error for i in pm.plugin_infos() if i.error}
    assert broken == {}


def test_broken_plugin_is_reported_by_name_and_skipped(tmp_path, monkeypatch):
    (tmp_path / "hs_broken_mod.py").write_text("raise ImportError('needs libfoo')\n")
    (tmp_path / "hs_good_mod.py").write_text(textwrap.dedent("""
        from hotsync_events import hookimpl
        @hookimpl
        def hotsync_sync_paths(db):
            return []
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = get_plugin_manager(builtins=["hs_broken_mod", "goodone=hs_good_mod"], entrypoints=False)
    infos = {i.name: i for i in pm.plugin_infos()}
    assert infos["hs_broken_mod"].error == "ImportError: needs libfoo"
    assert pm.get_plugin("hs_broken_mod") is None
    assert infos["goodone"].error is None and infos["goodone"].hooks == ["hotsync_sync_paths"]


def test_two_plugins_with_one_name_stop_start_up_naming_both(pm):
    pm.add_plugin(_module("first_mod"), "twin", origin="dist-one", module="first_mod")
    with pytest.raises(PluginClash) as exc:
        pm.add_plugin(_module("second_mod"), "twin", origin="dist-two", module="second_mod")
    msg = str(exc.value)
    assert "twin" in msg and "dist-one (first_mod)" in msg and "dist-two (second_mod)" in msg


def test_disabled_plugins_are_blocked(monkeypatch):
    monkeypatch.setenv("HOTSYNC_DISABLE_PLUGINS", "mysql, postgresql")
    pm = get_plugin_manager(entrypoints=False)
    infos = {i.name: i for i in pm.plugin_infos()}
    assert infos["mysql"].blocked and infos["postgresql"].blocked
    assert pm.get_plugin("mysql") is None and pm.get_plugin("postgresql") is None
    assert all(name not in ("mysql", "postgresql") for name, _ in pm.collect("hotsync_dumps", db=None))
    pm = _empty_pm(disabled=["myplug"])
    info = pm.add_plugin(_module("myplug_mod", hotsync_sync_paths=hookimpl(lambda db: [])), "myplug")
    assert info.blocked and pm.get_plugin("myplug") is None


def test_misspelt_hook_is_refused_naming_the_hook():
    pm = _empty_pm()

    @hookimpl
    def hotsync_sync_pahts(db):
        return []

    info = pm.add_plugin(_module("typo_mod", hotsync_sync_pahts=hotsync_sync_pahts), "typo")
    assert info.name == "typo" and "no such hook hotsync_sync_pahts" in info.error
    assert "hotsync_sync_paths" in info.error          # the known hooks are listed
    assert pm.get_plugin("typo") is None


def test_hook_with_wrong_arguments_is_refused_and_keeps_no_hook():
    pm = _empty_pm()

    @hookimpl
    def hotsync_sync_paths(db, colour):
        return []

    spec = _schema_hook("/nonexistent.spec")   # a good hook, registered before the bad one by pluggy
    info = pm.add_plugin(_module("args_mod", hotsync_config_schema=spec, hotsync_sync_paths=hotsync_sync_paths),
                         "badargs")
    assert "badargs" in info.error and "hotsync_sync_paths" in info.error and "colour" in info.error
    assert pm.get_plugin("badargs") is None
    assert pm.collect("hotsync_config_schema") == []


def test_a_raising_hook_fails_alone(pm, root):
    def boom(db):
        raise RuntimeError("kaput")

    pm.add_plugin(_module("boom_mod", hotsync_sync_paths=hookimpl(boom)), "boom")
    items = pm.collect("hotsync_sync_paths", db=None, root=root)
    assert all(name != "boom" for name, _ in items)
    assert ("boom", "hotsync_sync_paths", "RuntimeError: kaput") in pm.hook_errors


def test_plugin_schema_is_installed_under_the_root_and_validates(root, tmp_path):
    spec = tmp_path / "colour.spec"
    spec.write_text("[myapp]\n__type__ = service\n# The colour.\ncolour = option('red', 'green', default='red')\n")
    pm = _empty_pm()
    pm.add_plugin(_module("colour_mod", hotsync_config_schema=_schema_hook(spec)), "colour")
    assert install_schemas(pm, root) == []
    installed = root.state_dir / "schema/configuration/colour.spec"
    assert installed.read_text() == spec.read_text()
    from hotsync_events.configdb import schema
    from hotsync_events.configdb import open_db

    db = open_db("configuration", root)
    schema.apply_defaults(db, schema.load(root, "configuration"))
    assert db.getprop("myapp", "colour") == "red"
    with pytest.raises(schema.InvalidValue, match=r"myapp colour='purple'.*one of red, green"):
        db.setprop("myapp", {"colour": "purple"})
    # gone plugin, gone schema
    assert install_schemas(_empty_pm(), root) == []
    assert not installed.exists()


def test_schema_clash_names_both_plugins(root, tmp_path):
    a, b = tmp_path / "a.spec", tmp_path / "b.spec"
    a.write_text("[hotsync]\nflavour = string(default='a')\n")
    b.write_text("[hotsync]\nflavour = integer(default=1)\n")
    pm = _empty_pm()
    pm.add_plugin(_module("pa", hotsync_config_schema=_schema_hook(a)), "plugin-a")
    pm.add_plugin(_module("pb", hotsync_config_schema=_schema_hook(b)), "plugin-b")
    problems = install_schemas(pm, root)
    assert len(problems) == 1 and "plugin-a" in problems[0] and "plugin-b" in problems[0]
    assert "flavour" in problems[0]


def test_unparsable_plugin_schema_is_a_problem_naming_the_plugin(root, tmp_path):
    bad = tmp_path / "bad.spec"
    bad.write_text("[myapp]\ncolour = nosuchcheck()\n")
    pm = _empty_pm()
    pm.add_plugin(_module("pbad", hotsync_config_schema=_schema_hook(bad)), "badschema")
    problems = install_schemas(pm, root)
    assert len(problems) == 1 and "badschema" in problems[0] and "nosuchcheck" in problems[0]
    assert not (root.state_dir / "schema/configuration/badschema.spec").exists()


# --------------------------------------------------------------------------------------------- entry points
def _fake_distribution(site, name, version, entry_points: dict[str, str], modules: dict[str, str]):
    """A distribution as pip would leave it: ``<name>-<version>.dist-info`` with entry_points.txt."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"   # the name part is escaped, as pip writes it
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[hotsync]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    for mod, text in modules.items():
        (site / f"{mod}.py").write_text(textwrap.dedent(text))


GOOD_PLUGIN = """
    from pathlib import Path
    from hotsync_events import hookimpl
    from hotsync_events.types import SchemaFile

    @hookimpl
    def hotsync_config_schema():
        return [SchemaFile("configuration", Path(__file__).with_name("fakegood.spec"))]

    @hookimpl
    def hotsync_sync_paths(db):
        return []
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path (and PYTHONPATH, for the commands) holding fake distributions."""
    site = tmp_path / "site"
    site.mkdir()
    _fake_distribution(site, "hotsync-fakegood", "1.2.3", {"fakegood": "fakegood"}, {"fakegood": GOOD_PLUGIN})
    (site / "fakegood.spec").write_text("[myapp]\n__type__ = service\ncolour = option('red', 'green', default='red')\n")
    _fake_distribution(site, "hotsync-fakebroken", "0.9", {"fakebroken": "fakebroken"},
                       {"fakebroken": "import no_such_module_anywhere\n"})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return site


def test_entry_point_plugins_are_discovered_with_their_distribution(site):
    pm = get_plugin_manager(builtins=False)
    infos = {i.name: i for i in pm.plugin_infos()}
    good, broken = infos["fakegood"], infos["fakebroken"]
    assert (good.origin, good.version, good.error) == ("hotsync-fakegood", "1.2.3", None)
    assert good.hooks == ["hotsync_config_schema", "hotsync_sync_paths"]
    assert (broken.origin, broken.version) == ("hotsync-fakebroken", "0.9")
    assert "No module named 'no_such_module_anywhere'" in broken.error


def test_hotsync_plugins_json_reports_the_broken_plugin_without_traceback(site, root, run):
    cp = run("hotsync", "plugins", "--json")
    assert cp.returncode != 0
    assert "Traceback" not in cp.stdout + cp.stderr
    doc = json.loads(cp.stdout)
    plugins = {p["name"]: p for p in doc["plugins"]}
    assert plugins["fakebroken"]["loaded"] is False
    assert "no_such_module_anywhere" in plugins["fakebroken"]["error"]
    assert plugins["fakegood"]["loaded"] is True and plugins["fakegood"]["origin"] == "hotsync-fakegood"
    assert plugins["mysql"]["origin"] == "built-in"
    cp = run("hotsync", "plugins")
    assert cp.returncode != 0 and "Traceback" not in cp.stderr
    line = next(ln for ln in cp.stdout.splitlines() if ln.startswith("fakebroken "))
    assert "BROKEN" in line and "hotsync-fakebroken" in line
    assert "error: ModuleNotFoundError" in cp.stdout


def test_hotsync_plugins_honours_the_blocklist(site, root, run):
    cp = run("hotsync", "plugins", "--json", env={"HOTSYNC_DISABLE_PLUGINS": "fakebroken,mysql"})
    assert cp.returncode == 0, cp.stdout + cp.stderr
    plugins = {p["name"]: p for p in json.loads(cp.stdout)["plugins"]}
    assert plugins["fakebroken"]["blocked"] and plugins["fakebroken"]["error"] is None
    assert plugins["mysql"]["blocked"] and not plugins["mysql"]["loaded"]


def test_plugin_schema_from_an_entry_point_is_used_by_config(site, root, run):
    run("hotsync", "plugins", env={"HOTSYNC_DISABLE_PLUGINS": "fakebroken"}, check=True)
    assert (root.state_dir / "schema/configuration/fakegood.spec").is_file()
    run("config", "set", "myapp", "service", "colour", "green", check=True)
    cp = run("config", "setprop", "myapp", "colour", "purple")
    assert cp.returncode == 3 and "myapp" in cp.stderr and "colour" in cp.stderr and "red, green" in cp.stderr
    assert run("config", "getprop", "myapp", "colour").stdout == "green\n"


def test_entry_point_named_like_a_builtin_stops_start_up_naming_both(site, root, run):
    _fake_distribution(site, "hotsync-impostor", "6.6.6", {"mysql": "fakegood"}, {})
    cp = run("hotsync", "plugins", "--json")
    assert cp.returncode == 4 and "Traceback" not in cp.stderr
    assert "mysql" in cp.stderr and "built-in (hotsync_plugins.mysql)" in cp.stderr
    assert "hotsync-impostor" in cp.stderr


def test_bad_hooks_through_the_command_name_plugin_and_hook(site, root, run):
    _fake_distribution(site, "hotsync-typo", "1.0", {"typo": "typo_plugin"}, {"typo_plugin": """
        from hotsync_events import hookimpl
        @hookimpl
        def hotsync_sync_pahts(db):
            return []
    """})
    cp = run("hotsync", "plugins", env={"HOTSYNC_DISABLE_PLUGINS": "fakebroken"})
    assert cp.returncode == 1 and "Traceback" not in cp.stderr
    lines = cp.stdout.splitlines()
    i = next(n for n, ln in enumerate(lines) if ln.startswith("typo "))
    assert "BROKEN" in lines[i] and "hotsync_sync_pahts" in "\n".join(lines[i:i + 3])


def test_config_getprop_does_not_load_plugins(root, run):
    """The plain db verbs start without pluggy (or the schema, for reads of a database that exists)."""
    run("config", "setprop", "hotsync", "role", "master", check=True)
    code = ("import sys; from hotsync_events.cli.config import config_main; rc = config_main(['getprop', "
            "'hotsync', 'role']); bad = [m for m in ('pluggy', 'configobj', 'argparse', 'hotsync_plugins') "
            "if m in sys.modules]; print(bad); sys.exit(rc)")
    import subprocess

    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        env={**os.environ, "HOTSYNC_ROOT": str(root.path)})
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.splitlines()[-1] == "[]"


@pytest.mark.parametrize("where", ["before", "after"])
def test_hotsync_plugins_takes_the_root_option(site, root, run, tmp_path, where):
    other = tmp_path / "other-root"
    args = ["--root", str(other), "plugins"] if where == "before" else ["plugins", "--root", str(other)]
    run("hotsync", *args, env={"HOTSYNC_DISABLE_PLUGINS": "fakebroken"}, check=True)
    assert (other / "var/lib/hotsync/schema/configuration/fakegood.spec").is_file()
    assert not (root.state_dir / "schema").exists()


def test_hook_that_raises_is_a_problem_of_hotsync_plugins(site, root, run):
    _fake_distribution(site, "hotsync-raiser", "1.0", {"raiser": "raiser_plugin"}, {"raiser_plugin": """
        from hotsync_events import hookimpl
        @hookimpl
        def hotsync_config_schema():
            raise RuntimeError("schema server unreachable")
    """})
    env = {"HOTSYNC_DISABLE_PLUGINS": "fakebroken"}
    cp = run("hotsync", "plugins", env=env)
    assert cp.returncode == 1 and "Traceback" not in cp.stderr
    assert "problem: plugin raiser: hook hotsync_config_schema: RuntimeError: schema server unreachable" in cp.stdout
    cp = run("hotsync", "plugins", "--json", env=env)
    assert cp.returncode == 1
    assert any("schema server unreachable" in p for p in json.loads(cp.stdout)["problems"])


def test_schema_files_that_cannot_be_installed_are_a_problem_not_a_traceback(site, root, run):
    (root.state_dir).mkdir(parents=True)
    (root.state_dir / "schema").write_text("not a directory")     # as unwritable as it gets for root
    cp = run("hotsync", "plugins", env={"HOTSYNC_DISABLE_PLUGINS": "fakebroken"})
    assert cp.returncode == 1 and "Traceback" not in cp.stderr
    assert "problem: cannot install the plugins' schema files" in cp.stdout
    assert "fakegood" in cp.stdout
