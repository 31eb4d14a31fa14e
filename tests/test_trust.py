"""The ways in around a push, each tried the way it was found, and shown to fail (docs/security.md).

Two real roots on loopback, paired as the docs say (mutual TLS), real rsync, stunnel and openssl. Each
attack runs as found -- a plain rsync client holding the password and the master's own TLS client, a local
user's plaintext and forged PROXY header, a TLS man in the middle at first contact, a file name that looks
like the fence marker, a push without an epoch, a slow push in flight during a promote, ``nobody`` reading a
dump or holding a lock -- and each test asserts that it failed and that slave, master and data are intact.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sync_pair import PASSWORD, Pair, cli, free_port, tree

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runuser, ownership, nobody)"),
              pytest.mark.skipif(not (shutil.which("rsync") and shutil.which("stunnel4") and shutil.which("openssl")),
                                 reason="needs rsync, stunnel4 and openssl")]

CANARY = Path("/tmp/hotsync-trust-canary")


@pytest.fixture
def pair(tmp_path, smtp):
    os.chmod(tmp_path, 0o755)
    p = Pair(tmp_path, smtp_port=smtp.port)
    try:
        p.pair()
        (p.master / "srv/data").mkdir(parents=True)
        (p.master / "srv/data/ok").write_text("ok\n")
        p.include("/srv/data")
        assert p.sync().returncode == 0
        p.settled()
        yield p
    finally:
        p.close()
        CANARY.unlink(missing_ok=True)


def as_nobody(*argv: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "nobody", "--", *argv], capture_output=True, text=True, timeout=30,
                          input=input)


def rsync_as_master(pair: Pair, *args: str, module: str = "hotsync", early: str | None = "sync",
                    epoch: int = 0, dest: str = "", inc_recursive: bool = False,
                    base: tuple[str, ...] = ("-a", "--no-D", "--relative")) -> subprocess.CompletedProcess:
    """A plain rsync client holding the password and the master's own TLS client (certificate and key):
    what a thief of both, or a tool of the sysadmin's own, would run. It knows the slave refuses incremental
    recursion (``--no-inc-recursive``, as a HotSync master sends) unless *inc_recursive*."""
    env = {**os.environ, "RSYNC_PASSWORD": PASSWORD,
           "RSYNC_CONNECT_PROG": f"exec {shutil.which('stunnel4')} {pair.master}/etc/stunnel/hotsync-client.conf"}
    extra = []
    if early is not None:
        f = pair.master / f"attack.early.{secrets.token_hex(4)}"
        f.write_text(f"hotsync-epoch {epoch} kind={early} nonce={secrets.token_hex(16)}\n")
        extra.append(f"--early-input={f}")
    extra += [] if inc_recursive else ["--no-inc-recursive"]
    argv = ["rsync", *base, "--stderr=client", *extra, *args, f"rsync://hotsyncuser@x/{module}/{dest}"]
    deadline = time.monotonic() + 20
    while True:        # the slave serves one session at a time: the previous one may still run its hook
        cp = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        if cp.returncode != 5 or "max connections" not in cp.stderr or time.monotonic() > deadline:
            return cp
        time.sleep(0.1)


def slave_state(pair: Pair) -> dict:
    """What a push must never change: the slave's own state, hashed."""
    out = {}
    for rel in ("etc/rsyncd.secrets", "etc/rsyncd.conf", "etc/stunnel/hotsync.conf", "var/lib/hotsync/db/configuration",
                "var/lib/hotsync/sync/epoch.json", "var/lib/hotsync/peer/configuration",
                "var/lib/hotsync/peer/manifest.json"):
        p = pair.slave / rel
        out[rel] = p.read_bytes() if p.exists() else None
    return out


def test_options_that_reach_past_the_filter_are_refused(pair):
    """The options a reviewer found that write where the daemon's filter does not look, each run with a plain
    rsync client holding the password and the master's TLS client: a partial directory outside the module's
    shipped paths (a cron job), a backup folder through a link the push itself sent, --mkpath with an
    uncleaned destination, and popt's next-argument expansion, which rewrites a value after the hook read it.
    The slave takes only the arguments a HotSync master sends (sync.xferargs); nothing lands."""
    M = pair.master
    (M / "srv/data/h").write_text(f"* * * * * root touch {CANARY}\n")
    (M / "var/lib/hotsync/kept").mkdir(parents=True, exist_ok=True)
    (M / "var/lib/hotsync/kept/ln").symlink_to("../../../../etc")
    before = slave_state(pair)
    attacks = {
        "partial directory": (["--delay-updates", "--partial-dir=../../etc/cron.d"], f"{M}/./srv/data/h", ""),
        "backup folder through a link": (["--backup", "--backup-dir=/var/lib/hotsync/kept/ln/nologin"],
                                         f"{M}/./srv/data/h", ""),
        "a link into the backup area": ([], f"{M}/./var/lib/hotsync/kept/ln", ""),
        "mkpath": (["--mkpath"], f"{M}/srv/data/./h", "srv/evil/../data/new/"),
        "popt's next argument": (["-M--timeout=!#:+", "-M30"], f"{M}/./srv/data/h", ""),
    }
    for what, (options, source, dest) in attacks.items():
        cp = rsync_as_master(pair, *options, source, dest=dest)
        assert cp.returncode != 0, (what, cp.stdout + cp.stderr)
        assert not (pair.slave / "etc/cron.d/h").exists(), what
        assert not (pair.slave / "etc/nologin").exists(), what
        assert not (pair.slave / "srv/evil").exists(), what
        assert not (pair.slave / "var/lib/hotsync/kept/ln").is_symlink(), what
        assert not (pair.slave / "srv/data/h").exists(), what
    reasons = [r["reason"] for r in [pair.status(pair.slave)["last_refused"]]]
    assert reasons and "HotSync" in reasons[0]
    assert slave_state(pair) == before
    # the master's own push of the same file goes through, and its first push after a re-pair keeps aside
    assert pair.sync().returncode == 0
    assert (pair.slave / "srv/data/h").exists()


