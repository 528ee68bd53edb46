"""tempest.conf comes from the cloud: what it has, what init-runonce made, what is deployed."""

from __future__ import annotations

import configparser
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from mortar.errors import MortarError
from mortar.verify import tempest

IDENTITY = {"auth_url": "http://10.0.0.11:5000", "admin_username": "admin", "admin_password": "s3cret",
            "admin_project": "admin", "region": "RegionOne"}


class Cloud:
    def __init__(self, image=True, network=True, types=("identity", "compute", "image", "network", "placement"),
                 computes=1):
        self.image = NS(find_image=lambda name: NS(id="img-1") if image and name == "mortar-guest" else None)
        self.network = NS(find_network=lambda name: NS(id="net-pub") if network and name == "public" else None,
                          extensions=lambda: [NS(alias="router"), NS(alias="agent"), NS(alias="binding")])
        flavors = {"m1.tiny": NS(id="f-1"), "m1.small": NS(id="f-2")}
        self.compute = NS(find_flavor=flavors.get,
                          hypervisors=lambda: [NS(state="up") for _ in range(computes)])
        self.identity = NS(services=lambda: [NS(type=t) for t in types])


def deployment(login_url: str | None = "http://10.0.0.11:80/auth/login/"):
    checks = [NS(check="token", params={})]
    if login_url:
        checks.append(NS(check="form_login", params={"url": login_url}))
    return NS(desired=NS(identity=IDENTITY, checks=checks, site_id="abc"))


def parse(text: str) -> configparser.ConfigParser:
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_string(text)
    return conf


def test_the_cloud_names_image_flavors_network_and_services(tmp_path: Path) -> None:
    conf = parse(tempest.tempest_conf(deployment(), Cloud(computes=2), tmp_path))
    assert conf["identity"]["uri_v3"] == "http://10.0.0.11:5000/v3"
    assert conf["compute"]["image_ref"] == "img-1" and conf["compute"]["flavor_ref_alt"] == "f-2"
    assert conf["compute"]["min_compute_nodes"] == "2"
    assert conf["network"]["public_network_id"] == "net-pub"
    # Only the extensions this neutron has: a test expecting another one would fail, not skip.
    assert conf["network-feature-enabled"]["api_extensions"] == "agent,binding,router"
    available = conf["service_available"]
    assert (available["nova"], available["glance"], available["neutron"]) == ("true", "true", "true")
    assert (available["cinder"], available["swift"], available["horizon"]) == ("false", "false", "true")
    assert conf["dashboard"]["dashboard_url"] == "http://10.0.0.11:80/"
    # Guests are checked over SSH with the guest image's user and an injected key.
    assert conf["validation"]["run_validation"] == "true" and conf["validation"]["image_ssh_user"] == "mortar"
    assert conf["auth"]["admin_password"] == "s3cret"


def test_no_dashboard_section_without_a_web_login(tmp_path: Path) -> None:
    conf = parse(tempest.tempest_conf(deployment(None), Cloud(), tmp_path))
    assert conf["service_available"]["horizon"] == "false" and not conf.has_section("dashboard")


@pytest.mark.parametrize("missing", ["image", "network"])
def test_before_init_runonce_the_fix_is_named(tmp_path: Path, missing: str) -> None:
    with pytest.raises(MortarError) as err:
        tempest.tempest_conf(deployment(), Cloud(**{missing: False}), tmp_path)
    assert "init-runonce" in str(err.value.fix)


def test_counts_come_from_the_totals() -> None:
    out = ("{0} tempest.api.x.T.test_a [1.0s] ... ok\n\n======\nTotals\n======\nRan: 9 tests in 3.0 sec.\n"
           " - Passed: 6\n - Skipped: 2\n - Expected Fail: 0\n - Unexpected Success: 0\n - Failed: 1\n")
    counts = tempest.counts_of(out)
    assert (counts.passed, counts.failed, counts.skipped) == (6, 1, 2)
    assert counts.line() == "tempest: 6 passed, 1 failed, 2 skipped"


def test_the_venv_follows_the_pins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MORTAR_CACHE_DIR", str(tmp_path))
    first = tempest.venv_path()
    assert first.parent == tmp_path / "tempest"
    pins = tmp_path / "req.txt"
    pins.write_text(tempest.REQUIREMENTS.read_text() + "extra==1\n")
    monkeypatch.setattr(tempest, "REQUIREMENTS", pins)
    assert tempest.venv_path() != first


def test_every_requirement_is_pinned_exactly() -> None:
    lines = [line for line in tempest.REQUIREMENTS.read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0].startswith("tempest==") and all("==" in line for line in lines)
