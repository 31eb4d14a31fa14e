"""The sync's settings, read once per run from the ``configuration`` database (keys hotsync, rsyncd).

The notifier's own (``hotsync realtime``, ``RealtimeSettle``...) are :mod:`hotsync_events.realtime.settings`.
"""
from __future__ import annotations

__all__ = ["Settings"]

#: the fields, in order (a plain class, not a dataclass: the slave's pre-xfer hook reads these for every
#: push, and importing dataclasses costs that hook more than everything else it does)
_FIELDS = ("role", "status", "slave_host", "master_host", "port", "bwlimit", "max_delete_percent", "timeout",
           "interval", "mail_to", "smarthost", "databases", "password", "rsyncd_port")


def _int(value, default: int) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def _props(db, key: str) -> dict:
    """The props of record *key* ({} when the database has no such record)."""
    return db.props(key) if key in db else {}


class Settings:
    """The sync's settings (read-only once made)."""

    __slots__ = _FIELDS
    role: str
    status: str
    slave_host: str
    master_host: str
    port: int
    bwlimit: int
    max_delete_percent: int
    timeout: int
    interval: int
    mail_to: str
    smarthost: str
    databases: str
    password: str
    rsyncd_port: int

    def __init__(self, **values) -> None:
        missing = set(_FIELDS) - set(values)
        extra = set(values) - set(_FIELDS)
        if missing or extra:
            raise TypeError(f"Settings: missing {sorted(missing)}, unknown {sorted(extra)}")
        for name in _FIELDS:
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name, value) -> None:
        raise AttributeError(f"Settings are read-only ({name})")

    def __delattr__(self, name) -> None:
        raise AttributeError(f"Settings are read-only ({name})")

    def __reduce__(self):            # copy and pickle: made again from the values
        return _rebuild, ({f: getattr(self, f) for f in _FIELDS},)

    def __eq__(self, other) -> bool:
        return type(other) is Settings and all(getattr(self, f) == getattr(other, f) for f in _FIELDS)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, f) for f in _FIELDS))

    def __repr__(self) -> str:
        shown = ", ".join(f"{f}={getattr(self, f)!r}" for f in _FIELDS if f != "password")
        return f"Settings({shown}, password=...)"

    @classmethod
    def from_db(cls, db) -> Settings:
        h, r = _props(db, "hotsync"), _props(db, "rsyncd")
        role = h.get("role", "")
        return cls(role="master" if role == "server" else role, status=h.get("status", "enabled") or "enabled",
                   slave_host=h.get("SlaveHost", ""), master_host=h.get("MasterHost", ""),
                   port=_int(h.get("port"), 273), bwlimit=_int(h.get("bwlimit"), 0),
                   max_delete_percent=_int(h.get("MaxDeletePercent"), 20), timeout=_int(h.get("timeout"), 300),
                   interval=max(_int(h.get("interval"), 15), 1), mail_to=h.get("MailTo", "root@localhost"),
                   smarthost=h.get("SmartHost", "localhost:25"), databases=h.get("databases", "enabled"),
                   password=r.get("password", ""), rsyncd_port=_int(r.get("TCPPort"), 873))

    @property
    def enabled(self) -> bool:
        # a fenced master stays stopped until it is configured as a slave (the re-pair)
        return self.status != "disabled" and (self.status != "fenced" or self.role == "slave")

    def master_problem(self) -> str | None:
        """Why this host cannot push now, in a sysadmin's words, or None."""
        if self.role != "master":
            return (f"this host is not a master (hotsync role={self.role or 'unset'}); "
                    "set it with: config setprop hotsync role master SlaveHost <slave address>")
        if self.status == "fenced":
            return ("this master was FENCED: its slave was promoted to master (see hotsync status); re-pair this "
                    "host as the new slave: config setprop hotsync role slave MasterHost <new master>; "
                    "signal-event nethserver-hotsync-save")
        if not self.enabled:
            return "hotsync is disabled on this host (config setprop hotsync status enabled to push again)"
        if not self.slave_host:
            return "no slave configured: config setprop hotsync SlaveHost <slave address>"
        if not self.password:
            return "no push password: config setprop rsyncd password <the slave's password>"
        return None

    def slave_problem(self) -> str | None:
        if self.role != "slave":
            return f"this host is not a slave (hotsync role={self.role or 'unset'})"
        if not self.enabled:
            return "hotsync is disabled on this slave"
        if not self.master_host:
            return "no master configured: config setprop hotsync MasterHost <master address>"
        if not self.password:
            return "no push password: config setprop rsyncd password <secret>"
        return None


def _rebuild(values: dict) -> Settings:
    return Settings(**values)
