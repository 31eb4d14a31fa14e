"""A third-party hotsync plugin, installed for real by the tests (see tests/test_events.py)."""
from setuptools import setup

setup(
    name="hotsync-testplugin",
    version="1.2.3",
    description="Test plugin: one action and one template fragment for the event testplugin-probe",
    packages=["hotsync_testplugin"],
    package_data={"hotsync_testplugin": ["templates/etc/testplugin.conf/*"]},
    entry_points={"hotsync": ["testplugin = hotsync_testplugin"]},
)
