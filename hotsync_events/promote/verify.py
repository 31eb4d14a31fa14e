"""The ``verify`` phase: what the slave holds, and why a promote would be refused (no change made).

:func:`assess` reads the status the slave's daemon hooks keep, the journal of a promote in progress and the
master's configuration copy; the refusals that ``--force`` cannot mend (not a slave, never synced, already
promoted, no copy of the master's configuration) come first, then those it can (a torn state, a master that
looks alive, a copy the schema refuses).
"""
from __future__ import annotations

import time
from typing import Any, Literal, TypedDict

from hotsync_events.configdb import ConfigDB, open_db
from hotsync_events.paths import Root
from hotsync_events.promote.config import HOST_LOCAL_DBS, HOST_LOCAL_KEYS, PEER_DIR, host_local
from hotsync_events.promote.journal import read_journal
from hotsync_events.sync import fence

__all__ = ["MISSED_BEATS", "Assessment", "Refusal", "assess", "plan_lines"]

#: heartbeats a real-time master may miss before its silence says it may be down; the alive-window is one
#: period more than that (4 x 20 s by default: the third missed one may still be on its way)
MISSED_BEATS = 3

#: why a promote is refused: the first four no ``--force`` can mend, the last three it can
RefusalReason = Literal["already-promoted", "not-slave", "never-synced", "no-peer-db", "torn", "master-alive",
                        "peer-schema"]


class Refusal(TypedDict):
    """One reason the promote would not run (``hotsync-promote --dry-run --json``'s ``refusals``)."""

    why: RefusalReason
    force: bool          # True: ``--force`` takes the risk; False: nothing can mend it
    text: str            # the sentence shown to the sysadmin


class Assessment(TypedDict):
    """What :func:`assess` finds: the takeover page and ``hotsync-promote --dry-run --json`` show it as is."""

    root: str
    time: float
    role: str                              # master, slave or ""
    status: str                            # the pair's hotsync status (enabled/disabled)
    master: str                            # MasterHost
    last_complete_sync: float | None       # end of the last complete push this slave received
    data_age: float | None                 # seconds since then
    last_received: dict[str, Any] | None   # the last push's record
    receiving: list[dict[str, Any]]        # pushes arriving now (pid, from, start, alive)
    last_contact: float | None
    contact_age: float | None
    interval_minutes: int
    realtime: bool
    heartbeat: int | None                  # seconds between the master's heartbeats, None: it does not beat
    window: float                          # a master heard within this many seconds may be alive
    peer_db: str | None                    # the master's configuration copy
    peer_db_time: float | None
    epoch: int                             # this host's pair epoch
    next_epoch: int                        # the epoch the promote raises to
    resuming: bool                         # a killed promote is taken up again
    journal: dict[str, Any] | None
    refusals: list[Refusal]
    warnings: list[str]
    dumps: list[Any]                       # what will be restored
    replicas: list[Any]                    # the database servers run as streaming replicas: promoted
    steps: list[Any]                       # the plugins' promote steps, in order
    local_props: list[Any]                 # host-local values kept from this host


def _ts(v) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def _no_beat_words(realtime: bool, every: Any) -> str:
    if every == 0:
        return "; its real-time notifier said it stopped, and sends no more heartbeats"
    if realtime:
        return ("; real-time sync is on, but no heartbeat came up to its last contact: its notifier is not "
                "running, or of a version that sends none")
    return ""


def _alive_rsync(pid: str, ticks: str | None = None) -> bool:
    from hotsync_events.sync.xfer import rsync_alive

    return rsync_alive(pid, ticks)


