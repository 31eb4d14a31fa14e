"""The sync log read back: ``var/log/hotsync/sync.log`` (and its rotated ``sync.log.1``) as entries.

The master appends one entry per run (:func:`hotsync_events.sync.record.append_log`): a header line

    2026-11-23 18:35:38+0000 success (1.6s, 22 files, 40960 bytes, 0 deleted): pushed 22 changes and 0 deletions

then the run's details (the paths rsync could not send, the deletions a guard held back...), each
indented by four spaces. Entries written before the counts were logged have only ``(1.6s)``: their
counts read as None. ``hotsync log`` prints them; the Cockpit page charts them.
"""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from hotsync_events.paths import Root

__all__ = ["LOG", "parse_log", "read_log"]

#: host path of the sync log
LOG = "/var/log/hotsync/sync.log"

_HEADER = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d{4}) (?P<result>[a-z-]+) "
    r"\((?P<duration>\d+(?:\.\d+)?)s(?:, (?P<files>\d+) files, (?P<bytes>\d+) bytes, (?P<deleted>\d+) deleted)?\): "
    r"(?P<message>.*)$")


def _stamp(text: str) -> float | None:
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S%z").timestamp()
    except ValueError:
        return None


def parse_log(text: str) -> list[dict]:
    """The entries of a sync log's *text*, oldest first: ``{"time", "start", "result", "duration", "files",
    "bytes", "deleted", "message", "details"}`` (``time`` as written, ``start`` as Unix time)."""
    entries: list[dict] = []
    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            g = m.groupdict()
            entries.append({"time": g["time"], "start": _stamp(g["time"]), "result": g["result"],
                            "duration": float(g["duration"]),
                            **{k: (int(g[k]) if g[k] is not None else None) for k in ("files", "bytes", "deleted")},
                            "message": g["message"], "details": []})
        elif not entries:
            continue                                   # a torn first line (rotation): skip it
        elif line.startswith("    "):
            entries[-1]["details"].append(line[4:])
        elif line.strip():
            entries[-1]["message"] += "\n" + line      # a message of several lines
    return entries


def read_log(root: Root, last: int | None = None) -> list[dict]:
    """The entries of this host's sync log, the rotated part first, oldest first; the *last* N only."""
    path = root.join(LOG)
    text = ""
    for p in (Path(f"{path}.1"), path):
        try:
            text += p.read_text(encoding="utf-8", errors="backslashreplace")
        except FileNotFoundError:
            continue
    entries = parse_log(text)
    return entries[-last:] if last else entries
