"""The database kit: dump an application's database consistently before each push, restore it at promote.

Public API for plugin authors (the built-in plugins use nothing else)::

    from hotsync_events.dbkit import DUMP_DIR, MariaDB, mariadb_dump, sqlite_dump

    @hookimpl
    def hotsync_dumps(db, root):
        yield mariadb_dump("myapp", f"{DUMP_DIR}/myapp.sql", MariaDB(root, socket="/run/myapp/db.sock"),
                           databases=("myapp",))
        yield sqlite_dump("myapp-cache", "/var/lib/myapp/cache.sqlite")

* :class:`Engine` -- the contract of an engine (ping, dump, restore, ensure_running, with_root, label);
  :class:`MariaDB`, :class:`Postgres` and :class:`SQLite` implement it, and :func:`engine_dump` makes a
  :class:`~hotsync_events.types.Dump` of any engine that does.
* :func:`mariadb_dump`, :func:`postgres_dump`, :func:`sqlite_dump` -- the Dump of one server or file.
* :class:`HostServer` -- the hooks of a plugin for a host's main database server, in one declaration.
* :class:`Staged`, :func:`work_dir`, :func:`run_tool`, :class:`DatabaseError` -- for an engine of your own.
* :class:`MariaDBReplication`, :class:`PostgresReplication` -- streaming replication of a server
  (:mod:`hotsync_events.dbkit.replica`: the ``ReplicationEngine`` protocol, ``Link``, results); a plugin
  declares one with the hook ``hotsync_replicas`` (a :class:`~hotsync_events.types.Replica`), as
  :class:`HostServer` does for ``DatabaseMode replica``; :func:`replica_link` builds its channel from the
  configuration database. See docs/replication.md.

Every dump file is self-contained (data, users or roles, and a manifest of tables and row counts), written
through a temp file and renamed only once checked; a restore checks the row counts against the manifest.
The engines load lazily: ``import hotsync_events.dbkit`` starts no client and imports no engine module.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hotsync_events.dbkit.engine import Engine
from hotsync_events.dbkit.kit import (DUMP_DIR, REPLICATION_DIR, DatabaseError, HostServer, Staged, database_mode,
                                      databases_enabled, engine_dump, mariadb_dump, postgres_dump, replica_link, root_of,
                                      run_tool, work_dir)

if TYPE_CHECKING:
    from hotsync_events.dbkit.mariadb import MariaDB
    from hotsync_events.dbkit.pgsql import Postgres
    from hotsync_events.dbkit.replica_mariadb import MariaDBReplication
    from hotsync_events.dbkit.replica_pgsql import PostgresReplication
    from hotsync_events.dbkit.sqlite import SQLite, sqlite_dump

__all__ = ["DUMP_DIR", "REPLICATION_DIR", "DatabaseError", "Engine", "HostServer", "MariaDB", "MariaDBReplication",
           "Postgres", "PostgresReplication", "SQLite", "Staged", "database_mode", "databases_enabled", "engine_dump",
           "mariadb_dump", "postgres_dump", "replica_link", "root_of", "run_tool", "sqlite_dump", "work_dir"]

_LAZY = {"MariaDB": "mariadb", "Postgres": "pgsql", "SQLite": "sqlite", "sqlite_dump": "sqlite",
         "MariaDBReplication": "replica_mariadb", "PostgresReplication": "replica_pgsql"}


def __getattr__(attr: str) -> Any:   # PEP 562: an engine's module is imported when it is first asked for
    if attr in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"hotsync_events.dbkit.{_LAZY[attr]}"), attr)
        globals()[attr] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
