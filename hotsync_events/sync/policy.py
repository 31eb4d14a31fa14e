"""What a push may write on the slave: the one list both sides enforce.

A push may write the paths the master ships (its plugins' paths, their dumps and the sysadmin's include
lists: the *manifest* that travels with every push through the peer channel) and nothing else. Inside
those, it may never write the areas of :data:`REFUSED`: this host's own HotSync state, and whatever runs
code as root on the slave (cron, systemd units, init scripts, shell profiles, sudo, PAM, the dynamic
loader, the package manager, programs and libraries...). Each side applies the list on its own:

* the master (:mod:`hotsync_events.sync.lists`) never sends a refused area: an include line inside one is
  reported and left out, a refused area inside an include is excluded from it;
* the slave's rsync daemon reads :func:`accept_filter`, rendered from the same list and the last manifest
  it accepted, before every session: whatever a client sends, a refused area is never written nor deleted,
  and a path outside the manifest neither;
* the slave checks each shipped manifest (:func:`manifest_problems`) and refuses the whole peer copy when it
  names a refused area, so an honest master learns it at once instead of losing files silently.

The peer copy (the master's config databases, lists and manifest) never travels through the data module:
it has a module of its own, checked and installed by the slave (:mod:`hotsync_events.sync.peercopy`).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ALLOWED_STATE", "REFUSED", "Area", "accept_filter", "inner_refused", "manifest_problems", "norm_path", "refusal_of",
           "sender_rules"]


@dataclass(frozen=True)
class Area:
    """A host path a push never writes: a directory (ending in ``/``: itself and everything below) or a
    file; *why* says it in a sysadmin's words."""

    path: str
    why: str

    @property
    def is_dir(self) -> bool:
        return self.path.endswith("/")

    def covers(self, path: str) -> bool:
        """Whether host *path* (normalised, absolute, no trailing slash) is this area or inside it."""
        if self.is_dir:
            return path == self.path.rstrip("/") or path.startswith(self.path)
        return path == self.path

    def inside(self, path: str) -> bool:
        """Whether this area lies strictly inside the directory *path*."""
        return self.path.startswith(path.rstrip("/") + "/") and self.path.rstrip("/") != path.rstrip("/")


_STATE = "this host's own HotSync state"
_ROOT = "it runs code as root"
_ACCOUNTS = "it decides who is root"
_BROAD = "a whole system tree: name the directories below it that hold the data"

