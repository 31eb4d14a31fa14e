"""Seeding a replica's data directory: the seed staged, the previous data kept aside, the swap, its undo.

Beside the data directory (two renames on its parent's file system), or inside it when the data directory is
a mount point of its own (a dedicated volume: a rename cannot leave it), with its entries moved. Every step can
be cut short; the next seed's :meth:`SeedSwap.recover` puts the previous data back.
"""
from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
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
        if os.path.ismount(datadir):
            return cls(datadir, datadir / ".hotsync-seed-new", datadir / ".hotsync-pre-seed", True)
        return cls(datadir, datadir.with_name(datadir.name + ".seed-new"),
                   datadir.with_name(datadir.name + ".pre-seed"), False)

    def _entries(self, d: Path) -> list[Path]:
        return [e for e in d.iterdir() if not e.name.startswith(".hotsync-")]

    def _move_all(self, src: Path, dst: Path) -> None:
        for e in self._entries(src):
            os.rename(e, dst / e.name)
        fsync_dir(dst)
        fsync_dir(src)

    def recover(self, *, server: str, log) -> None:
        """A seed cut short between its moves left the data half swapped: put the previous data back."""
        if not self.inside:
            if not self.current.exists() and self.aside.exists():
                os.rename(self.aside, self.current)
                fsync_dir(self.current.parent)
                log(f"{server}: restored {self.current} from {self.aside.name} (an earlier seed was cut short)")
            return
        if self.aside.is_dir() and self.new.is_dir():      # cut short while moving: the new entries go back
            self._move_all(self.current, self.new)
            self._move_all(self.aside, self.current)
            self.aside.rmdir()
            log(f"{server}: restored {self.current} from {self.aside.name} (an earlier seed was cut short)")

    def prepare_new(self, owner: pwd.struct_passwd | None, mode: int) -> None:
        """An empty ``new``, owned by *owner*."""
        shutil.rmtree(self.new, ignore_errors=True)
        self.new.mkdir(mode=mode)
        if owner is not None and os.geteuid() == 0:
            os.chown(self.new, owner.pw_uid, owner.pw_gid)

    def swap(self) -> None:
        """The previous data -> ``aside``, the seed -> ``current`` (the server is stopped)."""
        if self.aside.exists():
            shutil.rmtree(self.aside)
        if not self.inside:
            if self.current.exists():
                os.rename(self.current, self.aside)
            os.rename(self.new, self.current)
            fsync_dir(self.current.parent)
            return
        self.aside.mkdir(mode=0o700)
        self._move_all(self.current, self.aside)
        self._move_all(self.new, self.current)
        self.new.rmdir()

    def put_back(self) -> None:
        """The seed did not start: it goes to ``<name>.seed-failed`` (inside: ``.hotsync-seed-failed``), the
        previous data back in place."""
        if not self.inside:
            failed = self.current.with_name(self.current.name + ".seed-failed")
            shutil.rmtree(failed, ignore_errors=True)
            os.rename(self.current, failed)
            os.rename(self.aside, self.current)
            fsync_dir(self.current.parent)
            return
        failed = self.current / ".hotsync-seed-failed"
        shutil.rmtree(failed, ignore_errors=True)
        failed.mkdir(mode=0o700)
        self._move_all(self.current, failed)
        self._move_all(self.aside, self.current)
        self.aside.rmdir()

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
        kept = self.current.with_name(f"{self.current.name}.{keep_previous}")
        if kept.exists():
            kept = self.current.with_name(f"{self.current.name}.{keep_previous}-{secrets.token_hex(3)}")
        if self.inside:
            shutil.move(str(self.aside), str(kept))      # off the data directory's volume: copied, then removed
        else:
            os.rename(self.aside, kept)
        fsync_dir(kept.parent)
        log(f"{server}: its previous data directory is kept as {kept} (look at it, then remove it)")
        return kept


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
