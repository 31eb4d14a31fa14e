"""``hotsync-promote``: the slave takes over, verified, fenced, resumable.

The phases, in order (:data:`PHASES`):

``verify``     what the slave holds: when the master's last complete sync arrived, how old the data is,
               whether the last received run completed, whether the master looks alive. A torn state
               and a master that pushed within the last two intervals (the last minute with realtime
               sync on) are refused unless ``force``; a host that is not a slave, or never received a
               complete sync, is refused always.
``fence``      the pair's epoch goes up by one and is recorded with the fence file
               (:mod:`hotsync_events.fence`): from then on the rsync daemon's pre-xfer refuses every
               push, and a push in flight is ended (its daemon child is killed).
``config``     the master's configuration database (the copy each push ships to
               ``var/lib/hotsync/peer/``) replaces this host's, in one transaction per database, keeping
               this host's own keys and props: props the schema marks ``local=True``, the keys of
               :data:`HOST_LOCAL_KEYS`, and the databases of :data:`HOST_LOCAL_DBS`. The master's
               include/exclude lists (shipped beside it, under ``peer/lists/``) are installed into
               ``etc/hotsync/`` (:func:`hotsync_events.sync.peerlists.install_lists`): the new master
               pushes what the old one pushed; this host's own differing lists are kept aside.
``databases``  each shipped dump is restored by its plugin (:func:`hotsync_events.databases.restore_all`),
               unless ``hotsync databases`` is disabled.
``steps``      the plugins' promote steps, in (priority, name) order, each logged SUCCESS or FAILED; a
               failed step does not stop the others unless it is critical.
``role``       ``hotsync role master`` with the old master as SlaveHost (one transaction); the status
               file's slave-era records are archived.
``services``   ``signal-event nethserver-hotsync-save`` on the new role.

Progress goes to a journal (``var/lib/hotsync/sync/promote.json``, written atomically after every
phase, dump and step): a promote killed at any point is run again and resumes where it stopped; each
phase is idempotent, so one killed after its work but before its journal entry is simply redone.
"""
from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Callable

from .configdb import ConfigDB, open_db
from .dbformat import Record
from .fsutil import atomic_write
from .paths import Root
from . import fence

__all__ = ["EXIT_CANNOT", "EXIT_CRITICAL", "EXIT_OK", "EXIT_REFUSED", "EXIT_STEPS_FAILED", "HOST_LOCAL_DBS",
           "HOST_LOCAL_KEYS", "PHASES", "Promote", "assess", "host_local", "read_journal", "restore_config"]

EXIT_OK, EXIT_REFUSED, EXIT_CANNOT, EXIT_STEPS_FAILED, EXIT_CRITICAL = 0, 1, 2, 3, 4
PHASES = ("verify", "fence", "config", "databases", "steps", "role", "services")
PEER_DIR = "/var/lib/hotsync/peer"
JOURNAL = "/var/lib/hotsync/sync/promote.json"
#: keys that stay this host's whatever the master's copy says (e-smith's host identity)
HOST_LOCAL_KEYS = {"configuration": frozenset({"SystemName", "DomainName"})}
#: databases that stay this host's entirely (network interfaces and their roles: reassigned by hand)
HOST_LOCAL_DBS = frozenset({"networks"})
CRASH_ENV = "HOTSYNC_PROMOTE_CRASH_AT"
REALTIME_WINDOW = 60.0


# ------------------------------------------------------------------------------------------- journal
def _journal_path(root: Root) -> Path:
    return root.join(JOURNAL)


