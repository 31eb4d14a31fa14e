"""The sysadmin's include/exclude lists travel with every push, and are installed at promote.

``<root>/etc/hotsync/include.d/*.include`` and ``exclude.d/*.exclude`` say what the pair pushes: they are
configuration of the pair, like the config database. Each push ships a copy beside the database, under
the slave's ``var/lib/hotsync/peer/lists/{include.d,exclude.d}/`` (:func:`export_lists`), **not** in place:

* a slave is passive and never reads that copy, so a push cannot change what the slave would push, and
  cannot overwrite or delete the slave's own ``/etc/hotsync`` lists (the ``--delete`` of a push stays
  inside the peer directory);
* ``hotsync-promote``'s ``config`` phase installs it (:func:`install_lists`): every shipped list file
  lands in ``etc/hotsync/<kind>.d/``; a file of this host with the same name and other content is kept
  beside it as ``<name>.pre-promote`` (a name the lists' glob does not read); this host's files that
  the master did not have stay (the new master pushes at least what the old one did). Running it again
  changes nothing more.

An empty shipped directory means "the master had no lists"; a missing one (a master of an older version)
leaves this host's lists as they are.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from hotsync_events.fsutil import atomic_write
from hotsync_events.paths import Root

__all__ = ["KINDS", "LISTS_SUBDIR", "PRE_PROMOTE", "export_lists", "install_lists", "list_files"]

#: (directory under etc/hotsync, file suffix), as :func:`hotsync_events.sync.lists.build_lists` reads them
KINDS = (("include.d", ".include"), ("exclude.d", ".exclude"))
#: under the peer directory (``var/lib/hotsync/peer/lists``)
LISTS_SUBDIR = "lists"
#: suffix of a host's own list file replaced at promote
PRE_PROMOTE = ".pre-promote"


def list_files(directory: Path, suffix: str) -> list[Path]:
    """The regular files of *directory* that the lists read (``*<suffix>``), sorted."""
    if not directory.is_dir():
        return []
    return sorted(f for f in directory.glob(f"*{suffix}") if f.is_file() and not f.is_symlink())


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def export_lists(root: Root, peer_target: Path) -> list[str]:
    """Mirror this host's lists into ``<peer_target>/lists/`` (only changed files are rewritten, stale
    ones removed); the names shipped, as ``include.d/x.include``."""
    shipped = []
    for kind, suffix in KINDS:
        src_dir = root.etc_dir / kind
        dest_dir = peer_target / LISTS_SUBDIR / kind
        dest_dir.mkdir(parents=True, exist_ok=True)
        wanted = set()
        for f in list_files(src_dir, suffix):
            data = f.read_bytes()
            mode = _mode(f)
            dest = dest_dir / f.name
            wanted.add(f.name)
            shipped.append(f"{kind}/{f.name}")
            try:
                same = dest.read_bytes() == data and _mode(dest) == mode
            except OSError:
                same = False
            if not same:
                atomic_write(dest, data, mode=mode)
        for f in dest_dir.iterdir():
            if f.name not in wanted:
                if f.is_dir() and not f.is_symlink():
                    shutil.rmtree(f)
                else:
                    f.unlink()
    return shipped


def install_lists(root: Root, peer_dir: Path, log: Callable[[str], None] = print) -> dict:
    """Install the shipped lists into this host's ``etc/hotsync`` (see the module doc).

    Returns ``{"installed": [...], "unchanged": [...], "kept_aside": [...], "kept_own": [...]}`` (names
    as ``include.d/x.include``), or ``{"shipped": False}`` when the master shipped no lists.
    """
    shipped_top = peer_dir / LISTS_SUBDIR
    if not shipped_top.is_dir():
        log("  lists: the master shipped no include/exclude lists (an older version?); this host's are kept")
        return {"shipped": False}
    out: dict = {"shipped": True, "installed": [], "unchanged": [], "kept_aside": [], "kept_own": []}
    for kind, suffix in KINDS:
        here = root.etc_dir / kind
        theirs = list_files(shipped_top / kind, suffix)
        names = {f.name for f in theirs}
        for f in theirs:
            data, mode = f.read_bytes(), _mode(f)
            dest = here / f.name
            name = f"{kind}/{f.name}"
            if dest.is_file() and not dest.is_symlink():
                mine = dest.read_bytes()
                if mine == data:
                    out["unchanged"].append(name)
                    continue
                atomic_write(dest.with_name(f.name + PRE_PROMOTE), mine, mode=_mode(dest))
                out["kept_aside"].append(name + PRE_PROMOTE)
            elif os.path.lexists(dest):
                # a symlink or a directory in the way: move it aside rather than write through it
                os.replace(dest, dest.with_name(f.name + PRE_PROMOTE))
                out["kept_aside"].append(name + PRE_PROMOTE)
            here.mkdir(parents=True, exist_ok=True)
            atomic_write(dest, data, mode=mode)
            out["installed"].append(name)
        out["kept_own"] += [f"{kind}/{f.name}" for f in list_files(here, suffix) if f.name not in names]
    log(f"  lists: {len(out['installed'])} of the master's include/exclude lists installed, "
        f"{len(out['unchanged'])} already the same"
        + (f"; this host's differing copies kept as {', '.join(out['kept_aside'])}" if out["kept_aside"] else "")
        + (f"; this host's own {', '.join(out['kept_own'])} kept (the master had no such list)"
           if out["kept_own"] else ""))
    return out
