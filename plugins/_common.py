"""Small helpers the built-in plugins share: presence tests, service records, owners, tools.

Private to ``hotsync_plugins`` (the leading underscore keeps it out of BUILTIN_PLUGINS); a third-party
plugin copies what it needs. Nothing here knows an application: the plugin modules say which paths,
users and tools they mean. Every path is a host path resolved under the root; every command is an
argument list.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hotsync_events.types import ActionContext, Service

__all__ = ["chown_tree", "databases_enabled", "enabled", "fix_owners", "has_key", "present", "run_tool",
           "service", "tool"]


def present(root: Any, *paths: str) -> bool:
    """True when any of *paths* (host paths) exists under *root* (a dangling symlink counts)."""
    for p in paths:
        target = root.join(p)
        if target.exists() or target.is_symlink():
            return True
    return False


def has_key(db: Any, *keys: str) -> bool:
    """True when the configuration database has any of *keys*."""
    return db is not None and any(k in db for k in keys)


def enabled(db: Any, key: str, default: str = "enabled") -> bool:
    """Whether the e-smith service record *key* has ``status enabled`` (a missing record: *default*)."""
    return db.getprop(key, "status", default) == "enabled"


def databases_enabled(db: Any) -> bool:
    """``config setprop hotsync databases disabled`` turns every dump off (NethServer's DATABASES)."""
    return db.getprop("hotsync", "databases", "enabled") != "disabled"


def service(db: Any, name: str, *, unit: str | None = None, key: str | None = None, writer: bool = False,
            events: dict[str, str] | None = None, command: Iterable[str] | None = None) -> Service:
    """A Service whose ``enabled`` follows the e-smith record *key* (default: *name*)."""
    return Service(name=name, unit=unit or f"{name}.service", command=tuple(command) if command else None,
                   events=dict(events or {}), enabled=enabled(db, key or name), writer=writer)


def _ids(root: Any, user: str, group: str | None) -> tuple[int, int]:
    """uid and gid of *user*/*group* as the host under *root* knows them (its etc/passwd and etc/group)."""
    def lookup(fname: str, name: str, field: int) -> int | None:
        try:
            lines = root.join(fname).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return None
        for line in lines:
            parts = line.split(":")
            if len(parts) > field and parts[0] == name:
                return int(parts[field])
        return None

    uid = lookup("/etc/passwd", user, 2)
    if uid is None:
        raise LookupError(f"user {user!r} is not in {root.join('/etc/passwd')}")
    if group is None:
        gid = lookup("/etc/passwd", user, 3)
    else:
        gid = lookup("/etc/group", group, 2)
        if gid is None:
            raise LookupError(f"group {group!r} is not in {root.join('/etc/group')}")
    return uid, int(gid)  # type: ignore[arg-type]


def chown_tree(root: Any, path: str, user: str, group: str | None = None, *, recursive: bool = True) -> int:
    """Give *path* (and, if *recursive*, all below it, symlinks themselves) to *user*:*group*.

    The names are looked up in the root's own passwd/group files, since a slave's ids may differ from
    the master's. Returns how many entries were changed; a missing path changes nothing.
    """
    top = root.join(path)
    if not (top.exists() or top.is_symlink()):
        return 0
    uid, gid = _ids(root, user, group)
    changed = 0
    todo = [top]
    if recursive and top.is_dir() and not top.is_symlink():
        todo.extend(Path(d) / n for d, dirs, files in os.walk(top) for n in dirs + files)
    for p in todo:
        st = p.lstat()
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.lchown(p, uid, gid)
            changed += 1
    return changed


def fix_owners(specs: Iterable[tuple[str, str, str | None, bool]]) -> Callable[[ActionContext], None]:
    """A promote step / action body that runs :func:`chown_tree` for each (path, user, group, recursive).

    Entries whose path is absent are skipped; an unknown user fails the step, naming it.
    """
    specs = tuple(specs)

    def run(ctx: ActionContext) -> None:
        for path, user, group, recursive in specs:
            n = chown_tree(ctx.root, path, user, group, recursive=recursive)
            if n:
                ctx.log(f"{path}: {n} entries given to {user}:{group or user}")
    return run


def tool(name: str) -> str:
    """The full path of the program *name* (PATH, then the sbin directories), or a clear error."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")
    if not found:
        raise FileNotFoundError(f"{name} is not installed on this host (it is needed to dump or restore)")
    return found


def run_tool(argv: list[str], *, timeout: float = 600, **kw: Any) -> subprocess.CompletedProcess:
    """Run *argv* (no shell); a non-zero exit raises RuntimeError carrying the tool's own message."""
    cp = subprocess.run([tool(argv[0]), *argv[1:]], capture_output=True, text=True, timeout=timeout, **kw)
    if cp.returncode != 0:
        msg = (cp.stderr or cp.stdout).strip().splitlines()
        raise RuntimeError(f"{argv[0]} exited {cp.returncode}: {' / '.join(msg[-3:]) or 'no message'}")
    return cp
