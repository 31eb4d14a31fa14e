"""HotSync itself: the ``nethserver-hotsync-save`` event, the slave's rsync daemon behind stunnel, the schedule.

What the save event does (as NethServer's ``nethserver-hotsync-conf`` + templates + adjust-services):

* renders ``/etc/rsyncd.conf``, ``/etc/rsyncd.secrets`` (0600), ``/etc/stunnel/hotsync.conf`` (the slave's
  TLS server), ``/etc/stunnel/hotsync-client.conf`` (the master's TLS client, which rsync starts for each
  push), ``/etc/cron.d/hotsync`` and the interval drop-in of ``hotsync-sync.timer`` (the master's schedule);
* on a slave, makes the TLS key and self-signed certificate at the first save (priority 4, before the
  templates), sets ``rsyncd``/``stunnel`` status, stops the services plugins mark as writers of synced
  data, and (re)starts ``hotsync-stunnel``; on a master, starts the notifier and the schedule. Under
  systemd those are the package's units (``hotsync-stunnel.service``, ``hotsync-watch.service``,
  ``hotsync-sync.timer``: debian/units, docs/packaging.md) where they are installed; elsewhere the process
  back-end runs the same commands (on a master, the scheduler ``hotsync daemon``, which runs the notifier);
* ``config setprop hotsync status disabled`` + the event stops everything on that side.

Every config value that reaches a rendered file is checked again at render time for that file's format
(:func:`conf_value`, :func:`host_value`, :func:`int_value`), on top of the schema's check at ``setprop``.
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from hotsync_events import hookimpl
from hotsync_events.types import Action, Service, Template
# the values' checks (re-exported: the templates and the plugin kit's authors import them from here)
from hotsync_plugins._hotsync_values import RenderRefused as RenderRefused
from hotsync_plugins._hotsync_values import (_is_loopback, _with_mapped, conf_value, cron_command, host_value,
                                             int_value, resolve, strongest_digest, stunnel_value, tool)
from hotsync_plugins._hotsync_values import daemon_address as daemon_address
from hotsync_plugins._hotsync_values import secret_value as secret_value

EVENT = "nethserver-hotsync-save"
RSYNCD_CONF = "/etc/rsyncd.conf"
RSYNCD_PAIR_CONF = "/etc/rsyncd-pair.conf"
RSYNCD_SECRETS = "/etc/rsyncd.secrets"
STUNNEL_CONF = "/etc/stunnel/hotsync.conf"
STUNNEL_CLIENT_CONF = "/etc/stunnel/hotsync-client.conf"
STUNNEL_PAIR_CLIENT_CONF = "/etc/stunnel/hotsync-pair-client.conf"
#: the slave's daemon filter (hotsync_events.sync.policy.accept_filter) and the peer copy's staging directory
ACCEPT_FILTER = "/var/lib/hotsync/sync/accept.filter"
#: the logs rsync and stunnel append to (made 0640 by the save event before they start)
LOGS = ("/var/log/hotsync/rsyncd.log", "/var/log/hotsync/stunnel-client.log",
        "/var/log/hotsync/hotsync-stunnel-tls.log")
PEER_INCOMING = "/var/lib/hotsync/peer-incoming"
CRON = "/etc/cron.d/hotsync"
WATCH_UNIT = "/etc/systemd/system/hotsync-watch.service"     # an earlier version's (the package ships the unit)
TIMER_DROPIN = "/etc/systemd/system/hotsync-sync.timer.d/interval.conf"   # `interval` for hotsync-sync.timer
UNIT_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")   # a unit is used if installed
RENDERED_MARK = "rendered by nethserver-hotsync-save"
SERVICES = ("hotsync-stunnel",)
SCHEDULER = "hotsync-scheduler"
USER = "hotsyncuser"
MODULE = "hotsync"
#: options a push never needs and that could reach outside the replica or tear files
#: (--backup and --backup-dir are checked by the pre-xfer hook instead: only into /var/lib/hotsync/kept/)
REFUSED_OPTIONS = ("inplace", "append", "append-verify", "write-devices", "copy-devices", "temp-dir",
                   "suffix", "link-dest", "copy-dest", "compare-dest", "only-write-batch",
                   "write-batch", "read-batch", "remove-source-files", "delete-excluded", "fake-super",
                   "insecure-links", "iconv", "sender", "keep-dirlinks", "no-implied-dirs")


# ------------------------------------------------------------------------------------------- roles
def _props(db, key: str) -> dict:
    """The props of *key* from a ConfigDB or a template's read-only view of one."""
    from hotsync_events.events.templates import DBView

    if key not in db:
        return {}
    return dict(db[key].items()) if isinstance(db, DBView) else db.props(key)


