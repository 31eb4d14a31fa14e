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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from hotsync_events import NAME, __version__, hookspecs

if TYPE_CHECKING:
    from hotsync_events.paths import Root

__all__ = ["BUILTIN_PLUGINS", "HotsyncPluginManager", "PluginClash", "PluginInfo", "RegistrationError",
           "get_plugin_manager", "hook_problem", "plugin_manager", "registration_order"]

#: the built-in plugins: ``"name=dotted.module"``, or a dotted module name whose last part is the name
BUILTIN_PLUGINS: tuple[str, ...] = ("hotsync_plugins.hotsync", "hotsync_plugins.mysql", "hotsync_plugins.postgresql",
    # one plugin per NethServer package HotSync supports (issue 10)
    "hotsync_plugins.antivirus", "hotsync_plugins.collectd", "hotsync_plugins.cups", "hotsync_plugins.dc",
    "hotsync_plugins.directory", "hotsync_plugins.dnsmasq", "hotsync_plugins.freepbx",
    "hotsync_plugins.letsencrypt", "mail-server=hotsync_plugins.mail_server", "hotsync_plugins.mattermost",
    "hotsync_plugins.nextcloud", "hotsync_plugins.pulledpork", "hotsync_plugins.samba",
    "samba-audit=hotsync_plugins.samba_audit", "hotsync_plugins.squidguard", "hotsync_plugins.sssd",
    "hotsync_plugins.webtop5",
)
ENV_DISABLE = "HOTSYNC_DISABLE_PLUGINS"


class PluginClash(Exception):
    """Two plugins claim one name (or one action, path, prop...): the message names both."""


class RegistrationError(Exception):
    """Two plugins (or one, twice) register one name through a registration hook; the message names the
    thing, the plugins and the hook. :attr:`hook` is the hook, :attr:`plugins` the plugins at fault."""

    def __init__(self, message: str, *, hook: str, plugins: tuple[str, ...]) -> None:
        super().__init__(message)
        self.hook, self.plugins = hook, plugins


def registration_order(item: Any) -> tuple[int, str]:
    """The one order of everything plugins register: ``(priority, name)`` (the path where there is no name;
    priority 0 where there is none). pluggy's call order never matters."""
    name = getattr(item, "name", None)
    return (getattr(item, "priority", 0), str(name if name is not None else getattr(item, "path", "")))


@dataclass
class PluginInfo:
    name: str
    origin: str                   # "built-in" or the distribution's name
    version: str
    module: str
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    blocked: bool = False
    active: bool | None = None    # what hotsync_detect said at the last detect(); None = not asked yet

    def as_json(self) -> dict:
        return {"name": self.name, "origin": self.origin, "version": self.version, "module": self.module,
                "hooks": sorted(self.hooks), "error": self.error, "blocked": self.blocked,
                "loaded": self.error is None and not self.blocked,
                "active": bool(self.active) if self.error is None and not self.blocked else False}


