"""The notifier's defaults are written once (realtime/settings.py) and the schema declares the same."""
from __future__ import annotations

from hotsync_events.configdb import open_db
from hotsync_events.configdb.schema import parse_spec
from hotsync_events.paths import data_dir
from hotsync_events.realtime.debounce import Trigger
from hotsync_events.realtime.settings import PROPS, RealtimeSettings


def test_the_schema_declares_the_settings_defaults():
    specs = {ps.prop: ps for ks in parse_spec(data_dir("db") / "configuration.spec", "core") if ks.key == "hotsync"
             for ps in ks.props.values()}
    d = RealtimeSettings()
    for field, (prop, unit) in PROPS.items():
        value = getattr(d, field)
        want = "enabled" if value is True else str(round(value * 1000) if unit == "ms" else value)
        assert specs[prop].default == want, (prop, specs[prop].default, want)


def test_the_debouncer_and_the_settings_agree_when_nothing_is_configured(tmp_path):
    db = open_db("configuration", tmp_path)
    rt = RealtimeSettings.from_db(db)
    t = Trigger()
    assert (t.settle, t.max_batch, t.retry_min, t.retry_max) == (rt.settle, rt.max_batch, rt.retry_min, rt.retry_max)
    db.setprop("hotsync", {"RealtimeSettle": "250"})
    assert RealtimeSettings.from_db(db).settle == 0.25
    raw = open_db("configuration", tmp_path, validate=False)
    raw.setprop("hotsync", {"RealtimeSettle": "99999", "RealtimeMaxBatch": "5"})   # written past the schema
    assert (RealtimeSettings.from_db(raw).settle, RealtimeSettings.from_db(raw).max_batch) == (10.0, 10)


def test_list_pushes_leave_delay_updates_to_the_full_sync():
    """The notifier's pushes land file by file (each still renamed into place whole); the full sync keeps
    --delay-updates, so a whole-tree push lands as a whole."""
    from hotsync_events.realtime.pusher import LIST_OPTIONS, list_push_args
    from hotsync_events.sync.rsync import push_args

    full = push_args(sources=["/r/./srv"], exclude_file="/r/ex", password_file="/r/pw", timeout=20)
    listed = list_push_args(full)
    assert "--delay-updates" in full and "--delay-updates" not in listed
    assert listed[listed.index("--"):] == full[full.index("--"):]
    assert [o for o in listed if o in LIST_OPTIONS] == list(LIST_OPTIONS)
    assert {o for o in full if o != "--delay-updates"} <= set(listed)
