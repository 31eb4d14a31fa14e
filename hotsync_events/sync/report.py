"""What ``hotsync status`` shows, gathered from the config database, the status file and the TLS files."""
from __future__ import annotations

import os
import time

from hotsync_events.childproc import alive
from hotsync_events.configdb import open_db
from hotsync_events.paths import Root
from hotsync_events.sync import tls
from hotsync_events.sync.settings import Settings
from hotsync_events.sync.status import read_status

__all__ = ["collect"]


def kept_folders(root: Root, limit: int = 100_000) -> list[dict]:
    """What first pushes after a re-pair kept aside on this slave (``/var/lib/hotsync/kept/<when>/``):
    each folder with its file count (counted up to *limit*)."""
    top = root.join("/var/lib/hotsync/kept")
    out = []
    for d in sorted(top.iterdir()) if top.is_dir() else ():
        if not d.is_dir():
            continue
        n = 0
        for _dirpath, _dirs, files in os.walk(d):
            n += len(files)
            if n >= limit:
                break
        out.append({"path": root.host_path(d), "files": n, "time": d.stat().st_mtime})
    return out


def collect(root: Root) -> dict:
    """A JSON-ready dict: role, status, peer, last run, last success, copy age, next run, fingerprint, errors."""
    db = open_db("configuration", root, validate=False, journal=False, create=False)
    cfg = Settings.from_db(db)
    st = read_status(root)
    now = time.time()
    info: dict = {"role": cfg.role, "status": "enabled" if cfg.enabled else ("fenced" if cfg.status == "fenced"
                                                                              else "disabled"),
                  "root": str(root.path), "root_exists": root.path.is_dir(), "time": now}
    running = st.get("running")
    if running and not alive(running.get("pid")):
        running = dict(running, stale=True)
        info["interrupted_run"] = running
        running = None
    if cfg.role == "slave":
        info["peer"] = cfg.master_host
        info["last_run"] = st.get("last_received")
        info["last_success"] = st.get("last_success")
        receiving = {k: v for k, v in (st.get("receiving") or {}).items() if now - v.get("start", now) < 86400}
        info["running"] = next(iter(receiving.values()), None)
        info["last_refused"] = st.get("last_refused")
        info["last_beat"] = st.get("last_beat")            # the master's notifier said it is alive (pusher.beat)
        info["last_renames"] = st.get("last_renames")      # directories renamed as the master renamed them
        info["last_full"] = st.get("last_full")
        info["unclean"] = st.get("unclean") or []
        info["keep_aside"] = st.get("keep_aside")
        info["kept"] = kept_folders(root)
        peer_db = root.join("/var/lib/hotsync/peer/configuration")
        info["peer_db"] = str(peer_db) if peer_db.exists() else None
        info["peer_copy"] = st.get("peer_copy")
        info["peer_refused"] = st.get("peer_refused")
        # the pin of the master: what MasterFingerprint asks for, what is trusted, what a master presented
        want = (db.props("hotsync") if "hotsync" in db else {}).get("MasterFingerprint") or None
        try:
            want = tls.normalise_fingerprint(want) if want else None
        except ValueError:
            want = None
        trusted = tls.master_pin_fingerprint(root)
        info["master_fingerprint"] = want
        info["peer_fingerprint"] = trusted
        info["master_presented"] = tls.candidate_fingerprint(root)
        info["pairing"] = ("trusted" if want and trusted == want else
                           "no MasterFingerprint set" if not want else "waiting for the master's certificate")
    else:
        info["peer"] = f"{cfg.slave_host}:{cfg.port}" if cfg.slave_host else ""
        info["last_run"] = st.get("last_run")
        info["last_success"] = {k: v for k, v in (st.get("last_success") or {}).items() if k != "sources"} or None
        info["running"] = running
        info["peer_fingerprint"] = tls.pinned_fingerprint(root)
        info["pinned"] = st.get("pinned")
        from hotsync_events.sync.push import awaiting_person

        info["awaiting_person"] = awaiting_person(root) if cfg.role == "master" else None
        info["alert"] = st.get("alert")
        info["failures"] = st.get("failures", 0)
        info["last_dry_run"] = st.get("last_dry_run")
        nxt = st.get("next_run")
        if cfg.role == "master" and cfg.enabled:
            last = (st.get("last_run") or {}).get("start")
            if nxt is None and last is not None:
                nxt = float(last) + cfg.interval * 60
        else:
            nxt = None
        info["next_run"] = nxt
        info["interval_minutes"] = cfg.interval
        info["realtime_wanted"] = cfg.role == "master" and cfg.enabled and bool(cfg.slave_host) and \
            (db.props("hotsync") if "hotsync" in db else {}).get("realtime", "enabled") != "disabled"
    info["fingerprint"] = tls.host_fingerprint(root)          # this host's own certificate, either role
    info["last_error"] = st.get("last_error")
    from hotsync_events.sync.fence import fence_record, read_epoch

    info["epoch"] = read_epoch(root)
    info["fenced"] = st.get("fenced") if cfg.status == "fenced" else None     # this master was demoted
    info["fence"] = fence_record(root)            # this host was promoted: it refuses every push
    info["fence_listener"] = cfg.role == "master" and bool(cfg.master_host)   # and still tells the old master
    info["promote"] = st.get("promote")
    from hotsync_events.sync.notifier_status import read_status as realtime_status
    from hotsync_events.sync.health import assess, copy_age

    info["realtime"] = realtime_status(root)
    from hotsync_events.sync.units import unit_states

    info["units"] = unit_states(root)          # the package's systemd units (None: no systemd here)
    if cfg.role == "slave":       # the master's interval, as its peer copy says, is the slave's yardstick
        peer = root.join("/var/lib/hotsync/peer/configuration")
        if peer.is_file():
            from hotsync_events.configdb import ConfigDB

            try:
                info["interval_minutes"] = max(int(ConfigDB(peer).getprop("hotsync", "interval") or 15), 1)
            except ValueError:
                info["interval_minutes"] = 15
    info["copy_age"] = copy_age(info, now)
    from hotsync_events.sync.replicas import replica_status, replicas_wanted

    if replicas_wanted(db):       # database servers run as streaming replicas: their state, lag, last error
        try:
            info["replicas"] = replica_status(root, db, cfg.role)
        except Exception as exc:  # e.g. two plugins declaring one replica name
            info["replicas"] = [{"name": "*", "plugin": "", "engine": "", "side": "?", "state": "error",
                                 "connected": False, "lag_seconds": None, "lag_bytes": None,
                                 "lag_transactions": None, "last_error": str(exc)}]
    from hotsync_events.sync.drill_status import read_drill, schedule_of

    drill = read_drill(root)
    info["drill"] = (drill or {}).get("last") or (drill if (drill or {}).get("error") else None)
    info["drill_schedule"] = schedule_of(db)
    info["drill_mail"] = (drill or {}).get("mail")
    if st.get("status_error"):
        info["status_error"] = st["status_error"]
    info["health"] = assess(info, now)
    return info
