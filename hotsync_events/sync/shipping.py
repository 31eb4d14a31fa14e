"""What a push ships and keeps out, and who asked for each path (``hotsync paths``, the fixtures).

The lists come from the sync's own list builder (:func:`hotsync_events.sync.lists.build_lists`), from the
active plugins' ``hotsync_sync_paths``, the files of their ``hotsync_dumps`` and the sysadmin's
``include.d``/``exclude.d``, so what this reports is what ``hotsync sync`` uses.
"""
from __future__ import annotations

from typing import Any

from hotsync_events.paths import Root

__all__ = ["shipping_plan"]


def shipping_plan(root: Root, pm: Any = None, db: Any = None) -> dict:
    """The paths report as a dict (the ``--json`` output). Host paths only, never the root's own path."""
    from hotsync_events.configdb import open_db
    from hotsync_events.manager import get_plugin_manager, install_schemas
    from hotsync_events.sync.lists import PROTECTED, build_lists

    if pm is None:
        pm = get_plugin_manager()
        if root.state_dir.is_dir():        # a report: nothing is created on a host that is not set up
            install_schemas(pm, root)
    pm.root = root
    if db is None:
        db = open_db("configuration", root, validate=False, journal=False, create=False)
    active = pm.detect(root, db)
    problems: list[str] = []
    dumps = sorted(pm.collect("hotsync_dumps", db=db, root=root), key=lambda t: (t[1].priority, t[1].name))
    dump_paths = [(d.path, f"dump {d.name} (plugin {p})") for p, d in dumps]
    realtime: dict[str, bool] = {}
    for _plugin, sp in pm.collect("hotsync_sync_paths", db=db, root=root):
        if not sp.exclude:
            key = "/" + "/".join(x for x in sp.path.split("/") if x not in ("", "."))
            realtime[key] = realtime.get(key, True) and sp.realtime
    try:
        lists = build_lists(root, db, pm, dump_paths)
    except ValueError as exc:
        problems.append(str(exc))
        lists = None
    problems += [f"plugin {p}: hook {h}: {e}" for p, h, e in pm.hook_errors]

    def who(origins: list[str]) -> list[str]:
        base = str(root.path).rstrip("/") + "/"
        return sorted({o.replace(base, "/", 1) if o.startswith(base) else o for o in origins})

    out = {
        "databases": (db.getprop("hotsync", "databases") or "enabled"),
        "include": [], "exclude": [], "protected": list(PROTECTED),
        "dumps": [{"name": d.name, "path": d.path, "plugin": p, "priority": d.priority,
                   "restore": d.restore is not None} for p, d in dumps],
        "plugins": {"active": sorted(n for n, a in active.items() if a),
                    "inactive": sorted(n for n, a in active.items() if not a)},
        "problems": problems, "warnings": [],
    }
    if lists is not None:
        base = str(root.path).rstrip("/") + "/"
        problems += [p.replace(base, "/") for p in lists.problems]    # lines left out: bad, or refused areas
        out["warnings"] = [w.replace(base, "/") for w in lists.warnings]
        ex_origins = getattr(lists, "exclude_origins", {})
        out["include"] = [{"path": p, "from": who(lists.origins.get(p, [])), "realtime": realtime.get(p, False),
                           "exists": root.join(p).exists()} for p in lists.includes]
        out["exclude"] = [{"pattern": x, "from": who(ex_origins.get(x, []))} for x in lists.excludes]
    return out
