"""Tests for the dependency levels a deploy goes through (mortar/deploy/runner.levels)."""

from mortar.deploy.runner import levels

DEPENDS = {"mariadb": [], "memcached": [], "rabbitmq": [], "keystone": ["mariadb", "memcached"],
           "glance": ["keystone"], "placement": ["keystone"], "nova": ["keystone", "glance", "rabbitmq", "placement"]}
ORDER = ["mariadb", "memcached", "rabbitmq", "keystone", "glance", "placement", "nova"]


def test_every_service_comes_after_its_dependencies():
    result = levels(ORDER, DEPENDS)
    depth = {name: i for i, level in enumerate(result) for name in level}
    for name, needs in DEPENDS.items():
        for dep in needs:
            assert depth[dep] < depth[name], (dep, name)
    assert sorted(n for level in result for n in level) == sorted(ORDER)


def test_independent_services_share_a_level():
    assert levels(ORDER, DEPENDS) == [["mariadb", "memcached", "rabbitmq"], ["keystone"], ["glance", "placement"],
                                      ["nova"]]


def test_disabled_dependencies_are_ignored():
    assert levels(["keystone"], {"keystone": ["mariadb", "memcached"]}) == [["keystone"]]


def test_nothing_enabled_means_no_levels():
    assert levels([], {}) == []


def test_registration_retries_only_transient_errors():
    from keystoneauth1 import exceptions as ksa
    from openstack import exceptions as sdk

    from mortar.deploy.runner import _transient

    assert _transient(ksa.ConnectFailure("connection reset"))
    assert _transient(sdk.ConflictException("project 'service' exists"))
    def http(status: int) -> Exception:
        error = sdk.HttpException(f"status {status}")
        error.status_code = status
        return error

    assert _transient(http(503))
    assert not _transient(http(403))
    assert not _transient(ValueError("bad input"))
