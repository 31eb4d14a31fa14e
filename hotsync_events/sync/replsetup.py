"""The product sets up each database replica: the master prepares its server and ships a seed, the slave
seeds its server from it and follows (docs/replication.md, "Pairing and seeding").

The core knows no engine: it calls the plugin's engine (:class:`hotsync_events.dbkit.replica.ReplicationEngine`)
through its ``prepare_master``, ``master_status`` and ``take_seed`` on the master, ``status``, ``seed`` and
``configure_replica`` on the slave, with the channel :mod:`hotsync_events.sync.replchannel` made from the
pair's identities.

**Master** (:func:`setup_master`, at each ``hotsync sync`` once the slave is pinned, and by ``hotsync replicas
setup``): prepare the server for its replica whenever the channel changed (a server whose settings wait for a
restart is prepared again at each sync until it is ready, and the status says which restart); then *offer*
a seed when the channel is new, when a person asks (``--seed``), or when the replica has not been connected
for an hour (ten minutes when the server says it must be re-seeded): an offer is
``var/lib/hotsync/dumps/replica/<name>.json`` (an id, the time) and, for an engine whose seed is a file (MariaDB's
``mariadb-backup`` stream), ``<name>.seed`` beside it; both travel with the push. An engine whose replica pulls
its copy itself (PostgreSQL's ``pg_basebackup`` through the slot) gets the offer alone: it says the master is
ready. The seed file is removed once the replica streams.

**Slave** (:func:`setup_slave`, started in the background by the post-xfer hook after a push when its inputs
changed, and by ``hotsync replicas setup``): make its end of the channel, then: a server that is not a replica
yet or must be re-seeded is seeded from a new offer (never twice from one); one that follows is re-pointed
when the channel changed. A server that was this host's own master server before a re-pair is never seeded
over: what it wrote after the promote must be saved first (``hotsync replicas repair``, not wired yet).

Each run records its outcome per replica in the status file (``replication_setup``): ``hotsync status``
shows it and its health counts an error.
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from hotsync_events.fsutil import atomic_write
from hotsync_events.paths import Root
from hotsync_events.sync.replchannel import PairingError, ensure_channel
from hotsync_events.sync.replicas import collect_replicas, replicas_wanted
from hotsync_events.sync.status import read_status, update_status

__all__ = ["SEED_DIR", "after_push", "offer_paths", "read_offer", "setup", "setup_master", "setup_slave"]

#: where the master's seed offers go (inside the dumps, which a push may write on the slave)
SEED_DIR = "/var/lib/hotsync/dumps/replica"
#: a replica not connected this long gets a new seed offer (a broken one that says so: SEED_RETRY_BROKEN)
SEED_RETRY = 3600.0
SEED_RETRY_BROKEN = 600.0
#: a slave's setup that failed is tried again after a push at most this often
RETRY_AFTER = 60.0
#: the largest offer file read
MAX_OFFER = 4096
STATUS_KEY = "replication_setup"


def offer_paths(root: Root, name: str) -> tuple[Path, Path]:
    """``(seed file, offer)`` of replica *name* under *root*."""
    d = root.join(SEED_DIR)
    return d / f"{name}.seed", d / f"{name}.json"


def read_offer(root: Root, name: str) -> dict | None:
    """The master's current seed offer for *name* (checked: an id, a time, a seed file or none), or None."""
    seed, path = offer_paths(root, name)
    try:
        if path.stat().st_size > MAX_OFFER:
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"].isalnum() \
            or not isinstance(data.get("time"), (int, float)) or not isinstance(data.get("file"), bool):
        return None
    if data["file"] and not seed.is_file():
        return None                     # the offer arrived before its file: the next push brings it
    return {"id": data["id"], "time": float(data["time"]), "file": data["file"], "engine": str(data.get("engine", "")),
            "takeover": _position(data.get("takeover")), "master": _address(data.get("master"))}


def _address(value) -> dict | None:
    """``{"host", "port"}`` of the master's server as its offer gives it, checked; None if it is not one."""
    import re

    if not isinstance(value, dict) or not isinstance(value.get("host"), str) or not isinstance(value.get("port"), int):
        return None
    if not re.fullmatch(r"[A-Za-z0-9.:_-]{1,253}", value["host"]) or not 0 < value["port"] < 65536:
        return None
    return {"host": value["host"], "port": value["port"]}