#: never written by a push, whatever the client sends (the slave's rsync filter, the master's excludes)
REFUSED: tuple[Area, ...] = (
    # this host's HotSync state: its config db, sync state, certificates, events, templates, lists, logs
    # (but for ALLOWED_STATE below)
    *(Area(p, _STATE) for p in (
        "/var/lib/hotsync/", "/var/lib/nethserver/db/", "/var/log/hotsync/", "/run/",
        "/etc/hotsync/", "/etc/e-smith/", "/etc/rsyncd.conf", "/etc/rsyncd-pair.conf", "/etc/rsyncd.secrets", "/etc/stunnel/",
        # where the slave's munged links would lead (sync.symlinks): it must never exist
        "/rsyncd-munged/")),
    # what runs code as root
    *(Area(p, _ROOT) for p in (
        "/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/libx32/", "/usr/bin/", "/usr/sbin/", "/usr/lib/",
        "/usr/lib32/", "/usr/lib64/", "/usr/libexec/", "/usr/local/bin/", "/usr/local/sbin/", "/usr/local/lib/",
        "/boot/", "/root/", "/proc/", "/sys/", "/dev/",
        "/etc/cron.d/", "/etc/cron.hourly/", "/etc/cron.daily/", "/etc/cron.weekly/", "/etc/cron.monthly/",
        "/etc/crontab", "/etc/anacrontab", "/var/spool/cron/", "/var/spool/anacron/",
        "/etc/systemd/", "/etc/init.d/", "/etc/init/", "/etc/rc.local", "/etc/rc0.d/", "/etc/rc1.d/", "/etc/rc2.d/",
        "/etc/rc3.d/", "/etc/rc4.d/", "/etc/rc5.d/", "/etc/rc6.d/", "/etc/rcS.d/", "/etc/rc.d/", "/var/lib/systemd/",
        "/var/spool/at/", "/etc/ld.so.cache",
        "/etc/profile", "/etc/profile.d/", "/etc/bash.bashrc", "/etc/bashrc", "/etc/environment",
        "/etc/ld.so.preload", "/etc/ld.so.conf", "/etc/ld.so.conf.d/", "/etc/modprobe.d/", "/etc/modules-load.d/",
        "/etc/udev/", "/etc/sysctl.conf", "/etc/sysctl.d/", "/etc/logrotate.conf", "/etc/logrotate.d/",
        "/etc/apt/", "/etc/dpkg/", "/etc/yum/", "/etc/yum.repos.d/", "/var/lib/dpkg/", "/var/lib/rpm/",
        "/etc/network/", "/etc/NetworkManager/", "/etc/xdg/", "/etc/letsencrypt/renewal/",
        "/etc/letsencrypt/renewal-hooks/",
        # read by root at boot, at login, by the package managers, by services' start (found by a review
        # that planted each through a real pair)
        "/etc/update-motd.d/", "/etc/tmpfiles.d/", "/etc/binfmt.d/", "/etc/kernel/", "/etc/inittab",
        "/etc/yum.conf", "/etc/dnf/", "/etc/default/", "/etc/sysconfig/", "/etc/environment.d/",
        "/etc/rsyslog.conf", "/etc/rsyslog.d/", "/etc/dbus-1/", "/usr/share/dbus-1/", "/usr/share/polkit-1/",
        "/var/lib/polkit-1/", "/etc/dhcp/", "/etc/selinux/", "/etc/apparmor.d/", "/etc/initramfs-tools/",
        "/etc/ppp/", "/etc/X11/", "/etc/nsswitch.conf", "/etc/login.defs", "/etc/shells", "/etc/hosts.equiv",
        "/usr/share/perl5/", "/usr/share/perl/", "/usr/local/share/perl/", "/usr/share/python3/",
        "/usr/local/etc/", "/usr/share/initramfs-tools/",
        "/opt/venvs/")),     # HotSync's own code (the package's virtualenv) and any other venv run as root
    # a whole system tree: what it holds beyond the areas above is not known here, so a manifest names the
    # directories below it that hold data (exact paths: what is below them stays as the rules above say)
    *(Area(p, _BROAD) for p in (
        "/etc", "/usr", "/usr/share", "/usr/local", "/usr/local/share", "/var", "/var/lib", "/var/spool",
        "/opt")),
    *(Area(p, _ACCOUNTS) for p in (
        "/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "/etc/sudoers", "/etc/sudoers.d/", "/etc/sudo.conf",
        "/etc/pam.d/", "/etc/security/", "/etc/polkit-1/", "/etc/ssh/")),
)

#: HotSync areas a push does write: the plugins' dumps, and the old files a first push after a role change
#: keeps aside (``--backup-dir``); listed before the refused areas in the slave's filter
ALLOWED_STATE = ("/var/lib/hotsync/dumps/", "/var/lib/hotsync/kept/")
#: of those, where a push only makes directories: rsync's ``--backup-dir`` puts the files there itself, and a
#: link a push sent there would carry the next push's backups anywhere (its directories are made through it)
DIRECTORIES_ONLY = ("/var/lib/hotsync/kept/",)


def norm_path(path: str) -> str:
    """*path* absolute, without empty or ``.`` components."""
    return "/" + "/".join(p for p in path.split("/") if p not in ("", "."))


def _at_or_under(path: str, areas: Iterable[str]) -> bool:
    """Whether normalised *path* is one of the directories *areas* (each ending in ``/``) or inside one."""
    return any(path == a.rstrip("/") or path.startswith(a) for a in areas)


def refusal_of(path: str) -> Area | None:
    """The refused area host *path* is in, or None when a push may write it."""
    p = norm_path(path)
    if _at_or_under(p, ALLOWED_STATE):
        return None
    return next((a for a in REFUSED if a.covers(p)), None)


def inner_refused(path: str) -> list[Area]:
    """The refused areas strictly inside the directory *path* (excluded from what is shipped of it)."""
    p = norm_path(path)
    return [a for a in REFUSED if a.inside(p)]


