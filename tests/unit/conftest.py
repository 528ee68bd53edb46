"""Fixtures shared by the unit tests: the shipped catalogue, a site as `mortar init` +
`mortar genpwd` write it (made once per session, copied fresh for each test), and a guard:
unit tests write nothing outside their temporary directories."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mortar.catalogue.loader import ServiceSpec, load_catalogue
from mortar.site.config import Site, genpwd, load_site, required_passwords
from mortar.site.samples import write_samples

# Where mortar writes by default on a real machine: no unit test may touch them.
GUARDED = [Path("/var/lib/mortar"), Path("/var/log/mortar"), Path("/etc/mortar"), Path("/var/lib/mortar-testbed")]


def _snapshot() -> dict[str, tuple[int, int]]:
    seen: dict[str, tuple[int, int]] = {}
    for root in GUARDED:
        if not root.exists():
            continue
        for path in [root, *root.rglob("*")]:
            try:
                info = path.lstat()
            except OSError:
                continue
            seen[str(path)] = (info.st_mtime_ns, info.st_size)
    return seen


@pytest.fixture(scope="package", autouse=True)
def nothing_written_outside_tmp(tmp_path_factory: pytest.TempPathFactory):
    """Every default location points into a temporary directory, and the real ones stay as they were."""
    root = tmp_path_factory.mktemp("mortar-defaults")
    saved = {k: os.environ.get(k) for k in ("MORTAR_STATE_DIR", "MORTAR_LOG_DIR", "MORTAR_CONFIG_DIR")}
    os.environ.update(MORTAR_STATE_DIR=str(root / "state"), MORTAR_LOG_DIR=str(root / "log"),
                      MORTAR_CONFIG_DIR=str(root / "etc"))
    before = _snapshot()
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    after = _snapshot()
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    assert not changed, f"unit tests wrote outside their temporary directories: {changed[:10]}"


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
def deployment(site_dir: Path, tmp_path: Path):
    """The all-in-one deployment of `site_dir`, its state and logs under tmp_path."""
    from mortar.deploy.orchestrator import load_deployment

    loaded = load_deployment(site_dir, state_dir=tmp_path / "state")
    loaded.log_dir = tmp_path / "log" / "deploy"
    return loaded


@pytest.fixture
def configure(site_dir: Path, services: dict[str, ServiceSpec]) -> Callable[..., Site]:
    """The site of `site_dir`, loaded after setting the given globals and passwords."""

    def make(globals_: dict[str, Any] | None = None, passwords: dict[str, str] | None = None) -> Site:
        if globals_:
            with (site_dir / "globals.yml").open("a") as out:
                yaml.safe_dump(globals_, out)
        if passwords:
            path = site_dir / "passwords.yml"
            path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **passwords}))
        return load_site(site_dir, services)

    return make
