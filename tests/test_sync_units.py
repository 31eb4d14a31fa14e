"""Unit tests of the sync library's pieces: output parsing, guards, lists, lock, escaping, TLS, mail, hooks."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from hotsync_events.configdb import open_db
from hotsync_events.sync import guards, tls
from hotsync_events.sync.lists import build_lists
from hotsync_events.sync.policy import sender_rules
from hotsync_events.sync.lock import SyncLock
from hotsync_events.sync.rsync import push_args, stats_of
from hotsync_events.sync.xfer import post_xfer, pre_xfer
from hotsync_events.sync.xferargs import asks_incremental_recursion, session_problem
from sync_pair import SERVER_ENV

DRY = """\
*deleting   srv/f5
*deleting   srv/new\\#012line
<f..t...... srv/f8
cL+++++++++ srv/l -> a
hf+++++++++ srv/h => srv/a
cd+++++++++ srv/d/
Number of files: 20008 (reg: 20000, dir: 7, link: 1)
Number of created files: 3 (reg: 2, dir: 1)
Number of deleted files: 2 (reg: 2)
Number of regular files transferred: 1
Total file size: 15 bytes
Total bytes sent: 1,197
"""


def test_stats_of_reads_itemized_changes_deletions_and_stats():
    items, deleted, stats = stats_of(DRY)
    assert deleted == ["srv/f5", "srv/new\\#012line"]
    assert len(items) == 4 and items[1].startswith("cL")
    assert stats["Number of files"] == 20008 and stats["Number of created files"] == 3
    assert stats["Total bytes sent"] == 1197


def test_push_args_keep_the_password_off_the_command_line_and_end_options():
    args = push_args(sources=["/r/./srv"], exclude_file="/x", password_file="/p", timeout=30, bwlimit=100,
                     max_delete=7, dry_run=True)
    assert "--password-file=/p" in args and not any("Check" in a for a in args)
    for opt in ("-aHAX", "--no-D", "--numeric-ids", "--delete", "--delay-updates", "--timeout=30", "--max-delete=7",
                "--bwlimit=100", "--dry-run", "--relative"):
        assert opt in args
    assert args[args.index("--") + 1:] == ["/r/./srv", "rsync://hotsyncuser@hotsync-slave/hotsync/"]


#: what rsync 3.5's daemon passed the pre-xfer hook for each session a HotSync master makes (captured)
OURS = {
    "full push": "-lHogtpAXrRe.LsfxCIvu --log-format=%i --no-msgs2stderr --timeout=20 --max-delete=-1 --delete --stats "
                 "-@-1 --partial-dir .hotsync-partial --delay-updates --numeric-ids",
    "its dry run, --full": "-nlHogtpAXrcRe.LsfxCIvu --log-format=%i --no-msgs2stderr --timeout=20 --delete --stats -@-1 "
                           "--partial-dir .hotsync-partial --delay-updates --numeric-ids",
    "keeping aside": "-blHogtpAXrRe.LsfxCIvu --log-format=%i --no-msgs2stderr --timeout=20 --bwlimit=500 --backup-dir "
                     "/var/lib/hotsync/kept/2026-12-05-121500 --max-delete=3 --delete --stats -@-1 --partial-dir "
                     ".hotsync-partial --delay-updates --numeric-ids",
    "real-time": "-ldHogtpAXRe.LsfxCIvu --no-r --log-format=%i --no-msgs2stderr --timeout=20 --max-delete=-1 --delete "
                 "--force --stats --delete-missing-args -@-1 --partial-dir .hotsync-partial --numeric-ids",
    "real-time dry run": "-nldHogtpAXRe.LsfxCIvu --no-r --log-format=%i --no-msgs2stderr --timeout=20 --delete --force "
                         "--stats --delete-missing-args -@-1 --partial-dir .hotsync-partial --numeric-ids",
}


def _server(options: str, dest: str = "/") -> list[str]:
    return ["rsyncd", "--server", *options.split(), ".", dest]


def test_the_slave_takes_only_the_arguments_a_master_sends():
    """The slave's pre-xfer check of the client's arguments (sync.xferargs): every session kind a HotSync master
    makes goes through; each way in a reviewer found is refused (tests/test_trust.py runs them against a pair)."""
    for what, options in OURS.items():
        assert session_problem("hotsync", _server(options)) is None, what
    peer = _server("-ltpre.LsfxCIvu --no-msgs2stderr --timeout=20 --delete")
    assert session_problem("hotsync-peer", peer) is None
    assert session_problem("hotsync-pair", [*peer[:-1], "/master.crt"]) is None
    assert session_problem("hotsync", _server("-logtprRe.LsfxCIvu --no-msgs2stderr")) is None   # bench's rsync -a --no-D
    full = OURS["full push"]
    refused = {
        "incremental recursion": _server(full.replace("e.Lsfx", "e.iLsfx")),
        "peer copy with it": ["rsyncd", "--server", "-ltpre.iLsfxCIvu", "--delete", ".", "/"],
        "forged capabilities": _server(full + " -e.iLsfxCIvu"),
        "capabilities in the next argument": _server(full + " -e .iLsfxCIvu"),
        "--rsh": _server(full + " --rsh=.iLsfxCIvu"),
        "popt's next-argument": _server(full.replace("e.LsfxCIvu", "e!#:+") + " .iLsfxCIvu"),
        "popt in a value": _server(full.replace("kept", "kept") + " --timeout=!#:+"),
        "partial dir outside": _server(full.replace(".hotsync-partial", "../../etc/cron.d")),
        "partial dir through a link": _server(full.replace(".hotsync-partial", "ln/nologin")),
        "partial dir joined": _server(full.replace("--partial-dir .hotsync-partial", "--partial-dir=../x")),
        "backup dir deeper": _server(OURS["keeping aside"].replace("121500", "121500/x")),
        "backup dir through ..": _server(OURS["keeping aside"].replace("2026-12-05-121500", "..")),
        "backup dir elsewhere": _server(OURS["keeping aside"].replace("/var/lib/hotsync/kept/", "/etc/")),
        "--mkpath": _server(full + " --mkpath"),
        "delayed updates held in .~tmp~": _server(full.replace("--partial-dir .hotsync-partial ", "")),
        "unclean destination": _server(full, "srv/evil/../data/new/"),
        "two destinations": [*_server(full), "etc/"],
        "a destination like an option": _server(full, "-x"),
        "the module's root twice": _server(full, "//"),
        "a destination inside the module": _server(full, "srv/data/"),
        "keep-dirlinks in the cluster": _server(full.replace("-lHog", "-KlHog")),
        "two clusters": _server(full + " -ve.LsfxCIvu"),
        "no cluster": _server("--delete"),
        "an option unknown": _server(full + " --temp-dir=/etc"),
        "a value not numeric": _server(full.replace("--timeout=20", "--timeout=20x")),
        "pair elsewhere": ["rsyncd", "--server", "-ltpre.LsfxCIvu", ".", "etc/cron.d/x"],
        "not a client": ["sh", "--server", "-lHogtpAXrRe.LsfxCIvu", ".", "/"],
        "devices and specials (-D)": _server(full.replace("-lHog", "-lHogD")),
    }
    for what, args in refused.items():
        module = "hotsync-peer" if what.startswith("peer") else "hotsync-pair" if what.startswith("pair") else "hotsync"
        assert session_problem(module, args), what
    # the session's kind, a claim of its early input, matches its options: a dry run is -n, nothing else is
    for what, options in OURS.items():
        kind = "dry" if "dry run" in what else "sync"
        assert session_problem("hotsync", _server(options), kind=kind) is None, what
        other = "sync" if kind == "dry" else "dry"
        assert "says it is a" in (session_problem("hotsync", _server(options), kind=other) or ""), what
    assert asks_incremental_recursion(refused["forged capabilities"])
    assert not asks_incremental_recursion(_server(full))
    # and the push's own arguments say --no-inc-recursive
    assert "--no-inc-recursive" in push_args(sources=["/r/./srv"], exclude_file="/x", password_file="/p", timeout=30)


def test_deletion_guard_counts_against_the_slaves_files():
    stats = {"Number of files": 95, "Number of created files": 0}
    assert guards.deletion_problem(stats, 5, 20) is None               # 5 of 100
    why = guards.deletion_problem(stats, 30, 20)                        # 30 of 125
    assert why and "30 of the slave's 125 files" in why
    assert guards.deletion_problem(stats, 0, 0) is None
    assert guards.deletion_problem(stats, 1, 0)                          # 0 %: any deletion is held
    assert guards.allowed_deletions(stats, 5, 20) == 20


def test_deletion_guard_holds_only_more_than_the_limit():
    """The docs say "more than MaxDeletePercent": exactly the limit goes through, one file more is held."""
    stats = {"Number of files": 80, "Number of created files": 0}
    assert guards.deletion_problem(stats, 20, 20) is None               # 20 of 100: exactly 20 %
    assert guards.deletion_problem(stats, 21, 20)                       # 21 of 101: 20.8 %
    assert guards.deletion_problem(stats, 10, 20, already=10) is None   # 10 + 10 notifier deletions of 100
    assert guards.deletion_problem(stats, 11, 20, already=10)
    assert guards.deletion_problem({"Number of files": 0}, 1, 100) is None   # 1 of 1: 100 % is not > 100 %
    from hotsync_events.sync.ledger import Ledger

    ledger = Ledger(since=1.0, files=100, deleted=15)
    assert ledger.problem(5, 20) is None and ledger.problem(6, 20)
    assert guards.over_limit(1, 5, 20) is False and guards.over_limit(2, 9, 20) is True
    assert guards.over_limit(0, 0, 0) is False and guards.over_limit(1, 0, 100) is True


def test_source_guard_spots_emptied_and_missing_sources(tmp_path):
    from hotsync_events.paths import Root

    root = Root(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a/f").write_text("f")
    (tmp_path / "b").mkdir()
    state = guards.source_state(root, ["/a", "/b", "/c"])
    assert state == {"/a": True, "/b": False, "/c": False}
    (tmp_path / "a/f").unlink()
    assert guards.source_problems(state, guards.source_state(root, ["/a", "/b", "/c"])) == ["/a"]


def test_lists_merge_include_d_and_refuse_bad_lines(root):
    inc = root.etc_dir / "include.d"
    inc.mkdir(parents=True)
    (inc / "a.include").write_text("# comment\n\n/srv/one\n/srv//two/\n/srv/one\n")
    exc = root.etc_dir / "exclude.d"
    exc.mkdir()
    (exc / "a.exclude").write_text("*.tmp\n/srv/one/cache/\n")
    db = open_db("configuration", root)
    lists = build_lists(root, db, None)
    assert lists.includes == ["/srv/one", "/srv/two"]
    assert lists.exclude_file_text().splitlines() == [*sender_rules(lists.includes), "- .hotsync-partial/",
                                                      "- *.tmp", "- /srv/one/cache/"]
    # every bad line of every list is reported at once, with its file and line; the good ones stay
    (inc / "b.include").write_text("relative/path\n/srv/../etc\n/\n/srv/three\n")
    (inc / "c.include").write_text("/etc/cron.d\n")
    (inc / "notes.txt").write_text("/srv/ignored\n")
    lists = build_lists(root, db, None)
    assert lists.includes == ["/srv/one", "/srv/three", "/srv/two"]
    assert [p.split(": ")[0].rsplit("/", 1)[1] for p in lists.problems] == \
        ["b.include:1", "b.include:2", "b.include:3", "c.include:1"]
    assert len(lists.warnings) == 1 and "notes.txt" in lists.warnings[0] and ".include" in lists.warnings[0]


def test_lock_is_exclusive_and_queues_one_follow_up(root):
    a, b = SyncLock(root), SyncLock(root)
    assert a.acquire() and a.holder() is not None
    assert not b.acquire() and b.is_queued
    a.release()
    assert a.holder() is None and b.take_queued() and not b.take_queued()


def test_render_escaping():
    from hotsync_plugins.hotsync import (RenderRefused, conf_value, cron_command, host_value, int_value,
                                         strongest_digest)

    with pytest.raises(RenderRefused, match="'%'"):
        conf_value("/srv/100%")
    for bad in ("a\nb", " x", "x\r"):
        with pytest.raises(RenderRefused):
            conf_value(bad)
    with pytest.raises(RenderRefused):
        host_value("1.2.3.4 [x]")
    with pytest.raises(RenderRefused):
        int_value("1; rm", 1, 10)
    assert cron_command(["/a b/py", "100%", "x;y"]) == "'/a b/py' 100\\% 'x;y'"
    if shutil.which("rsync"):
        assert strongest_digest() in ("sha512", "sha256", "sha1", "md5", "md4")


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl")
def test_host_certificate_and_fingerprint_match_openssl(root):
    cert, key, made = tls.ensure_host_cert(root, log=lambda m: None)
    assert made and (key.stat().st_mode & 0o777) == 0o600 and (key.parent.stat().st_mode & 0o777) == 0o700
    assert tls.ensure_host_cert(root, log=lambda m: None)[2] is False
    assert tls.host_fingerprint(root) == tls.fingerprint(cert.read_text())
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert)],
                         capture_output=True, text=True).stdout
    fp = tls.fingerprint(cert.read_text())
    assert out.strip().endswith(fp[len("SHA256:"):])
    assert tls.normalise_fingerprint(fp.lower()[7:]) == fp == tls.normalise_fingerprint(fp.replace(":", "")[6:])
    with pytest.raises(ValueError):
        tls.normalise_fingerprint("SHA256:zz")


def test_mail_goes_through_a_real_smtp_server_and_refuses_header_injection():
    from aiosmtpd.controller import Controller

    from hotsync_events.sync.mail import MailError, send_mail
    from sync_pair import free_port

    got = []

    class H:
        async def handle_DATA(self, server, session, envelope):
            got.append(envelope)
            return "250 OK"

    ctl = Controller(H(), hostname="127.0.0.1", port=free_port())
    ctl.start()
    try:
        send_mail(f"127.0.0.1:{ctl.port}", "a@example.org", "subject\nBcc: x@evil", "body")
        assert got and got[0].rcpt_tos == ["a@example.org"]
        headers = got[0].content.split(b"\r\n\r\n")[0].split(b"\r\n")
        assert not any(h.lower().startswith(b"bcc") for h in headers)
        with pytest.raises(MailError):
            send_mail(f"127.0.0.1:{ctl.port}", "a@example.org\nBcc: x@evil", "s", "b")
    finally:
        ctl.stop()
    with pytest.raises(MailError, match="cannot send"):
        send_mail(f"127.0.0.1:{free_port()}", "a@example.org", "s", "b", timeout=2)


def early(root, kind: str = "sync", epoch: int = 0, nonce: str = "0123456789abcdef") -> None:
    """What the daemon's early exec keeps of a master's first bytes, for session 42."""
    d = root.join("/run/hotsync/xfer")
    d.mkdir(parents=True, exist_ok=True)
    (d / "early.42").write_text(f"hotsync-epoch {epoch} kind={kind} nonce={nonce}\n")


def test_pre_xfer_refuses_unless_an_enabled_slave_pushed_to_by_its_master(root):
    db = open_db("configuration", root)
    env = {"RSYNC_HOST_ADDR": "127.0.0.1", "RSYNC_PID": "42", "RSYNC_MODULE_NAME": "hotsync", **SERVER_ENV}
    early(root)
    assert pre_xfer(root, env)[0] == 1                                  # no role
    db.setprop("hotsync", {"role": "slave", "MasterHost": "127.0.0.1"})
    db.setprop("rsyncd", {"password": "Secret-1"})
    early(root)
    assert pre_xfer(root, env) == (0, "")
    early(root, kind="peer")                                            # a peer copy through the data module
    assert "cannot use module hotsync" in pre_xfer(root, env)[1]
    early(root)
    code, msg = pre_xfer(root, {**env, "RSYNC_HOST_ADDR": "10.1.2.3"})
    assert code == 1 and "not from MasterHost" in msg
    (root.join("/var/lib/hotsync/fenced")).parent.mkdir(parents=True, exist_ok=True)
    root.join("/var/lib/hotsync/fenced").touch()
    assert "fenced" in pre_xfer(root, env)[1].lower()
    root.join("/var/lib/hotsync/fenced").unlink()
    db.setprop("hotsync", {"status": "disabled"})
    assert "disabled" in pre_xfer(root, env)[1]
    db.setprop("hotsync", {"status": "enabled"})
    early(root)
    assert pre_xfer(root, env) == (0, "")
    post_xfer(root, {"RSYNC_PID": "42", "RSYNC_EXIT_STATUS": "0"})
    from hotsync_events.sync.status import read_status

    st = read_status(root)
    assert st["last_received"]["exit_status"] == 0 and st["last_success"]["from"] == "127.0.0.1"
    assert "42" not in st.get("receiving", {})


@pytest.mark.skipif(not shutil.which("rsync"), reason="needs rsync")
def test_named_changes_push_handles_every_odd_name(tmp_path):
    """The dry run's names decode exactly and the filter list matches exactly them (local rsync)."""
    import os

    from hotsync_events.sync.rsync import changed_names, only_these_filter

    src, dst = tmp_path / "src", tmp_path / "dst"
    names = ["plain", "new\nline", "back\\slash", "lit\\#012x", "star*[q]?", "ü ß 日本", " lead", "a -> b",
             "d/inner", "gone/x", "gone/y"]
    for n in names:
        (src / n).parent.mkdir(parents=True, exist_ok=True)
        (src / n).write_text(n)
    for n in ("untouched1", "d/untouched2"):
        (src / n).write_text("same")
    subprocess.run(["rsync", "-a", f"{src}/", f"{dst}/"], check=True)
    import shutil as sh

    for n in names[:-3]:
        (src / n).write_text(n + " changed, longer")
    sh.rmtree(src / "gone")
    (src / "untouched1").write_text("same")          # same size, rewritten: within -c it would differ; not here
    os.utime(src / "untouched1", ns=(os.stat(dst / "untouched1").st_atime_ns, os.stat(dst / "untouched1").st_mtime_ns))
    base = ["rsync", "-a", "--delete", "--out-format=%i %n"]
    dry = subprocess.run([*base, "-n", f"{src}/", f"{dst}/"], capture_output=True, check=True).stdout
    changed, deleted = changed_names(dry)
    assert sorted(deleted) == [b"gone/", b"gone/x", b"gone/y"]
    assert {c.rstrip(b"/") for c in changed} >= {n.encode() for n in names[:-3]}
    flt = tmp_path / "only"
    flt.write_bytes(only_these_filter(["- *.never"], changed + deleted))
    out = subprocess.run([*base, "--from0", f"--exclude-from={flt}", "--stats", f"{src}/", f"{dst}/"],
                         capture_output=True, check=True, text=True).stdout
    assert subprocess.run(["diff", "-r", str(src), str(dst)], capture_output=True).returncode == 0
    import re as _re

    looked_at = int(_re.search(r"Number of files: ([\d,]+)", out).group(1).replace(",", ""))
    assert looked_at <= 11       # the named items and their directories, not untouched1 nor d/untouched2


