"""Shared fixtures for the deploy tests: an all-in-one site written by `mortar init` + `mortar genpwd`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mortar.catalogue.loader import ServiceSpec, load_catalogue
from mortar.deploy.desired import DesiredState, compute_desired
from mortar.site.config import Site, genpwd, load_site, required_passwords
from mortar.site.inventory import Inventory, parse_inventory
from mortar.site.samples import INVENTORY_AIO, write_samples


@pytest.fixture(scope="session")
def services() -> dict[str, ServiceSpec]:
    return load_catalogue()


@pytest.fixture(scope="session")
def template_site(tmp_path_factory: pytest.TempPathFactory, services: dict[str, ServiceSpec]) -> Path:
    root = tmp_path_factory.mktemp("template") / "etc-mortar"
    write_samples(root)
    genpwd(root / "passwords.yml", required_passwords(services, set(services)))
    return root


@pytest.fixture
def site_dir(tmp_path: Path, template_site: Path) -> Path:
    """A fresh copy of what `mortar init` + `mortar genpwd` write."""
    root = tmp_path / "etc-mortar"
    shutil.copytree(template_site, root)
    return root


@pytest.fixture
def site(site_dir: Path, services: dict[str, ServiceSpec]) -> Site:
    return load_site(site_dir, services)


@pytest.fixture
def aio() -> Inventory:
    return parse_inventory(INVENTORY_AIO, "aio-inventory")


@pytest.fixture
def desired(site: Site, aio: Inventory) -> DesiredState:
    return compute_desired(site, aio)
