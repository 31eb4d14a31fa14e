"""Samba file server (nethserver-samba): the shared folders (ibays), their ACLs and Samba's own TDBs.

Shared folders live in ``/var/lib/nethserver/ibay`` (backup-data's ``/var/lib/nethserver``).
HotSync's ``acls.sh`` dumped their POSIX ACLs with ``getfacl -R -P --skip-base .`` into
``/var/lib/nethserver/backup/acls.dump`` (#5433; here ``samba-acls.dump`` among the other dumps), and ``post-restore-data`` put them back with
``setfacl --restore`` (``nethserver-ibays-restore``, S60) after ``nethserver-ibays-remap-locals``
(S55). The sync keeps ACLs itself (rsync -A), the dump is the same safety net. Samba's group mapping
and secrets (``/var/lib/samba``) are live TDB files: they ship as ``tdbbackup`` copies and are put
back at promote. smbd writes the shares for users, so it is a writer: the slave serves no files.
"""
from __future__ import annotations

from pathlib import Path

from hotsync_events import hookimpl
from hotsync_events import atomic_write
from hotsync_events.types import Action, Dump, SyncPath

from ._common import has_key, present, run_tool, service
from hotsync_events.dbkit import DUMP_DIR
from ._tdb import dump_tdbs, restore_tdbs

IBAYS = "/var/lib/nethserver/ibay/"
ACLS = f"{DUMP_DIR}/samba-acls.dump"
TDB_DIRS = ("/var/lib/samba/",)
TDB_DUMP = f"{DUMP_DIR}/samba-tdb.tar"


@hookimpl
def hotsync_detect(root, db):
    return present(root, "/etc/samba/smb.conf", IBAYS) or has_key(db, "smb")


@hookimpl
def hotsync_sync_paths(db):
    yield SyncPath(IBAYS)
    for pattern in ("**.tdb", "**.ldb", "**.hotsync-tdbbackup"):
        yield SyncPath("/var/lib/samba/" + pattern, exclude=True)


@hookimpl
def hotsync_dumps(db):
    yield Dump(name="samba-acls", path=ACLS, run=_dump_acls, priority=50)
    yield Dump(name="samba-tdb", path=TDB_DUMP, priority=40,
               run=lambda ctx: dump_tdbs(ctx.root, TDB_DIRS, ctx.target, ctx.log) and None,
               restore=lambda ctx: restore_tdbs(ctx.root, ctx.target, ctx.log) and None)


@hookimpl
def hotsync_actions(db):
    yield Action(event="post-restore-data", name="ibays-restore-acls", run=_restore_acls, priority=60)


@hookimpl
def hotsync_services(db):
    yield service(db, "smb", writer=True, events={"post-restore-data": "restart"})
    yield service(db, "nmb", events={"post-restore-data": "restart"})


def _dump_acls(ctx):
    """getfacl of every shared folder, relative to the ibay directory, as nethserver-ibays-dump-acls."""
    top = ctx.root.join(IBAYS)
    text = run_tool(["getfacl", "-R", "-P", "--skip-base", "."], cwd=top).stdout if top.is_dir() else ""
    atomic_write(Path(ctx.target), text, mode=0o600)
    return None


def _restore_acls(ctx):
    """setfacl --restore of the shipped dump, run in the ibay directory (S60 nethserver-ibays-restore)."""
    dump, top = ctx.root.join(ACLS), ctx.root.join(IBAYS)
    if not dump.exists() or not dump.stat().st_size or not top.is_dir():
        ctx.log("no ACL dump to restore")
        return None
    run_tool(["setfacl", f"--restore={dump}"], cwd=top)
    return None
