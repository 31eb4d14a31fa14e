"""What a session may ask of the slave's rsync daemon: the argument lists a HotSync master sends, and nothing else.

rsync's daemon passes the pre-xfer hook the client's server-side arguments (``RSYNC_ARG0`` .. ``RSYNC_ARGn``:
``rsyncd --server -lHogtpAXrRe.LsfxCIvu --timeout=20 ... . /``). The module's filter judges each name a
push sends, but several options reach the file system by other ways, and a client holding the master's key
and password chooses them (found by a reviewer's attacks, each a test in ``tests/test_trust.py``):

* ``--partial-dir=../../etc/cron.d``: the partial directory is judged by name against the filter (``***``
  matches ``..``) and never cleaned; with ``--delay-updates`` a file waited there, and stayed when the client
  was killed: a cron job on the slave;
* ``--backup-dir`` through a symbolic link the push itself made under ``/var/lib/hotsync/kept``;
* ``--mkpath`` with an uncleaned destination (``srv/evil/../data/new/``): the collapsed path is judged, the
  raw one made;
* the ``i`` of incremental recursion in the capability string (see :func:`asks_incremental_recursion`);
* popt's ``!#:+`` in any option's value, which rsync replaces with the next argument after the hook read
  them: the hook saw one value and the daemon used another.

So the slave accepts a session only when each argument is one a HotSync master sends to that module, with
its value pinned: the short options from a fixed set, the capability string without ``i``, the long options
below with exact or numeric values, ``--partial-dir .hotsync-partial``, a ``--backup-dir`` that is one
folder of its own under ``/var/lib/hotsync/kept/``, then ``.`` and the module's root as the destination. A master of an
older or newer HotSync that sends anything else is refused with the argument named.
"""
from __future__ import annotations

import re

__all__ = ["asks_incremental_recursion", "client_args", "session_problem"]

#: the short options a HotSync master's rsync sends each module (before the ``e.`` of the capabilities):
#: -a's l o g t p r (not D: no device node nor special file is taken), H A X, R (--relative), d (a list push;
#: with r when its new directories go whole), n (--dry-run), c (--checksum), b (--backup)
SHORT = {"hotsync": frozenset("lHogtpAXrRdncb"), "hotsync-peer": frozenset("ltpr"),
         "hotsync-pair": frozenset("ltpr")}
#: the long options that stand alone, and those whose value comes in the same argument (checked whole)
FLAGS = frozenset({"--no-msgs2stderr", "--delete", "--stats", "--delay-updates", "--numeric-ids", "--no-r", "--force",
                   "--delete-missing-args"})
VALUES = {"--log-format": re.compile(r"%i"), "--timeout": re.compile(r"[0-9]{1,7}"),
          "--max-delete": re.compile(r"-?[0-9]{1,10}"), "--bwlimit": re.compile(r"[0-9]{1,10}")}
#: short options with a value in the same argument: --modify-window=-1
EXACT = frozenset({"-@-1"})
#: the one destination a HotSync master names in each module (its names are all from the module's root)
DESTINATION = {"hotsync": "/", "hotsync-peer": "/", "hotsync-pair": "/master.crt"}
#: the long options whose value is the next argument
PARTIAL_DIR = ".hotsync-partial"
KEPT = "/var/lib/hotsync/kept/"
_KEPT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CLUSTER = re.compile(r"-([A-Za-z]*)e(?:[0-9]+\.[0-9]+)?\.([A-Za-z]*)")   # e32.N. from a pre-release rsync
#: popt replaces this in a value with the next argument after the hook has read them
POPT_NEXT = "!#:+"


def client_args(env) -> list[str]:
    """The client's arguments as the daemon passes them on (``RSYNC_ARG0`` .. ``RSYNC_ARGn``, in order)."""
    return [env[k] for k in sorted((k for k in env if k.startswith("RSYNC_ARG") and k[9:].isdigit()),
                                   key=lambda k: int(k[9:]))]


