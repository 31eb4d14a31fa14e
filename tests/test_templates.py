"""Templates: fragment order and overrides, errors that name template, fragment and line, atomic writes."""
from __future__ import annotations

import os
import pwd

import pytest

from hotsync_events import hookimpl
from hotsync_events.configdb import open_db
from hotsync_events.events.templates import TemplateError, expand, expand_many, fragments_of, template_sources
from hotsync_events.types import Template

TARGET = "/etc/probe.conf"


@pytest.fixture
def tdir(root, pm):
    """A plugin template directory registered on the test's plugin manager."""
    d = root.path.parent / "plugin-templates"
    d.mkdir()

    class P:
        @hookimpl
        def hotsync_template_dirs(self):
            return [d]

    pm.add_plugin(P(), "tplugin")
    return d


@pytest.fixture
def db(root):
    return open_db("configuration", root)


def fragment(base, target: str, name: str, text: str):
    path = base.joinpath(target.lstrip("/"), name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def custom(root, target: str, name: str, text: str):
    return fragment(root.etc_dir / "templates-custom", target, name, text)


def test_fragments_in_name_order_custom_replaces_adds_and_switches_off(root, pm, tdir, db):
    fragment(tdir, TARGET, "10first", "a=${1+1}\n")
    fragment(tdir, TARGET, "20second", "b=packaged\n")
    fragment(tdir, TARGET, "30third", "c=packaged\n")
    fragment(tdir, TARGET, "40fourth.rpmnew", "never\n")
    custom(root, TARGET, "20second", "b=custom\n")
    custom(root, TARGET, "25between", "between\n")
    custom(root, TARGET, "30third", "")          # an empty fragment switches the packaged one off
    custom(root, TARGET, "50last~", "never\n")   # editor backups are not fragments
    res = expand(TARGET, root=root, db=db, pm=pm)
    assert res.status == "changed", res.error
    assert root.join(TARGET).read_text() == "a=2\nb=custom\nbetween\n"
    origins = [(f.name, f.origin) for f in fragments_of(TARGET, template_sources(pm, root))]
    assert origins == [("10first", "tplugin"), ("20second", "templates-custom"), ("25between", "templates-custom")]


def test_a_single_file_in_templates_custom_replaces_the_whole_set(root, pm, tdir, db):
    fragment(tdir, TARGET, "10first", "packaged\n")
    whole = root.etc_dir / "templates-custom" / TARGET.lstrip("/")
    whole.parent.mkdir(parents=True)
    whole.write_text("whole file, port ${hotsync.port}\n")
    assert expand(TARGET, root=root, db=db, pm=pm).ok
    assert root.join(TARGET).read_text() == "whole file, port 273\n"


def test_a_target_only_in_templates_custom_expands_from_the_command(root, run):
    custom(root, "/etc/only-custom.conf", "10a", "role=${hotsync.role or 'none'}\n")
    custom(root, "/etc/only-custom.conf", "20b", "% for k in ('port', 'interval'):\n${k}=${hotsync[k]}\n% endfor\n")
    cp = run("expand-template", "/etc/only-custom.conf", "--output", "-")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == "role=none\nport=273\ninterval=15\n"
    assert not root.join("/etc/only-custom.conf").exists()
    cp = run("expand-template", "/etc/only-custom.conf")
    assert cp.returncode == 0 and cp.stdout.startswith("changed ")
    assert root.join("/etc/only-custom.conf").read_text() == "role=none\nport=273\ninterval=15\n"
    assert run("expand-template", "/etc/only-custom.conf").stdout.startswith("unchanged ")
    cp = run("expand-template", "/etc/only-custom.conf", "--output", "/tmp/copy.conf")
    assert cp.returncode == 0 and root.join("/tmp/copy.conf").read_text().startswith("role=none")
    cp = run("expand-template", "/etc/nothing-here.conf")
    assert cp.returncode == 1 and "no templates were found for /etc/nothing-here.conf" in cp.stderr
    assert run("expand-template", "etc/relative").returncode == 2
    cp = run("expand-template", "--help")
    assert cp.returncode == 0 and "examples:" in cp.stdout and "expand-template /etc/rsyncd.conf" in cp.stdout


@pytest.mark.parametrize("text, line, words", [
    ("ok\nport=${hotsync.NoSuchProp}\n", 2, ["key 'hotsync'", "no prop 'NoSuchProp'", "MaxDeletePercent"]),
    ("ok\nok\n${db.nokey.prop}\n", 3, ["no key 'nokey' in the configuration database"]),
    ("${db['nokey']}\n", 1, ["no key 'nokey'"]),
    ("a\nb\nc ${conf_no_such_thing_xyz.attr}\n", 3, ["'conf_no_such_thing_xyz' is not defined"]),
    ("a\n${1 +}\n", 2, ["SyntaxException"]),
    ("a\n% if True:\nb\n", 2, ["Unterminated control keyword"]),
    ("x=${line('two\\nlines')}\n", 1, ["line break"]),
    ("x=${1/0}\n", 1, ["ZeroDivisionError"]),
])
def test_a_failing_fragment_names_template_fragment_and_line_and_keeps_the_old_file(root, pm, tdir, db, text,
                                                                                  line, words):
    fragment(tdir, TARGET, "10good", "good\n")
    assert expand(TARGET, root=root, db=db, pm=pm).ok
    before = root.join(TARGET).stat()
    bad = fragment(tdir, TARGET, "20bad", text)
    res = expand(TARGET, root=root, db=db, pm=pm)
    assert res.status == "failed"
    assert f"template {TARGET}, fragment {bad}, line {line}:" in res.error
    for w in words:
        assert w in res.error
    after = root.join(TARGET).stat()
    assert root.join(TARGET).read_text() == "good\n"
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_the_command_reports_a_missing_prop_and_exits_1(root, run):
    custom(root, TARGET, "10a", "fine\n")
    assert run("expand-template", TARGET).returncode == 0
    custom(root, TARGET, "20b", "\n\nx=${rsyncd.nope}\n")
    cp = run("expand-template", TARGET)
    assert cp.returncode == 1
    assert "fragment" in cp.stderr and "20b, line 3" in cp.stderr and "no prop 'nope'" in cp.stderr
    assert "left as it was" in cp.stderr
    assert root.join(TARGET).read_text() == "fine\n"


def test_optional_access_and_escaping_helpers(root, pm, tdir, db):
    db.set("weird", "configuration", {"name": "a b'c", "tag": "<x&y>"})
    fragment(tdir, TARGET, "10opt", "${db.get('nokey') is None} ${hotsync.get('nope', 'dflt')} "
                                    "${db.getprop('hotsync', 'nope', 'd2')} ${'nokey' in db} ${'role' in hotsync}\n")
    fragment(tdir, TARGET, "20esc", "${quote(weird.name)} ${xml(weird.tag)} ${json(weird.name)} ${line(weird.tag)}\n")
    fragment(tdir, TARGET, "30ctx", "<% shared['n'] = 42 %>${event} ${args} ${target} ${root}\n")
    fragment(tdir, TARGET, "40shared", "n=${shared['n']} type=${hotsync.type} ${open_db('configuration').hotsync.port}\n")
    res = expand(TARGET, root=root, db=db, pm=pm, event="ev", args=("x",))
    assert res.ok, res.error
    assert root.join(TARGET).read_text() == (
        "True dflt d2 False True\n"
        "'a b'\"'\"'c' &lt;x&amp;y&gt; \"a b'c\" <x&y>\n"
        f"ev ('x',) /etc/probe.conf {root.path}\n"
        "n=42 type=configuration 273\n")


def test_written_only_when_changed_mode_set_and_fixed(root, pm, tdir, db):
    fragment(tdir, TARGET, "10a", "port=${hotsync.port}\n")
    tpl = Template(TARGET, mode=0o600)
    assert expand(TARGET, root=root, db=db, pm=pm, template=tpl).status == "changed"
    path = root.join(TARGET)
    st = path.stat()
    assert st.st_mode & 0o7777 == 0o600
    assert expand(TARGET, root=root, db=db, pm=pm, template=tpl).status == "unchanged"
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    os.chmod(path, 0o666)   # wrong mode, same content: mode fixed, file not rewritten
    assert expand(TARGET, root=root, db=db, pm=pm, template=tpl).status == "unchanged"
    assert path.stat().st_mode & 0o7777 == 0o600 and path.stat().st_ino == st.st_ino
    db.setprop("hotsync", {"port": "2000"})
    assert expand(TARGET, root=root, db=db.reload(), pm=pm, template=tpl).status == "changed"
    assert path.read_text() == "port=2000\n" and path.stat().st_ino != st.st_ino
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "no temp file left"
    # a file the command renders without registration keeps its mode
    os.chmod(path, 0o640)
    db.setprop("hotsync", {"port": "2001"})
    assert expand(TARGET, root=root, db=db.reload(), pm=pm).status == "changed"
    assert path.stat().st_mode & 0o7777 == 0o640


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
def test_owner_and_group_are_set(root, pm, tdir, db):
    fragment(tdir, TARGET, "10a", "x\n")
    nobody = pwd.getpwnam("nobody")
    res = expand(TARGET, root=root, db=db, pm=pm, template=Template(TARGET, owner="nobody", group="root"))
    assert res.ok, res.error
    assert (root.join(TARGET).stat().st_uid, root.join(TARGET).stat().st_gid) == (nobody.pw_uid, 0)
    res = expand(TARGET, root=root, db=db, pm=pm, template=Template(TARGET, owner="no-such-user-xyz"))
    assert res.status == "failed" and "owner 'no-such-user-xyz' is not a user" in res.error


def test_two_plugins_giving_one_fragment_name_is_an_error_naming_both(root, pm, tdir, db):
    other = root.path.parent / "other-templates"
    fragment(tdir, TARGET, "10same", "one\n")
    fragment(other, TARGET, "10same", "two\n")

    class Q:
        @hookimpl
        def hotsync_template_dirs(self):
            return [other]

    pm.add_plugin(Q(), "qplugin")
    res = expand(TARGET, root=root, db=db, pm=pm)
    assert res.status == "failed" and "plugin qplugin" in res.error and "plugin tplugin" in res.error
    with pytest.raises(TemplateError):
        fragments_of("/etc/../x", template_sources(pm, root))


def test_event_expansion_skips_unchanged_targets_and_sees_every_input(root, pm, tdir, db, monkeypatch):
    fragment(tdir, "/etc/a.conf", "10a", "role=${hotsync.role or 'none'}\n")
    fragment(tdir, "/etc/b.conf", "10b", "static\n")
    tpls = [Template("/etc/a.conf"), Template("/etc/b.conf")]

    def once(**kw):
        return {r.path: (r.status, r.cached) for r in expand_many(tpls, root=root, db=db.reload(), pm=pm,
                                                                   event="ev", **kw)}

    assert once() == {"/etc/a.conf": ("changed", False), "/etc/b.conf": ("changed", False)}
    assert once() == {"/etc/a.conf": ("unchanged", True), "/etc/b.conf": ("unchanged", True)}
    db.setprop("hotsync", {"role": "master"})            # the database changed: everything is rendered
    assert once() == {"/etc/a.conf": ("changed", False), "/etc/b.conf": ("unchanged", False)}
    custom(root, "/etc/b.conf", "20more", "more\n")      # a new fragment
    assert once()["/etc/b.conf"] == ("changed", False)
    root.join("/etc/b.conf").write_text("edited by hand\n")   # the output itself
    assert once()["/etc/b.conf"] == ("changed", False)
    assert root.join("/etc/b.conf").read_text() == "static\nmore\n"
    monkeypatch.setenv("HOTSYNC_TEMPLATE_CACHE", "0")
    assert once() == {"/etc/a.conf": ("unchanged", False), "/etc/b.conf": ("unchanged", False)}
