"""The series mortar knows (images/releases.yaml) and the upgrade paths that follow from their order."""

from __future__ import annotations

import pytest

from mortar.errors import MortarError
from mortar.releases import parse_releases, releases

FOUR = {"default": "2026.2", "series": {
    "2025.1": {"name": "Epoxy", "slurp": True, "services": {"nova": "31.3.1"}},
    "2025.2": {"name": "Flamingo", "services": {"nova": "32.2.1"}},
    "2026.1": {"name": "Gazpacho", "slurp": True, "services": {"nova": "33.0.2"}},
    "2026.2": {"name": "Hibiscus", "services": {"nova": "34.0.0"}}}}


def test_upgrades_go_one_series_on_or_from_slurp_to_the_next_slurp() -> None:
    known = parse_releases(FOUR, "releases.yaml")
    assert known.upgrade_targets("2025.1") == ["2025.2", "2026.1"]
    assert known.upgrade_targets("2025.2") == ["2026.1"]
    assert known.upgrade_targets("2026.1") == ["2026.2"]
    assert known.upgrade_targets("2026.2") == []
    assert known.upgrade_path("2025.1", "2026.1") == ["2025.1", "2026.1"]
    # Flamingo is not a SLURP release: it reaches Hibiscus only through Gazpacho.
    assert known.upgrade_path("2025.2", "2026.2") == ["2025.2", "2026.1", "2026.2"]
    assert known.upgrade_path("2025.1", "2026.2") == ["2025.1", "2026.1", "2026.2"]
    assert known.upgrade_path("2026.2", "2026.1") == []


def test_a_series_pins_its_services_and_adds_its_requirements() -> None:
    data = {"series": {"2025.1": {"services": {"openstack-placement": "13.0.1"},
                                  "requirements": {"openstack-base": ["setuptools<82"]}}}}
    series = parse_releases(data, "releases.yaml").get("2025.1")
    assert series.top_level({"openstack-base": ["uwsgi"], "placement-api": ["openstack_placement"]}) == {
        "openstack-base": ["uwsgi", "setuptools<82"], "placement-api": ["openstack-placement==13.0.1"]}


@pytest.mark.parametrize("data, key, message", [
    ({"series": {}}, None, "must have a 'series' mapping"),
    ({"series": {"2026.1": {"services": {}}, "2025.1": {"services": {}}}}, "series", "oldest first"),
    ({"series": {"2026.1": {"services": {}, "slurpp": True}}}, "series.2026.1", "unknown keys slurpp"),
    ({"default": "2027.1", "series": {"2026.1": {"services": {}}}}, "default", "'2027.1' is not a listed series"),
])
def test_a_broken_releases_file_names_the_key(data: object, key: str | None, message: str) -> None:
    with pytest.raises(MortarError, match=message) as info:
        parse_releases(data, "releases.yaml")
    assert info.value.file == "releases.yaml" and info.value.key == key


def test_the_shipped_series() -> None:
    known = releases()
    assert known.default == "2026.2"
    assert {"2025.1", "2026.1", "2026.2"} <= set(known.names())
    assert [s.name for s in known.series if s.slurp] == ["2025.1", "2026.1"]
    with pytest.raises(MortarError, match="'2024.2' is not an OpenStack series mortar knows"):
        known.get("2024.2")
