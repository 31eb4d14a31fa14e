"""The slave's rsync daemon hooks: ``pre-xfer exec`` refuses, ``post-xfer exec`` records and installs.

Run by the daemon as ``python -m hotsync_events.sync.xfer pre|post --root ROOT`` (outside the chroot, as
root), for each of the slave's modules (``RSYNC_MODULE_NAME``): ``hotsync`` (the data), ``hotsync-peer``
(the peer copy, :mod:`hotsync_events.sync.peercopy`) and ``hotsync-pair`` (the master's certificate).

``pre`` refuses a session (non-zero exit; its output reaches the master) when this host is fenced (the
refusal carries the authenticated FENCED marker), is not an enabled slave, when the push carries no pair
epoch or an older one than this host's (STALE), when the connection does not come from MasterHost (the
address stunnel saw), when the client's arguments are not ones a HotSync master sends
(:mod:`hotsync_events.sync.xferargs`), and, for data, while the master's last peer copy stands refused. ``post`` records
the session by kind (``sync``, ``realtime``, ``dry``; the promote's torn-state check reads them), installs
a peer copy, or trusts a master certificate that MasterFingerprint names. Both import only the config
database and the sync's own modules: they run for every session.
"""
from __future__ import annotations

import os
import stat
import sys
import time

from hotsync_events.configdb import open_db
from hotsync_events.paths import Root
from hotsync_events.sync.settings import Settings
from hotsync_events.sync.status import push_history, read_status, update_status
from hotsync_events.sync.xferargs import client_args, kept_dir, session_problem

__all__ = ["KINDS", "hook_argv", "main", "package_top", "post_xfer", "pre_xfer", "run_hook"]

#: what a session is, as the master says in its early input: a sync run's push, its dry run, a real-time push
#: of a list of paths, the peer copy, the delivery of the master's certificate
KINDS = ("sync", "dry", "realtime", "beat", "peer", "pair")
#: how far above the slave's own epoch a push's may be (an epoch grows by one at each promote)
EPOCH_JUMP = 1000
MODULES = {"hotsync": ("sync", "dry", "realtime", "beat"), "hotsync-peer": ("peer",), "hotsync-pair": ("pair",)}


def hook_argv(action: str, root: str) -> list[str]:
    """The daemon's command line for this module's *action* (``pre`` or ``post``) on *root*.

    The hook runs for every session, in the latency of every real-time push, so it starts Python as lean as it
    can: isolated (``-I``: no environment, no user site, no current directory on the path) and without the
    site module (``-S``: a virtualenv's ``.pth`` files cost more than the hook's own work), with only the
    directory that holds this package on the path. Everything it imports is in the standard library or here.
    """
    if action not in ("pre", "post"):
        raise ValueError(f"no {action!r} hook")
    code = f"import sys;sys.path.insert(0,{package_top()!r});from hotsync_events.sync.xfer import main;sys.exit(main())"
    return [sys.executable, "-I", "-S", "-c", code, action, "--root", root]


def package_top() -> str:
    """The directory that holds this package (what a lean interpreter puts on its path)."""
    import hotsync_events

    return os.path.dirname(os.path.dirname(os.path.abspath(hotsync_events.__file__)))


def _addresses(host: str) -> set[str]:
    import ipaddress
    import socket

    try:
        return {str(ipaddress.ip_address(host))}
    except ValueError:
        pass
    try:
        return {str(ipaddress.ip_address(str(ai[4][0]).split("%")[0])) for ai in socket.getaddrinfo(host, None)}
    except (OSError, ValueError):
        return set()


def _norm(addr: str) -> str:
    import ipaddress

    try:
        ip = ipaddress.ip_address(addr.split("%")[0])
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return str(ip)
    except ValueError:
        return addr


#: where a push may keep what it replaces or deletes (``--backup-dir``): the slave lists it in its status
KEPT = "/var/lib/hotsync/kept/"


def _backup_of(env) -> tuple[bool, str | None]:
    """``(makes backups, --backup-dir)`` from the client's arguments the daemon passes on (RSYNC_ARGn)."""
    args = client_args(env)
    backups, where = False, None
    for i, a in enumerate(args):
        if a.startswith("-") and not a.startswith("--") and "b" in a.split(".")[0]:
            backups = True
        elif a == "--backup-dir" and i + 1 < len(args):
            backups, where = True, args[i + 1]
        elif a.startswith("--backup-dir="):
            backups, where = True, a.split("=", 1)[1]
    return backups, where


def _max_delete_of(env) -> int | None:
    """The session's ``--max-delete`` as the daemon passes it on (the client sends 0 as -1), or None."""
    for k, a in env.items():
        if k.startswith("RSYNC_ARG") and a.startswith("--max-delete="):
            try:
                return int(a.split("=", 1)[1])
            except ValueError:
                return None
    return None


