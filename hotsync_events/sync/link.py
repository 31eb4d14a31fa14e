"""The link with the slave during one push: its rsync sessions (each with a fresh nonce, the pairing retry),
the pin of the slave's certificate, and a failed session told in words (fenced, refused, TLS trouble)."""
from __future__ import annotations

import re
import time

from hotsync_events.paths import Root
from hotsync_events.sync import tls
from hotsync_events.sync.invoke import run_with_retry
from hotsync_events.sync.outcome import Outcome
from hotsync_events.sync.rsync import EXIT_MEANING, copy_args, early_input, stunnel_env
from hotsync_events.sync.settings import Settings
from hotsync_events.sync.status import read_status, update_status

__all__ = ["PAIR_CLIENT_CONF", "PAIRING_WAIT", "Link", "cert_changed", "ensure_pin", "failure_outcome",
           "master_cert_refused", "tls_diagnosis", "tls_refused"]

PAIR_CLIENT_CONF = "/etc/stunnel/hotsync-pair-client.conf"
#: how long a session is retried after this master presented its certificate to a pairing slave
PAIRING_WAIT = 5.0


class Link:
    """The sessions of one run with the slave: each sends its kind, the pair's epoch and a fresh nonce
    first; a refusal is read against that session's nonce (a fence is believed only when authenticated)."""

    def __init__(self, root: Root, cfg: Settings, env: dict, files: dict, log) -> None:
        self.root, self.cfg, self.env, self.files, self.log = root, cfg, env, files, log
        self.nonce = ""
        self.delivered = False
        self.kinds: list[str] = []     # the sessions this run opened, in order (the status shows them)

    def session(self, kind: str, build, env: dict | None = None, progress=None):
        from hotsync_events.sync.fence import read_epoch

        early, self.nonce = early_input(self.root.run_dir, kind, read_epoch(self.root))
        self.kinds.append(kind)
        run = run_with_retry(build(early), env or self.env, progress=progress)
        if run.returncode != 0 and not self.delivered and tls_refused(run) and not cert_changed(self.root, self.cfg):
            # the slave may not know this master's certificate yet: present it (pairing), then try again
            # while the slave's hook (which runs after our copy ended) puts it in its trust store
            self.delivered = True
            if self.deliver_certificate():
                deadline = time.monotonic() + PAIRING_WAIT
                while True:
                    early, self.nonce = early_input(self.root.run_dir, kind, read_epoch(self.root))
                    run = run_with_retry(build(early), env or self.env)
                    if run.returncode == 0 or not tls_refused(run) or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
        return run

    def deliver_certificate(self) -> bool:
        """Present this host's certificate to the slave's pairing service (used while the slave does not
        trust it yet: it keeps it if its fingerprint is the slave's MasterFingerprint)."""
        cert, _ = tls.cert_paths(self.root)
        pair_conf = self.root.join(PAIR_CLIENT_CONF)
        if not cert.is_file() or not pair_conf.is_file():
            return False
        env = stunnel_env(self.env, self.files["stunnel"], str(pair_conf))
        from hotsync_events.sync.fence import read_epoch

        early, self.nonce = early_input(self.root.run_dir, "pair", read_epoch(self.root))
        run = run_with_retry(copy_args(source=str(cert), dest="master.crt", module="hotsync-pair",
                                       password_file=self.files["password"], timeout=min(self.cfg.timeout, 30),
                                       early=early, rsync=self.files["rsync"]), env)
        if run.returncode == 0:
            self.log(f"hotsync sync: presented this host's certificate {tls.host_fingerprint(self.root)} to the slave")
        return run.returncode == 0

    def peer_copy(self, includes: list[str], force: bool = False) -> Outcome | None:
        """Ship the peer copy when it changed since the last one the slave took; an Outcome on failure."""
        from hotsync_events.sync import peercopy

        export = peercopy.export(self.root, includes)
        digest = peercopy.digest(export)
        if not force and (read_status(self.root).get("peer_sent") or {}).get("digest") == digest:
            return None
        run = self.session("peer", lambda early: copy_args(
            source=f"{export}/", dest="", module="hotsync-peer", password_file=self.files["password"],
            timeout=self.cfg.timeout, early=early, rsync=self.files["rsync"]))
        if run.returncode != 0:
            return self.failure(run, "shipping the peer copy (configuration and lists) failed")
        update_status(self.root, lambda d: d.update(peer_sent={"digest": digest, "time": time.time()}))
        return None

    def failure(self, run, what: str) -> Outcome:
        return failure_outcome(self.root, self.cfg, run, what, nonce=self.nonce)


def tls_refused(run) -> bool:
    """Whether a session ended before the rsync protocol began (the TLS handshake refused): nothing
    transferred, no daemon message; a connection cut later says how many bytes it had received."""
    text = run.stderr
    if run.returncode not in (5, 10, 12, 255) or run.stdout.strip():
        return False
    if any(m in text for m in ("@ERROR", "refused by the slave", "auth failed")):
        return False
    received = re.search(r"\((\d+) bytes received so far\)", text)
    return not (received and int(received.group(1)) > 0)


