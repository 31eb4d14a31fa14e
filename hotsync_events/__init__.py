"""hotsync_events: an e-smith style configuration database, ``signal-event`` and master/slave sync.

Plugins are pluggy plugins of the project ``hotsync``: the marker name, the entry-point group and the
hook prefix are all ``hotsync``. A third-party plugin is a module with functions such as::

    from hotsync_events import Action, hookimpl

    @hookimpl
    def hotsync_actions(db, root):
        yield Action(event="nethserver-hotsync-save", name="myapp-conf", priority=40, run=_configure)

registered in its distribution's metadata as ``entry_points={"hotsync": ["myapp = hotsync_myapp"]}``.

The public API (docs/plugins.md, "Public API") is what ``__all__`` names here, plus the database kit
:mod:`hotsync_events.dbkit` and the test fixtures :mod:`hotsync_events.testing`. Everything else is the
core's own and may change; the built-in plugins use nothing else.

This module stays import-light: ``config getprop`` imports it, so pluggy, the types and the file helpers
are loaded only when one of them is asked for (PEP 562).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

NAME = "hotsync"
__version__ = "0.1.0"

if TYPE_CHECKING:
    from hotsync_events.fsutil import atomic_write
    from hotsync_events.paths import Root
    from hotsync_events.types import (Action, ActionContext, Dump, DumpContext, HealthCheck, PromoteStep, SchemaFile,
                                      Service, SyncPath, Template, run_failure)

__all__ = ["NAME", "Action", "ActionContext", "Dump", "DumpContext", "HealthCheck", "PromoteStep", "Root", "SchemaFile",
           "Service", "SyncPath", "Template", "__version__", "atomic_write", "hookimpl", "hookspec", "run_failure"]

_LAZY = {"Action": "types", "ActionContext": "types", "Dump": "types", "DumpContext": "types", "HealthCheck": "types",
         "PromoteStep": "types", "SchemaFile": "types", "Service": "types", "SyncPath": "types",
         "Template": "types", "run_failure": "types", "Root": "paths", "atomic_write": "fsutil"}


def __getattr__(attr: str) -> Any:   # PEP 562: keep pluggy and the rest out of the config CLI's start-up
    if attr in ("hookimpl", "hookspec"):
        import pluggy

        marker = pluggy.HookimplMarker(NAME) if attr == "hookimpl" else pluggy.HookspecMarker(NAME)
        globals()[attr] = marker
        return marker
    if attr in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"hotsync_events.{_LAZY[attr]}"), attr)
        globals()[attr] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
