"""Where a re-pair saves what an old master diverged by: a dated folder, filled privately, then published whole
(:func:`saved_folder`, :func:`publish`), found again by an interrupted re-pair (:func:`find_saved`)."""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hotsync_events.childproc import alive
from hotsync_events.fsutil import fsync_dir

__all__ = ["dated_folder", "find_saved", "publish", "saved_folder", "sha256_file"]


def dated_folder(base: Path, engine: str, when: float | None = None) -> Path:
    """``<base>/<UTC date-time>-<engine>``: where a re-pair saves what the old master diverged by."""
    stamp = _dt.datetime.fromtimestamp(when if when is not None else time.time(), _dt.UTC)
    return base / f"{stamp.strftime('%Y-%m-%dT%H%M%SZ')}-{engine}"


@contextmanager
def saved_folder(target: Path) -> Iterator[Path]:
    """A private (0700) temp folder beside *target*, removed after unless :func:`publish` renamed it to
    *target*: a re-pair cut short leaves no half-saved folder under the dated name (temp folders of
    dead processes are removed on entry)."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        pid = stale.name.rpartition("-")[2]
        if pid.isdigit() and not alive(pid):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(tmp: Path, target: Path) -> Path:
    """fsync every file in *tmp*, rename it to *target* (or the first free *target*-N); the final path."""
    for p in sorted(tmp.rglob("*")):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for d in sorted({p.parent for p in tmp.rglob("*")} | {tmp}, key=lambda p: -len(p.parts)):
        fsync_dir(d)
    final = target
    for n in range(2, 1000):
        if not final.exists():
            break
        final = target.with_name(f"{target.name}-{n}")
    os.rename(tmp, final)
    fsync_dir(final.parent)
    return final


def find_saved(target: Path, **same) -> tuple[Path, dict] | None:
    """A folder an earlier (interrupted) re-pair already saved for the same divergence: *target* or
    *target*-N whose report.json has the values *same*; then nothing is saved twice."""
    import json

    for cand in [target, *sorted(target.parent.glob(target.name + "-*"))]:
        try:
            report = json.loads((cand / "report.json").read_text())
        except (OSError, ValueError):
            continue
        if all(report.get(k) == v for k, v in same.items()):
            return cand, report
    return None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
