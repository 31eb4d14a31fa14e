"""Fencing: the pair's epoch, the promoted host's refusal, and the old master learning it was demoted.

A promote raises the pair's *epoch* (a counter both sides keep in ``<root>/var/lib/hotsync/sync/epoch.json``)
and writes the *fence record* ``<root>/var/lib/hotsync/fenced`` on the promoted host. From then on the
rsync daemon's ``pre-xfer exec`` there (:mod:`hotsync_events.sync.xfer`) refuses every push before a
byte is written, with a refusal line that carries :data:`MARKER` (``FENCED epoch=N ...``). The old
master's push reads that line (:func:`parse_marker`); when the epoch it carries is higher than its own,
the master demotes itself (:func:`demote`): ``hotsync status fenced`` in the config database, a
``fenced`` record in its status file, its schedule stopped, one mail. A refusal whose epoch is not
higher than the master's own is not a demotion (DRBD's rule: the younger generation wins).

Re-pairing (``config setprop hotsync role slave MasterHost <new master>`` then the save event) clears
both records: :func:`repair_as_slave` is run by the hotsync plugin's save action.

The epoch check: every push sends the master's epoch (``--early-input``; the daemon's ``early exec``
keeps it, :func:`early_input` reads it back in the pre-xfer). A push without one is refused; a push whose
epoch is older than the receiver's is refused as STALE before a byte is written. A host's own epoch moves
only by its own promote, by an authenticated fence it received, or by ``hotsync epoch set`` (a person's
correction): never by what a push carries. The slave records the epoch of the last complete push it
received (``master_epoch`` in its status) only so that its promote picks an epoch above it.

The refusal is authenticated: it carries the push's nonce and an HMAC under the pair's secret
(:func:`refusal`, :func:`verified_marker`); a master believes nothing else.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from hotsync_events.fsutil import atomic_write
from hotsync_events.paths import Root

__all__ = ["FENCE_FILE", "MARKER", "archive_role_status", "clear_fence", "demote", "early_input", "fence_record",
           "parse_marker", "read_epoch", "refusal", "repair_as_slave", "set_epoch", "verified_marker", "write_epoch",
           "write_fence"]

#: the promoted host's fence record (host path); its pre-xfer refuses every push while it exists
FENCE_FILE = "/var/lib/hotsync/fenced"
#: this host's idea of the pair's epoch (host path, under the sync's protected state)
EPOCH_FILE = "/var/lib/hotsync/sync/epoch.json"
MARKER = "FENCED"
_MARKER_RE = re.compile(r"\bFENCED epoch=(\d+)(?: since=(\d+))?(?: host=([A-Za-z0-9._?-]+))?"
                        r"(?: nonce=([0-9a-f]{16,64}))?(?: mac=([0-9a-f]{64}))?")

#: status-file fields that belong to one role; a role change moves them under ``previous_<role>``
ROLE_FIELDS = {
    "slave": ("last_received", "last_success", "last_error", "last_refused", "receiving", "history", "last_beat",
              "dry_running"),
    "master": ("last_run", "last_success", "last_error", "history", "alert", "failures", "running",
               "last_dry_run", "next_run", "pinned"),
}


# ------------------------------------------------------------------------------------------- epoch
def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_epoch(root: Root) -> int:
    """This host's epoch (0 before any promote)."""
    data = _read_json(root.join(EPOCH_FILE)) or {}
    try:
        return max(int(data.get("epoch", 0)), 0)
    except (TypeError, ValueError):
        return 0


def write_epoch(root: Root, epoch: int, why: str) -> None:
    """Record *epoch* durably (atomic write); never lowers it."""
    if epoch < read_epoch(root):
        return
    _store_epoch(root, epoch, why)


def _store_epoch(root: Root, epoch: int, why: str) -> None:
    atomic_write(root.join(EPOCH_FILE), json.dumps({"epoch": int(epoch), "time": time.time(), "why": why},
                                                   sort_keys=True) + "\n", mode=0o600)


def set_epoch(root: Root, epoch: int, why: str) -> int:
    """A person's correction (``hotsync epoch set N``): the epoch becomes *epoch*, lower or higher; returns
    the one it replaced. Recorded in the status with *why*."""
    from hotsync_events.sync.status import update_status

    old = read_epoch(root)
    _store_epoch(root, epoch, why)
    update_status(root, lambda d: d.update(epoch_set={"time": time.time(), "from": old, "to": int(epoch), "why": why}))
    return old


