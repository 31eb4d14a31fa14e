"""Services that write synced data (Service.writer) are kept stopped while the host is a slave."""
from __future__ import annotations

import sys

from hotsync_events import hookimpl
from hotsync_events.configdb import open_db
from hotsync_events.manager import get_plugin_manager
from hotsync_events.events.services import ServiceManager
from hotsync_events.types import ActionContext, Service

WRITER = Service("fake-writer", command=(sys.executable, "-c", "import time; time.sleep(60)"),
                 events={"some-update": "start"}, writer=True)


class FakeApp:
    @hookimpl
    def hotsync_services(self, db):
        yield WRITER


def test_the_service_step_keeps_writers_stopped_on_a_slave(root):
    normal = ServiceManager(root, [WRITER], backend="process")
    try:
        normal.adjust("some-update")
        assert normal.status("fake-writer").running
        lines, failed = ServiceManager(root, [WRITER], backend="process", passive=True).adjust("some-update")
        assert not failed and "kept stopped on a slave" in lines[0]
        assert not normal.status("fake-writer").running
        lines, _ = ServiceManager(root, [WRITER], backend="process", passive=True).adjust("some-update")
        assert "stays stopped" in lines[0] and not normal.status("fake-writer").running
    finally:
        normal.do("fake-writer", "stop")


def test_becoming_a_slave_stops_the_writers(root):
    from hotsync_plugins.hotsync import _writers

    pm = get_plugin_manager(builtins=False, entrypoints=False)
    pm.add_plugin(FakeApp(), "fakeapp")
    mgr = ServiceManager(root, [WRITER], backend="process")
    try:
        mgr.do("fake-writer", "start")
        db = open_db("configuration", root)
        db.setprop("hotsync", {"role": "slave", "MasterHost": "192.0.2.1"})
        logs = []
        assert _writers(ActionContext("nethserver-hotsync-save", (), root, db, pm, logs.append)) == 0
        assert not mgr.status("fake-writer").running
        assert any("stopped on this slave" in line for line in logs)
    finally:
        mgr.do("fake-writer", "stop")
