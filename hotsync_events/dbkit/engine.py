"""The contract of a database engine: what the kit's :func:`~hotsync_events.dbkit.engine_dump` needs.

MariaDB (:class:`~hotsync_events.dbkit.MariaDB`), PostgreSQL (:class:`~hotsync_events.dbkit.Postgres`) and
SQLite (:class:`~hotsync_events.dbkit.SQLite`) implement it; an engine of your own that does is dumped,
shipped and restored the same way (``engine_dump("mydb", path, MyEngine(root, ...))``).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from hotsync_events.paths import Root

__all__ = ["Engine"]


@runtime_checkable
class Engine(Protocol):
    """One database server (or file) on one host, reached under its root.

    Every method raises :class:`~hotsync_events.dbkit.DatabaseError` naming the server (:attr:`label`)
    and the cause; none of them returns a failure.
    """

    @property
    def root(self) -> Root:
        """The host's root the server is reached under (read-only: :meth:`with_root` gives another's)."""

    @property
    def label(self) -> str:
        """The server in words, for messages: ``MariaDB at /run/mysqld/mysqld.sock``."""

    def with_root(self, root: Root) -> Engine:
        """The same server on the host *root* (the dump runs on the master, the restore on the slave)."""

    def ping(self) -> None:
        """Connect once; DatabaseError when the server cannot be reached."""

    def dump(self, target: Path, databases: Sequence[str] | None = None, *,
             log: Callable[[str], None] = print) -> Path:
        """Write a consistent, self-checked dump of *databases* (None: all) to *target*; return *target*.

        The dump holds a manifest of what it holds (tables and row counts) so that a restore can check
        itself; a dump that cannot be checked complete raises, and *target* is left as it was."""

    def restore(self, source: Path, *, log: Callable[[str], None] = print) -> None:
        """Load the dump *source* into this server (started first if it is down) and check the row counts
        against the dump's manifest."""

    def ensure_running(self, *, log: Callable[[str], None] = print, wait: float = 60) -> None:
        """Make sure the server answers: start it if it is down (systemd on the real root, else a process
        under the root), waiting at most *wait* seconds."""
