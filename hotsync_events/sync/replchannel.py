"""The files of a database replica's channel, made from what the pair already trusts (docs/replication.md,
"Pairing").

A pair of hosts trusts each other through their HotSync TLS identities (:mod:`hotsync_events.sync.tls`): the
master pins the slave's certificate at the first push, after a person compared its fingerprint, and the
slave trusts only the master certificate whose fingerprint is its ``MasterFingerprint``. The replication
channel adds no second trust to set up:

* each host signs its own replication certificate with its host key (CN the replication account, the
  subjectAltName its ``ReplicationAddress``, the OU naming the engine and the host identity that issued it);
  the key never leaves the host;
* each host pins the peer's **host** certificate as the only CA of the channel (``peer.crt``): only a
  certificate the peer's host key signed passes, and MariaDB's account also requires the subject the peer's
  replication certificate has, which this host computes from the peer's fingerprint;
* the channel password is derived from the two host keys (ECDH between this host's key and the peer's
  pinned certificate, then HMAC-SHA256 per engine): both hosts compute the same high-entropy value,
  nothing is shipped, and it changes when either identity does.

A renewed host certificate or a new pin changes the files and their digest, and the next setup re-prepares
the master and re-points the replica (:mod:`hotsync_events.sync.replsetup`). The directory
(``/var/lib/hotsync/replication/channel-<engine>``) is root's, 0700; one that is a link or someone else's is
refused.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from hotsync_events.fsutil import atomic_write
from hotsync_events.paths import Root
from hotsync_events.sync import tls
from hotsync_events.sync.invoke import write_if_changed

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


def unit_of(host_fp: str, engine: str) -> str:
    """The OU of *engine*'s replication certificate issued by the host identity with fingerprint *host_fp*."""
    return f"replication {engine} " + _hex(host_fp)[:32]


def leaf_subject(host_fp: str, user: str, engine: str) -> str:
    """The subject (OpenSSL's ``/O=.../OU=.../CN=...`` form) of the *engine* replication certificate a host
    with identity *host_fp* makes for account *user*."""
    return f"/O=hotsync/OU={unit_of(host_fp, engine)}/CN={user}"


def channel_password(own_key: Path, peer_cert_pem: bytes, engine: str) -> str:
    """The channel password of *engine*: ECDH between *own_key* and the public key of the peer's certificate,
    then HMAC-SHA256 (43 URL-safe characters). The peer computes the same from its key and this host's
    certificate."""
    openssl = tls._openssl()
    with tempfile.TemporaryDirectory(prefix=".hotsync-ecdh-") as tmp:
        pub = Path(tmp) / "peer.pub"
        cp = subprocess.run([openssl, "x509", "-pubkey", "-noout"], input=peer_cert_pem, capture_output=True,
                            timeout=30)
        if cp.returncode != 0:
            raise PairingError(f"openssl cannot read the peer's certificate: {cp.stderr.decode(errors='replace').strip()}")
        pub.write_bytes(cp.stdout)
        cp = subprocess.run([openssl, "pkeyutl", "-derive", "-inkey", str(own_key), "-peerkey", str(pub)],
                            capture_output=True, timeout=30)
    if cp.returncode != 0 or len(cp.stdout) < 32:
        raise PairingError("openssl could not derive the channel password from this host's key and the peer's "
                           f"certificate (both must be EC P-256): {cp.stderr.decode(errors='replace').strip()}")
    mac = hmac.new(cp.stdout, f"hotsync replication password 1 {engine}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def peer_host_cert(root: Root, role: str) -> Path | None:
    """The peer's host certificate this host trusts: the master's pin of its slave, the slave's of its master."""
    if role == "master":
        p = tls.pin_path(root)
        return p if p.is_file() else None
    return tls.master_pin_file(root)


def with_peer_subject(root: Root, link, engine: str):
    """*link* completed with the subject the peer's replication certificate has, from the pin its channel
    holds (for a link whose files :func:`ensure_channel` made earlier); *link* itself when there is none."""
    try:
        pem = root.join(link.peer_cert).read_text()
        return replace(link, peer_subject=leaf_subject(tls.fingerprint(pem), link.user, engine))
    except (OSError, ValueError):
        return link


def _own_dir(d: Path) -> None:
    """The channel's directory: root's (this process's user), 0700, a real directory; made when missing."""
    try:
        st = os.lstat(d)
    except FileNotFoundError:
        # the parent also holds the engines' own directories, which their servers' users must reach
        d.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(d.parent, 0o755)
        d.mkdir(mode=0o700)
        return
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise PairingError(f"{d} is not a directory of this host's HotSync (a link, or another user's): remove it, "
                           "then run hotsync replicas setup")
    if st.st_mode & 0o077:
        os.chmod(d, 0o700)


def ensure_channel(root: Root, link, engine: str, role: str, *, log=print) -> Channel:
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
    own_fp = tls.fingerprint(host_cert.read_text())
    peer_pem = peer.read_bytes()
    peer_fp = tls.fingerprint(peer_pem.decode())
    own_address = link.master_host if role == "master" else link.replica_host
    cert, key, pw_path = root.join(link.cert), root.join(link.key), root.join(link.password_file)
    d = cert.parent
    if key.parent != d or pw_path.parent != d:
        raise PairingError(f"the channel's files must be in one directory ({d})")
    _own_dir(d)
    made = []
    want = {"issuer": own_fp, "address": own_address, "user": link.user, "engine": engine}
    record = d / RECORD
    try:
        have = json.loads(record.read_text())
    except (OSError, ValueError):
        have = None
    if {k: v for k, v in (have or {}).items() if k != "peer"} != want or not cert.is_file() or not key.is_file():
        make_certificate(cert, key, common_name=link.user, addresses=[own_address], issuer=(host_cert, host_key),
                         unit=unit_of(own_fp, engine))
        have = None
        made.append(f"certificate {link.cert} (issued by this host's identity, for {own_address})")
    if write_if_changed(root.join(link.peer_cert), peer_pem, 0o644):
        made.append(f"pin {link.peer_cert} (the {'slave' if role == 'master' else 'master'}'s host certificate "
                    f"{peer_fp})")
    if (have or {}).get("peer") != peer_fp or not pw_path.is_file():
        password = channel_password(host_key, peer_pem, engine)
        if write_if_changed(pw_path, (password + "\n").encode(), 0o600):
            made.append(f"password {link.password_file} (derived from the two host keys)")
    password = pw_path.read_text().strip()
    if have is None or have.get("peer") != peer_fp:
        atomic_write(record, json.dumps({**want, "peer": peer_fp}, sort_keys=True) + "\n", mode=0o644)
    done = replace(link, peer_subject=leaf_subject(peer_fp, link.user, engine))
    h = hashlib.sha256()
    for part in (cert.read_bytes(), peer_pem, password.encode(), repr(done).encode()):
        h.update(hashlib.sha256(part).digest())
    for m in made:
        log(f"database replication ({engine}): made {m}")
    return Channel(link=done, digest=h.hexdigest()[:32], made=tuple(made))
