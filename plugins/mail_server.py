"""Mail server (nethserver-mail server, filter and getmail): mailboxes, sieve scripts, filter state.

Mailboxes live in ``/var/lib/nethserver/vmail`` and sieve scripts in
``/var/lib/nethserver/sieve-scripts`` (backup-data's ``/var/lib/nethserver``); the filter's backup
include adds ``/var/lib/rspamd`` and ``/var/lib/redis/rspamd``; HotSync's ``getmail.sh`` adds
``/var/lib/getmail`` (#6055). The slave's ``fixperm`` gave them back to vmail, redis and _rspamd; here
that is a promote step. Dovecot's ``dovecot.index.cache`` files are rebuilt on demand and messages
being delivered sit in a ``tmp/`` folder until renamed into ``new/``: those stay home. Every daemon
here writes synced data, so all are writers, stopped on the slave.
"""
from __future__ import annotations

from hotsync_events import hookimpl
from hotsync_events.types import Action, PromoteStep, SyncPath

from ._common import chown_tree, has_key, present, service

VMAIL = "/var/lib/nethserver/vmail/"
SIEVE = "/var/lib/nethserver/sieve-scripts/"
GETMAIL = "/var/lib/getmail/"
RSPAMD = "/var/lib/rspamd/"
REDIS = "/var/lib/redis/rspamd/"


@hookimpl
def hotsync_detect(root, db):
    return present(root, VMAIL, "/etc/dovecot/dovecot.conf") or has_key(db, "dovecot", "postfix")


@hookimpl
def hotsync_sync_paths(db):
    yield SyncPath(VMAIL)
    yield SyncPath(SIEVE)
    yield SyncPath(GETMAIL)
    yield SyncPath(RSPAMD, realtime=False)
    yield SyncPath(REDIS, realtime=False)
    for junk in ("**/dovecot.index.cache", "*/Maildir/tmp/", "*/Maildir/.*/tmp/", "**/dovecot-uidlist.lock"):
        yield SyncPath(VMAIL + junk, exclude=True)


@hookimpl
def hotsync_services(db):
    yield service(db, "dovecot", writer=True, events={"post-restore-data": "restart"})
    yield service(db, "postfix", writer=True, events={"post-restore-data": "restart"})
    yield service(db, "rspamd", writer=True, events={"post-restore-data": "restart"})
    yield service(db, "redis@rspamd", unit="redis@rspamd.service", key="rspamd", writer=True)
    yield service(db, "getmail", unit="getmail.timer", writer=True)


@hookimpl
def hotsync_promote_steps(db):
    yield PromoteStep("mail-server-fix-owners", _fix_owners, priority=30)


def _fix_owners(ctx):
    """The chowns of hotsync-slave's fixperm, for the parts that are installed."""
    root = ctx.root
    if root.join(VMAIL).exists():
        chown_tree(root, VMAIL, "vmail", "vmail")
    if root.join(SIEVE).exists():
        chown_tree(root, SIEVE, "root", "vmail", recursive=False)
        for svbin in root.join(SIEVE).rglob("*.svbin"):
            chown_tree(root, root.host_path(svbin), "vmail", "vmail", recursive=False)
    for path, user in ((GETMAIL, "vmail"), (REDIS.rsplit("rspamd/", 1)[0], "redis"), (RSPAMD, "_rspamd")):
        if root.join(path).exists():
            chown_tree(root, path, user, None)
    return None


@hookimpl
def hotsync_actions(db):
    yield Action("nethserver-hotsync-save", "mail-server-hotsync-mailto", _mail_to_admin, priority=5)


def _mail_to_admin(ctx) -> None:
    """As the manual says: HotSync's mail goes to root, or to admin when a mail server is installed. The
    default recipient becomes admin's; one a sysadmin set is left alone."""
    if (ctx.db.getprop("hotsync", "MailTo") or "root@localhost") == "root@localhost":
        ctx.db.setprop("hotsync", {"MailTo": "admin@localhost"})
        ctx.log("mail-server: HotSync's alert mail goes to admin@localhost (a mail server is installed)")
