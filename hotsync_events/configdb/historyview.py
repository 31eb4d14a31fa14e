"""Reading the config change history for ``config history``: filters, ``--since`` forms, output.

The log (:mod:`hotsync_events.configdb.history`) holds one JSON line per changed prop, in the order the changes
landed: each writer appends its entries under the database's lock, before its new file replaces the old.
Reading takes no lock. The filters work on the raw bytes first, so that a 100,000-entry log is searched
for one key, or for the last hour, without decoding every entry:

* a key filter only decodes lines holding the key as a JSON string;
* ``since`` finds its first entry by a binary search of each file (the log is in landing order, and
  each entry's time is taken under the lock; a clock stepped backwards can hide entries written
  before the step);
* ``last`` reads from the end and decodes only the last N matching lines.

The files are mapped (mmap), not read: what is not searched is not touched.
"""
from __future__ import annotations

import json
import re
import time

from hotsync_events.configdb.history import KEEP, MASK, history_path
from hotsync_events.paths import Root

__all__ = ["WhenError", "entries", "entry_text", "history_files", "parse_when"]

_TIME = re.compile(rb'"time":\s*(-?[0-9][0-9.eE+-]*)')
_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hr|hrs|hours?|d|days?|"
                   r"w|weeks?)(?:\s+ago)?", re.I)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
WHEN_FORMS = ("an ISO date or time (2026-11-23, 2026-11-23T18:00, '2026-11-23 18:00:00+01:00'), "
              "a span back from now (90s, 30m, 1h, 2d, 1w), today, yesterday or @EPOCH")


class WhenError(ValueError):
    """A ``--since`` value in none of the accepted forms."""


def parse_when(text: str, now: float | None = None) -> float:
    """The epoch time *text* names: ISO date/time (local unless it says its zone), ``30m``/``1h``/``2d``
    back from *now*, ``today``, ``yesterday``, ``now`` or ``@EPOCH``."""
    now = time.time() if now is None else now
    s = text.strip()
    m = _SPAN.fullmatch(s)
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)[0].lower()]
    low = s.lower()
    if low == "now":
        return now
    if low in ("today", "yesterday"):
        t = time.localtime(now)
        midnight = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))
        return midnight - (86400 if low == "yesterday" else 0)
    if s.startswith("@"):
        try:
            return float(s[1:])
        except ValueError:
            pass
    else:
        from datetime import datetime

        iso = s.replace(" ", "T", 1)
        if iso.endswith(("Z", "z")):
            iso = iso[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(iso)
        except ValueError:
            dt = None
        if dt is not None:
            if dt.tzinfo is None:
                return time.mktime(dt.timetuple()) + dt.microsecond / 1e6
            return dt.timestamp()
    raise WhenError(f"invalid time {text!r}: use {WHEN_FORMS}")


def history_files(root: Root) -> list:
    """The log's files, oldest first (``.3``, ``.2``, ``.1``, then the live one)."""
    path = history_path(root)
    return [path.with_name(f"{path.name}.{i}") for i in range(KEEP, 0, -1)] + [path]


def _time_of(line: bytes) -> float | None:
    m = _TIME.search(line)
    if m is None:
        return None
    try:
        return float(m.group(1))
    except ValueError:
        return None


def _start_since(data, since: float) -> int:
    """Offset of the first line of *data* (bytes or mmap) whose entry is not older than *since*.

    A binary search over line boundaries: the log is in landing order and each entry's time is taken
    under the lock, so times only grow (unless the clock is stepped back). A line without a time counts
    as older.
    """
    lo, hi = 0, len(data)
    while lo < hi:
        mid = (lo + hi) // 2
        ls = data.rfind(b"\n", 0, mid) + 1
        le = data.find(b"\n", ls)
        le = len(data) if le < 0 else le
        t = _time_of(data[ls:le])
        if t is None or t < since:
            lo = le + 1
        else:
            hi = ls
    return min(lo, len(data))


def _lines(data, start: int, needle: bytes | None, backward: bool):
    """The lines of ``data[start:]`` (holding *needle*, when given), first to last or last to first."""
    size = len(data)
    if needle is None and not backward:
        yield from (line for line in data[start:].split(b"\n") if line)
        return
    if not backward:
        pos = data.find(needle, start)
        while pos >= 0:
            ls = max(data.rfind(b"\n", start, pos) + 1, start)
            le = data.find(b"\n", pos)
            le = size if le < 0 else le
            yield data[ls:le]
            pos = data.find(needle, le)
        return
    end = size
    while end > start:
        if needle is not None:
            pos = data.rfind(needle, start, end)
            if pos < 0:
                return
            le = data.find(b"\n", pos, end)
            le = end if le < 0 else le
        else:
            le = end - 1 if data[end - 1:end] == b"\n" else end
            pos = le
        ls = max(data.rfind(b"\n", start, pos) + 1, start)
        line = data[ls:le]
        if line:
            yield line
        end = ls


def _maps(root: Root) -> list:
    """``(file, data)`` of each non-empty log file, oldest first; *data* is a read-only mmap.

    The files are opened first and read after, and opened again (a few times at most) when a writer
    rotated them in between (a file now where none was, or another file at a name), so a reader sees
    one consistent set without taking the writers' lock.
    """
    import mmap

    paths = history_files(root)
    for attempt in range(10):
        opened = [_open_or_none(f) for f in paths]
        if attempt == 9 or [_ident(f) for f in paths] == [_fd_ident(fh) for fh in opened]:
            break
        for fh in opened:
            if fh is not None:
                fh.close()
    out = []
    for fh in opened:
        if fh is None:
            continue
        try:
            out.append((fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)))
        except ValueError:  # an empty file cannot be mapped
            fh.close()
    return out