def test_a_link_a_push_stored_leads_nowhere(pair):
    """A link is stored munged on the slave (sync.symlinks): the slave's data module is chrooted in its root,
    where the chroot confines nothing, and rsync followed a link a push had stored wherever a later session's
    path went through it. Three attacks a reviewer found, each with a plain rsync client holding the password
    and the master's TLS client and options the slave takes: a destination through a link to /etc, the
    deletion of a listed name whose directory is not in the list (through a link to /var/lib/hotsync), and a
    link in place of the partial directory (/etc/crontab written). The promote writes links back
    (test_promote)."""
    M, S = pair.master, pair.slave
    (S / "etc").mkdir(exist_ok=True)
    (S / "etc/crontab").write_text("ORIGINAL\n")
    (M / "srv/data/link").symlink_to("/etc")
    (M / "srv/data/hl").symlink_to("../../var/lib/hotsync")
    (M / "cron.d").mkdir()
    (M / "cron.d/evil").write_text(f"* * * * * root touch {CANARY}\n")
    before = slave_state(pair)
    full = ("-aHAX", "--no-D", "--relative", "--numeric-ids", "--delete", "--delay-updates", "--partial-dir=.hotsync-partial",
            "--modify-window=-1")
    cp = rsync_as_master(pair, f"{M}/./srv/data/link", f"{M}/./srv/data/hl", base=full)
    assert cp.returncode == 0, cp.stderr                 # links are data: they land, munged
    assert os.readlink(S / "srv/data/link") == "/rsyncd-munged//etc"
    # 1. a destination through the link
    cp = rsync_as_master(pair, f"{M}/./cron.d/evil", dest="srv/data/link/", base=full)
    assert not (S / "etc/cron.d/evil").exists() and not (S / "cron.d").exists(), cp.stderr
    # 2. a deletion through the link: the listed name's directory is not in the list
    empty = M / "empty"
    empty.mkdir()
    assert (S / "var/lib/hotsync/db/configuration").exists()
    cp = rsync_as_master(pair, f"{empty}/./srv/data/hl/db/configuration", "--delete-missing-args", "--force",
                         base=("-lHogtpAX", "-d", "--relative", "--numeric-ids", "--delete"))
    assert (S / "var/lib/hotsync/db/configuration").exists(), cp.stdout + cp.stderr
    # 3. a link in place of the partial directory, and a file that would wait there
    p3 = M / "p3/srv/data"
    p3.mkdir(parents=True)
    (p3 / ".hotsync-partial").symlink_to("../../etc")
    (p3 / "crontab").write_text(f"* * * * * root touch {CANARY}\n")
    cp = rsync_as_master(pair, f"{M}/p3/./srv/data", base=full)
    assert (S / "etc/crontab").read_text() == "ORIGINAL\n", cp.stderr
    assert slave_state(pair) == before
    assert not CANARY.exists()


def test_the_slaves_own_links_and_rsyncd_munged_are_no_way_in(pair):
    """A third review: a /rsyncd-munged made on the slave would make every munged link lead somewhere (the
    slave refuses data sessions while it exists, and no manifest may name it); a destination inside the
    module went through the slave's own links (/var/run -> ../run: only the module's root is taken); a shipped
    path under a link of the slave itself would be written where it leads (refused, the link named)."""
    M, S = pair.master, pair.slave
    (S / "rsyncd-munged").mkdir()
    (M / "srv/data/a").write_text("a\n")
    cp = pair.sync()
    assert cp.returncode != 0 and not (S / "srv/data/a").exists(), cp.stdout + cp.stderr
    assert "security issue" in cp.stdout + cp.stderr          # rsync's own check, before the slave's hook
    (S / "rsyncd-munged").rmdir()
    assert pair.sync().returncode == 0 and (S / "srv/data/a").exists()
    # the slave's own link on the way of a destination
    (S / "var/run").parent.mkdir(parents=True, exist_ok=True)
    (S / "var/run").symlink_to("../etc")
    (M / "x").mkdir()
    (M / "x/evil").write_text(f"* * * * * root touch {CANARY}\n")
    cp = rsync_as_master(pair, f"{M}/x/./evil", dest="var/run/cron.d/")
    assert cp.returncode != 0 and "destination" in cp.stderr, cp.stderr
    assert not (S / "etc/cron.d/evil").exists()
    # a shipped path under the slave's own link
    (S / "srv/linked").symlink_to("../etc")
    (M / "srv/linked/x").mkdir(parents=True)
    (M / "srv/linked/x/evil").write_text("evil\n")
    pair.include("/srv/data", "/srv/linked/x")
    cp = pair.sync()
    assert cp.returncode != 0 and not (S / "etc/x").exists(), cp.stdout + cp.stderr
    assert "lies under the link /srv/linked -> ../etc" in pair.status(S)["last_refused"]["reason"]
    assert not CANARY.exists()


