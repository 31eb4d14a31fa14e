"""rsync exclude patterns applied to host paths, in Python: what the notifier leaves unpushed, and what the
sync's record of the slave's names leaves out (:mod:`hotsync_events.sync.inventory`). rsync itself still
applies the real filter; a difference costs a push or a dry run, never a file."""
from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["ExcludeMatcher"]


def _glob_to_regex(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j].replace("\\", "\\\\")
                out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class ExcludeMatcher:
    """rsync exclude patterns applied to host paths, so that excluded files never trigger a push.

    Follows rsync's rules closely enough for a trigger (rsync itself still applies the real filter):
    a leading ``/`` anchors at the root of the transfer (``/`` of the host); a pattern with another
    ``/`` or ``**`` matches a trailing part of the path at a ``/`` boundary; a bare name matches any
    path component; ``*`` and ``?`` stop at ``/``, ``**`` does not; a trailing ``/`` matches
    directories only (and what is inside them). ``- `` prefixes are accepted, ``+ `` rules ignored.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        plain: list[str] = []
        dir_only_rx: list[str] = []
        self._anchored: list[str] = []    # the literal start of each anchored pattern (up to a wildcard)
        self._floating = False            # a pattern with a "/" that may match at any depth
        for raw in patterns:
            pat = raw.strip()
            if not pat or pat.startswith(("#", ";", "+ ")):
                continue
            if pat.startswith("- "):
                pat = pat[2:].strip()
            dir_only = pat.endswith("/") and len(pat) > 1
            pat = pat.rstrip("/") or "/"
            if pat.startswith("/"):
                rx = _glob_to_regex(pat)
                self._anchored.append(re.split(r"[*?\[]", pat, maxsplit=1)[0])
            elif "/" in pat or "**" in pat:
                rx = "(?:.*/)?" + _glob_to_regex(pat)
                self._floating = True
            else:
                rx = ".*/" + _glob_to_regex(pat)
            (dir_only_rx if dir_only else plain).append(rx)
        # an excluded directory also excludes everything below it
        self._plain = re.compile("(?:" + "|".join(plain) + ")(?:/.*)?") if plain else None
        self._dir = re.compile("(?:" + "|".join(dir_only_rx) + ")") if dir_only_rx else None
        self._dir_below = re.compile("(?:" + "|".join(dir_only_rx) + ")/.*") if dir_only_rx else None
        self.empty = not plain and not dir_only_rx

    def depends_on(self, *dirs: str) -> bool:
        """Whether a pattern names a path inside one of *dirs* (or may, at any depth): renaming such a
        directory changes what is excluded below it."""
        if self._floating:
            return True
        return any(a.startswith(d.rstrip("/") + "/") for a in self._anchored for d in dirs)

    def excluded(self, host_path: str, is_dir: bool = False) -> bool:
        if self.empty:
            return False
        if self._plain is not None and self._plain.fullmatch(host_path):
            return True
        if self._dir is None or self._dir_below is None:     # both or neither (no directory-only pattern)
            return False
        return bool(self._dir_below.fullmatch(host_path) or (is_dir and self._dir.fullmatch(host_path)))
