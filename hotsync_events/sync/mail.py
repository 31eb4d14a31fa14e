"""Alert mail: one on the first failure, one on recovery, never one per failed run.

Sent to ``hotsync MailTo`` through ``hotsync SmartHost`` (``host`` or ``host:port``) with smtplib. The
state (whether a failure mail is out) lives in the status file, so cron runs, the scheduler and the
sysadmin's manual runs share it. A mail that cannot be sent is recorded and tried again at the next
failure.
"""
from __future__ import annotations

import smtplib
import socket
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

__all__ = ["MailError", "send_mail", "split_hostport"]


class MailError(RuntimeError):
    pass


def split_hostport(value: str, default_port: int = 25) -> tuple[str, int]:
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, default_port


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def send_mail(smarthost: str, mail_to: str, subject: str, body: str, *, sender: str | None = None,
              timeout: float = 15) -> None:
    """Send one plain-text mail; MailError says why it could not go."""
    if any(c in mail_to for c in "\r\n,;<>") or "@" not in mail_to:
        raise MailError(f"MailTo {mail_to!r} is not one mail address")
    host, port = split_hostport(smarthost)
    msg = EmailMessage()
    msg["From"] = sender or f"hotsync@{_one_line(socket.getfqdn()) or 'localhost'}"
    msg["To"] = mail_to
    msg["Subject"] = _one_line(subject)[:200]
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid("hotsync")
    msg.set_content(body)
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"cannot send mail through {host}:{port}: {exc}") from None
