"""`config info` and `config search`: golden text and JSON, secrets, near-misses, what reads a value."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hotsync_events import hookimpl
from hotsync_events.configdb import open_db
from hotsync_events.configdb.info import describe, schema_summary, search, suggest
from hotsync_events.configdb.refs import find_references, mentions
from hotsync_events.paths import data_dir
from hotsync_events.types import Action, Service, Template

from golden import check_golden


GOLDEN_SPEC = """\
# The golden test application: a made-up service with one of each kind of prop.
[goldenapp]
__type__ = service
# Whether the golden application runs.
status = option('enabled', 'disabled', default='disabled')
# How it runs: alone, or as the primary or the replica of a pair.
mode = option('standalone', 'primary', 'replica', default='standalone', local=True)
# The TCP port it listens on.
TCPPort = integer(min=1, max=65535, default=8123)
# The token the replica presents to the primary.
token = password(min=8, max=64, default='', secret=True)
"""


def normalise(text: str, root) -> str:
    """Golden files hold <ROOT> and <PKG-DB> instead of this run's paths."""
    return text.replace(str(data_dir("db")), "<PKG-DB>").replace(os.fspath(root), "<ROOT>")


@pytest.fixture
def golden_root(root, run):
    """A root with the goldenapp spec installed (as a plugin would), a templates-custom fragment that
    reads goldenapp mode, and an events-directory action that reads it too."""
    spec = root.state_dir / "schema" / "configuration" / "goldenapp.spec"
    spec.parent.mkdir(parents=True)
    spec.write_text(GOLDEN_SPEC, encoding="utf-8")
    frag = root.etc_dir / "templates-custom" / "etc" / "goldenapp.conf" / "10main"
    frag.parent.mkdir(parents=True)
    frag.write_text("mode = ${goldenapp.mode}\nport = ${db.getprop('goldenapp', 'TCPPort')}\n", encoding="utf-8")
    other = root.etc_dir / "templates-custom" / "etc" / "unrelated.conf" / "10x"
    other.parent.mkdir(parents=True)
    other.write_text("# goldenapp mode is not read here: ${hotsync.role}\n", encoding="utf-8")
    action = root.etc_dir / "events" / "goldenapp-update" / "S20goldenapp-reload"
    action.parent.mkdir(parents=True)
    action.write_text("#!/bin/sh\nmode=$(config getprop goldenapp mode)\n", encoding="utf-8")
    action.chmod(0o755)
    run("config", "setprop", "goldenapp", "mode", "replica", "token", "Golden-Token-1", check=True)
    return root


# ------------------------------------------------------------------------------------------- info
def test_info_prop_text_golden(golden_root, run):
    cp = run("config", "info", "goldenapp", "mode", check=True)
    check_golden("config_ux/info-prop.txt", normalise(cp.stdout, golden_root))


def test_info_prop_json_golden(golden_root, run):
    cp = run("config", "info", "--json", "goldenapp", "mode", check=True)
    doc = json.loads(cp.stdout)
    assert doc["options"] == ["standalone", "primary", "replica"]
    assert doc["read_by"]["events"] == ["goldenapp-update"]
    check_golden("config_ux/info-prop.json", normalise(cp.stdout, golden_root))


def test_info_key_text_golden(golden_root, run):
    cp = run("config", "info", "goldenapp", check=True)
    assert "Golden-Token-1" not in cp.stdout
    check_golden("config_ux/info-key.txt", normalise(cp.stdout, golden_root))


def test_info_via_db_and_secret(golden_root, run):
    cp = run("db", "configuration", "info", "goldenapp", "token", check=True)
    assert "secret:       yes" in cp.stdout and "********" in cp.stdout and "Golden-Token-1" not in cp.stdout
    shown = run("config", "--show-secrets", "info", "goldenapp", "token", check=True)
    assert "Golden-Token-1" in shown.stdout


def test_info_core_prop_lists_allowed_values(root, run):
    cp = run("config", "info", "hotsync", "role", check=True)
    assert "one of master, slave (or empty)" in cp.stdout
    assert "declared by:  the core schema" in cp.stdout


