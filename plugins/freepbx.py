"""FreePBX (nethserver-freepbx, newer than 14.0.3): Asterisk's configuration, sounds, voicemail, databases.

HotSync's ``freepbx.sh`` ships ``/var/lib/asterisk``, ``/var/www/html/freepbx``, ``/etc/asterisk``,
``/etc/amportal.conf``, ``/etc/freepbx.conf``, ``/etc/freepbx_db.conf`` and ``/usr/sbin/fwconsole``
(a link to ``/var/lib/asterisk/bin/fwconsole``: a push never writes ``/usr/sbin``, which runs as root, so
the promote step ``freepbx-fwconsole`` makes the link on the new master);
the MariaDB databases ``asterisk`` and ``asteriskcdrdb`` travel as dumps (keep ``hotsync databases``
enabled for FreePBX, #6008) -- here inside the ``mysql`` plugin's dump of the system MariaDB -- loaded
before Asterisk restarts; ``fixperm`` gives it all back to
asterisk. Added here: voicemail and call recordings under ``/var/spool/asterisk``, and Asterisk's own
SQLite database ``astdb.sqlite3`` (device states, call forwards, DND), which Asterisk keeps open: it is
copied with SQLite's online backup instead of as a file, and put back at promote.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hotsync_events import hookimpl
from hotsync_events.types import Dump, PromoteStep, SyncPath

from ._common import databases_enabled, fix_owners, has_key, present, service
from hotsync_events.dbkit import DUMP_DIR

ASTDB = "/var/lib/asterisk/astdb.sqlite3"
ASTDB_DUMP = f"{DUMP_DIR}/freepbx-astdb.sqlite3"
PATHS = ("/var/lib/asterisk/", "/var/www/html/freepbx/", "/etc/asterisk/", "/etc/amportal.conf",
         "/etc/freepbx.conf", "/etc/freepbx_db.conf")
FWCONSOLE, FWCONSOLE_REAL = "/usr/sbin/fwconsole", "/var/lib/asterisk/bin/fwconsole"
SPOOL = ("/var/spool/asterisk/voicemail/", "/var/spool/asterisk/monitor/")


@hookimpl
def hotsync_detect(root, db):
    return present(root, "/etc/freepbx.conf", "/var/www/html/freepbx") or has_key(db, "freepbx")


@hookimpl
def hotsync_sync_paths(db):
    for p in PATHS + SPOOL:
        yield SyncPath(p)
    if databases_enabled(db):                     # the live file is replaced by its online backup
        for suffix in ("", "-journal", "-wal", "-shm"):
            yield SyncPath(ASTDB + suffix, exclude=True)


@hookimpl
def hotsync_dumps(db):
    yield Dump(name="freepbx-astdb", path=ASTDB_DUMP, run=_dump_astdb, restore=_restore_astdb, priority=60)


@hookimpl
def hotsync_services(db):
    yield service(db, "asterisk", writer=True, events={"post-restore-data": "restart"})


@hookimpl
def hotsync_promote_steps(db):
    yield PromoteStep("freepbx-fix-owners", fix_owners(
        [(p, "asterisk", "asterisk", p.endswith("/")) for p in PATHS + SPOOL]), priority=30)
    yield PromoteStep("freepbx-fwconsole", _link_fwconsole, priority=31)


def _link_fwconsole(ctx) -> None:
    """``/usr/sbin/fwconsole`` -> FreePBX's own copy in the shipped Asterisk tree (idempotent)."""
    link = ctx.root.join(FWCONSOLE)
    if os.path.lexists(link) or not ctx.root.join(FWCONSOLE_REAL).exists():
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(FWCONSOLE_REAL, link)
    ctx.log(f"{FWCONSOLE} -> {FWCONSOLE_REAL}")


def _copy_sqlite(src: Path, dest: Path) -> None:
    """SQLite's online backup of *src* into *dest* (temp file, integrity check, fsync, rename)."""
    import sqlite3

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    os.close(fd)
    try:
        with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as source, sqlite3.connect(tmp) as copy:
            source.backup(copy)
            ok = copy.execute("PRAGMA integrity_check").fetchone()[0]
        if ok != "ok":
            raise RuntimeError(f"the copy of {src} fails SQLite's integrity check: {ok}")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _dump_astdb(ctx):
    src = ctx.root.join(ASTDB)
    if not src.exists():
        ctx.log(f"{ASTDB} does not exist yet: nothing to dump")
        return None
    _copy_sqlite(src, Path(ctx.target))
    return None


def _restore_astdb(ctx):
    if Path(ctx.target).exists():
        _copy_sqlite(Path(ctx.target), ctx.root.join(ASTDB))
    return None
