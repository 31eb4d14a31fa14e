"""Hand the plugin under test to hotsync's fixtures (hotsync_root, hotsync_pm, hotsync_event, ...)."""
import pytest

import hotsync_example


@pytest.fixture
def hotsync_test_plugins():
    return [("example", hotsync_example)]