def assess(root: Root, pm=None, *, now: float | None = None) -> Assessment:
    """Everything the takeover page shows, and why the promote would be refused (no change made)."""
    from hotsync_events.sync.status import read_status

    now = time.time() if now is None else now
    db = open_db("configuration", root, validate=False, initialise=False, journal=False)
    h = db.props("hotsync")
    st = read_status(root)
    journal = read_journal(root)
    resuming = bool(journal and not journal.get("finished"))
    peer_path = root.join(PEER_DIR) / "configuration"
    peer = ConfigDB(peer_path) if peer_path.is_file() else None
    ph = peer.props("hotsync") if peer is not None else {}
    try:
        interval = max(int(ph.get("interval") or h.get("interval") or 15), 1)
    except ValueError:
        interval = 15
    realtime = (ph.get("realtime") or h.get("realtime") or "enabled") == "enabled"
    ok = st.get("last_success") if (st.get("role") or h.get("role")) == "slave" else None
    last = st.get("last_received")
    receiving = [{"pid": pid, **rec, "alive": _alive_rsync(pid)} for pid, rec in (st.get("receiving") or {}).items()]
    beats = st.get("last_beat") or {}
    last_beat = _ts(beats.get("time"))
    # a session that still runs (a push, a dry run) holds the slave's one session, and heartbeats wait at the
    # door: the master is there now
    running_now = [now for r in receiving if r["alive"]] + [
        now for pid, v in (st.get("dry_running") or {}).items()
        if isinstance(v, dict) and _alive_rsync(pid, v.get("ticks"))]
    contacts = [_ts((last or {}).get("end")), _ts((last or {}).get("start")), last_beat, *running_now,
                _ts((st.get("last_refused") or {}).get("time"))] + [_ts(r.get("start")) for r in receiving]
    known = [c for c in contacts if c is not None]
    last_contact = max(known) if known else None
    # a real-time master's notifier beats while nothing changes (realtime.heartbeat), and its sessions say
    # every how many seconds, so its silence for a few beats says it may be down. A master that did not beat
    # up to its last contact (its notifier stopped, said beat=0, or never ran; a master of an older version)
    # is heard from only by its schedule: an idle live one would look down after a minute
    every = beats.get("every")
    beat = min(int(every), 600) if isinstance(every, int) and not isinstance(every, bool) and every > 0 else 0
    beating = (beat > 0 and last_beat is not None and last_contact is not None
               and last_beat >= last_contact - (MISSED_BEATS + 1) * beat)
    window = float((MISSED_BEATS + 1) * beat) if beating else 2 * interval * 60.0
    a: Assessment = {
        "root": str(root.path), "time": now, "role": "master" if h.get("role") == "server" else h.get("role", ""),
        "status": h.get("status", "enabled"), "master": h.get("MasterHost", ""),
        "last_complete_sync": _ts((ok or {}).get("end")), "data_age": None,
        "last_received": last, "receiving": receiving, "last_contact": last_contact,
        "contact_age": None if last_contact is None else now - last_contact,
        "interval_minutes": interval, "realtime": realtime, "heartbeat": beat if beating else None, "window": window,
        "peer_db": str(peer_path) if peer is not None else None,
        "peer_db_time": peer_path.stat().st_mtime if peer is not None else None,
        "epoch": fence.read_epoch(root), "resuming": resuming, "journal": journal if resuming else None,
        "refusals": [], "warnings": [], "next_epoch": 0, "dumps": [], "replicas": [], "steps": [],
        "local_props": [],
    }
    if a["last_complete_sync"] is not None:
        a["data_age"] = now - a["last_complete_sync"]
    # above this host's epoch and the master's (as its last complete push said it): never learnt from a file
    master_epoch = int(st.get("master_epoch") or 0)
    a["next_epoch"] = int(journal["epoch"]) if resuming and journal and journal.get("epoch") else max(a["epoch"], master_epoch) + 1
    # hard refusals: nothing --force can mend
    if not resuming:
        done = st.get("promote") or {}
        if a["role"] == "master" and done:
            a["refusals"].append({"why": "already-promoted", "force": False, "text":
                                  f"already promoted at {_iso(done.get('time'))} (pair epoch {done.get('epoch')}): "
                                  "this host is the master; hotsync status shows the promote"})
        elif a["role"] != "slave":
            a["refusals"].append({"why": "not-slave", "force": False, "text":
                                  f"Promotion to MASTER is possible only for a SLAVE: this host's hotsync role is "
                                  f"{a['role'] or 'not set'}"})
        elif ok is None or (st.get("last_full") is None and _has_kinds(st)):
            a["refusals"].append({"why": "never-synced", "force": False, "text":
                                  "this slave never received a complete sync: there is no data to take over with"})
        elif peer is None:
            a["refusals"].append({"why": "no-peer-db", "force": False, "text":
                                  f"there is no copy of the master's configuration database ({peer_path}): "
                                  "the master's pushes did not ship it"})
    verified = resuming and "verify" in (journal or {}).get("done", {})
    if not verified and not any(r["force"] is False for r in a["refusals"]):
        torn = []
        # every session since the last complete full push must have completed (a good short push after an
        # interrupted full one does not mend it); a master of an older version said no kinds: its last push
        for u in st.get("unclean") or ([] if _has_kinds(st) or not last or last.get("result") == "success" else [last]):
            torn.append(f"a {u.get('kind') or ''} push ({_iso(u.get('start'))} -> {_iso(u.get('end'))}) did not complete "
                        f"(rsync exit {u.get('exit_status')})".replace("a  push", "a push") +
                        (" and no full push completed since" if u.get("kind") != "sync" else
                         ": the last full push is incomplete"))
        if torn:
            torn[-1] += ": the files are a mix of two syncs"
        for r in receiving:
            torn.append(f"a push from {r.get('from')} is arriving right now (since {_iso(r.get('start'))}, pid "
                        f"{r['pid']})" if r["alive"] else
                        f"a push from {r.get('from')} (since {_iso(r.get('start'))}) was cut off: its daemon died")
        if torn:
            a["refusals"].append({"why": "torn", "force": True, "text": "torn state: " + "; ".join(torn)})
        if a["contact_age"] is not None and a["contact_age"] < window:
            a["refusals"].append({"why": "master-alive", "force": True, "text":
                                  f"the master was heard from {fence.age_words(a['contact_age'])} ago, within "
                                  + (f"{fence.age_words(window)} ({MISSED_BEATS} missed heartbeats of {beat} s: its "
                                     "real-time notifier tells this slave it is alive while nothing changes)"
                                     if beating else f"two sync intervals ({2 * interval} min"
                                     + _no_beat_words(realtime, every) + ")")
                                  + ": it may be alive. Promoting now risks SPLIT BRAIN: two masters, each taking "
                                  "writes the other never gets; the old master's next push is refused, but what "
                                  "its users write from now on is lost to this host. Make sure it is down "
                                  "(switch it off or unplug it) before you use --force"})
        if peer is not None:
            from hotsync_events.sync.peercopy import schema_problems

            bad = schema_problems(root)
            if bad:
                a["refusals"].append({"why": "peer-schema", "force": True, "text":
                                      "the master's configuration copy does not pass this host's schema: "
                                      + "; ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")})
    if st.get("peer_refused"):
        a["warnings"].append("the master's last peer copy was refused ("
                             + "; ".join((st["peer_refused"].get("problems") or [])[:3])
                             + "): the promote applies the last good one, of " + _iso(a["peer_db_time"]))
    a["dumps"], a["steps"], a["local_props"] = _plan_parts(root, db, pm, a["warnings"])
    a["replicas"] = _replicas(root, db, pm, a["warnings"])
    return a


