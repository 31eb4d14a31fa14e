"""The master's seed offers for its database replicas (docs/replication.md, "Pairing and seeding").

An offer is ``var/lib/hotsync/dumps/replica/<name>.json``, written by the master and shipped with its push:
``id`` (one per offer: a slave seeds from an offer once), ``time``, ``from`` (the fingerprint of the master's
host certificate), ``engine``, ``file`` (whether ``<name>.seed`` beside it is the seed: MariaDB's
``mariadb-backup`` stream; PostgreSQL's replica pulls its copy itself), ``master`` (the address and port its
replica dials) and, on a master that was promoted, ``takeover`` (where its server took over: its old master
saves what it wrote after that). The seed is taken in a staging directory outside what the push ships and
renamed into place when complete.

On the slave everything here came with a push: an offer is read as untrusted input (a regular file, not a
link, at most :data:`MAX_OFFER` bytes, every field checked), accepted only from the master this slave
trusts (``from`` is its pinned master's fingerprint), and the seed's file name is the slave's own.
"""
from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from hotsync_events.fsutil import atomic_write, read_small
from hotsync_events.paths import Root

__all__ = ["MAX_OFFER", "SEED_DIR", "STAGING_DIR", "clear_foreign", "describe_seed", "offer_paths", "read_offer",
           "seed_dir", "seed_matches", "shipped_paths", "takeover_of", "write_offer"]

#: where the offers go (inside the dumps, which a push may write on the slave)
SEED_DIR = "/var/lib/hotsync/dumps/replica"
#: where a seed is taken before it is renamed into SEED_DIR (never shipped: not in the push's paths)
STAGING_DIR = "/var/lib/hotsync/dumps/.replica-staging"
#: the largest offer read
MAX_OFFER = 4096


def offer_paths(root: Root, name: str) -> tuple[Path, Path]:
    """``(seed file, offer)`` of replica *name* under *root*."""
    d = root.join(SEED_DIR)
    return d / f"{name}.seed", d / f"{name}.json"


def seed_dir(root: Root, *, make: bool = False) -> Path | None:
    """The offers' directory when it is a real directory (made 0700 with *make*); None when it is missing,
    or is a link or something else (never followed: a link is removed on a master that makes its own)."""
    d = root.join(SEED_DIR)
    try:
        st = os.lstat(d)
    except FileNotFoundError:
        if not make:
            return None
        d.mkdir(parents=True, mode=0o700)
        return d
    if stat.S_ISDIR(st.st_mode):
        if make and st.st_mode & 0o077:
            os.chmod(d, 0o700)
        return d
    if make:
        os.unlink(d)
        d.mkdir(mode=0o700)
        return d
    return None


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def read_offer(root: Root, name: str, *, master_fp: str | None) -> dict | None:
    """The current offer for replica *name*, checked, from the master whose fingerprint is *master_fp*
    (None: from any, for the master's own); None when there is none or it is not one. ``seed_ready``: its
    seed file is here (an offer whose seed the master removed still says where the master listens)."""
    if seed_dir(root) is None:
        return None
    seed, path = offer_paths(root, name)
    raw = read_small(path, MAX_OFFER)      # never through a link, never waiting on a FIFO
    try:
        data = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"].isalnum() \
            or len(data["id"]) > 64 or not isinstance(data.get("time"), (int, float)) \
            or isinstance(data.get("time"), bool) or not isinstance(data.get("file"), bool):
        return None
    if master_fp is not None and data.get("from") != master_fp:
        return None                     # another host's (a master of an earlier epoch, or this host's own)
    size, digest = data.get("size"), data.get("sha256")
    return {"id": data["id"], "time": float(data["time"]), "file": data["file"], "from": data.get("from"),
            "size": size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
            "sha256": digest if isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest) else None,
            "engine": str(data.get("engine", ""))[:40], "seed_ready": data["file"] and _regular(seed),
            "takeover": position(data.get("takeover")), "master": address(data.get("master"))}


def describe_seed(seed: Path) -> dict:
    """``{"size", "sha256"}`` of a seed file, for its offer."""
    from hotsync_events.dbkit.replica import sha256_file     # not at import: the slave's hook server has no pluggy
    return {"size": seed.stat().st_size, "sha256": sha256_file(seed)}


def seed_matches(seed: Path, offer: dict) -> bool:
    """Whether *seed* (a regular file, not a link) is the one *offer* describes (its size and sha256)."""
    try:
        st = os.lstat(seed)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or offer.get("size") != st.st_size:
        return False
    from hotsync_events.dbkit.replica import sha256_file
    return offer.get("sha256") == sha256_file(seed)


def write_offer(root: Root, name: str, data: dict) -> None:
    atomic_write(offer_paths(root, name)[1], json.dumps(data, sort_keys=True) + "\n", mode=0o600)


def address(value) -> dict | None:
    """``{"host", "port"}`` of the master's server as its offer gives it, checked; None if it is not one."""
    if not isinstance(value, dict) or not isinstance(value.get("host"), str) or not isinstance(value.get("port"), int) \
            or isinstance(value.get("port"), bool):
        return None
    if not re.fullmatch(r"[A-Za-z0-9.:_-]{1,253}", value["host"]) or not 0 < value["port"] < 65536:
        return None
    return {"host": value["host"], "port": value["port"]}


def position(pos) -> dict | None:
    """A takeover position as a promote journals it and an offer carries it, checked; None if it is not one."""
    if not isinstance(pos, dict) or not isinstance(pos.get("engine"), str) or not isinstance(pos.get("value"), str):
        return None
    if not re.fullmatch(r"[0-9A-Fa-f/,-]{1,4000}", pos["value"]) or not re.fullmatch(r"[a-z]{1,20}", pos["engine"]):
        return None
    timeline = pos.get("timeline")
    if timeline is not None and (not isinstance(timeline, int) or isinstance(timeline, bool) or timeline < 1):
        return None
    return {"engine": pos["engine"], "value": pos["value"], "timeline": timeline}


def takeover_of(root: Root, name: str) -> dict | None:
    """Where this host's server *name* took over at its last promote (the promote's journal), or None."""
    from hotsync_events.sync.status import state_dir

    try:
        entry = (json.loads((state_dir(root) / "promote.json").read_text()).get("replicas") or {}).get(name) or {}
    except (OSError, ValueError, AttributeError):
        return None
    return position(entry.get("position")) if entry.get("status") == "success" else None


def clear_foreign(root: Root, own_fp: str, log) -> None:
    """On a master: remove the offers it did not make (its old master's, received while it was the slave)."""
    d = seed_dir(root)
    if d is None:
        return
    for offer in sorted(d.glob("*.json")):
        raw = read_small(offer, MAX_OFFER)
        try:
            mine = raw is not None and json.loads(raw).get("from") == own_fp
        except (ValueError, AttributeError):
            mine = False
        if not mine:
            offer.unlink(missing_ok=True)
            seed = offer.with_suffix(".seed")
            if os.path.lexists(seed):
                seed.unlink()
            log(f"database replicas: removed {SEED_DIR}/{offer.name}, an offer this host did not make")


def shipped_paths(root: Root) -> list[tuple[str, str]]:
    """What the push ships of the offers (the directory, so a removed seed is removed there too)."""
    return [(SEED_DIR, "database replica seeds")] if seed_dir(root) is not None else []