def role(db) -> str:
    r = _props(db, "hotsync").get("role", "")
    return "master" if r == "server" else r


def enabled(db) -> bool:
    """status enabled; a fenced master counts as disabled until it is configured as a slave (re-pair)."""
    status = _props(db, "hotsync").get("status", "enabled")
    return status != "disabled" and (status != "fenced" or role(db) == "slave")


def slave_active(db) -> bool:
    """Whether this host runs the receiving daemon (rsyncd behind stunnel).

    An enabled slave with a MasterHost and a password does; so does a promoted master that still names
    its old master (MasterHost kept by hotsync-promote): its daemon refuses every push with the FENCED
    marker, so the old master learns at its next try that it was demoted (see hotsync_events.sync.fence).
    ``config setprop hotsync MasterHost ''`` on the master ends that.
    """
    h = _props(db, "hotsync")
    return (role(db) in ("slave", "master") and enabled(db) and bool(h.get("MasterHost"))
            and bool(_props(db, "rsyncd").get("password")))


def master_fingerprint(db) -> str | None:
    """``hotsync MasterFingerprint`` in canonical form, or None when unset (or not a fingerprint)."""
    from hotsync_events.sync.tls import normalise_fingerprint

    value = _props(db, "hotsync").get("MasterFingerprint") or ""
    try:
        return normalise_fingerprint(value) if value else None
    except ValueError:
        return None


def master_active(db) -> bool:
    return role(db) == "master" and enabled(db) and bool(_props(db, "hotsync").get("SlaveHost"))


def realtime_active(db) -> bool:
    """An enabled master with `hotsync realtime` enabled: it runs the notifier (issue 11)."""
    return master_active(db) and _props(db, "hotsync").get("realtime", "enabled") != "disabled"


def _root_of(db):
    from hotsync_events.paths import Root, root_from

    path = getattr(db, "path", None)
    if path is not None and len(path.parents) > 4 and path.parent.parts[-4:] == ("var", "lib", "hotsync", "db"):
        return Root(path.parents[4])
    return root_from(None)


# ------------------------------------------------------------------------------------------- render data
def _no_space(path: str, what: str) -> str:
    """A path for stunnel's ``execArgs`` (split on whitespace, no quoting) and rsyncd.conf."""
    text = conf_value(path, what)
    if any(c.isspace() for c in text):
        raise RenderRefused(f"{what} {path!r} holds a space: stunnel cannot pass it to rsync; use a root "
                            "without spaces")
    return text


