"""The peer copy: what the master ships about itself, through a channel of its own, checked by the slave.

Every sync ships the master's configuration databases, its include/exclude lists
(:mod:`hotsync_events.sync.peerlists`) and its *manifest* (the paths the push writes, see
:mod:`hotsync_events.sync.policy`) to the slave's ``hotsync-peer`` rsync module, a staging directory
(``var/lib/hotsync/peer-incoming``) that nothing reads. The slave's post-xfer hook checks the staged copy
(:func:`check_staged`): every database file parses, its names are database names, the lists hold one
path or pattern a line, the manifest names no area a push never writes. A good copy is installed as
``var/lib/hotsync/peer/`` (:func:`install_staged`, whole or not at all) and the slave's filter of what a
push may write is rendered from its manifest (:func:`write_accept_filter`); a bad one is refused whole:
the last good copy stays, the slave's status says why, and its next data session is refused with that
reason, so the master learns it. The promote checks the installed copy against the schema before it
applies it (:func:`schema_problems`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from hotsync_events.fsutil import atomic_write, fsync_dir, read_small
from hotsync_events.paths import Root
from hotsync_events.sync.lists import PEER_DIR
from hotsync_events.sync.peerlists import KINDS, LISTS_SUBDIR, export_lists
from hotsync_events.sync.policy import accept_filter, manifest_problems
from hotsync_events.sync.status import state_dir, update_status

__all__ = ["INCOMING", "MANIFEST", "check_staged", "export", "install_staged", "manifest", "receive",
           "schema_problems", "write_accept_filter"]

#: the staging directory the ``hotsync-peer`` module writes (host path)
INCOMING = "/var/lib/hotsync/peer-incoming"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
ACCEPT_FILTER = "/var/lib/hotsync/sync/accept.filter"
#: the largest manifest a slave reads (a list of paths)
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_DB_BYTES = 64 * 1024 * 1024
MAX_LIST_BYTES = 1024 * 1024
_DB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]*")


# ------------------------------------------------------------------------------------------- master
def export(root: Root, includes: list[str]) -> Path:
    """Write the peer copy into ``var/lib/hotsync/sync/export/peer/`` (only changed files rewritten);
    returns that directory, the source of the ``hotsync-peer`` session."""
    target = state_dir(root) / "export" / "peer"
    target.mkdir(parents=True, exist_ok=True)
    os.chmod(target, 0o700)
    wanted = {MANIFEST, LISTS_SUBDIR}
    if root.db_dir.is_dir():
        for f in sorted(root.db_dir.iterdir()):
            if not f.is_file() or f.name.startswith(".") or f.suffix in (".lock", ".tmp") \
                    or not _DB_NAME.fullmatch(f.name) or f.name.endswith(".json"):
                continue
            wanted.add(f.name)
            _write_if_changed(target / f.name, f.read_bytes())
    _write_if_changed(target / MANIFEST, (json.dumps({"format": MANIFEST_FORMAT, "includes": sorted(includes)},
                                                     indent=1, sort_keys=True) + "\n").encode())
    export_lists(root, target)
    for f in target.iterdir():
        if f.name not in wanted:
            shutil.rmtree(f) if f.is_dir() and not f.is_symlink() else f.unlink()
    return target


def _write_if_changed(path: Path, data: bytes) -> None:
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    atomic_write(path, data, mode=0o600)


def digest(directory: Path) -> str:
    """A digest of a peer copy's files (names, modes and contents): the master skips an unchanged copy."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(directory.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(directory)).encode("utf-8", "surrogateescape") + b"\0")
            h.update(f"{p.stat().st_mode & 0o777:o}".encode() + b"\0")
            h.update(p.read_bytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- slave
def manifest(directory: Path) -> list[str] | None:
    """The includes of the manifest in *directory*, or None when there is none (or it is unreadable)."""
    raw = read_small(directory / MANIFEST, MAX_MANIFEST_BYTES)     # sent by the master: a regular file, small
    try:
        data = json.loads(raw.decode("utf-8")) if raw is not None else None
    except ValueError:
        return None
    inc = data.get("includes") if isinstance(data, dict) else None
    return inc if isinstance(inc, list) else None


def check_staged(directory: Path) -> list[str]:
    """Everything wrong with the peer copy staged in *directory* (empty: it may be installed)."""
    from hotsync_events.configdb.format import parse_text

    problems: list[str] = []
    if not directory.is_dir():
        return [f"{directory} is missing"]
    inc = manifest(directory)
    if inc is None:
        problems.append(f"{MANIFEST} is missing or is not a JSON object with a list of includes")
    else:
        problems += [f"{MANIFEST}: {p}" for p in manifest_problems(inc)]
    for f in sorted(directory.iterdir()):
        if f.is_symlink():
            problems.append(f"{f.name} is a symlink")
        elif f.name == LISTS_SUBDIR and f.is_dir():
            problems += _check_lists(f)
        elif f.name == MANIFEST:
            continue
        elif not f.is_file() or not _DB_NAME.fullmatch(f.name) or f.name.endswith(".json"):
            problems.append(f"{f.name} is not a database file")
        elif f.stat().st_size > MAX_DB_BYTES:
            problems.append(f"database {f.name} is {f.stat().st_size} bytes, more than {MAX_DB_BYTES}")
        else:
            try:
                parse_text(f.read_bytes().decode("utf-8"))
            except UnicodeDecodeError as exc:
                problems.append(f"database {f.name} is not UTF-8 text: {exc}")
    return problems


def _check_lists(top: Path) -> list[str]:
    problems = []
    kinds = dict(KINDS)
    for d in sorted(top.iterdir()):
        if d.name not in kinds or not d.is_dir() or d.is_symlink():
            problems.append(f"{LISTS_SUBDIR}/{d.name} is not a list directory")
            continue
        for f in sorted(d.iterdir()):
            name = f"{LISTS_SUBDIR}/{d.name}/{f.name}"
            if f.is_symlink() or not f.is_file() or not f.name.endswith(kinds[d.name]):
                problems.append(f"{name} is not a list file")
            elif f.stat().st_size > MAX_LIST_BYTES:
                problems.append(f"{name} is bigger than {MAX_LIST_BYTES} bytes")
            else:
                try:
                    f.read_bytes().decode("utf-8")
                except UnicodeDecodeError:
                    problems.append(f"{name} is not UTF-8 text")
    return problems


def install_staged(root: Root, directory: Path) -> None:
    """Replace ``var/lib/hotsync/peer`` by a copy of the staged *directory* (checked before), whole."""
    peer = root.join(PEER_DIR)
    new, old = peer.with_name("peer.new"), peer.with_name("peer.old")
    for d in (new, old):
        if d.exists():
            shutil.rmtree(d)
    shutil.copytree(directory, new, symlinks=True)
    for p in [new, *new.rglob("*")]:
        os.chmod(p, 0o700 if p.is_dir() else 0o600)
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(new)
    if peer.exists():
        os.replace(peer, old)
    os.replace(new, peer)
    fsync_dir(peer.parent)
    if old.exists():
        shutil.rmtree(old)


def recover(root: Root) -> None:
    """A post-xfer killed between its two renames leaves ``peer.new`` and no ``peer``: finish the job."""
    peer = root.join(PEER_DIR)
    new = peer.with_name("peer.new")
    if not peer.exists() and new.is_dir():
        os.replace(new, peer)


def write_accept_filter(root: Root) -> None:
    """Render the slave's daemon filter from the installed peer copy's manifest (none yet: only the areas
    a push writes for HotSync itself)."""
    recover(root)
    inc = manifest(root.join(PEER_DIR)) or []
    text = accept_filter(inc)
    path = root.join(ACCEPT_FILTER)
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text, mode=0o600)


