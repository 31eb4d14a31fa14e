"""Seeding a replica's data directory: the seed staged, the previous data kept aside, the swap, its undo.

Beside the data directory (two renames on its parent's file system), or inside it when the data directory
cannot be renamed: a mount point of its own (a dedicated volume, a bind mount) or a directory of an overlay
file system (a container's, whose lower layer refuses directory renames), with its entries moved, each by a
rename or, where the file system refuses (EXDEV), copied with ``cp -a`` (owners, modes, times, extended
attributes) and then removed. Every step can be cut short; the next seed's :meth:`SeedSwap.recover` puts the
previous data back.
"""
from __future__ import annotations

import errno
import os
import pwd
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hotsync_events.dbkit.replica import ServerControl
from hotsync_events.fsutil import fsync_dir

__all__ = ["SeedSwap", "start_or_put_back"]


@dataclass(frozen=True)
class SeedSwap:
    """Where a seed is staged (``new``) and the previous data kept (``aside``) while it replaces a data
    directory (``current``): beside it, swapped with two renames; or, when the data directory is a mount
    point (its own volume: a rename cannot leave its file system), inside it, with its entries moved.
    Each step can be cut short: :meth:`recover` at the next seed puts the previous data back."""

    current: Path
    new: Path
    aside: Path
    inside: bool

    @classmethod
    def of(cls, datadir: Path) -> SeedSwap:
        if not_renamable(datadir):
            return cls(datadir, datadir / ".hotsync-seed-new", datadir / ".hotsync-pre-seed", True)
        return cls(datadir, datadir.with_name(datadir.name + ".seed-new"),
                   datadir.with_name(datadir.name + ".pre-seed"), False)

    def _entries(self, d: Path) -> list[Path]:
        """What moves: all but HotSync's own places and, at a volume's root, ``lost+found``."""
        return [e for e in d.iterdir() if not e.name.startswith(".hotsync-")
                and not (self.inside and d == self.current and e.name == "lost+found")]

    def interrupted(self) -> bool:
        """Whether an earlier seed was cut short in the middle of its swap (stop the server, then recover)."""
        if not self.inside:
            return not self.current.exists() and self.aside.exists()
        return self._phase.exists()

    def _move_all(self, src: Path, dst: Path, *, keep_dst: bool = False) -> None:
        for e in self._entries(src):
            if keep_dst and os.path.lexists(dst / e.name):   # a copy cut short: the original is the one there
                _remove(e)
                continue
            move(e, dst / e.name)
        fsync_dir(dst)
        fsync_dir(src)

    @property
    def _phase(self) -> Path:
        """Inside a mount point: which move is under way (``old``: the previous data into aside, ``new``:
        the seed into place), so that a cut is undone the right way."""
        return self.current / ".hotsync-swap-phase"

    def _set_phase(self, phase: str | None) -> None:
        if phase is None:
            self._phase.unlink(missing_ok=True)
        else:
            with open(self._phase, "w", encoding="ascii") as fh:
                fh.write(phase)
                fh.flush()
                os.fsync(fh.fileno())
        fsync_dir(self.current)

    def recover(self, *, server: str, log) -> None:
        """A seed cut short between its moves left the data half swapped: put the previous data back."""
        if not self.inside:
            if not self.current.exists() and self.aside.exists():
                os.rename(self.aside, self.current)
                fsync_dir(self.current.parent)
                log(f"{server}: restored {self.current} from {self.aside.name} (an earlier seed was cut short)")
            return
        try:
            phase = self._phase.read_text(encoding="ascii").strip()
        except OSError:
            return
        if phase == "new":                  # the seed's entries moved in so far go back to it first
            self.new.mkdir(mode=0o700, exist_ok=True)
            self._move_all(self.current, self.new)
        if self.aside.is_dir():
            self._move_all(self.aside, self.current, keep_dst=True)
            self.aside.rmdir()
        self._set_phase(None)
        log(f"{server}: restored {self.current} from {self.aside.name} (an earlier seed was cut short)")

    def prepare_new(self, owner: pwd.struct_passwd | None, mode: int) -> None:
        """An empty ``new``, owned by *owner*."""
        shutil.rmtree(self.new, ignore_errors=True)
        self.new.mkdir(mode=mode)
        if owner is not None and os.geteuid() == 0:
            os.chown(self.new, owner.pw_uid, owner.pw_gid)

    def swap(self) -> None:
        """The previous data -> ``aside``, the seed -> ``current`` (the server is stopped). An ``aside`` that is
        still there holds previous data an earlier seed set aside and never retired: refused, never removed."""
        if self.aside.exists():
            raise OSError(f"{self.aside} holds the data an earlier seed set aside: look at it, remove it, then run "
                          "hotsync replicas setup --seed")
        if not self.inside:
            if self.current.exists():
                os.rename(self.current, self.aside)
            os.rename(self.new, self.current)
            fsync_dir(self.current.parent)
            return
        self.aside.mkdir(mode=0o700)
        self._set_phase("old")
        self._move_all(self.current, self.aside)
        self._set_phase("new")
        self._move_all(self.new, self.current)
        shutil.rmtree(self.new)             # what did not move (a .hotsync-* name the master's copy had)
        self._set_phase(None)

    def put_back(self) -> None:
        """The seed did not start: it goes to ``<name>.seed-failed`` (inside: back to the staging directory),
        the previous data back in place."""
        if not self.inside:
            failed = self.current.with_name(self.current.name + ".seed-failed")
            shutil.rmtree(failed, ignore_errors=True)
            os.rename(self.current, failed)
            os.rename(self.aside, self.current)
            fsync_dir(self.current.parent)
            return
        # the seed's entries back into a new staging directory, then the same undo as after a cut
        self._set_phase("new")
        self.recover(server="", log=lambda m: None)

    def retire(self, keep_previous: str | None, *, server: str, log) -> Path | None:
        """After a seed: the previous data removed, or, with *keep_previous* (a suffix), kept beside the data
        directory as ``<datadir>.<suffix>`` for a person to look at (a server that was not a replica before:
        what it held is nobody else's copy). The kept path, or None."""
        if not self.aside.exists():
            return None
        if keep_previous is None:
            shutil.rmtree(self.aside, ignore_errors=True)
            return None
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,80}", keep_previous):
            raise ValueError(f"keep_previous {keep_previous!r}: letters, digits and ._- only")
        if self.inside:       # never copied off the volume (it could fill the root file system): kept on it
            kept = self.current / f".hotsync-{keep_previous}"
            os.rename(self.aside, kept)
            fsync_dir(self.current)
            log(f"{server}: its previous data is kept in {kept} (on the data directory's own volume; look at it, "
                "then remove it)")
            return kept
        kept = self.current.with_name(f"{self.current.name}.{keep_previous}")
        if kept.exists():
            kept = self.current.with_name(f"{self.current.name}.{keep_previous}-{secrets.token_hex(3)}")
        os.rename(self.aside, kept)
        fsync_dir(kept.parent)
        log(f"{server}: its previous data directory is kept as {kept} (look at it, then remove it)")
        return kept


