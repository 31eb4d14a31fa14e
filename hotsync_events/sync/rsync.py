"""The rsync command line of a push, how it runs, and how its output is read.

Every value is an argument in a list (nothing goes through a shell); the password is read by rsync from
a 0600 file, never from the command line. The TLS leg is stunnel's client started by rsync itself as its
remote shell (:data:`RSH`), verifying the slave against the pinned certificate on every connection.
"""
from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from hotsync_events.childproc import die_with_parent

__all__ = ['EXIT_MEANING', 'MODULE', 'PARTIAL_DIR', 'RSH', 'RsyncRun', 'USER', 'copy_args', 'early_input', 'over_stunnel', 'push_args', 'run_rsync', 'stats_of', 'stunnel_env']

MODULE = "hotsync"
USER = "hotsyncuser"
PARTIAL_DIR = ".hotsync-partial"
#: beside the password file: ``hotsync-epoch N``, sent to the slave's ``early exec`` (push._prepare writes it)
EARLY_INPUT = "push.early"
#: the slave's rsync runs as a daemon over stunnel's pipe (not a socket daemon): by default it would write its
#: errors (a pre-xfer refusal, a refused file) to its stderr; this makes it send them to us through the protocol
CLIENT_MESSAGES = ("--stderr=client",)
#: one line per changed item: the itemize string and the name (no " -> target": names stay unambiguous)
OUT_FORMAT = "%i %n"

EXIT_MEANING = {
    1: "syntax or usage error", 2: "protocol incompatibility", 3: "errors selecting input/output files",
    4: "requested action not supported", 5: "the slave refused the session (wrong password, this host is "
    "not the slave's MasterHost, or the slave is not an enabled slave)",
    6: "daemon unable to append to log-file", 10: "error in socket I/O (the slave or its TLS tunnel is "
    "unreachable, or the slave's certificate does not match the pinned one)", 11: "error in file I/O",
    12: "error in rsync protocol data stream (the connection broke)", 13: "errors with program diagnostics",
    14: "error in IPC code", 20: "received SIGUSR1 or SIGINT", 21: "some error returned by waitpid()",
    22: "error allocating core memory buffers", 23: "partial transfer due to error",
    24: "partial transfer due to vanished source files", 25: "the --max-delete limit stopped deletions",
    30: "timeout in data send/receive", 35: "timeout waiting for daemon connection",
}


def early_input(run_dir: str | os.PathLike, kind: str, epoch: int, moves: str | None = None,
                beat: int | None = None) -> tuple[str, str]:
    """Write what a session sends first (``hotsync-epoch N kind=K nonce=X``, read by the slave's early exec
    and pre-xfer hook: see :mod:`hotsync_events.sync.fence`); returns ``(file, nonce)``. The nonce is fresh for
    each session: a fence refusal is believed only when it names it. *beat*: a heartbeat says every how
    many seconds the real-time notifier tells the slave it is alive (``beat=N``; 0: it stops)."""
    import secrets

    from hotsync_events.fsutil import atomic_write

    nonce = secrets.token_hex(16)
    path = os.path.join(os.fspath(run_dir), f"{EARLY_INPUT}.{kind}")
    extra = f" moves={moves}" if moves else ""     # sync.moves.encode(): directories to rename on the slave first
    if beat is not None:
        extra += f" beat={int(beat)}"
    atomic_write(path, f"hotsync-epoch {int(epoch)} kind={kind} nonce={nonce}{extra}\n", mode=0o600)
    return path, nonce


def push_args(*, sources: list[str], exclude_file: str, password_file: str, timeout: int, bwlimit: int = 0,
              max_delete: int | None = None, dry_run: bool = False, checksum: bool = False,
              rsync: str = "rsync", from0: bool = False, early: str | None = None,
              module: str = MODULE, backup_dir: str | None = None) -> list[str]:
    """The argument list of a push of *sources* (``<root>/./path`` forms) to the slave's *module*; *early*
    is the session's early-input file (:func:`early_input`)."""
    # the slave takes only these options (hotsync_events.sync.xferargs), --no-inc-recursive included; -a
    # without -D (--no-D): the slave takes no device node nor special file (they are the packages' to make).
    # -a, not -rlptgo: with --files-from rsync drops the recursion -a implies, and keeps an explicit -r
    args = [rsync, "-aHAX", "--no-D", "--relative", "--no-inc-recursive", "--numeric-ids", "--delete", "--delay-updates",
            f"--partial-dir={PARTIAL_DIR}", f"--timeout={int(timeout)}", "--modify-window=-1",
            *(["--from0"] if from0 else []),      # before --exclude-from: rsync reads the file as it parses it
            f"--exclude-from={exclude_file}", f"--password-file={password_file}", "--stats",
            "--no-human-readable", f"--out-format={OUT_FORMAT}", *CLIENT_MESSAGES]
    if early is not None:
        args.append(f"--early-input={early}")
    if backup_dir is not None:       # what this push replaces or deletes is kept there (on the slave)
        args += ["--backup", f"--backup-dir={backup_dir}"]
    if bwlimit:
        args.append(f"--bwlimit={int(bwlimit)}")
    if max_delete is not None:
        args.append(f"--max-delete={int(max_delete)}")
    if dry_run:
        args.append("--dry-run")
    if checksum:
        args.append("--checksum")
    args += ["--", *sources, f"rsync://{USER}@hotsync-slave/{module}/"]
    return args