@pytest.mark.skipif(not shutil.which("rsync"), reason="needs rsync")
def test_the_slaves_filter_lets_in_the_manifest_and_nothing_refused(tmp_path):
    """The rendered filter, applied by a real rsync: the manifest's paths land (with the directories above
    them), the refused areas inside a shipped directory and everything outside the manifest do not."""
    from hotsync_events.sync.policy import accept_filter

    src, dst = tmp_path / "src", tmp_path / "dst"
    files = ["srv/a/x", "srv/a/deep/y", "srv/b/z", "etc/cron.d/evil", "etc/letsencrypt/live/c.pem",
             "etc/letsencrypt/renewal/c.conf", "etc/letsencrypt/renewal-hooks/deploy/h", "etc/crontab",
             "var/lib/app/data", "var/lib/hotsync/dumps/m.sql", "var/lib/hotsync/sync/epoch.json",
             "var/lib/hotsync/kept/2026/f", "var/lib/systemd/x", "usr/sbin/tool", "root/.bashrc"]
    for rel in files:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    (src / "var/lib/hotsync/kept/ln").symlink_to("../../../../etc")   # would carry backups into /etc
    rules = tmp_path / "accept.filter"
    rules.write_text(accept_filter(["/srv/a", "/etc/letsencrypt", "/var/lib/app", "/var/lib", "/etc/cron.d",
                                    "/var/lib/hotsync/dumps/m.sql"]))
    subprocess.run(["rsync", "-a", f"--exclude-from={rules}", f"{src}/", f"{dst}/"], check=True)
    landed = sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file() or p.is_symlink())
    assert landed == ["etc/letsencrypt/live/c.pem", "srv/a/deep/y", "srv/a/x", "var/lib/app/data",
                      "var/lib/hotsync/dumps/m.sql"]
    # the kept area takes directories only: --backup-dir puts the files there itself
    assert (dst / "var/lib/hotsync/kept/2026").is_dir() and not (dst / "var/lib/hotsync/kept/ln").is_symlink()


