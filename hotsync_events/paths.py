"""The one root: every path the program touches is resolved under it.

The root comes from ``--root`` or ``HOTSYNC_ROOT`` and defaults to ``/``. A master and a slave can be two
roots on one machine.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

__all__ = ["DB_DIR", "NETHSERVER_DB_DIR", "Root", "RootError", "data_dir", "root_from"]

_HERE = Path(__file__).resolve().parent
#: the databases' directory (host paths): NethServer's when it exists, else this project's own
NETHSERVER_DB_DIR = "/var/lib/nethserver/db"
DB_DIR = "/var/lib/hotsync/db"


class RootError(ValueError):
    """A path that would leave the root."""


def root_from(arg: str | os.PathLike | None = None) -> Root:
    """The root named by *arg*, else ``$HOTSYNC_ROOT``, else ``/``."""
    return Root(arg or os.environ.get("HOTSYNC_ROOT") or "/")


class Root:
    """A directory that stands for ``/`` of one host."""

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(os.path.abspath(os.fspath(path)))

    def __repr__(self) -> str:
        return f"Root({str(self.path)!r})"

    def __str__(self) -> str:  # so that str(root) and f"{root}" are the path, never the repr
        return str(self.path)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Root) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, rel: str | os.PathLike) -> Path:
        return self.join(rel)

    def join(self, path: str | os.PathLike) -> Path:
        """``path`` (absolute as on the host, or relative to ``/``) as a path under this root.

        A path that climbs out with ``..`` is refused with RootError.
        """
        parts: list[str] = []
        for part in PurePosixPath("/", os.fspath(path)).parts[1:]:
            if part == "..":
                if not parts:
                    raise RootError(f"path {os.fspath(path)!r} leaves the root {self.path}")
                parts.pop()
            elif part != ".":
                parts.append(part)
        return self.path.joinpath(*parts)

    def host_path(self, path: str | os.PathLike) -> str:
        """The host's view (``/etc/x``) of a path under this root; RootError if it is not under it."""
        p = Path(os.path.abspath(os.fspath(path)))
        try:
            rel = p.relative_to(self.path)
        except ValueError:
            raise RootError(f"{p} is not under the root {self.path}") from None
        return "/" + rel.as_posix() if str(rel) != "." else "/"

    # where things live
    @property
    def db_dir(self) -> Path:
        """Where the e-smith databases live: NethServer's own directory when the host has one (a database
        copied from a NethServer machine is read where NethServer keeps it), else ``/var/lib/hotsync/db``."""
        nethserver = self.join(NETHSERVER_DB_DIR)
        return nethserver if nethserver.is_dir() else self.join(DB_DIR)

    @property
    def state_dir(self) -> Path:
        return self.join("/var/lib/hotsync")

    @property
    def log_dir(self) -> Path:
        return self.join("/var/log/hotsync")

    @property
    def etc_dir(self) -> Path:
        return self.join("/etc/hotsync")

    @property
    def run_dir(self) -> Path:
        return self.join("/run/hotsync")


def data_dir(name: str) -> Path:
    """A packaged data folder (``templates`` or ``db``), from an installed wheel or from a checkout."""
    for candidate in (_HERE / f"_{name}", _HERE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"hotsync_events data folder {name!r} is missing from the installation")
