"""The ``hotsync`` entry points, with a cache under the root so a command's start-up skips the scan.

``importlib.metadata`` reads every distribution on ``sys.path`` (and takes ~15 ms to import): fine for
``hotsync plugins``, too much for ``signal-event``, which runs on every configuration change. The cache,
``<root>/var/lib/hotsync/cache/entry-points`` (marshal: no import to read it), holds the group's entry points with the state it was
built from: the python version, ``sys.path`` (after the script's own directory), the modification time
of each of its directories (a distribution installed or removed changes it) and the stat of each contributing ``entry_points.txt``. Any
difference rebuilds it, so an installed plugin is seen on the next command. ``HOTSYNC_EP_CACHE=0``
turns it off.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["CachedEntryPoint", "entry_points"]


class _Dist:
    __slots__ = ("metadata", "version")

    def __init__(self, name: str, version: str) -> None:
        self.metadata = {"Name": name}
        self.version = version


class CachedEntryPoint:
    """Quacks like ``importlib.metadata.EntryPoint`` for what the plugin manager uses."""

    __slots__ = ("name", "value", "group", "dist")

    def __init__(self, name: str, value: str, group: str, dist_name: str, version: str) -> None:
        self.name, self.value, self.group = name, value, group
        self.dist = _Dist(dist_name, version)

    def load(self) -> Any:
        module, _, attr = self.value.partition(":")
        obj = importlib.import_module(module.strip())
        attr = attr.split("[")[0].strip()
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
        return obj


def _path_state() -> list:
    out = []
    # sys.path[0] is the script's directory (or the working directory): it changes with every temp file
    # in /tmp and holds no distributions; the rest is where distributions are installed
    for entry in sys.path[1:]:
        try:
            st = os.stat(entry or ".")
            out.append([entry, st.st_mtime_ns, st.st_size if not os.path.isdir(entry or ".") else 0])
        except OSError:
            out.append([entry, None, None])
    return out


def _file_state(paths: list[str]) -> list:
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append([p, st.st_ino, st.st_size, st.st_mtime_ns])
        except OSError:
            out.append([p, None, None, None])
    return out


def _scan(group: str) -> tuple[list[CachedEntryPoint], list[str]]:
    from importlib.metadata import entry_points as _eps

    found, files = [], []
    for ep in _eps(group=group):
        dist = getattr(ep, "dist", None)
        name = dist.metadata["Name"] if dist is not None else "unknown distribution"
        version = dist.version if dist is not None else ""
        found.append(CachedEntryPoint(ep.name, ep.value, group, name, version))
        base = getattr(dist, "_path", None)
        if base is not None:
            files.append(str(Path(base) / "entry_points.txt"))
    return found, sorted(set(files))


def entry_points(group: str, cache_dir: Path | None) -> list[CachedEntryPoint]:
    """The entry points of *group*, from the cache in *cache_dir* when it still describes this host."""
    import marshal

    if cache_dir is None or os.environ.get("HOTSYNC_EP_CACHE", "1") == "0":
        return _scan(group)[0]
    cache_file = Path(cache_dir) / "entry-points"
    state = [sys.version, group, _path_state()]
    try:
        cached = marshal.loads(cache_file.read_bytes())
        if cached["state"] == state and cached["files"] == _file_state(cached["paths"]):
            return [CachedEntryPoint(*e) for e in cached["eps"]]
    except (OSError, ValueError, EOFError, KeyError, TypeError, IndexError):
        pass
    eps, paths = _scan(group)
    data = {"state": state, "paths": paths, "files": _file_state(paths),
            "eps": [[e.name, e.value, e.group, e.dist.metadata["Name"], e.dist.version] for e in eps]}
    if not cache_file.parent.parent.is_dir():    # a host not set up: a cache is no reason to create its tree
        return eps
    try:
        from hotsync_events.fsutil import atomic_write

        atomic_write(cache_file, marshal.dumps(data), mode=0o644)
    except OSError:
        pass   # a read-only root: no cache, same answer
    return eps
