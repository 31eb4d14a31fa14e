"""TLS between master and slave: each host's own certificate, and each side's pin of the other's.

Mutual TLS: every host makes its own key and self-signed certificate at its first
``nethserver-hotsync-save`` (:func:`ensure_host_cert`, with the ``openssl`` command); ``hotsync status``
prints its fingerprint. Each side pins the other's certificate, and a pin is only ever taken by a person:

* the master pins the slave's at the first push a person makes: ``hotsync sync`` on a terminal shows
  both fingerprints and asks, or ``hotsync sync --accept-fingerprint SHA256:...`` names the slave's
  (:func:`pin_slave`); cron, the notifier and ``--dry-run`` never pin. stunnel then verifies the slave
  against that pin on every connection.
* the slave pins the master's by its fingerprint: ``config setprop hotsync MasterFingerprint SHA256:...``
  (the master's own, from ``hotsync status`` there) then the save event. The master sends its certificate
  through the slave's pairing service (a TLS service of its own, reached by SNI, which can only deliver
  that one file); the slave keeps it only if its fingerprint is MasterFingerprint
  (:func:`accept_master_cert`), in the directory stunnel verifies masters against
  (:func:`trusted_master_dir`). From then on a push from any other certificate is refused at the handshake.
"""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import stat
from pathlib import Path

from hotsync_events.fsutil import atomic_write, read_small
from hotsync_events.paths import Root
from hotsync_events.sync.status import state_dir

__all__ = ["CertChanged", "TLSError", "accept_master_cert", "cert_paths", "ensure_host_cert", "fetch_cert",
           "fingerprint", "host_fingerprint", "master_pin_file", "master_pin_fingerprint", "normalise_fingerprint", "pin_path",
           "pin_slave", "pinned_fingerprint", "trusted_master_dir"]

MAX_CERT_BYTES = 16384


class TLSError(RuntimeError):
    pass


class CertChanged(TLSError):
    """The slave presents another certificate than the pinned one."""


def tls_dir(root: Root) -> Path:
    return state_dir(root) / "tls"


def cert_paths(root: Root) -> tuple[Path, Path]:
    """``(certificate, key)`` of this host: the slave's TLS server identity, the master's client identity."""
    d = tls_dir(root)
    return d / "host.crt", d / "host.key"


def pin_path(root: Root) -> Path:
    """The master's pinned copy of the slave's certificate (stunnel's ``CAfile`` on the master)."""
    return tls_dir(root) / "pinned-slave.crt"


def trusted_master_dir(root: Root) -> Path:
    """The slave's pin of its master: stunnel's ``CApath``, holding only the certificate whose fingerprint
    is MasterFingerprint (by its subject hash, as OpenSSL looks it up)."""
    return tls_dir(root) / "master"


def incoming_dir(root: Root) -> Path:
    """Where the pairing service writes the certificate a master presents (checked, never trusted as is)."""
    return tls_dir(root) / "incoming"


_PEM_HEADER, _PEM_FOOTER = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"


def _pem_to_der(pem: str) -> bytes:
    """``ssl.PEM_cert_to_DER_cert`` without importing ssl (every sync and status reads a fingerprint)."""
    text = pem.strip()
    if not text.startswith(_PEM_HEADER) or not text.endswith(_PEM_FOOTER):
        raise ValueError(f"Invalid PEM encoding; must start with {_PEM_HEADER} and end with {_PEM_FOOTER}")
    return base64.decodebytes(text[len(_PEM_HEADER):-len(_PEM_FOOTER)].encode("ascii", "strict"))


def fingerprint(pem: str) -> str:
    """``SHA256:AB:CD:...`` of a PEM certificate (the form ``openssl x509 -fingerprint`` prints)."""
    der = _pem_to_der(pem)
    digest = hashlib.sha256(der).hexdigest().upper()
    return "SHA256:" + ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def normalise_fingerprint(text: str) -> str:
    """Accept ``SHA256:ab:cd...``, ``ab:cd...`` or bare hex; return the canonical form or raise ValueError."""
    t = text.strip()
    if t.upper().startswith("SHA256:"):
        t = t[7:]
    hexs = t.replace(":", "").upper()
    if len(hexs) != 64 or any(c not in "0123456789ABCDEF" for c in hexs):
        raise ValueError(f"{text!r} is not a SHA-256 fingerprint (64 hex digits, colons allowed)")
    return "SHA256:" + ":".join(hexs[i:i + 2] for i in range(0, 64, 2))