class HotsyncPluginManager(pluggy.PluginManager):
    """pluggy's manager, looking only at ``hotsync_*`` attributes and remembering where plugins came from."""

    def __init__(self) -> None:
        super().__init__(NAME)
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.hook_errors: list[tuple[str, str, str]] = []   # (plugin, hook, error) from collect()
        self.root: Root | None = None      # the Root detection looks at when a hook call names none (else $HOTSYNC_ROOT)
        #: {} to reuse detect()'s answers while the root's configuration database is unchanged (signal-event
        #: sets it for one event: every collect() would ask every plugin again); None: always ask
        self.detect_memo: dict | None = None

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
            if self.is_registered(obj):  # pluggy keeps the hooks it registered before the bad one
                self.unregister(obj)
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
        for entry in modules:
            name, sep, dotted = entry.partition("=")
            name, dotted = (name.strip(), dotted.strip()) if sep else (entry.rpartition(".")[2], entry)
            if self.is_blocked(name):
                self.infos[name] = PluginInfo(name, "built-in", __version__, dotted, blocked=True)
                continue
            try:
                mod = importlib.import_module(dotted)
            except Exception as exc:  # a broken plugin is reported, never fatal
                self.infos[name] = PluginInfo(name, "built-in", __version__, dotted, error=_describe(exc))
                continue
            self.add_plugin(mod, name, origin="built-in", version=__version__, module=dotted)

    def load_entrypoints(self, group: str = NAME, eps: Iterable[Any] | None = None) -> None:
        """Load the plugins of entry-point group *group* (or of *eps*, e.g. from :mod:`.entrypoints`' cache)."""
        if eps is None:
            from importlib.metadata import entry_points

            eps = entry_points(group=group)
        for ep in sorted(eps, key=lambda e: e.name):
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
    def detect(self, root: Any = None, db: Any = None) -> dict[str, bool]:
        """Ask every plugin's ``hotsync_detect`` whether its package is on the host: ``{name: active}``.

        A plugin without the hook, or answering None, is active; one whose hook raises is inactive and
        recorded in :attr:`hook_errors`. The answer is also kept in each :class:`PluginInfo`.
        """
        root = _root_for(self, root, db)
        key: tuple | None = None
        if self.detect_memo is not None:
            try:
                st = os.stat(root.db_dir / "configuration")
                key = (str(root.path), st.st_ino, st.st_size, st.st_mtime_ns)
            except OSError:
                key = (str(root.path), None)
            hit = self.detect_memo.get(key)
            if hit is not None:
                for error in hit[1]:
                    self._hook_error(*error)
                return dict(hit[0])
        errors: list[tuple[str, str, str]] = []
        if db is None:
            from hotsync_events.configdb import open_db

            db = open_db("configuration", root, validate=False, initialise=False, journal=False)
        active = {n: True for n, i in self.infos.items() if i.error is None and not i.blocked}
        for impl in self.hook.hotsync_detect.get_hookimpls():
            kwargs = {"root": root, "db": db}
            try:
                answer = impl.function(*[kwargs[a] for a in impl.argnames])
            except Exception as exc:
                errors.append((impl.plugin_name, "hotsync_detect", _describe(exc)))
                self._hook_error(*errors[-1])
                answer = False
            active[impl.plugin_name] = answer is None or bool(answer)
        for name, info in self.infos.items():
            info.active = active.get(name, False)
        if key is not None and self.detect_memo is not None:     # key: only with a memo
            self.detect_memo[key] = (dict(active), errors)
        return active

    def _hook_error(self, plugin: str, hook: str, error: str) -> None:
        if (plugin, hook, error) not in self.hook_errors:
            self.hook_errors.append((plugin, hook, error))

    def collect(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a registration hook plugin by plugin; return ``[(plugin name, item), ...]``.

        Only active plugins are asked (see :meth:`detect`; the root is ``kwargs["root"]``, else
        :attr:`root`, else the one the ``db`` argument lives in, else ``$HOTSYNC_ROOT``). A plugin whose
        hook raises is recorded in :attr:`hook_errors` and contributes nothing; the others are not
        affected.
        """
        caller = getattr(self.hook, hook_name)
        out: list[tuple[str, Any]] = []
        kwargs["root"] = _root_for(self, kwargs.get("root"), kwargs.get("db"))   # every hook may take the root
        active = None if hook_name == "hotsync_detect" else self.detect(kwargs["root"], kwargs.get("db"))
        for impl in sorted(caller.get_hookimpls(), key=lambda i: i.plugin_name):
            if active is not None and not active.get(impl.plugin_name, True):
                continue
            try:
                result = impl.function(*[kwargs[a] for a in impl.argnames])
                items = list(result) if result is not None else []
            except Exception as exc:
                self._hook_error(impl.plugin_name, hook_name, _describe(exc))
                continue
            out.extend((impl.plugin_name, item) for item in items)
        return out

    def registered(self, hook_name: str, kind: type, *, root: Any = None, db: Any = None, what: str = "",
                   unique: tuple[str, ...] = ("name",), same_ok: bool = False) -> list[tuple[str, Any]]:
        """What the active plugins register through *hook_name*: ``[(plugin, item)]`` in
        :func:`registration_order`. The one collector of the core (actions, templates, services, dumps,
        promote steps all come through here).

        An item that is not a *kind* is that plugin's error: recorded in :attr:`hook_errors` (naming plugin
        and hook) and the plugin's items for this hook left out, as when its hook raises; the others are
        not affected. Two items with one value of an attribute in *unique* are a :class:`RegistrationError`
        naming both plugins (unless they are equal and *same_ok*: the second is then dropped).
        """
        what = what or kind.__name__.lower()
        out: list[tuple[str, Any]] = []
        bad: set[str] = set()
        for plugin, item in self.collect(hook_name, root=root, db=db):
            if not isinstance(item, kind):
                self._hook_error(plugin, hook_name, f"returned {item!r}, not a {kind.__name__}")
                bad.add(plugin)
            else:
                out.append((plugin, item))
        out = [(p, i) for p, i in out if p not in bad]
        seen: dict[tuple[str, Any], tuple[str, Any]] = {}
        kept: list[tuple[str, Any]] = []
        for plugin, item in out:
            dup = False
            for attr in unique:
                value = getattr(item, attr)
                have = seen.get((attr, value))
                if have is None:
                    seen[(attr, value)] = (plugin, item)
                elif same_ok and have[1] == item:
                    dup = True
                else:
                    who = f"plugin {have[0]} and plugin {plugin}" if have[0] != plugin else f"plugin {plugin} twice"
                    raise RegistrationError(f"two {what}s have the {attr} {value!r}: {who} ({hook_name}); rename one",
                                            hook=hook_name, plugins=tuple(dict.fromkeys((have[0], plugin))))
            if not dup:
                kept.append((plugin, item))
        return sorted(kept, key=lambda pi: (registration_order(pi[1]), pi[0]))


def _root_for(pm: HotsyncPluginManager, root: Any, db: Any):
    """The root a hook call is about: given, the manager's, the one *db* lives in, or $HOTSYNC_ROOT."""
    from hotsync_events.paths import Root, root_from

    if root is not None:
        return root if isinstance(root, Root) else Root(root)
    if pm.root is not None:
        return pm.root if isinstance(pm.root, Root) else Root(pm.root)
    path = getattr(db, "path", None)     # <root>/var/lib/hotsync/db/<name>
    if path is not None and len(path.parents) > 4 and path.parent.parts[-4:] == ("var", "lib", "hotsync", "db"):
        return Root(path.parents[4])
    return root_from(None)


