"""The plugins' promote steps (hook ``hotsync_promote_steps``): collected, checked, ordered, run.

``hotsync-promote`` (and ``--dry-run``, and the plugin authors' test kit) use this one module, so the
order a plan shows is the order a promote runs: ``(priority, name)``, never pluggy's call order. Only
active plugins contribute (see ``hotsync_detect``). Two plugins giving a step the same name is an error
naming both. Running: each step gets an :class:`~hotsync_events.types.ActionContext` with event
``promote``; a failed step is recorded and the next one runs, unless the failed step is critical.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hotsync_events.manager import RegistrationError
from hotsync_events.types import ActionContext, PromoteStep, run_failure

__all__ = ["PROMOTE_EVENT", "PromoteStepError", "StepOutcome", "collect_promote_steps", "run_promote_step",
           "run_promote_steps"]

PROMOTE_EVENT = "promote"


#: two plugins gave one step name (the manager's one registration error, under the name callers know)
PromoteStepError = RegistrationError


@dataclass(frozen=True)
class StepOutcome:
    name: str
    plugin: str
    status: str            # success | failed | skipped
    duration: float = 0.0
    error: str = ""


def collect_promote_steps(pm: Any, db: Any, root: Any = None) -> list[tuple[str, PromoteStep]]:
    """``[(plugin, PromoteStep)]`` in run order; a clash is a :class:`PromoteStepError` naming both plugins."""
    return pm.registered("hotsync_promote_steps", PromoteStep, root=root, db=db, what="promote step")


def run_promote_step(plugin: str, step: PromoteStep, pm: Any, root: Any, db: Any, *,
                     log: Callable[[str], None] = print, control: Callable[[str, str], str] | None = None
                     ) -> StepOutcome:
    """Run one step and log its outcome; it fails as any ``run`` does (:func:`~hotsync_events.types.run_failure`).

    ``ctx.service(name, verb)`` starts or reloads a plugin's service on this host (*control*: the host's
    back-end by default)."""
    if control is None:
        from hotsync_events.events.services import service_control

        control = service_control(root, pm, db)
    ctx = ActionContext(event=PROMOTE_EVENT, args=(), root=root, db=db, pm=pm, log=log, control=control)
    t0 = time.monotonic()
    try:
        error = run_failure(step.run(ctx)) or ""
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    log(f"promote step {step.name} (plugin {plugin}): {'FAILED: ' + error if error else 'SUCCESS'}")
    return StepOutcome(step.name, plugin, "failed" if error else "success", time.monotonic() - t0, error)


def run_promote_steps(pm: Any, root: Any, db: Any, *, log: Callable[[str], None] = print,
                      control: Callable[[str, str], str] | None = None) -> list[StepOutcome]:
    """Run every step in order; returns one outcome per step (later ones ``skipped`` after a critical failure)."""
    if control is None:
        from hotsync_events.events.services import service_control

        control = service_control(root, pm, db)
    outcomes: list[StepOutcome] = []
    stop = ""
    for plugin, step in collect_promote_steps(pm, db, root):
        if stop:
            outcomes.append(StepOutcome(step.name, plugin, "skipped", error=f"critical step {stop} failed"))
            continue
        outcome = run_promote_step(plugin, step, pm, root, db, log=log, control=control)
        outcomes.append(outcome)
        if outcome.error and step.critical:
            stop = step.name
    return outcomes
