"""The configuration databases: e-smith style key/value files under the root.

The start-up path of ``config``/``db`` (``db``, ``format``, ``schema``, ``history``) imports nothing but
the standard library: no pluggy, Mako or watchdog. The sysadmin's verbs that explain and cross-reference
(``info``, ``refs``, ``historyview``) are loaded only by the commands that need them.

* :mod:`.db` -- :class:`ConfigDB` and :func:`open_db`: readers see whole files, writers lock and rename.
* :mod:`.format` -- the file format NethServer's Perl tools write, byte for byte.
* :mod:`.schema` -- the validation spec (``db/*.spec`` and the plugins'), defaults, value types.
* :mod:`.history` -- the append-only journal of every change.
* :mod:`.info`, :mod:`.refs`, :mod:`.historyview` -- ``config info``, references, ``config history``.
"""
from __future__ import annotations

from hotsync_events.configdb.db import Change, ConfigDB, DBError, InvalidName, MissingKey, is_db_name, open_db

__all__ = ["Change", "ConfigDB", "DBError", "InvalidName", "MissingKey", "is_db_name", "open_db"]
