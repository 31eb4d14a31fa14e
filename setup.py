"""hotsync_events: e-smith style config database, events and master/slave sync."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def data_files_of(folder):
    """Every file below *folder*, relative to it (package_data patterns)."""
    base = HERE / folder
    return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


setup(
    name="hotsync-events",
    version="0.1.0",
    description="Config database, signal-event and near-real-time master/slave sync, after NethServer HotSync",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="GPL-3.0-or-later",
    license_files=["LICENSE"],
    classifiers=[
        "License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Topic :: System :: Archiving :: Mirroring",
        "Topic :: System :: Systems Administration",
    ],
    python_requires=">=3.9",
    # templates/ and db/ live at the top of the checkout and install as data packages of their own
    # name inside hotsync_events, so an installed wheel finds them with importlib.resources.
    packages=[*find_packages(include=["hotsync_events", "hotsync_events.*"]), "hotsync_plugins",
              "hotsync_events._templates", "hotsync_events._db"],
    package_dir={"hotsync_plugins": "plugins", "hotsync_events._templates": "templates",
                 "hotsync_events._db": "db"},
    package_data={"hotsync_events.cli": ["completion/*.bash"],  # bash completion: `config __complete --script`
                  "hotsync_events.cockpit": ["page/*"],      # the Cockpit page (hotsync cockpit install)
                  "hotsync_events._templates": data_files_of("templates"),
                  "hotsync_events._db": data_files_of("db"),
                  "hotsync_plugins": ["*.spec", "**/*.spec", "**/templates/**/*"]},
    include_package_data=False,
    install_requires=[
        "pluggy>=1.3",
        "configobj>=5.0.8",
        "Mako>=1.2",
        "watchdog>=7.1,<8",   # the notifier hooks its inotify fd (overflow) and emitter (event mask)
    ],
    extras_require={
        # what this project's suite needs (a plugin author's tests need only pytest and pytest-timeout of it;
        # the fixtures are ours: hotsync_events.testing)
        "test": ["pytest>=7", "pytest-timeout>=2", "hypothesis>=6", "aiosmtpd>=1.4", "wheel>=0.38",
                 "selenium>=4.10"],   # the Cockpit page's tests drive Debian's chromium
        # the suite plus style and types (make test installs it and runs both)
        "dev": ["hotsync-events[test]", "ruff>=0.17", "mypy>=2.4"],   # the versions pyproject.toml was checked with
    },
    entry_points={
        "console_scripts": [
            "config = hotsync_events.cli.config:config_main",
            "db = hotsync_events.cli.config:db_main",
            "hotsync = hotsync_events.cli.hotsync:main",
            "signal-event = hotsync_events.cli.signal_event:main",
            "expand-template = hotsync_events.cli.expand_template:main",
            "hotsync-promote = hotsync_events.cli.promote:entry",
        ],
        # fixtures for plugin authors (hotsync_root, hotsync_pm, hotsync_event, hotsync_two_roots)
        "pytest11": ["hotsync = hotsync_events.testing"],
    },
)
