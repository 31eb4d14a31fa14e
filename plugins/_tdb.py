"""Consistent copies of Samba's TDB/LDB databases with ``tdbbackup`` (Debian package tdb-tools).

A plain file copy of a ``.tdb``/``.ldb`` that smbd or samba is writing can be torn. ``tdbbackup`` takes
the database's transaction lock and writes a consistent copy, as Samba's own ``samba_backup`` script
does. The dump is one tar file of those copies, each checked with ``tdbtool <copy> check`` before it is
kept; the restore puts every copy back atomically (temp name, rename), with the Samba daemons stopped.
Each file is consistent on its own; Samba keeps no cross-file transactions between them either.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hotsync_events import atomic_write

from ._common import run_tool

__all__ = ["PATTERNS", "dump_tdbs", "restore_tdbs", "tdb_files"]

#: the live database files the dump replaces in the sync (they are excluded from the file copy)
PATTERNS = ("*.tdb", "*.ldb")
_SUFFIX = ".hotsync-tdbbackup"


def tdb_files(root: Any, dirs: Iterable[str]) -> list[tuple[str, Path]]:
    """``[(host dir, file), ...]``: every .tdb/.ldb below the host directories *dirs*, sorted."""
    out = []
    for d in dirs:
        top = root.join(d)
        if not top.is_dir():
            continue
        for dirpath, dirnames, files in os.walk(top):
            dirnames.sort()
            for f in sorted(files):
                if f.endswith((".tdb", ".ldb")):
                    out.append((d, Path(dirpath) / f))
    return out


def dump_tdbs(root: Any, dirs: Iterable[str], target: Path, log=print) -> int:
    """Back up every database below *dirs* into the tar file *target*; return how many.

    The tar members are named ``<host dir>/<path below it>``. A copy that ``tdbtool check`` does not
    pass fails the dump and leaves the previous *target* as it was.
    """
    import tarfile   # here: the plugins load at every command, a dump is rare

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    found = tdb_files(root, dirs)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".tdbdump-") as tmp:
        tar_tmp = Path(tmp) / "dump.tar"
        with tarfile.open(tar_tmp, "w") as tar:
            for d, f in found:
                copy = f.with_name(f.name + _SUFFIX)
                try:
                    run_tool(["tdbbackup", "-s", _SUFFIX, str(f)])
                    check = run_tool(["tdbtool", str(copy), "check"]).stdout
                    if "integrity is OK" not in check:
                        raise RuntimeError(f"tdbtool check of the copy of {f}: {check.strip() or 'no answer'}")
                    arcname = d.strip("/") + "/" + f.relative_to(root.join(d)).as_posix()
                    tar.add(copy, arcname=arcname, recursive=False)
                finally:
                    copy.unlink(missing_ok=True)
        atomic_write(target, tar_tmp.read_bytes(), mode=0o600)
    log(f"{len(found)} TDB/LDB databases copied with tdbbackup into {target}")
    return len(found)


def restore_tdbs(root: Any, dump: Path, log=print) -> int:
    """Put every database of the tar *dump* back under *root*; return how many.

    Each file is written to a temp name beside its place and renamed over it, keeping the mode the
    copy had. Members that would leave the root are refused.
    """
    import tarfile

    n = 0
    with tarfile.open(dump, "r") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            dest = root.join("/" + member.name)          # RootError if it climbs out
            data = tar.extractfile(member).read()         # type: ignore[union-attr]
            atomic_write(dest, data, mode=member.mode & 0o7777)
            n += 1
    log(f"{n} TDB/LDB databases restored from {dump}")
    return n