# ------------------------------------------------------------------------------------------- finding 1b
def test_a_refused_directory_is_never_made_not_even_empty(pair):
    """rsync's incremental recursion checks a directory against the daemon's filter with a flag it gets wrong
    (3.2 to 3.5 at least), so a client that names a refused path under a shipped parent (``srv/evil/x`` while
    ``/srv/data`` is shipped; ``etc/nologin/x`` would lock non-root users out) had that directory made, empty,
    before it was refused. The slave now refuses a session that leaves rsync free to use incremental
    recursion, before anything is written; without it the daemon's filter refuses the directory unmade."""
    M = pair.master
    (M / "srv/evil/sub").mkdir(parents=True)
    (M / "srv/evil/sub/x").write_text("x\n")
    (M / "srv/data/new").write_text("new\n")
    before = slave_state(pair)
    cp = rsync_as_master(pair, f"{M}/./srv/evil/sub/x", f"{M}/./srv/data/new", inc_recursive=True)
    assert cp.returncode != 0 and "incremental recursion" in cp.stderr, cp.stdout + cp.stderr
    assert not (pair.slave / "srv/evil").exists() and not (pair.slave / "srv/data/new").exists(), cp.stderr
    assert "incremental recursion" in pair.status(pair.slave)["last_refused"]["reason"]
    # the same names without incremental recursion: the daemon refuses the directory and makes nothing of it
    cp = rsync_as_master(pair, f"{M}/./srv/evil/sub/x", f"{M}/./srv/data/new")
    assert 'refused to receive directory "srv/evil"' in cp.stderr, cp.stderr
    assert not (pair.slave / "srv/evil").exists(), cp.stdout + cp.stderr
    assert (pair.slave / "srv/data/new").read_text() == "new\n"
    assert slave_state(pair) == before
    # and HotSync's own pushes, full and real-time, go through
    (M / "srv/data/later").write_text("later\n")
    assert pair.sync().returncode == 0
    assert (pair.slave / "srv/data/later").read_text() == "later\n"


# ------------------------------------------------------------------------------------------- finding 1
def test_a_password_holder_cannot_write_the_slaves_own_state(pair):
    """A plain rsync client with the password and the master's TLS client writes nothing the slave refuses:
    its cron, epoch, secrets, templates-custom, events, its peer copy; nor anything outside the manifest."""
    M = pair.master
    evil = {"etc/cron.d/evil": f"* * * * * root touch {CANARY}\n",
            "var/lib/hotsync/sync/epoch.json": '{"epoch": 999999}\n',
            "etc/rsyncd.secrets": "hotsyncuser:stolen\n",
            "etc/hotsync/templates-custom/etc/rsyncd.conf/99evil": f'<% open("{CANARY}", "w") %>\n',
            "etc/hotsync/events/nethserver-hotsync-save/S99evil": f"#!/bin/sh\ntouch {CANARY}\n",
            "var/lib/hotsync/peer/configuration": "hotsync=configuration|role|slave\n",
            "usr/local/bin/evil": "#!/bin/sh\n",
            "srv/outside/x": "not in the manifest\n"}
    own = {rel: (M / rel).read_bytes() for rel in evil if (M / rel).is_file()}     # the master's own state files
    for rel, text in evil.items():
        (M / rel).parent.mkdir(parents=True, exist_ok=True)
        (M / rel).write_text(text)
    os.chmod(M / "etc/hotsync/events/nethserver-hotsync-save/S99evil", 0o755)
    before = slave_state(pair)
    cp = rsync_as_master(pair, *[f"{M}/./{rel}" for rel in evil])
    for rel in evil:        # the attack's files sat where the master keeps its own (its epoch): put them back
        if rel in own:
            (M / rel).write_bytes(own[rel])
        elif rel.startswith("var/lib/hotsync/sync/"):
            (M / rel).unlink()
    assert not any((pair.slave / rel).exists() and rel not in ("etc/rsyncd.secrets", "var/lib/hotsync/sync/epoch.json",
                                                              "var/lib/hotsync/peer/configuration")
                   for rel in evil), cp.stdout + cp.stderr
    assert slave_state(pair) == before
    # nor by naming a deeper destination: the slave takes none but the module's root (and the daemon's filter
    # judges the destination and each name by its path from the module's root)
    (M / "plain").mkdir()
    (M / "plain/evil").write_text(f"* * * * * root touch {CANARY}\n")
    for dest in ("etc/cron.d/", "srv/data/../../etc/cron.d/", "srv/elsewhere/", "etc/nologin/"):
        cp = rsync_as_master(pair, f"{M}/plain/./evil", dest=dest)
        assert cp.returncode != 0 and "destination" in cp.stderr, (dest, cp.stderr)
        assert not (pair.slave / dest / "evil").exists(), (dest, cp.stdout + cp.stderr)
    assert not (pair.slave / "srv/elsewhere").exists() and not (pair.slave / "etc/nologin").exists()
    assert slave_state(pair) == before
    # nor through the peer channel: a manifest naming a refused area is refused whole, the good copy stays
    staged = M / "attack-peer"
    staged.mkdir()
    (staged / "manifest.json").write_text(json.dumps({"format": 1, "includes": ["/etc/cron.d", "/srv/data"]}))
    (staged / "configuration").write_text("hotsync=configuration|role|master\n")
    cp = rsync_as_master(pair, f"{staged}/", module="hotsync-peer", early="peer", base=("-rlpt",))
    assert cp.returncode == 0, cp.stderr      # the copy landed in the staging directory, where nothing reads it
    pair.settled()
    assert slave_state(pair) == before
    st = pair.status(pair.slave)
    assert st["peer_refused"] and "/etc/cron.d" in " ".join(st["peer_refused"]["problems"])
    # the next data push says why, so the master learns it; its own next peer copy mends it
    (M / "srv/data/after").write_text("after\n")
    cp = pair.sync()
    assert cp.returncode == 1 and "peer copy was refused" in cp.stdout + cp.stderr, cp.stdout + cp.stderr
    # the save event and the templates run: nothing planted runs
    assert pair.save(pair.slave).returncode == 0
    assert not CANARY.exists()
    from hotsync_events.paths import Root
    from hotsync_events.sync.status import update_status

    update_status(Root(M), lambda d: d.pop("peer_sent", None))       # the master sends its copy again
    assert pair.sync().returncode == 0
    assert (pair.slave / "srv/data/after").exists() and not pair.status(pair.slave).get("peer_refused")