def test_info_shows_the_local_flag(root, run):
    """local=True props (this host's own, kept by a promote) say so in text and JSON; the others say no."""
    cp = run("config", "info", "hotsync", "role", check=True)
    assert "local:        yes (this host's own" in cp.stdout
    assert json.loads(run("config", "info", "--json", "hotsync", "role", check=True).stdout)["local"] is True
    cp = run("config", "info", "hotsync", "MailTo", check=True)
    assert "local:        no" in cp.stdout
    assert json.loads(run("config", "info", "--json", "hotsync", "MailTo", check=True).stdout)["local"] is False
    key = {p["prop"]: p for p in json.loads(run("config", "info", "--json", "hotsync", check=True).stdout)["props"]}
    assert key["role"]["local"] is True and key["MailTo"]["local"] is False


def test_info_unknown_key_and_prop_suggest(root, run):
    run("config", "setprop", "hotsync", "role", "master", check=True)
    cp = run("config", "info", "hotsnyc")
    assert cp.returncode == 1 and "did you mean 'hotsync'" in cp.stderr
    cp = run("config", "info", "hotsync", "rol")
    assert cp.returncode == 1 and "did you mean 'role'" in cp.stderr
    assert run("config", "info").returncode == 2


def test_info_help_has_examples(run):
    cp = run("config", "info", "--help", check=True)
    assert "config info hotsync role" in cp.stdout


# ------------------------------------------------------------------------------------------- what reads a value
def test_mentions_forms():
    assert mentions("${hotsync.role}", "hotsync", "role")
    assert mentions("${db.hotsync.role}", "hotsync", "role")
    assert mentions("db.getprop('hotsync', 'role', '')", "hotsync", "role")
    assert mentions('x = db["backup-data"].status', "backup-data", "status")
    assert mentions("config getprop hotsync role", "hotsync", "role")
    assert not mentions("${hotsync.roles}", "hotsync", "role")
    assert not mentions("/etc/hotsync/role.d", "hotsync", "role")
    assert not mentions("see hotsync.conf", "hotsync")
    assert mentions("${hotsync.status}", "hotsync")


def _golden_is_replica(db) -> bool:
    """A helper the way plugins write them: the action below reads goldenapp mode only through it."""
    return _golden_mode(db) == "replica"


def _golden_mode(db) -> str:
    return db.props("goldenapp").get("mode", "standalone")


def golden_status_line(db) -> str:
    return "status " + db.getprop("goldenapp", "status")


class _ReaderPlugin:
    """A plugin whose action and services read goldenapp mode, and whose template targets it."""

    def __init__(self, tdir: Path) -> None:
        self.tdir = tdir

    @hookimpl
    def hotsync_template_dirs(self):
        return [self.tdir]

    @hookimpl
    def hotsync_templates(self, db):
        return [Template("/etc/goldenapp.conf", events=("goldenapp-update", "goldenapp-save"))]

    @hookimpl
    def hotsync_actions(self, db):
        def reconfigure(ctx):
            return ctx.db.getprop("goldenapp", "mode")

        def unrelated(ctx):
            return ctx.db.getprop("hotsync", "role")

        def via_helper(ctx):
            return 0 if _golden_is_replica(ctx.db) else 1

        return [Action("goldenapp-save", "reconfigure", reconfigure), Action("goldenapp-save", "other", unrelated),
                Action("goldenapp-promote", "via-helper", via_helper)]

    @hookimpl
    def hotsync_services(self, db):
        events = {"goldenapp-save": "restart"} if db.getprop("goldenapp", "mode") != "standalone" else {}
        return [Service(name="goldenappd", events=events)]


def test_references_through_plugins(golden_root, pm, tmp_path):
    tdir = tmp_path / "plugtemplates"
    (tdir / "etc" / "goldenapp.conf").mkdir(parents=True)
    (tdir / "etc" / "goldenapp.conf" / "05head").write_text("# mode ${goldenapp.mode}\n")
    pm.register(_ReaderPlugin(tdir), name="goldenreader")
    db = open_db("configuration", golden_root)
    refs = find_references(golden_root, "configuration", "goldenapp", "mode", db=db, pm=pm)
    [t] = refs["templates"]
    assert t["target"] == "/etc/goldenapp.conf" and t["events"] == ["goldenapp-save", "goldenapp-update"]
    assert [(f["fragment"], f["source"]) for f in t["fragments"]] == [
        ("05head", "plugin goldenreader"), ("10main", "templates-custom")]
    assert [(a["event"], a["name"]) for a in refs["actions"]] == [
        ("goldenapp-promote", "via-helper"), ("goldenapp-save", "reconfigure"),
        ("goldenapp-update", "S20goldenapp-reload")]
    assert refs["events"] == ["goldenapp-promote", "goldenapp-save", "goldenapp-update"]
    assert [s["name"] for s in refs["services"]] == ["goldenappd"]
    # a fragment that reads status through a helper it imports from the plugin's package
    (tdir / "etc" / "goldenapp.conf" / "20status").write_text(
        "<%\n    from test_config_info import golden_status_line\n%>${golden_status_line(db)}\n")
    status = find_references(golden_root, "configuration", "goldenapp", "status", db=db, pm=pm)
    assert [f["fragment"] for t in status["templates"] for f in t["fragments"]] == ["20status"]
    # a prop nobody reads
    none = find_references(golden_root, "configuration", "goldenapp", "token", db=db, pm=pm)
    assert none["events"] == [] and none["templates"] == [] and none["actions"] == []


