"""Bash completion for config, db, signal-event and hotsync, driven through a real bash (and tmux)."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hotsync_events.cli.complete import candidates, script_path, split_line

BIN = Path(sys.executable).parent
SCRIPT = script_path()


def bash_complete(root, line: str) -> list:
    """Source the installed script in a real bash, set COMP_* as readline would, call the function."""
    prog = f"""
        source {shlex.quote(str(SCRIPT))}
        COMP_LINE={_q(line)}
        COMP_POINT=${{#COMP_LINE}}
        read -r -a COMP_WORDS <<< "$COMP_LINE"
        [[ $COMP_LINE == *' ' ]] && COMP_WORDS+=("")
        COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
        spec=$(complete -p "${{COMP_WORDS[0]}}")
        func=${{spec#*-F }}; func=${{func%% *}}
        "$func" "${{COMP_WORDS[0]}}" "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HOTSYNC_ROOT": str(root.path)}
    cp = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog], capture_output=True, text=True, env=env,
                        timeout=60)
    assert cp.returncode == 0, cp.stderr
    return [w for w in cp.stdout.splitlines() if w]


def _q(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


@pytest.fixture
def croot(root, run):
    run("config", "setprop", "hotsync", "role", "master", check=True)
    run("config", "set", "myapp", "service", "status", "enabled", check=True)
    (root.etc_dir / "events" / "nethserver-hotsync-save").mkdir(parents=True)
    (root.etc_dir / "events" / "myapp-update").mkdir(parents=True)
    return root


def test_script_registers_all_four_commands():
    cp = subprocess.run(["bash", "--norc", "-c", f"source {shlex.quote(str(SCRIPT))}; for c in config db signal-event hotsync; "
                         "do complete -p $c; done"], capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    for c in ("config", "db", "signal-event", "hotsync"):
        assert f"complete -F _hotsync_complete {c}" in cp.stdout


def test_config_keys_props_values(croot):
    assert bash_complete(croot, "config getprop hot") == ["hotsync"]
    assert bash_complete(croot, "config getprop hotsync ro") == ["role"]
    assert bash_complete(croot, "config setprop hotsync role ") == ["master", "slave"]
    assert bash_complete(croot, "config setprop hotsync status en") == ["enabled"]
    assert "MaxDeletePercent" in bash_complete(croot, "config setprop hotsync role master M")
    assert "role" not in bash_complete(croot, "config setprop hotsync role master ")
    assert bash_complete(croot, "config set myapp ") == ["service", "configuration"]
    assert bash_complete(croot, "config info rsyncd pass") == ["password"]
    assert bash_complete(croot, "config history my") == ["myapp"]


def test_config_verbs_and_options(croot):
    verbs = bash_complete(croot, "config ")
    assert {"getprop", "setprop", "info", "search", "history", "show"} <= set(verbs)
    assert "__complete" not in verbs
    assert bash_complete(croot, "config search --") == [
        "--key", "--prop", "--value", "--non-default", "--json", "--show-secrets"]
    assert bash_complete(croot, "config search --key hots") == ["hotsync"]
    assert bash_complete(croot, "config history --since ") == ["10m", "1h", "1d", "7d", "today", "yesterday"]


def test_db_names_and_secret_values_not_offered(croot, run):
    run("config", "setprop", "rsyncd", "password", "Compl-Secret-1", check=True)
    assert bash_complete(croot, "db conf") == ["configuration"]
    assert bash_complete(croot, "db configuration getprop rsy") == ["rsyncd"]
    assert bash_complete(croot, "config setprop rsyncd password ") == []


def test_root_option_completes_directories(croot, tmp_path):
    (tmp_path / "otherroot").mkdir()
    got = bash_complete(croot, f"config --root {tmp_path}/oth")
    assert got == [f"{tmp_path}/otherroot"]


def test_root_in_the_line_wins(croot, run, tmp_path):
    other = tmp_path / "r2"
    run("config", "--root", str(other), "set", "elsewhere", "thing", check=True)
    assert bash_complete(croot, f"config --root {other} getprop els") == ["elsewhere"]


def test_signal_event_and_hotsync(croot):
    assert "nethserver-hotsync-save" in bash_complete(croot, "signal-event nethserver-")
    assert "myapp-update" in bash_complete(croot, "signal-event ")
    assert bash_complete(croot, "signal-event --list my") == ["myapp-update"]
    assert bash_complete(croot, "signal-event myapp-update ") == []
    assert "--timeout" in bash_complete(croot, "signal-event --")
    assert "plugins" in bash_complete(croot, "hotsync ")
    assert "--json" in bash_complete(croot, "hotsync plugins --")


def test_split_line_and_api(croot):
    assert split_line("config getprop 'hot") == (["config", "getprop"], "hot")
    assert split_line("config getprop ") == (["config", "getprop"], "")
    assert candidates("/usr/bin/config", "config getprop hotsync ro") == ["role"]
    assert candidates("unknown-cmd", "unknown-cmd x") == []


def test_script_printed_by_config(run):
    cp = run("config", "__complete", "--script", check=True)
    assert cp.stdout == SCRIPT.read_text()
    assert "complete -F _hotsync_complete config db signal-event hotsync" in cp.stdout


@pytest.mark.skipif(not shutil.which("tmux"), reason="tmux is not installed")
def test_tab_in_an_interactive_bash(croot, tmp_path):
    """The real thing: an interactive bash in tmux, the script sourced, TAB pressed."""
    sock = str(tmp_path / "tmux.sock")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HOTSYNC_ROOT": str(croot.path), "PS1": "$ "}
    rc = tmp_path / "bashrc"
    rc.write_text(f"source {shlex.quote(str(SCRIPT))}\nPS1='$ '\n")
    (tmp_path / "pickme-root").mkdir()
    subprocess.run(["tmux", "-S", sock, "new-session", "-d", "-x", "200", "-y", "20",
                    f"bash --noprofile --rcfile {rc} -i"], env=env, check=True, timeout=30)

    def tab(keys: str, expect: str) -> None:
        subprocess.run(["tmux", "-S", sock, "send-keys", "C-u", keys, "Tab"], check=True, timeout=10)
        screen = ""
        for _ in range(80):
            time.sleep(0.1)
            screen = subprocess.run(["tmux", "-S", sock, "capture-pane", "-p"], capture_output=True, text=True,
                                    timeout=10).stdout
            if any(line.rstrip().endswith(expect) for line in screen.splitlines()):
                return
        raise AssertionError(f"after {keys!r} TAB, expected {expect!r} on screen:\n{screen}")

    try:
        tab("config setprop hotsync rol", "$ config setprop hotsync role")
        tab("config setprop hotsync role ma", "$ config setprop hotsync role master")
        # bash splits words at ':' and '=': the script hands back only what follows them
        tab("config setprop hotsync SmartHost localhost:", "$ config setprop hotsync SmartHost localhost:25")
        tab(f"config --root={tmp_path}/pickme-r", f"$ config --root={tmp_path}/pickme-root")
        tab("signal-event myapp-up", "$ signal-event myapp-update")
    finally:
        subprocess.run(["tmux", "-S", sock, "kill-server"], timeout=10)
