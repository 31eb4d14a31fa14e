"""The package's systemd units (debian/units) and how the save event uses them on a systemd host.

The booted-host tests (tests/test_booted_pair.py) run them under a real systemd; these check the unit files
themselves and the choices the plugin and the systemd back-end make, with systemctl faked.
"""
from __future__ import annotations

import configparser
import os
from pathlib import Path

import pytest

import hotsync_plugins.hotsync as hs
from hotsync_events.configdb import open_db
from hotsync_events.events.services import ServiceManager, SystemdBackend
from hotsync_events.paths import Root
from hotsync_events.sync.units import unit_lines
from hotsync_events.types import Service

UNITS = Path(__file__).resolve().parent.parent / "debian" / "units"


def unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str   # type: ignore[assignment,method-assign]
    cp.read(UNITS / name)
    return cp


@pytest.mark.parametrize("name", ["hotsync-stunnel.service", "hotsync-watch.service", "hotsync-sync.service",
                                  "hotsync-replica-guard.service"])
def test_each_service_is_hardened_and_has_its_runtime_directory(name):
    s = unit(name)["Service"]
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectKernelTunables", "ProtectKernelModules",
                "ProtectControlGroups", "RestrictNamespaces", "LockPersonality", "SystemCallArchitectures",
                "SystemCallFilter", "CapabilityBoundingSet", "RestrictAddressFamilies"):
        assert key in s, (name, key)
    assert "CAP_SYS_ADMIN" not in s["CapabilityBoundingSet"] and "CAP_SYS_MODULE" not in s["CapabilityBoundingSet"]
    # /run is a tmpfs: after a boot nothing else makes /run/hotsync (the slave's rsync needs its lock file there)
    assert s["RuntimeDirectory"] == "hotsync" and s["RuntimeDirectoryPreserve"] == "yes"


def test_the_daemons_restart_on_failure_and_the_writer_of_the_replica_may_write_everywhere():
    assert unit("hotsync-stunnel.service")["Service"]["Restart"] == "on-failure"
    assert unit("hotsync-watch.service")["Service"]["Restart"] == "on-failure"
    assert "ProtectSystem" not in unit("hotsync-stunnel.service")["Service"]      # the slave writes all over /
    assert unit("hotsync-watch.service")["Service"]["ProtectSystem"] == "full"     # the master reads
    # the notifier's last push at a clean stop fits in the stop timeout, and runs under the main process
    from hotsync_events.realtime.settings import DEFAULTS

    watch = unit("hotsync-watch.service")["Service"]
    assert DEFAULTS.stop_push < float(watch["TimeoutStopSec"]) and watch["KillMode"] == "mixed"
    assert unit("hotsync-sync.timer")["Timer"]["Unit"] == "hotsync-sync.service"


@pytest.mark.parametrize("interval,when", [(15, "*-*-* *:00/15:00"), (1, "*-*-* *:00/1:00"),
                                           (120, "*-*-* 00/2:05:00"), (1440, "*-*-* 01:05:00")])
def test_the_timer_runs_when_the_cron_line_would(tmp_path, interval, when):
    db = open_db("configuration", Root(tmp_path))
    db.set("hotsync", "configuration", {"interval": str(interval)})
    assert hs.timer_values(db)["when"] == when


def _services(monkeypatch, tmp_path, installed: set[str], role: str = "master") -> dict[str, Service]:
    monkeypatch.setenv("HOTSYNC_SERVICE_BACKEND", "systemd")
    monkeypatch.setattr(hs, "installed_unit", lambda name: name if name in installed else None)
    db = open_db("configuration", Root(tmp_path))
    db.set("hotsync", "configuration", {"role": role, "SlaveHost": "192.0.2.2", "MasterHost": "192.0.2.1"})
    db.set("rsyncd", "service", {"password": "Unit-test-1"})
    return {s.name: s for s in hs.hotsync_services(db)}