def rsyncd_values(db, root: str) -> dict:
    """Everything rsyncd.conf and rsyncd-pair.conf need, checked for their formats."""
    from hotsync_events.paths import Root
    from hotsync_events.sync.tls import incoming_dir
    from hotsync_events.sync.hookd import hook_command
    from hotsync_events.sync.xfer import hook_argv

    h = _props(db, "hotsync")
    master = host_value(h.get("MasterHost", ""), "MasterHost")
    base = root.rstrip("/")
    rootp = _no_space(base or "/", "root path")
    xfer_dir = f"{base}/run/hotsync/xfer"
    common = {
        "use chroot": "yes",
        # the staging modules (the peer copy, the pairing) are chrooted in their own directories; the data
        # module's links are munged (below)
        "munge symlinks": "no",
        "insecure links": "no",
        "numeric ids": "yes",
        "read only": "no",
        "write only": "yes",
        "list": "no",
        **({"uid": "root", "gid": "root"} if os.geteuid() == 0 else {}),
        "auth users": USER,
        "secrets file": conf_value(f"{base}{RSYNCD_SECRETS}", "secrets path"),
        "strict modes": "yes",
        "auth digest": strongest_digest(),
        "hosts allow": " ".join(_with_mapped(resolve(master))),
        "hosts deny": "*",
        # one session at a time, all modules: a session's post-xfer hook (which installs a peer copy and the
        # filter the next session reads) ends before the next session starts; the master waits and retries
        "max connections": "1",
        "lock file": conf_value(f"{base}/run/hotsync/rsyncd.lock", "lock path"),
        "timeout": str(int_value(h.get("timeout", 300), 5, 86400, "hotsync timeout")),
        "refuse options": " ".join(REFUSED_OPTIONS),
    }
    # The data module is chrooted in the slave's root: the chroot confines nothing there, and rsync then
    # follows a link a push stored wherever a later session's path goes through it (its destination, a
    # deletion of a name whose directory is not in the list, the partial directory). So every link is stored
    # as rsync's munged form (/rsyncd-munged/<target>), which leads nowhere, and a promote writes them back
    # as the master had them (hotsync_events.sync.symlinks).
    # what a push may not plant on a host where it runs as root: setuid and setgid bits of files (directories
    # keep theirs: a shared folder's group), file capabilities (security.capability)
    data = {**common, "munge symlinks": "yes", "incoming chmod": "Fug-s", "filter": "-x security.capability"}
    return {
        "root": rootp,
        "log": conf_value(f"{base}/var/log/hotsync/rsyncd.log", "log path"),
        "common": "".join(f"{k} = {v}\n" for k, v in common.items()),
        "data": "".join(f"{k} = {v}\n" for k, v in data.items()),
        "accept": conf_value(f"{base}{ACCEPT_FILTER}", "filter path"),
        "peer": _no_space(f"{base}{PEER_INCOMING}", "peer copy path"),
        "incoming": _no_space(str(incoming_dir(Root(root))), "pairing path"),
        "pre": conf_value(hook_command("pre", root, " ".join(shlex.quote(a) for a in hook_argv("pre", root))),
                          "pre-xfer command"),
        # what the master sends first (one line: its pair epoch, the session's kind and a nonce) kept for the
        # pre-xfer check; shell builtins only (no process starts but mkdir, once), no python start-up
        "early": conf_value(f"d={shlex.quote(xfer_dir)}; [ -d \"$d\" ] || mkdir -p \"$d\"; IFS= read -r l; "
                            "echo \"$l\" > \"$d/early.$RSYNC_PID\"", "early exec command"),
        # a dry run changes nothing and its pre-xfer recorded nothing: its post-xfer ends without python
        "post": conf_value(f"f={shlex.quote(xfer_dir)}/dry.$RSYNC_PID; if [ -e \"$f\" ]; then exec rm -f \"$f\"; fi; "
                           + hook_command("post", root, " ".join(shlex.quote(a) for a in hook_argv("post", root))),
                           "post-xfer command"),
    }


