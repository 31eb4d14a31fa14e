"""What a push ships and what it never touches.

Includes come from the plugins (``hotsync_sync_paths``), the dumps they declare (``hotsync_dumps``) and
the sysadmin's ``<root>/etc/hotsync/include.d/*.include`` (one host path a line, as NethServer's
``backup-data.d``); excludes from the plugins and ``exclude.d/*.exclude`` (rsync patterns, an absolute
path anchored at ``/``). :data:`PROTECTED` is always excluded: the areas a push never writes on the slave
(:data:`hotsync_events.sync.policy.REFUSED`: this host's own HotSync state, and whatever runs code as root),
which the slave refuses on its own side too. An include inside one of them is not shipped: it is reported
(:attr:`Lists.problems`) and the push goes on with the rest. The master's database travels separately,
through its own channel (:mod:`hotsync_events.sync.peercopy`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hotsync_events.paths import Root
from hotsync_events.sync.policy import REFUSED, refusal_of, sender_rules

__all__ = ["Lists", "ListError", "PROTECTED", "PEER_DIR", "build_lists", "list_stamp", "read_list_dir"]

#: where the master's config database lands on the slave (host path)
PEER_DIR = "/var/lib/hotsync/peer"

#: never shipped, and never deleted on the slave (rsync does not delete excluded files): the refused areas
#: and rsync's own partial directories
PARTIAL = ".hotsync-partial/"
PROTECTED = (*(a.path for a in REFUSED), PARTIAL)


class ListError(ValueError):
    """A line of an include/exclude list that cannot be used (names the file and the line)."""


@dataclass
class Lists:
    includes: list[str] = field(default_factory=list)     # host paths, sorted, unique
    excludes: list[str] = field(default_factory=list)     # rsync patterns, in order
    origins: dict[str, list[str]] = field(default_factory=dict)   # include -> who asked for it
    exclude_origins: dict[str, list[str]] = field(default_factory=dict)   # exclude -> who asked for it
    problems: list[str] = field(default_factory=list)    # lines left out, each naming its file and line
    warnings: list[str] = field(default_factory=list)    # files the lists do not read (a wrong suffix)

    def add_include(self, path: str, origin: str) -> None:
        path = _clean_path(path, origin)
        area = refusal_of(path)
        if area is not None:
            self.problems.append(f"{origin}: {path} is not shipped: the slave never accepts {area.path} "
                                 f"({area.why}); see docs/security.md")
            return
        if path not in self.origins:
            self.includes.append(path)
        self.origins.setdefault(path, []).append(origin)

    def add_exclude(self, pattern: str, origin: str) -> None:
        if not pattern or "\n" in pattern or "\r" in pattern or "\0" in pattern:
            raise ListError(f"{origin}: exclude pattern {pattern!r} must be one non-empty line")
        if pattern not in self.excludes:
            self.excludes.append(pattern)
        self.exclude_origins.setdefault(pattern, []).append(origin)

    def filter_rules(self) -> list[str]:
        """The push's filter rules, first match wins: the refused areas (but the dumps), rsync's partial
        directories, then the lists' excludes (each ``- pattern``: the prefix keeps a pattern that starts
        with ``+ `` an exclude)."""
        return [*sender_rules(self.includes), f"- {PARTIAL}", *(f"- {p}" for p in self.excludes)]

    def exclude_file_text(self) -> str:
        """The ``--exclude-from`` file: :meth:`filter_rules`, one a line."""
        return "".join(f"{r}\n" for r in self.filter_rules())


def _clean_path(path: str, origin: str) -> str:
    if not isinstance(path, str) or not path.startswith("/") or "\n" in path or "\0" in path:
        raise ListError(f"{origin}: include {path!r} is not an absolute path on one line")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ListError(f"{origin}: include {path!r} climbs with '..'")
    if not parts:
        raise ListError(f"{origin}: include '/' would ship the whole host; name the directories instead")
    return "/" + "/".join(parts)


def read_list_dir(directory: Path, suffix: str) -> list[tuple[str, str]]:
    """``[(line, "file:lineno"), ...]`` of every ``*<suffix>`` file, sorted; blank and ``#`` lines skipped."""
    out: list[tuple[str, str]] = []
    if not directory.is_dir():
        return out
    for f in sorted(directory.glob(f"*{suffix}")):
        if not f.is_file():
            continue
        text = f.read_text(encoding="utf-8", errors="surrogateescape")
        for n, line in enumerate(text.splitlines(), 1):
            line = line.rstrip("\r")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            out.append((line.strip(), f"{f}:{n}"))
    return out


def list_stamp(root: Root) -> tuple:
    """A cheap fingerprint of the sysadmin's lists (names, sizes and times of the files and their
    directories): the notifier rebuilds what it watches when it moves."""
    out: list[tuple] = []
    for sub in ("include.d", "exclude.d"):
        d = root.etc_dir / sub
        try:
            st = d.stat()
        except OSError:
            out.append((sub, None))
            continue
        out.append((sub, st.st_mtime_ns))
        for f in sorted(d.iterdir()):
            try:
                fs = f.stat()
                out.append((f.name, fs.st_size, fs.st_mtime_ns))
            except OSError:
                continue
    return tuple(out)


def _misnamed(directory: Path, suffix: str) -> list[str]:
    """Files in a list directory that the lists do not read (another suffix): a warning each."""
    if not directory.is_dir():
        return []
    return [f"{f}: not read (the lists read *{suffix} files only); rename it to end in {suffix}"
            for f in sorted(directory.iterdir()) if f.is_file() and not f.name.endswith(suffix)
            and not f.name.endswith((".pre-promote", "~")) and not f.name.startswith(".")]


def build_lists(root: Root, db, pm=None, dump_paths: Sequence[tuple[str, str]] = ()) -> Lists:
    """Merge the plugins' paths, the dumps and the sysadmin's lists.

    A bad line of a sysadmin's list does not stop the rest: it is left out and reported in
    :attr:`Lists.problems` with its file and line, every bad line of every list at once (the push then
    counts as failed); a plugin's bad path raises ListError naming the plugin.
    """
    lists = Lists()
    if pm is not None:
        for plugin, sp in sorted(pm.collect("hotsync_sync_paths", db=db, root=root),
                                 key=lambda t: (t[1].exclude, t[1].path, t[0])):
            if sp.exclude:
                lists.add_exclude(sp.path, f"plugin {plugin}")
            else:
                lists.add_include(sp.path, f"plugin {plugin}")
    for path, origin in dump_paths:
        lists.add_include(path, origin)
    etc = root.etc_dir
    for line, where in read_list_dir(etc / "include.d", ".include"):
        try:
            lists.add_include(line, where)
        except ListError as exc:
            lists.problems.append(str(exc))
    for line, where in read_list_dir(etc / "exclude.d", ".exclude"):
        try:
            lists.add_exclude(line, where)
        except ListError as exc:
            lists.problems.append(str(exc))
    lists.warnings += _misnamed(etc / "include.d", ".include") + _misnamed(etc / "exclude.d", ".exclude")
    lists.includes.sort()
    return lists