def ensure_pin(root: Root, cfg: Settings, accept: str | None, log, *, ask=None, dry_run: bool = False) -> str | None:
    """Pin the slave's certificate when a person says so; a message when nothing is pinned and none did."""
    have = tls.pinned_fingerprint(root)
    if have is not None and accept is None:
        return None
    try:
        pem = tls.fetch_cert(cfg.slave_host, cfg.port, timeout=min(cfg.timeout, 30))
    except tls.TLSError as exc:
        return str(exc)
    seen = tls.fingerprint(pem)
    mine = tls.host_fingerprint(root) or "none yet (run signal-event nethserver-hotsync-save)"
    if accept is not None:
        if seen != accept:
            return (f"the slave {cfg.slave_host}:{cfg.port} presents {seen}, not the {accept} you asked to "
                    "accept; nothing was pinned")
        how = "accepted"
    elif ask is not None:
        log(f"hotsync sync: the slave {cfg.slave_host}:{cfg.port} presents the certificate\n"
            f"  {seen}\n"
            "compare it with `hotsync status` on the slave (its line 'certificate:'); the slave must pin this\n"
            f"host's certificate too: {mine}\n"
            "(on the slave: config setprop hotsync MasterFingerprint <this>; signal-event nethserver-hotsync-save)")
        if not ask(f"pin the slave's certificate {seen}?"):
            return "the slave's certificate was not pinned: nothing was pushed"
        how = "accepted at the terminal"
    else:
        return (f"the slave's certificate is not pinned yet: a person compares its fingerprint first. It presents "
                f"{seen}; check it with `hotsync status` on the slave, then run: hotsync sync --accept-fingerprint "
                f"{seen}" + (" (a dry run never pins)" if dry_run else ""))
    tls.pin_slave(root, pem)

    def change(d: dict) -> None:
        d.pop("awaiting_person", None)
        d["pinned"] = {"fingerprint": seen, "time": time.time(), "how": how}

    update_status(root, change)
    log(f"hotsync sync: pinned the slave's certificate {seen} ({how})")
    return None


def failure_outcome(root: Root, cfg: Settings, run, what: str, *, nonce: str = "") -> Outcome:
    rc = run.returncode
    errors = run.error_lines()
    text = "\n".join(errors)
    meaning = EXIT_MEANING.get(rc, f"exit status {rc}")
    from hotsync_events.sync.fence import verified_marker

    # only the refusal the slave made for this very session, signed with the pair's secret, is a fence: a
    # file name or a log line that looks like one is not
    marker = verified_marker(run.stderr, nonce=nonce, secret=cfg.password)
    if marker is not None:
        return Outcome("failed", f"{what}: the slave {cfg.slave_host} was promoted to master (FENCED, pair epoch "
                       f"{marker['epoch']}): it refuses this host's pushes", details=errors, exit_code=rc,
                       fenced=marker)
    if "auth failed" in text:
        meaning = "the slave refused the password: set the same `rsyncd password` on both sides"
    elif "Unknown module" in text or "access denied" in text:
        meaning = ("the slave refused this host: its MasterHost is not this host's address, "
                   "or it is not an enabled slave")
    elif "refused by the slave" in text:
        meaning = "the slave refused the push: " + next((e.split("refused by the slave: ", 1)[1]
                                                         for e in errors if "refused by the slave: " in e), text[:200])
    elif any(e.startswith("@ERROR: ") for e in errors):
        # the slave's rsync daemon spoke, so TLS let this host in: its own reason (e.g. no lock file) is the news
        meaning = "the slave's rsync daemon ended the session: " + next(e[len("@ERROR: "):] for e in errors
                                                                          if e.startswith("@ERROR: "))
    elif rc in (5, 10, 12, 35, 255) or "certificate verify failed" in text or "SSL_connect" in text:
        meaning = tls_diagnosis(root, cfg) or meaning
    if rc in (23, 24):
        meaning += "; these paths were not pushed (see details)"
    return Outcome("failed", f"{what}: rsync exit {rc}: {meaning}", details=errors,
                   files=run.stats.get("Number of files", 0), bytes=run.stats.get("Total bytes sent", 0),
                   exit_code=rc)


def master_cert_refused(root: Root, cfg: Settings) -> str | None:
    """The slave answers TLS but refused the session before rsync spoke: it does not trust this master's
    certificate (it has no MasterFingerprint, or another one)."""
    if tls.pinned_fingerprint(root) is None:
        return None
    mine = tls.host_fingerprint(root)
    return (f"the slave refused this host's certificate {mine} at the TLS handshake: on the slave run "
            f"config setprop hotsync MasterFingerprint {mine}; signal-event nethserver-hotsync-save "
            "(its `hotsync status` shows the certificate this host presented)")


def tls_diagnosis(root: Root, cfg: Settings) -> str | None:
    """Why a session ended before rsync spoke, in words: the slave does not answer; it presents another
    certificate than the pinned one; it refused this master's certificate. None: it is none of them."""
    try:
        tls.fetch_cert(cfg.slave_host, cfg.port, timeout=10)
    except tls.TLSError as exc:
        return f"{exc}: is the slave's hotsync-stunnel running (hotsync services there), and the port open?"
    return cert_changed(root, cfg) or master_cert_refused(root, cfg)


def cert_changed(root: Root, cfg: Settings) -> str | None:
    pinned = tls.pinned_fingerprint(root)
    if pinned is None:
        return None
    try:
        seen = tls.fingerprint(tls.fetch_cert(cfg.slave_host, cfg.port, timeout=10))
    except tls.TLSError:
        return None
    if seen == pinned:
        return None
    return (f"the slave's TLS certificate changed: pinned {pinned}, the slave now presents {seen}. "
            "Nothing was pushed. If the slave was reinstalled or its certificate renewed, check the "
            "fingerprint with `hotsync status` on the slave, then accept it here with: "
            f"hotsync sync --accept-fingerprint {seen}")
