"""Every prop documented; near-miss suggestions; the new verbs stay out of `config getprop`'s start-up;
`--help` lists paste-able examples."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hotsync_events.configdb.schema import load, nearest, parse_spec

TOP = Path(__file__).resolve().parent.parent
SPECS = sorted((TOP / "db").glob("*.spec")) + sorted((TOP / "plugins").rglob("*.spec"))


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: str(p.relative_to(TOP)))
def test_every_prop_has_a_one_line_description(spec):
    missing = [f"[{ks.key}] {prop}" for ks in parse_spec(spec, spec.stem)
               for prop, ps in ks.props.items() if not ps.description.strip()]
    assert not missing, f"{spec.relative_to(TOP)}: props without a description comment above them: {missing}"
    long = [f"[{ks.key}] {p}" for ks in parse_spec(spec, spec.stem) for p, ps in ks.props.items()
            if len(ps.description) > 300]
    assert not long, f"descriptions should fit on a line (under 300 characters): {long}"


def test_the_core_specs_are_there():
    assert any(p.name == "configuration.spec" for p in SPECS)


@pytest.mark.parametrize("value,choices,expected", [
    ("mastr", ["master", "slave"], "master"),
    ("MASTER", ["master", "slave"], "master"),
    ("slav", ["master", "slave"], "slave"),
    ("enable", ["enabled", "disabled"], "enabled"),
    ("xyz", ["master", "slave"], None),
    ("master", ["master", "slave"], None),
    ("ye", ["yes", "no", "true", "false", "on", "off"], "yes"),
])
def test_nearest(value, choices, expected):
    assert nearest(value, choices) == expected


@pytest.mark.parametrize("args,hint", [
    (["hotsync", "role", "mastr"], "Did you mean 'master'?"),
    (["hotsync", "role", "Slave"], "Did you mean 'slave'?"),
    (["hotsync", "status", "disable"], "Did you mean 'disabled'?"),
])
def test_refused_value_suggests_the_nearest(root, run, args, hint):
    cp = run("config", "setprop", *args)
    assert cp.returncode == 3
    assert hint in cp.stderr and "allowed is one of" in cp.stderr


def test_no_suggestion_when_nothing_is_near_or_for_secrets(root, run):
    cp = run("config", "setprop", "hotsync", "role", "backup")
    assert cp.returncode == 3 and "Did you mean" not in cp.stderr
    cp = run("config", "setprop", "rsyncd", "password", "abc")
    assert cp.returncode == 3 and "Did you mean" not in cp.stderr and "abc" not in cp.stderr


def test_refusal_message_names_everything(root):
    from hotsync_events.configdb.schema import InvalidValue

    with pytest.raises(InvalidValue) as exc:
        load(root, "configuration").check("hotsync", "role", "mastr")
    assert str(exc.value) == ("refused configuration hotsync role='mastr': allowed is one of master, slave "
                              "(or empty). Did you mean 'master'?")


def test_getprop_does_not_import_the_new_verbs(root, run):
    run("config", "setprop", "hotsync", "role", "master", check=True)
    code = ("import sys; from hotsync_events.cli import config; rc = config.config_main(['getprop', 'hotsync', "
            "'role']); heavy = sorted(m for m in sys.modules if m.split('.')[-1] in ('config_ux', 'confinfo', "
            "'confrefs', 'historyview', 'complete', 'configobj', 'difflib')); print(heavy)")
    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.splitlines()[-1] == "[]"


def test_help_lists_examples_for_every_new_verb(run):
    for cmd in (["config", "--help"], ["db", "--help"]):
        out = run(*cmd, check=True).stdout
        for verb in ("info", "search", "history"):
            assert f"{cmd[0]} {'configuration ' if cmd[0] == 'db' else ''}{verb} " in out, (cmd, verb)
    out = run("config", "--help", check=True).stdout
    assert "source <(config __complete --script)" in out
    for verb in ("search", "history"):
        helped = run("config", verb, "--help", check=True).stdout
        assert "examples:" in helped and f"config {verb}" in helped


def test_unknown_verb_hides_the_completion_helper(run):
    cp = run("config", "serach")
    first = cp.stderr.splitlines()[0]
    assert cp.returncode == 2 and "did you mean 'search'?" in first and "__complete" not in first
