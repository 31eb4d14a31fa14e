"""The notifier's settings, read from the ``hotsync`` record of the configuration database.

Every default and limit of the real-time sync is written here once: :class:`RealtimeSettings`' field
defaults are the ones the debouncer (:class:`~hotsync_events.realtime.debounce.Trigger`) and the
notifier use when nothing is configured, and the ones ``db/configuration.spec`` declares for the
sysadmin (a test holds the two equal). To make a new knob configurable: a field here (parsed in
:meth:`RealtimeSettings.from_db`), its line in the spec, and the code that uses it in this package.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PROPS", "RealtimeSettings"]

#: the configuration props behind the fields: field -> (prop, unit in the database)
PROPS = {"enabled": ("realtime", ""), "settle": ("RealtimeSettle", "ms"), "max_batch": ("RealtimeMaxBatch", ""),
         "beat": ("RealtimeHeartbeat", "")}


def _int(value, default: int, lo: int, hi: int) -> int:
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        return default
    return min(max(n, lo), hi)


@dataclass(frozen=True)
class RealtimeSettings:
    """Whether the notifier runs, how long a batch settles, how many paths one push takes, how retries back off."""

    enabled: bool = True
    settle: float = 0.05         # seconds (RealtimeSettle is in ms, 0..10000)
    max_batch: int = 100_000     # paths one incremental push takes (RealtimeMaxBatch, >= 10)
    retry_min: float = 0.5       # seconds before the first retry of a failed push
    retry_max: float = 30.0      # the longest wait between retries
    stop_push: float = 20.0      # seconds the last push at a clean stop may take (below the unit's TimeoutStopSec)
    beat: int = 20               # seconds of quiet after which the notifier tells the slave it is alive (1..600)

    @classmethod
    def from_db(cls, db) -> RealtimeSettings:
        h = db.props("hotsync") if "hotsync" in db else {}
        d = cls()
        return cls(enabled=h.get("realtime", "enabled") != "disabled",
                   settle=_int(h.get("RealtimeSettle"), round(d.settle * 1000), 0, 10_000) / 1000.0,
                   max_batch=_int(h.get("RealtimeMaxBatch"), d.max_batch, 10, 1_000_000),
                   beat=_int(h.get("RealtimeHeartbeat"), d.beat, 1, 600))


DEFAULTS = RealtimeSettings()
