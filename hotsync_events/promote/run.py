"""``hotsync-promote``: the slave takes over, verified, fenced, resumable.

The phases, in order (:data:`PHASES`):

``verify``     what the slave holds: when the master's last complete sync arrived, how old the data is,
               whether the last received run completed, whether the master looks alive. A torn state
               and a master heard from within the last two intervals (three missed heartbeats and one
               period more, 80 s by default, while its real-time notifier beats) are refused unless
               ``force``; a host that is not a slave, or never received a
               complete sync, is refused always.
``fence``      the pair's epoch goes up by one and is recorded with the fence file
               (:mod:`hotsync_events.sync.fence`): from then on the rsync daemon's pre-xfer refuses every
               push, and a push in flight is ended (its daemon child is killed).
``links``      the copy's symbolic links, stored munged while this host was a slave, are written back as
               the master had them (:func:`hotsync_events.sync.symlinks.unmunge`).
``config``     the master's configuration database (the copy each push ships to
               ``var/lib/hotsync/peer/``) replaces this host's, in one transaction per database, keeping
               this host's own keys and props: props the schema marks ``local=True``, the keys of
               :data:`HOST_LOCAL_KEYS`, and the databases of :data:`HOST_LOCAL_DBS`. The master's
               include/exclude lists (shipped beside it, under ``peer/lists/``) are installed into
               ``etc/hotsync/`` (:func:`hotsync_events.sync.peerlists.install_lists`): the new master
               pushes what the old one pushed; this host's own differing lists are kept aside.
``databases``  each database server run as a streaming replica (hook ``hotsync_replicas``) is promoted, its
               takeover position (GTID or LSN) journaled (:func:`hotsync_events.sync.replicas.promote_replicas`);
               each shipped dump is restored by its plugin (:func:`hotsync_events.sync.databases.restore_all`),
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

import os
import signal
import time
import uuid
from collections.abc import Callable

from hotsync_events.configdb import open_db
from hotsync_events.configdb.format import Record
from hotsync_events.fsutil import atomic_write
from hotsync_events.paths import Root
from hotsync_events.promote.config import PEER_DIR, restore_config
from hotsync_events.promote.journal import _crash_point, _write_journal
from hotsync_events.promote.verify import Assessment
from hotsync_events.sync import fence

__all__ = ["EXIT_CANNOT", "EXIT_CRITICAL", "EXIT_OK", "EXIT_REFUSED", "EXIT_STEPS_FAILED", "MANUAL_STEPS", "PHASES",
           "Promote"]

EXIT_OK, EXIT_REFUSED, EXIT_CANNOT, EXIT_STEPS_FAILED, EXIT_CRITICAL = 0, 1, 2, 3, 4
PHASES = ("verify", "fence", "links", "config", "databases", "steps", "role", "services")


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



# ------------------------------------------------------------------------------------------- cut-off
def _session_processes(root: Root) -> set[int]:
    """The pids of every session of *root*'s rsync daemon and their descendants (found in /proc), with the
    hooks' servers the slave's listener forked for them (its children but stunnel)."""
    confs = tuple(f"--config={root.path}/etc/{name}".replace("//", "/").encode() for name in ("rsyncd.conf",
                                                                                              "rsyncd-pair.conf"))
    mine = os.fsencode(str(root.path))
    children: dict[int, list[int]] = {}
    argvs: dict[int, list[bytes]] = {}
    listeners: set[int] = set()
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
        argvs[pid] = argv
        if b"--daemon" in argv and any(a in confs for a in argv):
            roots.add(pid)
        elif b"hotsync_events.sync.listener" in argv and b"--root" in argv:
            i = argv.index(b"--root")
            if i + 1 < len(argv) and os.path.normpath(argv[i + 1]) == os.path.normpath(mine):
                listeners.add(pid)
    for lpid in listeners:         # the hooks' servers: forked by the listener, siblings of their rsync
        for kid in children.get(lpid, []):
            if not os.path.basename(argvs.get(kid, [b""])[0]).startswith(b"stunnel"):
                roots.add(kid)
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



class _CriticalStep(Exception):
    """A critical plugin step failed: the promote stops before the role changes (re-run resumes)."""


class _ReplicasFailed(Exception):
    """A database replica did not take over: the promote stops before the dumps and the role change (a backup
    loaded over the replica would throw away what it holds that the backup does not); re-run resumes."""


class Promote:
    """One run of the promote (fresh or resumed); :meth:`run` after :func:`assess` accepted it."""

    def __init__(self, root: Root, a: Assessment, *, pm=None, force: bool = False, log: Callable[[str], None] = print,
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
        """Run (or resume) the phases; the exit code. An error no phase expected stops it as a failed
        critical step does (exit 4: run again, it resumes), said in one line and kept in the journal."""
        try:
            return self._run(verify_seconds)
        except Exception as exc:
            said = f"{type(exc).__name__}: {exc}"
            self.err(f"hotsync-promote: STOPPED by an error: {said}. Fix its cause, then run hotsync-promote "
                     "again: it resumes where it stopped (journal: /var/lib/hotsync/sync/promote.json).")
            try:
                self.j["error"] = said
                self._save()
            except Exception:                   # the journal cannot be written (a full disk): said above
                pass
            return EXIT_CRITICAL

    def _run(self, verify_seconds: float) -> int:
        self.j.pop("error", None)
        self.j["timings"]["verify"] = self.j["timings"].get("verify", 0.0) + verify_seconds
        self.j["done"].setdefault("verify", time.time())
        self._save()
        _crash_point("verify")
        self._phase("fence", self.do_fence)
        self._phase("links", self.do_links)
        self._phase("config", self.do_config)
        try:
            self._phase("databases", self.do_databases)
        except _ReplicasFailed as exc:
            self.err(f"hotsync-promote: STOPPED before the role changes: {exc}")
            return EXIT_CRITICAL
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
        from hotsync_events.sync.status import update_status

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

    def do_links(self) -> None:
        """The copy's links, stored munged while this host was a slave (sync.symlinks), as the master had them:
        before the databases and the plugins' steps, which may read through them."""
        from hotsync_events.sync.peercopy import manifest
        from hotsync_events.sync.symlinks import unmunge

        done, errors = unmunge(self.root, manifest(self.root.join(PEER_DIR)) or [], log=self.err)
        self.j["links"] = {"restored": done, "errors": errors[:50]}
        self.log(f"links: {done} restored as the master had them" + (
            f"; {len(errors)} FAILED: each still reads /rsyncd-munged/<target>: ln -sfn <target> <path> "
            "restores it" if errors else ""))

    def do_config(self) -> None:
        self.log("config: applying the master's configuration database")
        self.j["config"] = restore_config(self.root, log=self.log)
        from hotsync_events.sync.peerlists import install_lists   # the master's include/exclude lists: push what it pushed

        self.j["lists"] = install_lists(self.root, self.root.join(PEER_DIR), log=self.log)

    def _db(self):
        return open_db("configuration", self.root)

    def _pm(self):
        if self.pm is None:
            from hotsync_events.manager import plugin_manager

            self.pm = plugin_manager(self.root)
        self.pm.root = self.root
        return self.pm

    def do_databases(self) -> None:
        from hotsync_events.sync.databases import DumpsError, databases_enabled, plan, restore_all
        from hotsync_events.manager import RegistrationError

        db = self._db()
        self._promote_replicas(db)
        self._stop_unless_taken_over()
        if not databases_enabled(db):
            self.log("databases: skipped (hotsync databases is disabled)")
            return
        try:
            planned = plan(self.root, pm=self._pm(), db=db)
        except (DumpsError, RegistrationError) as exc:
            self.err(f"databases: FAILED: {exc}")
            self.j["dbs"]["*"] = f"failed: {exc}"
            return
        if not planned:
            self.log("databases: none to restore (no plugin gives a dump on this host)")
        for plugin, dump, shipped in planned:
            if dump.name in self.j["dbs"]:
                continue
            took_over = (self.j.get("replicas") or {}).get(dump.name) or {}
            if not dump.at_promote and took_over.get("status") == "success" and (
                    took_over.get("resumed") or not _already_master(took_over)):
                # a backup beside the replica the promote just promoted: the replica is the fresher copy
                self.log(f"database {dump.name} (plugin {plugin}): kept, not restored (a backup beside the "
                         "replica; hotsync restore-databases --only " + dump.name + " loads it)")
                self.j["dbs"][dump.name] = "kept" if shipped else "not shipped"
                self._save()
                continue
            if not dump.at_promote:         # the server was no replica (never seeded) or did not take over
                self.log(f"database {dump.name} (plugin {plugin}): its replica did not take over "
                         f"({took_over.get('status') or 'not promoted'}): restoring the backup beside it")
            errors: list[str] = []
            failed = restore_all(self.root, [(plugin, dump, shipped)], db=db, log=self.log,
                                 err=errors.append)
            status = "failed: " + "; ".join(errors) if failed else ("success" if shipped else "not shipped")
            self.log(f"database {dump.name} (plugin {plugin}): "
                     + ("FAILED: " + "; ".join(errors) if failed else "SUCCESS" if shipped else "skipped (not shipped)"))
            self.j["dbs"][dump.name] = status
            self._save()
            _crash_point(f"database:{dump.name}")

    def _stop_unless_taken_over(self) -> None:
        """_ReplicasFailed when a replica did not take over, unless ``--force`` (then its backup is restored
        instead, older) and no replicas setup still runs (a seed that ends would make the server a replica
        again: not even ``--force`` goes past it)."""
        failed = {n: e for n, e in (self.j.get("replicas") or {}).items() if e.get("status") != "success"}
        if not failed:
            return
        said = "; ".join(f"{n}: {str(e.get('status', '')).removeprefix('failed: ')}" for n, e in sorted(failed.items()))
        if any(e.get("setup_running") for e in failed.values()):
            raise _ReplicasFailed(f"database replicas did not take over ({said}). Run hotsync-promote again once "
                                  "the setup has ended: it resumes here.")
        if not self.force:
            raise _ReplicasFailed(f"database replicas did not take over ({said}). Fix the cause and run "
                                  "hotsync-promote again: it resumes here. Or run hotsync-promote --force: it "
                                  "promotes even a replica that lags or whose master is still connected, and "
                                  "restores the backup beside one that still cannot take over (older: up to "
                                  "one sync interval).")
        self.err(f"databases: replicas did not take over ({said}); --force: their backups are restored instead")

    def _promote_replicas(self, db) -> None:
        """The database servers that run as streaming replicas (hook ``hotsync_replicas``): each replays what
        it received and becomes a master; its takeover position (GTID or LSN) goes into the journal."""
        from hotsync_events.manager import RegistrationError
        from hotsync_events.sync.replicas import promote_replicas

        journal = self.j.setdefault("replicas", {})
        journal.pop("*", None)               # an earlier run's registration error: this run looks again
        try:
            promote_replicas(self.root, db, self._pm(), journal, force=self.force, log=self.log, err=self.err,
                             save=self._save)
        except RegistrationError as exc:
            self.err(f"database replicas: FAILED: {exc}")
            journal["*"] = {"status": f"failed: {exc}"}

    def do_steps(self) -> None:
        """Run the steps not yet done; _CriticalStep when a critical one failed (the promote stops there)."""
        from hotsync_events.promote.steps import PromoteStepError, collect_promote_steps, run_promote_step

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
        from hotsync_events.sync.status import read_status

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
        from hotsync_events.sync.status import update_status

        # the first push in the new direction is a person's: not the schedule's, not the notifier's
        update_status(self.root, lambda d: d.update(first_push={
            "since": time.time(), "why": "this host was promoted to master: its first push to the re-paired old "
                                         "master is a person's"}))
        from hotsync_events.sync.tls import pin_path, trusted_master_dir

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
        from hotsync_events.events import signal_event

        res = signal_event("nethserver-hotsync-save", root=self.root, pm=self._pm())
        for r in res.results:
            if r.status == "failed":
                self.err(f"services: action {r.step.name} FAILED: {r.reason}")
        self.j["services_ok"] = res.ok
        self.log("services: signal-event nethserver-hotsync-save " + ("SUCCESS" if res.ok else "FAILED"))

    def finish(self) -> int:
        from hotsync_events.sync.status import update_status

        now = time.time()
        t = self.j["timings"]
        failed_steps = sorted(n for n, s in self.j["steps"].items() if s.get("status") == "failed")
        if (self.j.get("links") or {}).get("errors"):
            failed_steps.append("links")
        failed_dbs = sorted({n for n, s in self.j["dbs"].items() if str(s).startswith("failed")}
                            | {f"replica {n}" for n, s in (self.j.get("replicas") or {}).items()
                               if str(s.get("status", "")).startswith("failed")})
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


def _already_master(took_over: dict) -> bool:
    """Whether the replica's engine found the server already writing (nothing taken over), from its journal
    entry. A journal written by an earlier version, resumed after an upgrade, said it in the notes only."""
    if "already_master" in took_over:
        return bool(took_over["already_master"])
    return any("not a replica" in n for n in took_over.get("notes") or [])
