"""Helpers for the promote tests: a paired master and slave (tests/sync_pair.py), stopping one side's
processes, running ``hotsync-promote`` and re-pairing in the other direction, all through our CLIs."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from sync_pair import Pair, cli, free_port, tree

__all__ = ["Pair", "cli", "free_port", "kill_root", "promote", "repair", "status_file", "tree", "print_timings"]


def kill_root(root: Path, sig: int = signal.SIGKILL) -> list[int]:
    """SIGKILL every daemon the service manager started under *root* (the master "dies"); another *sig*
    (SIGTERM: its services stop cleanly) to each daemon's process group."""
    killed = []
    run = root / "run/hotsync"
    for pidfile in sorted(run.glob("*.pid")) if run.is_dir() else ():
        try:
            pid = int(pidfile.read_text().split()[0])
            os.killpg(pid, sig)
            killed.append(pid)
        except (OSError, ValueError, IndexError):
            pass
    return killed


def promote(root: Path, *args: str, env: dict | None = None, timeout: float = 300):
    """``hotsync-promote ARGS`` on *root*; returns the CompletedProcess."""
    return cli("hotsync-promote", *args, root=root, env=env, timeout=timeout, input="")


def status_file(root: Path) -> dict:
    p = root / "var/lib/hotsync/sync/status.json"
    return json.loads(p.read_text()) if p.exists() else {}


def print_timings(label: str, record: dict) -> str:
    t = record.get("timings", {})
    line = (f"{label}: promote wall time {record.get('duration', 0):.2f}s = verify {t.get('verify', 0):.2f}s, "
            f"fence {t.get('fence', 0):.2f}s, config {t.get('config', 0):.2f}s, "
            f"database restore {t.get('databases', 0):.2f}s, plugin steps {t.get('steps', 0):.2f}s, "
            f"role {t.get('role', 0):.2f}s, services {t.get('services', 0):.2f}s")
    print(line)
    return line


def repair(pair: Pair) -> int:
    """Re-pair after the slave's promote: the old master becomes the new slave (the runbook's commands).

    On one machine both hosts share 127.0.0.1, so the new slave listens on fresh ports and the new
    master stops its fence listener first; then the new master names its slave.
    """
    new_port, new_rsyncd = free_port(), free_port()
    S, M = pair.slave, pair.master
    # the new master names its slave (and, on one machine only, frees the port: no fence listener)
    pair.config(S, "setprop", "hotsync", "SlaveHost", "127.0.0.1", "MasterHost", "", "port", str(new_port))
    pair.save(S)
    pair.config(M, "setprop", "rsyncd", "TCPPort", str(new_rsyncd))
    pair.config(M, "setprop", "hotsync", "role", "slave", "MasterHost", "127.0.0.1", "port", str(new_port))
    pair.save(M)
    pair.port = new_port
    pair.wait_listening()
    return new_port


def wait_for(check, timeout: float = 20, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    return check()
