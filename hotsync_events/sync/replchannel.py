"""The files of a database replica's channel, made from what the pair already trusts (docs/replication.md,
"Pairing").

A pair of hosts trusts each other through their HotSync TLS identities (:mod:`hotsync_events.sync.tls`): the
master pins the slave's certificate at the first push, after a person compared its fingerprint, and the
slave trusts only the master certificate whose fingerprint is its ``MasterFingerprint``. The replication
channel adds no second trust to set up:

* each host signs its own replication certificate with its host key (CN the replication account, the
  subjectAltName its ``ReplicationAddress``, the OU naming the host identity that issued it); the key never
  leaves the host;
* each host pins the peer's **host** certificate as the only CA of the channel (``peer.crt``): only a
  certificate the peer's host key signed passes, and MariaDB's account also requires the subject the peer's
  replication certificate has, which this host computes from the peer's fingerprint;
* the channel password is derived from the pair's push password (HMAC-SHA256 keyed with it, one per
  engine), so both hosts hold the same one without shipping it; a new push password makes a new one.

A renewed host certificate, a new pin or a new push password changes the files and their digest, and the
next setup re-prepares the master and re-points the replica (:mod:`hotsync_events.sync.replsetup`).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from hotsync_events.fsutil import atomic_write
from hotsync_events.paths import Root
from hotsync_events.sync import tls

__all__ = ["Channel", "PairingError", "channel_password", "ensure_channel", "leaf_subject", "peer_host_cert",
           "with_peer_subject"]

#: what this module records beside the certificate it made (to know when to make it again)
RECORD = "channel.json"


class PairingError(Exception):
    """The pair cannot make the channel yet; the message says which command fixes it."""


@dataclass(frozen=True)
class Channel:
    """A replica's channel as this host sees it, ready for the engine."""

    link: object          # the plugin's Link, completed with ``peer_subject``
    digest: str           # of everything the servers take from the files (certificates, password, link)
    made: tuple[str, ...]  # what was (re)written now


def _hex(fp: str) -> str:
    return fp.split(":", 1)[1].replace(":", "").lower() if fp.startswith("SHA256:") else fp.lower()


def unit_of(host_fp: str) -> str:
    """The OU of a replication certificate issued by the host identity with fingerprint *host_fp*."""
    return "replication " + _hex(host_fp)[:32]


def leaf_subject(host_fp: str, user: str) -> str:
    """The subject (OpenSSL's ``/O=.../OU=.../CN=...`` form) of the replication certificate a host with
    identity *host_fp* makes for account *user*."""
    return f"/O=hotsync/OU={unit_of(host_fp)}/CN={user}"


def channel_password(push_password: str, engine: str) -> str:
    """The channel password of *engine*, derived from the pair's push password (43 URL-safe characters)."""
    mac = hmac.new(push_password.encode("utf-8"), f"hotsync replication password 1 {engine}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def peer_host_cert(root: Root, role: str) -> Path | None:
    """The peer's host certificate this host trusts: the master's pin of its slave, the slave's of its master."""
    if role == "master":
        p = tls.pin_path(root)
        return p if p.is_file() else None
    return tls.master_pin_file(root)


def with_peer_subject(root: Root, link):
    """*link* completed with the subject the peer's replication certificate has, from the pin its channel
    holds (for a link whose files :func:`ensure_channel` made earlier); *link* itself when there is none."""
    try:
        pem = root.join(link.peer_cert).read_text()
        return replace(link, peer_subject=leaf_subject(tls.fingerprint(pem), link.user))
    except (OSError, ValueError):
        return link


def _write_if_changed(path: Path, data: bytes, mode: int) -> bool:
    try:
        if path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
            return False
    except OSError:
        pass
    atomic_write(path, data, mode=mode)
    return True


def ensure_channel(root: Root, link, engine: str, push_password: str, role: str, *, log=print) -> Channel:
    """Make (or keep) this host's end of *link*'s channel: its certificate, the peer's pin, the password.

    *role* is this host's (``master``: *link*'s master end is this host). Raises :class:`PairingError` when
    the pair's identities are not there yet."""
    from hotsync_events.dbkit.replica import make_certificate

    host_cert, host_key = tls.cert_paths(root)
    if not host_cert.is_file() or not host_key.is_file():
        raise PairingError("this host has no HotSync TLS identity yet: run signal-event nethserver-hotsync-save")
    peer = peer_host_cert(root, role)
    if peer is None:
        raise PairingError("the slave's certificate is not pinned yet: run hotsync sync (its first push pins it)"
                           if role == "master" else
                           "this slave trusts no master certificate yet: config setprop hotsync MasterFingerprint "
                           "<the master's>; signal-event nethserver-hotsync-save")
    if not push_password:
        raise PairingError("no push password: config setprop rsyncd password <the pair's password>")
    own_fp = tls.fingerprint(host_cert.read_text())
    peer_pem = peer.read_bytes()
    peer_fp = tls.fingerprint(peer_pem.decode())
    own_address = link.master_host if role == "master" else link.replica_host
    cert, key = root.join(link.cert), root.join(link.key)
    d = cert.parent
    if not d.is_dir():
        # the parent also holds the engines' own directories, which their servers' users must reach
        d.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(d.parent, 0o755)
        d.mkdir(mode=0o700)
    made = []
    want = {"issuer": own_fp, "address": own_address, "user": link.user}
    record = d / RECORD
    try:
        have = json.loads(record.read_text())
    except (OSError, ValueError):
        have = None
    if have != want or not cert.is_file() or not key.is_file():
        make_certificate(cert, key, common_name=link.user, addresses=[own_address], issuer=(host_cert, host_key),
                         unit=unit_of(own_fp))
        atomic_write(record, json.dumps(want, sort_keys=True) + "\n", mode=0o644)
        made.append(f"certificate {link.cert} (issued by this host's identity, for {own_address})")
    if _write_if_changed(root.join(link.peer_cert), peer_pem, 0o644):
        made.append(f"pin {link.peer_cert} (the {'slave' if role == 'master' else 'master'}'s host certificate "
                    f"{peer_fp})")
    password = channel_password(push_password, engine)
    if _write_if_changed(root.join(link.password_file), (password + "\n").encode(), 0o600):
        made.append(f"password {link.password_file} (derived from the push password)")
    done = replace(link, peer_subject=leaf_subject(peer_fp, link.user))
    h = hashlib.sha256()
    for part in (cert.read_bytes(), peer_pem, password.encode(), repr(done).encode()):
        h.update(hashlib.sha256(part).digest())
    for m in made:
        log(f"database replication ({engine}): made {m}")
    return Channel(link=done, digest=h.hexdigest()[:32], made=tuple(made))