def copy_args(*, source: str, dest: str, module: str, password_file: str, timeout: int, early: str,
              rsync: str = "rsync") -> list[str]:
    """A plain copy of *source* to ``module/dest`` (the peer copy, the master's certificate): no guards,
    no partial dirs, the files as they are."""
    return [rsync, "-rlpt", "--no-inc-recursive", "--delete", f"--timeout={int(timeout)}",
            f"--password-file={password_file}",
            f"--early-input={early}", *CLIENT_MESSAGES, "--", source, f"rsync://{USER}@hotsync-slave/{module}/{dest}"]


#: the TLS leg as rsync's remote shell: stunnel's client on rsync's stdin and stdout (pipes). rsync's
#: RSYNC_CONNECT_PROG gave it a loopback TCP pair without TCP_NODELAY instead, where Nagle's algorithm against
#: delayed acknowledgements cost 40 ms several times per session. The program and its configuration travel in
#: the environment (HOTSYNC_STUNNEL, HOTSYNC_STUNNEL_CONF), never through a shell's parser; rsync appends the
#: host and its server command line, which the shell ignores.
RSH = """sh -c 'exec "$HOTSYNC_STUNNEL" "$HOTSYNC_STUNNEL_CONF"' stunnel"""
_URL = re.compile(r"^rsync://([^/]+)/([^/]+)(/.*)?$")


def stunnel_env(env: dict, stunnel: str, client_conf: str) -> dict:
    """*env* for sessions through stunnel with *client_conf* (see :func:`over_stunnel`)."""
    out = {k: v for k, v in env.items() if k != "RSYNC_CONNECT_PROG"}
    out["HOTSYNC_STUNNEL"], out["HOTSYNC_STUNNEL_CONF"] = stunnel, client_conf
    return out


def over_stunnel(args: list[str], env: dict) -> list[str]:
    """A push's argument list (ending ``-- SOURCES... rsync://user@host/module/path``) as it runs: with
    :func:`stunnel_env` in *env*, rsync's daemon protocol over stunnel as its remote shell
    (``-e RSH user@host::module/path``); otherwise unchanged."""
    if "HOTSYNC_STUNNEL" not in env or "--" not in args or not args or not _URL.match(args[-1]):
        return args
    m = _URL.match(args[-1])
    assert m is not None
    i = args.index("--")
    return [*args[:i], "-e", RSH, *args[i:-1], f"{m.group(1)}::{m.group(2)}{m.group(3) or '/'}"]


@dataclass
class RsyncRun:
    returncode: int
    stdout: str
    stderr: str
    itemized: list[str] = field(default_factory=list)
    deletions: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    raw: bytes = b""

    @property
    def changes(self) -> list[str]:
        return self.itemized

    def error_lines(self, limit: int = 40) -> list[str]:
        lines = [ln for ln in self.stderr.splitlines() if ln.strip() and not _STUNNEL_NOISE.match(ln)]
        return lines[-limit:]


_STUNNEL_NOISE = re.compile(r"^(\d{4}\.\d\d\.\d\d \d\d:\d\d:\d\d LOG[5-7]|\[[ .]\] )")
_ITEM = re.compile(r"^([<>ch.*][fdLDS+.][^ ]*) (.*)$")
_STAT = re.compile(r"^(Number of files|Number of created files|Number of deleted files|"
                   r"Number of regular files transferred|Total file size|Total transferred file size|"
                   r"Literal data|Total bytes sent|Total bytes received): ([\d,.]+)")


def stats_of(stdout: str) -> tuple[list[str], list[str], dict[str, int]]:
    """``(itemized changes, deleted names, stats)`` from ``--itemize-changes --stats`` output."""
    items: list[str] = []
    deleted: list[str] = []
    stats: dict[str, int] = {}
    for line in stdout.splitlines():
        m = _STAT.match(line)
        if m:
            stats[m.group(1)] = int(re.sub(r"[,.]", "", m.group(2)))
            continue
        if line.startswith("*deleting "):
            deleted.append(line[len("*deleting "):].lstrip())
            continue
        m = _ITEM.match(line)
        if m and len(m.group(1)) >= 9:
            items.append(line)
    return items, deleted, stats