@contextmanager
def _lock(root: Root, *, wait: bool):
    root.run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(root.run_dir / "replicas-setup.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _record(root: Root, results: dict[str, dict], **extra) -> None:
    def change(d: dict) -> None:
        rec = d.setdefault(STATUS_KEY, {})
        reps = rec.setdefault("replicas", {})
        for k in [k for k in reps if k not in results]:
            del reps[k]
        reps.update(results)
        rec.update(extra)
    update_status(root, change)


def _previous(root: Root) -> dict:
    return ((read_status(root).get(STATUS_KEY) or {}).get("replicas") or {})


def _own(rec: dict | None, role: str) -> dict:
    """The record of the last run for this role (one of the other role, before a promote or a re-pair,
    tells nothing about this one), without its last outcome."""
    if not rec or rec.get("role") != role:
        return {}
    return {k: v for k, v in rec.items() if k not in ("error", "waiting")}


def _engine(rep) -> str:
    return str(getattr(rep.engine, "engine", "") or "")


def _not_configured(plugin: str) -> str:
    return (f"no replication address: on each host, config setprop <the {plugin} plugin's key> ReplicationAddress "
            "<that host's address> (config info shows the key)")


# ------------------------------------------------------------------------------------------------ master
def setup_master(root: Root, db, cfg, pm, *, log: Callable[[str], None] = print, force_seed: bool = False) -> dict:
    """Prepare each replica's master server and offer a seed when due; ``{name: record}``."""
    prev = _previous(root)
    results: dict[str, dict] = {}
    for plugin, rep in collect_replicas(pm, db, root):
        rec = _own(prev.get(rep.name), "master")
        rec.update(role="master", plugin=plugin, engine=_engine(rep), time=time.time())
        results[rep.name] = rec
        if rep.link is None:
            rec["error"] = _not_configured(plugin)
            continue
        try:
            ch = ensure_channel(root, rep.link, _engine(rep), cfg.password, "master", log=log)
            if rec.get("prepared") != ch.digest:
                prep = rep.engine.prepare_master(ch.link, log=log)
                rec.update(prepared=ch.digest if prep.ready else None, restart_needed=list(prep.restart_needed))
                if not prep.ready:
                    rec["error"] = (f"{prep.server} must be restarted before its replica can follow it (for "
                                    f"{', '.join(prep.restart_needed)}): restart it, then run hotsync replicas setup")
                    continue
            _offer_seed(root, rep, ch.link, rec, force=force_seed, log=log)
        except PairingError as exc:
            rec["error"] = str(exc)
        except Exception as exc:       # the engine's error, named; never the push's
            rec["error"] = f"{type(exc).__name__}: {exc}"
        if rec.get("error"):
            log(f"database replica {rep.name}: {rec['error']}")
    _record(root, results)
    return results


def _offer_seed(root: Root, rep, link, rec: dict, *, force: bool, log) -> None:
    ms = rep.engine.master_status(link)
    seed, offer = offer_paths(root, rep.name)
    last = rec.get("seed") or {}
    now = time.time()
    if ms.replica_connected and not ms.needs_seed and not force:
        rec["connected"] = now
        if seed.exists() and last.get("time", now) < now - 1:
            seed.unlink()               # the replica follows: its copy served (the push removes it there too)
            log(f"database replica {rep.name}: the replica streams; removed its seed {SEED_DIR}/{seed.name}")
        return
    since = max(float(last.get("time") or 0), float(rec.get("connected") or 0))
    wait = SEED_RETRY_BROKEN if ms.needs_seed else SEED_RETRY
    if not force and last.get("for") == rec.get("prepared") and now - since < wait:
        return
    seed.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(seed.parent, 0o700)
    path = rep.engine.take_seed(seed, log=log)
    if path is None:
        seed.unlink(missing_ok=True)
    else:
        os.chmod(seed, 0o600)
    ident = secrets.token_hex(8)
    data = {"format": 1, "id": ident, "time": now, "engine": _engine(rep), "file": path is not None,
            "master": {"host": link.master_host, "port": int(link.port)}}   # where the replica dials this server
    takeover = _takeover(root, rep.name)
    if takeover is not None:            # this host was promoted: its old master saves what it wrote after this
        data["takeover"] = takeover
    atomic_write(offer, json.dumps(data) + "\n", mode=0o600)
    rec["seed"] = {"id": ident, "time": now, "for": rec.get("prepared"), "file": path is not None,
                   "why": "asked" if force else "new channel" if last.get("for") != rec.get("prepared") else
                   "must be re-seeded" if ms.needs_seed else "not connected"}
    log(f"database replica {rep.name}: offered a seed to the slave ({rec['seed']['why']}; "
        + (f"{SEED_DIR}/{seed.name}, shipped with the push)" if path is not None else "it pulls its copy itself)"))


def _takeover(root: Root, name: str) -> dict | None:
    """Where this host's server took over at its last promote (the promote's journal), or None."""
    from hotsync_events.sync.status import state_dir

    try:
        entry = (json.loads((state_dir(root) / "promote.json").read_text()).get("replicas") or {}).get(name) or {}
    except (OSError, ValueError, AttributeError):
        return None
    pos = entry.get("position") if entry.get("status") == "success" else None
    return _position(pos)


def _position(pos) -> dict | None:
    """A takeover position as a promote journals it and an offer carries it, checked; None if it is not one."""
    import re

    if not isinstance(pos, dict) or not isinstance(pos.get("engine"), str) or not isinstance(pos.get("value"), str):
        return None
    if not re.fullmatch(r"[0-9A-Fa-f/,-]{1,4000}", pos["value"]) or not re.fullmatch(r"[a-z]{1,20}", pos["engine"]):
        return None
    timeline = pos.get("timeline")
    if timeline is not None and (not isinstance(timeline, int) or isinstance(timeline, bool) or timeline < 1):
        return None
    return {"engine": pos["engine"], "value": pos["value"], "timeline": timeline}


def shipped_paths(root: Root) -> list[tuple[str, str]]:
    """What the push ships of the seed offers (the directory, so a removed seed is removed there too)."""
    return [(SEED_DIR, "database replica seeds")] if root.join(SEED_DIR).is_dir() else []


# ------------------------------------------------------------------------------------------------ slave
def setup_slave(root: Root, db, cfg, pm, *, log: Callable[[str], None] = print, force_seed: bool = False) -> dict:
    """Seed or re-point each replica from the master's offer; ``{name: record}``."""
    prev = _previous(root)
    was_master = "previous_master" in read_status(root)
    results: dict[str, dict] = {}
    for plugin, rep in collect_replicas(pm, db, root):
        rec = _own(prev.get(rep.name), "slave")
        rec.update(role="slave", plugin=plugin, engine=_engine(rep), time=time.time())
        results[rep.name] = rec
        if rep.link is None:
            rec["error"] = _not_configured(plugin)
            continue
        try:
            offer = read_offer(root, rep.name)
            link = rep.link
            if offer is not None and offer["master"] is not None:   # the master says where its server listens
                link = replace(link, master_host=offer["master"]["host"], port=offer["master"]["port"])
            ch = ensure_channel(root, link, _engine(rep), cfg.password, "slave", log=log)
            st = rep.engine.status(ch.link)
            rec["state"] = st.state
            fresh = offer is not None and (offer["id"] != rec.get("seed_used") or force_seed)
            if st.state in ("not-configured", "master") and was_master and not force_seed \
                    and not (rec.get("seeded") or rec.get("repaired")):
                _repair(root, rep, ch, rec, offer if fresh else None, log=log)
            elif st.needs_seed or st.state in ("not-configured", "master") or force_seed:
                if offer is not None and fresh:
                    seed = offer_paths(root, rep.name)[0] if offer["file"] else None
                    log(f"database replica {rep.name}: seeding {st.server} from the master"
                        + (f" ({SEED_DIR}/{seed.name})" if seed else ""))
                    pos = rep.engine.seed(ch.link, seed, log=log)
                    rec.update(seeded=time.time(), seed_used=offer["id"], configured=ch.digest,
                               position=getattr(pos, "value", None))
                    rec["state"] = rep.engine.status(ch.link).state
                    log(f"database replica {rep.name}: seeded at {rec['position']}; {rec['state']}")
                else:
                    rec["waiting"] = ("for the master's seed: it offers one at its next sync (or run hotsync "
                                      "replicas setup --seed on the master)")
            elif rec.get("configured") != ch.digest:
                rep.engine.configure_replica(ch.link, log=log)
                rec["configured"] = ch.digest
                rec["state"] = rep.engine.status(ch.link).state
        except PairingError as exc:
            rec["error"] = str(exc)
        except Exception as exc:
            rec["error"] = f"{type(exc).__name__}: {exc}"
        if rec.get("error"):
            log(f"database replica {rep.name}: {rec['error']}")
    _record(root, results, inputs=inputs_digest(root), ok=not any(r.get("error") for r in results.values()),
            last=time.time())
    return results


def _repair(root: Root, rep, ch, rec: dict, offer: dict | None, *, log) -> None:
    """The old master's server after a re-pair: never seeded over; what it committed after the new master
    took over is saved beside the files the first push kept aside, then it follows the new master."""
    from hotsync_events.dbkit.replica import Position, dated_folder

    takeover = (offer or {}).get("takeover")
    if offer is None or takeover is None or takeover["engine"] != _engine(rep):
        rec["waiting"] = ("for the new master's offer with the position it took over at (its next sync): this "
                          "server was the master's, what it wrote after the promote is saved before it follows (a "
                          "pair promoted in dump mode has no such position: save what you need of this server, "
                          "then hotsync replicas setup --seed replaces it with the new master's copy)")
        return
    kept = (read_status(root).get("kept_by_repair") or {}).get("path")
    base = root.join(kept) if kept and root.join(kept).is_dir() else root.join("/var/lib/hotsync/kept")
    seed = offer_paths(root, rep.name)[0] if offer["file"] else None
    log(f"database replica {rep.name}: re-pairing the old master's server; takeover at {takeover['value']}")
    res = rep.engine.repair(ch.link, dated_folder(base, _engine(rep)),
                            Position(takeover["engine"], takeover["value"], takeover["timeline"]), seed=seed, log=log)
    saved = "/" + str(Path(res.saved_to).relative_to(root.path)).lstrip("/") if res.saved_to else None
    rec.update(repaired=time.time(), seed_used=offer["id"], configured=ch.digest, method=res.method,
               transactions=res.transactions, saved_to=saved, state=res.state)
    log(f"database replica {rep.name}: re-paired ({res.method}); "
        + (f"{res.transactions} transactions it committed after the takeover are saved in {saved}" if saved
           else "it had committed nothing after the takeover"))
    if res.state == "needs-seed":
        rec["waiting"] = "for a seed from the new master (it offers one when the replica stays away)"


def setup(root: Root, *, force_seed: bool = False, wait: bool = True, log: Callable[[str], None] = print,
          pm=None, db=None) -> dict | None:
    """This host's part for its role; None when another setup runs (and *wait* is false) or none is wanted."""
    from hotsync_events.configdb import open_db
    from hotsync_events.sync.settings import Settings

    db = db if db is not None else open_db("configuration", root, validate=False, initialise=False, journal=False)
    if not replicas_wanted(db):
        return None
    cfg = Settings.from_db(db)
    if pm is None:
        from hotsync_events.manager import plugin_manager

        pm = plugin_manager(root)
    with _lock(root, wait=wait) as got:
        if not got:
            return None
        if cfg.role == "master":
            return setup_master(root, db, cfg, pm, log=log, force_seed=force_seed)
        if cfg.role == "slave":
            return setup_slave(root, db, cfg, pm, log=log, force_seed=force_seed)
    return None


# ------------------------------------------------------------------------------------------------ the hook
def inputs_digest(root: Root) -> str:
    """What a slave's setup depends on that a push or a person changes (offers, the master pin, the config
    database), as sizes and times: cheap enough for every push."""
    from hotsync_events.sync import tls

    parts = []
    d = root.join(SEED_DIR)
    paths = sorted(d.glob("*.json")) if d.is_dir() else []
    pin = tls.master_pin_file(root)
    for p in [*paths, *([pin] if pin else []), root.join("/var/lib/nethserver/db/configuration")]:
        try:
            st = p.stat()
            parts.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{p.name}:-")
    return "|".join(parts)


def after_push(root: Root, *, spawn: Callable[[list[str]], None] | None = None) -> bool:
    """On the slave after a push landed: start ``hotsync replicas setup`` in the background when replicas are
    wanted and their inputs changed (or the last setup failed, at most once a minute). Whether it started."""
    from hotsync_events.configdb import open_db

    try:
        db = open_db("configuration", root, validate=False, initialise=False, journal=False)
    except Exception:
        return False
    if not replicas_wanted(db) or (db.getprop("hotsync", "role") or "") != "slave":
        return False
    rec = read_status(root).get(STATUS_KEY) or {}
    if rec.get("inputs") == inputs_digest(root) and (rec.get("ok") or time.time() - float(rec.get("last") or 0) < RETRY_AFTER):
        return False
    import subprocess
    import sys

    argv = [sys.executable, "-m", "hotsync_events.cli.hotsync", "--root", str(root.path), "-q", "replicas",
            "setup", "--background"]
    if spawn is not None:
        spawn(argv)
        return True
    log = root.log_dir / "replicas.log"          # what it could not say otherwise (a crash) goes there too
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True,
                         close_fds=True, cwd="/")
    finally:
        os.close(fd)
    return True
