"""The drill's health checks: the core's own and the plugins' (hook ``hotsync_health_checks``), each run in
a child process with its timeout.

The core's checks (named ``core-...``) look at what the promote left on the overlay:

* ``core-dumps-restored``: every dump a plugin gives was shipped and restored (the restore checks the row
  counts against the dump's manifest); a dump missing from the copy fails it, naming the dump.
* ``core-config-db``: the configuration database (the master's, applied by the promote) parses and passes
  this host's schema, and says ``role master``.
* ``core-services-up``: every enabled service that the save event starts is running.
"""
from __future__ import annotations

import json
import os
import select
import signal
import time
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

from hotsync_events.types import ActionContext, HealthCheck, run_failure

__all__ = ["CheckOutcome", "DRILL_EVENT", "collect_checks", "core_checks", "run_check", "run_checks"]

DRILL_EVENT = "drill"
SAVE_EVENT = "nethserver-hotsync-save"


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    plugin: str
    status: str            # passed | failed | timeout
    duration: float
    detail: str = ""

    def as_json(self) -> dict:
        return {"name": self.name, "plugin": self.plugin, "status": self.status,
                "time": round(self.duration, 3), "detail": self.detail}


# ------------------------------------------------------------------------------------------ the core's
def _dumps_restored(journal: dict, planned: list[dict]) -> Callable[[ActionContext], Any]:
    def run(ctx: ActionContext) -> Any:
        dbs = journal.get("dbs") or {}
        bad = []
        if "*" in dbs:
            bad.append(f"the dumps could not be listed: {dbs['*']}")
        for d in planned:
            status = dbs.get(d["name"])
            if not d["shipped"] or status == "not shipped":
                bad.append(f"dump {d['name']} (plugin {d['plugin']}) is MISSING from the copy ({d['path']})")
            elif status is None:
                bad.append(f"dump {d['name']} (plugin {d['plugin']}) was not restored")
            elif str(status).startswith("failed"):
                bad.append(f"dump {d['name']} (plugin {d['plugin']}) did not restore: {status[8:]}")
        named = {d["name"] for d in planned}
        for name, status in sorted(dbs.items()):      # dumps of the master's configuration, applied by the promote
            if name not in named and name != "*" and status == "not shipped":
                bad.append(f"dump {name} is MISSING from the copy")
            elif name not in named and name != "*" and str(status).startswith("failed"):
                bad.append(f"dump {name} did not restore: {status[8:]}")
        if bad:
            return "; ".join(bad)
        ctx.log(f"{len(planned)} dumps restored, row counts checked" if planned else "no dump to restore")
        return None
    return run


def _config_db(ctx: ActionContext) -> Any:
    from hotsync_events.configdb import ConfigDB
    from hotsync_events.configdb.schema import validator_for

    db = ConfigDB(ctx.db.path, name="configuration")
    check = validator_for(ctx.root)
    problems = []
    n = 0
    for key, rec in db.records():
        n += 1
        try:
            check("configuration", key, None, rec)
        except Exception as exc:        # the schema's own words, naming key and prop
            problems.append(str(exc))
    if problems:
        return "the configuration database does not pass the schema: " + "; ".join(problems[:5])
    role = db.getprop("hotsync", "role")
    if role != "master":
        return f"after the promote the configuration says hotsync role {role or 'unset'}, not master"
    ctx.log(f"configuration database: {n} records pass the schema, role master")
    return None


def _services_up(ctx: ActionContext) -> Any:
    from hotsync_events.events.services import ServiceManager, collect_services

    services = collect_services(ctx.pm, ctx.db, ctx.root)
    mgr = ServiceManager(ctx.root, services)      # the host's back-end: systemd when the drill booted
    down: list[str] = []
    up: list[str] = []
    for plugin, svc in services:
        if not svc.enabled or svc.events.get(SAVE_EVENT) not in ("start", "restart", "reload"):
            continue
        st = mgr.status(svc.name)
        (up if st.running else down).append(f"{svc.name} ({plugin or 'core'}): {st.detail}")
    if down:
        return "services not running: " + "; ".join(down)
    ctx.log("services up: " + (", ".join(s.split(" ", 1)[0] for s in up) or "none to start"))
    return None


def core_checks(journal: dict, planned: list[dict]) -> list[tuple[str, HealthCheck]]:
    return [("core", HealthCheck("core-config-db", _config_db, timeout=60, priority=10)),
            ("core", HealthCheck("core-dumps-restored", _dumps_restored(journal, planned), timeout=10, priority=20)),
            ("core", HealthCheck("core-services-up", _services_up, timeout=30, priority=30))]


def collect_checks(pm: Any, db: Any, root: Any, journal: dict, planned: list[dict]) -> list[tuple[str, HealthCheck]]:
    """The core's checks, then the active plugins' (each list in ``(priority, name)`` order); a clash of
    names is a :class:`~hotsync_events.manager.RegistrationError` naming both plugins."""
    theirs = pm.registered("hotsync_health_checks", HealthCheck, root=root, db=db, what="health check")
    core = core_checks(journal, planned)
    names = {c.name for _, c in core}
    for plugin, check in theirs:
        if check.name in names:
            from hotsync_events.manager import RegistrationError

            raise RegistrationError(f"plugin {plugin} gives the health check {check.name!r}, a name of the core's "
                                    "(hotsync_health_checks); rename it", hook="hotsync_health_checks",
                                    plugins=(plugin,))
    return core + theirs


# ------------------------------------------------------------------------------------------- running
def run_check(plugin: str, check: HealthCheck, ctx: ActionContext) -> CheckOutcome:
    """Run *check* in a forked child, killed after its timeout; its log lines become the detail."""
    r, w = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:     # pragma: no cover - the child
        os.close(r)
        lines: list[str] = []
        code = 0
        try:
            os.setpgid(0, 0)
            c = ActionContext(event=ctx.event, args=ctx.args, root=ctx.root, db=ctx.db, pm=ctx.pm,
                              log=lines.append, control=ctx.control)
            error = run_failure(check.run(c)) or ""
            if error.startswith("returned '") and error.endswith("'"):
                error = error[10:-1]
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            code = 1
        try:
            os.write(w, json.dumps({"error": error, "log": lines[-20:]}).encode()[:60000])
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    deadline = t0 + check.timeout
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([r], [], [], left)
            if not ready:
                continue
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
    if timed_out:
        for target in (-pid, pid):
            try:
                os.kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    os.waitpid(pid, 0)
    took = time.monotonic() - t0
    if timed_out:
        return CheckOutcome(check.name, plugin, "timeout", took, f"no answer within its timeout of {check.timeout:g} s")
    try:
        res = json.loads(data.decode() or "{}")
    except ValueError:
        res = {"error": "the check's process died without an answer"}
    if not data:
        res = {"error": "the check's process died without an answer"}
    detail = res.get("error") or "; ".join(res.get("log") or [])
    return CheckOutcome(check.name, plugin, "failed" if res.get("error") else "passed", took, detail[:2000])


def run_checks(checks: list[tuple[str, HealthCheck]], ctx: ActionContext,
               log: Callable[[str], None] = print) -> list[CheckOutcome]:
    out = []
    for plugin, check in checks:
        res = run_check(plugin, check, ctx)
        log(f"health check {check.name} (plugin {plugin}): "
            + {"passed": "PASSED", "failed": "FAILED: ", "timeout": "TIMED OUT: "}[res.status]
            + ("" if res.status == "passed" else res.detail))
        out.append(res)
    return out
