"""The e-smith database line format: ``key=type|prop|value|prop|value...``, keys and props sorted.

Two dialects are read:

* **legacy** files, written by NethServer's Perl ``db`` tool (no format mark in the header): fields are
  split on a ``|`` that no backslash precedes, the two characters ``\\n`` read back as a newline, and
  every other backslash is literal (so ``\\\\srv\\share`` reads as it is).
* **hotsync** files (the header holds :data:`FORMAT_MARK`): ``\\`` escapes ``\\``, ``|``, a newline
  (``\\n``) and a carriage return (``\\r``), so every Unicode string round-trips exactly, the empty
  string and leading or trailing spaces included.

Files are always written in the hotsync dialect; a legacy file is converted the first time it is written.
"""
from __future__ import annotations

import re
import time

__all__ = ["FORMAT_MARK", "Record", "KeyError_", "check_key", "check_prop", "decode_record",
           "encode_record", "find_raw", "is_legacy", "parse_text", "render_text"]

FORMAT_MARK = "# hotsync-db-format: 2 (\\ escapes \\, |, newline as \\n and CR as \\r)"
HEADER = (
    "# DO NOT MODIFY THIS FILE.\n"
    "# This file is maintained by hotsync_events; change it with `db NAME set|setprop|delprop|delete`.\n"
    f"{FORMAT_MARK}\n"
    "# updated: {updated}\n"
)

_ESCAPES = {"\\": "\\\\", "|": "\\|", "\n": "\\n", "\r": "\\r"}
_NEEDS_ESCAPE = re.compile(r"[\\|\n\r]")
_UNESCAPE = re.compile(r"\\(.)", re.S)
_UNESCAPE_MAP = {"n": "\n", "r": "\r"}
_TOKEN_V2 = re.compile(r"\\.|\|", re.S)  # an escape pair, or a separator
_SPLIT_LEGACY = re.compile(r"(?<!\\)\|")
_BAD_KEY = re.compile(r"[\s=|\\\x00-\x1f\x7f]")


class Record:
    """One database entry: a type and an ordered mapping of props."""

    __slots__ = ("type", "props")

    def __init__(self, type: str, props: dict[str, str] | None = None) -> None:
        self.type = type
        self.props = dict(props or {})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and (self.type, self.props) == (other.type, other.props)

    def __repr__(self) -> str:
        return f"Record({self.type!r}, {self.props!r})"

    def copy(self) -> Record:
        return Record(self.type, self.props)


class KeyError_(ValueError):
    """A key or prop name that the format cannot hold."""


def check_key(key: str) -> str:
    """Return *key* if it can be a database key, else raise KeyError_ saying what is allowed."""
    if not key or _BAD_KEY.search(key) or key.startswith("#"):
        raise KeyError_(
            f"invalid key {key!r}: a key is a non-empty name without spaces, control characters, "
            "'=', '|' or '\\', and does not start with '#'")
    return key


def check_prop(prop: str) -> str:
    """Return *prop* if it can be a prop name, else raise KeyError_ saying what is allowed."""
    if not prop:
        raise KeyError_("invalid prop name '': a prop name is a non-empty string")
    return prop


def _escape(text: str) -> str:
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    return _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group(0)], text)


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return _UNESCAPE.sub(lambda m: _UNESCAPE_MAP.get(m.group(1), m.group(1)), text)


def encode_record(record: Record) -> str:
    """The value part of a line (after ``key=``), props sorted by name."""
    parts = [_escape(record.type)]
    for prop in sorted(record.props):
        parts.append(_escape(prop))
        parts.append(_escape(record.props[prop]))
    return "|".join(parts)


def decode_record(raw: str, legacy: bool = False) -> Record:
    """Parse the value part of a line. A dangling prop without a value gets the empty value."""
    if legacy:
        fields = [f.replace("\\n", "\n") for f in _SPLIT_LEGACY.split(raw)]
    elif "\\" not in raw:
        fields = raw.split("|")
    else:
        fields, start = [], 0
        for m in _TOKEN_V2.finditer(raw):
            if m.group() == "|":
                fields.append(_unescape(raw[start:m.start()]))
                start = m.end()
        fields.append(_unescape(raw[start:]))
    rtype, rest = fields[0], fields[1:]
    if len(rest) % 2:
        rest.append("")
    return Record(rtype, dict(zip(rest[0::2], rest[1::2])))


def parse_text(text: str) -> tuple[dict[str, str], bool]:
    """Index a database file: ``{key: raw value}`` and whether the file is in the legacy dialect.

    Values are decoded lazily (:func:`decode_record`) so that reading one prop of a 10,000-key
    database costs one split of the file, not 10,000 record parses.
    """
    legacy = True
    raw: dict[str, str] = {}
    for line in text.split("\n"):
        if not line:
            continue
        if line[0] == "#":
            if line == FORMAT_MARK:
                legacy = False
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            continue
        raw[key] = value
    return raw, legacy


#: find_raw's answer when looking the key up would cost more than indexing the file
UNKNOWN = object()
_MAX_HITS = 64


def find_raw(text: str, key: str):
    """The raw value :func:`parse_text` would index for *key*, without indexing the whole file.

    ``config getprop`` reads one key: searching for it is ~100 times cheaper than splitting 10,000
    lines. Every occurrence of *key* is checked for being a line's key (what is left of the line's
    first ``=``, stripped; comment lines skipped; the last such line wins, as in the index). Returns
    None when no line holds *key*, or :data:`UNKNOWN` when the key is odd or too common a string for
    the search to be the cheaper way: then index the file.
    """
    if not key or key[0] == "#" or "=" in key or "\n" in key or key != key.strip():
        return UNKNOWN
    found = None
    hits = 0
    i = text.find(key)
    while i != -1:
        hits += 1
        if hits > _MAX_HITS:
            return UNKNOWN
        start = text.rfind("\n", 0, i) + 1
        end = text.find("\n", i)
        end = len(text) if end == -1 else end
        eq = text.find("=", i + len(key), end)
        if (eq != -1 and text[start] != "#" and (start == i or text[start:i].isspace())
                and (eq == i + len(key) or text[i + len(key):eq].isspace())):
            found = text[eq + 1:end]
        i = text.find(key, i + 1)
    return found


def is_legacy(text: str) -> bool:
    """Whether *text* is in the legacy (NethServer) dialect: no line is :data:`FORMAT_MARK`."""
    at = text.find(FORMAT_MARK)
    while at != -1:
        end = at + len(FORMAT_MARK)
        if (at == 0 or text[at - 1] == "\n") and text[end:end + 1] in ("\n", ""):
            return False
        at = text.find(FORMAT_MARK, at + 1)
    return True


def render_text(raw: dict[str, str]) -> str:
    """The whole file for an index of encoded values, keys sorted, with the header."""
    lines = [HEADER.format(updated=time.strftime("%a %b %d %H:%M:%S %Y"))]
    lines.extend(f"{key}={raw[key]}\n" for key in sorted(raw))
    return "".join(lines)