def _openssl() -> str:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TLSError("the openssl command is missing: install the openssl package")
    return openssl


def ensure_host_cert(root: Root, *, days: int = 3650, log=print) -> tuple[Path, Path, bool]:
    """Make this host's key and self-signed certificate unless they exist; ``(cert, key, made_now)``.

    A slave certificate of an earlier version (``slave.crt``/``slave.key``) is kept as this host's.
    """
    import socket
    import subprocess

    cert, key = cert_paths(root)
    d = cert.parent
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    old_cert, old_key = d / "slave.crt", d / "slave.key"
    if not cert.is_file() and old_cert.is_file() and old_key.is_file():
        atomic_write(key, old_key.read_bytes(), mode=0o600)
        atomic_write(cert, old_cert.read_bytes(), mode=0o644)
        old_key.unlink()
        old_cert.unlink()
    if cert.is_file() and key.is_file():
        return cert, key, False
    tmp_key, tmp_cert = key.with_suffix(".key.new"), cert.with_suffix(".crt.new")
    old_umask = os.umask(0o077)
    try:
        cp = subprocess.run([_openssl(), "req", "-x509", "-newkey", "ec", "-pkeyopt",
                             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(tmp_key), "-out", str(tmp_cert),
                             "-days", str(days), "-subj",
                             f"/CN={socket.gethostname()[:60] or 'hotsync-host'}/O=hotsync"],
                            capture_output=True, text=True, timeout=60)
    finally:
        os.umask(old_umask)
    if cp.returncode != 0:
        raise TLSError(f"openssl could not make the certificate: {cp.stderr.strip()}")
    atomic_write(key, tmp_key.read_bytes(), mode=0o600)
    atomic_write(cert, tmp_cert.read_bytes(), mode=0o644)
    tmp_key.unlink()
    tmp_cert.unlink()
    log(f"made this host's TLS certificate, fingerprint {fingerprint(cert.read_text())}")
    return cert, key, True


def host_fingerprint(root: Root) -> str | None:
    """This host's own certificate fingerprint (None before its first save event)."""
    try:
        return fingerprint(cert_paths(root)[0].read_text())
    except (OSError, ValueError):
        return None


def fetch_cert(host: str, port: int, timeout: float = 15) -> str:
    """The PEM certificate the slave presents (no verification: this is the look a person compares).

    The slave asks every client for a certificate it knows, so the handshake itself may then fail: the
    certificate was read before that.
    """
    import socket
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    seen: list[bytes] = []
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            tls = ctx.wrap_socket(sock, server_hostname=host if not _is_ip(host) else None,
                                  do_handshake_on_connect=False)
            try:
                tls.do_handshake()
            except ssl.SSLError:
                pass
            der = tls.getpeercert(binary_form=True)
            if der:
                seen.append(der)
    except OSError as exc:
        raise TLSError(f"cannot reach the slave's TLS port {host}:{port}: {exc}") from None
    if not seen:
        raise TLSError(f"the slave at {host}:{port} presented no certificate")
    return ssl.DER_cert_to_PEM_cert(seen[0])


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def pinned_fingerprint(root: Root) -> str | None:
    """The master's pin of its slave's certificate, or None."""
    try:
        return fingerprint(pin_path(root).read_text())
    except (OSError, ValueError):
        return None


def pin_slave(root: Root, pem: str) -> str:
    """Pin *pem* as the slave's certificate (a person accepted it); returns its fingerprint."""
    atomic_write(pin_path(root), pem, mode=0o644)
    return fingerprint(pem)


# ------------------------------------------------------------------------------------------- the slave's pin
def _subject_hash(pem_path: Path) -> str:
    import subprocess

    cp = subprocess.run([_openssl(), "x509", "-hash", "-noout", "-in", str(pem_path)], capture_output=True,
                        text=True, timeout=30)
    if cp.returncode != 0 or not cp.stdout.strip():
        raise TLSError(f"openssl cannot read the certificate {pem_path}: {cp.stderr.strip()}")
    return cp.stdout.strip()