def _replicas(root: Root, db, pm, warnings: list) -> list[dict[str, str]]:
    """The database replicas the promote will promote (hook ``hotsync_replicas``)."""
    from hotsync_events.manager import RegistrationError
    from hotsync_events.sync.replicas import collect_replicas, replicas_wanted

    if pm is None or not replicas_wanted(db):
        return []
    try:
        return [{"name": r.name, "plugin": p, "engine": str(getattr(r.engine, "engine", ""))}
                for p, r in collect_replicas(pm, db, root)]
    except RegistrationError as exc:
        warnings.append(f"database replicas: {exc}")
        return []


def _has_kinds(st: dict) -> bool:
    """Whether the sessions were recorded by a slave that knows their kinds (this version)."""
    return any(r.get("kind") for r in (st.get("history") or [])) or "last_full" in st or "unclean" in st


def _iso(ts) -> str:
    from hotsync_events.sync.status import iso

    return iso(_ts(ts)) or "?"


def _plan_parts(root: Root, db, pm, warnings: list) -> tuple[list, list, list]:
    from hotsync_events.sync.databases import DumpsError, collect_dumps, databases_enabled
    from hotsync_events.manager import RegistrationError
    from hotsync_events.promote.steps import PromoteStepError, collect_promote_steps

    dumps, steps = [], []
    if pm is not None:
        try:
            if databases_enabled(db):
                dumps = [{"name": d.name, "plugin": p, "path": d.path, "shipped": root.join(d.path).is_file(),
                          "at_promote": d.at_promote} for p, d in collect_dumps(pm, db)]
        except (DumpsError, RegistrationError) as exc:
            warnings.append(f"databases: {exc}")
        try:
            steps = [{"name": s.name, "plugin": p, "priority": s.priority, "critical": s.critical}
                     for p, s in collect_promote_steps(pm, db, root)]
        except PromoteStepError as exc:
            warnings.append(f"promote steps: {exc}")
    _, props = host_local(root, "configuration")
    return dumps, steps, sorted(f"{k} {p}" for k, p in props)


