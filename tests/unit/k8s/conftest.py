"""An all-in-one site as `mortar init` + `mortar genpwd` write it, for the Kubernetes renderer."""

from __future__ import annotations

from pathlib import Path

import pytest

from mortar.site.config import Site, load_site


@pytest.fixture
def site(site_dir: Path, services) -> Site:
    return load_site(site_dir, services)
