"""Injection: every prop that reaches a rendered file, fed newlines, brackets, comments and shell syntax.

Each value is refused at ``config setprop`` or rendered harmlessly: the rendered rsyncd.conf, secrets,
stunnel configurations and cron file parse into exactly the intended sections and keys, no command runs
a payload (the canary file never appears), and the daemon serves no module but ``hotsync`` and ``hotsync-peer`` (and, while pairing, ``hotsync-pair``).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from sync_pair import PASSWORD, Pair, cli

pytestmark = pytest.mark.skipif(not (shutil.which("rsync") and (shutil.which("stunnel4") or shutil.which("stunnel"))),
                                reason="needs rsync and stunnel4")

CANARY = "/tmp/hotsync-injection-canary"
PAYLOADS = ["ok\n[evil]\npath = /", "[evil]", "#comment", "a;b", f"$(touch {CANARY})", "1 # 2",
            "%RSYNC_USER_NAME%", "1\r2"]
RENDERED = {
    "hotsync": ["MasterHost", "SlaveHost", "MasterFingerprint", "port", "timeout", "interval", "MailTo", "SmartHost",
                "bwlimit"],
    "rsyncd": ["password", "TCPPort"],
}
RSYNCD_KEYS = {"reverse lookup", "log file", "lock file", "comment", "path", "use chroot", "munge symlinks",
               "insecure links", "numeric ids", "read only", "write only", "list", "uid", "gid", "auth users",
               "secrets file", "strict modes", "auth digest", "hosts allow", "hosts deny", "max connections",
               "timeout", "refuse options", "exclude from", "filter", "incoming chmod", "pre-xfer exec", "post-xfer exec",
               "early exec"}
STUNNEL_KEYS = {"foreground", "pid", "syslog", "debug", "output", "client", "connect", "verifyPeer", "CAfile",
                "CApath", "requireCert", "sslVersionMin", "socket", "TIMEOUTconnect", "TIMEOUTidle", "TIMEOUTbusy",
                "TIMEOUTclose", "accept", "cert", "key", "sni", "exec", "execArgs", "protocol"}


def parse_conf(text: str, comment: str, keys: set, sections: set) -> dict:
    """A strict parser: blank lines, comments, ``[section]`` of *sections*, ``key = value`` of *keys*."""
    out: dict = {}
    section = ""
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith(comment):
            continue
        if s.startswith("["):
            assert s[1:-1] in sections and s.endswith("]"), f"unexpected section line {line!r}"
            section = s[1:-1]
            continue
        key, sep, value = s.partition("=")
        assert sep and key.strip() in keys, f"unexpected line {line!r}"
        out.setdefault(section, {}).setdefault(key.strip(), []).append(value.strip())
    return out


def check_rendered(root: Path) -> None:
    rsyncd = parse_conf((root / "etc/rsyncd.conf").read_text(), "#", RSYNCD_KEYS, {"hotsync", "hotsync-peer"})
    assert set(rsyncd) <= {"", "hotsync", "hotsync-peer"}
    pair = parse_conf((root / "etc/rsyncd-pair.conf").read_text(), "#", RSYNCD_KEYS, {"hotsync-pair"})
    assert set(pair) <= {"", "hotsync-pair"}
    secrets = [ln for ln in (root / "etc/rsyncd.secrets").read_text().splitlines() if ln and not ln.startswith("#")]
    assert len(secrets) <= 1 and all(ln.startswith("hotsyncuser:") for ln in secrets)
    for conf in ("etc/stunnel/hotsync.conf", "etc/stunnel/hotsync-client.conf", "etc/stunnel/hotsync-pair-client.conf"):
        parse_conf((root / conf).read_text(), ";", STUNNEL_KEYS, {"hotsync", "hotsync-pair"})
    cron = [ln for ln in (root / "etc/cron.d/hotsync").read_text().splitlines() if ln and not ln.startswith("#")]
    assert len(cron) <= 1
    for ln in cron:
        # the interpreter's path is shell-quoted when it holds a space (a venv in such a checkout)
        assert re.fullmatch(r"[0-9*/ ,]+ root (\S+|'[^']+') -m hotsync_events\.cli\.hotsync --root \S+ sync "
                            r"--scheduled >/dev/null",
                            ln), ln
    assert not Path(CANARY).exists()


@pytest.fixture
def slave_and_master(tmp_path):
    p = Pair(tmp_path)
    try:
        yield p.pair()
    finally:
        p.close()
        Path(CANARY).unlink(missing_ok=True)


def test_every_rendered_prop_refuses_or_renders_harmlessly(slave_and_master):
    p = slave_and_master
    accepted = []
    for key, props in RENDERED.items():
        for prop in props:
            before = {r: cli("config", "getprop", key, prop, root=r).stdout for r in (p.slave, p.master)}
            for value in PAYLOADS:
                cp = cli("config", "setprop", key, prop, value, root=p.slave)     # one schema for both roots
                if cp.returncode != 0:
                    assert cp.stderr.strip(), f"{key} {prop}={value!r} refused without a message"
                    continue
                accepted.append((key, prop, value))
                for root in (p.slave, p.master):
                    cli("config", "setprop", key, prop, value, root=root)
                    cli("signal-event", "nethserver-hotsync-save", root=root)
                    check_rendered(root)
            for root in (p.slave, p.master):
                cli("config", "setprop", key, prop, before[root].rstrip("\n"), root=root)
                assert cli("config", "getprop", key, prop, root=root).stdout == before[root]
    # only the password takes such values (it is one line of printable text), and it renders as one line
    assert {(k, pr) for k, pr, _ in accepted} <= {("rsyncd", "password")}, accepted
    for root in (p.slave, p.master):
        assert cli("signal-event", "nethserver-hotsync-save", root=root).returncode == 0
        check_rendered(root)


def test_a_password_full_of_syntax_works_end_to_end(slave_and_master):
    p = slave_and_master
    pw = f"pa;ss #[x] $(touch {CANARY}) `id` %RSYNC_USER_NAME% \\n"
    for root in (p.slave, p.master):
        assert cli("config", "setprop", "rsyncd", "password", pw, root=root).returncode == 0
        assert cli("signal-event", "nethserver-hotsync-save", root=root).returncode == 0
    assert (p.slave / "etc/rsyncd.secrets").read_text() == f"hotsyncuser:{pw}\n"
    p.wait_listening()
    (p.master / "srv/d").mkdir(parents=True)
    (p.master / "srv/d/f").write_text("f\n")
    p.include("/srv/d")
    cp = p.sync()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert (p.slave / "srv/d/f").read_text() == "f\n"
    assert not Path(CANARY).exists()


def test_a_raw_db_edit_is_caught_at_render_time(slave_and_master):
    """A value that bypassed `setprop` (edited into the db file) fails the render; the old file stays."""
    from hotsync_events.configdb import open_db
    from hotsync_events.paths import Root

    p = slave_and_master
    good = (p.slave / "etc/rsyncd.conf").read_text()
    db = open_db("configuration", Root(p.slave), validate=False)
    db.setprop("hotsync", {"MasterHost": "127.0.0.1 [evil]"})
    cp = cli("signal-event", "nethserver-hotsync-save", root=p.slave)
    assert cp.returncode != 0 and "MasterHost" in cp.stdout + cp.stderr
    assert (p.slave / "etc/rsyncd.conf").read_text() == good
    db.setprop("hotsync", {"MasterHost": "127.0.0.1"})


def test_no_module_but_hotsync_is_served(slave_and_master):
    """Asking the slave for any other module (or the module list) gets nothing."""
    import os
    import subprocess

    p = slave_and_master
    p.include("/srv")
    (p.master / "srv").mkdir()
    assert p.sync().returncode == 0
    env = {**os.environ, "RSYNC_PASSWORD": PASSWORD,
           "RSYNC_CONNECT_PROG": f"exec {shutil.which('stunnel4') or shutil.which('stunnel')} "
                                 f"{p.master}/etc/stunnel/hotsync-client.conf"}
    listing = subprocess.run(["rsync", "rsync://hotsyncuser@x/"], capture_output=True, text=True, env=env, timeout=30)
    assert "hotsync" not in listing.stdout
    other = subprocess.run(["rsync", "rsync://hotsyncuser@x/etc/"], capture_output=True, text=True, env=env, timeout=30)
    assert other.returncode != 0 and "Unknown module" in other.stderr
