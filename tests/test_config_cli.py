"""The `config` and `db` commands: golden output, every bad input, the root, secrets, initialisation."""
from __future__ import annotations

import json
import os

import pytest

from hotsync_events.configdb import ConfigDB

# as NethServer's db prints them: a value's newline is a newline, a backslash a backslash
GOLDEN_SHOW = """\
demo=service
    TCPPort=8080
    empty=
    multi=l1
l2 \\ end
    note=a|b=c #not a comment
    status=enabled
plain=thing
"""

GOLDEN_JSON = [
    {"name": "demo", "type": "service",
     "props": {"TCPPort": "8080", "empty": "", "multi": "l1\nl2 \\ end", "note": "a|b=c #not a comment",
               "status": "enabled"}},
    {"name": "plain", "type": "thing"},           # as NethServer's db: no "props" for a key without any
]


@pytest.fixture
def golden(root, run):
    run("db", "golden", "set", "demo", "service", "status", "enabled", "TCPPort", "8080", "note",
        "a|b=c #not a comment", "multi", "l1\nl2 \\ end", "empty", "", check=True)
    run("db", "golden", "set", "plain", "thing", check=True)
    return root


def test_show_golden(golden, run):
    cp = run("db", "golden", "show")
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, GOLDEN_SHOW, "")
    cp = run("db", "golden", "show", "plain")
    assert (cp.returncode, cp.stdout) == (0, "plain=thing\n")


def test_printjson_golden(golden, run):
    cp = run("db", "golden", "printjson")
    assert cp.returncode == 0 and cp.stdout.endswith("\n") and cp.stdout.count("\n") == 1
    assert json.loads(cp.stdout) == GOLDEN_JSON
    assert cp.stdout == json.dumps(GOLDEN_JSON, ensure_ascii=False, sort_keys=True) + "\n"   # stable order
    cp = run("db", "golden", "printjson", "demo")
    assert json.loads(cp.stdout) == GOLDEN_JSON[0]


def test_keys_get_getprop(golden, run):
    assert run("db", "golden", "keys").stdout == "demo\nplain\n"
    assert run("db", "golden", "get", "demo").stdout == "service\n"
    assert run("db", "golden", "getprop", "demo", "multi").stdout == "l1\nl2 \\ end\n"
    assert run("db", "golden", "getprop", "demo", "empty").stdout == "\n"


def test_config_is_db_configuration(root, run):
    run("config", "setprop", "hotsync", "role", "master", check=True)
    assert run("db", "configuration", "getprop", "hotsync", "role").stdout == "master\n"
    run("db", "configuration", "setprop", "hotsync", "role", "slave", check=True)
    assert run("config", "getprop", "hotsync", "role").stdout == "slave\n"


def test_set_replaces_setprop_merges_delprop_delete(root, run):
    run("config", "set", "myapp", "service", "a", "1", "b", "2", check=True)
    run("config", "setprop", "myapp", "b", "3", "c", "4", check=True)
    assert json.loads(run("config", "printjson", "myapp").stdout)["props"] == {"a": "1", "b": "3", "c": "4"}
    run("config", "set", "myapp", "other", "z", "9", check=True)
    assert json.loads(run("config", "printjson", "myapp").stdout) == {"name": "myapp", "type": "other",
                                                                       "props": {"z": "9"}}
    run("config", "delprop", "myapp", "z", "not-there", check=True)
    assert run("config", "show", "myapp").stdout == "myapp=other\n"
    run("config", "delete", "myapp", check=True)
    assert run("config", "get", "myapp").returncode == 1


