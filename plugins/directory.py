"""OpenLDAP account provider (nethserver-directory): the LDAP directory, dumped with slapcat.

slapd keeps the directory in ``/var/lib/ldap`` (CentOS layout; its cn=config in
``/etc/openldap/slapd.d`` is rendered by the package). The original copied nothing special; the
files of a live back-end are no backup, so here ``/var/lib/ldap`` stays out of the copy and
``slapcat`` (consistent while slapd runs) writes an LDIF that ships instead. At promote the LDIF is
loaded with ``slapadd`` into an empty database (the old files are moved aside, never deleted) and the
files are given to the ldap user. slapd is a writer: stopped on the slave, started after the promote.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from hotsync_events import hookimpl
from hotsync_events import atomic_write
from hotsync_events.types import Dump, PromoteStep, SyncPath

from ._common import databases_enabled, fix_owners, has_key, present, run_tool, service
from hotsync_events.dbkit import DUMP_DIR

CONF = "/etc/openldap/slapd.d"
DATA = "/var/lib/ldap/"
DUMP = f"{DUMP_DIR}/directory-slapd.ldif"


@hookimpl
def hotsync_detect(root, db):
    return present(root, CONF, DATA) or has_key(db, "slapd")


@hookimpl
def hotsync_sync_paths(db):
    if databases_enabled(db):
        yield SyncPath(DATA, exclude=True)
    else:                                          # no dump: copy the files, as the original did
        yield SyncPath(DATA, realtime=False)


@hookimpl
def hotsync_dumps(db):
    yield Dump(name="directory-slapcat", path=DUMP, run=_slapcat, restore=_slapadd, priority=40)


@hookimpl
def hotsync_services(db):
    yield service(db, "slapd", writer=True, events={"post-restore-data": "restart"})


@hookimpl
def hotsync_promote_steps(db):
    yield PromoteStep("directory-fix-owners", fix_owners([(DATA, "ldap", "ldap", True)]), priority=30)


def _slapcat(ctx):
    """slapcat the first database into a temp file; keep it only if it holds at least one entry."""
    target = Path(ctx.target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        run_tool(["slapcat", "-F", str(ctx.root.join(CONF)), "-l", str(tmp)])
        data = tmp.read_bytes()
        if b"\ndn: " not in b"\n" + data:
            raise RuntimeError(f"slapcat wrote no entry to {tmp}; the last good dump is kept")
        atomic_write(target, data, mode=0o600)
    finally:
        tmp.unlink(missing_ok=True)
    entries = (b"\n" + data).count(b"\ndn: ")
    ctx.log(f"{DUMP}: {entries} entries")
    return None


def _slapadd(ctx):
    """Move the database files aside and load the LDIF into a fresh database (slapd must be stopped)."""
    data = ctx.root.join(DATA)
    if data.is_dir() and any(data.iterdir()):
        stamp, n = time.strftime("%Y%m%d%H%M%S"), 0
        aside = data.with_name(f"ldap.before-promote-{stamp}")
        while aside.exists():
            n += 1
            aside = data.with_name(f"ldap.before-promote-{stamp}.{n}")
        data.rename(aside)
        ctx.log(f"{DATA} moved aside to {ctx.root.host_path(aside)}")
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    run_tool(["slapadd", "-q", "-F", str(ctx.root.join(CONF)), "-l", str(ctx.target)])
    ctx.log(f"{DATA}: loaded from {DUMP}")
    return None
