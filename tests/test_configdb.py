"""The database API: a stateful model test against a dict, transactions, schema, defaults, secrets, history."""
from __future__ import annotations

import json

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from hotsync_events.configdb import historyview
from hotsync_events.configdb import schema
from hotsync_events.configdb import ConfigDB, InvalidName, MissingKey, open_db
from hotsync_events.configdb.format import Record

KEYS = st.sampled_from(["a", "b", "hotsync-x", "k.1", "ü"])
PROPS = st.sampled_from(["p", "q", "r|s", "t=u", " v ", "#w", "\\"])
VALUES = st.one_of(st.sampled_from(["", " ", "x|y", "a\nb", "\\", "\\n", "#", "= =", "\r"]), st.text(max_size=5))
PROPMAP = st.dictionaries(PROPS, VALUES, max_size=3)


class DatabaseModel(RuleBasedStateMachine):
    """Every operation applied to the database and to a dict; a fresh reader always agrees with the dict."""

    @initialize()
    def setup(self):
        import tempfile

        self.dir = tempfile.TemporaryDirectory(prefix="hotsync-model-")
        self.path = f"{self.dir.name}/db/model"
        self.db = ConfigDB(self.path)
        self.model: dict[str, Record] = {}

    def teardown(self):
        if hasattr(self, "dir"):
            self.dir.cleanup()

    @rule(key=KEYS, rtype=VALUES, props=PROPMAP)
    def set(self, key, rtype, props):
        self.db.set(key, rtype, props)
        self.model[key] = Record(rtype, props)

    @rule(key=KEYS, props=PROPMAP.filter(bool))
    def setprop(self, key, props):
        if key not in self.model:
            with pytest.raises(MissingKey, match="create it first"):
                self.db.setprop(key, props)
            return
        self.db.setprop(key, props)
        self.model[key].props.update(props)

    @rule(key=KEYS, props=st.lists(PROPS, min_size=1, max_size=3))
    def delprop(self, key, props):
        if key not in self.model:
            with pytest.raises(MissingKey):
                self.db.delprop(key, *props)
            return
        self.db.delprop(key, *props)
        for p in props:
            self.model[key].props.pop(p, None)

    @rule(key=KEYS)
    def delete(self, key):
        if key not in self.model:
            with pytest.raises(MissingKey):
                self.db.delete(key)
            return
        self.db.delete(key)
        del self.model[key]

    @rule(key=KEYS, props=PROPMAP)
    def transaction_that_fails_changes_nothing(self, key, props):
        with pytest.raises(RuntimeError), self.db.transaction() as txn:
            txn.set(key, "t", props)
            raise RuntimeError("abort")

    @rule(key=KEYS, other=KEYS, props=PROPMAP)
    def transaction_of_two_changes(self, key, other, props):
        with self.db.transaction() as txn:
            txn.set(key, "first", props)
            assert txn.record(key) == Record("first", props)    # a transaction sees its own changes
            txn.set(other, "second", {})
        self.model[key] = Record("first", props)
        self.model[other] = Record("second", {})

    @rule()
    def reload(self):
        self.db.reload()

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def read_one(self, data):
        key = data.draw(st.sampled_from(sorted(self.model)))
        assert self.db.record(key) == self.model[key]
        assert self.db.get(key) == self.model[key].type
        for prop, value in self.model[key].props.items():
            assert self.db.getprop(key, prop) == value

    @invariant()
    def a_fresh_reader_agrees(self):
        if not hasattr(self, "db"):
            return
        one_by_one = ConfigDB(self.path)       # one-key lookups, before anything indexes the file
        assert {k: one_by_one.record(k) for k in self.model} == self.model
        assert all(one_by_one.record(k) is None for k in ["a", "b", "hotsync-x", "k.1", "ü"] if k not in self.model)
        fresh = ConfigDB(self.path)
        assert fresh.keys() == sorted(self.model)
        assert {k: fresh.record(k) for k in fresh.keys()} == self.model
        assert self.db.keys() == sorted(self.model)


DatabaseModel.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
TestDatabaseModel = DatabaseModel.TestCase


# ------------------------------------------------------------------------------------------------ API
def test_record_is_a_copy(tmp_path):
    db = ConfigDB(tmp_path / "d")
    db.set("k", "t", {"a": "1"})
    rec = db.record("k")
    rec.props["a"] = "changed"
    db.props("k")["a"] = "changed too"
    assert db.getprop("k", "a") == "1"


def test_missing_reads(tmp_path):
    db = ConfigDB(tmp_path / "nothing-yet")
    assert db.keys() == [] and db.record("k") is None and db.get("k") is None
    assert db.getprop("k", "p") is None and db.getprop("k", "p", "dflt") == "dflt" and db.props("k") == {}
    assert not (tmp_path / "nothing-yet").exists()


def test_setprop_on_missing_key_says_how_to_create_it(tmp_path):
    db = ConfigDB(tmp_path / "configuration", name="configuration")
    with pytest.raises(MissingKey) as exc:
        db.setprop("myapp", {"status": "enabled"})
    assert "config set myapp TYPE" in str(exc.value)
    other = ConfigDB(tmp_path / "accounts")
    with pytest.raises(MissingKey, match="db accounts set bob TYPE"):
        other.setprop("bob", {"x": "1"})


