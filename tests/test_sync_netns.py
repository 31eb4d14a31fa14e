"""End to end across two network namespaces joined by a veth pair (as root with iproute2; else skipped).

The slave's stunnel and rsync daemon run in one namespace, the master's ``hotsync sync`` in the other,
so the master really connects from its own address (MasterHost) over a link the test can cut.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sync_pair import BIN, PASSWORD, Pair, tree

pytestmark = [pytest.mark.slow, pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="needs root and iproute2"),
              pytest.mark.skipif(not (shutil.which("rsync") and (shutil.which("stunnel4") or shutil.which("stunnel"))),
                                 reason="needs rsync and stunnel4")]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class NetnsPair(Pair):
    """A Pair whose slave lives in namespace ``s`` at .2 and whose master lives in ``m`` at .1."""

    def __init__(self, base: Path, tag: str, net: str) -> None:
        self.ns_m, self.ns_s = f"hsm{tag}", f"hss{tag}"
        self.dev_m, self.dev_s = f"hvm{tag}", f"hvs{tag}"
        self.addr_m, self.addr_s = f"{net}.1", f"{net}.2"
        super().__init__(base, master_host=self.addr_m)

    def up(self) -> None:
        ip("netns", "add", self.ns_m)
        ip("netns", "add", self.ns_s)
        ip("link", "add", "name", self.dev_m, "type", "veth", "peer", "name", self.dev_s)
        ip("link", "set", "dev", self.dev_m, "netns", self.ns_m)
        ip("link", "set", "dev", self.dev_s, "netns", self.ns_s)
        ip("-n", self.ns_m, "addr", "add", f"{self.addr_m}/30", "dev", self.dev_m)
        ip("-n", self.ns_s, "addr", "add", f"{self.addr_s}/30", "dev", self.dev_s)
        for ns, dev in ((self.ns_m, self.dev_m), (self.ns_s, self.dev_s)):
            ip("-n", ns, "link", "set", "dev", "lo", "up")
            ip("-n", ns, "link", "set", "dev", dev, "up")

    def down(self) -> None:
        for ns in (self.ns_m, self.ns_s):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)

    def ns_of(self, root: Path) -> str:
        return self.ns_m if root == self.master else self.ns_s

    def in_ns(self, root: Path, name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {**os.environ, "HOTSYNC_ROOT": str(root)}
        return subprocess.run(["ip", "netns", "exec", self.ns_of(root), str(BIN / name), *args], capture_output=True,
                              text=True, env=env, timeout=timeout)

    def save(self, root: Path, check: bool = True) -> subprocess.CompletedProcess:
        cp = self.in_ns(root, "signal-event", "nethserver-hotsync-save")
        if check and cp.returncode != 0:
            raise AssertionError(f"signal-event on {root} failed:\n{cp.stdout}{cp.stderr}")
        return cp

    def pair(self) -> NetnsPair:
        S, M = self.slave, self.master
        self.config(S, "setprop", "rsyncd", "password", PASSWORD)
        self.config(S, "setprop", "hotsync", "role", "slave", "MasterHost", self.addr_m, "port", str(self.port))
        self.save(S)
        self.config(M, "setprop", "rsyncd", "password", PASSWORD)
        self.config(M, "setprop", "hotsync", "role", "master", "SlaveHost", self.addr_s, "port", str(self.port),
                    "timeout", "5", "realtime", "disabled")
        self.save(M)
        return self.pin_both()

    def wait_listening(self, timeout: float = 10) -> None:
        probe = f"import socket; socket.create_connection(({self.addr_s!r}, {self.port}), 1).close()"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if subprocess.run(["ip", "netns", "exec", self.ns_m, sys.executable, "-c", probe],
                              capture_output=True, timeout=10).returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError("the slave's stunnel does not answer across the veth link")

    def sync(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.in_ns(self.master, "hotsync", "sync", *args, timeout=timeout)


@pytest.fixture
def npair(tmp_path):
    tag = secrets.token_hex(3)
    p = NetnsPair(tmp_path, tag, f"10.231.{secrets.randbelow(250) + 1}")
    try:
        p.up()
        yield p.pair()
    finally:
        p.close()
        p.down()


def test_push_across_namespaces_from_master_host_only(npair):
    data = npair.master / "srv/data"
    (data / "sub dir").mkdir(parents=True)
    (data / "sub dir/f").write_text("f\n")
    os.symlink("sub dir/f", data / "link")
    os.link(data / "sub dir/f", data / "hard")
    npair.include("/srv/data")
    cp = npair.sync()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert tree(data) == tree(npair.slave / "srv/data")
    npair.settled()                    # the slave's post-xfer hook records the session after the push ended
    st = npair.status(npair.slave)
    assert st["last_run"]["from"] == npair.addr_m and st["last_run"]["exit_status"] == 0
    rsyncd = (npair.slave / "etc/rsyncd.conf").read_text()
    assert f"hosts allow = {npair.addr_m}" in rsyncd


def test_a_cut_link_ends_the_push_by_timeout_and_the_next_run_converges(npair):
    data = npair.master / "srv/data"
    data.mkdir(parents=True)
    (data / "big").write_bytes(os.urandom(8_000_000))
    (data / "small").write_text("s\n")
    npair.include("/srv/data")
    npair.config(npair.master, "setprop", "hotsync", "bwlimit", "1000")
    env = {**os.environ, "HOTSYNC_ROOT": str(npair.master)}
    proc = subprocess.Popen(["ip", "netns", "exec", npair.ns_m, str(BIN / "hotsync"), "sync"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # until the transfer is under way: the slave records the push arriving and data lands in its partial dir
        from hotsync_events.paths import Root
        from hotsync_events.sync.status import read_status

        deadline = time.monotonic() + 30
        while not (read_status(Root(npair.slave)).get("receiving") and any(
                ".hotsync-partial" in str(p) or p.name.startswith(".big") for p in (npair.slave / "srv").rglob("*"))):
            assert time.monotonic() < deadline and proc.poll() is None, "the transfer never started"
            time.sleep(0.02)
        ip("-n", npair.ns_m, "link", "set", "dev", npair.dev_m, "down")
        t0 = time.monotonic()
        out, _ = proc.communicate(timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 1, out
    assert elapsed < 5 + 20, f"the push hung {elapsed:.0f} s after the cut"
    st = npair.status(npair.master)
    assert st["last_run"]["result"] == "failed" and not st.get("running")
    ip("-n", npair.ns_m, "link", "set", "dev", npair.dev_m, "up")
    npair.config(npair.master, "setprop", "hotsync", "bwlimit", "0")
    npair.wait_listening()
    deadline = time.monotonic() + 30
    while True:                    # the slave's daemon may still hold the cut session until its own timeout
        cp = npair.sync()
        if cp.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert tree(data) == tree(npair.slave / "srv/data")
    assert not [p for p in (npair.slave / "srv").rglob("*") if ".hotsync-partial" in p.name]