def asks_incremental_recursion(args: list[str]) -> bool:
    """Whether a client's arguments leave the daemon free to use incremental recursion.

    The client says what it supports in the capability string of its ``-e`` option (``-logDtpre.iLsfxCIvu``:
    ``i`` is incremental recursion; ``--no-inc-recursive`` leaves it out); the daemon takes the last one it is
    given, and without one it does not recurse incrementally. rsync (3.2 to 3.5 at least) tests a directory
    it has not expanded yet against the daemon's filter as if it were an extended attribute's name, which no
    path rule matches, so a refused directory was made (empty, mode 0700) before it was refused. Judged
    strictly: any ``e`` in a cluster of short options, the ``-e`` given its value in the next argument, any
    ``--rsh`` form; an ``i`` in any of them counts."""
    infos: list[str] = []
    for i, a in enumerate(args):
        if a.startswith("--rsh"):
            infos.append(a.split("=", 1)[1] if "=" in a else (args[i + 1] if i + 1 < len(args) else ""))
        elif a.startswith("-") and not a.startswith("--") and "e" in a:
            rest = a[a.index("e") + 1:]
            infos.append(rest if rest else (args[i + 1] if i + 1 < len(args) else ""))
    return any("i" in info for info in infos)


def kept_dir(where: str) -> bool:
    """Whether a ``--backup-dir`` is one folder of its own right under /var/lib/hotsync/kept/ (its name
    plain: letters, digits, ``._-``)."""
    if not where.startswith(KEPT):
        return False
    return _KEPT_NAME.fullmatch(where[len(KEPT):].rstrip("/")) is not None


def session_problem(module: str, args: list[str], kind: str | None = None) -> str | None:
    """Why the slave refuses a session to *module* with the client's server-side *args*, or None. *kind*: the
    session's kind as its early input claims it (``dry``, ``sync``, ``realtime``): a claim checked here against
    the arguments (a dry run is ``-n`` and nothing else is: a dry run is not recorded and a real push is)."""
    short = SHORT.get(module)
    if short is None:
        return f"module {module!r} is not served"
    for a in args:
        if POPT_NEXT in a:
            return f"the push's argument {a!r} would be rewritten by rsync after this check"
    if args[:2] != ["rsyncd", "--server"]:
        return "the push's arguments are not an rsync client's"
    if asks_incremental_recursion(args):
        return ("the push leaves rsync free to use incremental recursion, which lets it create a directory this "
                "slave's filter refuses; a HotSync master sends --no-inc-recursive")
    i, clusters = 2, 0
    while i < len(args) and args[i] != ".":
        a = args[i]
        m = _CLUSTER.fullmatch(a)
        if m is not None:
            clusters += 1
            letters = m.group(1)
            if not set(letters) <= short or len(set(letters)) != len(letters):
                return f"the push asks for rsync options a HotSync master never sends: {a!r}"
            if kind is not None and ("n" in letters) != (kind in ("dry", "beat")):
                return (f"the session says it is a {kind or 'nameless'} one, and its options "
                        + ("are a dry run's" if "n" in letters else "are not a dry run's") + f": {a!r}")
        elif a in FLAGS or a in EXACT:
            pass
        elif a.split("=", 1)[0] in VALUES and "=" in a:
            name, value = a.split("=", 1)
            if VALUES[name].fullmatch(value) is None:
                return f"the push's {name} is not one a HotSync master sends: {a!r}"
        elif a == "--partial-dir" and module == "hotsync":
            if i + 1 >= len(args) or args[i + 1] != PARTIAL_DIR:
                return f"the push's partial directory must be {PARTIAL_DIR}, not {args[i + 1:i + 2]}"
            i += 1
        elif a == "--backup-dir" and module == "hotsync":
            if i + 1 >= len(args) or not kept_dir(args[i + 1]):
                return f"a push may keep what it replaces only in a folder of its own under {KEPT}"
            i += 1
        else:
            return f"the push asks for an rsync option a HotSync master never sends: {a!r}"
        i += 1
    if clusters != 1:
        return "the push's arguments do not carry one set of short options"
    if "--delay-updates" in args[2:i] and "--partial-dir" not in args[2:i]:
        # rsync's own default holding directory (.~tmp~) is not one the slave's filter knows
        return f"a push that delays its updates holds them in {PARTIAL_DIR}"
    dests = args[i + 1:]
    # the module's root: the daemon would change into any other destination through a link of the slave's
    # own (/var/run -> ../run), where the filter judges the path as written
    if i >= len(args) or len(dests) != 1 or dests[0] != DESTINATION[module]:
        return f"the push's destination is not one a HotSync master names: {dests}"
    return None
