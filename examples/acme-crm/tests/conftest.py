"""Hand the plugin under test to hotsync's fixtures (hotsync_root, hotsync_two_roots, ...)."""
import pytest

import hotsync_acme_crm


@pytest.fixture
def hotsync_test_plugins():
    return [("acme-crm", hotsync_acme_crm)]