def test_hotsyncs_own_code_is_never_written_by_a_push():
    """The package's virtualenv (/opt/venvs/hotsync-events, the .deb's) runs as root on the slave: a manifest
    naming it, or a path inside it, is refused; /opt itself and other applications there may be shipped."""
    from hotsync_events.sync.policy import manifest_problems, refusal_of

    for path in ("/opt/venvs/hotsync-events/lib/python3.11/site-packages/hotsync_events/sync/xfer.py",
                 "/opt/venvs/hotsync-events", "/opt/venvs/other/bin/python"):
        assert refusal_of(path) is not None, path
        assert manifest_problems([path]), path
    assert refusal_of("/opt/app/data") is None


@pytest.mark.skipif(not shutil.which("rsync"), reason="needs rsync")
def test_the_masters_rules_ship_dumps_and_no_refused_area(tmp_path, root):
    """The master's own rules, in a whole-tree push and in a named-changes push: a changed dump under the
    HotSync state directory is shipped, the rest of that directory and every refused area never is."""
    from hotsync_events.sync.lists import Lists
    from hotsync_events.sync.rsync import only_these_filter

    src, dst = tmp_path / "src", tmp_path / "dst"
    for rel in ("var/lib/hotsync/dumps/m.sql", "var/lib/hotsync/sync/status.json", "var/lib/hotsync/db/configuration",
                "srv/a/x", "srv/a/cron.d/y"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    # the push's paths: a dump and a data directory (the rules keep only the refused areas these reach; the
    # sources below are wider on purpose: the state directory around the dump)
    rules = Lists(includes=["/srv/a", "/var/lib/hotsync/dumps/m.sql"]).filter_rules()
    flt = tmp_path / "rules"
    flt.write_text("".join(f"{r}\n" for r in rules))
    subprocess.run(["rsync", "-a", "--relative", f"--exclude-from={flt}", f"{src}/./var/lib/hotsync",
                    f"{src}/./srv/a", f"{dst}/"], check=True)
    assert sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file()) == \
        ["srv/a/cron.d/y", "srv/a/x", "var/lib/hotsync/dumps/m.sql"]
    shutil.rmtree(dst)
    flt.write_bytes(only_these_filter(rules, [b"var/lib/hotsync/dumps/m.sql", b"var/lib/hotsync/sync/status.json"]))
    subprocess.run(["rsync", "-a", "--relative", "--from0", f"--exclude-from={flt}", f"{src}/./var/lib/hotsync",
                    f"{dst}/"], check=True)
    assert sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file()) == ["var/lib/hotsync/dumps/m.sql"]