def test_under_systemd_the_save_event_uses_the_packaged_units(monkeypatch, tmp_path):
    svc = _services(monkeypatch, tmp_path, {"hotsync-stunnel.service", "hotsync-watch.service", "hotsync-sync.timer",
                                             "rsync.service"})
    assert svc["hotsync-stunnel"].unit == "hotsync-stunnel.service"
    assert svc["hotsync-watch"].unit == "hotsync-watch.service" and svc["hotsync-watch"].enabled
    assert svc["hotsync-sync"].unit == "hotsync-sync.timer" and svc["hotsync-sync"].enabled
    # Debian's rsync daemon would serve HotSync's rsyncd.conf without TLS: kept stopped and disabled
    assert svc["debian-rsync"].unit == "rsync.service" and not svc["debian-rsync"].enabled
    assert hs.SCHEDULER not in svc


def test_without_the_package_the_commands_run_with_the_process_backend(monkeypatch, tmp_path):
    svc = _services(monkeypatch, tmp_path, set())
    assert svc["hotsync-stunnel"].unit is None and svc["hotsync-stunnel"].command
    assert svc["hotsync-watch"].unit is None and svc["hotsync-watch"].command
    assert "hotsync-sync" not in svc and "debian-rsync" not in svc


class FakeCtl(SystemdBackend):
    """systemctl answered from a dict of unit -> state; every call recorded."""

    def __init__(self, root, need_reload: bool = False) -> None:
        super().__init__(root)
        self.calls: list[tuple[str, ...]] = []
        self.active: set[str] = set()
        self.need_reload = need_reload

    def _ctl(self, *args: str) -> tuple[int, str]:
        self.calls.append(args)
        if args[0] == "show" and "NeedDaemonReload" in args:
            return 0, "yes" if self.need_reload else "no"
        if args[0] == "daemon-reload":
            self.need_reload = False
            return 0, ""
        if args[0] == "is-active":
            return (0, "active") if args[1] in self.active else (3, "inactive")
        if args[0] == "show":
            return 0, "123"
        if args[0] in ("start", "restart"):
            self.active.add(args[1])
        if args[0] == "stop":
            self.active.discard(args[1])
        return 0, ""


def test_a_changed_unit_file_is_loaded_again_before_a_start_and_a_disabled_unit_forgets_its_failure(tmp_path):
    ctl = FakeCtl(Root(tmp_path), need_reload=True)
    on = Service("hotsync-sync", unit="hotsync-sync.timer", events={"ev": "restart"})
    off = Service("debian-rsync", unit="rsync.service", enabled=False, events={"ev": "stop"})
    mgr = ServiceManager(Root(tmp_path), [on, off], backend=ctl)
    lines, failed = mgr.adjust("ev")
    assert failed == [], lines
    verbs = [c[0] for c in ctl.calls]
    assert ("daemon-reload",) in ctl.calls and verbs.index("daemon-reload") < verbs.index("start")
    assert ("disable", "rsync.service") in ctl.calls and ("reset-failed", "rsync.service") in ctl.calls


def test_status_names_a_failed_or_restarted_unit():
    lines = unit_lines([
        {"Id": "hotsync-watch.service", "ActiveState": "active", "SubState": "running", "NRestarts": "2",
         "UnitFileState": "enabled"},
        {"Id": "hotsync-stunnel.service", "ActiveState": "failed", "SubState": "failed", "Result": "exit-code",
         "NRestarts": "0", "UnitFileState": "enabled"},
        {"Id": "hotsync-sync.service", "ActiveState": "inactive", "SubState": "dead", "NRestarts": "0",
         "UnitFileState": "static"},
    ])
    assert lines == ["unit:              hotsync-watch.service: active (running), enabled, restarted 2 time(s) after a "
                     "failure",
                     "unit:              hotsync-stunnel.service: FAILED (exit-code), enabled"]
    from hotsync_events.sync.health import assess

    info = {"role": "master", "status": "enabled", "root_exists": True, "last_success": {"end": 0},
            "units": [{"Id": "hotsync-stunnel.service", "ActiveState": "failed", "Result": "signal"}]}
    h = assess(info, now=1.0)
    assert h["state"] == "warning" and any("hotsync-stunnel.service failed (signal)" in r for r in h["reasons"])


def test_no_units_outside_a_systemd_root(tmp_path):
    from hotsync_events.sync.units import unit_states

    assert unit_states(Root(tmp_path)) is None
    assert os.path.isdir(UNITS)
