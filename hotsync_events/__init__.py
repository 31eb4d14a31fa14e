"""hotsync_events: an e-smith style configuration database, ``signal-event`` and master/slave sync.

Plugins are pluggy plugins of the project ``hotsync``: the marker name, the entry-point group and the
hook prefix are all ``hotsync``. A third-party plugin is a module with functions such as::

    from hotsync_events import hookimpl
    from hotsync_events.types import Action

    @hookimpl
    def hotsync_actions(db):
        yield Action(event="nethserver-hotsync-save", name="myapp-conf", priority=40, run=_configure)

registered in its distribution's metadata as ``entry_points={"hotsync": ["myapp = hotsync_myapp"]}``.

This module stays import-light: ``config getprop`` imports it, so pluggy is only loaded when a hook
marker is asked for.
"""
from __future__ import annotations

NAME = "hotsync"
__version__ = "0.1.0"

__all__ = ["NAME", "__version__", "hookimpl", "hookspec"]


def __getattr__(attr: str):  # PEP 562: keep pluggy out of the config CLI's start-up
    if attr in ("hookimpl", "hookspec"):
        import pluggy

        marker = pluggy.HookimplMarker(NAME) if attr == "hookimpl" else pluggy.HookspecMarker(NAME)
        globals()[attr] = marker
        return marker
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
