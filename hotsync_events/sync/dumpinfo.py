"""What database dumps this host has: each dump the active plugins declare, whether its file is there,
when it was taken and how big it is (``hotsync dumps``, the Cockpit page's dashboard).

On the master the file is the last good dump the sync took; on the slave it is the copy the last push
shipped (rsync keeps the master's time, so its age is the replica's lag behind the master).
"""
from __future__ import annotations

import time

from hotsync_events.paths import Root

__all__ = ["dump_files"]


def dump_files(root: Root, pm, db, now: float | None = None) -> dict:
    """``{"enabled": bool, "dumps": [{"name", "plugin", "path", "exists", "time", "age", "size"}], "error"}``."""
    from hotsync_events.sync.databases import DumpsError, collect_dumps, databases_enabled
    from hotsync_events.manager import RegistrationError

    now = time.time() if now is None else now
    out: dict = {"enabled": databases_enabled(db), "dumps": [], "error": None}
    try:
        items = collect_dumps(pm, db)
    except (DumpsError, RegistrationError) as exc:
        out["error"] = str(exc)
        return out
    for plugin, dump in items:
        entry = {"name": dump.name, "plugin": plugin, "path": dump.path, "exists": False, "time": None, "age": None,
                 "size": None}
        try:
            st = root.join(dump.path).stat()
        except OSError:
            pass
        else:
            entry.update(exists=True, time=st.st_mtime, age=max(now - st.st_mtime, 0.0), size=st.st_size)
        out["dumps"].append(entry)
    return out
