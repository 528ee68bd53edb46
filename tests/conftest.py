import os

import pytest


def pytest_collection_modifyitems(config, items):
    # Integration tests need a real engine; MORTAR_SKIP_INTEGRATION=1 runs the unit suite only.
    if os.environ.get("MORTAR_SKIP_INTEGRATION") == "1":
        skip = pytest.mark.skip(reason="MORTAR_SKIP_INTEGRATION=1")
        for item in items:
            if "integration" in item.keywords:
                item.add_marker(skip)
