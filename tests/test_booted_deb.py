"""The Debian package on a booted host (tests/booted.py): install, configure, upgrade, remove.

The .deb is built once (``make deb``'s script) and cached under ``/var/tmp/hotsync-deb-cache/<key>/``,
the key a hash of the files the package is made of, as git lists them (contents and exec bits, committed
or not; :data:`PACKAGE_INPUTS`): a second run on the same tree reuses it. The host has no network: the
package's dependencies come from the image (rsync, stunnel4, openssl, python3 are on it), its recommends
are not installed.

Run alone with ``pytest -m booted tests/test_booted_deb.py``.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from booted import Host

pytestmark = [pytest.mark.booted, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(1500)]

CHECKOUT = Path(__file__).resolve().parent.parent
CACHE = Path("/var/tmp/hotsync-deb-cache")
KEEP = 3                 # cached builds kept (the newest)
BUILD_TIMEOUT = 1200.0   # a first build on a fresh machine installs debhelper and dh-virtualenv first
VENV = "/opt/venvs/hotsync-events"
COMMANDS = ("config", "db", "hotsync", "signal-event", "expand-template", "hotsync-promote")
ESMITH = ("config", "db", "signal-event", "expand-template")
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
UNITS = ("hotsync-stunnel.service", "hotsync-watch.service", "hotsync-sync.timer")


#: what the .deb is made of (tests and docs are not): the cache key covers these
PACKAGE_INPUTS = ("setup.py", "pyproject.toml", "README.md", "LICENSE", "hotsync_events", "plugins", "templates",
                  "db", "debian", "scripts/build-deb.sh", "scripts/manpages.py")


def tree_key(top: Path = CHECKOUT) -> str:
    """A hash of the package's files as git lists them in *top* (tracked and new, not ignored): path, exec
    bit, blob id."""
    files = subprocess.run(["git", "-C", str(top), "ls-files", "-z", "-co", "--exclude-standard", "--",
                            *PACKAGE_INPUTS], capture_output=True, check=True, timeout=60).stdout.split(b"\0")
    paths = sorted(p.decode() for p in files if p and (top / p.decode()).is_file())
    blobs = subprocess.run(["git", "-C", str(top), "hash-object", "--stdin-paths"], input="\n".join(paths),
                           capture_output=True, text=True, check=True, timeout=120).stdout.split()
    assert len(blobs) == len(paths), "git hash-object gave one id a path"
    digest = hashlib.sha256()
    for path, blob in zip(paths, blobs):
        digest.update(f"{path}\0{os.stat(top / path).st_mode & 0o111:o}\0{blob}\n".encode())
    return digest.hexdigest()[:20]


def built_deb() -> Path:
    """The .deb of this tree: from the cache, else built by scripts/build-deb.sh into it (one build at a time)."""
    CACHE.mkdir(mode=0o755, parents=True, exist_ok=True)
    key = tree_key()
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = CACHE / key
        found = sorted(done.glob("hotsync-events_*.deb"))
        if found:
            os.utime(done)
            return found[-1]
        tmp = CACHE / f".{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        started = time.monotonic()
        cp = subprocess.run(["bash", str(CHECKOUT / "scripts/build-deb.sh")], capture_output=True, text=True,
                            env={**os.environ, "DEB_OUT": str(tmp), "TMPDIR": "/var/tmp"}, timeout=BUILD_TIMEOUT)
        if cp.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            pytest.fail(f"make deb failed ({cp.returncode}):\n{cp.stdout[-4000:]}\n{cp.stderr[-2000:]}")
        tmp.chmod(0o755)
        os.replace(tmp, done)
        print(f"built {next(done.glob('*.deb')).name} in {time.monotonic() - started:.0f}s")
        for old in sorted((d for d in CACHE.iterdir() if d.is_dir() and not d.name.startswith(".")),
                          key=lambda d: d.stat().st_mtime, reverse=True)[KEEP:]:
            shutil.rmtree(old, ignore_errors=True)
        return next(done.glob("hotsync-events_*.deb"))


@pytest.fixture(scope="module")
def deb(booted_sandbox) -> Path:
    if shutil.which("git") is None:
        pytest.skip("needs git (the cache key)")
    return built_deb()


def running_services(host: Host) -> set[str]:
    cp = host.run(["systemctl", "list-units", "--type=service", "--state=running", "--plain", "--no-legend",
                   "--no-pager"])
    return {line.split()[0] for line in cp.stdout.splitlines() if line.strip()}


def ours_running(host: Host) -> list[str]:
    """Processes running a program of the package (its venv's Python)."""
    cp = host.run(["ps", "-eo", "pid=,args="])
    return [line.strip() for line in cp.stdout.splitlines() if VENV in line and "ps -eo" not in line]


def test_install_configure_upgrade_remove(booted, deb):
    # apt's own hook wakes PackageKit over D-Bus at each install: the image's, not the package's doing
    (host,) = booted.boot("debhost", mask=("packagekit.service",))
    before = running_services(host)

    # install: the commands, the manual's paths, man pages, completion, logrotate; nothing started
    host.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", str(deb)], env=APT_ENV, timeout=300)
    for name in COMMANDS:
        assert host.run(["sh", "-c", f"command -v {name}"]).stdout.strip() == f"/usr/sbin/{name}"
    for name in ESMITH:
        assert host.run([f"/sbin/e-smith/{name}", "--help"]).returncode == 0
    man = host.run(["man", "-P", "cat", "8", "hotsync"], env={"MANWIDTH": "80"}).stdout
    assert "hotsync - master/slave sync of this host" in man and "restore-databases" in man
    assert host.run(["man", "-w", "config"]).stdout.strip() == "/usr/share/man/man8/config.8.gz"
    assert "complete -F _hotsync_complete" in host.path("/usr/share/bash-completion/completions/config").read_text()
    assert "/var/log/hotsync/events.log" in host.path("/etc/logrotate.d/hotsync-events").read_text()
    # the Cockpit page, installed by the package itself: the same files as this version's
    assert "installed, current" in host.run(["hotsync", "cockpit", "status"]).stdout
    assert running_services(host) == before
    assert ours_running(host) == []
    assert not host.path("/etc/cron.d/hotsync").exists()
    # the units are there, disabled: the save event enables what the host's role needs
    for unit in UNITS:
        assert host.run(["systemctl", "is-enabled", unit], check=False).stdout.strip() == "disabled", unit
        assert host.run(["systemctl", "is-active", unit], check=False).stdout.strip() == "inactive", unit

    # configure as the manual says, through /sbin/e-smith
    host.run(["/sbin/e-smith/config", "setprop", "hotsync", "role", "master"])
    assert host.run(["/sbin/e-smith/config", "getprop", "hotsync", "role"]).stdout == "master\n"
    plan = host.run(["/sbin/e-smith/signal-event", "--list", "nethserver-hotsync-save"]).stdout
    assert "hotsync-check" in plan and "hotsync-conf" in plan
    # a master with its slave on loopback (nothing listens there: pushes fail, which is fine here);
    # the save event enables and starts the package's notifier unit and timer
    host.run("mkdir -p /srv/data /etc/hotsync/include.d && echo x > /srv/data/file && "
             "echo /srv/data/ > /etc/hotsync/include.d/deb-test.include")   # something for the notifier to watch
    host.run(["config", "setprop", "rsyncd", "password", "Deb-test-1"])
    host.run(["config", "setprop", "hotsync", "SlaveHost", "127.0.0.2"])
    host.run(["signal-event", "nethserver-hotsync-save"], timeout=120)
    assert host.run(["systemctl", "is-active", "hotsync-watch.service"], check=False).stdout.strip() == "active"
    assert host.run(["systemctl", "is-active", "hotsync-sync.timer"], check=False).stdout.strip() == "active"
    assert "hotsync-sync.timer" in host.path("/etc/cron.d/hotsync").read_text()     # the timer is the schedule
    assert not host.path("/etc/systemd/system/hotsync-watch.service").exists()     # the package's unit
    pid = host.run(["systemctl", "show", "-p", "MainPID", "--value", "hotsync-watch.service"]).stdout.strip()

    # upgrade (the same package again: prerm upgrade, postinst configure OLD): the notifier runs on, restarted
    host.run(["apt-get", "install", "-y", "-q", "--reinstall", "--no-install-recommends", str(deb)], env=APT_ENV,
             timeout=300)
    assert host.run(["systemctl", "is-active", "hotsync-watch.service"], check=False).stdout.strip() == "active"
    assert host.run(["systemctl", "show", "-p", "MainPID", "--value", "hotsync-watch.service"]).stdout.strip() != pid

    # remove: what runs stops, the rendered files that would run it go, the data and the database stay
    host.run(["apt-get", "remove", "-y", "-q", "hotsync-events"], env=APT_ENV, timeout=300)
    assert host.run(["systemctl", "is-active", "hotsync-watch.service"], check=False).stdout.strip() != "active"
    assert ours_running(host) == []
    assert host.run(["systemctl", "is-active", "hotsync-sync.timer"], check=False).stdout.strip() != "active"
    for gone in (VENV, "/usr/sbin/config", "/sbin/e-smith/config", "/etc/cron.d/hotsync",
                 "/lib/systemd/system/hotsync-watch.service", "/etc/systemd/system/hotsync-sync.timer.d/interval.conf",
                 "/etc/systemd/system/multi-user.target.wants/hotsync-watch.service",
                 "/etc/systemd/system/timers.target.wants/hotsync-sync.timer", "/usr/share/man/man8/hotsync.8.gz"):
        assert not host.path(gone).exists(), gone
    db = host.path("/var/lib/hotsync/db/configuration")
    assert db.exists() and "|role|master|" in db.read_text()
    assert running_services(host) == before

    # purge keeps them too (and the configuration history beside them)
    host.run(["apt-get", "purge", "-y", "-q", "hotsync-events"], env=APT_ENV, timeout=300)
    assert db.exists() and host.path("/var/log/hotsync/config-history.log").exists()
    assert not host.path("/etc/logrotate.d/hotsync-events").exists()
