"""hotsync-testplugin: what a third-party plugin looks like.

Registered in ``setup.py`` as ``entry_points={"hotsync": ["testplugin = hotsync_testplugin"]}``. It gives
the event ``testplugin-probe`` an action (priority 30) and the file ``/etc/testplugin.conf``, rendered
from a fragment in the plugin's own template directory, and the service ``testplugin-daemon`` (restarted
when that file changes; stopped when the config key ``testplugin`` has ``status disabled``).
"""
import sys
from pathlib import Path

from hotsync_events import hookimpl
from hotsync_events.types import Action, HealthCheck, Service, Template

EVENT = "testplugin-probe"
TEMPLATES = Path(__file__).resolve().parent / "templates"


def _hello(ctx):
    """Append a line to <root>/var/lib/testplugin/calls, so a test sees the action ran, with what."""
    out = ctx.root.join("/var/lib/testplugin/calls")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", encoding="utf-8") as fh:
        fh.write(" ".join([ctx.event, *ctx.args]) + "\n")
    ctx.log(f"testplugin: hello from {ctx.event}")


@hookimpl
def hotsync_actions(db):
    return [Action(event=EVENT, name="testplugin-hello", priority=30, run=_hello)]


@hookimpl
def hotsync_template_dirs():
    return [TEMPLATES]


@hookimpl
def hotsync_templates(db):
    return [Template("/etc/testplugin.conf", events=(EVENT,), mode=0o640, services=("testplugin-daemon",))]


@hookimpl
def hotsync_services(db):
    return [Service(name="testplugin-daemon", unit="testplugin.service",
                    command=(sys.executable, "-m", "hotsync_testplugin.daemon", "{root}"),
                    events={EVENT: "start"}, enabled=db.getprop("testplugin", "status", "enabled") == "enabled")]


def _hang(ctx):
    """A health check that never answers (the drill's timeout test)."""
    import time

    time.sleep(3600)


@hookimpl
def hotsync_health_checks(root):
    """With ``/etc/testplugin-hang`` on the host, a check that hangs (``hotsync drill`` kills it at its timeout)."""
    if root.join("/etc/testplugin-hang").exists():
        yield HealthCheck("testplugin-hang", _hang, timeout=2)
