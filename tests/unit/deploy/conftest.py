"""Shared fixtures for the deploy tests: an all-in-one site written by `mortar init` + `mortar genpwd`."""

from __future__ import annotations

from pathlib import Path

import pytest

from mortar.catalogue.loader import ServiceSpec
from mortar.deploy.desired import DesiredState, compute_desired
from mortar.site.config import Site, load_site
from mortar.site.inventory import Inventory, parse_inventory
from mortar.site.samples import INVENTORY_AIO


@pytest.fixture
def site(site_dir: Path, services: dict[str, ServiceSpec]) -> Site:
    return load_site(site_dir, services)


@pytest.fixture
def aio() -> Inventory:
    return parse_inventory(INVENTORY_AIO, "aio-inventory")


@pytest.fixture
def desired(site: Site, aio: Inventory) -> DesiredState:
    return compute_desired(site, aio)