def test_the_sender_rules_name_only_the_refused_areas_a_push_could_reach():
    everything = sender_rules()
    assert sender_rules(["/srv/data", "/home"]) == [r for r in everything if r.startswith("+ ")]
    etc = sender_rules(["/etc"])
    assert any(r.startswith("- /etc/cron") for r in etc) and not any(r.startswith("- /usr/") for r in etc)
    # an include inside a refused area (reported and left out elsewhere) still meets its rule
    assert any(r.startswith("- /etc/cron.d") for r in sender_rules(["/etc/cron.d/job"]))
    assert set(sender_rules(["/etc", "/usr", "/var", "/root", "/boot", "/bin", "/sbin", "/lib", "/lib64", "/run"])) \
        <= set(everything)


@pytest.mark.skipif(not shutil.which("rsync"), reason="needs rsync")
def test_why_rsyncd_values_hold_no_percent(tmp_path):
    """The reason conf_value refuses '%': this rsync's daemon keeps '%%' in a module's path as two characters
    (its manual says it means one), so escaping would put the files somewhere else."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src/f").write_text("x\n")
    for d in ("d%x", "d%%x"):
        (tmp_path / d).mkdir()
    conf = tmp_path / "rsyncd.conf"
    me = "uid = root\ngid = root\n" if os.geteuid() == 0 else ""      # a daemon started as root drops to nobody
    conf.write_text(f"use chroot = no\n{me}[m]\npath = {tmp_path}/d%%x\nread only = no\n")
    cp = subprocess.run(["rsync", "-a", "-e", f"sh -c 'exec rsync --server --daemon --config={conf} .' x",
                         str(tmp_path / "src/f"), "h::m/"], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    landed = [d for d in ("d%x", "d%%x") if (tmp_path / d / "f").exists()]
    assert landed == ["d%%x"], landed       # if a newer rsync un-doubles, conf_value may escape again



def test_a_slaves_links_are_munged_once_and_a_promote_writes_them_back(root):
    """sync.symlinks: the listener's first start on a slave munges the links its copy holds from before (an
    upgrade, a host that was a master), once per pairing; unmunge (the promote's links phase) restores them
    with their owners; a master's links are never touched."""
    import json

    from hotsync_events.sync import symlinks

    data = root.join("/srv/data")
    (data / "sub").mkdir(parents=True)
    (data / "rel").symlink_to("sub")
    (data / "abs").symlink_to("/etc/passwd")
    (data / "sub/deep").symlink_to("../rel")
    os.chown(data / "rel", 1234, 1234, follow_symlinks=False)
    peer = root.join("/var/lib/hotsync/peer")
    peer.mkdir(parents=True)
    (peer / "manifest.json").write_text(json.dumps({"format": 1, "includes": ["/srv/data"]}))
    db = open_db("configuration", root)
    db.setprop("hotsync", {"role": "master"})
    said: list[str] = []
    assert symlinks.migrate(root, log=said.append) is None and os.readlink(data / "rel") == "sub" and not said
    db.setprop("hotsync", {"role": "slave", "MasterHost": "127.0.0.1"})
    os.utime(data, (1_000_000_000, 1_000_000_000))
    assert symlinks.migrate(root, log=said.append) is None and said == ["links: 3 stored munged (docs/security.md)"]
    assert os.readlink(data / "abs") == "/rsyncd-munged//etc/passwd" and os.lstat(data / "rel").st_uid == 1234
    assert os.stat(data).st_mtime == 1_000_000_000                      # the directory's times kept
    assert symlinks.migrate(root, log=said.append) is None and len(said) == 1      # once per pairing and manifest
    # overlapping paths: each link rewritten once
    assert symlinks.unmunge(root, ["/srv/data", "/srv/data/sub", "/srv/./data/"], log=lambda m: None) == (3, [])
    assert [os.readlink(data / n) for n in ("rel", "abs", "sub/deep")] == ["sub", "/etc/passwd", "../rel"]
    assert os.lstat(data / "rel").st_uid == 1234 and not list(data.glob(".hotsync-link.*"))
    # a shipped path under a link of this host is named; a walk never goes through a link on the way
    root.join("/var").mkdir(exist_ok=True)
    root.join("/var/run").symlink_to("../srv/data")
    assert "/var/run/x lies under the link /var/run -> ../srv/data" in symlinks.link_on_the_way(root, ["/var/run/x"])
    (data / "abs").unlink()
    (data / "abs").symlink_to("/rsyncd-munged/sub")
    assert symlinks.unmunge(root, ["/var/run/abs"], log=lambda m: None) == (0, [])    # not walked through
    assert os.readlink(data / "abs") == "/rsyncd-munged/sub"
    # a refused area inside a shipped path is never touched (no push writes there)
    root.join("/etc/letsencrypt/renewal").mkdir(parents=True)
    root.join("/etc/letsencrypt/renewal/hook").symlink_to("/usr/bin/true")
    root.join("/etc/letsencrypt/live").mkdir()
    root.join("/etc/letsencrypt/live/cert.pem").symlink_to("../archive/cert1.pem")
    assert symlinks.munge(root, ["/etc/letsencrypt"], log=lambda m: None) == (1, [])
    assert os.readlink(root.join("/etc/letsencrypt/renewal/hook")) == "/usr/bin/true"


def test_files_a_peer_sent_are_read_without_following_links_waiting_on_fifos_or_reading_much(tmp_path):
    """The staged manifest and the pairing certificate come from the other host: a link to a FIFO once hung
    the post-xfer hook (holding the daemon's one session), a link to /dev/zero or a huge file would fill the
    memory. Each is refused at once."""
    import time

    from hotsync_events.fsutil import read_small
    from hotsync_events.paths import Root
    from hotsync_events.sync import peercopy, tls

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "big").write_bytes(b"x" * 2048)
    (tmp_path / "ok").write_bytes(b"small")
    (tmp_path / "ln").symlink_to(tmp_path / "ok")
    t0 = time.monotonic()
    assert read_small(fifo, 1024) is None and read_small(tmp_path / "ln", 1024) is None
    assert read_small(tmp_path / "big", 1024) is None and read_small(tmp_path / "ok", 1024) == b"small"
    assert read_small("/dev/zero", 1024) is None and read_small(tmp_path / "missing", 1024) is None
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / peercopy.MANIFEST).symlink_to(fifo)
    assert peercopy.manifest(staged) is None
    root = Root(tmp_path / "root")
    incoming = tls.incoming_dir(root)
    incoming.mkdir(parents=True)
    (incoming / "master.crt").symlink_to(fifo)
    assert tls.candidate_fingerprint(root) is None
    assert time.monotonic() - t0 < 5


