"""TLS between master and slave: the slave's own key and certificate, the master's pin of it.

The slave makes a key and a self-signed certificate at its first ``nethserver-hotsync-save`` (with the
``openssl`` command). The master fetches the certificate at its first push and pins it (trust on first
use); stunnel then verifies every connection against that pin, so a changed certificate is refused
until the sysadmin accepts the new fingerprint (``hotsync sync --accept-fingerprint SHA256:...``,
compared with what ``hotsync status`` prints on the slave).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

from ..fsutil import atomic_write
from ..paths import Root
from .status import state_dir

__all__ = ["CertChanged", "TLSError", "cert_paths", "ensure_slave_cert", "fetch_cert", "fingerprint",
           "normalise_fingerprint", "pin_path", "pinned_fingerprint"]


class TLSError(RuntimeError):
    pass


class CertChanged(TLSError):
    """The slave presents another certificate than the pinned one."""


def tls_dir(root: Root) -> Path:
    return state_dir(root) / "tls"


def cert_paths(root: Root) -> tuple[Path, Path]:
    """``(certificate, key)`` of this host as a slave."""
    d = tls_dir(root)
    return d / "slave.crt", d / "slave.key"


def pin_path(root: Root) -> Path:
    """The master's pinned copy of the slave's certificate (stunnel's ``CAfile``)."""
    return tls_dir(root) / "pinned-slave.crt"


def fingerprint(pem: str) -> str:
    """``SHA256:AB:CD:...`` of a PEM certificate (the form ``openssl x509 -fingerprint`` prints)."""
    der = ssl.PEM_cert_to_DER_cert(pem)
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


def ensure_slave_cert(root: Root, *, days: int = 3650, log=print) -> tuple[Path, Path, bool]:
    """Make the slave's key and self-signed certificate unless they exist; ``(cert, key, made_now)``."""
    cert, key = cert_paths(root)
    if cert.is_file() and key.is_file():
        return cert, key, False
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TLSError("the openssl command is missing: install the openssl package")
    cert.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(cert.parent, 0o700)
    tmp_key, tmp_cert = key.with_suffix(".key.new"), cert.with_suffix(".crt.new")
    cp = subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                         "-nodes", "-keyout", str(tmp_key), "-out", str(tmp_cert), "-days", str(days),
                         "-subj", f"/CN={socket.gethostname()[:60] or 'hotsync-slave'}/O=hotsync"],
                        capture_output=True, text=True, timeout=60)
    if cp.returncode != 0:
        raise TLSError(f"openssl could not make the certificate: {cp.stderr.strip()}")
    atomic_write(key, tmp_key.read_bytes(), mode=0o600)
    atomic_write(cert, tmp_cert.read_bytes(), mode=0o644)
    tmp_key.unlink()
    tmp_cert.unlink()
    log(f"made this slave's TLS certificate, fingerprint {fingerprint(cert.read_text())}")
    return cert, key, True


def fetch_cert(host: str, port: int, timeout: float = 15) -> str:
    """The PEM certificate the slave presents (no verification: this is the first look at it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            with ctx.wrap_socket(sock, server_hostname=host if not _is_ip(host) else None) as tls:
                der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(f"cannot reach the slave's TLS port {host}:{port}: {exc}") from None
    if not der:
        raise TLSError(f"the slave at {host}:{port} presented no certificate")
    return ssl.DER_cert_to_PEM_cert(der)


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def pinned_fingerprint(root: Root) -> str | None:
    try:
        return fingerprint(pin_path(root).read_text())
    except (OSError, ValueError):
        return None


def pin(root: Root, pem: str) -> str:
    atomic_write(pin_path(root), pem, mode=0o644)
    return fingerprint(pem)
