"""Nextcloud (nethserver-nextcloud): its data directory, config.php, installed apps and database.

Where the package keeps things: user files under ``/var/lib/nethserver/nextcloud`` (NethServer's
backup-data include of ``/var/lib/nethserver``), ``/usr/share/nextcloud/config/config.php`` (its
backup-data include) and the apps installed from the app store in ``/usr/share/nextcloud/apps``
(HotSync's ``nextcloud.sh``). Thumbnails, per-user caches and half-finished chunked uploads are
rebuilt or retried by Nextcloud, so they stay home. The database ``nextcloud`` lives in the
dedicated ``rh-mariadb105`` server since May 2021 (before, in the system MariaDB, whose dump by the
``mysql`` plugin covers it): when that server's data directory is here, it is dumped with the
database helper (props ``nextcloud DbSocket``, ``DbPasswordFile``, ``DbDataDir`` override the SCL
defaults). At promote the copy is taken out of maintenance mode (a master that died during an
upgrade or a backup leaves ``'maintenance' => true`` in config.php) and given back to apache.
"""
from __future__ import annotations

import re

from hotsync_events import hookimpl
from hotsync_events import atomic_write
from hotsync_events.types import HealthCheck, PromoteStep, SyncPath

from ._common import databases_enabled, fix_owners, has_key, present
from hotsync_events.dbkit import DUMP_DIR

DATA = "/var/lib/nethserver/nextcloud/"
CONFIG = "/usr/share/nextcloud/config/config.php"
APPS = "/usr/share/nextcloud/apps/"
SCL_DATADIR = "/var/opt/rh/rh-mariadb105/lib/mysql"
SCL_SOCKET = "/run/rh-mariadb105-mariadb/mariadb.sock"


@hookimpl
def hotsync_detect(root, db):
    return present(root, "/usr/share/nextcloud") or has_key(db, "nextcloud")


@hookimpl
def hotsync_sync_paths(db):
    yield SyncPath(DATA)
    yield SyncPath(CONFIG)
    yield SyncPath(APPS, realtime=False)
    yield SyncPath((db.getprop("nextcloud", "DbDataDir") or SCL_DATADIR) + "/", exclude=True)
    for junk in ("appdata_*/preview/", "*/cache/", "*/uploads/", "nextcloud.log", "*.part"):
        yield SyncPath(DATA + junk, exclude=True)


@hookimpl
def hotsync_dumps(db, root):
    from hotsync_events.dbkit import mariadb_dump
    from hotsync_events.dbkit import MariaDB

    datadir = db.getprop("nextcloud", "DbDataDir") or SCL_DATADIR
    if databases_enabled(db) and root.join(datadir).is_dir():
        server = MariaDB(root, socket=db.getprop("nextcloud", "DbSocket") or SCL_SOCKET,
                         password_file=db.getprop("nextcloud", "DbPasswordFile") or "", datadir=datadir,
                         unit="rh-mariadb105-mariadb.service", key="nextcloud")
        yield mariadb_dump("nextcloud", f"{DUMP_DIR}/nextcloud.sql", server, databases=("nextcloud",))


@hookimpl
def hotsync_promote_steps(db):
    yield PromoteStep("nextcloud-fix-owners", fix_owners([(DATA, "apache", "apache", True),
                                                          (CONFIG, "apache", "apache", False)]), priority=30)
    yield PromoteStep("nextcloud-maintenance-off", _maintenance_off, priority=60)


@hookimpl
def hotsync_health_checks():
    yield HealthCheck("nextcloud-config", _config_parses, timeout=20)


_CONFIG_ARRAY = re.compile(rb"\A\s*<\?php\b.*?\$CONFIG\s*=\s*(array\s*\(|\[)", re.S)


def _config_parses(ctx):
    """The drill's check: config.php is there, parses (``php -l`` where PHP is installed, else its shape:
    ``<?php $CONFIG = array(...);``), and the copy is not left in maintenance mode."""
    import shutil
    import subprocess

    path = ctx.root.join(CONFIG)
    if not path.is_file():
        return f"{CONFIG} is missing from the copy"
    text = path.read_bytes()
    php = shutil.which("php")
    if php:
        cp = subprocess.run([php, "-l", str(path)], capture_output=True, text=True, timeout=15)
        if cp.returncode != 0:
            return f"{CONFIG} does not parse: {(cp.stdout + cp.stderr).strip()[:300]}"
    else:
        m = _CONFIG_ARRAY.search(text)
        closer = b")" if m and m.group(1).startswith(b"array") else b"]"
        body = text.rstrip()
        if body.endswith(b"?>"):
            body = body[:-2].rstrip()
        if not m or not body.endswith(closer + b";"):
            return f"{CONFIG} does not look like a PHP config (<?php $CONFIG = array (...);)"
    if _MAINTENANCE.search(text):
        return f"{CONFIG} still says 'maintenance' => true"
    ctx.log(f"{CONFIG} parses" + (" (php -l)" if php else " (shape; no php here)"))
    return None


_MAINTENANCE = re.compile(rb"""(['"]maintenance['"]\s*=>\s*)true""")


def _maintenance_off(ctx):
    """Turn ``'maintenance' => true`` into false in config.php (nothing to do when it is absent)."""
    path = ctx.root.join(CONFIG)
    if not path.exists():
        return None
    text = path.read_bytes()
    new = _MAINTENANCE.sub(rb"\1false", text)
    if new != text:
        st = path.stat()
        atomic_write(path, new, mode=st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid)
        ctx.log(f"{CONFIG}: maintenance mode turned off")
    return None
