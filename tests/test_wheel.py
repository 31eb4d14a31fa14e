"""The package as a sysadmin gets it: a wheel, installed in a fresh venv, finds its db/ and templates/."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent
SOURCES = ("setup.py", "pyproject.toml", "README.md", "hotsync_events", "plugins", "templates", "db")

pytestmark = pytest.mark.slow


def _sh(cmd, *, timeout=240, **kw):
    cp = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    assert cp.returncode == 0, f"{' '.join(map(str, cmd))} exited {cp.returncode}:\n{cp.stdout[-2000:]}\n{cp.stderr[-2000:]}"
    return cp


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv (no access to the checkout) with the wheel built from the checkout installed in it."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"        # build from a copy: never touch the shared checkout's build/ dir
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for name in SOURCES:
        path = CHECKOUT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        elif path.exists():
            shutil.copy2(path, src / name)
    dist = tmp / "dist"
    # --no-build-isolation: the dev venv's setuptools and wheel (test extras) build it, without a download
    _sh([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, src])
    wheel = next(dist.glob("hotsync_events-*.whl"))
    venv = tmp / "venv"
    _sh([sys.executable, "-m", "venv", "--without-pip", venv], timeout=60)
    # the dev venv's pip installs into the fresh interpreter; dependencies come from the configured index
    _sh([sys.executable, "-m", "pip", "--python", venv / "bin/python", "install", "-q", "--disable-pip-version-check",
         wheel], timeout=300)
    return venv


def _env(root):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return {**env, "HOTSYNC_ROOT": str(root), "PATH": os.defpath}


def test_data_folders_come_from_the_wheel(installed, tmp_path):
    cp = _sh([installed / "bin/python", "-c",
              "import hotsync_events.paths as p; print(p.__file__); print(p.data_dir('db')); "
              "print(p.data_dir('templates'))"], cwd=tmp_path, env=_env(tmp_path / "root"))
    module, db, templates = cp.stdout.split()
    site = str(installed / "lib")
    assert module.startswith(site) and db.startswith(site) and templates.startswith(site)
    assert Path(db, "configuration.spec").is_file()
    assert str(CHECKOUT) not in cp.stdout


def test_config_and_hotsync_run_from_the_wheel(installed, tmp_path):
    root = tmp_path / "root"
    env = _env(root)
    bin_ = installed / "bin"
    _sh([bin_ / "config", "setprop", "hotsync", "role", "master"], cwd=tmp_path, env=env)
    assert _sh([bin_ / "config", "getprop", "hotsync", "role"], cwd=tmp_path, env=env).stdout == "master\n"
    # the packaged schema is there: defaults on the fresh root, refusals
    assert _sh([bin_ / "config", "getprop", "hotsync", "interval"], cwd=tmp_path, env=env).stdout == "15\n"
    cp = subprocess.run([bin_ / "config", "setprop", "hotsync", "role", "mastr"], capture_output=True, text=True,
                        cwd=tmp_path, env=env, timeout=60)
    assert cp.returncode == 3 and "master" in cp.stderr and "slave" in cp.stderr
    cp = subprocess.run([bin_ / "hotsync", "plugins", "--json"], capture_output=True, text=True, cwd=tmp_path,
                        env=env, timeout=120)
    assert "Traceback" not in cp.stderr
    import json

    plugins = {p["name"]: p for p in json.loads(cp.stdout)["plugins"]}
    assert plugins and all(p["error"] is None for p in plugins.values()), plugins
    assert cp.returncode == 0, cp.stderr
    # nothing outside the root
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


def test_the_cockpit_page_comes_from_the_wheel(installed, tmp_path):
    """`hotsync cockpit install` from an installed wheel: the page's files are package data."""
    root = tmp_path / "root"
    _sh([installed / "bin/hotsync", "cockpit", "install"], cwd=tmp_path, env=_env(root))
    target = root / "usr/share/cockpit/hotsync"
    assert sorted(p.name for p in target.iterdir()) == ["hotsync.css", "hotsync.js", "index.html", "manifest.json"]
    assert (target / "hotsync.js").read_bytes() == (CHECKOUT / "hotsync_events/cockpit/page/hotsync.js").read_bytes()