def read_journal(root: Root) -> dict | None:
    try:
        data = json.loads(_journal_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_journal(root: Root, j: dict) -> None:
    atomic_write(_journal_path(root), json.dumps(j, indent=1, sort_keys=True) + "\n", mode=0o600)


def _crash_point(name: str) -> None:
    """Tests: ``HOTSYNC_PROMOTE_CRASH_AT=<name>`` kills this process (SIGKILL) at that point."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------------------------------- host-local
def host_local(root: Root, dbname: str) -> tuple[frozenset, frozenset]:
    """``(keys, {(key, prop)})`` that stay this host's when *dbname* takes the master's values."""
    from . import schema

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
    from .configdb import _DB_NAME

    d = root.join(PEER_DIR)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.is_file() and _DB_NAME.fullmatch(p.name)
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


# ------------------------------------------------------------------------------------------- verify
def _ts(v) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def _session_processes(root: Root) -> set[int]:
    """The pids of every session of *root*'s rsync daemon and their descendants (found in /proc)."""
    confs = tuple(f"--config={root.path}/etc/{name}".replace("//", "/").encode() for name in ("rsyncd.conf",
                                                                                              "rsyncd-pair.conf"))
    children: dict[int, list[int]] = {}
    roots: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(pid)
        if b"--daemon" in argv and any(a in confs for a in argv):
            roots.add(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    found.discard(os.getpid())
    return found


def _kill_sessions(root: Root, timeout: float = 10.0) -> set[int]:
    """SIGKILL every session process of *root*'s daemon until none is left (bounded); the pids killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        pids = _session_processes(root)
        if not pids:
            return killed
        if time.monotonic() > deadline:
            raise RuntimeError(f"the rsync sessions {sorted(pids)} of this host's daemon outlived SIGKILL for "
                               f"{timeout:.0f} s")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def _alive_rsync(pid: str) -> bool:
    try:
        with open(f"/proc/{int(pid)}/comm", encoding="ascii", errors="replace") as fh:
            return fh.read().strip().startswith("rsync")
    except (OSError, ValueError):
        return False


def assess(root: Root, pm=None, *, now: float | None = None) -> dict:
    """Everything the takeover page shows, and why the promote would be refused (no change made)."""
    from .sync.status import read_status

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
    window = REALTIME_WINDOW if realtime else 2 * interval * 60.0
    ok = st.get("last_success") if (st.get("role") or h.get("role")) == "slave" else None
    last = st.get("last_received")
    receiving = [{"pid": pid, **rec, "alive": _alive_rsync(pid)} for pid, rec in (st.get("receiving") or {}).items()]
    contacts = [_ts((last or {}).get("end")), _ts((last or {}).get("start")),
                _ts((st.get("last_refused") or {}).get("time"))] + [_ts(r.get("start")) for r in receiving]
    contacts = [c for c in contacts if c is not None]
    last_contact = max(contacts) if contacts else None
    a: dict = {
        "root": str(root.path), "time": now, "role": "master" if h.get("role") == "server" else h.get("role", ""),
        "status": h.get("status", "enabled"), "master": h.get("MasterHost", ""),
        "last_complete_sync": _ts((ok or {}).get("end")), "data_age": None,
        "last_received": last, "receiving": receiving, "last_contact": last_contact,
        "contact_age": None if last_contact is None else now - last_contact,
        "interval_minutes": interval, "realtime": realtime, "window": window,
        "peer_db": str(peer_path) if peer is not None else None,
        "peer_db_time": peer_path.stat().st_mtime if peer is not None else None,
        "epoch": fence.read_epoch(root), "resuming": resuming, "journal": journal if resuming else None,
        "refusals": [], "warnings": [],
    }
    if a["last_complete_sync"] is not None:
        a["data_age"] = now - a["last_complete_sync"]
    # above this host's epoch and the master's (as its last complete push said it): never learnt from a file
    master_epoch = int(st.get("master_epoch") or 0)
    a["next_epoch"] = int(journal["epoch"]) if resuming and journal.get("epoch") else max(a["epoch"], master_epoch) + 1
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
                                  f"the master pushed {fence.age_words(a['contact_age'])} ago, within "
                                  + ("the last minute (realtime sync is on)" if realtime else
                                     f"two sync intervals ({2 * interval} min)")
                                  + ": it may be alive. Promoting now risks SPLIT BRAIN: two masters, each taking "
                                  "writes the other never gets; the old master's next push is refused, but what "
                                  "its users write from now on is lost to this host. Make sure it is down "
                                  "(switch it off or unplug it) before you use --force"})
        if peer is not None:
            from .sync.peercopy import schema_problems

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
    return a


def _has_kinds(st: dict) -> bool:
    """Whether the sessions were recorded by a slave that knows their kinds (this version)."""
    return any(r.get("kind") for r in (st.get("history") or [])) or "last_full" in st or "unclean" in st


def _iso(ts) -> str:
    from .sync.status import iso

    return iso(_ts(ts)) or "?"


def _plan_parts(root: Root, db, pm, warnings: list) -> tuple[list, list, list]:
    from .databases import DumpsError, collect_dumps, databases_enabled
    from .promotesteps import PromoteStepError, collect_promote_steps

    dumps, steps = [], []
    if pm is not None:
        try:
            if databases_enabled(db):
                dumps = [{"name": d.name, "plugin": p, "path": d.path, "shipped": root.join(d.path).is_file()}
                         for p, d in collect_dumps(pm, db)]
        except DumpsError as exc:
            warnings.append(f"databases: {exc}")
        try:
            steps = [{"name": s.name, "plugin": p, "priority": s.priority, "critical": s.critical}
                     for p, s in collect_promote_steps(pm, db, root)]
        except PromoteStepError as exc:
            warnings.append(f"promote steps: {exc}")
    _, props = host_local(root, "configuration")
    return dumps, steps, sorted(f"{k} {p}" for k, p in props)


def plan_lines(a: dict) -> list[str]:
    """Each step the promote will take, in words (what ``--dry-run`` and the question show)."""
    done = set(((a.get("journal") or {}).get("done") or {}))
    master = a["master"] or "the old master"
    dbs = a["dumps"]
    lines = [
        ("fence", f"fence: raise the pair's epoch {a['epoch']} -> {a['next_epoch']}; from then on this host's rsync "
                  f"daemon refuses every push before a byte is written, and {master} learns at its next try "
                  "that it was demoted" + ("; the push arriving now is cut off" if any(
                      r["alive"] for r in a["receiving"]) else "")),
        ("config", "config: the master's configuration database (copy received "
                   f"{_iso(a['peer_db_time'])}) becomes this host's, in one transaction, keeping this host's "
                   f"{', '.join(a['local_props']) or 'nothing'}, keys {', '.join(sorted(HOST_LOCAL_KEYS['configuration']))}"
                   f" and the {', '.join(sorted(HOST_LOCAL_DBS))} database; the master's include/exclude "
                   "lists (shipped with it) are installed in etc/hotsync, this host's differing ones kept aside"),
        ("databases", "databases: restore " + (", ".join(
            f"{d['name']} ({d['plugin']}{'' if d['shipped'] else ', NOT shipped: skipped'})" for d in dbs)
            if dbs else "nothing (no dump shipped, or databases disabled)")),
        ("steps", "plugin promote steps: " + (", ".join(
            f"{s['name']} ({s['plugin']}, priority {s['priority']}{', critical' if s['critical'] else ''})"
            for s in a["steps"]) if a["steps"] else "none (no active plugin gives one)")),
        ("role", "role: hotsync role master, no SlaveHost yet (nothing is pushed to the old master until you "
                 "re-pair it)"),
        ("services", "services: signal-event nethserver-hotsync-save (this master's services, and the listener "
                     f"that tells {master} it was demoted)"),
    ]
    return [f"{i}. {text}" + ("   [done]" if key in done else "") for i, (key, text) in enumerate(lines, 1)]


MANUAL_STEPS = (
    "Reassign the network roles if this host's interfaces differ from the master's (the networks database "
    "was kept as this host's), and move the service address or DNS names to this host.",
    "Run: signal-event post-restore-data   (the plugins' post-restore actions: databases reloaded by the "
    "applications, ACLs, caches).",
    "When the old master {old} comes back it is fenced (its pushes are refused, it stops). Make it the new "
    "slave (docs/promote.md, section 7): here, config setprop hotsync SlaveHost {old} MasterHost ''; "
    "signal-event nethserver-hotsync-save. On {old}: config setprop hotsync role slave MasterHost <this host>; "
    "signal-event nethserver-hotsync-save. Then here, yourself: hotsync sync (it shows the dry run and asks; "
    "what it replaces or deletes on {old}, written there after {synced}, is kept in /var/lib/hotsync/kept/).",
    "Reconnect backup disks, then reboot this host once and check its services.",
)


# ------------------------------------------------------------------------------------------- run
class _CriticalStep(Exception):
    """A critical plugin step failed: the promote stops before the role changes (re-run resumes)."""


class Promote:
    """One run of the promote (fresh or resumed); :meth:`run` after :func:`assess` accepted it."""

    def __init__(self, root: Root, a: dict, *, pm=None, force: bool = False, log: Callable[[str], None] = print,
                 err: Callable[[str], None] | None = None) -> None:
        self.root, self.a, self.pm, self.force = root, a, pm, force
        self.log = log
        self.err = err or log
        j = a.get("journal") if a.get("resuming") else None
        self.j: dict = j or {"id": uuid.uuid4().hex, "started": time.time(), "done": {}, "timings": {},
                             "dbs": {}, "steps": {}, "forced": force, "epoch": None,
                             "verified": {k: a.get(k) for k in ("last_complete_sync", "data_age", "contact_age",
                                                                "master", "epoch")}}
        self.j.setdefault("runs", []).append({"pid": os.getpid(), "start": time.time()})

    # journal helpers
    def _save(self) -> None:
        _write_journal(self.root, self.j)

    def _phase(self, name: str, fn) -> object:
        if name in self.j["done"]:
            return None
        t0 = time.monotonic()
        result = fn()
        _crash_point(name)           # the work is done, the journal does not know yet: the worst moment
        self.j["timings"][name] = self.j["timings"].get(name, 0.0) + time.monotonic() - t0
        self.j["done"][name] = time.time()
        self._save()
        return result

    def run(self, verify_seconds: float = 0.0) -> int:
        self.j["timings"]["verify"] = self.j["timings"].get("verify", 0.0) + verify_seconds
        self.j["done"].setdefault("verify", time.time())
        self._save()
        _crash_point("verify")
        self._phase("fence", self.do_fence)
        self._phase("config", self.do_config)
        self._phase("databases", self.do_databases)
        try:
            self._phase("steps", self.do_steps)
        except _CriticalStep:
            self.err(f"hotsync-promote: STOPPED: the critical promote step {self.j.get('critical')} failed. "
                     "Fix its cause, then run hotsync-promote again: it resumes here.")
            return EXIT_CRITICAL
        self._phase("role", self.do_role)
        self._phase("services", self.do_services)
        return self.finish()

    # phases
    def do_fence(self) -> None:
        if not self.j.get("epoch"):
            self.j["epoch"] = int(self.a["next_epoch"])
            self._save()          # the epoch is chosen once: a re-run after a crash reuses it
        epoch = int(self.j["epoch"])
        fence.write_epoch(self.root, epoch, "promoted")
        fence.write_fence(self.root, epoch, self.a.get("master") or "")
        self._cut_off_pushes()      # the fence file refuses new sessions; this ends the ones in flight
        self.log(f"fence: pair epoch {epoch}; pushes to this host are refused from now on ({fence.FENCE_FILE}), "
                 "none is in flight")

    def _cut_off_pushes(self) -> None:
        """End every session of this host's rsync daemon (the fence file refuses new ones from now on).

        Each session is a ``rsync --server --daemon --config=<root>/etc/rsyncd*.conf`` process that stunnel
        started, with its children (the receiver, the hooks): all of them are killed, and the fence step
        returns only when none is left, so no byte from the old master lands after it.
        """
        from .sync.status import update_status

        killed = _kill_sessions(self.root)
        if killed:
            self.log(f"fence: cut off the push in flight ({len(killed)} rsync processes of this host's daemon)")
        now = time.time()

        def change(d: dict) -> None:
            for pid, rec in list((d.get("receiving") or {}).items()):
                del d["receiving"][pid]
                d["last_received"] = {"start": rec.get("start"), "end": now, "exit_status": -9, "kind": rec.get("kind"),
                                      "from": rec.get("from"), "result": "failed", "cut_off": True}

        update_status(self.root, change)

    def do_config(self) -> None:
        self.log("config: applying the master's configuration database")
        self.j["config"] = restore_config(self.root, log=self.log)
        from .sync.peerlists import install_lists   # the master's include/exclude lists: push what it pushed

        self.j["lists"] = install_lists(self.root, self.root.join(PEER_DIR), log=self.log)

    def _db(self):
        return open_db("configuration", self.root)

    def _pm(self):
        if self.pm is None:
            from .events import plugin_manager

            self.pm = plugin_manager(self.root)
        self.pm.root = self.root
        return self.pm

    def do_databases(self) -> None:
        from .databases import DumpsError, databases_enabled, plan, restore_all

        db = self._db()
        if not databases_enabled(db):
            self.log("databases: skipped (hotsync databases is disabled)")
            return
        try:
            planned = plan(self.root, pm=self._pm(), db=db)
        except DumpsError as exc:
            self.err(f"databases: FAILED: {exc}")
            self.j["dbs"]["*"] = f"failed: {exc}"
            return
        if not planned:
            self.log("databases: none to restore (no plugin gives a dump on this host)")
        for plugin, dump, shipped in planned:
            if dump.name in self.j["dbs"]:
                continue
            errors: list[str] = []
            failed = restore_all(self.root, [(plugin, dump, shipped)], db=db, log=self.log,
                                 err=lambda m: errors.append(m))
            status = "failed: " + "; ".join(errors) if failed else ("success" if shipped else "not shipped")
            self.log(f"database {dump.name} (plugin {plugin}): "
                     + ("FAILED: " + "; ".join(errors) if failed else "SUCCESS" if shipped else "skipped (not shipped)"))
            self.j["dbs"][dump.name] = status
            self._save()
            _crash_point(f"database:{dump.name}")

    def do_steps(self) -> None:
        """Run the steps not yet done; _CriticalStep when a critical one failed (the promote stops there)."""
        from .promotesteps import PromoteStepError, collect_promote_steps, run_promote_step

        db = self._db()
        pm = self._pm()
        try:
            steps = collect_promote_steps(pm, db, self.root)
        except PromoteStepError as exc:
            self.err(f"plugin promote steps: FAILED: {exc}")
            self.j["steps"]["*"] = {"status": "failed", "error": str(exc)}
            return
        for plugin, step in steps:
            prev = self.j["steps"].get(step.name)
            if prev and (prev["status"] == "success" or not step.critical):
                continue
            out = run_promote_step(plugin, step, pm, self.root, db, log=self.log)
            self.j["steps"][step.name] = {"status": out.status, "plugin": plugin, "error": out.error,
                                          "time": round(out.duration, 3), "critical": step.critical}
            self._save()
            _crash_point(f"step:{step.name}")
            if out.error and step.critical:
                self.j["critical"] = step.name
                self._save()
                raise _CriticalStep(step.name)

    def do_role(self) -> None:
        from .sync.status import read_status

        db = self._db()
        with db.transaction() as txn:
            rec = txn.record("hotsync") or Record("configuration")
            props = dict(rec.props)
            # no SlaveHost: nothing pushes to the old master (its unsynced writes are still there to be
            # saved by hand) until the sysadmin re-pairs it and names it here; MasterHost stays, so the
            # fence listener keeps telling the old master that it was demoted
            props.update(role="master", status="enabled", SlaveHost="")
            txn.put("hotsync", Record(rec.type, props))
        if read_status(self.root).get("role") != "master":
            fence.archive_role_status(self.root, "slave", extra={"role": "master"})
        from .sync.status import update_status

        # the first push in the new direction is a person's: not the schedule's, not the notifier's
        update_status(self.root, lambda d: d.update(first_push={
            "since": time.time(), "why": "this host was promoted to master: its first push to the re-paired old "
                                         "master is a person's"}))
        from .sync.tls import pin_path, trusted_master_dir

        # the old master becomes the slave with its own certificate, the one this host trusted as its master:
        # that is the slave certificate this master pins (a pin from an earlier life as master is kept aside)
        pin = pin_path(self.root)
        trusted = sorted(trusted_master_dir(self.root).glob("*.0")) if trusted_master_dir(self.root).is_dir() else []
        if pin.exists():
            os.replace(pin, pin.with_name(pin.name + ".previous"))
        if trusted:
            atomic_write(pin, trusted[0].read_bytes(), mode=0o644)
        self.log("role: this host is the master now; it pushes to no slave until you re-pair the old master"
                 + (" (its certificate, trusted here as the master's, is pinned as the slave's)" if trusted else ""))

    def do_services(self) -> None:
        from .events import signal_event

        res = signal_event("nethserver-hotsync-save", root=self.root, pm=self._pm())
        for r in res.results:
            if r.status == "failed":
                self.err(f"services: action {r.step.name} FAILED: {r.reason}")
        self.j["services_ok"] = res.ok
        self.log("services: signal-event nethserver-hotsync-save " + ("SUCCESS" if res.ok else "FAILED"))

    def finish(self) -> int:
        from .sync.status import update_status

        now = time.time()
        t = self.j["timings"]
        failed_steps = sorted(n for n, s in self.j["steps"].items() if s.get("status") == "failed")
        failed_dbs = sorted(n for n, s in self.j["dbs"].items() if str(s).startswith("failed"))
        record = {"time": now, "started": self.j["started"], "epoch": self.j["epoch"],
                  "duration": round(now - self.j["started"], 3),
                  "data_age": self.j["verified"].get("data_age"),
                  "last_complete_sync": self.j["verified"].get("last_complete_sync"),
                  "old_master": self.j["verified"].get("master"), "forced": self.j.get("forced", False),
                  "timings": {k: round(v, 3) for k, v in t.items()}, "runs": len(self.j.get("runs", [])),
                  "failed_steps": failed_steps, "failed_databases": failed_dbs,
                  "services_ok": self.j.get("services_ok", True)}
        update_status(self.root, lambda d: d.update(promote=record, role="master"))
        self.j["finished"] = now
        self.j["record"] = record
        self._save()
        return EXIT_STEPS_FAILED if failed_steps or failed_dbs or not record["services_ok"] else EXIT_OK