def receive(root: Root, log: Callable[[str], None] = lambda m: None) -> bool:
    """The ``hotsync-peer`` module's post-xfer: check the staged copy, install it or refuse it whole."""
    staged = root.join(INCOMING)
    problems = check_staged(staged)
    now = time.time()
    if problems:
        update_status(root, lambda d: d.update(peer_refused={"time": now, "problems": problems[:20]}))
        log("refused the master's peer copy: " + "; ".join(problems[:5]))
        return False
    install_staged(root, staged)
    write_accept_filter(root)
    inc = manifest(root.join(PEER_DIR)) or []

    def change(d: dict) -> None:
        d.pop("peer_refused", None)
        d["peer_copy"] = {"time": now, "includes": len(inc)}

    update_status(root, change)
    return True


def schema_problems(root: Root) -> list[str]:
    """The installed peer copy's configuration database checked against this host's schema (the promote
    refuses to apply a copy with problems unless forced)."""
    from hotsync_events.configdb import ConfigDB
    from hotsync_events.configdb.schema import validator_for

    path = root.join(PEER_DIR) / "configuration"
    if not path.is_file():
        return []
    check = validator_for(root)
    problems = []
    db = ConfigDB(path, name="configuration")
    for key, rec in db.records():
        try:
            check("configuration", key, None, rec)
        except Exception as exc:   # the schema's own message, naming key and prop
            problems.append(str(exc))
    return problems