def stunnel_values(db, root: str) -> dict:
    from hotsync_events.paths import Root
    from hotsync_events.sync.tls import (cert_paths, master_pin_fingerprint, pin_path, placeholder_path,
                                         trusted_master_dir)

    h = _props(db, "hotsync")
    R = Root(root)
    base = root.rstrip("/")
    cert, key = cert_paths(R)
    timeout = int_value(h.get("timeout", 300), 5, 86400, "hotsync timeout")
    out = {"port": int_value(h.get("port", 273), 1, 65535, "hotsync port"),
           "cert": stunnel_value(cert), "key": stunnel_value(key), "pin": stunnel_value(pin_path(R)),
           "timeout": timeout, "connect_timeout": min(timeout, 30),
           "log": stunnel_value(f"{base}/var/log/hotsync/stunnel-client.log"),
           "server_log": stunnel_value(f"{base}/var/log/hotsync/hotsync-stunnel-tls.log")}
    if slave_active(db):
        master = host_value(h["MasterHost"], "MasterHost")
        out["accept"] = f"127.0.0.1:{out['port']}" if _is_loopback(master) else f":::{out['port']}"
        out["trusted"] = stunnel_value(trusted_master_dir(R))
        out["nobody"] = stunnel_value(placeholder_path(R))
        out["rsync"] = stunnel_value(tool("rsync"))
        # rsync is started through sync/nodelay.py's code (TCP_NODELAY on its end of stunnel's loopback pair)
        from hotsync_events.sync.nodelay import exec_args

        out["python"] = stunnel_value(sys.executable)
        # the interpreter's own path as its argv[0] (execArgs splits on spaces: else its bare name), so what
        # it starts (the database replicas' setup after a push) runs the same interpreter, virtualenv and all
        out["argv0"] = out["python"] if not any(c.isspace() for c in out["python"]) else "python"
        from hotsync_events.sync.xfer import package_top

        out["nodelay"] = " ".join(exec_args(_no_space(out["rsync"], "rsync path"),
                                            hookd=_no_space(package_top(), "hotsync_events' directory")))
        # the pairing service takes connections before any certificate is trusted: no server forked for them
        out["nodelay_pair"] = " ".join(exec_args(_no_space(out["rsync"], "rsync path")))
        out["rsyncd_conf"] = _no_space(f"{base}{RSYNCD_CONF}", "rsyncd.conf path")
        # the listener beside stunnel (sync/listener.py) starts rsync for each connection, warm; a root whose
        # socket path is too long for a Unix socket keeps stunnel's exec of the launcher above
        from hotsync_events.sync.listener import socket_path

        sock = socket_path(R)
        out["listener"] = stunnel_value(sock, "listener socket") if sock else None
        out["pair_conf"] = _no_space(f"{base}{RSYNCD_PAIR_CONF}", "rsyncd-pair.conf path")
        # the pairing service runs only until this slave trusts the certificate MasterFingerprint names
        want = master_fingerprint(db)
        out["pairing"] = want is None or master_pin_fingerprint(R) != want
    if h.get("SlaveHost"):
        out["slave"] = host_value(h["SlaveHost"], "SlaveHost")
    return out


def installed_unit(name: str) -> str | None:
    """*name* if a unit file of that name is installed on this host (the package's), else None: then the
    service runs with the process back-end (a checkout or a venv without the package)."""
    return name if any(os.path.exists(f"{d}/{name}") for d in UNIT_DIRS) else None


def timer_schedule(root: str) -> bool:
    """Whether this root's schedule is the package's hotsync-sync.timer (systemd runs it, the unit is
    installed), rather than /etc/cron.d/hotsync (and the `hotsync daemon` scheduler of the process back-end)."""
    from hotsync_events.events.services import backend_name
    from hotsync_events.paths import Root

    return backend_name(Root(root)) == "systemd" and installed_unit("hotsync-sync.timer") is not None