#: what a review planted on a slave through a real pair (each runs code as root, or lets anyone become root)
ROOT_CODE = {"etc/update-motd.d/00-x": f"#!/bin/sh\ntouch {CANARY}\n",
             "etc/tmpfiles.d/x.conf": "f /etc/cron.d/evil 0644 root root - * * * * * root true\n",
             "etc/yum.conf": "[main]\npluginpath=/srv/data/plugins\n",
             "usr/share/polkit-1/rules.d/00.rules": "polkit.addRule(function() { return polkit.Result.YES; });\n",
             "etc/default/ssh": "LD_PRELOAD=/srv/data/evil.so\n",
             "etc/rsyslog.d/x.conf": "*.* ^/srv/data/evil\n",
             "etc/sysconfig/httpd": "LD_PRELOAD=/srv/data/evil.so\n"}


def test_a_manifest_naming_what_runs_code_as_root_or_a_whole_system_tree_is_refused(pair):
    """A compromised master names places root reads code from (or a whole /etc) in its manifest: the slave
    refuses the manifest whole, and the files, pushed by a client with the password, land nowhere."""
    M = pair.master
    for rel, text in ROOT_CODE.items():
        (M / rel).parent.mkdir(parents=True, exist_ok=True)
        (M / rel).write_text(text)
    before = slave_state(pair)
    includes = ["/" + rel for rel in ROOT_CODE] + ["/etc", "/var/lib", "/srv/data"]
    staged = M / "attack-peer-root"
    staged.mkdir()
    (staged / "manifest.json").write_text(json.dumps({"format": 1, "includes": includes}))
    (staged / "configuration").write_text("hotsync=configuration|role|master\n")
    cp = rsync_as_master(pair, f"{staged}/", module="hotsync-peer", early="peer", base=("-rlpt",))
    assert cp.returncode == 0, cp.stderr
    pair.settled()
    problems = " ".join(pair.status(pair.slave)["peer_refused"]["problems"])
    for path in includes[:-1]:
        assert f"{path} is inside" in problems, (path, problems)
    cp = rsync_as_master(pair, *[f"{M}/./{rel}" for rel in ROOT_CODE])
    assert not any((pair.slave / rel).exists() for rel in ROOT_CODE), cp.stdout + cp.stderr
    assert slave_state(pair) == before


def test_a_session_is_the_kind_its_options_say(pair):
    """The kind a session's early input claims is checked against its options. A dry run claimed as a full
    sync would have cleared the slave's torn state (the promote's check) with nothing delivered; a real push
    claimed as a dry run wrote unrecorded, keeping nothing aside."""
    M = pair.master
    (M / "srv/data/claimed").write_text("written by a push that says it is a dry run\n")
    before = pair.status(pair.slave).get("last_received")
    cp = rsync_as_master(pair, f"{M}/./srv/data/claimed", early="dry")
    assert cp.returncode != 0 and "says it is a dry" in cp.stderr, cp.stderr
    assert not (pair.slave / "srv/data/claimed").exists()
    cp = rsync_as_master(pair, "-n", "--delete", f"{M}/./srv/data/", early="sync")
    assert cp.returncode != 0 and "says it is a sync" in cp.stderr, cp.stderr
    assert pair.status(pair.slave).get("last_received") == before


def test_no_setuid_file_file_capability_or_device_node_is_planted(pair):
    """The slave's data module runs as root: a setuid-root program, a file capability or a device node a push
    planted would let any local user become root, or read the disk. The master does not send device nodes
    nor special files (no -D) and the slave refuses a push that asks for them; files arrive without setuid and
    setgid bits and without security.capability; a shared folder keeps its setgid bit."""
    M = pair.master
    d = M / "srv/data/planted"
    d.mkdir()
    (d / "rootshell").write_bytes(Path("/bin/true").read_bytes())
    os.chmod(d / "rootshell", 0o6755)
    (d / "capped").write_bytes(Path("/bin/true").read_bytes())
    os.chmod(d / "capped", 0o755)
    subprocess.run(["setcap", "cap_setuid=ep", str(d / "capped")], check=True)
    os.mknod(d / "mem", 0o644 | stat.S_IFCHR, os.makedev(1, 1))
    os.mkfifo(d / "fifo")
    (d / "shared").mkdir()
    os.chmod(d / "shared", 0o2775)
    cp = pair.sync()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    S = pair.slave / "srv/data/planted"
    assert stat.S_IMODE(os.stat(S / "rootshell").st_mode) == 0o755
    assert subprocess.run(["getcap", str(S / "capped")], capture_output=True, text=True).stdout.strip() == ""
    assert not os.path.lexists(S / "mem") and not os.path.lexists(S / "fifo")
    assert stat.S_IMODE(os.stat(S / "shared").st_mode) == 0o2775
    cp = rsync_as_master(pair, f"{M}/./srv/data/planted/mem", base=("-a", "--relative"))   # asks for -D
    assert cp.returncode != 0 and "never sends" in cp.stderr, cp.stderr
    assert not os.path.lexists(S / "mem")


