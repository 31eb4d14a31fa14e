"""The plugin manager: built-in plugins, third-party entry points, blocklist, load errors.

Build one with :func:`get_plugin_manager`; nothing is loaded at import. Built-in plugins are the
modules named in :data:`BUILTIN_PLUGINS`, registered like any third-party plugin; third-party plugins
come from the entry-point group ``hotsync``. ``HOTSYNC_DISABLE_PLUGINS=a,b`` blocks plugins by name.

A plugin that fails to import, or whose hooks do not match the hookspecs (a misspelt hook name, an
argument the hook does not have), is reported by name and skipped; two plugins with the same name stop
start-up naming both. Results of registration hooks are collected per plugin with :meth:`collect`, so
that every object is tagged with the plugin that gave it and a plugin whose hook raises fails alone.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

import pluggy

from . import NAME, __version__, hookspecs

__all__ = ["BUILTIN_PLUGINS", "HotsyncPluginManager", "PluginClash", "PluginInfo", "get_plugin_manager"]

#: dotted module names of the built-in plugins; the plugin's name is the last part
BUILTIN_PLUGINS: tuple[str, ...] = ()
ENV_DISABLE = "HOTSYNC_DISABLE_PLUGINS"


class PluginClash(Exception):
    """Two plugins claim one name (or one action, path, prop...): the message names both."""


@dataclass
class PluginInfo:
    name: str
    origin: str                   # "built-in" or the distribution's name
    version: str
    module: str
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    blocked: bool = False

    def as_json(self) -> dict:
        return {"name": self.name, "origin": self.origin, "version": self.version, "module": self.module,
                "hooks": sorted(self.hooks), "error": self.error, "blocked": self.blocked,
                "loaded": self.error is None and not self.blocked}


class HotsyncPluginManager(pluggy.PluginManager):
    """pluggy's manager, looking only at ``hotsync_*`` attributes and remembering where plugins came from."""

    def __init__(self) -> None:
        super().__init__(NAME)
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.hook_errors: list[tuple[str, str, str]] = []   # (plugin, hook, error) from collect()

    def parse_hookimpl_opts(self, plugin: Any, name: str):
        if not name.startswith(NAME + "_"):
            return None
        return super().parse_hookimpl_opts(plugin, name)

    # -------------------------------------------------------------------------------- registration
    def add_plugin(self, obj: Any, name: str, *, origin: str = "built-in", version: str = "",
                   module: str = "") -> PluginInfo | None:
        """Register *obj* as plugin *name*; a bad plugin is recorded and skipped, a clash raises."""
        module = module or getattr(obj, "__name__", type(obj).__name__)
        have = self.infos.get(name)
        if have is not None and not have.blocked and have.error is None:
            raise PluginClash(f"two hotsync plugins are named {name!r}: {_where(have)} and "
                              f"{origin} ({module}); uninstall or block one (HOTSYNC_DISABLE_PLUGINS={name})")
        info = PluginInfo(name=name, origin=origin, version=version or __version__, module=module)
        self.infos[name] = info
        if self.is_blocked(name):
            info.blocked = True
            return info
        try:
            self.register(obj, name=name)
        except pluggy.PluginValidationError as exc:
            info.error = f"refused at load: {exc}"
            return info
        unknown = [impl.function.__name__ for caller in self.get_hookcallers(obj) or []
                   if not caller.has_spec() for impl in caller.get_hookimpls() if impl.plugin is obj]
        if unknown:
            self.unregister(obj)
            info.error = ("refused at load: no such hook " + ", ".join(sorted(unknown))
                          + f" (known hooks: {', '.join(sorted(self.hook_names()))})")
            return info
        info.hooks = sorted(c.name for c in self.get_hookcallers(obj) or [])
        return info

    def hook_names(self) -> list[str]:
        return [n for n in dir(self.hook) if n.startswith(NAME + "_")]

    def load_builtins(self, modules: Iterable[str] = BUILTIN_PLUGINS) -> None:
        for dotted in modules:
            name = dotted.rpartition(".")[2]
            if self.is_blocked(name):
                self.infos[name] = PluginInfo(name, "built-in", __version__, dotted, blocked=True)
                continue
            try:
                mod = importlib.import_module(dotted)
            except Exception as exc:  # a broken plugin is reported, never fatal
                self.infos[name] = PluginInfo(name, "built-in", __version__, dotted, error=_describe(exc))
                continue
            self.add_plugin(mod, name, origin="built-in", version=__version__, module=dotted)

    def load_entrypoints(self, group: str = NAME) -> None:
        from importlib.metadata import entry_points

        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            origin = dist.metadata["Name"] if dist is not None else "unknown distribution"
            version = dist.version if dist is not None else ""
            if self.is_blocked(ep.name):
                self.infos.setdefault(ep.name, PluginInfo(ep.name, origin, version, ep.value, blocked=True))
                continue
            try:
                obj = ep.load()
            except Exception as exc:
                have = self.infos.get(ep.name)
                if have is not None and have.error is None:
                    raise PluginClash(f"two hotsync plugins are named {ep.name!r}: {_where(have)} and "
                                      f"{origin} ({ep.value})") from None
                self.infos[ep.name] = PluginInfo(ep.name, origin, version, ep.value, error=_describe(exc))
                continue
            self.add_plugin(obj, ep.name, origin=origin, version=version, module=ep.value)

    def plugin_infos(self) -> list[PluginInfo]:
        return [self.infos[n] for n in sorted(self.infos)]

    # -------------------------------------------------------------------------------- calling
    def collect(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a registration hook plugin by plugin; return ``[(plugin name, item), ...]``.

        A plugin whose hook raises is recorded in :attr:`hook_errors` and contributes nothing; the
        others are not affected.
        """
        caller = getattr(self.hook, hook_name)
        out: list[tuple[str, Any]] = []
        for impl in sorted(caller.get_hookimpls(), key=lambda i: i.plugin_name):
            try:
                result = impl.function(*[kwargs[a] for a in impl.argnames])
                items = list(result) if result is not None else []
            except Exception as exc:
                self.hook_errors.append((impl.plugin_name, hook_name, _describe(exc)))
                continue
            out.extend((impl.plugin_name, item) for item in items)
        return out


def _where(info: PluginInfo) -> str:
    return f"{info.origin} ({info.module})"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def disabled_from_env() -> set[str]:
    return {n.strip() for n in os.environ.get(ENV_DISABLE, "").split(",") if n.strip()}


def get_plugin_manager(*, builtins: bool | Iterable[str] = True, entrypoints: bool = True,
                       disabled: Iterable[str] | None = None) -> HotsyncPluginManager:
    """A new plugin manager with the hookspecs, the built-in plugins and the installed ones.

    :param builtins: True for :data:`BUILTIN_PLUGINS`, False for none, or the dotted names to load.
    :param entrypoints: load third-party plugins from the entry-point group ``hotsync``.
    :param disabled: plugin names to block; default ``$HOTSYNC_DISABLE_PLUGINS``.
    """
    pm = HotsyncPluginManager()
    for name in (disabled_from_env() if disabled is None else set(disabled)):
        pm.set_blocked(name)
    if builtins:
        pm.load_builtins(BUILTIN_PLUGINS if builtins is True else builtins)
    if entrypoints:
        pm.load_entrypoints()
    return pm


def install_schemas(pm: HotsyncPluginManager, root) -> list[str]:
    """Install the plugins' configspec files under *root* (see :mod:`hotsync_events.schema`).

    Only changed files are rewritten; files of plugins that are gone are removed. Returns the problems
    found (a spec that does not parse, a clash), each naming the plugin.
    """
    from .fsutil import atomic_write
    from .schema import SchemaError, load, parse_spec

    problems: list[str] = []
    wanted: dict = {}
    for plugin, sf in pm.collect("hotsync_config_schema"):
        try:
            parse_spec(sf.path, plugin)
            text = sf.path.read_bytes()
        except (OSError, SchemaError) as exc:
            problems.append(f"plugin {plugin}: schema {sf.path}: {exc}")
            continue
        wanted[(sf.db, plugin)] = wanted.get((sf.db, plugin), b"") + text
    base = root.state_dir / "schema"
    for (db, plugin), text in wanted.items():
        target = base / db / f"{plugin}.spec"
        if not target.exists() or target.read_bytes() != text:
            atomic_write(target, text)
    if base.is_dir():
        for spec in base.glob("*/*.spec"):
            if (spec.parent.name, spec.stem) not in wanted:
                spec.unlink()
    for db in {db for db, _ in wanted}:
        try:
            load(root, db)
        except SchemaError as exc:
            problems.append(str(exc))
    return problems