#: how many folders of kept files a slave holds before it refuses a push that keeps more
KEPT_MAX = 20


def _kept_count(root) -> int:
    """The folders under the kept area (each a push's keeping aside)."""
    try:
        with os.scandir(root.join(KEPT)) as it:
            return sum(1 for e in it if e.is_dir(follow_symlinks=False))
    except OSError:
        return 0


def _kept_dir(where: str | None) -> bool:
    """Whether a ``--backup-dir`` is a folder of its own right under /var/lib/hotsync/kept/."""
    return bool(where) and kept_dir(str(where))


def _links_problem(root: Root, props: dict) -> str | None:
    """Why a data session must wait for this slave's links (sync.symlinks), or None: a /rsyncd-munged here
    would make every munged link lead somewhere; the links it holds from before are munged first (once per
    pairing and manifest); a shipped path under a link of this host would be written where the link leads."""
    from hotsync_events.sync.lists import PEER_DIR
    from hotsync_events.sync.peercopy import manifest
    from hotsync_events.sync.symlinks import MUNGED, link_on_the_way, migrate

    if os.path.lexists(root.join(MUNGED)):
        return f"{MUNGED.rstrip('/')} exists on this slave, where its munged links would lead: remove it"
    includes = manifest(root.join(PEER_DIR)) or []
    on_the_way = link_on_the_way(root, includes)
    if on_the_way:
        return (f"the master ships {on_the_way} on this slave: a push there would write where the link "
                "leads; remove the path from the master's lists or the link here")
    return migrate(root, log=lambda m: None, props=props, includes=includes)


def peer_refused_reason(status: dict) -> str | None:
    """Why data pushes are refused because of the peer copy (the last one shipped was refused), or None."""
    ref = status.get("peer_refused")
    if not ref:
        return None
    return ("the master's last peer copy was refused by this slave: " + "; ".join(ref.get("problems", [])[:5])
            + ". Fix it on the master (hotsync paths shows the lists), then push again")


