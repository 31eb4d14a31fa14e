"""Samba Active Directory domain controller (nethserver-dc): the ``nsdc`` container.

The DC runs in a systemd-nspawn container whose root file system is ``/var/lib/machines/nsdc``;
HotSync shipped the whole tree plus the two links that start it at boot (#6011, ``27bcae4``), and
restore-config then skipped downloading the container again (#5430). A push never writes systemd units on
the slave (they run as root: see docs/security.md), so the links are not shipped: the promote step
``dc-enable-at-boot`` makes them on the new master instead. Samba keeps the directory in
TDB/LDB files under the container's ``/var/lib/samba``, which the running DC writes: a file copy can
tear them. Here those files are left out of the copy and shipped instead as ``tdbbackup`` copies (one
tar file), put back at promote with the container stopped (the DC is a writer). Without
``hotsync databases`` the live files are copied as the original did.
"""
from __future__ import annotations

from hotsync_events import hookimpl
from hotsync_events.types import Dump, PromoteStep, SyncPath

from ._common import databases_enabled, has_key, present, service
from hotsync_events.dbkit import DUMP_DIR
from ._tdb import dump_tdbs, restore_tdbs

MACHINE = "/var/lib/machines/nsdc/"
SAMBA = MACHINE + "var/lib/samba/"
DUMP = f"{DUMP_DIR}/dc-samba-tdb.tar"
#: the links that start the container at boot: (link, unit it names)
LINKS = (("/etc/systemd/system/machines.target.wants/nsdc.service", "nsdc.service"),
         ("/etc/systemd/system/multi-user.target.wants/machines.target", "machines.target"))
UNIT_DIRS = ("/etc/systemd/system/", "/usr/lib/systemd/system/", "/lib/systemd/system/")


@hookimpl
def hotsync_detect(root, db):
    return present(root, MACHINE) or has_key(db, "nsdc")


@hookimpl
def hotsync_sync_paths(db):
    yield SyncPath(MACHINE, realtime=False)
    for junk in ("run/", "tmp/", "var/tmp/", "var/log/", "var/cache/samba/", "**.hotsync-tdbbackup"):
        yield SyncPath(MACHINE + junk, exclude=True)
    if databases_enabled(db):
        for pattern in ("**.tdb", "**.ldb"):
            yield SyncPath(SAMBA + pattern, exclude=True)


@hookimpl
def hotsync_dumps(db):
    yield Dump(name="dc-samba-tdb", path=DUMP, priority=40,
               run=lambda ctx: dump_tdbs(ctx.root, [SAMBA], ctx.target, ctx.log) and None,
               restore=lambda ctx: restore_tdbs(ctx.root, ctx.target, ctx.log) and None)


@hookimpl
def hotsync_services(db):
    yield service(db, "nsdc", writer=True, events={"post-restore-data": "restart"})


@hookimpl
def hotsync_promote_steps(db):
    yield PromoteStep("dc-enable-at-boot", _enable_at_boot, priority=80)


def _enable_at_boot(ctx) -> None:
    """Link the container's units into their targets, as ``systemctl enable`` does (idempotent)."""
    import os

    for link, unit in LINKS:
        target = next((d + unit for d in UNIT_DIRS if os.path.lexists(ctx.root.join(d + unit))), None)
        path = ctx.root.join(link)
        if target is None or os.path.lexists(path):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)
        ctx.log(f"{link} -> {target}: the DC starts at boot")