# ------------------------------------------------------------------------------------------- receiver
def fence_record(root: Root) -> dict | None:
    """The promoted host's fence record, or None when this host accepts pushes (as far as fencing goes).

    A fence file that cannot be read still fences (``{"epoch": 0, "unreadable": True}``): refusing is
    the safe side.
    """
    path = root.join(FENCE_FILE)
    if not path.exists():
        return None
    data = _read_json(path)
    return data if data is not None else {"epoch": 0, "unreadable": True}


def write_fence(root: Root, epoch: int, old_master: str) -> dict:
    """Fence this host against its old master: every push is refused from now on. Idempotent."""
    have = fence_record(root)
    if have and not have.get("unreadable") and int(have.get("epoch", 0)) == epoch:
        return have
    rec = {"epoch": int(epoch), "time": int(time.time()), "old_master": old_master,
           "host": os.uname().nodename or "promoted-host"}
    atomic_write(root.join(FENCE_FILE), json.dumps(rec, sort_keys=True) + "\n", mode=0o644)
    return rec


def clear_fence(root: Root) -> bool:
    try:
        root.join(FENCE_FILE).unlink()
        return True
    except FileNotFoundError:
        return False


def _mac(secret: str, epoch: int, since: int, host: str, nonce: str) -> str:
    import hmac
    import hashlib

    msg = f"hotsync-fenced|{epoch}|{since}|{host}|{nonce}".encode("utf-8", "surrogateescape")
    return hmac.new(secret.encode("utf-8", "surrogateescape"), msg, hashlib.sha256).hexdigest()


def refusal(rec: dict, *, nonce: str = "", secret: str = "") -> str:
    """The line the pre-xfer prints (it reaches the pushing master): the marker first, then in words.

    The marker is bound to the push it answers: it carries the nonce the master sent with that push and an
    HMAC of both under the pair's secret (the rsyncd password), so no file name, log line or replayed
    refusal can fence a master (:func:`verified_marker`).
    """
    epoch = int(rec.get("epoch", 0))
    since = int(rec.get("time", 0))
    host = re.sub(r"[^A-Za-z0-9._-]", "_", str(rec.get("host", "?"))) or "?"
    when = time.strftime("%Y-%m-%d %H:%M:%S%z", time.localtime(since)) if since else "?"
    auth = f" nonce={nonce} mac={_mac(secret, epoch, since, host, nonce)}" if nonce and secret else ""
    return (f"{MARKER} epoch={epoch} since={since} host={host}{auth}: this host was promoted to master at {when} "
            f"(pair epoch {epoch}); the pushing host is no longer its master and was demoted. Re-pair it as "
            f"a slave: config setprop hotsync role slave MasterHost <this host>; signal-event nethserver-hotsync-save")


def parse_marker(text: str) -> dict | None:
    """``{"epoch": N, "since": ts, "host": name, "nonce": x, "mac": y}`` from text that carries the marker
    (the first one), else None. Not to be believed as such: see :func:`verified_marker`."""
    m = _MARKER_RE.search(text or "")
    if not m:
        return None
    return {"epoch": int(m.group(1)), "since": int(m.group(2) or 0), "host": m.group(3) or "",
            "nonce": m.group(4) or "", "mac": m.group(5) or ""}


def verified_marker(text: str, *, nonce: str, secret: str) -> dict | None:
    """The fence marker in *text* that the slave made for the push that sent *nonce*, checked with the pair's
    secret; None when there is none. A marker with another nonce or a wrong MAC (a file name that looks like
    one, a replayed refusal) is ignored."""
    import hmac

    if not nonce or not secret:
        return None
    for m in _MARKER_RE.finditer(text or ""):
        epoch, since, host = int(m.group(1)), int(m.group(2) or 0), m.group(3) or ""
        if m.group(4) != nonce or not m.group(5):
            continue
        if hmac.compare_digest(m.group(5), _mac(secret, epoch, since, host, nonce)):
            return {"epoch": epoch, "since": since, "host": host}
    return None


# ------------------------------------------------------------------------------------------- master side
def archive_role_status(root: Root, old_role: str, extra: dict | None = None) -> dict:
    """Move the status-file fields of *old_role* under ``previous_<old_role>`` (a role change)."""
    from hotsync_events.sync.status import update_status

    def change(d: dict) -> None:
        kept = {k: d.pop(k) for k in ROLE_FIELDS.get(old_role, ()) if k in d}
        if kept:
            kept["archived"] = time.time()
            d[f"previous_{old_role}"] = kept
        if extra:
            d.update(extra)

    return update_status(root, change)


