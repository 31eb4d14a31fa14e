"""Golden files: one way to compare a command's output with the file under ``tests/golden/``.

``HOTSYNC_UPDATE_GOLDEN=1 pytest ...`` rewrites the files a run compares (then review the diff and commit
it). It is refused where ``CI`` is set: CI compares, it never writes what it is supposed to check.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE_VAR = "HOTSYNC_UPDATE_GOLDEN"


def in_ci() -> bool:
    """Whether this run is CI's (``CI`` set to anything but empty, 0, false or no)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def updating() -> bool:
    """Whether this run rewrites golden files (``HOTSYNC_UPDATE_GOLDEN`` set); a test failure under CI."""
    if not os.environ.get(UPDATE_VAR):
        return False
    if in_ci():
        pytest.fail(f"{UPDATE_VAR} is set but so is CI: CI compares golden files, it never rewrites them")
    return True


def check_golden(name: str, text: str) -> None:
    """*text* must equal ``tests/golden/<name>`` (``HOTSYNC_UPDATE_GOLDEN=1`` rewrites the file instead)."""
    path = GOLDEN_DIR / name
    if updating():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"no golden file {path} ({UPDATE_VAR}=1 writes it)"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs ({UPDATE_VAR}=1 rewrites it)"
