"""The order a deploy goes through: dependencies from capabilities, service order and levels
(mortar/deploy/capabilities.py)."""

from __future__ import annotations

import pytest

from mortar.catalogue.loader import ServiceSpec
from mortar.deploy.capabilities import bind, dependencies, levels, service_order
from mortar.deploy.desired import DesiredState
from mortar.errors import MortarError

DEPENDS = {"mariadb": [], "memcached": [], "rabbitmq": [], "keystone": ["mariadb", "memcached"],
           "glance": ["keystone"], "placement": ["keystone"], "nova": ["keystone", "glance", "rabbitmq", "placement"]}
ORDER = ["mariadb", "memcached", "rabbitmq", "keystone", "glance", "placement", "nova"]


def test_every_service_comes_after_its_dependencies() -> None:
    result = levels(ORDER, DEPENDS)
    depth = {name: i for i, level in enumerate(result) for name in level}
    for name, needs in DEPENDS.items():
        for dep in needs:
            assert depth[dep] < depth[name], (dep, name)
    assert sorted(n for level in result for n in level) == sorted(ORDER)


def test_independent_services_share_a_level() -> None:
    assert levels(ORDER, DEPENDS) == [["mariadb", "memcached", "rabbitmq"], ["keystone"], ["glance", "placement"],
                                      ["nova"]]


def test_disabled_dependencies_are_ignored() -> None:
    assert levels(["keystone"], {"keystone": ["mariadb", "memcached"]}) == [["keystone"]]


def test_nothing_enabled_means_no_levels() -> None:
    assert levels([], {}) == []


def test_service_order_puts_providers_first_then_alphabetical() -> None:
    assert service_order({"b": ["c"], "a": [], "c": []}) == ["a", "c", "b"]
    order = service_order(DEPENDS)
    for name, needs in DEPENDS.items():
        assert all(order.index(dep) < order.index(name) for dep in needs), name


def test_a_cycle_is_an_error_that_names_it() -> None:
    with pytest.raises(MortarError, match="cycle: a -> b -> a") as info:
        service_order({"a": ["b"], "b": ["a"]})
    assert "optional: true" in str(info.value)


def test_shipped_catalogue_levels(services: dict[str, ServiceSpec]) -> None:
    enabled = {name for name, spec in services.items() if spec.enabled}
    bindings = bind(services, enabled, "globals.yml")
    depends = dependencies(services, bindings)
    order = service_order(depends)
    depth = {name: i for i, level in enumerate(levels(order, depends)) for name in level}
    assert set(depth) == enabled
    for name, needs in depends.items():
        assert all(depth[dep] < depth[name] for dep in needs), name
    # Providers of required capabilities are dependencies; a service does not depend on itself (ovn
    # consumes the databases it provides, and only the switch its controller programs is another's),
    # and optional needs imply no order (neutron and nova, nova and the switch).
    assert set(depends["keystone"]) == {"mariadb", "memcached"}
    assert depends["openvswitch"] == [] and depth["openvswitch"] == 0
    assert depends["ovn"] == ["openvswitch"] and depth["ovn"] == 1
    assert "nova" not in depends["neutron"] and "neutron" not in depends["nova"]
    assert "openvswitch" not in depends["nova"]
    # The metadata agent needs nova's metadata API, the southbound database and the switch.
    assert set(depends["neutron_metadata"]) == {"nova", "ovn", "openvswitch"}
    assert depth["mariadb"] == 0 and depth["keystone"] == 1


def test_desired_state_levels_are_those_of_its_order(desired: DesiredState) -> None:
    assert desired.levels == levels(desired.order, desired.depends)
    assert desired.levels[0][0] == desired.order[0]
