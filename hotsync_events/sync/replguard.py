"""The master's guard of its synchronous replicas: a replica that is away never holds the master's commits.

With ``<key> ReplicationSync on`` a commit waits until the replica has it (no acknowledged transaction is
lost at a promote). MariaDB's semi-synchronous mode falls back to asynchronous by itself after its timeout;
PostgreSQL's ``synchronous_standby_names`` has no such fall-back: with the replica down, every commit on the
master waits, for as long as it is down. So on a master where some server has ``ReplicationSync on``, the
service ``hotsync-replica-guard`` (``hotsync replicas guard``) asks each synchronous replica's master status
every :data:`CHECK` seconds:

* synchronous but **waiting** (no replica acknowledges) for :data:`GRACE` seconds: switched off
  (``set_synchronous(link, False)``): the commits go on, asynchronous; one mail to ``MailTo``;
* switched off (or not on yet) and the replica **streams** again for :data:`STABLE` seconds: switched on
  again; one mail.

A commit made while the replica was away waits at most about GRACE + CHECK seconds. The guard's state is the
status file's ``replica_sync`` (``hotsync status --json``). The core knows no engine: the guard calls only
``master_status`` and ``set_synchronous`` (docs/replication.md, "Synchronous mode").
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hotsync_events.paths import Root
from hotsync_events.sync.replicas import collect_replicas, engine_name, replicas_wanted

__all__ = ["CHECK", "GRACE", "STABLE", "Guard", "decide", "run_guard", "sync_wanted"]

#: seconds between two looks
CHECK = 2.0
#: a synchronous replica that acknowledges nothing this long is switched to asynchronous
GRACE = 10.0
#: a replica that streams again this long is switched back to synchronous
STABLE = 30.0


def sync_wanted(db) -> bool:
    """Whether some server runs as a replica in synchronous mode (``DatabaseMode replica``, ``ReplicationSync on``)."""
    return replicas_wanted(db, synchronous=True)


@dataclass
class Watch:
    """What the guard knows of one replica between two looks."""

    waiting_since: float | None = None
    streaming_since: float | None = None
    switched_off: float | None = None        # when the guard switched it off (None: it did not)
    flaps: int = 0                           # switched off again soon after it was switched on
    on_since: float | None = None
    mailed: float = 0.0                      # when the guard last mailed a switch off
    off_mailed: bool = False                 # an "off" was mailed: its recovery will be too


#: a replica switched on again holds STABLE * 2**flaps seconds first (at most this many doublings), so a
#: replica that keeps falling behind is not switched on and off every few seconds
MAX_DOUBLINGS = 7


def decide(w: Watch, now: float, synchronous: str, connected: bool, *, grace: float = GRACE,
           stable: float = STABLE) -> str | None:
    """``"off"``, ``"on"`` or None for a replica whose link wants synchronous mode, from its master status
    (``synchronous``: ``on``, ``off``, ``waiting``; ``connected``: the replica streams); updates *w*."""
    if synchronous == "waiting":
        w.waiting_since = w.waiting_since if w.waiting_since is not None else now
    else:
        w.waiting_since = None
    w.streaming_since = (w.streaming_since if w.streaming_since is not None else now) if connected else None
    if synchronous == "on" and w.on_since is not None and now - w.on_since >= 3600:
        w.flaps = 0                          # on for an hour: a later fall-back starts the backoff afresh
    if w.waiting_since is not None and now - w.waiting_since >= grace:
        w.waiting_since = w.streaming_since = None    # it must stream a whole STABLE again before "on"
        w.flaps += 1 if w.on_since is not None and now - w.on_since < 3600 else 0
        w.switched_off, w.on_since = now, None
        return "off"
    if synchronous == "off" and w.streaming_since is not None \
            and now - w.streaming_since >= stable * 2 ** min(w.flaps, MAX_DOUBLINGS):
        w.on_since, w.switched_off = now, None
        return "on"
    return None


@dataclass
class Guard:
    """The guard of one master root (:meth:`look` once; :func:`run_guard` loops)."""

    root: Root
    grace: float = GRACE
    stable: float = STABLE
    log: Callable[[str], None] = print
    mail: Callable[[str, str], None] | None = None
    watches: dict[str, Watch] = field(default_factory=dict)

    def look(self, db, pm, now: float | None = None) -> dict[str, dict]:
        """One look at every synchronous replica; what each is now (``state``, ``switched``)."""
        from hotsync_events.sync.replchannel import with_peer_subject

        now = time.time() if now is None else now
        out: dict[str, dict] = {}
        for _plugin, rep in collect_replicas(pm, db, self.root):
            if rep.link is None or not rep.link.synchronous:
                continue
            w = self.watches.setdefault(rep.name, Watch())
            try:
                ms = rep.engine.master_status(rep.link)
                action = decide(w, now, ms.synchronous, ms.replica_connected, grace=self.grace, stable=self.stable)
                entry = {"state": ms.synchronous, "connected": ms.replica_connected, "action": action}
                if action is not None:
                    rep.engine.set_synchronous(with_peer_subject(self.root, rep.link, engine_name(rep)), action == "on",
                                               log=self.log)
                    entry["state"] = action
                    # one mail for a switch off an hour at most, and the recovery of one that was mailed
                    if action == "off" and now - w.mailed >= 3600:
                        w.mailed, w.off_mailed = now, True
                        self._tell(rep.name, action, ms)
                    elif action == "on" and w.off_mailed:
                        w.off_mailed = False
                        self._tell(rep.name, action, ms)
                    else:
                        self.log(f"database {rep.name}: synchronous replication switched {action}")
            except Exception as exc:          # an engine's error is reported, the guard goes on
                entry = {"state": "error", "error": f"{type(exc).__name__}: {exc}"}
            out[rep.name] = entry
        return out

    def _tell(self, name: str, action: str, ms) -> None:
        host = os.uname().nodename
        if action == "off":
            subject = f"HotSync: database {name} on {host} is ASYNCHRONOUS: its replica acknowledges nothing"
            body = (f"The replica of database {name} acknowledged no commit for {self.grace:.0f} s, so HotSync "
                    f"switched the master {ms.server} to asynchronous replication: its commits go on, but a "
                    "promote now may lose the last ones.\nIt switches back when the replica streams again for "
                    f"{self.stable:.0f} s. Check with: hotsync status\n")
        else:
            subject = f"HotSync: database {name} on {host} is synchronous again"
            body = f"The replica of database {name} streams again: {ms.server} waits for it at each commit again.\n"
        self.log(subject)
        if self.mail is not None:
            try:
                self.mail(subject, body)
            except Exception as exc:      # the mail is news, never the guard's failure
                self.log(f"could not mail: {exc}")


def run_guard(root: Root, *, stop: Callable[[], bool] = lambda: False, log: Callable[[str], None] = print,
              check: float = CHECK, grace: float = GRACE, stable: float = STABLE) -> int:
    """Look every *check* seconds until *stop* says so or no server wants synchronous mode any more."""
    from hotsync_events.configdb import open_db
    from hotsync_events.manager import plugin_manager
    from hotsync_events.sync.mail import send_mail
    from hotsync_events.sync.settings import Settings
    from hotsync_events.sync.status import update_status

    pm = plugin_manager(root)
    guard = Guard(root, grace=grace, stable=stable, log=log)
    shown: dict | None = None
    while not stop():
        started = time.monotonic()
        db = open_db("configuration", root, validate=False, initialise=False, journal=False)
        if not sync_wanted(db) or (db.getprop("hotsync", "role") or "") != "master":
            log("hotsync replicas guard: no server wants synchronous replication on this master: stopping")
            return 0
        cfg = Settings.from_db(db)

        def mail(subject: str, body: str, cfg: Settings = cfg) -> None:
            send_mail(cfg.smarthost, cfg.mail_to, subject, body)

        guard.mail = mail
        seen = guard.look(db, pm)
        if seen != shown:          # the status file changes when the replicas' state does, not at every look
            update_status(root, _recorder({"time": time.time(), "replicas": seen}))
            shown = seen
        time.sleep(max(0.0, check - (time.monotonic() - started)))
    return 0


def _recorder(record: dict) -> Callable[[dict], None]:
    return lambda d: d.update(replica_sync=record)
