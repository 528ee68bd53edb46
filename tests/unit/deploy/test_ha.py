"""Several control hosts: the virtual address, HAProxy and keepalived, every instance listed
to its clients, shared volumes (mortar/deploy/desired.py and the haproxy service)."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
import yaml

from mortar.agent.wire import Container
from mortar.catalogue.loader import ServiceSpec
from mortar.deploy.desired import DesiredState, compute_desired
from mortar.errors import MortarError
from mortar.site.config import Site, load_site
from mortar.site.inventory import Inventory, parse_inventory
from tests.unit.inventories import THREE_CONTROL_HOSTS

VIP = "10.0.0.10"
SHARED = {"glance_images": {"type": "none", "o": "bind", "device": "/srv/shared/glance"}}


def ha_site(site_dir: Path, services: dict[str, ServiceSpec], **settings) -> Site:
    globals_file = site_dir / "globals.yml"
    data = yaml.safe_load(globals_file.read_text()) or {}
    data.update({"internal_vip_address": VIP, "enable_haproxy": True, "volume_options": SHARED} | settings)
    globals_file.write_text(yaml.safe_dump({k: v for k, v in data.items() if v is not None}))
    return load_site(site_dir, services)


@pytest.fixture
def inventory() -> Inventory:
    return parse_inventory(THREE_CONTROL_HOSTS, "inventory")


@pytest.fixture
def desired(site_dir: Path, services: dict[str, ServiceSpec], inventory: Inventory) -> DesiredState:
    return compute_desired(ha_site(site_dir, services), inventory)


def container(desired: DesiredState, host: str, name: str) -> Container:
    return next(c for c in desired.hosts[host].containers() if c.name == name)


def content(c: Container, name: str) -> str:
    return next(f.content for f in c.files if f.name == name)


def listen_sections(cfg: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in cfg.splitlines():
        if re.match(r"\S", line):
            current = line.split()[1] if line.startswith("listen ") else None
            if current:
                sections[current] = []
        elif current and line.strip():
            sections[current].append(line.strip())
    return sections


def test_every_served_container_is_on_the_virtual_address_with_each_host_behind_it(desired: DesiredState) -> None:
    for host in ("control1", "control2", "control3"):
        sections = listen_sections(content(container(desired, host, "haproxy"), "haproxy.cfg"))
        assert {"keystone", "glance_api", "placement_api", "nova_api", "nova_metadata", "neutron_server", "horizon",
                "mariadb"} <= set(sections)
        keystone = sections["keystone"]
        assert f"bind {VIP}:5000 transparent" in keystone
        assert [line.split()[:3] for line in keystone if line.startswith("server ")] == [
            ["server", "control1", "10.0.0.11:5000"], ["server", "control2", "10.0.0.12:5000"],
            ["server", "control3", "10.0.0.13:5000"]]
        # The database: one writer at a time, the others stand by.
        servers = [line for line in sections["mariadb"] if line.startswith("server ")]
        assert [s.endswith(" backup") for s in servers] == [False, True, True]
        assert "mode tcp" in sections["mariadb"]
        # Each member says on 4569 whether it is in the primary component; a login is not enough.
        assert all(" check port 4569 " in s for s in servers), servers
        assert "option httpchk" in sections["mariadb"] and "option mysql-check user haproxy post-41" not in sections[
            "mariadb"]
    # haproxy runs on the control hosts only, and not on the compute host.
    assert desired.hosts_of_container("haproxy") == ["control1", "control2", "control3"]
    assert desired.hosts_of_container("keepalived") == ["control1", "control2", "control3"]


def test_clients_reach_apis_and_the_database_on_the_virtual_address(desired: DesiredState) -> None:
    assert desired.identity["auth_url"] == f"http://{VIP}:5000/v3"
    for registration in desired.registrations.values():
        assert all(url.startswith(f"http://{VIP}:") for url in registration.endpoints.values()), registration
    keystone = configparser.ConfigParser(interpolation=None)
    keystone.read_string(content(container(desired, "control2", "keystone"), "keystone.conf"))
    assert f"@{VIP}:3306/keystone" in keystone["database"]["connection"]
    # Every memcached, on every client.
    assert keystone["cache"]["memcache_servers"] == "10.0.0.11:11211,10.0.0.12:11211,10.0.0.13:11211"
    # Each API still binds its own host's address (HAProxy holds the virtual one).
    for host, address in (("control1", "10.0.0.11"), ("control3", "10.0.0.13")):
        assert f"--host {address}" in container(desired, host, "keystone").healthcheck.test


def test_keepalived_peers_are_the_other_control_hosts_with_distinct_priorities(desired: DesiredState) -> None:
    priorities = []
    for host, own in (("control1", "10.0.0.11"), ("control2", "10.0.0.12"), ("control3", "10.0.0.13")):
        conf = content(container(desired, host, "keepalived"), "keepalived.conf.in")
        peers = re.search(r"unicast_peer \{([^}]*)\}", conf)
        assert peers is not None
        assert sorted(peers.group(1).split()) == sorted({"10.0.0.11", "10.0.0.12", "10.0.0.13"} - {own})
        assert f"unicast_src_ip {own}" in conf and f"{VIP}/32 dev @INTERFACE@" in conf
        priorities.append(int(re.search(r"priority (\d+)", conf).group(1)))
    assert len(set(priorities)) == 3


def test_the_load_balancer_comes_before_what_it_serves(desired: DesiredState) -> None:
    order = desired.order
    for served in ("mariadb", "keystone", "glance", "nova", "neutron", "placement", "horizon"):
        assert order.index("haproxy") < order.index(served), served
        assert "haproxy" in desired.depends[served]


def test_a_shared_volume_on_several_hosts_needs_a_shared_filesystem(site_dir: Path,
                                                                    services: dict[str, ServiceSpec],
                                                                    inventory: Inventory) -> None:
    with pytest.raises(MortarError) as info:
        compute_desired(ha_site(site_dir, services, volume_options=None), inventory)
    assert info.value.key == "volume_options"
    assert "glance_images" in info.value.message and "3 hosts" in info.value.message
    assert "type: none, o: bind" in str(info.value)


def test_volume_options_reach_the_hosts_that_hold_the_volume(desired: DesiredState) -> None:
    for host in ("control1", "control2", "control3"):
        assert desired.hosts[host].volume_options == SHARED
    assert desired.hosts["compute1"].volume_options == {}


def test_an_unknown_volume_in_volume_options_is_refused(site_dir: Path, services: dict[str, ServiceSpec],
                                                        inventory: Inventory) -> None:
    with pytest.raises(MortarError) as info:
        compute_desired(ha_site(site_dir, services, volume_options={"glance_image": SHARED["glance_images"]}),
                        inventory)
    assert info.value.key == "volume_options.glance_image"
    assert "did you mean 'glance_images'" in str(info.value)


def test_bad_volume_options_are_refused_when_globals_are_read(site_dir: Path,
                                                              services: dict[str, ServiceSpec]) -> None:
    with pytest.raises(MortarError) as info:
        ha_site(site_dir, services, volume_options={"glance_images": {"kind": "nfs"}})
    assert info.value.key == "volume_options" and "'kind'" in info.value.message


def test_several_control_hosts_without_a_virtual_address_are_refused(site_dir: Path,
                                                                     services: dict[str, ServiceSpec],
                                                                     inventory: Inventory) -> None:
    with pytest.raises(MortarError) as info:
        compute_desired(ha_site(site_dir, services, internal_vip_address=None, enable_haproxy=None), inventory)
    assert info.value.key == "internal_vip_address"
    assert "runs on 3 hosts (control1, control2, control3)" in info.value.message


def test_a_virtual_address_without_the_load_balancer_is_refused(site_dir: Path, services: dict[str, ServiceSpec],
                                                                inventory: Inventory) -> None:
    with pytest.raises(MortarError) as info:
        compute_desired(ha_site(site_dir, services, enable_haproxy=False), inventory)
    assert info.value.key == "internal_vip_address" and "enable_haproxy: true" in str(info.value)


def test_a_virtual_address_a_host_has_is_refused(site_dir: Path, services: dict[str, ServiceSpec],
                                                 inventory: Inventory) -> None:
    with pytest.raises(MortarError) as info:
        compute_desired(ha_site(site_dir, services, internal_vip_address="10.0.0.12"), inventory)
    assert info.value.key == "internal_vip_address" and "control2" in info.value.message


def test_one_control_host_without_a_virtual_address_is_reached_at_its_own(site: Site, aio: Inventory) -> None:
    desired = compute_desired(site, aio)
    assert "haproxy" not in desired.order
    assert desired.identity["auth_url"] == "http://127.0.0.1:5000/v3"
    # Nothing spreads a container's clients over several hosts: a restart is the engine's own.
    assert not [c.name for state in desired.hosts.values() for c in state.containers() if c.drain]


def test_a_restart_of_what_the_load_balancer_spreads_waits_for_its_checks(desired: DesiredState) -> None:
    from mortar.deploy.desired import CHECK_EVERY, CHECK_FALL, CHECK_RISE, DRAIN

    cfg = content(container(desired, "control1", "haproxy"), "haproxy.cfg")
    servers = [line for lines in listen_sections(cfg).values() for line in lines if line.startswith("server ")]
    assert servers and all(f" inter {CHECK_EVERY}s fall {CHECK_FALL} rise {CHECK_RISE}" in s for s in servers)
    # Held stopped long enough for CHECK_FALL failed checks, whatever the phase of the checks.
    assert DRAIN > CHECK_EVERY * max(CHECK_FALL, CHECK_RISE)
    assert container(desired, "control2", "keystone").drain == DRAIN
    assert container(desired, "control2", "mariadb").drain == DRAIN
    # What runs on one host only, or serves no clients through the load balancer, is restarted as before.
    assert container(desired, "compute1", "nova_compute").drain == 0
    assert container(desired, "control1", "haproxy").drain == 0
    # The pause decides nothing about the running container: a new one restarts nothing.
    keystone = container(desired, "control2", "keystone")
    before = keystone.config_hash
    keystone.drain = 0
    assert keystone.config_hash == before


def test_a_changed_api_restarts_one_control_host_at_a_time(desired: DesiredState, site_dir: Path,
                                                           services: dict[str, ServiceSpec]) -> None:
    from mortar.agent.wire import Action
    from mortar.deploy.orchestrator import Plan, rolling_hosts, serving_containers

    serving = serving_containers(ha_site(site_dir, services))
    controls = ["control1", "control2", "control3"]
    recreated = Plan(actions=[Action("recreate", h, "keystone", "keystone") for h in controls])
    assert rolling_hosts(recreated, desired, serving, ["keystone"], controls) == controls
    # A first start, and a container that serves nobody, need no order.
    created = Plan(actions=[Action("create", h, "keystone", "keystone") for h in controls])
    assert rolling_hosts(created, desired, serving, ["keystone"], controls) == []
    agent = Plan(actions=[Action("recreate", "compute1", "nova", "nova_compute")])
    assert rolling_hosts(agent, desired, serving, ["nova"], ["compute1"]) == []