@pytest.mark.skipif(not shutil.which("rsync"), reason="needs rsync")
def test_a_plain_list_push_sends_a_listed_directory_not_its_contents(tmp_path):
    """rsync drops the recursion -a implies when it reads a list, and keeps an explicit -r: the push's
    options must say -a (not -rlptgo), or every plain list push would walk a listed directory whole (a
    directory whose mode changed, a realtime=False path nested in it, deletions below it)."""
    from hotsync_events.realtime.pusher import list_push_args
    from hotsync_events.sync.rsync import push_args

    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "d/sub").mkdir(parents=True)
    (src / "d/sub/f").write_text("inside\n")
    (dst / "d").mkdir(parents=True)
    (tmp_path / "list").write_bytes(b"d\0")
    a = push_args(sources=[f"{src}/"], exclude_file=str(tmp_path / "none"), password_file="/p", timeout=30)
    (tmp_path / "none").write_text("")
    for recursive, walked in ((False, False), (True, True)):
        argv = list_push_args(a, recursive=recursive)
        i = argv.index("--")
        opts = [o for o in argv[1:i] if not o.startswith(("--password-file", "--out-format", "--msgs2stderr",
                                                                "--stderr", "--info", "--early-input"))]
        shutil.rmtree(dst / "d")
        cp = subprocess.run(["rsync", *opts, f"--files-from={tmp_path / 'list'}", f"{src}/", f"{dst}/"],
                            capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, cp.stderr
        assert (dst / "d").is_dir() and (dst / "d/sub/f").exists() is walked, (recursive, opts)
