"""Moved: the database kit is the public :mod:`hotsync_events.dbkit` (``from hotsync_events.dbkit import ...``).

Kept so that plugins written against the old private path still load.
"""
from hotsync_events.dbkit import *  # noqa: F403
from hotsync_events.dbkit import MariaDB, Postgres  # noqa: F401