def not_renamable(datadir: Path) -> bool:
    """Whether *datadir* cannot be renamed on its parent's file system: a mount point (also a bind mount
    of a directory of the same file system, which ``os.path.ismount`` does not see), or on an overlay."""
    if os.path.ismount(datadir):
        return True
    target = os.path.realpath(datadir)
    best, fstype = "", ""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) < 5 or not right:
                    continue
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
                if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                    best, fstype = point, right.split()[0]
    except OSError:
        return False
    return best == target or fstype == "overlay"


def move(src: Path, dst: Path) -> None:
    """Rename *src* to *dst*; where the file system refuses (another volume, an overlay's lower layer:
    EXDEV), copy it whole with ``cp -a`` (owners and all), then remove the source."""
    try:
        os.rename(src, dst)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    cp = subprocess.run(["cp", "-a", "--", str(src), str(dst)], capture_output=True, text=True, timeout=6 * 3600)
    if cp.returncode != 0:
        _remove(dst)
        raise OSError(f"cannot copy {src} to {dst}: {cp.stderr.strip()}")
    _remove(src)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def start_or_put_back(ctl: ServerControl, places: SeedSwap, *, server: str, log, restart: bool = True) -> None:
    """Start the server on the data directory a seed just swapped in (:meth:`SeedSwap.swap`); when it does
    not start, stop what is left of it, put the seed aside as failed and the previous data back (started
    again when *restart*), and raise the start's error."""
    try:
        ctl.start(log=log)
    except Exception:
        log(f"{server}: the seeded server does not start: putting the previous data directory back")
        try:
            ctl.stop(log=log)
        except Exception:
            pass
        places.put_back()
        if restart:
            ctl.start(log=log)
        raise
