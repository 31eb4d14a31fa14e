"""``hotsync-promote``: the slave takes over, verified, fenced, resumable.

* :mod:`.verify` -- :func:`assess`: what the slave holds (an :class:`Assessment`) and why a promote would be refused (its :class:`Refusal` list).
* :mod:`.run` -- :class:`Promote`: the phases, in order, each journaled.
* :mod:`.config` -- the master's configuration copy becomes this host's, host-local values kept.
* :mod:`.steps` -- the plugins' promote steps.
* :mod:`.journal` -- what is done, so that a killed promote resumes.
"""
from __future__ import annotations

from hotsync_events.promote.config import HOST_LOCAL_DBS, HOST_LOCAL_KEYS, host_local, merge_records, restore_config
from hotsync_events.promote.journal import read_journal
from hotsync_events.promote.run import (EXIT_CANNOT, EXIT_CRITICAL, EXIT_OK, EXIT_REFUSED, EXIT_STEPS_FAILED,
                                        MANUAL_STEPS, PHASES, Promote)
from hotsync_events.promote.verify import Assessment, Refusal, assess, plan_lines

__all__ = ["Assessment", "EXIT_CANNOT", "EXIT_CRITICAL", "EXIT_OK", "EXIT_REFUSED", "EXIT_STEPS_FAILED", "HOST_LOCAL_DBS",
           "HOST_LOCAL_KEYS", "MANUAL_STEPS", "PHASES", "Promote", "Refusal", "assess", "host_local", "merge_records", "plan_lines",
           "read_journal", "restore_config"]