# ------------------------------------------------------------------------------------------------ bad input
USAGE_ERRORS = [
    ("unknown verb", ["frobnicate"], "unknown verb 'frobnicate'"),
    ("missing verb", [], "missing VERB"),
    ("unknown option", ["--bogus", "keys"], "unknown option '--bogus'"),
    ("--root without DIR", ["--root"], "--root needs a DIR"),
    ("empty --root=", ["--root=", "keys"], "--root needs a DIR"),
    ("getprop without prop", ["getprop", "hotsync"], "expected 2 argument(s), got 1"),
    ("getprop with too many", ["getprop", "hotsync", "role", "x"], "expected 2 argument(s), got 3"),
    ("get without key", ["get"], "expected 1 argument(s), got 0"),
    ("show with two keys", ["show", "a", "b"], "expected 0 to 1 argument(s), got 2"),
    ("keys with an argument", ["keys", "x"], "expected 0 argument(s), got 1"),
    ("printjson with two keys", ["printjson", "a", "b"], "expected 0 to 1 argument(s), got 2"),
    ("set without type", ["set", "k"], "set needs KEY TYPE"),
    ("setprop without value", ["setprop", "hotsync", "role"], "setprop needs KEY PROP VALUE"),
    ("delprop without prop", ["delprop", "hotsync"], "delprop needs KEY PROP"),
    ("delete without key", ["delete"], "expected 1 argument(s), got 0"),
    ("odd pairs in setprop", ["setprop", "hotsync", "role", "master", "SlaveHost"],
     "PROP VALUE pairs; 'SlaveHost' has no value"),
    ("odd pairs in set", ["set", "k", "t", "a"], "PROP VALUE pairs; 'a' has no value"),
]


@pytest.mark.parametrize("what,args,message", USAGE_ERRORS, ids=[u[0] for u in USAGE_ERRORS])
def test_usage_errors_exit_2_with_the_usage_and_change_nothing(root, run, what, args, message):
    run("config", "setprop", "hotsync", "role", "master", check=True)
    db = root.db_dir / "configuration"
    before = db.read_bytes()
    cp = run("config", *args)
    assert cp.returncode == 2, what
    assert message in cp.stderr
    assert "usage: config" in cp.stderr and cp.stdout == ""
    assert db.read_bytes() == before


def test_db_without_name_is_a_usage_error(root, run):
    cp = run("db")
    assert cp.returncode == 2 and "missing database NAME" in cp.stderr and "usage: db" in cp.stderr


@pytest.mark.parametrize("args,message", [
    (["set", "a b", "t"], "invalid key 'a b'"),
    (["set", "a=b", "t"], "invalid key 'a=b'"),
    (["set", "a|b", "t"], "invalid key"),
    (["set", "#a", "t"], "does not start with '#'"),
    (["set", "", "t"], "a key is a non-empty name"),
    (["setprop", "hotsync", "", "v"], "prop name"),
])
def test_invalid_names_are_refused(root, run, args, message):
    run("config", "setprop", "hotsync", "role", "master", check=True)      # the database exists
    before = (root.db_dir / "configuration").read_bytes()
    cp = run("config", *args)
    assert cp.returncode == 2 and message in cp.stderr and cp.stdout == ""
    assert (root.db_dir / "configuration").read_bytes() == before


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "_x", "a b"])
def test_invalid_database_names_are_refused(root, run, tmp_path, name):
    cp = run("db", name, "set", "k", "t")
    assert cp.returncode == 2 and "database name" in cp.stderr
    assert not (tmp_path / "escape").exists() and not (root.state_dir / "escape").exists()


@pytest.mark.parametrize("prop,value,allowed", [
    ("role", "mastr", ["master", "slave", "Did you mean 'master'"]),
    ("interval", "0", ["whole number from 1 to 1440"]),
    ("interval", "often", ["whole number"]),
    ("SlaveHost", "not a host!", ["IP address or a host name"]),
    ("status", "on", ["enabled", "disabled"]),
])
def test_refused_value_exits_3_naming_key_prop_value_and_allowed(root, run, prop, value, allowed):
    run("config", "setprop", "hotsync", "role", "slave", check=True)
    before = (root.db_dir / "configuration").read_bytes()
    cp = run("config", "setprop", "hotsync", "role", "master", prop, value)
    assert cp.returncode == 3
    assert cp.stdout == ""
    for word in ["hotsync", prop, repr(value), *allowed]:
        assert word in cp.stderr
    assert (root.db_dir / "configuration").read_bytes() == before     # the valid role=master was not applied
    assert run("config", "getprop", "hotsync", "role").stdout == "slave\n"


def test_refused_secret_is_not_echoed(root, run):
    cp = run("config", "setprop", "rsyncd", "password", "abc")
    assert cp.returncode == 3 and "abc" not in cp.stderr and "password" in cp.stderr and "6 to 256" in cp.stderr


