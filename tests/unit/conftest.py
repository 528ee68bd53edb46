"""Fixtures shared by the unit tests: the shipped catalogue and a site as `mortar init` +
`mortar genpwd` write it (made once per session, copied fresh for each test)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mortar.catalogue.loader import ServiceSpec, load_catalogue
from mortar.site.config import genpwd, required_passwords
from mortar.site.samples import write_samples


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