def demote(root: Root, marker: dict, *, slave: str, mail_to: str, smarthost: str, run_event: bool = True,
           log=print) -> bool:
    """The master learnt from its slave's refusal that the slave was promoted: stand down.

    Sets ``hotsync status fenced`` (config db) and a ``fenced`` record (status file), records the
    epoch, mails once and stops the schedule (the save event, unless *run_event* is False: the
    scheduler calling this stops itself). Returns False (and changes nothing) when the refusal's epoch
    is not higher than this host's: then the peer is not a newer master, the configuration is wrong.
    """
    from hotsync_events.configdb import open_db
    from hotsync_events.sync.status import update_status

    mine = read_epoch(root)
    if marker["epoch"] <= mine:
        log(f"hotsync: {slave} refuses pushes as a promoted master of epoch {marker['epoch']}, not newer than "
            f"this host's epoch {mine}: check SlaveHost; this host was NOT demoted")
        return False
    now = time.time()
    write_epoch(root, marker["epoch"], f"demoted: {slave} was promoted")
    db = open_db("configuration", root)
    if "hotsync" in db and db.getprop("hotsync", "status") != "fenced":
        db.setprop("hotsync", {"status": "fenced"})
    first: dict = {}

    def change(d: dict) -> None:
        d.pop("running", None)
        old = d.get("fenced") or {}
        if old.get("epoch") == marker["epoch"]:
            return
        first["yes"] = True
        d["fenced"] = {"epoch": marker["epoch"], "time": now, "by": slave, "promoted": marker.get("since"),
                       "peer_host": marker.get("host"),
                       "message": f"{slave} was promoted to master (epoch {marker['epoch']}); this host stopped "
                                  "pushing. Re-pair it as the new slave: config setprop hotsync role slave "
                                  f"MasterHost {slave}; signal-event nethserver-hotsync-save"}

    data = update_status(root, change)
    log(f"hotsync: FENCED: {data['fenced']['message']}")
    if first:
        _mail_fenced(root, data["fenced"], mail_to, smarthost, log)
    if run_event:
        _stop_schedule(root, log)
    return True


def _mail_fenced(root: Root, rec: dict, mail_to: str, smarthost: str, log) -> None:
    from hotsync_events.sync.mail import MailError, send_mail
    from hotsync_events.sync.status import iso, update_status

    host = os.uname().nodename
    subject = f"HotSync: {host} was FENCED: {rec['by']} is the master now"
    body = (f"This host ({host}) tried to push to its slave {rec['by']} at {iso(rec['time'])} and was refused:\n"
            f"the slave was promoted to master (pair epoch {rec['epoch']}).\n\n"
            "This host stopped its scheduled pushes and will not push again: its data is older than the new\n"
            "master's. To make it the new slave, run on this host:\n\n"
            f"  config setprop hotsync role slave MasterHost {rec['by']}\n"
            "  signal-event nethserver-hotsync-save\n\n"
            "Check with: hotsync status\n")
    try:
        send_mail(smarthost, mail_to, subject, body)
        error = None
        log(f"hotsync: mailed {mail_to} (fenced)")
    except MailError as exc:
        error = str(exc)
        log(f"hotsync: could not mail {mail_to}: {exc}")
    update_status(root, lambda d: d.setdefault("fenced", {}).update(mailed=error is None, mail_error=error))


def _inside_service(root: Root) -> bool:
    """Whether this process runs inside a daemon the service manager started (its pid or group is in a pidfile)."""
    mine = {os.getpid(), os.getpgid(0)}
    for pidfile in root.run_dir.glob("*.pid") if root.run_dir.is_dir() else ():
        try:
            if int(pidfile.read_text().split()[0]) in mine:
                return True
        except (OSError, ValueError, IndexError):
            continue
    return False


def _stop_schedule(root: Root, log) -> None:
    """The save event on a fenced master stops the scheduler and renders the cron file disabled.

    From inside the scheduler daemon the event (which stops that daemon) runs detached, in a session
    of its own; elsewhere (cron, a sysadmin's ``hotsync sync``) it runs before the command returns.
    """
    import subprocess
    import sys

    from hotsync_events.childproc import module_cwd

    argv = [sys.executable, "-m", "hotsync_events.cli.signal_event", "nethserver-hotsync-save"]
    env = {**os.environ, "HOTSYNC_ROOT": str(root.path)}
    try:
        cwd = module_cwd(root)
        if _inside_service(root):
            subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True, cwd=cwd)
            log("hotsync: the schedule stops (save event started)")
            return
        cp = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
                            cwd=cwd)
        log("hotsync: the schedule is stopped (signal-event nethserver-hotsync-save "
            + ("SUCCESS)" if cp.returncode == 0 else f"FAILED: {(cp.stderr or cp.stdout).strip()[-300:]})"))
    except (OSError, subprocess.SubprocessError) as exc:  # the fence is recorded: pushes stop anyway
        log(f"hotsync: could not run the save event to stop the schedule: {exc}")