def hook_problem(plugin: str, hook: str, error: str) -> str:
    """One line for an entry of :attr:`HotsyncPluginManager.hook_errors`, naming plugin and hook."""
    return f"plugin {plugin}: hook {hook} " + (error if error.startswith("returned ") else f"raised {error}")


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


def plugin_manager(root: Any) -> HotsyncPluginManager:
    """Built-in and installed plugins, the installed ones found through the root's entry-point cache."""
    from hotsync_events.entrypoints import entry_points

    pm = get_plugin_manager(entrypoints=False)
    pm.load_entrypoints(eps=entry_points("hotsync", root.state_dir / "cache"))
    pm.root = root   # plugins detect their application under this root
    return pm


def install_schemas(pm: HotsyncPluginManager, root) -> list[str]:
    """Install the plugins' configspec files under *root* (see :mod:`hotsync_events.configdb.schema`).

    Only changed files are rewritten; files of plugins that are gone are removed. Returns the problems
    found (a spec that does not parse, a clash), each naming the plugin.
    """
    from hotsync_events.fsutil import atomic_write
    from hotsync_events.configdb.schema import SchemaError, load, parse_spec

    problems: list[str] = []
    wanted: dict = {}
    for plugin, sf in pm.collect("hotsync_config_schema", root=root):   # detection looks at *root*
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
