"""Events: ``signal-event EVENT [ARGS...]`` runs every action attached to EVENT, in ``(priority, name)`` order.

* :mod:`.plan` -- which steps an event has: plugins' actions, executables, the implicit template and
  service steps; clashes and broken plugins.
* :mod:`.run` -- the event lock, the database preparation (schemas, defaults) and running a plan.
* :mod:`.runner` -- one step: a Python callable or an executable, with a timeout, its output captured.
* :mod:`.templates` -- Mako fragments expanded into files (``expand-template``).
* :mod:`.services` -- what the services should be after an event, and the back-ends that make it so.
"""
from __future__ import annotations

from hotsync_events.events.plan import (STANDARD_EVENTS, EventError, Plan, Step, UnknownEvent, known_events,
                                        plan_event)
from hotsync_events.events.run import (DEFAULT_TIMEOUT, EventResult, Progress, StepResult, event_lock, prepare_db,
                                           run_plan, signal_event)

__all__ = ["DEFAULT_TIMEOUT", "STANDARD_EVENTS", "EventError", "EventResult", "Plan", "Progress", "Step",
           "StepResult", "UnknownEvent", "event_lock", "known_events", "plan_event", "prepare_db", "run_plan",
           "signal_event"]