def early_input(root: Root, rsync_pid: str) -> dict:
    """What the pushing master sent first (``--early-input``, kept by the daemon's ``early exec``):
    ``{"epoch": N, "kind": k, "nonce": x, "moves": [...]}``, each key present only when it was sent
    well-formed (``moves`` is None when it was sent malformed). The file is removed."""
    if not rsync_pid.isdigit():
        return {}
    path = root.join(f"/run/hotsync/xfer/early.{rsync_pid}")
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return {}
    try:
        path.unlink()
    except OSError:
        pass
    out: dict = {}
    m = re.search(r"^hotsync-epoch (\d{1,18})(?: kind=([a-z]+))?(?: nonce=([0-9a-f]{16,64}))?"
                  r"(?: moves=([A-Za-z0-9_=-]{1,4000}))?(?: beat=(\d{1,3}))?$", text.strip())
    if m:
        out["epoch"] = int(m.group(1))
        if m.group(2):
            out["kind"] = m.group(2)
        if m.group(3):
            out["nonce"] = m.group(3)
        if m.group(4):      # directories renamed on the master, to replay here (sync.moves); None: malformed
            from hotsync_events.sync.moves import decode

            out["moves"] = decode(m.group(4))
        if m.group(5):      # the real-time notifier's heartbeat period, seconds (0: it stops beating)
            out["beat"] = int(m.group(5))
    return out


def repair_as_slave(root: Root, db, log=print) -> list[str]:
    """The save event on a host whose role is slave: clear the fence state of either side.

    A fenced old master re-configured as slave gets ``status enabled`` back (its fenced record is
    archived, the epoch it learnt is kept); a promoted host configured as slave again drops its fence
    file, so its new master's pushes are accepted. Returns what it did, in words.
    """
    from hotsync_events.sync.status import read_status, update_status

    done: list[str] = []
    if db.getprop("hotsync", "status") == "fenced":
        db.setprop("hotsync", {"status": "enabled"})
        done.append("was fenced: re-paired as slave, status enabled")
    st = read_status(root)
    if st.get("role") == "master" or st.get("fenced"):
        from hotsync_events.sync.notifier_status import STATUS_FILE

        notifier = root.run_dir / STATUS_FILE       # the master-era notifier's record: archived, not shown

        def change(d: dict) -> None:
            kept = {k: d.pop(k) for k in ROLE_FIELDS["master"] if k in d}
            fenced = d.pop("fenced", None)
            if fenced:
                kept["fenced"] = fenced
            try:
                kept["realtime"] = json.loads(notifier.read_text(encoding="utf-8"))
                notifier.unlink()
            except (OSError, ValueError):
                pass
            if kept:
                kept["archived"] = time.time()
                d["previous_master"] = kept
            d["role"] = "slave"
            # what this host wrote as master after the last sync may matter: the new master's first push
            # must keep aside everything it replaces or deletes here (the pre-xfer hook insists)
            d["keep_aside"] = {"since": time.time(), "why": "re-paired as the slave of the new master"}

        update_status(root, change)
        done.append("master-era status archived (hotsync status shows this host as a slave now)")
    if clear_fence(root):
        done.append("fence file removed: pushes from MasterHost are accepted again")
    done += _carry_pin_over(root, db)
    for line in done:
        log(f"hotsync: {line}")
    return done


def _carry_pin_over(root: Root, db) -> list[str]:
    """An old master re-paired as slave: the slave certificate it pinned is its new master's (the promoted
    slave's own). Unless MasterFingerprint names another, it becomes the master certificate this host
    trusts, and MasterFingerprint says so; the master-era pin is kept aside."""
    from hotsync_events.sync.tls import fingerprint, pin_path

    pin = pin_path(root)
    if not pin.is_file():
        return []
    try:
        fp = fingerprint(pin.read_text())
    except (OSError, ValueError):
        return []
    from hotsync_events.sync.tls import accept_master_cert

    done = []
    if not (db.getprop("hotsync", "MasterFingerprint") or ""):
        db.setprop("hotsync", {"MasterFingerprint": fp})
        accept_master_cert(root, pin.read_bytes(), fp)
        done.append(f"MasterFingerprint {fp}: the certificate of the slave this host pinned as master, now its "
                    "master (compare with `hotsync status` there)")
    os.replace(pin, pin.with_name(pin.name + ".previous"))
    return done


def age_words(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    s = int(max(seconds, 0))
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if d:
        return f"{d}d {h}h {m}min"
    if h:
        return f"{h}h {m}min"
    if m:
        return f"{m}min {s % 60}s"
    return f"{s}s"
