"""The Cockpit page (``hotsync_events/cockpit/page/``: manifest.json, HTML, JS, CSS) and where it is installed.

Cockpit finds a package in ``<XDG data dir>/cockpit/<name>/manifest.json``; the system's data dir is
``/usr/share``, so the page goes to ``<root>/usr/share/cockpit/hotsync/`` (``hotsync cockpit install``).
The Debian package installs the same files there (docs/cockpit.md).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hotsync_events.paths import Root

__all__ = ["COCKPIT_DIR", "PACKAGE_FILES", "source_dir", "install", "uninstall", "installed_state"]

#: host path of the installed page
COCKPIT_DIR = "/usr/share/cockpit/hotsync"
#: the files of the page, as shipped
PACKAGE_FILES = ("manifest.json", "index.html", "hotsync.js", "hotsync.css")


def source_dir() -> Path:
    """The page's files in this installation (the wheel's or the checkout's)."""
    return Path(__file__).resolve().parent / "page"


def _target(root: Root, dest: str | os.PathLike | None) -> Path:
    return Path(dest) if dest else root.join(COCKPIT_DIR)


def installed_state(root: Root, dest=None) -> dict:
    """``{"path", "installed", "current"}``: is the page there, and is it this version's?"""
    target, src = _target(root, dest), source_dir()
    present = [n for n in PACKAGE_FILES if (target / n).is_file()]
    current = len(present) == len(PACKAGE_FILES) and all(
        (target / n).read_bytes() == (src / n).read_bytes() for n in PACKAGE_FILES)
    return {"path": str(target), "installed": bool(present), "current": current}


def install(root: Root, dest=None) -> Path:
    """Copy the page to *dest* (default ``<root>/usr/share/cockpit/hotsync``), replacing it whole: the new
    files are written beside it, then renamed over it. Returns the target."""
    target, src = _target(root, dest), source_dir()
    missing = [n for n in PACKAGE_FILES if not (src / n).is_file()]
    if missing:
        raise FileNotFoundError(f"the Cockpit page's files are missing from this installation: {', '.join(missing)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".hotsync-", dir=target.parent))
    try:
        for name in PACKAGE_FILES:
            shutil.copyfile(src / name, tmp / name)
            os.chmod(tmp / name, 0o644)
        os.chmod(tmp, 0o755)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def uninstall(root: Root, dest=None) -> bool:
    """Remove the installed page; False when there was none."""
    target = _target(root, dest)
    if not target.exists():
        return False
    shutil.rmtree(target)
    return True