def test_the_master_never_sends_a_refused_area_and_says_which_line(pair):
    """The master's own lists naming the slave's refused areas: left out, reported by file and line, the rest
    pushed, and the run counted as failed until the line is fixed."""
    M = pair.master
    (M / "etc/cron.d").mkdir(parents=True, exist_ok=True)       # the master's own cron file is there already
    (M / "etc/cron.d/job").write_text("* * * * * root true\n")
    (M / "etc/hotsync/include.d/bad.include").write_text("/etc/cron.d\n/srv/other\n")
    (M / "srv/other").mkdir()
    (M / "srv/other/f").write_text("f\n")
    cp = pair.sync()
    out = cp.stdout + cp.stderr
    assert cp.returncode == 1 and "bad.include:1" in out and "/etc/cron.d" in out, out
    assert (pair.slave / "srv/other/f").exists() and not (pair.slave / "etc/cron.d/job").exists()
    paths = cli("hotsync", "paths", root=M)
    assert "bad.include:1" in paths.stdout + paths.stderr
    (M / "etc/hotsync/include.d/bad.include").write_text("/srv/other\n")
    assert pair.sync().returncode == 0


def test_promote_checks_the_peer_copy_against_the_schema(pair):
    """A master's configuration copy that this host's schema refuses is not applied without --force."""
    from hotsync_events.configdb import open_db
    from hotsync_events.paths import Root

    open_db("configuration", Root(pair.master), validate=False).setprop("hotsync", {"interval": "not a number"})
    (pair.master / "srv/data/b").write_text("b\n")
    assert pair.sync().returncode == 0
    pair.settled()
    cp = cli("hotsync-promote", "--dry-run", root=pair.slave)
    assert "does not pass this host's schema" in cp.stdout + cp.stderr and "interval" in cp.stdout + cp.stderr


# ------------------------------------------------------------------------------------------- finding 2
def test_no_plaintext_listener_for_local_users(pair):
    """The slave listens on its TLS port only: no rsync daemon to greet a local user, with or without a
    forged PROXY header; and the TLS port speaks TLS only."""
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if str(pair.slave).encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    pids.add(entry)
            except OSError:
                pass
    ss = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout.splitlines()
    ports = {line.split()[3].rsplit(":", 1)[1] for line in ss if any(f"pid={p}," in line for p in pids)}
    assert ports == {str(pair.port)}, ss
    probe = ("import socket,sys\n"
             f"s=socket.create_connection(('127.0.0.1',{pair.port}),2); s.settimeout(2)\n"
             "s.sendall(b'PROXY TCP4 127.0.0.1 127.0.0.1 40000 873\\r\\n@RSYNCD: 32.0 sha512\\n')\n"
             "try:\n  print(s.recv(64))\nexcept OSError as e:\n  print('closed', e)\n")
    cp = as_nobody(sys.executable, "-c", probe)
    assert b"@RSYNCD" not in cp.stdout.encode(), cp.stdout


def test_strangers_cannot_hold_the_masters_slots(pair):
    """Half-open TCP connections and TLS clients with unknown certificates, all kept open: the master's push
    still goes through (they never reach rsync, so they hold none of its connection slots)."""
    held = []
    try:
        for _ in range(4):
            held.append(socket.create_connection(("127.0.0.1", pair.port), timeout=5))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        for _ in range(2):
            raw = socket.create_connection(("127.0.0.1", pair.port), timeout=5)
            held.append(raw)
            try:
                held.append(ctx.wrap_socket(raw))         # no client certificate: refused at the handshake
            except (ssl.SSLError, OSError):
                pass
        (pair.master / "srv/data/while-held").write_text("x\n")
        cp = pair.sync()
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert (pair.slave / "srv/data/while-held").exists()
    finally:
        for s in held:
            s.close()


# ------------------------------------------------------------------------------------------- finding 3
class TLSManInTheMiddle:
    """A TLS proxy with a certificate of its own, between the master and the slave, recording every byte
    the master sends it in clear."""

    def __init__(self, workdir: Path, upstream_port: int) -> None:
        self.port = free_port()
        self.upstream = upstream_port
        self.seen = bytearray()
        cert, key = workdir / "mitm.crt", workdir / "mitm.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=mitm"],
                       check=True, capture_output=True)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.cert = cert.read_text()
        self.up_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.up_ctx.check_hostname, self.up_ctx.verify_mode = False, ssl.CERT_NONE
        self.up_ctx.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn) -> None:
        socks = [conn]
        try:
            down = self.ctx.wrap_socket(conn, server_side=True)
            socks.append(down)
            raw_up = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            socks.append(raw_up)
            up = self.up_ctx.wrap_socket(raw_up)
            socks.append(up)
            down.settimeout(5)
            up.settimeout(5)

            def pump(a, b, record: bool) -> None:
                try:
                    while data := a.recv(65536):
                        if record:
                            self.seen += data
                        b.sendall(data)
                except OSError:
                    pass

            back = threading.Thread(target=pump, args=(up, down, False), daemon=True)
            back.start()
            pump(down, up, True)
            back.join(10)
        except OSError:
            pass
        finally:
            for sock in socks:
                sock.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def test_man_in_the_middle_at_first_contact_learns_nothing(tmp_path):
    """Before any pin, a TLS man in the middle answers for the slave: nothing pins its certificate
    unattended (the schedule, a dry run, a script without the fingerprint), a person's fingerprint does
    not match it, the slave refuses it as a master, and it never sees a byte of data or of the login."""
    os.chmod(tmp_path, 0o755)
    p = Pair(tmp_path)
    S, M = p.slave, p.master
    try:
        p.config(S, "setprop", "rsyncd", "password", PASSWORD)
        p.config(S, "setprop", "hotsync", "role", "slave", "MasterHost", "127.0.0.1", "port", str(p.port))
        p.save(S)
        mitm = TLSManInTheMiddle(tmp_path, p.port)
        p.config(M, "setprop", "rsyncd", "password", PASSWORD)
        p.config(M, "setprop", "hotsync", "role", "master", "SlaveHost", "127.0.0.1", "port", str(mitm.port),
                 "realtime", "disabled", "timeout", "10")
        p.save(M)
        p.config(S, "setprop", "hotsync", "MasterFingerprint", p.fingerprint(M))
        p.save(S)
        (M / "srv/data").mkdir(parents=True)
        (M / "srv/data/secret").write_text("TOP-SECRET-PAYROLL\n")
        p.include("/srv/data")
        from hotsync_events.sync.tls import fingerprint, pin_path
        from hotsync_events.paths import Root

        for args in (("--scheduled",), ("--dry-run",), ()):       # cron, a dry run, a script: no terminal
            cp = p.sync(*args)
            assert cp.returncode != 0 or "--scheduled" in args, cp.stdout
            assert not pin_path(Root(M)).exists(), args
        cp = p.sync()
        assert "accept-fingerprint" in cp.stdout + cp.stderr and fingerprint(mitm.cert) in cp.stdout + cp.stderr
        # the person compares with the slave's own fingerprint: the man in the middle presents another
        cp = p.sync("--accept-fingerprint", p.fingerprint(S))
        assert cp.returncode != 0 and "nothing was pinned" in cp.stdout + cp.stderr
        assert not pin_path(Root(M)).exists()
        # even a careless person who pins the proxy's certificate: the slave refuses the proxy as a master, and
        # the proxy never learns the data (the master sends the certificate it may present, nothing else)
        cp = p.sync("--accept-fingerprint", fingerprint(mitm.cert))
        assert cp.returncode != 0
        mitm.close()
        assert b"TOP-SECRET-PAYROLL" not in mitm.seen
        assert not (S / "srv/data").exists()
    finally:
        p.close()


