"""pulledpork (nethserver-pulledpork): the Suricata rules it downloads.

HotSync's ``pulledpork.sh`` ships ``/etc/suricata/rules`` so the promoted IPS starts with the rules
the master had; ``fixperm`` gives ``/etc/suricata`` back to suricata when nethserver-suricata is
installed (#6024). The rules change when pulledpork runs (daily): scheduled sync only.
"""
from __future__ import annotations

from hotsync_events import hookimpl
from hotsync_events.types import PromoteStep, SyncPath

from ._common import chown_tree, has_key, present, service

RULES = "/etc/suricata/rules/"


@hookimpl
def hotsync_detect(root, db):
    return present(root, "/etc/pulledpork", "/usr/bin/pulledpork.pl") or has_key(db, "pulledpork")


@hookimpl
def hotsync_sync_paths(db):
    yield SyncPath(RULES, realtime=False)
    yield SyncPath(RULES + "*.tmp", exclude=True)


@hookimpl
def hotsync_services(db):
    yield service(db, "suricata", events={"post-restore-data": "restart"})


@hookimpl
def hotsync_promote_steps(db):
    yield PromoteStep("pulledpork-fix-owners", _fix_owners, priority=30)


def _fix_owners(ctx):
    if not ctx.root.join("/etc/suricata/suricata.yaml").exists():   # nethserver-suricata not installed
        return None
    n = chown_tree(ctx.root, "/etc/suricata/", "suricata", "suricata")
    ctx.log(f"/etc/suricata: {n} entries given to suricata")
    return None