def test_setprop_on_missing_key_says_how_to_create_it(root, run):
    cp = run("config", "setprop", "myapp", "status", "enabled")
    assert cp.returncode == 1 and cp.stdout == ""
    assert "no key 'myapp'" in cp.stderr and "config set myapp TYPE" in cp.stderr
    assert run("config", "get", "myapp").returncode == 1
    cp = run("db", "accounts", "setprop", "bob", "x", "1")
    assert cp.returncode == 1 and "db accounts set bob TYPE" in cp.stderr


@pytest.mark.parametrize("args", [["getprop", "nokey", "p"], ["getprop", "hotsync", "noprop"], ["get", "nokey"],
                                  ["show", "nokey"], ["printjson", "nokey"]])
def test_missing_key_or_prop_exits_1_with_no_output(root, run, args):
    cp = run("config", *args)
    assert (cp.returncode, cp.stdout, cp.stderr) == (1, "", "")


def test_empty_database_reads(root, run):
    assert run("db", "empty", "keys").returncode == 1
    assert run("db", "empty", "show").returncode == 1
    cp = run("db", "empty", "printjson")
    assert cp.returncode == 0 and json.loads(cp.stdout) == []


def test_delete_of_missing_key_exits_1(root, run):
    cp = run("config", "delete", "nokey")
    assert cp.returncode == 1 and "nokey" in cp.stderr


def test_help(root, run):
    cp = run("config", "--help")
    assert cp.returncode == 0 and "usage: config" in cp.stdout and "getprop KEY PROP" in cp.stdout


# ------------------------------------------------------------------------------------------------ root
def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_root_option_and_env_are_honoured_and_nothing_is_written_outside(tmp_path, run):
    env_root, opt_root, cwd = tmp_path / "env-root", tmp_path / "opt-root", tmp_path / "cwd"
    for d in (env_root, opt_root, cwd):
        d.mkdir()
    env = {"HOTSYNC_ROOT": str(env_root), "HOME": str(cwd)}
    outside = _tree(tmp_path)
    run("config", "setprop", "hotsync", "role", "master", env=env, check=True)
    run("config", "--root", str(opt_root), "setprop", "hotsync", "role", "slave", env=env, check=True)
    run("db", f"--root={opt_root}", "accounts", "set", "bob", "user", env=env, check=True)
    assert run("config", "getprop", "hotsync", "role", env=env).stdout == "master\n"
    assert run("config", "--root", str(opt_root), "getprop", "hotsync", "role", env=env).stdout == "slave\n"
    assert ConfigDB(env_root / "var/lib/hotsync/db/configuration").getprop("hotsync", "role") == "master"
    assert ConfigDB(opt_root / "var/lib/hotsync/db/accounts").get("bob") == "user"
    assert not (env_root / "var/lib/hotsync/db/accounts").exists()
    new = [p for p in _tree(tmp_path) if p not in outside]
    assert new and all(p.startswith(("env-root/", "opt-root/")) for p in new), new


def test_relative_root(tmp_path, run):
    (tmp_path / "rel").mkdir()
    cp = __import__("subprocess").run([_config(), "--root", "rel", "setprop", "hotsync", "role", "master"],
                                      cwd=tmp_path, capture_output=True, text=True,
                                      env={**os.environ, "HOTSYNC_ROOT": str(tmp_path / "elsewhere")})
    assert cp.returncode == 0, cp.stderr
    assert ConfigDB(tmp_path / "rel/var/lib/hotsync/db/configuration").getprop("hotsync", "role") == "master"
    assert not (tmp_path / "elsewhere").exists()


def _config():
    from conftest import command

    return command("config")


# ------------------------------------------------------------------------------------------------ secrets
def test_secrets_masked_unless_show_secrets(root, run):
    run("config", "setprop", "rsyncd", "password", "Sup3rSecret", check=True)
    for args in (["show", "rsyncd"], ["show"], ["printjson", "rsyncd"], ["printjson"]):
        out = run("config", *args).stdout
        assert "Sup3rSecret" not in out and "********" in out, args
    assert "    password=Sup3rSecret\n" in run("config", "--show-secrets", "show", "rsyncd").stdout
    assert "    password=Sup3rSecret\n" in run("config", "show", "rsyncd", "--show-secrets").stdout
    doc = json.loads(run("config", "--show-secrets", "printjson", "rsyncd").stdout)
    assert doc["props"]["password"] == "Sup3rSecret"
    assert run("config", "getprop", "rsyncd", "password").stdout == "Sup3rSecret\n"   # scripts read it
    history = (root.log_dir / "config-history.log").read_text()
    assert "Sup3rSecret" not in history


