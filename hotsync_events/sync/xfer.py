"""The slave's rsync daemon hooks: ``pre-xfer exec`` refuses, ``post-xfer exec`` records.

Run by the daemon as ``python -m hotsync_events.sync.xfer pre|post --root ROOT`` (outside the chroot,
as root). ``pre`` refuses a push (non-zero exit; its stdout reaches the master) unless this host is an
enabled slave and the connection comes from its MasterHost (the daemon sees the real address through
stunnel's PROXY header). ``post`` records the run (start, end, rsync's exit status) in the slave's
status file. Both import only the config database: they run for every push.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import sys
import time

from ..configdb import open_db
from ..paths import Root
from .settings import Settings
from .status import push_history, update_status

__all__ = ["main", "pre_xfer", "post_xfer"]


def _addresses(host: str) -> set[str]:
    try:
        return {str(ipaddress.ip_address(host))}
    except ValueError:
        pass
    try:
        return {str(ipaddress.ip_address(ai[4][0].split("%")[0])) for ai in socket.getaddrinfo(host, None)}
    except (OSError, ValueError):
        return set()


def _norm(addr: str) -> str:
    try:
        ip = ipaddress.ip_address(addr.split("%")[0])
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return str(ip)
    except ValueError:
        return addr


def pre_xfer(root: Root, env=os.environ) -> tuple[int, str]:
    """``(exit code, refusal line)``: refused when fenced (promoted), not an enabled slave, or not MasterHost."""
    db = open_db("configuration", root, validate=False, initialise=False, journal=False)
    cfg = Settings.from_db(db)
    # a promoted host refuses first, whatever its role now, with the marker the old master recognises
    from ..fence import fence_record, refusal

    fenced = fence_record(root)
    problem = refusal(fenced) if fenced is not None else cfg.slave_problem()
    # the epoch check: a master older than the pair's epoch this host knows is stale (a promote happened)
    from ..fence import read_epoch, sender_epoch

    theirs = sender_epoch(root, env.get("RSYNC_PID", ""))
    if problem is None and theirs is not None and theirs < read_epoch(root):
        problem = (f"STALE master: the push carries pair epoch {theirs}, this host knows epoch {read_epoch(root)} "
                   "(a slave was promoted since); the pushing host must be re-paired")
    addr = _norm(env.get("RSYNC_HOST_ADDR", ""))
    if problem is None and addr not in _addresses(cfg.master_host):
        problem = f"the push comes from {addr or 'an unknown address'}, not from MasterHost {cfg.master_host}"
    if env.get("RSYNC_MODULE_NAME", "hotsync") != "hotsync":
        problem = f"module {env.get('RSYNC_MODULE_NAME')!r} is not served"
    pid = env.get("RSYNC_PID", str(os.getpid()))
    now = time.time()

    def change(d: dict) -> None:
        d["role"] = cfg.role or "unset"
        d["peer"] = cfg.master_host
        if problem:
            d["last_refused"] = {"time": now, "from": addr, "reason": problem}
        else:
            d.setdefault("receiving", {})[pid] = {"start": now, "from": addr}
            for old in [k for k, v in d["receiving"].items() if now - v.get("start", now) > 86400]:
                del d["receiving"][old]

    update_status(root, change)
    if problem:
        return 1, f"refused by the slave: {problem}"
    return 0, ""


def post_xfer(root: Root, env=os.environ) -> int:
    pid = env.get("RSYNC_PID", "")
    try:
        status = int(env.get("RSYNC_EXIT_STATUS", "-1"))
    except ValueError:
        status = -1
    now = time.time()

    def change(d: dict) -> None:
        rec = (d.get("receiving") or {}).pop(pid, None)
        if rec is None:      # refused by pre-xfer: nothing was received
            return
        run = {"start": rec.get("start"), "end": now, "exit_status": status, "from": rec.get("from"),
               "result": "success" if status == 0 else "failed"}
        d["last_received"] = run
        push_history(d, run)
        if status == 0:
            d["last_success"] = run
        else:
            d["last_error"] = {"time": now, "message": f"a push from {rec.get('from')} ended with rsync exit "
                               f"status {status}"}

    update_status(root, change)
    if status == 0:   # the master's epoch came with the push: a slave knows the pair's epoch
        from ..fence import learn_peer_epoch

        learn_peer_epoch(root)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] not in ("pre", "post") or argv[1] != "--root":
        print("usage: python -m hotsync_events.sync.xfer pre|post --root ROOT", file=sys.stderr)
        return 2
    root = Root(argv[2])
    try:
        if argv[0] == "pre":
            code, message = pre_xfer(root)
            if message:
                print(message, flush=True)
            return code
        return post_xfer(root)
    except Exception as exc:  # a broken hook refuses rather than letting a push through unchecked
        print(f"refused by the slave: its pre/post-xfer hook failed: {type(exc).__name__}: {exc}", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
