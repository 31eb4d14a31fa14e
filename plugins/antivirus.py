"""ClamAV (nethserver-antivirus): the signature databases, so the promoted host scans at once.

The original synced nothing special and ran ``nethserver-antivirus-init-avdb`` at promote, which puts
the signatures the package bundles in place when the download never happened. Here the master's
``/var/lib/clamav`` goes with the scheduled sync (freshclam's temp files and per-host mirror state
stay home), freshclam is a writer (stopped on the slave), and the promote step still checks that
main, daily and bytecode are there, copying any missing one from ``/usr/share/clamav``.
"""
from __future__ import annotations

import shutil

from hotsync_events import hookimpl
from hotsync_events.types import PromoteStep, SyncPath

from ._common import has_key, present, service

DB = "/var/lib/clamav/"
BUNDLED = "/usr/share/clamav/"
SIGNATURES = ("main", "daily", "bytecode")


@hookimpl
def hotsync_detect(root, db):
    return present(root, "/etc/freshclam.conf", DB) or has_key(db, "clamd", "freshclam")


@hookimpl
def hotsync_sync_paths(db):
    yield SyncPath(DB, realtime=False)
    for junk in ("tmp.*", "*.tmp", "clamav-*/", "freshclam.dat", "mirrors.dat"):
        yield SyncPath(DB + junk, exclude=True)


@hookimpl
def hotsync_services(db):
    yield service(db, "freshclam", writer=True, events={"post-restore-data": "restart"})
    yield service(db, "clamd", key="clamd", events={"post-restore-data": "restart"})


@hookimpl
def hotsync_promote_steps(db):
    yield PromoteStep("antivirus-init-avdb", _init_avdb, priority=40)


def _init_avdb(ctx):
    """Each of main/daily/bytecode present as .cvd or .cld; copy a missing one from the bundle."""
    dbdir, bundle = ctx.root.join(DB), ctx.root.join(BUNDLED)
    missing = []
    for sig in SIGNATURES:
        if any((dbdir / f"{sig}.{ext}").exists() for ext in ("cvd", "cld")):
            continue
        src = next((bundle / f"{sig}.{ext}" for ext in ("cvd", "cld") if (bundle / f"{sig}.{ext}").exists()), None)
        if src is None:
            missing.append(sig)
            continue
        dbdir.mkdir(parents=True, exist_ok=True)
        tmp = dbdir / f".{src.name}.hotsync"
        shutil.copy2(src, tmp)
        tmp.replace(dbdir / src.name)
        ctx.log(f"{DB}{src.name}: copied from {BUNDLED}")
    if missing:
        raise RuntimeError(f"ClamAV signatures {', '.join(missing)} are missing from {DB} and {BUNDLED}: "
                           "run freshclam once the network is up")
    return None