def test_empty_secret_is_shown_empty(root, run):
    assert "    password=\n" in run("config", "show", "rsyncd").stdout


# ------------------------------------------------------------------------------------------------ defaults
def test_fresh_root_is_initialised_by_the_first_command(root, run):
    assert not (root.db_dir / "configuration").exists()
    cp = run("config", "setprop", "hotsync", "role", "master")
    assert cp.returncode == 0, cp.stderr
    assert run("config", "getprop", "hotsync", "interval").stdout == "15\n"
    assert run("config", "getprop", "rsyncd", "TCPPort").stdout == "873\n"


def test_a_first_read_shows_the_defaults_and_creates_nothing(root, run):
    assert run("config", "getprop", "hotsync", "status").stdout == "enabled\n"
    assert run("config", "show", "hotsync").stdout.startswith("hotsync=configuration\n")
    assert run("db", "configuraton", "show").returncode == 1             # a misspelt database: nothing to show
    assert list(root.path.iterdir()) == []                                 # and nothing was created
    run("config", "setprop", "hotsync", "role", "master", check=True)     # the first write creates it
    assert (root.db_dir / "configuration").is_file()


def test_defaults_never_overwrite_and_force_overwrites(root, run):
    from hotsync_events.configdb import schema
    from hotsync_events.configdb import open_db

    run("config", "setprop", "hotsync", "interval", "60", check=True)
    spec = root.state_dir / "schema/configuration/forcer.spec"
    spec.parent.mkdir(parents=True)
    spec.write_text("[hotsync]\nForced = string(default='always', force=True)\nSoft = string(default='x')\n")
    run("config", "setprop", "hotsync", "Forced", "mine", "Soft", "mine", check=True)
    db = open_db("configuration", root)
    schema.apply_defaults(db, schema.load(root, "configuration"))   # what every event does first
    assert run("config", "getprop", "hotsync", "interval").stdout == "60\n"
    assert run("config", "getprop", "hotsync", "Soft").stdout == "mine\n"
    assert run("config", "getprop", "hotsync", "Forced").stdout == "always\n"


def test_broken_schema_is_an_error_not_a_traceback(root, run):
    run("config", "keys", check=True)
    spec = root.state_dir / "schema/configuration/clash.spec"
    spec.parent.mkdir(parents=True)
    spec.write_text("[hotsync]\nrole = string()\n")
    for args in (["setprop", "hotsync", "role", "x"], ["show", "rsyncd"]):
        cp = run("config", *args)
        assert cp.returncode == 4 and "Traceback" not in cp.stderr
        assert "core" in cp.stderr and "clash" in cp.stderr and "role" in cp.stderr


def test_bytes_that_are_not_utf8_round_trip(root, run):
    """A value from a shell in another locale is stored and given back byte for byte."""
    import subprocess

    cfg = _config().encode()
    env = {**os.environ, "HOTSYNC_ROOT": str(root.path)}
    cp = subprocess.run([cfg, b"set", b"legacy", b"thing", b"owner", b"Jos\xe9 \xff"], env=env, capture_output=True)
    assert cp.returncode == 0, cp.stderr
    cp = subprocess.run([cfg, b"getprop", b"legacy", b"owner"], env=env, capture_output=True)
    assert cp.stdout == b"Jos\xe9 \xff\n"
    assert b"owner|Jos\xe9 \xff" in (root.db_dir / "configuration").read_bytes()


@pytest.mark.parametrize("cmd", [["config", "show"], ["config", "printjson"], ["hotsync", "plugins"]])
def test_reader_that_goes_away_is_no_traceback(root, cmd):
    """`config show | head -1`: the pipe closes early; no traceback, and config says it is done."""
    import subprocess

    from conftest import command

    from hotsync_events.configdb import open_db

    db = open_db("configuration", root)
    with db.transaction() as txn:
        for i in range(3000):
            txn.set(f"k{i:05d}", "thing", {"v": "x" * 40})
    p = subprocess.Popen([command(cmd[0]), *cmd[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()          # gone before the command writes a byte
    _, err = p.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err
    assert p.returncode == (0 if cmd[0] == "config" else 141)
