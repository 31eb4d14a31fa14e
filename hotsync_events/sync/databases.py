"""Taking and restoring the plugins' database dumps (hook ``hotsync_dumps``), for the sync and the promote.

The core knows no database engine: plugins return :class:`~hotsync_events.types.Dump` objects and this
module runs them in ``(priority, name)`` order. The sync calls :func:`take_dumps` before a push (unless
``hotsync databases`` is disabled); ``hotsync restore-databases`` and the promote call :func:`restore_all`.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from hotsync_events.childproc import alive
from hotsync_events.fsutil import fsync_dir
from hotsync_events.paths import Root
from hotsync_events.types import Dump, DumpContext, run_failure

__all__ = ["DumpsError", "collect_dumps", "databases_enabled", "plan", "restore_all", "take_dump", "take_dumps"]


class DumpsError(Exception):
    """A dump or restore problem, with the dump's name and the cause."""


def databases_enabled(db) -> bool:
    return (db.getprop("hotsync", "databases") or "enabled") != "disabled"


def collect_dumps(pm, db, root: Root | None = None) -> list[tuple[str, Dump]]:
    """``[(plugin, Dump)]`` in (priority, name) order; two dumps with one name or one path is a
    :class:`~hotsync_events.manager.RegistrationError` naming both plugins."""
    return pm.registered("hotsync_dumps", Dump, root=root, db=db, unique=("name", "path"))


def private_dir(path: Path) -> None:
    """*path* and the directories the core makes above it, private to root (0700) from creation."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700)
    os.chmod(path, 0o700)


def take_dump(root: Root, db, plugin: str, dump: Dump, *, log: Callable[[str], None] = print) -> None:
    """Run one plugin's dump, private and whole whatever the plugin does; DumpsError names the dump and why.

    ``ctx.target`` is a fresh temp file beside the dump's place (not created yet): the plugin writes the
    dump there. Only when ``run`` succeeded (:func:`~hotsync_events.types.run_failure`) and wrote a file
    does the core fsync it, make it 0600 and rename it over the last good dump; otherwise the temp file is
    removed and the last good dump stays. The dump's directory is made 0700 before the plugin runs and the
    plugin runs with umask 077 (every temp file and staging directory it makes is private from creation).
    """
    final = root.join(dump.path)
    private_dir(final.parent)
    for stale in final.parent.glob(f".{final.name}.hotsync-dump-*"):   # left by a killed sync
        pid = stale.name.rpartition("-")[2]
        if pid.isdigit() and (int(pid) == os.getpid() or not alive(pid)):
            _remove(stale)
    tmp = final.with_name(f".{final.name}.hotsync-dump-{os.getpid()}")
    old = os.umask(0o077)
    try:
        # the plugin's lines name the dump's place, not the staging file it writes first
        failure = run_failure(dump.run(DumpContext(root=root, db=db, target=tmp,
                                                   log=lambda line: log(line.replace(str(tmp), str(final))))))
    except Exception as exc:
        _remove(tmp)
        raise DumpsError(f"dump {dump.name} (plugin {plugin}) failed: {exc}") from exc
    finally:
        os.umask(old)
    if failure:
        _remove(tmp)
        raise DumpsError(f"dump {dump.name} (plugin {plugin}) failed ({failure})")
    if tmp.is_symlink() or not tmp.is_file():
        _remove(tmp)
        raise DumpsError(f"dump {dump.name} (plugin {plugin}) wrote no file to ctx.target ({tmp}): the last good "
                         "dump is kept")
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def take_dumps(root: Root, db, pm, *, log: Callable[[str], None] = print,
               dumps: list[tuple[str, Dump]] | None = None) -> list[str]:
    """Run every dump (master side): the one path the sync takes before each push.

    Returns the errors, one per failed dump (and one per plugin whose ``hotsync_dumps`` failed); the other
    dumps still run. *dumps* is :func:`collect_dumps`' answer when the caller has it already.
    """
    if dumps is None:
        dumps = collect_dumps(pm, db, root)
    errors = [f"plugin {p}: hook {h}: {e}" for p, h, e in pm.hook_errors if h == "hotsync_dumps"]
    for plugin, dump in dumps:
        try:
            take_dump(root, db, plugin, dump, log=log)
        except DumpsError as exc:
            if dump.at_promote:
                errors.append(str(exc))
            else:     # a backup beside a replica: the push goes on (the replica is the copy that takes over)
                log(f"hotsync sync: warning: the backup beside the replica failed, the last good one is kept: {exc}")
    return errors


def plan(root: Root, *, only: list[str] | None = None, pm=None, db=None) -> list[tuple[str, Dump, bool]]:
    """``[(plugin, Dump, shipped)]`` this host would restore; *only* keeps the named dumps."""
    from hotsync_events.configdb import open_db
    from hotsync_events.manager import get_plugin_manager, install_schemas

    pm = pm or get_plugin_manager()
    if db is None:
        install_schemas(pm, root)
        db = open_db("configuration", root)
    dumps = collect_dumps(pm, db, root)
    broken = [f"plugin {p}: {h}: {e}" for p, h, e in pm.hook_errors if h in ("hotsync_dumps", "hotsync_detect")]
    if broken:
        raise DumpsError("cannot tell which dumps to restore: " + "; ".join(broken))
    if only:
        unknown = sorted(set(only) - {d.name for _, d in dumps})
        if unknown:
            raise DumpsError(f"no dump named {', '.join(unknown)}; known: "
                             + (", ".join(d.name for _, d in dumps) or "none"))
        dumps = [(p, d) for p, d in dumps if d.name in only]
    return [(p, d, root.join(d.path).is_file()) for p, d in dumps]


def restore_all(root: Root, planned, *, db=None, log: Callable[[str], None] = print,
                err: Callable[[str], None] = print) -> list[str]:
    """Restore each shipped dump; a dump that was never shipped is reported and skipped.

    Returns the names of the dumps that failed (each failure is reported through *err*).
    """
    from hotsync_events.configdb import open_db

    db = db if db is not None else open_db("configuration", root)
    failed: list[str] = []
    for plugin, dump, shipped in planned:
        target: Path = root.join(dump.path)
        if dump.restore is None:
            log(f"{dump.name}: plugin {plugin} gives no restore step, skipped")
            continue
        if not shipped:
            log(f"{dump.name}: no dump at {dump.path} (nothing shipped yet, or databases disabled), skipped")
            continue
        try:
            failure = run_failure(dump.restore(DumpContext(root=root, db=db, target=target, log=log)))
        except Exception as exc:
            failure = str(exc)
        if failure:
            err(f"{dump.name}: restore failed: {failure}")
            failed.append(dump.name)
    return failed