def plan_lines(a: Assessment) -> list[str]:
    """Each step the promote will take, in words (what ``--dry-run`` and the question show)."""
    done = set((a.get("journal") or {}).get("done") or {})
    master = a["master"] or "the old master"
    dbs = [d for d in a["dumps"] if d.get("at_promote", True)]
    backups = [d for d in a["dumps"] if not d.get("at_promote", True)]
    lines = [
        ("fence", f"fence: raise the pair's epoch {a['epoch']} -> {a['next_epoch']}; from then on this host's rsync "
                  f"daemon refuses every push before a byte is written, and {master} learns at its next try "
                  "that it was demoted" + ("; the push arriving now is cut off" if any(
                      r["alive"] for r in a["receiving"]) else "")),
        ("links", "links: the copy's symbolic links, stored munged on this slave, are written back as the master "
                  "had them"),
        ("config", "config: the master's configuration database (copy received "
                   f"{_iso(a['peer_db_time'])}) becomes this host's, in one transaction, keeping this host's "
                   f"{', '.join(a['local_props']) or 'nothing'}, keys {', '.join(sorted(HOST_LOCAL_KEYS['configuration']))}"
                   f" and the {', '.join(sorted(HOST_LOCAL_DBS))} database; the master's include/exclude "
                   "lists (shipped with it) are installed in etc/hotsync, this host's differing ones kept aside"),
        ("databases", "databases: " + "".join(
            f"promote the {r['engine']} replica {r['name']} ({r['plugin']}: replay what it received, then take "
            "writes; its GTID/LSN journaled); " for r in a.get("replicas") or []) + "restore " + (", ".join(
            f"{d['name']} ({d['plugin']}{'' if d['shipped'] else ', NOT shipped: skipped'})" for d in dbs)
            if dbs else "nothing (no dump shipped, or databases disabled)") + "".join(
            f"; keep {d['name']} ({d['plugin']}: a backup beside the replica, not restored)" for d in backups)),
        ("steps", "plugin promote steps: " + (", ".join(
            f"{s['name']} ({s['plugin']}, priority {s['priority']}{', critical' if s['critical'] else ''})"
            for s in a["steps"]) if a["steps"] else "none (no active plugin gives one)")),
        ("role", "role: hotsync role master, no SlaveHost yet (nothing is pushed to the old master until you "
                 "re-pair it)"),
        ("services", "services: signal-event nethserver-hotsync-save (this master's services, and the listener "
                     f"that tells {master} it was demoted)"),
    ]
    return [f"{i}. {text}" + ("   [done]" if key in done else "") for i, (key, text) in enumerate(lines, 1)]