@pytest.mark.parametrize("key", ["", "a b", "a=b", "a|b", "#a", "a\\b", "a\nb"])
def test_invalid_key_names_are_refused_and_nothing_changes(tmp_path, key):
    db = ConfigDB(tmp_path / "d")
    db.set("ok", "t")
    before = (tmp_path / "d").read_bytes()
    with pytest.raises(InvalidName) as exc:
        db.set(key, "t", {"a": "1"})
    assert exc.value.exit_code == 2
    assert (tmp_path / "d").read_bytes() == before


def test_empty_prop_name_is_refused(tmp_path):
    db = ConfigDB(tmp_path / "d")
    db.set("k", "t")
    with pytest.raises(InvalidName, match="prop name"):
        db.setprop("k", {"": "v"})


def test_unchanged_write_does_not_rewrite(tmp_path):
    db = ConfigDB(tmp_path / "d")
    db.set("k", "t", {"a": "1"})
    ino = (tmp_path / "d").stat().st_ino
    assert db.setprop("k", {"a": "1"}) == []
    assert (tmp_path / "d").stat().st_ino == ino


def test_changes_are_reported(tmp_path):
    db = ConfigDB(tmp_path / "d")
    changes = db.set("k", "t", {"a": "1"})
    assert [(c.key, c.prop, c.old, c.new) for c in changes] == [("k", None, None, "t"), ("k", "a", None, "1")]
    changes = db.setprop("k", {"a": "2", "b": ""})
    assert [(c.prop, c.old, c.new) for c in changes] == [("a", "1", "2"), ("b", None, "")]
    changes = db.delete("k")
    assert {(c.prop, c.new) for c in changes} == {(None, None), ("a", None), ("b", None)}


def test_no_stray_files_after_writes(tmp_path):
    db = ConfigDB(tmp_path / "d")
    for i in range(5):
        db.set(f"k{i}", "t", {"i": str(i)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "d.lock"]


# ------------------------------------------------------------------------------------------------ schema
def test_fresh_root_is_initialised_with_defaults(root):
    db = open_db("configuration", root)
    assert db.getprop("hotsync", "status") == "enabled"
    assert db.getprop("hotsync", "role") == ""
    assert db.getprop("rsyncd", "TCPPort") == "873"
    assert db.get("rsyncd") == "service"
    assert (root.db_dir / "configuration").is_file()


def test_refused_value_names_key_prop_value_and_what_is_allowed(root):
    db = open_db("configuration", root)
    with pytest.raises(schema.InvalidValue) as exc:
        db.setprop("hotsync", {"role": "mastr"})
    msg = str(exc.value)
    assert exc.value.exit_code == 3
    for word in ("hotsync", "role", "mastr", "master", "slave"):
        assert word in msg
    assert db.getprop("hotsync", "role") == ""
    with pytest.raises(schema.InvalidValue, match=r"interval.*whole number from 1 to 1440"):
        db.setprop("hotsync", {"interval": "0"})


def test_secret_refusal_does_not_echo_the_secret(root):
    db = open_db("configuration", root)
    with pytest.raises(schema.InvalidValue) as exc:
        db.setprop("rsyncd", {"password": "short"})
    assert "short" not in str(exc.value) and "password" in str(exc.value)


def test_props_no_schema_names_are_accepted(root):
    db = open_db("configuration", root)
    db.setprop("hotsync", {"MyOwnNote": "anything | at all"})
    db.set("myapp", "service", {"status": "whatever"})
    assert db.getprop("myapp", "status") == "whatever"


def _plugin_spec(root, name, text):
    path = root.state_dir / "schema" / "configuration" / f"{name}.spec"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_never_overwrite_and_force_does(root):
    db = open_db("configuration", root)
    db.setprop("hotsync", {"interval": "60"})
    _plugin_spec(root, "forcer", "[myapp]\n__type__ = service\n"
                 "status = option('enabled', 'disabled', default='enabled')\n"
                 "# always reset\nversion = string(default='2', force=True)\n")
    sch = schema.load(root, "configuration")
    schema.apply_defaults(db, sch)
    assert db.getprop("myapp", "status") == "enabled" and db.getprop("myapp", "version") == "2"
    db.setprop("myapp", {"status": "disabled", "version": "1"})
    changes = schema.apply_defaults(db, sch)
    assert db.getprop("myapp", "status") == "disabled"       # a default never overwrites
    assert db.getprop("myapp", "version") == "2"             # force does
    assert db.getprop("hotsync", "interval") == "60"
    assert [(c.key, c.prop, c.old, c.new) for c in changes] == [("myapp", "version", "1", "2")]
    assert schema.apply_defaults(db, sch) == []


def test_schema_clash_names_both_sources(root):
    _plugin_spec(root, "one", "[hotsync]\nextra = string(default='a')\n")
    _plugin_spec(root, "two", "[hotsync]\nextra = integer(default=1)\n")
    with pytest.raises(schema.SchemaError) as exc:
        schema.load(root, "configuration")
    assert "one" in str(exc.value) and "two" in str(exc.value) and "extra" in str(exc.value)


# ------------------------------------------------------------------------------------------------ history
def test_history_records_changes_with_secrets_masked(root):
    db = open_db("configuration", root)
    db.setprop("hotsync", {"role": "master"})
    db.setprop("rsyncd", {"password": "Sup3rSecret"})
    entries = [e for e in historyview.entries(root) if e["key"] in ("hotsync", "rsyncd")]
    assert {(e["key"], e["prop"], e["new"]) for e in entries} >= {("hotsync", "role", "master"),
                                                                   ("rsyncd", "password", "********")}
    assert "Sup3rSecret" not in (root.log_dir / "config-history.log").read_text()
    for line in (root.log_dir / "config-history.log").read_text().splitlines():
        json.loads(line)
