"""The ``config`` phase: the master's configuration databases become this host's, host-local values kept."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hotsync_events.configdb import ConfigDB, is_db_name, open_db
from hotsync_events.configdb.format import Record
from hotsync_events.paths import Root

__all__ = ["HOST_LOCAL_DBS", "HOST_LOCAL_KEYS", "PEER_DIR", "host_local", "merge_records", "restore_config"]

PEER_DIR = "/var/lib/hotsync/peer"
#: keys that stay this host's whatever the master's copy says (e-smith's host identity)
HOST_LOCAL_KEYS = {"configuration": frozenset({"SystemName", "DomainName"})}
#: databases that stay this host's entirely (network interfaces and their roles: reassigned by hand)
HOST_LOCAL_DBS = frozenset({"networks"})


def host_local(root: Root, dbname: str) -> tuple[frozenset, frozenset]:
    """``(keys, {(key, prop)})`` that stay this host's when *dbname* takes the master's values."""
    from hotsync_events.configdb import schema

    props = set()
    try:
        sch = schema.load(root, dbname)
        for key, ks in sch.keys.items():
            for prop, ps in ks.props.items():
                if getattr(ps, "local", False):
                    props.add((key, prop))
    except Exception:  # no schema for this database: only the built-in list applies
        pass
    return HOST_LOCAL_KEYS.get(dbname, frozenset()), frozenset(props)


def _peer_dbs(root: Root) -> list[Path]:
    d = root.join(PEER_DIR)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.is_file() and is_db_name(p.name)
                  and not p.name.endswith((".json", ".lock", ".tmp", ".bak")) and not p.name.startswith("."))


def merge_records(local: dict[str, Record], peer: dict[str, Record], keys: frozenset,
                  props: frozenset) -> dict[str, Record | None]:
    """What to write so that *local* becomes *peer* but for the host-local keys and props."""
    out: dict[str, Record | None] = {}
    for key in sorted(set(local) | set(peer)):
        if key in keys:
            continue
        mine = local.get(key)
        theirs = peer.get(key)
        kept = {p: v for p, v in (mine.props.items() if mine else ()) if (key, p) in props}
        if theirs is None:
            new = Record(mine.type, kept) if kept else None   # type: ignore[union-attr]
        else:
            new = Record(theirs.type, {**{p: v for p, v in theirs.props.items() if (key, p) not in props}, **kept})
        if new != mine:
            out[key] = new
    return out


def restore_config(root: Root, log: Callable[[str], None] = print) -> list[tuple[str, int]]:
    """Apply the shipped copy of the master's databases; ``[(db, records changed)]``.

    Each database is one transaction (never half-applied). Running it again changes nothing more.
    """
    done = []
    for path in _peer_dbs(root):
        name = path.name
        if name in HOST_LOCAL_DBS:
            log(f"  {name}: kept as this host's (host-local database)")
            continue
        peer = ConfigDB(path, name=name)
        peer_records = dict(peer.records())
        keys, props = host_local(root, name)
        db = open_db(name, root, validate=False, initialise=False)
        with db.transaction() as txn:
            local_records = {k: txn.record(k) for k in txn.keys()}
            changes = merge_records(local_records, peer_records, keys, props)   # type: ignore[arg-type]
            for key, rec in changes.items():
                txn.put(key, rec)
        log(f"  {name}: {len(changes)} records changed to the master's values"
            + (f"; kept this host's own keys {', '.join(sorted(keys))}" if keys else ""))
        done.append((name, len(changes)))
    return done
