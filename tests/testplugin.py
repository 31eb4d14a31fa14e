"""Install tests/plugin_dist/hotsync-testplugin as a real distribution, once per test session.

``pip install --target DIR`` builds a wheel of it and installs the package with its ``.dist-info``
(entry point in group ``hotsync``) into DIR; commands run with ``PYTHONPATH=DIR`` see it as any
installed plugin, through ``importlib.metadata``. The source is copied first, so the build leaves
nothing in the checkout. Offline: the venv's setuptools and wheel build it (``wheel`` is a test extra).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "plugin_dist" / "hotsync-testplugin"
_INSTALLED: dict[str, Path] = {}


def install_testplugin(workdir: Path) -> Path:
    """The site directory holding the installed plugin (installed on the first call of the session)."""
    if "site" in _INSTALLED:
        return _INSTALLED["site"]
    src = workdir / "src"
    shutil.copytree(SOURCE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = workdir / "site"
    base = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
            "--target", str(site)]
    env = {**os.environ, "PIP_NO_INPUT": "1"}
    cp = subprocess.run([*base, "--no-build-isolation", "--no-index", str(src)], capture_output=True, text=True,
                        env=env, timeout=180)
    if cp.returncode != 0:  # no wheel package in this venv: let pip fetch the build tools
        cp = subprocess.run([*base, str(src)], capture_output=True, text=True, env=env, timeout=300)
    if cp.returncode != 0:
        raise RuntimeError(f"pip could not install the test plugin:\n{cp.stdout}\n{cp.stderr}")
    _INSTALLED["site"] = site
    return site