def placeholder_path(root: Root) -> Path:
    """A certificate nobody can present (its key was destroyed when it was made): stunnel refuses to start
    with no trusted certificate at all, so it trusts this one while no master is trusted yet."""
    return tls_dir(root) / "nobody.crt"


def ensure_placeholder(root: Root) -> Path:
    import subprocess

    path = placeholder_path(root)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_key, tmp_cert = path.with_suffix(".key.tmp"), path.with_suffix(".crt.tmp")
    old_umask = os.umask(0o077)
    try:
        cp = subprocess.run([_openssl(), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                             "-nodes", "-keyout", str(tmp_key), "-out", str(tmp_cert), "-days", "36500", "-subj",
                             "/CN=no master trusted yet/O=hotsync"], capture_output=True, text=True, timeout=60)
    finally:
        os.umask(old_umask)
        tmp_key.unlink(missing_ok=True)          # the key is gone: no one can ever present this certificate
    if cp.returncode != 0:
        raise TLSError(f"openssl could not make the placeholder certificate: {cp.stderr.strip()}")
    atomic_write(path, tmp_cert.read_bytes(), mode=0o644)
    tmp_cert.unlink()
    return path


def master_pin_file(root: Root) -> Path | None:
    """The master certificate this slave trusts (a file of its trusted directory), or None (not received yet)."""
    d = trusted_master_dir(root)
    for f in sorted(d.glob("*.0")) if d.is_dir() else ():
        try:
            fingerprint(f.read_text())
            return f
        except (OSError, ValueError):
            continue
    return None


def master_pin_fingerprint(root: Root) -> str | None:
    """The fingerprint of the master certificate this slave trusts, or None (not received yet)."""
    f = master_pin_file(root)
    return fingerprint(f.read_text()) if f is not None else None


def set_master_pin(root: Root, expected: str | None) -> str | None:
    """Keep in the trusted directory only the master certificate whose fingerprint is *expected*.

    Called by the save event (MasterFingerprint may have changed) and after the pairing service delivered a
    certificate. Returns the fingerprint trusted now, or None.
    """
    d = trusted_master_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d.parent, 0o700)
    trusted = None
    for f in sorted(d.iterdir()):
        try:
            fp = fingerprint(f.read_text())
        except (OSError, ValueError):
            fp = None
        if expected is None or fp != expected:
            f.unlink()
        else:
            trusted = fp
    if trusted is None and expected is not None:
        candidate = incoming_dir(root) / "master.crt"
        data = read_small(candidate, MAX_CERT_BYTES)     # sent by whoever paired: no link, no FIFO, bounded
        if data is not None:
            trusted = accept_master_cert(root, data, expected)
        else:
            try:
                st = os.lstat(candidate)
            except OSError:
                return trusted
            if stat.S_ISREG(st.st_mode) and st.st_size > MAX_CERT_BYTES:
                raise TLSError(f"the certificate the master sent is {st.st_size} bytes: too big to be one")
    return trusted


def accept_master_cert(root: Root, data: bytes, expected: str | None) -> str | None:
    """Trust the certificate *data* a master delivered if its fingerprint is *expected* (MasterFingerprint).

    Returns the fingerprint trusted, or None (then it is kept only as the candidate ``hotsync status`` shows).
    """
    if len(data) > MAX_CERT_BYTES:
        raise TLSError(f"the certificate the master sent is {len(data)} bytes: too big to be one")
    try:
        pem = data.decode("ascii")
        fp = fingerprint(pem)
    except (UnicodeDecodeError, ValueError) as exc:
        raise TLSError(f"the master sent no PEM certificate: {exc}") from None
    if expected is None or fp != expected:
        return None
    d = trusted_master_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / ".master.pem"
    atomic_write(tmp, pem, mode=0o644)
    name = d / f"{_subject_hash(tmp)}.0"
    for f in d.iterdir():
        if f != tmp and f != name:
            f.unlink()
    os.replace(tmp, name)
    return fp


def candidate_fingerprint(root: Root) -> str | None:
    """The fingerprint of the last certificate a master presented to the pairing service (maybe untrusted)."""
    # sent by whoever reached the pairing service: no link followed, no FIFO waited on, nothing large read
    data = read_small(incoming_dir(root) / "master.crt", MAX_CERT_BYTES)
    try:
        return fingerprint(data.decode("ascii")) if data is not None else None
    except (ValueError, UnicodeDecodeError):
        return None
