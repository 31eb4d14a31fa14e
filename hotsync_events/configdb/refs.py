"""Which templates, actions and services read a config value, and so which events depend on it.

A static scan, for ``config info``: nothing is rendered or run. The places looked at:

* template fragments, ``<dir>/<target path>/<NN-name>``, of the packaged ``templates/`` folder, of the
  plugins' template directories (``hotsync_template_dirs``) and of ``<root>/etc/hotsync/templates-custom``;
  a target's events come from the plugins' ``hotsync_templates`` registrations;
* the source of each plugin action's ``run`` (``hotsync_actions``), and of each plugin's
  ``hotsync_services`` hook (a service's events then depend on the value), following the plugin's own
  helper functions they call (:class:`_Reader`);
* the executables of ``<root>/etc/hotsync/events/<event>/``;
* and, beside the events, the core's own functions that read it when they run (:func:`core_readers`).

A text reads ``KEY PROP`` when it names the key (quoted, ``getprop KEY``, ``KEY.attr`` or ``KEY[``) and the prop
(quoted, ``.PROP``, or ``getprop KEY PROP``). This finds ``db.getprop('hotsync', 'role')``,
``hotsync['role']``, ``${hotsync.role}``, ``${db.hotsync.role}`` and
``config getprop hotsync role`` alike; it may name a file that only mentions both names.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from hotsync_events.paths import Root, data_dir

__all__ = ["find_references", "mentions", "template_dirs"]

MAX_BYTES = 512 * 1024  # larger files are not fragments or scripts


_EXT = r"(?:conf|cfg|log|pid|d|sh|service|timer|lock|json|xml|ini|spec|secrets|py|txt)\b"


def _key_pattern(key: str) -> re.Pattern:
    k = re.escape(key)
    return re.compile(
        rf"""(['"]){k}\1"""                                                      # 'hotsync' / "hotsync"
        rf"""|\b(?:getprop|get|show|setprop|delprop|printjson|info)\s+{k}(?![\w-])"""  # config getprop hotsync
        rf"""|(?<![\w/-]){k}\.(?!{_EXT})(?=[A-Za-z_])"""                           # hotsync.role, db.hotsync.x
        rf"""|(?<![\w/.-]){k}\[""")                                               # hotsync['role']


def _prop_pattern(key: str, prop: str) -> re.Pattern:
    k, p = re.escape(key), re.escape(prop)
    return re.compile(
        rf"""(['"]){p}\1"""                                                      # 'role' (getprop, [...])
        rf"""|\.{p}(?![\w-])"""                                             # .role
        rf"""|\b{k}\s+{p}(?![\w-])""")                                           # getprop hotsync role


def mentions(text: str, key: str, prop: str | None = None) -> bool:
    """Whether *text* reads *key* (and *prop*, when given)."""
    if key not in text or (prop is not None and prop not in text):
        return False
    if _key_pattern(key).search(text) is None:
        return False
    return prop is None or _prop_pattern(key, prop).search(text) is not None


def _read_text(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:4096]:
        return None
    return data.decode("utf-8", "replace")


def template_dirs(root: Root, pm=None) -> list:
    """``(source, dir)`` in the order fragments override each other: core, plugins, templates-custom."""
    dirs = []
    try:
        dirs.append(("core", data_dir("templates")))
    except FileNotFoundError:
        pass
    if pm is not None:
        for plugin, d in sorted(pm.collect("hotsync_template_dirs"), key=lambda x: x[0]):
            dirs.append((f"plugin {plugin}", Path(d)))
    dirs.append(("templates-custom", root.etc_dir / "templates-custom"))
    return dirs


def _fragments(base: Path, targets: set):
    """``(target, fragment name, path)`` of each file under a templates directory."""
    if not base.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith((".pyc", "~", ".swp")):
                continue
            path = Path(dirpath, name)
            rel = "/" + path.relative_to(base).as_posix()
            if rel in targets:            # a whole-file template (it replaces the fragments)
                yield rel, name, path
            else:
                yield "/" + path.parent.relative_to(base).as_posix(), name, path


def _source_of(fn) -> str | None:
    import inspect

    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return None


_CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
_FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+([\w.]+)[ \t]+import[ \t]+(\([\w\s,]+\)|[\w \t,]+)", re.M)
MAX_DEPTH = 4


class _Reader:
    """Whether code reads *key* (*prop*): directly, or through the plugin helpers it calls.

    A plugin often reads the database in a helper (``role(db)``, ``slave_active(db)``) that its actions,
    hooks and template fragments call. The helpers followed are plain functions of the plugins' own
    packages (looked up in the calling function's globals, or in a module a fragment imports with
    ``from X import y`` that the plugin manager already loaded), up to MAX_DEPTH calls deep.
    """

    def __init__(self, key: str, prop: str | None, packages: set) -> None:
        self.key, self.prop, self.packages = key, prop, packages
        self._seen: dict = {}

    def _ours(self, fn) -> bool:
        import inspect

        return inspect.isfunction(fn) and (getattr(fn, "__module__", "") or "").split(".")[0] in self.packages

    def function(self, fn, depth: int = 0) -> bool:
        if fn in self._seen:
            return self._seen[fn]
        self._seen[fn] = False  # a recursive helper ends here
        src = _source_of(fn)
        found = src is not None and mentions(src, self.key, self.prop)
        if not found and src is not None and depth < MAX_DEPTH:
            names = getattr(fn, "__globals__", {})
            found = any(self.function(names[n], depth + 1) for n in sorted(set(_CALL.findall(src)))
                        if n in names and names[n] is not fn and self._ours(names[n]))
        self._seen[fn] = found
        return found

    def text(self, text: str) -> bool:
        if mentions(text, self.key, self.prop):
            return True
        import sys

        for modname, names in _FROM_IMPORT.findall(text):
            mod = sys.modules.get(modname)
            if mod is None or modname.split(".")[0] not in self.packages:
                continue
            for name in names.strip("()").split(","):
                words = name.split()
                fn = getattr(mod, words[0], None) if words else None
                if fn is not None and self._ours(fn) and self.function(fn, 1):
                    return True
        return False


#: core modules not scanned: they name keys as examples or as words (completion, this scan, the CLIs)
CORE_SKIP = ("hotsync_events.configdb.info", "hotsync_events.configdb.refs", "hotsync_events.cli.complete",
             "hotsync_events.configdb.historyview", "hotsync_events.cli.")


def core_readers(key: str, prop: str | None = None) -> list:
    """``[{"module", "functions"}]``: functions of the core (this package) whose code reads *key* (*prop*).

    Not events: these read the value when they run (``hotsync sync`` reads ``hotsync MaxDeletePercent`` at
    every push). Docstrings and comments are left out (the code is parsed and unparsed).
    """
    import ast

    base = Path(__file__).resolve().parent.parent   # the hotsync_events package
    out = []
    for path in sorted(base.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        module = ".".join(("hotsync_events", *path.relative_to(base).with_suffix("").parts))
        module = module.removesuffix(".__init__")
        if module.startswith(CORE_SKIP):
            continue
        text = _read_text(path)
        if text is None or key not in text or (prop is not None and prop not in text):
            continue
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        found = []
        for node, qual in _functions(tree):
            body = node.body
            first = body[0] if body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                node.body = body[1:] or [ast.Pass()]
            if mentions(ast.unparse(node), key, prop):
                found.append(qual)
        if found:
            out.append({"module": module, "functions": found})
    return out


def _functions(tree):
    """Top-level functions and methods of a module, with their qualified names."""
    import ast

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node, node.name
        elif isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield sub, f"{node.name}.{sub.name}"


def _plugin_packages(pm) -> set:
    """Top-level package names of the registered plugins (their helpers may be followed)."""
    out = set()
    for plugin in pm.get_plugins() if pm is not None else ():
        name = getattr(plugin, "__name__", None) if hasattr(plugin, "__file__") else type(plugin).__module__
        if name:
            out.add(name.split(".")[0])
    return out


def find_references(root: Root, dbname: str, key: str, prop: str | None = None, *, db=None, pm=None) -> dict:
    """``{"events", "templates", "actions", "services", "notes"}``: what reads *key* (*prop*).

    ``templates`` is ``[{"target", "events", "fragments": [{"fragment", "source", "path"}]}]``; ``actions``
    ``[{"event", "name", "source"}]``; ``services`` ``[{"name", "source", "events"}]``; ``events`` the
    sorted union of their events; ``core`` what :func:`core_readers` finds. *pm* (a plugin manager) adds the plugins' templates, actions and
    services; a plugin whose hook fails is named in ``notes``.
    """
    notes: list = []
    target_events: dict = {}
    if pm is not None and db is not None:
        for _plugin, t in pm.collect("hotsync_templates", db=db):
            target_events.setdefault(t.path, set()).update(t.events)
    reader = _Reader(key, prop, _plugin_packages(pm))
    templates: dict = {}
    for source, base in template_dirs(root, pm):
        for target, frag, path in _fragments(base, set(target_events)):
            text = _read_text(path)
            if text is None or not reader.text(text):
                continue
            t = templates.setdefault(target, {"target": target, "events": sorted(target_events.get(target, ())),
                                              "fragments": []})
            t["fragments"].append({"fragment": frag, "source": source, "path": str(path)})
    actions = []
    services = []
    if pm is not None and db is not None:
        for plugin, action in pm.collect("hotsync_actions", db=db):
            if reader.function(action.run):
                actions.append({"event": action.event, "name": action.name, "source": f"plugin {plugin}"})
        by_plugin: dict = {}
        for plugin, svc in pm.collect("hotsync_services", db=db):
            by_plugin.setdefault(plugin, []).append(svc)
        for impl in pm.hook.hotsync_services.get_hookimpls():
            if not reader.function(impl.function):
                continue
            for svc in by_plugin.get(impl.plugin_name, []):
                services.append({"name": svc.name, "source": f"plugin {impl.plugin_name}",
                                 "events": sorted(svc.events)})
        for plugin, hook, error in pm.hook_errors:
            notes.append(f"plugin {plugin}: hook {hook} failed ({error}); what it reads is not shown")
    events_dir = root.etc_dir / "events"
    if events_dir.is_dir():
        for event in sorted(os.listdir(events_dir)):
            edir = events_dir / event
            if not edir.is_dir():
                continue
            for name in sorted(os.listdir(edir)):
                path = edir / name
                if not os.access(path, os.X_OK) or not path.is_file():
                    continue
                text = _read_text(path)
                if text is not None and mentions(text, key, prop):
                    actions.append({"event": event, "name": name, "source": f"events directory {edir}"})
    events = set()
    for t in templates.values():
        events.update(t["events"])
    for a in actions:
        events.add(a["event"])
    for s in services:
        events.update(s["events"])
    return {"events": sorted(events), "templates": [templates[t] for t in sorted(templates)],
            "actions": sorted(actions, key=lambda a: (a["event"], a["name"])),
            "services": sorted(services, key=lambda s: s["name"]), "core": core_readers(key, prop),
            "notes": notes}