def manifest_problems(paths: Iterable[str]) -> list[str]:
    """What is wrong with a shipped manifest (each path absolute, one line, no ``..``, not refused)."""
    problems = []
    for path in paths:
        if not isinstance(path, str) or not path.startswith("/") or any(c in path for c in "\n\r\0"):
            problems.append(f"{path!r} is not an absolute path on one line")
            continue
        if ".." in path.split("/"):
            problems.append(f"{path!r} climbs with '..'")
            continue
        area = refusal_of(path)
        if area is not None:
            problems.append(f"{path} is inside {area.path}, which a push never writes ({area.why})")
        elif _in_directories_only(path):
            problems.append(f"{path} is in this slave's kept files: a push keeps files there itself "
                            "(--backup-dir), a manifest never names them")
    return problems


def _in_directories_only(path: str) -> bool:
    return _at_or_under(norm_path(path), DIRECTORIES_ONLY)


def sender_rules(includes: Iterable[str] | None = None) -> list[str]:
    """The master's filter rules (``+``/``-`` lines, first match wins) that keep every refused area out of a
    push, but for the HotSync areas a push does write (the dumps).

    With *includes* (the push's paths), only the areas a push of them could reach: those inside an include
    or holding one. rsync matches every rule against every name it sends (a 20,000-file push spent 40 ms on
    the 90 rules), and a rule for an area outside every shipped path can match nothing."""
    rules = [f"+ {a}***" for a in ALLOWED_STATE]
    paths = None if includes is None else [norm_path(p) for p in includes]
    for area in REFUSED:
        if paths is not None and not any(area.inside(p) or area.covers(p) for p in paths):
            continue
        holds_allowed = area.is_dir and any(a.startswith(area.path) for a in ALLOWED_STATE)
        rules.append(f"- {area.path}*" if holds_allowed else f"- {area.path}")   # its entries, not itself
    return rules


def _pattern(path: str) -> str:
    """An anchored rsync pattern for *path*, wildcards escaped (rsync reads ``*?[`` in a pattern)."""
    out = []
    for c in path:
        if c in "*?[\\":
            out.append("\\")
        out.append(c)
    return "".join(out)


def accept_filter(manifest: Iterable[str]) -> str:
    """The slave's daemon filter (``exclude from`` of its data module; first match wins).

    In order: the HotSync areas a push writes (dumps; kept files, where it makes only directories: the files
    come through ``--backup-dir``, :data:`DIRECTORIES_ONLY`); the directories above the manifest's
    paths, as directory entries only (a push reaches its paths through them, nothing else in them); for each
    path of the *manifest*, the refused areas inside it (a directory with everything below it), then the
    path and everything below it; then nothing else. A refused area outside every manifest path needs no
    rule of its own: the last rule refuses it, and a manifest never names a path inside one
    (:func:`manifest_problems`, checked again here). Few rules, checked for every name a push sends: the
    filter costs little.
    """
    tops: list[str] = []
    parents: set[str] = {"/var/", "/var/lib/", "/var/lib/hotsync/"}
    for path in sorted({norm_path(p) for p in manifest if isinstance(p, str) and p.startswith("/")}):
        if path == "/" or refusal_of(path) is not None or _in_directories_only(path):
            continue
        tops.append(path)
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            parents.add("/" + "/".join(parts[:i]) + "/")
    lines = ["# rendered by hotsync: what a push may write on this slave (see docs/security.md)",
             "# written by pushes for HotSync itself: the plugins' dumps, the files a first push after a re-pair "
             "keeps aside"]
    for a in ALLOWED_STATE:
        lines += [f"+ {_pattern(a)}", f"+ {_pattern(a)}**/"] if a in DIRECTORIES_ONLY else [f"+ {_pattern(a)}***"]
    lines.append("# the directories above the shipped paths: the directory entries only, not what they hold")
    lines += [f"+ {_pattern(p)}" for p in sorted(parents)]
    lines.append("# the master's shipped paths (its last manifest), without the refused areas inside them")
    for path in tops:
        lines += [f"- {_pattern(a.path)}{'***' if a.is_dir else ''}" for a in inner_refused(path)]
        lines.append(f"+ {_pattern(path)}")           # the path itself, a file or a directory
        lines.append(f"+ {_pattern(path)}/***")       # and, a directory, everything below it
    lines.append("# nothing else: this host's own state, what runs code as root, what the master did not ship")
    lines.append("- *")
    return "\n".join(lines) + "\n"