# ------------------------------------------------------------------------------------------- finding 4
def test_a_file_name_cannot_fence_the_master(pair):
    """A directory named like the fence marker, deep enough for rsync to print its name in an error: the
    master is not fenced, its epoch unchanged, its pushes go on."""
    top = pair.master / "srv/data/FENCED epoch=999999 since=1 host=evil"
    path = str(top)
    os.makedirs(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        for _ in range(22):                            # deeper than PATH_MAX, made one level at a time
            os.mkdir("x" * 200, dir_fd=fd)
            nfd = os.open("x" * 200, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as fh:
            fh.write("deep\n")
    finally:
        os.close(fd)
    cp = pair.sync()
    assert "FENCED epoch=999999" in cp.stdout + cp.stderr or cp.returncode != 0   # the name did travel in an error
    assert cli("config", "getprop", "hotsync", "status", root=pair.master).stdout.strip() != "fenced"
    assert cli("hotsync", "epoch", root=pair.master).stdout.strip() == "0"
    shutil.rmtree(top)
    (pair.master / "srv/data/after").write_text("after\n")
    assert pair.sync("--allow-deletions").returncode == 0
    assert (pair.slave / "srv/data/after").exists()


def test_only_an_authenticated_fence_is_believed():
    from hotsync_events.sync.fence import refusal, verified_marker

    rec = {"epoch": 5, "time": 1700000000, "host": "slave"}
    line = refusal(rec, nonce="ab" * 16, secret="Pair-secret-1")
    assert verified_marker(line, nonce="ab" * 16, secret="Pair-secret-1")["epoch"] == 5
    assert verified_marker(line, nonce="cd" * 16, secret="Pair-secret-1") is None        # replayed
    assert verified_marker(line, nonce="ab" * 16, secret="another-secret") is None       # forged
    assert verified_marker("FENCED epoch=999999 since=1 host=evil", nonce="ab" * 16, secret="Pair-secret-1") is None
    forged = line.replace("epoch=5", "epoch=6")
    assert verified_marker(forged, nonce="ab" * 16, secret="Pair-secret-1") is None


def test_a_wrong_epoch_is_corrected_by_a_person(pair):
    from hotsync_events.sync.fence import write_epoch
    from hotsync_events.paths import Root

    write_epoch(Root(pair.slave), 7, "a mistake")
    (pair.master / "srv/data/c").write_text("c\n")
    cp = pair.sync()
    assert cp.returncode == 1 and "STALE master" in cp.stdout + cp.stderr
    cp = cli("hotsync", "epoch", "set", "0", "--why", "restored from an old backup", root=pair.slave)
    assert cp.returncode == 0 and "7 -> 0" in cp.stdout
    assert pair.status(pair.slave)["epoch"] == 0
    assert json.loads((pair.slave / "var/lib/hotsync/sync/status.json").read_text())["epoch_set"]["from"] == 7
    assert pair.sync().returncode == 0


def test_an_epoch_far_above_the_slaves_is_refused_not_recorded(pair):
    """A push claiming epoch 999999999999999999 made the slave's next promote pick one the epoch parser
    refuses, so every push of the new master was refused. An epoch grows by one at each promote: far above
    the slave's own is refused, and not recorded."""
    cp = rsync_as_master(pair, f"{pair.master}/./srv/data/", epoch=999999999999999999)
    assert cp.returncode != 0 and "far above this host's" in cp.stderr, cp.stderr
    kept = json.loads((pair.slave / "var/lib/hotsync/sync/status.json").read_text())
    assert int(kept.get("master_epoch") or 0) < 1000, kept.get("master_epoch")


def test_the_kept_files_are_neither_named_by_a_manifest_nor_grown_without_bound(pair):
    """A manifest naming the kept area let a push delete or rename what a re-pair kept aside; a master that
    keeps aside at every push would fill /var. The first is refused, the second bounded."""
    from hotsync_events.sync.policy import accept_filter, manifest_problems

    assert manifest_problems(["/var/lib/hotsync/kept"]) and manifest_problems(["/var/lib/hotsync/kept/2026/x"])
    assert "+ /var/lib/hotsync/kept/***" not in accept_filter(["/var/lib/hotsync/kept", "/srv/data"])
    kept = pair.slave / "var/lib/hotsync/kept"
    for i in range(20):
        (kept / f"2026-12-05-{i:06d}").mkdir(parents=True, exist_ok=True)
    (pair.master / "srv/data/k").write_text("k\n")
    cp = rsync_as_master(pair, "--backup", "--backup-dir=/var/lib/hotsync/kept/2026-12-05-999999",
                         f"{pair.master}/./srv/data/k")
    assert cp.returncode != 0 and "already keeps 20 or more folders" in cp.stderr, cp.stderr
    assert not (kept / "2026-12-05-999999").exists() and not (pair.slave / "srv/data/k").exists()


# ------------------------------------------------------------------------------------------- finding 5
def test_a_push_without_an_epoch_is_refused(pair):
    """A push that sends no pair epoch (a stale master's plain rsync) lands nothing, whatever it holds."""
    (pair.master / "srv/data/stale").write_text("stale\n")
    before = tree(pair.slave / "srv")
    cp = rsync_as_master(pair, f"{pair.master}/./srv/data", early=None)
    assert cp.returncode != 0 and "no pair epoch" in cp.stderr, cp.stderr
    assert tree(pair.slave / "srv") == before
    # and the slave does not learn its own epoch from what a push carries
    cp = rsync_as_master(pair, f"{pair.master}/./srv/data", epoch=50)
    assert cli("hotsync", "epoch", root=pair.slave).stdout.strip() == "0"


# ------------------------------------------------------------------------------------------- finding 6
def session_processes(root: Path) -> list[int]:
    from hotsync_events.paths import Root
    from hotsync_events.promote.run import _session_processes

    return set(_session_processes(Root(root)))


@pytest.mark.skipif(not shutil.which("mariadbd") and not Path("/usr/sbin/mariadbd").exists(),
                    reason="needs mariadb-server")
def test_promote_cuts_off_the_push_in_flight():
    """A slow push in flight when the promote runs (with --force), and a real MariaDB restore after the
    fence: from the end of the fence step on, no byte of the old master's push lands and none of its
    processes is left, while the promote's later phases (the restore) take their time."""
    from dbservers import database_pair

    def no_realtime(p) -> None:
        p.config(p.master, "setprop", "hotsync", "realtime", "disabled")

    with database_pair(Pair, "hstrust-", setup=no_realtime) as (pair, m_my, _s_my, _m_pg, _s_pg):
        m_my.sql("CREATE DATABASE ledger; CREATE TABLE ledger.t (id INT PRIMARY KEY); INSERT INTO ledger.t "
                 "SELECT seq FROM ledger.seq_1_to_5000")
        data = pair.master / "srv/data"
        data.mkdir(parents=True)
        pair.include("/srv/data")
        (data / "small").write_text("s\n")
        assert pair.sync().returncode == 0                     # the dump of ledger is on the slave
        pair.settled()
        for i in range(4):
            (data / f"big{i}").write_bytes(os.urandom(2_000_000))
        pair.config(pair.master, "setprop", "hotsync", "bwlimit", "500")     # ~16 s of transfer
        push = subprocess.Popen([str(Path(sys.executable).parent / "hotsync"), "sync"],
                                env={**os.environ, "HOTSYNC_ROOT": str(pair.master)}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 30
            while not any(p.name.startswith(".big") or ".hotsync-partial" in str(p)
                          for p in (pair.slave / "srv").rglob("*")):
                assert time.monotonic() < deadline and push.poll() is None, "the push never started"
                time.sleep(0.05)
            in_flight = session_processes(pair.slave)
            assert in_flight

            def argv(pid: int) -> bytes:
                try:
                    return Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    return b""

            # the session's rsync, and the hooks' server the listener forked beside it (its argv is the
            # listener's): both are cut off with the session
            assert any(b"rsync\0--server" in argv(p) for p in in_flight), [argv(p) for p in in_flight]
            assert any(b"hotsync_events.sync.listener" in argv(p) for p in in_flight), [argv(p) for p in in_flight]
            promote = subprocess.Popen([str(Path(sys.executable).parent / "hotsync-promote"), "--yes", "--force"],
                                       env={**os.environ, "HOTSYNC_ROOT": str(pair.slave)}, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
            snapshot, out = None, []
            for line in promote.stdout:
                out.append(line)
                if snapshot is None and line.startswith("fence: pair epoch"):
                    # the fence step is over: from now on nothing of the old master's push may change
                    snapshot = _sizes(pair.slave / "srv")
                    # the push's processes are gone (the old master's next tries are refused by the fence)
                    assert not set(in_flight) & set(session_processes(pair.slave))
            promote.stdout.close()
            promote.wait(timeout=300)
            assert snapshot is not None, "".join(out)
            assert any("database mysql" in line and "SUCCESS" in line for line in out), "".join(out)
            assert _sizes(pair.slave / "srv") == snapshot, "".join(out)
            assert not set(in_flight) & set(session_processes(pair.slave))
            assert promote.returncode in (0, 3), "".join(out)
        finally:
            push.kill()
            push.communicate()
        assert _s_my.sql("SELECT COUNT(*) FROM ledger.t") == [["5000"]]


def _sizes(top: Path) -> dict:
    return {str(p): p.lstat().st_size for p in top.rglob("*")} if top.exists() else {}


# ------------------------------------------------------------------------------------------- finding 7
def test_dumps_are_private_while_they_are_written(pair):
    """A plugin's dump written slowly with a world-readable mode: nobody can read it while it is written or
    after, on the master nor on the slave."""
    from hotsync_events import hookimpl
    from hotsync_events.paths import Root
    from hotsync_events.manager import get_plugin_manager
    from hotsync_events.sync.push import run_sync
    from hotsync_events.types import Dump

    probes = []

    def slow(ctx):
        fd = os.open(ctx.target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)   # careless: world readable
        os.fchmod(fd, 0o644)
        with open(fd, "w") as fh:
            fh.write("user,password-hash\n")
            fh.flush()
            probes.append(as_nobody("cat", str(ctx.target)))                         # mid-write
            fh.write("admin,$6$secret\n")

    class Careless:
        @hookimpl
        def hotsync_dumps(self, db):
            yield Dump("careless", "/var/lib/hotsync/dumps/careless/app.sql", slow)

    pm = get_plugin_manager(entrypoints=False)
    pm.add_plugin(Careless(), "careless")
    assert run_sync(Root(pair.master), pm=pm, log=lambda m: None) == 0
    pair.settled()
    assert probes and probes[0].returncode != 0 and "secret" not in probes[0].stdout
    for root in (pair.master, pair.slave):
        dump = root / "var/lib/hotsync/dumps/careless/app.sql"
        assert dump.read_text().endswith("admin,$6$secret\n")
        assert stat.S_IMODE(dump.stat().st_mode) == 0o600 and stat.S_IMODE(dump.parent.stat().st_mode) == 0o700
        assert as_nobody("cat", str(dump)).returncode != 0


# ------------------------------------------------------------------------------------------- finding 8
def test_local_users_cannot_hold_the_locks(pair, smtp):
    """No lock of the product opens for nobody (flock needs only an open file); a lock left 0644 by an older
    version is made 0600 at its next use; a scheduled run kept out by a held lock for two intervals is
    recorded as a failure and mailed."""
    locks = [p for r in (pair.master, pair.slave) for d in ("run", "var/lib/hotsync") for p in (r / d).rglob("*.lock")]
    assert any(p.name == "sync.lock" for p in locks) and any(p.name == "events.lock" for p in locks)
    for lock in locks:
        assert as_nobody("sh", "-c", f"exec 3<'{lock}'").returncode != 0, lock
    sync_lock = pair.master / "run/hotsync/sync.lock"
    os.chmod(sync_lock, 0o644)
    assert pair.sync().returncode == 0
    assert stat.S_IMODE(sync_lock.stat().st_mode) == 0o600
    # a lock held (a stuck run) for longer than two intervals: the schedule says so, once, by mail
    from hotsync_events.paths import Root
    from hotsync_events.sync.lock import SyncLock
    from hotsync_events.sync.status import update_status

    pair.config(pair.master, "setprop", "hotsync", "interval", "1")
    update_status(Root(pair.master), lambda d: d["last_run"].update(start=d["last_run"]["start"] - 600))
    lock = SyncLock(Root(pair.master))
    assert lock.acquire()
    try:
        old = time.time() - 300
        os.utime(sync_lock, (old, old))
        mails = len(smtp.messages)
        cp = pair.sync("--scheduled")
        out = cp.stdout + cp.stderr
        assert cp.returncode == 1 and "could not run" in out and str(os.getpid()) in out, out
        assert len(smtp.messages) == mails + 1 and "FAILED" in smtp.messages[-1]["Subject"]
    finally:
        lock.release()


# ------------------------------------------------------------------------------------------- finding 9
def test_a_torn_full_push_is_torn_whatever_follows(pair):
    """An interrupted full push, then a good short one: the promote still finds the copy torn, until a full
    push completes."""
    data = pair.master / "srv/data"
    for i in range(3):
        (data / f"big{i}").write_bytes(os.urandom(2_000_000))
    pair.config(pair.master, "setprop", "hotsync", "bwlimit", "1000")
    push = subprocess.Popen([str(Path(sys.executable).parent / "hotsync"), "sync"],
                            env={**os.environ, "HOTSYNC_ROOT": str(pair.master)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not any(p.name.startswith(".big") or ".hotsync-partial" in str(p) for p in (pair.slave / "srv").rglob("*")):
        assert time.monotonic() < deadline and push.poll() is None
        time.sleep(0.05)
    push.kill()
    push.wait()
    pair.settled()
    pair.config(pair.master, "setprop", "hotsync", "bwlimit", "0")
    # a short real-time push that completes
    (data / "small").write_text("small\n")
    cp = rsync_as_master(pair, f"{pair.master}/./srv/data/small", early="realtime")
    assert cp.returncode == 0, cp.stderr
    pair.settled()
    out = cli("hotsync-promote", "--dry-run", root=pair.slave)
    assert "torn state" in out.stdout + out.stderr, out.stdout
    assert pair.sync().returncode == 0
    pair.settled()
    out = cli("hotsync-promote", "--dry-run", root=pair.slave)
    assert "torn state" not in out.stdout + out.stderr, out.stdout


# ------------------------------------------------------------------------------------------- finding 10
def test_the_password_from_standard_input_and_private_logs(pair):
    cp = cli("config", "setprop", "rsyncd", "password", "-", root=pair.master, input="From-stdin-1\n")
    assert cp.returncode == 0, cp.stderr
    assert cli("config", "--show-secrets", "show", "rsyncd", root=pair.master).stdout.count("From-stdin-1") == 1
    cp = cli("config", "setprop", "rsyncd", "password", "-", root=pair.slave, input="From-stdin-1\n")
    assert pair.save(pair.slave).returncode == 0
    pair.wait_listening()
    (pair.master / "srv/data/d").write_text("d\n")
    assert pair.sync().returncode == 0
    for root in (pair.master, pair.slave):
        for log in (root / "var/log/hotsync").glob("*.log"):
            assert stat.S_IMODE(log.stat().st_mode) & 0o027 == 0, log
            assert as_nobody("cat", str(log)).returncode != 0, log
