"""The house rules of docs/architecture.md, checked over the import graph (runtime imports, read with ast).

Rooms, lowest first: foundation < configdb < plugin API < events, sync < realtime, promote, cockpit < cli.
A module imports its own room and lower ones only; ``hotsync_events.testing`` (the fixtures) sits above
all but cli. Imports under ``if TYPE_CHECKING:`` are annotations, not dependencies, and are not counted.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
PACKAGE = PROJECT / "hotsync_events"
PLUGINS = PROJECT / "plugins"

LEVELS = {"foundation": 0, "configdb": 1, "plugin API": 2, "events": 3, "sync": 3, "realtime": 4, "promote": 4,
          "cockpit": 4, "testing": 5, "drill": 5, "cli": 6}
FOUNDATION = {"paths", "fsutil", "childproc", "types"}
PLUGIN_API = {"hookspecs", "manager", "entrypoints", "dbkit"}
#: what a plugin may import: the package's top-level names and these modules (docs/plugins.md, "Public API")
PUBLIC = ("hotsync_events", "hotsync_events.types", "hotsync_events.dbkit", "hotsync_events.testing")
#: the product's own plugin (rsyncd, stunnel, the schedule, the save event): core code that registers as a
#: plugin so that the event framework treats it like the others; it may use the core, never the CLI
CORE_PLUGINS = {"hotsync", "_hotsync_values"}    # the core plugin and its values module
#: old private module names kept importable for third-party plugins written against them
SHIMS = {"_dbtools"}


def room(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "hotsync_events":
        return None
    if len(parts) == 1 or parts[1] in FOUNDATION or (not (PACKAGE / parts[1]).exists() and
            not (PACKAGE / f"{parts[1]}.py").exists()):
        return "foundation"            # the package itself, and its top-level names (from hotsync_events import X)
    if parts[1] in PLUGIN_API:
        return "plugin API"
    return parts[1]


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(PROJECT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every runtime import of *path*, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = module_name(path).split(".")
    if path.name != "__init__.py":
        pkg = pkg[:-1]
    skip: set[int] = set()
    for node in ast.walk(tree):
        if _type_checking(node):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg[:len(pkg) - node.level + 1] + ([base] if base else []))
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names
                    if (PROJECT / base.replace(".", "/") / a.name).is_dir()
                    or (PROJECT / base.replace(".", "/") / f"{a.name}.py").is_file()]
    return out


def core_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def plugin_modules() -> list[Path]:
    return sorted(PLUGINS.glob("*.py"))


def test_every_core_module_has_a_room():
    assert all(room(module_name(p)) in LEVELS for p in core_modules())


def test_each_room_imports_only_its_own_and_lower_rooms():
    wrong = []
    for path in core_modules():
        mine = room(module_name(path))
        for line, imported in imports(path):
            theirs = room(imported)
            if theirs and theirs != mine and LEVELS[theirs] >= LEVELS[mine]:
                wrong.append(f"{path.relative_to(PROJECT)}:{line}: {mine} imports {imported} ({theirs})")
    assert not wrong, "imports against docs/architecture.md:\n" + "\n".join(wrong)


def test_sync_never_imports_realtime_and_nothing_but_the_console_scripts_imports_cli():
    wrong = []
    for path in [*core_modules(), *plugin_modules()]:
        mod = module_name(path)
        for line, imported in imports(path):
            if mod.startswith("hotsync_events.sync") and imported.startswith("hotsync_events.realtime"):
                wrong.append(f"{path.relative_to(PROJECT)}:{line}: sync imports {imported}")
            if imported.startswith("hotsync_events.cli") and not mod.startswith("hotsync_events.cli"):
                wrong.append(f"{path.relative_to(PROJECT)}:{line}: imports the CLI ({imported})")
    assert not wrong, "\n".join(wrong)


def test_the_core_never_imports_a_plugin():
    wrong = [f"{p.relative_to(PROJECT)}:{line}: {m}" for p in core_modules() for line, m in imports(p)
             if m.split(".")[0] == "hotsync_plugins"]
    assert not wrong, "plugins come through the manager only:\n" + "\n".join(wrong)


def _public(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in PUBLIC[1:]) or module == PUBLIC[0]


@pytest.mark.parametrize("path", [p for p in plugin_modules() if p.stem not in CORE_PLUGINS | SHIMS],
                         ids=lambda p: p.stem)
def test_application_plugins_import_only_the_public_api(path):
    wrong = [f"line {line}: {m}" for line, m in imports(path)
             if m.split(".")[0] == "hotsync_events" and not _public(m)]
    assert not wrong, f"{path.name} imports beyond the public API (docs/plugins.md):\n" + "\n".join(wrong)


def test_the_examples_use_only_the_public_api():
    found = [p for p in (PROJECT / "examples").rglob("*.py") if "build" not in p.parts]
    assert found
    wrong = [f"{p.relative_to(PROJECT)}:{line}: {m}" for p in found for line, m in imports(p)
             if m.split(".")[0] == "hotsync_events" and not _public(m)]
    assert not wrong, "\n".join(wrong)


def test_the_public_api_is_what_all_names():
    import hotsync_events

    for name in hotsync_events.__all__:
        assert getattr(hotsync_events, name) is not None, name
    import hotsync_events.dbkit as kit

    for name in kit.__all__:
        assert getattr(kit, name) is not None, name


def test_no_module_is_over_600_lines():
    big = {str(p.relative_to(PROJECT)): n for p in [*core_modules(), *plugin_modules()]
           if (n := len(p.read_text().splitlines())) > 600}
    assert not big, f"split these by concept: {big}"


def test_config_start_up_loads_no_pluggy_mako_or_watchdog(tmp_path):
    env = {**os.environ, "HOTSYNC_ROOT": str(tmp_path), "PYTHONPATH": str(PROJECT)}
    run = subprocess.run([sys.executable, "-X", "importtime", "-c",
                          "import sys; from hotsync_events.cli.config import config_main; "
                          "sys.argv = ['config', 'getprop', 'hotsync', 'role']; config_main()"],
                         env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    loaded = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in run.stderr.splitlines() if "|" in line}
    assert not loaded & {"pluggy", "mako", "watchdog"}, sorted(loaded & {"pluggy", "mako", "watchdog"})