def pre_xfer(root: Root, env=os.environ) -> tuple[int, str]:
    """``(exit code, refusal line)`` of one session's pre-xfer hook."""
    from hotsync_events.sync.fence import early_input, fence_record, read_epoch, refusal

    db = open_db("configuration", root, validate=False, initialise=False, journal=False)
    cfg = Settings.from_db(db)
    module = env.get("RSYNC_MODULE_NAME", "")
    early = early_input(root, env.get("RSYNC_PID", ""))
    kind = early.get("kind", "")
    fenced = fence_record(root)
    problem: str | None
    if module not in MODULES:
        problem = f"module {module!r} is not served"
    elif fenced is not None:
        # a promoted host refuses first, whatever its role now, with the marker the old master recognises,
        # bound to this push's nonce by the pair's secret
        problem = refusal(fenced, nonce=early.get("nonce", ""), secret=cfg.password)
    else:
        problem = cfg.slave_problem()
    mine = read_epoch(root)
    if problem is None and "epoch" not in early:
        problem = ("the push carries no pair epoch (an rsync client of its own, or a master of an older version): "
                   "only a HotSync master may push here")
    elif problem is None and early["epoch"] < mine:
        problem = (f"STALE master: the push carries pair epoch {early['epoch']}, this host knows epoch {mine} "
                   "(a slave was promoted since); the pushing host must be re-paired")
    elif problem is None and early["epoch"] > mine + EPOCH_JUMP:
        # an epoch grows by one at each promote; this host's next promote picks one above the master's
        problem = (f"the push carries pair epoch {early['epoch']}, far above this host's {mine} (an epoch grows "
                   f"by one at each promote): if it is right, run hotsync epoch set {early['epoch']} --why \"...\" on this "
                   "host")
    elif problem is None and kind not in MODULES[module]:
        problem = f"a {kind or 'nameless'} session cannot use module {module}"
    addr = env.get("RSYNC_HOST_ADDR", "")
    if addr != cfg.master_host or not addr:      # the common case (MasterHost an address, as stunnel saw it) imports nothing
        addr = _norm(addr)
    if problem is None and (not addr or (addr != cfg.master_host and addr not in _addresses(cfg.master_host))):
        problem = f"the push comes from {addr or 'an unknown address'}, not from MasterHost {cfg.master_host}"
    if problem is None:
        # only what a HotSync master sends: each option and its value (sync.xferargs)
        why = session_problem(module, client_args(env), kind=kind if module == "hotsync" else None)
        if why is not None:
            problem = f"{why} (a master of another HotSync version? upgrade hotsync-events on both hosts)"
    if problem is None and module == "hotsync":
        problem = _links_problem(root, db.props("hotsync") if "hotsync" in db else {})
    st = read_status(root)
    if problem is None and module == "hotsync":
        problem = peer_refused_reason(st)
    backups, backup_dir = _backup_of(env)
    if problem is None and backups and not _kept_dir(backup_dir):
        problem = f"a push may keep what it replaces only in a folder of its own under {KEPT}"
    if problem is None and backups and any(os.path.islink(root.join(p)) for p in (KEPT, str(backup_dir))):
        # rsync makes the backup folder through a link (the slave's filter keeps a push from sending one)
        problem = f"{backup_dir} on this slave is a symbolic link: a push keeps nothing through it"
    if problem is None and backups and _kept_count(root) >= KEPT_MAX:
        # a master that asks to keep aside at every push would fill this host's /var
        problem = (f"this slave already keeps {KEPT_MAX} or more folders of what pushes replaced in {KEPT}: look at "
                   "them (hotsync status), remove those you do not need, then push again")
    if problem is None and st.get("keep_aside") and kind in ("sync", "realtime") and not backups:
        problem = ("this slave was re-paired: its first push from the new master must keep aside what it replaces "
                   f"or deletes (in {KEPT}); a person's `hotsync sync` on the master does")
    moved: list[tuple[str, str]] = []
    if problem is None and "moves" in early:
        # directories the master renamed: renamed here too before the list (under the new names) arrives
        if early["moves"] is None:
            problem = "the renames this push carries are malformed"
        elif module != "hotsync" or kind != "realtime":
            problem = f"a {kind or 'nameless'} session cannot carry renames"
        elif st.get("keep_aside"):
            problem = "this slave was re-paired: its first push from the new master is a full one, not a rename"
        else:
            from hotsync_events.sync.moves import apply_moves

            problem, moved = apply_moves(root, early["moves"])
    pid = env.get("RSYNC_PID", str(os.getpid()))
    now = time.time()

    def change(d: dict) -> None:
        d["role"] = cfg.role or "unset"
        d["peer"] = cfg.master_host
        if problem:
            d["last_refused"] = {"time": now, "from": addr, "reason": problem.split(": this host was promoted")[0]
                                 if fenced else problem}
        elif kind in ("dry", "beat"):   # change nothing: not received pushes; post-xfer skips python (the marker)
            pass
        else:
            d.setdefault("receiving", {})[pid] = {"start": now, "from": addr, "kind": kind, "module": module,
                                                  "epoch": early.get("epoch"), "kept": backup_dir,
                                                  "max_delete": _max_delete_of(env)}
            for old in [k for k, v in d["receiving"].items() if now - v.get("start", now) > 86400]:
                del d["receiving"][old]
        if not problem and module == "hotsync":
            if kind == "beat":
                # the notifier's heartbeat says how often it beats (0: no more): the promote's alive-window
                beat = early.get("beat")
                d["last_beat"] = {"time": now, "from": addr, "every": None if beat is None else min(beat, 600)}
            elif kind == "realtime" and (d.get("last_beat") or {}).get("from") == addr:
                # a busy notifier pushes instead of beating: its pushes keep the heartbeat's record fresh
                d["last_beat"] = {**d["last_beat"], "time": now}
            elif kind == "dry":
                # a dry run holds this slave's one session, so a heartbeat waits at the door meanwhile: while
                # it runs (its daemon alive: the same process, by its start time) the master is (promote.verify)
                running = {k: v for k, v in (d.get("dry_running") or {}).items()
                           if isinstance(v, dict) and rsync_alive(k, v.get("ticks"))}
                d["dry_running"] = {**running, pid: {"start": now, "ticks": proc_start(pid)}}
        if moved:
            d["last_renames"] = {"time": now, "from": addr, "renamed": [list(m) for m in moved]}

    # a real-time push lasts a fraction of a second: its post-xfer hook writes the public snapshot, after the
    # files landed, so no snapshot's writer takes the CPU the push is waiting for. A full push may last
    # hours: readers without root see it running (sync/public.py)
    update_status(root, change, public_later=True, public=kind not in ("realtime", "beat", "dry") or bool(problem))
    if not problem and kind in ("dry", "beat"):
        marker = root.join(f"/run/hotsync/xfer/dry.{pid}")
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    if problem:
        return 1, f"refused by the slave: {problem}"
    return 0, ""


def rsync_alive(pid: str, ticks: str | None = None) -> bool:
    """Whether *pid* is a live rsync (a session's daemon process on this host); with *ticks*, the one that
    started then (:func:`proc_start`), not a later process that got the same pid."""
    try:
        with open(f"/proc/{int(pid)}/comm", encoding="ascii", errors="replace") as fh:
            if not fh.read().strip().startswith("rsync"):
                return False
    except (OSError, ValueError):
        return False
    return ticks is None or proc_start(pid) == ticks


