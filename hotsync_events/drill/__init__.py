"""``hotsync drill``: the slave proves, on demand or on a schedule, that it can take over.

* :mod:`.run` -- :func:`run_drill`: checks, then the drill in private mount, pid and network namespaces.
* :mod:`.inner` -- what runs inside (``python -m hotsync_events.drill.inner``): the overlay, the promote,
  the checks, the report.
* :mod:`.boot` -- a booted drill's host: systemd as PID 1 of its namespaces on the overlay (a real host).
* :mod:`.booted` -- a booted drill's two halves: boot and run the drill inside; inside, the promote and
  the default target (the reboot a real promote ends with).
* :mod:`.checks` -- the health checks: the core's and the plugins' (hook ``hotsync_health_checks``).
* :mod:`.record` -- the record in the slave's status, and the failure and recovery mail.
"""
from __future__ import annotations

from hotsync_events.drill.run import (DRILL_DIR, EXIT_CANNOT, EXIT_FAILED, EXIT_PASSED, DrillError, due,
                                      run_drill, stop_kept)

__all__ = ["DRILL_DIR", "DrillError", "EXIT_CANNOT", "EXIT_FAILED", "EXIT_PASSED", "due", "run_drill", "stop_kept"]
