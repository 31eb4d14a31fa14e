"""The save event's values, checked for the file each goes into (rsyncd.conf, stunnel.conf, a crontab): what
:mod:`hotsync_plugins.hotsync` renders goes through these, on top of the schema's check at ``setprop``."""
from __future__ import annotations

import functools
import ipaddress
import re
import shlex
import shutil
import subprocess

from hotsync_events.events.templates import TemplateDataError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RenderRefused(TemplateDataError, ValueError):
    """A value that cannot go into a rendered file as it is (the template engine names the file)."""


def conf_value(value, what: str = "value") -> str:
    """A value for rsyncd.conf: one line, no edge spaces, no ``%``. rsyncd expands ``%VAR%`` from its
    environment, and the rsync of this kind of host keeps ``%%`` as two characters (a path holding ``%`` would
    be another path), so a value with ``%`` is refused, naming it."""
    text = str(value)
    if _CONTROL.search(text) or text != text.strip():
        raise RenderRefused(f"{what} {text!r} cannot go into a configuration line (line break, control "
                            "character or edge space)")
    if "%" in text:
        raise RenderRefused(f"{what} {text!r} cannot go into rsyncd.conf: it holds a '%' (rsync reads %NAME% "
                            "as an environment variable and keeps %% as it is); use a path without '%'")
    return text


def stunnel_value(value, what: str = "value") -> str:
    text = str(value)
    if _CONTROL.search(text) or text != text.strip() or text.startswith((";", "#", "[")):
        raise RenderRefused(f"{what} {text!r} cannot go into stunnel's configuration")
    return text


def host_value(value, what: str = "address") -> str:
    """An IP address or a host name, nothing else (the schema's ``host`` check, again)."""
    from hotsync_events.configdb.schema import _is_host

    text = str(value)
    if not text or not _is_host(text):
        raise RenderRefused(f"{what} {text!r} is not an IP address or a host name")
    return text


def int_value(value, lo: int, hi: int, what: str = "number") -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise RenderRefused(f"{what} {value!r} is not a whole number") from None
    if not lo <= n <= hi:
        raise RenderRefused(f"{what} {n} is not between {lo} and {hi}")
    return n


def secret_value(value) -> str:
    text = str(value)
    if not text or _CONTROL.search(text):
        raise RenderRefused("the rsyncd password is empty or holds a control character")
    return text


def cron_command(argv: list[str]) -> str:
    """A cron command line: each argument shell-quoted, ``%`` escaped (cron turns it into a newline)."""
    return " ".join(shlex.quote(a) for a in argv).replace("%", "\\%")


def resolve(host: str) -> list[str]:
    """The addresses of *host* (an IP address is itself); RenderRefused when it does not resolve."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    import socket   # here: the plugins load at every command, a name lookup is rare

    try:
        addrs = sorted({ai[4][0].split("%")[0] for ai in socket.getaddrinfo(host, None)})
    except OSError as exc:
        raise RenderRefused(f"MasterHost {host!r} does not resolve: {exc}") from None
    return [str(ipaddress.ip_address(a)) for a in addrs]


def daemon_address(root: str) -> str:
    """The loopback address this root's rsync daemon listens on: 127.0.0.1 for the host's own root, else
    one of 127/8 derived from the root's path. Linux answers on every 127/8 address without setup, so
    several roots on one machine (tests, the demo, benchmarks) each get a daemon on port 873 without
    colliding, and the daemon still listens on loopback only."""
    import zlib

    if root.rstrip("/") == "":
        return "127.0.0.1"
    h = zlib.crc32(root.rstrip("/").encode("utf-8", "surrogateescape")) & 0xFFFFFF
    return f"127.{(h >> 16) & 255}.{(h >> 8) & 255}.{(h & 255) % 254 + 1}"


def _with_mapped(addrs: list[str]) -> list[str]:
    """Each IPv4 address and its IPv4-mapped IPv6 form: stunnel's dual-stack listener reports a v4 client as
    ``::ffff:a.b.c.d`` in the PROXY header, which ``hosts allow`` must match too."""
    out: list[str] = []
    for a in addrs:
        out.append(a)
        if ipaddress.ip_address(a).version == 4 and not ipaddress.ip_address(a).is_loopback:
            out.append(f"::ffff:{a}")
    return out


def _is_loopback(host: str) -> bool:
    try:
        return all(ipaddress.ip_address(a).is_loopback for a in resolve(host))
    except RenderRefused:
        return False


@functools.cache
def strongest_digest(rsync: str = "rsync") -> str:
    """The strongest daemon auth digest the installed rsync offers (its ``Daemon auth list``)."""
    try:
        out = subprocess.run([shutil.which(rsync) or rsync, "--version"], capture_output=True, text=True,
                             timeout=20).stdout
    except OSError:
        return "md5"
    m = re.search(r"Daemon auth list:\s*\n\s*([^\n]+)", out)
    if not m:
        return "md5"
    names = m.group(1).split()
    for best in ("sha512", "sha256", "sha1", "md5", "md4"):
        if best in names:
            return best
    return names[0] if names else "md5"


def tool(*names: str) -> str:
    for n in names:
        found = shutil.which(n)
        if found:
            return found
    return names[0]