def test_describe_api_masks_and_reports(golden_root):
    d = describe(golden_root, "configuration", "goldenapp", "token", refs=False)
    assert d["value"] == "********" and d["secret"] and d["source"] == "goldenapp"
    d = describe(golden_root, "configuration", "goldenapp", "token", refs=False, show_secrets=True)
    assert d["value"] == "Golden-Token-1"


# ------------------------------------------------------------------------------------------- search
def test_search_text_golden(golden_root, run):
    cp = run("config", "search", "--key", "^goldenapp$", check=True)
    assert "Golden-Token-1" not in cp.stdout
    check_golden("config_ux/search.txt", cp.stdout)


def test_search_json_golden(golden_root, run):
    cp = run("config", "search", "--key", "^(goldenapp|hotsync)$", "--prop", "(?i)^(mode|role|token|tcpport)$",
             "--json", check=True)
    check_golden("config_ux/search.json", cp.stdout)


def test_search_non_default_golden(golden_root, run):
    cp = run("config", "search", "--key", "^goldenapp$", "--non-default", check=True)
    check_golden("config_ux/search-non-default.txt", cp.stdout)


def test_search_value_and_secrets(golden_root, run):
    cp = run("config", "search", "--value", "^replica$", check=True)
    assert cp.stdout == "goldenapp mode=replica\n"
    # the value pattern sees the masked value: a search cannot guess a secret
    assert run("config", "search", "--value", "Golden").returncode == 1
    cp = run("config", "search", "--show-secrets", "--value", "Golden", check=True)
    assert cp.stdout == "goldenapp token=Golden-Token-1\n"
    cp = run("config", "search", "--value", "Golden", "--show-secrets", check=True)
    assert "Golden-Token-1" in cp.stdout


def test_search_bad_pattern_is_a_usage_error(root, run):
    cp = run("config", "search", "--key", "(")
    assert cp.returncode == 2 and "invalid --key pattern '('" in cp.stderr
    cp = run("config", "search", "hotsync")
    assert cp.returncode == 2 and "--key hotsync" in cp.stderr


def test_search_api_non_default(golden_root):
    db = open_db("configuration", golden_root)
    rows = search(db, schema_summary(golden_root), key="^goldenapp$", non_default=True)
    assert {(r["prop"], r["value"]) for r in rows} == {("mode", "replica"), ("token", "********")}


# ------------------------------------------------------------------------------------------- schema digest
def test_schema_digest_cache_follows_spec_changes(golden_root):
    first = schema_summary(golden_root)
    assert first["goldenapp"]["props"]["mode"]["allowed"] == "one of standalone, primary, replica"
    spec = golden_root.state_dir / "schema" / "configuration" / "goldenapp.spec"
    spec.write_text(GOLDEN_SPEC.replace("'replica', default", "'replica', 'witness', default"))
    os.utime(spec, ns=(1, 1))  # a different mtime even on a coarse clock
    assert "witness" in schema_summary(golden_root)["goldenapp"]["props"]["mode"]["args"]


def test_suggest():
    assert suggest("hotsnyc", ["hotsync", "rsyncd"]) == "hotsync"
    assert suggest("ROLE", ["role", "port"]) == "role"
    assert suggest("zzz", ["role"]) is None


def test_core_readers():
    from hotsync_events.configdb.refs import CORE_SKIP, core_readers

    found = core_readers("hotsync", "role")
    assert found, "some core code (sync, promote) reads hotsync role"
    assert not [c for c in found if c["module"].startswith(CORE_SKIP)]
    assert core_readers("goldenapp", "mode") == []
    # docstrings are not code: templates.py documents ${hotsync.role} but its functions do not read it
    assert "hotsync_events.events.templates" not in {c["module"] for c in core_readers("rsyncd", "TCPPort")}
