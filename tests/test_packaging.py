"""The packaging files agree with the project: licence, versions, commands, man pages, maintainer scripts.

Fast and offline: nothing is built or installed here (tests/test_booted_deb.py builds and installs the .deb).
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent
DEBIAN = CHECKOUT / "debian"


def setup_kwargs() -> dict:
    """The literal keyword arguments of setup() in setup.py (read, not run)."""
    tree = ast.parse((CHECKOUT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    out = {}
    for kw in call.keywords:
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            pass
    return out


def console_scripts() -> list[str]:
    return [s.split("=")[0].strip() for s in setup_kwargs()["entry_points"]["console_scripts"]]


def test_the_licence_is_gpl3_or_later_everywhere():
    text = (CHECKOUT / "LICENSE").read_text()
    assert text.lstrip().startswith("GNU GENERAL PUBLIC LICENSE")
    assert "Version 3, 29 June 2007" in text and "END OF TERMS AND CONDITIONS" in text
    kw = setup_kwargs()
    assert kw["license"] == "GPL-3.0-or-later"
    assert "License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)" in kw["classifiers"]
    copyright_ = (DEBIAN / "copyright").read_text()
    assert re.search(r"^Files: \*\nCopyright: .+\nLicense: GPL-3\+$", copyright_, re.M)
    assert "any later version" in copyright_


def test_debian_version_is_the_project_version():
    first = (DEBIAN / "changelog").read_text().splitlines()[0]
    assert re.match(r"hotsync-events \(([^)]+)\)", first).group(1).split("-")[0] == setup_kwargs()["version"]


def test_bundled_versions_are_inside_the_projects_ranges():
    from packaging.requirements import Requirement

    pins = {}
    for line in (DEBIAN / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.lower()] = version
    for spec in setup_kwargs()["install_requires"]:
        req = Requirement(spec)
        assert req.name.lower() in pins, f"debian/constraints.txt pins no version of {req.name}"
        assert req.specifier.contains(pins[req.name.lower()]), f"{req.name}=={pins[req.name.lower()]} is not {req}"


def test_every_command_is_linked_on_the_path_and_has_a_man_page():
    links = dict(line.split()[::-1] for line in (DEBIAN / "hotsync-events.links").read_text().splitlines()
                 if line.strip())
    sys.path.insert(0, str(CHECKOUT / "scripts"))
    try:
        import manpages
    finally:
        sys.path.pop(0)
    for name in console_scripts():
        assert links[f"usr/sbin/{name}"] == f"opt/venvs/hotsync-events/bin/{name}"
        assert name in manpages.COMMANDS
    for name in ("config", "db", "signal-event", "expand-template"):   # the NethServer manual's paths: scripts
        script = DEBIAN / "e-smith" / name
        assert os.access(script, os.X_OK) and f'exec /usr/sbin/{name} "$@"' in script.read_text()
        assert f"usr/sbin/e-smith/{name}" not in links


def test_man_pages_render_from_the_commands(tmp_path):
    out = tmp_path / "man"
    cp = subprocess.run([sys.executable, str(CHECKOUT / "scripts/manpages.py"), str(out)], capture_output=True,
                        text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "HOTSYNC_ROOT": str(tmp_path / "root"),
                                                      "SOURCE_DATE_EPOCH": "0"})
    assert cp.returncode == 0, cp.stderr
    pages = sorted(p.name for p in out.iterdir())
    assert pages == sorted(f"{n}.8" for n in console_scripts())
    hotsync = (out / "hotsync.8").read_text()
    assert hotsync.startswith('.TH "HOTSYNC" "8" "1970-01-01"')
    for sub in ("plugins", "sync", "status", "watch", "restore\\-databases"):
        assert f".SS {sub}\n" in hotsync
    assert "\\-\\-allow\\-deletions" in hotsync
    assert "setprop KEY PROP VALUE" in (out / "config.8").read_text()
    if shutil.which("man") is None:
        pytest.skip("no man to render the pages with")
    for page in out.iterdir():
        cp = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "MANWIDTH": "80", "LANG": "C.UTF-8"})
        assert cp.returncode == 0 and cp.stderr == "", f"{page.name}: {cp.stderr}"
        assert "SYNOPSIS" in cp.stdout


def test_installing_starts_nothing_and_the_scripts_parse():
    postinst = (DEBIAN / "hotsync-events.postinst").read_text()
    assert not re.search(r"systemctl\s+(start|enable|restart)|deb-systemd-invoke\s+start|invoke-rc\.d", postinst)
    assert "#DEBHELPER#" in postinst
    for script in ("postinst", "prerm", "postrm"):
        cp = subprocess.run(["sh", "-n", str(DEBIAN / f"hotsync-events.{script}")], capture_output=True, text=True)
        assert cp.returncode == 0, cp.stderr
    rules = (DEBIAN / "rules")
    assert rules.stat().st_mode & 0o111, "debian/rules must be executable"
    compile(DEBIAN.joinpath("hotsync-services").read_text(), "hotsync-services", "exec")


def test_logrotate_leaves_the_self_rotating_logs_alone():
    text = (DEBIAN / "hotsync-events.logrotate").read_text()
    paths = text.split("{")[0].split()
    paths = [p for p in paths if p.startswith("/")]
    assert "/var/log/hotsync/events.log" in paths
    assert not any(p.endswith(("config-history.log", "sync.log", "*.log")) and "hotsync-*" not in p for p in paths)