def _open_or_none(path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def _ident(path):
    import os

    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _fd_ident(fh):
    import os

    if fh is None:
        return None
    st = os.fstat(fh.fileno())
    return st.st_dev, st.st_ino


def entries(root: Root, *, db: str | None = None, key: str | None = None, since: float | None = None,
            last: int | None = None, secret=None) -> list:
    """The history's entries, oldest first, filtered by database, key, time and count.

    *secret* is ``secret(db, key, prop) -> bool``: values of props that are secret now are masked even in
    entries written before they became secret. A torn or foreign line is skipped.
    """
    needle = json.dumps(key, ensure_ascii=False).encode("utf-8", "surrogateescape") if key is not None else None
    maps = _maps(root)
    picked: list = []
    try:
        order = reversed(maps) if last is not None else maps
        for _fh, data in order:
            start = _start_since(data, since) if since is not None else 0
            found = _lines(data, start, needle, backward=last is not None)
            for e in (_decode_each(found) if last is not None else _decode_all(list(found))):
                if not isinstance(e, dict):
                    continue
                if (db is not None and e.get("db") != db) or (key is not None and e.get("key") != key):
                    continue
                if since is not None and not (isinstance(e.get("time"), (int, float)) and e["time"] >= since):
                    continue
                if secret is not None and e.get("prop") is not None and secret(e.get("db"), e.get("key"),
                                                                               e["prop"]):
                    _remask(e)
                picked.append(e)
                if last is not None and len(picked) >= last:
                    break
            if last is not None and len(picked) >= last:
                break
    finally:
        for fh, data in maps:
            data.close()
            fh.close()
    if last is not None:
        picked.reverse()
    return picked


def _decode_each(lines):
    for line in lines:
        try:
            yield json.loads(line)
        except ValueError:  # a torn line (a writer killed mid-write) or a foreign one
            continue


def _decode_all(lines: list) -> list:
    """Decode many lines at once (one JSON array: the C scanner's speed); line by line if one is torn."""
    if not lines:
        return []
    try:
        decoded = json.loads(b"[" + b",".join(lines) + b"]")
        if len(decoded) == len(lines):
            return decoded
    except ValueError:
        pass
    return list(_decode_each(lines))


def _remask(e: dict) -> None:
    """Mask a secret's values in an entry written before the prop was secret, in the command too."""
    clear = {v for v in (e.get("old"), e.get("new")) if isinstance(v, str) and v and v != MASK}
    for field in ("old", "new"):
        if e.get(field):
            e[field] = MASK
    command = e.get("command")
    if clear and isinstance(command, str):
        words = [MASK if w in clear else w for w in command.split(" ")]
        command = " ".join(words)
        for v in clear:
            if " " in v:
                command = command.replace(v, MASK)
        e["command"] = command


_QUOTE = re.compile(r"""\A\Z|[\s"']|->""")


def _val(value) -> str:
    """A value as the text output shows it: quoted (JSON) when empty or holding spaces, quotes or '->'."""
    if value is None:
        return "(none)"
    if _QUOTE.search(value) is not None:
        return json.dumps(value, ensure_ascii=False)
    return value


_WHEN: dict = {}


def _when(t: int) -> str:
    """Local time of a second, remembered: a log's entries come in bursts of one second."""
    text = _WHEN.get(t)
    if text is None:
        if len(_WHEN) > 4096:
            _WHEN.clear()
        text = _WHEN[t] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    return text


def entry_text(e: dict, *, with_db: bool = False) -> str:
    """One line: ``time  user(uid)  command [(source)]  key prop: old -> new``."""
    t = e.get("time")
    when = _when(int(t)) if isinstance(t, (int, float)) else "?"
    who = f"{e.get('user', '?')}({e.get('uid', '?')})"
    what = e.get("key", "?") + " " + (e["prop"] if e.get("prop") is not None else "(type)")
    if with_db:
        what = f"{e.get('db', '?')} {what}"
    command = e.get("command") or "-"
    if e.get("source"):
        command += f" ({e['source']})"
    return f"{when}  {who}  {command}  {what}: {_val(e.get('old'))} -> {_val(e.get('new'))}\n"
