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
``var/lib/hotsync/dumps/replica/<name>.json`` (:mod:`hotsync_events.sync.reploffer`) and, for an engine whose
seed is a file (MariaDB's ``mariadb-backup`` stream), ``<name>.seed`` beside it; both travel with the push.
Only after a successful push is a seed offered again to a replica that stays away. An engine whose replica pulls
its copy itself (PostgreSQL's ``pg_basebackup`` through the slot) gets the offer alone: it says the master is
ready. The seed file is removed once the replica streams.

**Slave** (:func:`setup_slave`, started in the background by the post-xfer hook after a push when its inputs
changed, and by ``hotsync replicas setup``): make its end of the channel, then: a server that is not a replica
yet or must be re-seeded is seeded from a new offer of its master (never twice from one; a server that was
not a replica keeps its previous data directory beside the new one); one that follows is re-pointed when the
channel changed. A server that was this host's own master server before a re-pair is never seeded over: it
is re-paired, what it wrote after the takeover saved first.

One setup runs at a time (:func:`setup_lock`, which ``hotsync-promote`` takes too); a host that is not an
enabled master or slave sets nothing up, and a slave stops between replicas when its role changed.

Each run records its outcome per replica in the status file (``replication_setup``): ``hotsync status``
shows it and its health counts an error.
"""
from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from hotsync_events.paths import Root, RootError
from hotsync_events.sync import reploffer as offers
from hotsync_events.sync.replicas import MODE_PROP, collect_replicas, engine_name, replicas_wanted
from hotsync_events.sync.status import read_status, update_status

__all__ = ["after_push", "inputs_digest", "setup", "setup_lock", "setup_master", "setup_slave"]

SEED_DIR = offers.SEED_DIR
#: a replica not connected this long gets a new seed offer (a broken one that says so: SEED_RETRY_BROKEN)
SEED_RETRY = 3600.0
SEED_RETRY_BROKEN = 600.0
#: a slave's setup that failed is tried again after a push at most this often
RETRY_AFTER = 60.0
STATUS_KEY = "replication_setup"


@contextmanager
def setup_lock(root: Root, *, wait: float) -> Iterator[bool]:
    """The replicas' setup lock of *root*, waited for at most *wait* seconds: whether it was had."""
    root.run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(root.run_dir / "replicas-setup.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.2)
        yield True
    finally:
        os.close(fd)


def setup_running(root: Root) -> bool | None:
    """Whether a setup holds the setup lock of *root* now, creating nothing and taking no lock (a reader
    without rights to /run, such as the Cockpit's read-only user, may ask; a probe that took the lock, even
    shared, could make a setup starting at that moment believe another one runs): the kernel's list of
    locks (/proc/locks) names the lock file's inode. None when it cannot tell."""
    try:
        st = os.stat(root.run_dir / "replicas-setup.lock", follow_symlinks=False)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            return any(w[1:2] == ["FLOCK"] and inode in w for w in map(str.split, locks))
    except OSError:
        return None


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


def _not_configured(db, rep, role: str) -> str:
    key = rep.key or f"<the {rep.name} server's key>"
    peer = "SlaveHost" if role == "master" else "MasterHost"
    if not (db.getprop("hotsync", peer) or ""):
        return f"the pair names no peer: config setprop hotsync {peer} <its address>"
    return f"no replication address: config setprop {key} ReplicationAddress <this host's address> (on each host)"


# ------------------------------------------------------------------------------------------------ master
def setup_master(root: Root, db, cfg, pm, *, log: Callable[[str], None] = print, force_seed: bool = False) -> dict:
    """Prepare each replica's master server and offer a seed when due; ``{name: record}``."""
    from hotsync_events.sync.replchannel import PairingError, ensure_channel
    prev = _previous(root)
    results: dict[str, dict] = {}
    from hotsync_events.sync import tls

    own_fp = tls.host_fingerprint(root) or ""
    if own_fp:
        offers.clear_foreign(root, own_fp, log)
    for plugin, rep in collect_replicas(pm, db, root):
        rec = _own(prev.get(rep.name), "master")
        rec.update(role="master", plugin=plugin, engine=engine_name(rep), time=time.time())
        results[rep.name] = rec
        if rep.link is None:
            rec["error"] = _not_configured(db, rep, "master")
            continue
        try:
            ch = ensure_channel(root, rep.link, engine_name(rep), "master", log=log)
            if rec.get("prepared") != ch.digest:
                prep = rep.engine.prepare_master(ch.link, log=log)
                rec.update(prepared=ch.digest if prep.ready else None, restart_needed=list(prep.restart_needed))
                if not prep.ready:
                    rec["error"] = (f"{prep.server} must be restarted before its replica can follow it (for "
                                    f"{', '.join(prep.restart_needed)}): restart it, then run hotsync replicas setup")
            if rec.get("prepared") == ch.digest:
                _offer_seed(root, rep, ch.link, rec, own_fp, force=force_seed, log=log)
        except PairingError as exc:
            rec["error"] = str(exc)
        except Exception as exc:       # the engine's error, named; never the push's
            rec["error"] = f"{type(exc).__name__}: {exc}"
        if rec.get("error"):
            log(f"database replica {rep.name}: {rec['error']}")
    _record(root, results)
    return results


def _offer_seed(root: Root, rep, link, rec: dict, own_fp: str, *, force: bool, log) -> None:
    ms = rep.engine.master_status(link)
    seed = offers.offer_paths(root, rep.name)[0]
    last = rec.get("seed") or {}
    now = time.time()
    if ms.replica_connected and not ms.needs_seed and not force:
        rec["connected"] = now
        if os.path.lexists(seed) and last.get("time", now) < now - 1:
            seed.unlink()               # the replica follows: its copy served (the push removes it there too)
            log(f"database replica {rep.name}: the replica streams; removed its seed {SEED_DIR}/{seed.name}")
        return
    new_channel = last.get("for") != rec.get("prepared")
    if not force and not new_channel:
        since = max(float(last.get("time") or 0), float(rec.get("connected") or 0))
        if now - since < (SEED_RETRY_BROKEN if ms.needs_seed else SEED_RETRY):
            return
        if ((read_status(root).get("last_run") or {}).get("result")) != "success":
            return                      # the slave was not reached: a new seed would not reach it either
    d = offers.seed_dir(root, make=True)
    assert d is not None
    staging = root.join(offers.STAGING_DIR)
    staging.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(staging, 0o700)
    path = rep.engine.take_seed(staging / seed.name, log=log)
    if path is None:
        if os.path.lexists(seed):
            seed.unlink()
    else:
        os.chmod(path, 0o600)
        os.replace(path, seed)          # complete, then in place: the push never ships a part
    ident = secrets.token_hex(8)
    data = {"format": 1, "id": ident, "time": now, "from": own_fp, "engine": engine_name(rep), "file": path is not None,
            "master": {"host": link.master_host, "port": int(link.port)}}   # where the replica dials this server
    if path is not None:                # which file this offer means: the slave checks it before it seeds
        data.update(offers.describe_seed(seed))
    takeover = offers.takeover_of(root, rep.name)
    if takeover is not None:            # this host was promoted: its old master saves what it wrote after this
        data["takeover"] = takeover
    offers.write_offer(root, rep.name, data)
    rec["seed"] = {"id": ident, "time": now, "for": rec.get("prepared"), "file": path is not None,
                   "why": "asked" if force else "new channel" if new_channel else
                   "must be re-seeded" if ms.needs_seed else "not connected"}
    log(f"database replica {rep.name}: offered a seed to the slave ({rec['seed']['why']}; "
        + (f"{SEED_DIR}/{seed.name}, shipped with the push)" if path is not None else "it pulls its copy itself)"))


# ------------------------------------------------------------------------------------------------ slave
def _still_slave(root: Root) -> bool:
    from hotsync_events.configdb import open_db

    db = open_db("configuration", root, validate=False, initialise=False, journal=False)
    return (db.getprop("hotsync", "role") or "") == "slave" and (db.getprop("hotsync", "status") or "enabled") == "enabled"


def setup_slave(root: Root, db, cfg, pm, *, log: Callable[[str], None] = print, force_seed: bool = False) -> dict:
    """Seed or re-point each replica from its master's offer; ``{name: record}``."""
    from hotsync_events.sync import tls
    from hotsync_events.sync.replchannel import PairingError

    inputs = inputs_digest(root)            # before the offers are read: one arriving meanwhile starts another run
    prev = _previous(root)
    was_master = "previous_master" in read_status(root)
    master_fp = tls.master_pin_fingerprint(root)
    results: dict[str, dict] = {}
    for plugin, rep in collect_replicas(pm, db, root):
        rec = _own(prev.get(rep.name), "slave")
        rec.update(role="slave", plugin=plugin, engine=engine_name(rep), time=time.time())
        results[rep.name] = rec
        if not _still_slave(root):          # promoted (or fenced, disabled) meanwhile: touch nothing more
            rec["error"] = "this host is no longer an enabled slave: nothing was set up"
            break
        if rep.link is None:
            rec["error"] = _not_configured(db, rep, "slave")
            continue
        try:
            _setup_one(root, rep, rec, master_fp, was_master, force_seed, log)
        except PairingError as exc:
            rec["error"] = str(exc)
        except Exception as exc:
            rec["error"] = f"{type(exc).__name__}: {exc}"
        if rec.get("error"):
            log(f"database replica {rep.name}: {rec['error']}")
    _record(root, results, inputs=inputs, ok=not any(r.get("error") for r in results.values()), last=time.time())
    return results


def _setup_one(root: Root, rep, rec: dict, master_fp: str | None, was_master: bool, force_seed: bool, log) -> None:
    from hotsync_events.sync.replchannel import ensure_channel

    offer = offers.read_offer(root, rep.name, master_fp=master_fp) if master_fp else None
    link = rep.link
    if offer is not None and offer["master"] is not None:       # the master says where its server listens
        link = replace(link, master_host=offer["master"]["host"], port=offer["master"]["port"])
    ch = ensure_channel(root, link, engine_name(rep), "slave", log=log)
    try:
        st = rep.engine.status(ch.link)
    except Exception:
        if not force_seed:
            raise
        st = None        # a server that does not answer (stopped, left half rewound): --seed replaces its data
    rec["state"] = st.state if st is not None else "not answering"
    tried = {rec.get("seed_used"), rec.get("seed_tried")}       # an offer is tried once (a failed seed: not again)
    usable = offer is not None and (offer["seed_ready"] or not offer["file"]) \
        and (offer["id"] not in tried or force_seed)
    not_replica = st is None or st.state in ("not-configured", "master")
    if not_replica and was_master and not force_seed and not (rec.get("seeded") or rec.get("repaired")):
        _repair(root, rep, ch, rec, offer if usable else None, log=log)
    elif not_replica or force_seed or st.needs_seed:
        if not usable or offer is None:
            rec["waiting"] = _why_no_offer(root, rep.name, offer, master_fp, rec, key=rep.key)
            return
        seed = offers.offer_paths(root, rep.name)[0] if offer["file"] else None
        if seed is not None and not offers.seed_matches(seed, offer):
            rec["waiting"] = ("for the seed of the master's current offer: the file here is not the one it describes "
                              "(a push may be bringing it)")
            return
        log(f"database replica {rep.name}: seeding {st.server if st is not None else rep.name} from the master"
            + (f" ({SEED_DIR}/{seed.name})" if seed else ""))
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        rec["seed_tried"] = offer["id"]
        pos = rep.engine.seed(ch.link, seed, log=log, keep_previous=f"before-replica-{stamp}" if not_replica else None)
        rec.update(seeded=time.time(), seed_used=offer["id"], configured=ch.digest, position=getattr(pos, "value", None))
        if not_replica:
            rec["kept_previous"] = f"before-replica-{stamp}"
        rec["state"] = rep.engine.status(ch.link).state
        log(f"database replica {rep.name}: seeded at {rec['position']}; {rec['state']}")
    elif rec.get("configured") != ch.digest:
        rep.engine.configure_replica(ch.link, log=log)
        rec["configured"] = ch.digest
        rec["state"] = rep.engine.status(ch.link).state


def _why_no_offer(root: Root, name: str, offer: dict | None, master_fp: str | None, rec: dict, *,
                  key: str = "") -> str:
    """Why the slave has no seed to use, in words, with what to do."""
    mode = _masters_mode(root, key) if offer is None and key else None
    if mode is not None and mode != "replica":
        return (f"for a seed the master will not offer: its configuration, as its last push brought it, has "
                f"{key} {MODE_PROP} {mode or '(unset: dump)'}; on the master run config setprop {key} {MODE_PROP} "
                "replica, then hotsync sync (or set it back to dump here)")
    if offer is None and os.path.lexists(offers.offer_paths(root, name)[1]):
        return (f"for a seed from the master this slave pins ({master_fp or 'none yet'}): the offer here is not "
                "one (another host's, or not a valid offer); the master's next sync replaces it")
    if offer is not None and offer["id"] == rec.get("seed_tried") and offer["id"] != rec.get("seed_used"):
        return ("for a new seed: seeding from the last one failed (see the error before, and "
                "/var/log/hotsync/replicas.log); hotsync replicas setup --seed here tries it again, or run "
                "hotsync replicas setup --seed on the master for a new one")
    return ("for the master's seed: it offers one at its next sync (or run hotsync replicas setup --seed on the "
            "master)")


def _masters_mode(root: Root, key: str) -> str | None:
    """*key*'s DatabaseMode in the master's configuration as its last push brought it (the peer copy), or
    None when there is no copy (or it cannot be read): nothing is known then."""
    from hotsync_events.configdb.db import ConfigDB
    from hotsync_events.sync.lists import PEER_DIR

    path = root.join(PEER_DIR) / "configuration"
    try:
        db = ConfigDB(path)
        return (db.getprop(key, MODE_PROP) or "") if path.is_file() and key in db else None
    except Exception:     # a copy this slave cannot read says nothing about the master's mode
        return None


def _repair(root: Root, rep, ch, rec: dict, offer: dict | None, *, log) -> None:
    """The old master's server after a re-pair: never seeded over; what it committed after the new master
    took over is saved beside the files the first push kept aside, then it follows the new master."""
    from hotsync_events.dbkit.replica import Position, dated_folder

    takeover = (offer or {}).get("takeover")
    if offer is None or takeover is None or takeover["engine"] != engine_name(rep):
        rec["waiting"] = ("for the new master's offer with the position it took over at (its next sync): this "
                          "server was the master's, what it wrote after the promote is saved before it follows (a "
                          "pair promoted in dump mode has no such position: save what you need of this server, "
                          "then hotsync replicas setup --seed replaces it with the new master's copy; its data "
                          "directory is kept beside it)")
        return
    kept = (read_status(root).get("kept_by_repair") or {}).get("path")
    base = root.join(kept) if kept and root.join(kept).is_dir() else root.join("/var/lib/hotsync/kept")
    seed = offers.offer_paths(root, rep.name)[0] if offer["file"] else None
    log(f"database replica {rep.name}: re-pairing the old master's server; takeover at {takeover['value']}")
    res = rep.engine.repair(ch.link, dated_folder(base, engine_name(rep)),
                            Position(takeover["engine"], takeover["value"], takeover["timeline"]), seed=seed, log=log)
    rec.update(repaired=time.time(), seed_used=offer["id"], configured=ch.digest, method=res.method,
               transactions=res.transactions, saved_to=None, state=res.state)
    if res.saved_to:
        try:
            rec["saved_to"] = root.host_path(res.saved_to)
        except RootError:           # the engine saved it elsewhere: its own words
            rec["saved_to"] = str(res.saved_to)
    log(f"database replica {rep.name}: re-paired ({res.method}); "
        + (f"{res.transactions} transactions it committed after the takeover are saved in {rec['saved_to']}"
           if rec["saved_to"] else "it had committed nothing after the takeover"))
    if res.state == "needs-seed":
        rec["waiting"] = "for a seed from the new master (it offers one when the replica stays away)"


def setup(root: Root, *, force_seed: bool = False, wait: bool = True, log: Callable[[str], None] = print,
          pm=None, db=None) -> dict | None:
    """This host's part for its role; None when none is wanted, this host is neither an enabled master nor
    an enabled slave, or another setup runs (and *wait* is false)."""
    from hotsync_events.configdb import open_db
    from hotsync_events.sync.settings import Settings

    db = db if db is not None else open_db("configuration", root, validate=False, initialise=False, journal=False)
    if not replicas_wanted(db):
        return None
    cfg = Settings.from_db(db)
    if cfg.role not in ("master", "slave") or not cfg.enabled:
        log(f"database replicas: this host is not an enabled master or slave (role {cfg.role or 'none'}, status "
            f"{cfg.status}): nothing set up")
        return None
    if pm is None:
        from hotsync_events.manager import plugin_manager

        pm = plugin_manager(root)
    with setup_lock(root, wait=3600.0 if wait else 0.0) as got:
        if not got:
            return None
        if cfg.role == "master":
            return setup_master(root, db, cfg, pm, log=log, force_seed=force_seed)
        done = setup_slave(root, db, cfg, pm, log=log, force_seed=force_seed)
        # a push that landed during this run found the lock taken and started nothing: what it brought (a new
        # offer, the takeover position of a re-pair) is taken in now, not at some later push (bounded)
        for _ in range(3):
            if (read_status(root).get(STATUS_KEY) or {}).get("inputs") == inputs_digest(root) or not _still_slave(root):
                break
            log("database replicas: the master's offers changed during the setup: once more")
            done = setup_slave(root, db, cfg, pm, log=log, force_seed=False)
        return done


# ------------------------------------------------------------------------------------------------ the hook
def inputs_digest(root: Root) -> str:
    """What a slave's setup depends on that a push or a person changes (offers and seeds, the master pin,
    the configuration database), as sizes and times: cheap enough for every push."""
    from hotsync_events.sync import tls

    parts = []
    d = offers.seed_dir(root)
    paths = sorted(p for p in d.iterdir() if not p.name.startswith(".")) if d is not None else []
    pin = tls.master_pin_file(root)
    for p in [*paths, *([pin] if pin else []), root.join("/var/lib/nethserver/db/configuration")]:
        try:
            st = os.lstat(p)
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
    with setup_lock(root, wait=0) as free:
        if not free:          # one runs (a seed takes a while); a push after it ends starts the next if needed
            return False

    import subprocess
    import sys

    argv = [sys.executable, "-m", "hotsync_events.cli.hotsync", "--root", str(root.path), "-q", "replicas",
            "setup", "--background"]
    if spawn is not None:
        spawn(argv)
        return True
    from hotsync_events.childproc import module_cwd

    log = root.log_dir / "replicas.log"          # what it could not say otherwise (a crash) goes there too
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    started: dict[str, object] = {"time": time.time()}
    try:
        unit, why = _own_unit(root, argv, str(log))
        if why:
            os.write(fd, f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {why}\n".encode("utf-8", "backslashreplace"))
        if unit is None:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True,
                                    close_fds=True, cwd=module_cwd(root))
            started["pid"] = proc.pid
        else:
            started["unit"] = unit
    finally:
        os.close(fd)
    update_status(root, lambda d: d.setdefault(STATUS_KEY, {}).update(started=started))
    return True


#: the transient unit's hardening: hotsync-stunnel.service's own (debian/units), where the setup ran before it
#: had a unit of its own; the seed handles what the master sent
UNIT_HARDENING = ("NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
                  "ProtectKernelLogs=yes", "ProtectControlGroups=yes", "ProtectClock=yes", "ProtectHostname=yes",
                  "RestrictRealtime=yes", "RestrictNamespaces=yes", "LockPersonality=yes",
                  "MemoryDenyWriteExecute=yes", "SystemCallArchitectures=native",
                  "SystemCallFilter=@system-service chroot", "SystemCallErrorNumber=EPERM",
                  "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
                  "CapabilityBoundingSet=CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID "
                  "CAP_SETUID CAP_SETGID CAP_SETFCAP CAP_SYS_CHROOT CAP_MKNOD CAP_NET_BIND_SERVICE CAP_KILL",
                  "UMask=0022")


def _own_unit(root: Root, argv: list[str], log: str) -> tuple[str | None, str]:
    """Under the host's systemd, the setup in a transient unit of its own (``systemd-run --no-block``): the
    hook that starts it runs in ``hotsync-stunnel.service``, whose restart (every save event) would end a seed
    in progress. ``(unit, why not)``: the unit's name, or None when no systemd manages this root (a test's
    root, a container, the process back-end) or systemd-run refused, with why (for the log); the caller then
    starts it itself. Once systemd took the job, nothing else starts: its liveness is the unit's."""
    import shutil
    import subprocess

    from hotsync_events.childproc import module_cwd

    if str(root.path) != "/" or os.environ.get("HOTSYNC_SERVICE_BACKEND") == "process" \
            or not os.path.isdir("/run/systemd/system") or not shutil.which("systemd-run"):
        return None, ""
    unit = f"hotsync-replicas-setup-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}.service"
    props = [*UNIT_HARDENING, f"StandardOutput=append:{log}", f"StandardError=append:{log}",
             f"WorkingDirectory={module_cwd(root)}"]
    cmd = ["systemd-run", "--quiet", "--no-block", "--collect", f"--unit={unit}",
           "--description=HotSync database replicas setup (a seed)", *(f"--property={p}" for p in props), "--", *argv]
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:        # the job may be queued all the same: it is the unit's from here
        return unit, f"systemd-run did not answer within 20 s; the setup is left to {unit}"
    except OSError as exc:
        return None, f"systemd-run failed ({exc}): the setup runs in the hook's own unit"
    if cp.returncode != 0:
        return None, f"systemd-run refused ({cp.stderr.strip()[:300]}): the setup runs in the hook's own unit"
    return unit, ""