def timer_values(db) -> dict:
    """hotsync-sync.timer's OnCalendar for `hotsync interval`: the same times as the cron line."""
    interval = int_value(_props(db, "hotsync").get("interval", 15), 1, 1440, "hotsync interval")
    if interval < 60:
        when = f"*-*-* *:00/{interval}:00"
    else:
        hours = max(interval // 60, 1)
        when = f"*-*-* 00/{hours}:05:00" if hours < 24 else "*-*-* 01:05:00"
    return {"when": when, "interval": interval}


def cron_values(db, root: str) -> dict:
    h = _props(db, "hotsync")
    interval = int_value(h.get("interval", 15), 1, 1440, "hotsync interval")
    if interval < 60:
        when = f"*/{interval} * * * *"
    else:
        hours = max(interval // 60, 1)
        when = f"5 */{hours} * * *" if hours < 24 else "5 1 * * *"
    argv = [sys.executable, "-m", "hotsync_events.cli.hotsync", "--root", root, "sync", "--scheduled"]
    return {"when": when, "command": cron_command(argv), "interval": interval}


def drill_values(db, root: str) -> dict | None:
    """The slave's drill schedule for the cron file (``hotsync DrillSchedule`` daily or weekly), or None.

    Cron runs ``hotsync drill --scheduled`` hourly; the drill itself decides whether one is due (the last
    one older than the period), so a missed night is caught up in the next hour."""
    h = _props(db, "hotsync")
    schedule = h.get("DrillSchedule") or "off"
    if role(db) != "slave" or not enabled(db) or schedule not in ("daily", "weekly"):
        return None
    argv = [sys.executable, "-m", "hotsync_events.cli.hotsync", "--root", root, "-q", "drill", "--scheduled"]
    return {"when": "41 * * * *", "command": cron_command(argv), "schedule": schedule}


def replica_check_values(db, root: str) -> dict | None:
    """The slave's look at its database replicas for the cron file (``hotsync replicas check`` every 5
    minutes: one mail when they stop following the master, one when they follow again), or None: not an
    enabled slave, or no server runs as a replica (the master looks after each sync)."""
    from hotsync_events.sync.replicas import replicas_wanted

    if role(db) != "slave" or not enabled(db) or not replicas_wanted(db):
        return None
    argv = [sys.executable, "-m", "hotsync_events.cli.hotsync", "--root", root, "-q", "replicas", "check"]
    return {"when": "*/5 * * * *", "command": cron_command(argv)}


# ------------------------------------------------------------------------------------------- hooks
@hookimpl
def hotsync_templates(db):
    events = (EVENT, "nethserver-hotsync-update")
    yield Template(RSYNCD_CONF, events=events)
    yield Template(RSYNCD_PAIR_CONF, events=events)
    yield Template(RSYNCD_SECRETS, events=events, mode=0o600)
    yield Template(STUNNEL_CONF, events=events, services=("hotsync-stunnel",))
    yield Template(STUNNEL_CLIENT_CONF, events=events, mode=0o644)
    yield Template(STUNNEL_PAIR_CLIENT_CONF, events=events, mode=0o644)
    yield Template(CRON, events=events, mode=0o644)
    yield Template(TIMER_DROPIN, events=events, mode=0o644)   # the timer is restarted at each save event


@hookimpl
def hotsync_services(db):
    stunnel = tool("stunnel4", "stunnel")
    slave = slave_active(db)
    # the slave's only way in: stunnel, and the listener beside it that starts rsync for each connection stunnel
    # accepted (hotsync_events/sync/listener.py). An earlier version ran a standalone rsync daemon as
    # hotsync-rsyncd: declared stopped, so an upgrade stops it
    yield Service("hotsync-rsyncd", unit=None, enabled=False, events={EVENT: "stop"},
                  command=(tool("rsync"), "--version"))
    # under systemd, the package's units (debian/units); without them, the process back-end runs the commands
    yield Service("hotsync-stunnel", unit=installed_unit("hotsync-stunnel.service"), enabled=slave,
                  events={EVENT: "restart"},
                  command=(sys.executable, "-I", "-m", "hotsync_events.sync.listener", "--root", "{root}", "--rsync",
                           tool("rsync"), "--config", RSYNCD_CONF, stunnel, "{root}" + STUNNEL_CONF))
    from hotsync_events.events.services import backend_name
    from hotsync_events.sync.replguard import sync_wanted

    # a synchronous database replica that is away must not hold the master's commits (sync/replguard.py)
    yield Service("hotsync-replica-guard", unit=installed_unit("hotsync-replica-guard.service"),
                  enabled=master_active(db) and sync_wanted(db), events={EVENT: "restart"},
                  command=(sys.executable, "-m", "hotsync_events.cli.hotsync", "--root", "{root}", "replicas", "guard"))
    root = _root_of(db)
    if backend_name(root) == "process":
        # the scheduler (`hotsync daemon`) runs the schedule and the notifier
        yield Service(SCHEDULER, unit=None, enabled=master_active(db), events={EVENT: "restart"},
                      command=(sys.executable, "-m", "hotsync_events.cli.hotsync", "--root", "{root}", "daemon"))
        return
    yield Service("hotsync-watch", unit=installed_unit("hotsync-watch.service"), enabled=realtime_active(db),
                  events={EVENT: "restart"},
                  command=(sys.executable, "-m", "hotsync_events.cli.hotsync", "--root", "{root}", "watch"))
    if timer_schedule(str(root.path)):     # else cron reads /etc/cron.d/hotsync
        yield Service("hotsync-sync", unit="hotsync-sync.timer", enabled=master_active(db), events={EVENT: "restart"})
    # Debian's rsync.service serves /etc/rsyncd.conf, which is HotSync's: a second way in, without TLS
    if installed_unit("rsync.service"):
        yield Service("debian-rsync", unit="rsync.service", enabled=False, events={EVENT: "stop"})


@hookimpl
def hotsync_actions(db):
    yield Action(EVENT, "hotsync-manual-commands", _manual_commands, priority=1)
    yield Action(EVENT, "hotsync-old-units", _old_units, priority=1)
    yield Action(EVENT, "hotsync-repair", _repair, priority=2)
    yield Action(EVENT, "hotsync-check", _check, priority=3, critical=True)
    yield Action(EVENT, "hotsync-tls", _tls, priority=4, critical=True)
    yield Action(EVENT, "hotsync-conf", _conf, priority=70)
    yield Action(EVENT, "hotsync-writers", _writers, priority=91)


#: the commands the NethServer manual names by their full path (/sbin/e-smith/...)
MANUAL_COMMANDS = ("config", "db", "signal-event", "expand-template")


def _manual_commands(ctx) -> int:
    """``<root>/sbin/e-smith/{config,db,signal-event,expand-template}`` for the manual's paths: links to this
    installation's commands, made where missing (a package's own links, or NethServer's, are left alone)."""
    here = Path(sys.executable).parent
    d = ctx.root.join("/sbin/e-smith")
    for name in MANUAL_COMMANDS:
        target = here / name if (here / name).exists() else shutil.which(name)
        link = d / name
        if target is None or os.path.lexists(link):
            continue
        d.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link)
        ctx.log(f"hotsync: /sbin/e-smith/{name} -> {target} (the manual's path)")
    return 0


def _old_units(ctx) -> int:
    """The hotsync-watch unit an earlier version rendered would hide the package's: removed if it has the mark."""
    path = ctx.root.join(WATCH_UNIT)
    if path.is_file() and RENDERED_MARK in path.read_text(encoding="utf-8", errors="replace"):
        path.unlink()       # systemd reloads it before the next start (NeedDaemonReload)
        ctx.log(f"hotsync: removed {WATCH_UNIT} (rendered by an earlier version; the package ships the unit)")
    return 0


def _repair(ctx) -> int:
    """A host configured as slave leaves the fenced state (re-pair after a promote): see hotsync_events.sync.fence."""
    if role(ctx.db) != "slave":
        return 0
    from hotsync_events.sync.fence import repair_as_slave

    repair_as_slave(ctx.root, ctx.db, log=ctx.log)
    return 0


def _check(ctx) -> int:
    """Refuse a configuration that cannot work, before anything is rendered, saying what is missing."""
    db = ctx.db
    h = _props(db, "hotsync")
    r = role(db)
    problems = []
    if r == "slave" and enabled(db):
        if not h.get("MasterHost"):
            problems.append("a slave needs its master's address: config setprop hotsync MasterHost <address>")
        if not _props(db, "rsyncd").get("password"):
            problems.append("a slave needs the push password: config setprop rsyncd password <secret>")
    if r == "master" and enabled(db):
        if not h.get("SlaveHost") and h.get("MasterHost"):   # promoted (hotsync-promote): no slave until re-paired
            ctx.log(f"hotsync: promoted master; it pushes to no slave until the old master {h['MasterHost']} is "
                    "re-paired: then config setprop hotsync SlaveHost <its address>")
        elif not h.get("SlaveHost"):
            problems.append("a master needs its slave's address: config setprop hotsync SlaveHost <address>")
        if not _props(db, "rsyncd").get("password"):
            problems.append("a master needs the slave's push password: config setprop rsyncd password <secret>")
    if r not in ("", "master", "slave"):
        problems.append(f"unknown hotsync role {r!r}: use master or slave")
    for p in problems:
        ctx.log(f"hotsync: {p}")
    if not r:
        ctx.log("hotsync: role not defined; nothing to run (config setprop hotsync role master|slave)")
    return 1 if problems else 0


def _tls(ctx) -> int:
    """This host's TLS identity (both roles); on a slave, its pin of the master and what a push may write."""
    r = role(ctx.db)
    if r not in ("master", "slave"):
        return 0
    from hotsync_events.fsutil import open_private_log
    from hotsync_events.sync.tls import ensure_host_cert

    ensure_host_cert(ctx.root, log=ctx.log)
    for name in LOGS:   # the daemons append to them; they name files: 0640 from creation
        os.close(open_private_log(ctx.root.join(name)))
    if slave_active(ctx.db):
        prepare_slave(ctx.root, ctx.db, log=ctx.log)
    return 0


def prepare_slave(root, db, log=print) -> None:
    """The slave's private directories, its pin of the master (MasterFingerprint), and the filter of what a
    push may write (from the last manifest it accepted)."""
    from hotsync_events.sync import peercopy
    from hotsync_events.sync.tls import ensure_placeholder, incoming_dir, set_master_pin

    for d in (root.join(PEER_INCOMING), incoming_dir(root), root.join("/var/lib/hotsync/dumps"),
              root.join("/var/lib/hotsync/kept"), root.join("/var/lib/hotsync/sync")):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
    ensure_placeholder(root)
    want = master_fingerprint(db)
    trusted = set_master_pin(root, want)
    if want is None:
        log("hotsync: this slave does not know its master's certificate yet: on the master, `hotsync status` "
            "shows its fingerprint; here run config setprop hotsync MasterFingerprint <it>; "
            "signal-event nethserver-hotsync-save")
    elif trusted is None:
        log(f"hotsync: waiting for the master's certificate {want} (its next push sends it)")
    peercopy.write_accept_filter(root)


def _conf(ctx) -> int:
    """rsyncd/stunnel status and access follow the role, as NethServer's nethserver-hotsync-conf does."""
    db = ctx.db
    slave, master = slave_active(db), master_active(db)
    want = {"rsyncd": {"status": "enabled" if slave else "disabled"},
            "stunnel": {"status": "enabled" if (slave or master) else "disabled",
                        "access": "green" if slave else ""}}
    with db.transaction() as txn:
        for key, props in want.items():
            if txn.record(key) is None:
                txn.set(key, "service", props)
            elif any(txn.getprop(key, p) != v for p, v in props.items()):
                txn.setprop(key, props)
    return 0


def _writers(ctx) -> int:
    """On a slave, the services that write synced data stay stopped (the copy must not diverge)."""
    if role(ctx.db) != "slave" or ctx.pm is None:
        return 0
    from hotsync_events.events.services import ServiceManager, collect_services

    services = collect_services(ctx.pm, ctx.db)
    writers = [(p, s) for p, s in services if s.writer]
    if not writers:
        return 0
    mgr = ServiceManager(ctx.root, services)
    failed = 0
    for _, svc in writers:
        try:
            state = mgr.status(svc.name)
            if state.running:
                ctx.log(f"hotsync: {svc.name} writes synced data: stopped on this slave ({mgr.do(svc.name, 'stop')})")
        except Exception as exc:
            ctx.log(f"hotsync: could not stop {svc.name}: {exc}")
            failed += 1
    return 1 if failed else 0