_UNESCAPE = re.compile(rb"\\#([0-7]{3})")
_RAW_ITEM = re.compile(rb"^([<>ch.][fdLDS][^ ]{9}|\*deleting  ) (.+)$")


def changed_names(raw: bytes) -> tuple[list[bytes], list[bytes]]:
    """``(changed, deleted)`` names (bytes, relative to the transfer root) from ``--out-format='%i %n'`` output.

    rsync writes an unprintable byte of a name as ``\\#ooo`` (and a backslash before ``#`` as ``\\#134``),
    so the names decode exactly, newlines and all.
    """
    changed: list[bytes] = []
    deleted: list[bytes] = []
    for line in raw.split(b"\n"):
        m = _RAW_ITEM.match(line)
        if not m:
            continue
        name = _UNESCAPE.sub(lambda mo: bytes([int(mo.group(1), 8)]), m.group(2))
        if name in (b"./", b"."):
            continue
        (deleted if m.group(1).startswith(b"*") else changed).append(name)
    return changed, deleted


def _pattern(name: bytes) -> bytes:
    """An anchored rsync filter pattern matching exactly *name* (wildcards escaped only where rsync reads them)."""
    if re.search(rb"[*?\[]", name):
        name = re.sub(rb"([*?\[\\])", rb"\\\1", name)
    return b"/" + name


def only_these_filter(protect: list[str], names: list[bytes], sources: Sequence[bytes] = ()) -> bytes:
    """A ``--from0`` filter file: the push's own rules (*protect*, ``+``/``-`` lines: the refused areas and
    the excludes), then exactly *names* with their parent directories (so rsync descends only where something
    changed, and deletes only what is named), then nothing else. *sources* (the transfer's own top paths, a
    directory ending in ``/``) are always let in, without their contents: the attributes of their implied
    parent directories travel with them."""
    rules = [p.encode("utf-8", "surrogateescape") for p in protect]
    parents: set[bytes] = set()
    for src in sources:
        parts = src.rstrip(b"/").split(b"/")
        for i in range(1, len(parts)):
            parents.add(b"/".join(parts[:i]) + b"/")
        parents.add(src)
    for name in names:
        parts = name.rstrip(b"/").split(b"/")
        for i in range(1, len(parts)):
            parents.add(b"/".join(parts[:i]) + b"/")
    rules += [b"+ " + _pattern(p) for p in sorted(parents)]
    rules += [b"+ " + _pattern(n) for n in names]       # a name ending in "/" matches the directory only
    rules.append(b"- *")
    return b"\0".join(rules) + b"\0"


_PROGRESS = re.compile(rb"^\s*([\d,.]+)\s+(\d+%)\s+(\S+/s)\s+\S+(?:\s+\(xfr#(\d+)[^)]*\))?")


def run_rsync(args: list[str], *, env: dict[str, str], progress=None) -> RsyncRun:
    """Run rsync to the end; it dies with us (a ``kill -9`` of the sync leaves no orphan pushing on).

    *progress(files, bytes, rate, percent)* is called as rsync reports its overall progress (its
    ``--info=progress2`` lines, which are kept out of the output parsed afterwards)."""
    if progress is not None:
        args = [*args[:args.index("--")], "--info=progress2", *args[args.index("--"):]]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, preexec_fn=die_with_parent(), close_fds=True)
    try:
        if progress is None:
            out, err = proc.communicate()
        else:
            out, err = _follow(proc, progress)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    stdout = out.decode("utf-8", "backslashreplace")
    stderr = err.decode("utf-8", "backslashreplace")
    items, deleted, stats = stats_of(stdout)
    return RsyncRun(proc.returncode, stdout, stderr, items, deleted, stats, out)


def _follow(proc: subprocess.Popen, progress) -> tuple[bytes, bytes]:
    """Read rsync's stdout as it comes (progress lines end in a carriage return), stderr in a thread."""
    import threading

    errs: list[bytes] = []
    reader = threading.Thread(target=lambda: errs.append(proc.stderr.read()), daemon=True)   # type: ignore[union-attr]
    reader.start()
    kept = bytearray()
    pending = b""
    while True:
        chunk = proc.stdout.read1(65536)          # type: ignore[union-attr]
        if not chunk:
            break
        pending += chunk
        while True:
            cuts = [i for i in (pending.find(b"\r"), pending.find(b"\n")) if i != -1]
            if not cuts:
                break
            line, pending = pending[:min(cuts)], pending[min(cuts) + 1:]
            m = _PROGRESS.match(line)
            if m and b"%" in line:
                try:
                    progress(int(m.group(4) or 0), int(m.group(1).replace(b",", b"").replace(b".", b"")),
                             m.group(3).decode(), m.group(2).decode())
                except Exception:   # a display problem never stops a push
                    pass
            elif line:
                kept += line + b"\n"
    kept += pending
    proc.wait()
    reader.join()
    return bytes(kept), b"".join(errs)