def proc_start(pid: str) -> str | None:
    """When process *pid* started, in clock ticks since boot (``/proc/PID/stat`` field 22), or None."""
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rpartition(")")[2].split()[19]
    except (OSError, ValueError, IndexError):
        return None


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
        kind = rec.get("kind") or "sync"
        if rec.get("module", "hotsync") != "hotsync" or kind == "dry":
            return           # a dry run changes nothing; the peer copy and the pairing have their own records
        # exit 25 of a push that could delete nothing (the master's one session, --max-delete=0): every file
        # arrived, and the files only this slave holds are still here, for the master's guard to count next
        held = status == 25 and rec.get("max_delete") == -1
        run = {"start": rec.get("start"), "end": now, "exit_status": status, "from": rec.get("from"), "kind": kind,
               "result": "success" if status == 0 else "deletions held" if held else "failed"}
        d["last_received"] = run
        push_history(d, run)
        # the sessions that did not complete since the last complete full push: the promote's torn check
        unclean = d.setdefault("unclean", [])
        if held:
            d["last_success"] = run      # the copy is as fresh as the push; not a full one (last_full stays)
        elif status == 0:
            d["last_success"] = run
            if kind == "sync":
                d["last_full"] = run
                unclean.clear()
                if rec.get("kept") and d.pop("keep_aside", None) is not None:
                    d["kept_by_repair"] = {"path": "/" + rec["kept"].strip("/"), "time": now}
                if rec.get("epoch") is not None:    # only to pick an epoch above it at promote
                    d["master_epoch"] = max(int(rec["epoch"]), int(d.get("master_epoch") or 0))
        else:
            unclean.append(run)
            del unclean[:-20]
            d["last_error"] = {"time": now, "message": f"a {kind} push from {rec.get('from')} ended with rsync "
                               f"exit status {status}" + (_LIMIT if status == 25 else "")}

    # what the session delivered is taken in (a peer copy checked and installed, a master certificate
    # trusted) before the session stops counting as in progress: whoever waits for the slave to settle
    # then sees its outcome
    mine = (read_status(root).get("receiving") or {}).get(pid) if pid else None
    if status == 0 and mine is not None:
        if mine.get("module") == "hotsync-peer":
            from hotsync_events.sync.peercopy import receive

            receive(root)
        elif mine.get("module") == "hotsync-pair":
            _receive_master_cert(root)
    update_status(root, change, public_later=True)
    if status == 0 and mine is not None and mine.get("module", "hotsync") == "hotsync" and mine.get("kind") == "sync":
        from hotsync_events.sync.replsetup import after_push

        try:                  # a full push may bring a seed offer: the database replicas' setup, in the background
            after_push(root)
        except Exception:     # never the push's outcome; the next one tries again
            pass
    return 0


#: exit status 25 of a push that could delete some files: it stopped at its --max-delete limit
_LIMIT = " (it stopped deleting at its --max-delete limit)"


def _receive_master_cert(root: Root) -> None:
    from hotsync_events.sync.tls import TLSError, accept_master_cert, candidate_fingerprint, incoming_dir, normalise_fingerprint

    db = open_db("configuration", root, validate=False, initialise=False, journal=False)
    want = (db.props("hotsync") if "hotsync" in db else {}).get("MasterFingerprint") or None
    try:
        want = normalise_fingerprint(want) if want else None
    except ValueError:
        want = None
    path = incoming_dir(root) / "master.crt"
    try:
        # never through a link the session stored: a certificate is a regular file
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise OSError(f"{path} is not a regular file")
            data = fh.read(1 << 20)
        trusted = accept_master_cert(root, data, want)
        error = None
    except (OSError, TLSError) as exc:
        trusted, error = None, str(exc)
    seen = candidate_fingerprint(root)
    update_status(root, lambda d: d.update(master_cert={"time": time.time(), "presented": seen,
                                                        "trusted": trusted is not None, "error": error}))


def run_hook(action: str, root: Root, env=os.environ) -> tuple[int, str]:
    """``(exit code, message)`` of the *action* (``pre`` or ``post``) hook, as the program and the hooks'
    server (:mod:`hotsync_events.sync.hookd`) answer it."""
    try:
        if action == "pre":
            return pre_xfer(root, env)
        return post_xfer(root, env), ""
    except Exception as exc:  # a broken hook refuses rather than letting a push through unchecked
        return 1, f"refused by the slave: its pre/post-xfer hook failed: {type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] not in ("pre", "post") or argv[1] != "--root":
        print("usage: python -m hotsync_events.sync.xfer pre|post --root ROOT", file=sys.stderr)
        return 2
    os.umask(0o077)
    code, message = run_hook(argv[0], Root(argv[2]))
    if message:
        print(message, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
