"""The desired state computed from the site and the catalogue (mortar/deploy/desired.py):
placement, jobs, capabilities, per-host secrets and rendering."""

from __future__ import annotations

import configparser
import json
import shlex
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mortar.agent.wire import Container, File, Healthcheck, HostState, Job, dumps, encode, loads
from mortar.catalogue.loader import ServiceSpec, load_catalogue
from mortar.deploy.capabilities import bind, dependencies
from mortar.deploy.desired import SCRIPT_DEST, DesiredState, compute_desired, with_health_interval
from mortar.errors import MortarError
from mortar.site.config import Site, genpwd, load_site, required_passwords
from mortar.site.inventory import Inventory, parse_inventory

MULTI = """\
[control]
control1 api_address=10.0.0.11

[compute]
compute1 api_address=10.0.0.21
compute2 api_address=10.0.0.22
"""


def containers_by_name(desired: DesiredState) -> dict[str, Container]:
    return {c.name: c for state in desired.hosts.values() for c in state.containers()}


def jobs_by_name(desired: DesiredState) -> dict[str, Job]:
    return {j.name: j for state in desired.hosts.values() for j in state.jobs()}


def hosts_of_job(desired: DesiredState, name: str) -> list[str]:
    return [h for h, state in desired.hosts.items() if any(j.name == name for j in state.jobs())]


def file_of(container: Container | None, name: str) -> File:
    assert container is not None
    return next(f for f in container.files if f.name == name)


def ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False, default_section="\x00none")
    parser.read_string(text)
    return parser


def override(site_dir: Path, relative: str, text: str) -> None:
    path = site_dir / "config" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def rendered_text(state: HostState) -> str:
    """Everything a host's containers and jobs are given, rendered."""
    parts: list[str] = []
    for c in [*state.containers(), *(j.spec for j in state.jobs() if j.spec)]:
        parts += [f.content for f in c.files] + list(c.environment.values()) + c.command + [c.script]
        parts += [c.healthcheck.test] if c.healthcheck else []
    return "\n".join(parts)


def names_of_secrets(site: Site, secrets: list[str]) -> set[str]:
    return {name for name, value in site.passwords.items() if value in secrets}


# ---- all in one ---------------------------------------------------------------------------------

def test_aio_runs_every_enabled_container_on_localhost(desired: DesiredState, site: Site) -> None:
    assert list(desired.hosts) == ["localhost"]
    state = desired.hosts["localhost"]
    assert state.address == "127.0.0.1" and state.site == site.site_id
    assert set(state.services) == site.enabled == set(desired.order)
    assert "prometheus" not in site.enabled and "nova" in site.enabled
    expected = [(name, c) for name in site.enabled for c in site.services[name].containers]
    names = [(c.service, c.name) for c in state.containers()]
    assert sorted(names) == sorted(expected)
    for container in state.containers():
        decl = site.services[container.service].containers[container.name]
        assert container.image == site.image_ref(decl.image) == f"mortar/{decl.image}:2026.2"
        assert container.command, container.name


def test_aio_jobs_and_their_phases(desired: DesiredState, site: Site) -> None:
    state = desired.hosts["localhost"]
    for name in site.enabled:
        spec = site.services[name]
        provision = [f"{name}.{cap}" for cap, need in spec.consumes.items() if need.request]
        own = [(f"{name}.{j.name}", j.phase) for j in spec.jobs]
        assert [(j.name, j.phase) for j in state.services[name].jobs] == [(p, "provision") for p in provision] + own
    # The schema expands and migrates before keystone is recreated and contracts after it runs.
    assert [(j.name, j.phase) for j in state.services["keystone"].jobs] == [
        ("keystone.database", "provision"), ("keystone.db_expand", "before"),
        ("keystone.db_migrate", "before"), ("keystone.bootstrap", "before"), ("keystone.db_contract", "after"),
        ("keystone.upgrade_check", "check")]
    jobs = jobs_by_name(desired)
    assert (jobs["nova.discover_hosts"].phase, jobs["nova.discover_hosts"].run) == ("after", "always")
    # After the containers: the cell mapping, the schema contractions, the online data
    # migrations, the broker's feature flags and the other series' static files gone; OVN needs
    # none (each switch host's controller registers its own chassis).
    assert sorted(n for n, j in jobs.items() if j.phase == "after") == [
        "glance.db_contract", "horizon.prune_static", "keystone.db_contract", "neutron.db_contract",
        "neutron.metadata_port_mtu", "nova.discover_hosts", "nova.online_data_migrations",
        "placement.online_data_migrations", "rabbitmq.feature_flags"]
    assert state.services["ovn"].jobs == []
    # A service's jobs depend on its own volumes and on the data of the providers it requires.
    assert jobs["keystone.db_migrate"].data == ["localhost/mariadb"]
    assert jobs["glance.db_migrate"].data == ["localhost/glance_images", "localhost/mariadb"]
    assert jobs["keystone.database"].data == ["localhost/mariadb"]


def test_jobs_run_beside_their_container(desired: DesiredState) -> None:
    keystone = containers_by_name(desired)["keystone"]
    sync = jobs_by_name(desired)["keystone.db_migrate"].spec
    assert sync is not None
    assert (sync.name, sync.service, sync.image, sync.user) == ("keystone_db_migrate", "keystone", keystone.image,
                                                                "keystone")
    assert sync.command == ["keystone-manage", "db_sync", "--migrate"]
    assert sync.healthcheck is None
    assert sync.files == keystone.files and sync.volumes == keystone.volumes


def test_keystone_bootstrap_gets_its_password_through_its_environment(desired: DesiredState, site: Site) -> None:
    password = site.passwords["keystone_admin_password"]
    job = jobs_by_name(desired)["keystone.bootstrap"]
    assert job.spec is not None
    assert job.spec.environment["OS_BOOTSTRAP_PASSWORD"] == password
    assert not any(password in word for word in job.spec.command)
    assert job.spec.command[:2] == ["keystone-manage", "bootstrap"]
    assert password not in json.dumps(job.spec.definition())


def test_the_engine_probes_at_the_sites_interval_unless_the_catalogue_sets_one(site: Site, aio: Inventory) -> None:
    def intervals() -> dict[str, int | None]:
        return {c.name: c.healthcheck.interval for c in compute_desired(site, aio).hosts["localhost"].containers()
                if c.healthcheck is not None}

    default = intervals()
    assert "keystone" in default and set(default.values()) == {30}
    site.globals["healthcheck_interval"] = 120
    assert intervals() == {name: 120 for name in default}
    declared = Container(name="demo", service="demo", image="demo", healthcheck=Healthcheck(test="true", interval=45))
    assert with_health_interval(declared, site) is declared


def test_the_database_url_comes_from_the_database_capability(configure: Callable[..., Site]) -> None:
    site = configure(passwords={"keystone_database_password": "p@ss/w:rd?x"})
    inventory = parse_inventory(MULTI + "[mariadb]\ndb1 api_address=10.0.0.31\n", "inv")
    conf = ini(file_of(containers_by_name(compute_desired(site, inventory))["keystone"], "keystone.conf").content)
    # The provider's host and address, the consumer's request, the password URL-quoted.
    assert conf["database"]["connection"] == "mysql+pymysql://keystone:p%40ss%2Fw%3Ard%3Fx@10.0.0.31:3306/keystone"
    assert conf["cache"]["memcache_servers"] == "10.0.0.11:11211"


def test_provision_jobs_run_on_the_database_providers_host(configure: Callable[..., Site]) -> None:
    site = configure()
    inventory = parse_inventory(MULTI + "[mariadb]\ndb1 api_address=10.0.0.31\n", "inv")
    desired = compute_desired(site, inventory)
    assert [c.name for c in desired.hosts["db1"].containers()] == ["mariadb"]
    consumers = sorted(n for n in site.enabled if site.services[n].consumes.get("database"))
    assert consumers == ["glance", "keystone", "neutron", "nova", "placement"]
    for name in consumers:
        assert hosts_of_job(desired, f"{name}.database") == ["db1"], name
        job = jobs_by_name(desired)[f"{name}.database"]
        assert job.spec is not None and job.data == ["db1/mariadb"]
        assert job.spec.image == site.image_ref("mariadb-server")
        assert job.spec.volumes == [] and job.spec.mounts == []  # it reaches the server over the network
        client = file_of(job.spec, "client.cnf").content
        assert "host=10.0.0.31\n" in client and f"password={site.passwords['database_password']}\n" in client
        sql = file_of(job.spec, "provision.sql").content
        for entry in site.services[name].consumes["database"].request:
            assert f"CREATE DATABASE IF NOT EXISTS `{entry['name']}`" in sql
        # The consumer's own jobs wait for the provider's data, on the provider's host.
        assert all("db1/mariadb" in j.data for j in desired.hosts["control1"].services[name].jobs)
    nova_sql = file_of(jobs_by_name(desired)["nova.database"].spec, "provision.sql").content
    assert [w for w in ("nova_api", "nova", "nova_cell0") if f"CREATE DATABASE IF NOT EXISTS `{w}`" in nova_sql] == [
        "nova_api", "nova", "nova_cell0"]
    assert f"IDENTIFIED BY '{site.passwords['nova_database_password']}'" in nova_sql


# ---- several hosts ------------------------------------------------------------------------------

@pytest.fixture
def multi(site: Site) -> DesiredState:
    return compute_desired(site, parse_inventory(MULTI, "multi"))


# What a compute host runs: the switch, OVN's controller on it, the hypervisor and the metadata agent.
DATA_PLANE = ["openvswitch_db", "openvswitch_vswitchd", "ovn_controller", "nova_compute", "nova_libvirt",
              "neutron_ovn_metadata_agent"]


def test_nova_speaks_the_compute_rpc_of_the_oldest_compute_host(site: Site) -> None:
    """While a compute host runs an older series (recorded), every nova service pins its compute
    RPC to that series (nova's alias of it); once none does, `auto`."""
    def compute_rpc(running: dict[str, str]) -> dict[str, str]:
        desired = compute_desired(site, parse_inventory(MULTI, "multi"), running)
        return {f"{h}/{c.name}": ini(file_of(c, "nova.conf").content)["upgrade_levels"]["compute"]
                for h, state in desired.hosts.items() for c in state.containers() if c.name.startswith("nova_")
                and any(f.name == "nova.conf" for f in c.files)}

    assert site.release == "2026.2"
    assert set(compute_rpc({}).values()) == {"auto"}
    assert set(compute_rpc(dict.fromkeys(("control1", "compute1", "compute2"), "2026.2")).values()) == {"auto"}
    lagging = compute_rpc({"control1": "2026.2", "compute1": "2026.2", "compute2": "2026.1"})
    assert set(lagging.values()) == {"gazpacho"} and "control1/nova_conductor" in lagging
    assert set(compute_rpc({"compute1": "2025.1"}).values()) == {"epoxy"}
    # Only compute hosts count: a control host still recorded at an older series pins nothing.
    assert set(compute_rpc({"control1": "2026.1"}).values()) == {"auto"}


def test_compute_hosts_run_only_the_data_plane(multi: DesiredState, site: Site) -> None:
    assert list(multi.hosts) == ["control1", "compute1", "compute2"]
    for host, address in (("compute1", "10.0.0.21"), ("compute2", "10.0.0.22")):
        state = multi.hosts[host]
        assert state.address == address
        assert [c.name for c in state.containers()] == DATA_PLANE
        assert state.jobs() == []
        containers = {c.name: c for c in state.containers()}
        assert "my_ip = " + address in file_of(containers["nova_compute"], "nova.conf").content
        assert f"encap={address}" in containers["ovn_controller"].script
    # Without a [network] group the control host runs no switch: every data-plane container is elsewhere.
    control = {c.name for c in multi.hosts["control1"].containers()}
    assert control == {c for name in site.enabled for c in site.services[name].containers} - set(DATA_PLANE)


def test_compute_hosts_hold_only_the_secrets_they_use(multi: DesiredState, site: Site) -> None:
    for host in ("compute1", "compute2"):
        state = multi.hosts[host]
        held = names_of_secrets(site, state.secrets)
        # nova-compute authenticates to keystone as nova and reaches the message queue; its database
        # goes through the conductor. The metadata agent signs guests' requests with the metadata secret.
        assert held == {"nova_keystone_password", "rabbitmq_password", "metadata_secret"}, host
        for other in ("database_password", "keystone_admin_password", "nova_database_password"):
            assert site.passwords[other] not in rendered_text(state), (host, other)
        # ... and only the metadata agent holds that secret: nova-compute serves no metadata.
        secret = site.passwords["metadata_secret"]
        assert [c.name for c in state.containers() if any(secret in f.content for f in c.files)] == [
            "neutron_ovn_metadata_agent"], host
    control = names_of_secrets(site, multi.hosts["control1"].secrets)
    assert {"database_password", "keystone_admin_password", "nova_database_password", "metadata_secret"} <= control


@pytest.mark.parametrize("inventory", [MULTI, MULTI + "[ovn-northd]\nnet1 api_address=10.0.0.31\n"],
                         ids=["multi", "ovn-northd-apart"])
def test_every_host_holds_exactly_the_secrets_its_state_contains(site: Site, inventory: str) -> None:
    desired = compute_desired(site, parse_inventory(inventory, "inv"))
    secrets = [v for v in site.passwords.values() if len(v) >= 6]
    for host, state in desired.hosts.items():
        text = rendered_text(state)
        assert sorted(state.secrets) == sorted(s for s in secrets if s in text), host
        # ... and the whole state holds no other secret that would escape masking.
        whole = json.dumps(encode(state))
        assert not [s for s in secrets if s in whole and s not in state.secrets], host
    assert set(desired.secrets) == set(secrets)


def test_ovn_northd_in_its_own_group_and_a_controller_on_every_compute_and_network_host(site: Site) -> None:
    inventory = parse_inventory(MULTI + "[ovn-northd]\nnet1 api_address=10.0.0.31\n"
                                "[network]\ngw1 api_address=10.0.0.41\n", "inv")
    desired = compute_desired(site, inventory)
    assert desired.hosts_of_container("ovn_northd") == ["net1"]
    assert desired.hosts_of_container("ovn_nb_db") == desired.hosts_of_container("ovn_sb_db") == ["control1"]
    northd = containers_by_name(desired)["ovn_northd"]
    assert "--ovnnb-db=tcp:10.0.0.11:6641" in northd.command and "--ovnsb-db=tcp:10.0.0.11:6642" in northd.command
    assert [c.name for c in desired.hosts["net1"].containers()] == ["ovn_northd"]
    # "compute,network": a switch and its controller on every host of either group, in inventory order.
    switch_hosts = ["compute1", "compute2", "gw1"]
    for container in ("ovn_controller", "openvswitch_db", "openvswitch_vswitchd"):
        assert desired.hosts_of_container(container) == switch_hosts, container
    # Each controller registers its own chassis: named after its host, tunnels at its address.
    for host, address in (("compute1", "10.0.0.21"), ("compute2", "10.0.0.22"), ("gw1", "10.0.0.41")):
        (controller,) = [c for c in desired.hosts[host].containers() if c.name == "ovn_controller"]
        assert f"external_ids:system-id={host} external_ids:hostname={host}" in controller.script
        assert f"encap={address}" in controller.script
        assert "external_ids:ovn-remote=tcp:10.0.0.11:6642" in controller.script
        # Only a network host is a gateway: br-ex on the provider interface (host_groups tells them apart).
        gateway = host == "gw1"
        assert ("iface=mortar-ext\n" in controller.script) is gateway, host
        assert ('--may-exist add-port br-ex "$iface"' in controller.script) is gateway, host
        assert ("ovn-cms-options=enable-chassis-as-gw" in controller.script) is gateway, host
        assert ("remove Open_vSwitch . external_ids ovn-bridge-mappings" in controller.script) is not gateway, host
        # The sample's veth address: the host end of the provider network's veth pair.
        assert ('ip addr add 10.213.78.1/24 dev "$iface-host"' in controller.script) is gateway, host
    for host in ("net1", "gw1"):
        assert names_of_secrets(site, desired.hosts[host].secrets) == set(), host


def test_jobs_run_on_the_first_host_of_their_container_and_endpoints_where_it_runs(site: Site) -> None:
    inventory = parse_inventory(MULTI + "[nova-api]\napi1 api_address=10.0.0.41\napi2 api_address=10.0.0.42\n",
                                "inv")
    site.globals.update(internal_vip_address="10.0.0.40", enable_haproxy=True)
    site.enabled.add("haproxy")
    desired = compute_desired(site, inventory)
    assert desired.hosts_of_container("nova_api") == ["api1", "api2"]
    assert desired.hosts_of_container("nova_conductor") == ["control1"]
    for job in site.services["nova"].jobs:
        assert hosts_of_job(desired, f"nova.{job.name}") == ["api1"], job.name
    # Both nova_api hosts serve behind the virtual address; glance runs on one host, also behind it.
    assert set(desired.registrations["nova"].endpoints.values()) == {"http://10.0.0.40:8774/v2.1"}
    assert set(desired.registrations["glance"].endpoints.values()) == {"http://10.0.0.40:9292"}
    assert desired.identity["auth_url"] == "http://10.0.0.40:5000/v3"
    # The compute capability is served where nova_api runs.
    neutron = ini(file_of(containers_by_name(desired)["neutron_server"], "neutron.conf").content)
    assert neutron.has_section("nova")


def test_a_served_container_on_two_hosts_needs_a_virtual_address(site: Site) -> None:
    inventory = parse_inventory(MULTI + "[nova-api]\napi1 api_address=10.0.0.41\napi2 api_address=10.0.0.42\n",
                                "inv")
    with pytest.raises(MortarError) as info:
        compute_desired(site, inventory)
    assert info.value.key == "internal_vip_address"
    assert "nova_api runs on 2 hosts (api1, api2)" in info.value.message
    assert "enable_haproxy: true" in str(info.value)


def test_without_a_virtual_address_each_container_is_reached_on_its_host(site: Site) -> None:
    inventory = parse_inventory(MULTI + "[nova-api]\napi1 api_address=10.0.0.41\n", "inv")
    desired = compute_desired(site, inventory)
    assert set(desired.registrations["nova"].endpoints.values()) == {"http://10.0.0.41:8774/v2.1"}
    assert set(desired.registrations["glance"].endpoints.values()) == {"http://10.0.0.11:9292"}
    assert desired.identity["auth_url"] == "http://10.0.0.11:5000/v3"


def test_registrations_carry_their_users_passwords(desired: DesiredState, site: Site) -> None:
    nova = desired.registrations["nova"]
    assert (nova.type, nova.region) == ("compute", "RegionOne")
    assert nova.endpoints == {i: "http://127.0.0.1:8774/v2.1" for i in ("public", "internal", "admin")}
    assert nova.users == [{"name": "nova", "password": site.passwords["nova_keystone_password"]}]
    assert set(desired.registrations) == {"glance", "neutron", "nova", "placement"}


def test_an_empty_group_names_the_inventory_and_the_group(site: Site) -> None:
    with pytest.raises(MortarError) as info:
        compute_desired(site, parse_inventory("[control]\nlocalhost\n\n[network]\nlocalhost\n\n[compute]\n",
                                              "inv.ini"))
    assert (info.value.file, info.value.key) == ("inv.ini", "[compute]")
    assert "nova_compute" in info.value.message and "enable_nova: false" in str(info.value)
    # A container of several groups is refused only when all of them are empty.
    with pytest.raises(MortarError) as both:
        compute_desired(site, parse_inventory("[control]\nlocalhost\n\n[network]\n\n[compute]\n", "inv.ini"))
    assert both.value.file == "inv.ini"
    assert "openvswitch_db" in both.value.message and "enable_openvswitch: false" in str(both.value)


def test_a_group_named_after_the_container_wins(site: Site) -> None:
    inventory = parse_inventory("[control]\nctl1\n[compute]\ncmp1\n[nova-compute]\ncmp2\n", "inv")
    desired = compute_desired(site, inventory)
    assert [c.name for c in desired.hosts["cmp2"].containers()] == ["nova_compute"]
    assert desired.hosts_of_container("nova_compute") == ["cmp2"]
    # The group moves only the container it is named after: cmp1 keeps [compute]'s other containers.
    assert [c.name for c in desired.hosts["cmp1"].containers()] == [c for c in DATA_PLANE if c != "nova_compute"]


def test_the_api_address_host_variable_is_used(site: Site) -> None:
    inventory = parse_inventory("[control]\nctl1 api_address=10.0.0.5\n[compute]\nctl1\n", "inv")
    desired = compute_desired(site, inventory)
    assert desired.hosts["ctl1"].address == "10.0.0.5"
    conf = ini(file_of(containers_by_name(desired)["keystone"], "keystone.conf").content)
    assert conf["database"]["connection"].endswith("@10.0.0.5:3306/keystone")
    assert desired.identity["auth_url"] == "http://10.0.0.5:5000/v3"


# ---- capabilities -------------------------------------------------------------------------------

def test_no_database_provider_is_one_error_naming_enable_mariadb(configure: Callable[..., Site]) -> None:
    site = configure({"enable_mariadb": False})
    assert "keystone" in site.enabled
    with pytest.raises(MortarError) as info:
        compute_desired(site, parse_inventory(MULTI, "inv"))
    err = info.value
    assert (err.file, err.key) == (str(site.config_dir / "globals.yml"), "enable_mariadb")
    assert "need a database provider" in err.message and "set enable_mariadb: true" in str(err)
    assert "keystone" in err.message and "enable_keystone" in str(err)


def small_catalogue(root: Path, services: dict[str, dict[str, Any]]) -> dict[str, ServiceSpec]:
    for name, data in services.items():
        (root / name / "templates").mkdir(parents=True)
        (root / name / "service.yaml").write_text(yaml.safe_dump(data))
    return load_catalogue(root, images={"svc-image"})


def provider(capability: str) -> dict[str, Any]:
    return {"provides": {capability: {"values": {"url": "x://{{ api_address }}"}}},
            "containers": {"server": {"image": "svc-image", "command": "serve"}}}


def consumer(capability: str, **need: Any) -> dict[str, Any]:
    return {"consumes": {capability: need}, "containers": {"client": {"image": "svc-image", "command": "use"}}}


def test_two_providers_of_one_capability_are_refused(tmp_path: Path) -> None:
    services = small_catalogue(tmp_path, {"a": provider("database"), "b": provider("database"),
                                          "c": consumer("database")})
    with pytest.raises(MortarError, match="a and b all provide database, which c needs exactly one of") as info:
        bind(services, {"a", "b", "c"}, "globals.yml")
    assert (info.value.file, info.value.key) == ("globals.yml", "enable_b")
    assert bind(services, {"a", "c"}, "globals.yml")["c"] == {"database": ["a"]}
    with pytest.raises(MortarError, match="no enabled service provides one") as missing:
        bind(services, {"c"}, "globals.yml")
    assert "enable one of a, b" in str(missing.value)


def test_a_consumer_of_many_binds_every_provider(tmp_path: Path) -> None:
    services = small_catalogue(tmp_path, {"a": provider("metrics"), "b": provider("metrics"),
                                          "c": consumer("metrics", multiple=True)})
    bindings = bind(services, {"a", "b", "c"}, "globals.yml")
    assert bindings["c"] == {"metrics": ["a", "b"]}
    assert dependencies(services, bindings)["c"] == ["a", "b"]


def test_optional_consumption_implies_no_order(tmp_path: Path, configure: Callable[..., Site]) -> None:
    services = small_catalogue(tmp_path, {"a": provider("compute"), "c": consumer("compute", optional=True)})
    bindings = bind(services, {"a", "c"}, "globals.yml")
    assert bindings["c"] == {"compute": ["a"]} and dependencies(services, bindings)["c"] == []
    assert bind(services, {"c"}, "globals.yml")["c"] == {"compute": []}
    # The shipped neutron: nova serves its optional `compute`, and neutron does not wait for nova.
    site = configure()
    desired = compute_desired(site, parse_inventory(MULTI, "inv"))
    assert "nova" not in desired.depends["neutron"]
    assert desired.order.index("neutron") < desired.order.index("nova")
    conf = ini(file_of(containers_by_name(desired)["neutron_server"], "neutron.conf").content)
    assert conf.has_section("nova")


def test_an_absent_optional_provider_is_none_to_the_template(configure: Callable[..., Site]) -> None:
    # The metadata agent needs nova's metadata API: it goes with nova (a switch host serves neutron).
    site = configure({"enable_nova": False, "enable_neutron_metadata": False})
    desired = compute_desired(site, parse_inventory("[control]\nlocalhost\n[network]\nlocalhost\n", "inv"))
    conf = ini(file_of(containers_by_name(desired)["neutron_server"], "neutron.conf").content)
    assert not conf.has_section("nova") and "notify_nova_on_port_status_changes" not in conf["DEFAULT"]


def test_the_metadata_agent_reaches_nova_metadata_where_it_listens(multi: DesiredState, site: Site) -> None:
    """The metadata capability: compute hosts' agents proxy to the address nova_metadata binds,
    signing with the metadata secret."""
    uwsgi = ini(file_of(containers_by_name(multi)["nova_metadata"], "nova-metadata-uwsgi.ini").content)
    assert uwsgi["uwsgi"]["http-socket"] == "10.0.0.11:8775"
    for host in ("compute1", "compute2"):
        (agent,) = [c for c in multi.hosts[host].containers() if c.name == "neutron_ovn_metadata_agent"]
        conf = ini(file_of(agent, "neutron_ovn_metadata_agent.ini").content)["DEFAULT"]
        assert f"{conf['nova_metadata_host']}:{conf['nova_metadata_port']}" == "10.0.0.11:8775", host
        assert conf["metadata_proxy_shared_secret"] == site.passwords["metadata_secret"], host
        assert conf["host"] == host


def test_exporters_follow_enable_prometheus(configure: Callable[..., Site], site: Site) -> None:
    assert not {"prometheus", "node_exporter", "mysqld_exporter"} & site.enabled
    assert {"prometheus", "node_exporter", "mysqld_exporter"} <= configure({"enable_prometheus": True}).enabled


def test_an_exporter_can_be_disabled_on_its_own(configure: Callable[..., Site]) -> None:
    enabled = configure({"enable_prometheus": True, "enable_node_exporter": False}).enabled
    assert "prometheus" in enabled and "mysqld_exporter" in enabled and "node_exporter" not in enabled


def test_prometheus_scrapes_every_metrics_instance(configure: Callable[..., Site]) -> None:
    site = configure({"enable_prometheus": True})
    inventory = parse_inventory(MULTI + "[monitoring]\nmon1 api_address=10.0.0.51\n", "inv")
    desired = compute_desired(site, inventory)
    addresses = {"control1": "10.0.0.11", "compute1": "10.0.0.21", "compute2": "10.0.0.22", "mon1": "10.0.0.51"}
    assert sorted(desired.hosts_of_container("node_exporter")) == sorted(addresses)  # group all: every host
    assert desired.hosts_of_container("prometheus_server") == ["mon1"]
    config = yaml.safe_load(file_of(containers_by_name(desired)["prometheus_server"], "prometheus.yml").content)
    jobs = {job["job_name"]: sorted((c["labels"]["host"], c["targets"]) for c in job["static_configs"])
            for job in config["scrape_configs"]}
    assert jobs == {
        "mysqld": [("mon1", ["10.0.0.51:9104"])],
        "node": [(host, [f"{address}:9100"]) for host, address in sorted(addresses.items())],
        "prometheus": [("mon1", ["10.0.0.51:9090"])]}
    (check,) = [c for c in desired.checks if c.check == "scrape_targets"]
    assert check.params == {"url": "http://10.0.0.51:9090", "expect": "6"}
    # mysqld_exporter asked for a user and no database of its own.
    sql = file_of(jobs_by_name(desired)["mysqld_exporter.database"].spec, "provision.sql").content
    assert "CREATE DATABASE" not in sql and "GRANT PROCESS, REPLICATION CLIENT, SELECT ON *.* TO" in sql
    assert hosts_of_job(desired, "mysqld_exporter.database") == ["control1"]


# ---- rendering ------------------------------------------------------------------------------------

AWKWARD = "hello world; touch /tmp/pwned $(id) 'q' \"d\""


def quoting_site(tmp_path: Path) -> Site:
    services = small_catalogue(tmp_path / "catalogue", {"svc": {
        "options": {"svc_greeting": {"type": "str", "default": "hi"}, "svc_flags": {"type": "str", "default": ""}},
        "containers": {
            "scripted": {"image": "svc-image",
                         "script": "echo {{ svc_greeting }}\nexec serve --greeting={{ svc_greeting }} "
                                   "{{ svc_flags | raw }}\n"},
            "commanded": {"image": "svc-image",
                          "command": "serve --greeting {{ svc_greeting }} --name={{ svc_greeting }}"}},
        "jobs": [{"name": "greet", "container": "commanded", "script": "printf '%s\\n' {{ svc_greeting }}\n"}]}})
    config = tmp_path / "site"
    (config / "config").mkdir(parents=True)
    (config / "globals.yml").write_text(yaml.safe_dump({"svc_greeting": AWKWARD, "svc_flags": "-v -x"}))
    genpwd(config / "passwords.yml", required_passwords(services, set(services)))
    return load_site(config, services)


def test_a_value_rendered_into_a_script_stays_one_shell_word(tmp_path: Path) -> None:
    desired = compute_desired(quoting_site(tmp_path), parse_inventory("[control]\nlocalhost\n", "inv"))
    scripted = containers_by_name(desired)["scripted"]
    echo, serve = scripted.script.splitlines()
    assert shlex.split(echo) == ["echo", AWKWARD]
    # `| raw` is the one way to insert words as they are.
    assert shlex.split(serve) == ["exec", "serve", f"--greeting={AWKWARD}", "-v", "-x"]
    # A script runs from a file mortar-start places (root-only), not from argv.
    assert scripted.command == ["/bin/sh", "-e", SCRIPT_DEST]
    script = file_of(scripted, Path(SCRIPT_DEST).name)
    assert (script.content, script.mode) == (scripted.script, "0500")
    job = jobs_by_name(desired)["svc.greet"].spec
    assert job is not None
    assert shlex.split(job.script) == ["printf", "%s\\n", AWKWARD]
    assert file_of(job, Path(SCRIPT_DEST).name).content == job.script


def test_a_string_command_is_split_before_rendering(tmp_path: Path, configure: Callable[..., Site]) -> None:
    desired = compute_desired(quoting_site(tmp_path), parse_inventory("[control]\nlocalhost\n", "inv"))
    assert containers_by_name(desired)["commanded"].command == ["serve", "--greeting", AWKWARD,
                                                                 f"--name={AWKWARD}"]
    # The shipped keystone bootstrap: a region with a space is one argument.
    site = configure({"region_name": "Region One"})
    command = jobs_by_name(compute_desired(site, parse_inventory(MULTI, "inv")))["keystone.bootstrap"].spec.command
    assert command[command.index("--bootstrap-region-id") + 1] == "Region One"
    assert "--bootstrap-public-url" in command and "http://10.0.0.11:5000" in command


def test_a_port_that_does_not_render_to_a_number_is_an_error(tmp_path: Path) -> None:
    services = small_catalogue(tmp_path / "catalogue", {"svc": {
        "options": {"svc_port": {"type": "str", "default": "http"}},
        "containers": {"api": {"image": "svc-image", "command": "serve", "ports": ["{{ svc_port }}"]}}}})
    config = tmp_path / "site"
    (config / "config").mkdir(parents=True)
    (config / "globals.yml").write_text("")
    genpwd(config / "passwords.yml", required_passwords(services, set(services)))
    with pytest.raises(MortarError, match="did not render to a number") as info:
        compute_desired(load_site(config, services), parse_inventory("[control]\nlocalhost\n", "inv"))
    assert (info.value.file, info.value.key) == (str(services["svc"].file), "containers.api.ports")


# ---- secrets, hashes and overrides ------------------------------------------------------------

def test_definitions_hold_no_secret_and_digest_the_rendered_files(desired: DesiredState, site: Site) -> None:
    keystone = containers_by_name(desired)["keystone"]
    assert site.passwords["keystone_database_password"] in file_of(keystone, "keystone.conf").content
    secrets = [v for v in site.passwords.values() if len(v) >= 6]
    for container in [*desired.hosts["localhost"].containers(), *(j.spec for j in jobs_by_name(desired).values())]:
        assert container is not None
        definition = json.dumps(container.definition())
        assert not [s for s in secrets if s in definition or urllib.parse.quote(s, safe="") in definition], \
            container.name
        assert container.definition()["files"] == {
            f.name: {"dest": f.dest, "owner": f.owner, "mode": f.mode, "sha256": f.digest} for f in container.files}


def test_config_hashes_are_stable_and_distinct(site: Site, aio: Inventory) -> None:
    first, second = compute_desired(site, aio), compute_desired(site, aio)
    assert {n: c.config_hash for n, c in containers_by_name(first).items()} == \
        {n: c.config_hash for n, c in containers_by_name(second).items()}
    assert {n: j.inputs for n, j in jobs_by_name(first).items()} == \
        {n: j.inputs for n, j in jobs_by_name(second).items()}
    hashes = [c.config_hash for c in containers_by_name(first).values()]
    assert len(set(hashes)) == len(hashes)


def test_an_override_changes_only_keystone(site_dir: Path, site: Site, aio: Inventory) -> None:
    before = compute_desired(site, aio)
    override(site_dir, "keystone/keystone.conf", "[token]\nexpiration = 7200\n")
    after = compute_desired(site, aio)
    old_c, new_c = containers_by_name(before), containers_by_name(after)
    assert {n for n in new_c if new_c[n].config_hash != old_c[n].config_hash} == {"keystone"}
    old_j, new_j = jobs_by_name(before), jobs_by_name(after)
    changed_jobs = {n for n in new_j if new_j[n].inputs != old_j[n].inputs}
    # Every keystone job that mounts keystone.conf; the provision job runs beside the database.
    assert changed_jobs == {"keystone.db_expand", "keystone.db_migrate", "keystone.bootstrap",
                            "keystone.db_contract", "keystone.upgrade_check"}
    conf = ini(file_of(new_c["keystone"], "keystone.conf").content)
    assert conf["token"]["expiration"] == "7200"
    assert conf["token"]["provider"] == "fernet"  # merged key by key, not replaced
    assert file_of(new_c["keystone"], "keystone-uwsgi.ini").digest == \
        file_of(old_c["keystone"], "keystone-uwsgi.ini").digest


def test_a_per_host_override_reaches_only_that_host(site_dir: Path, site: Site) -> None:
    override(site_dir, "nova/nova.conf", "[DEFAULT]\nmarker = everywhere\n")
    override(site_dir, "nova/compute2/nova.conf", "[DEFAULT]\nmarker = compute2-only\n")
    desired = compute_desired(site, parse_inventory(MULTI, "inv"))
    markers = {(h, c.name): ini(file_of(c, "nova.conf").content)["DEFAULT"]["marker"]
               for h, state in desired.hosts.items() for c in state.containers()
               if c.service == "nova" and any(f.name == "nova.conf" for f in c.files)}
    assert markers == {("control1", "nova_api"): "everywhere", ("control1", "nova_conductor"): "everywhere",
                       ("control1", "nova_scheduler"): "everywhere", ("control1", "nova_metadata"): "everywhere",
                       ("compute1", "nova_compute"): "everywhere", ("compute2", "nova_compute"): "compute2-only"}
    # The hypervisor reads no nova.conf, so no override of it reaches there.
    for host in ("compute1", "compute2"):
        (libvirt,) = [c for c in desired.hosts[host].containers() if c.name == "nova_libvirt"]
        assert not [f.name for f in libvirt.files if "marker" in f.content], host


def test_global_conf_reaches_every_main_ini_file(site_dir: Path, site: Site, aio: Inventory) -> None:
    override(site_dir, "global.conf", "[DEFAULT]\nmortar_marker = from-global\n")
    override(site_dir, "keystone.conf", "[DEFAULT]\nmortar_marker = from-keystone\n")
    desired = compute_desired(site, aio)
    main_files = 0
    for container in desired.hosts["localhost"].containers():
        decls = {d.dest: d for d in site.services[container.service].containers[container.name].files}
        for f in container.files:
            if f.dest not in decls:
                assert f.dest == SCRIPT_DEST or f.source, f.dest  # the script, or a secret volume's file
                continue
            decl = decls[f.dest]
            if decl.main and decl.merge == "ini":
                main_files += 1
                expected = "from-keystone" if container.service == "keystone" else "from-global"
                assert ini(f.content)["DEFAULT"]["mortar_marker"] == expected, (container.name, f.name)
            else:
                assert "mortar_marker" not in f.content, (container.name, f.name)
    assert main_files >= 8


# ---- what reaches a host ------------------------------------------------------------------------

def test_host_state_round_trips_through_the_wire(multi: DesiredState) -> None:
    for state in multi.hosts.values():
        again = loads(HostState, dumps(state))
        assert again == state
        assert {c.name: c.config_hash for c in again.containers()} == \
            {c.name: c.config_hash for c in state.containers()}
        assert {j.name: j.inputs for j in again.jobs()} == {j.name: j.inputs for j in state.jobs()}


def test_a_host_gets_only_the_volumes_it_mounts(multi: DesiredState) -> None:
    assert multi.hosts["compute1"].services["nova"].volumes == ["nova_compute", "nova_libvirt"]
    assert multi.hosts["compute1"].services["openvswitch"].volumes == ["openvswitch_db"]
    assert multi.hosts["compute1"].services["ovn"].volumes == []
    assert multi.hosts["control1"].services["nova"].volumes == []
    assert "openvswitch" not in multi.hosts["control1"].services
    # keystone's keys are files of passwords.yml's secrets, the same on every host: no volume holds them.
    assert multi.hosts["control1"].services["keystone"].volumes == []
    keystone = next(c for c in multi.hosts["control1"].containers() if c.name == "keystone")
    assert keystone.volumes == []
    assert {f.dest for f in keystone.files} >= {"/etc/keystone/fernet-keys/0", "/etc/keystone/fernet-keys/2",
                                                "/etc/keystone/credential-keys/1"}


def test_rendered_files_include_the_start_spec(desired: DesiredState) -> None:
    keystone = containers_by_name(desired)["keystone"]
    files = keystone.rendered_files()
    assert set(files) == {f.name for f in keystone.files} | {"spec.json"}
    spec = json.loads(files["spec.json"])
    assert spec["command"] == keystone.command and spec["user"] == "keystone"
    assert {f["source"] for f in spec["files"]} == {f.name for f in keystone.files}


TUNNELS = MULTI.replace("compute1 api_address=10.0.0.21", "compute1 api_address=10.0.0.21 "
                        "neutron_tunnel_address=10.0.0.149/26")


def test_a_hosts_tunnel_address_gives_its_switch_a_tunnel_bridge(site: Site) -> None:
    desired = compute_desired(site, parse_inventory(TUNNELS, "multi"))
    vswitchd = {h: next(c for c in desired.hosts[h].containers() if c.name == "openvswitch_vswitchd")
                for h in ("compute1", "compute2")}
    script = vswitchd["compute1"].script
    # On the userspace datapath only: the NIC of api_address becomes br-tun's port, the address
    # goes on br-tun at every start, and OVN's chassis is told to use it.
    assert 'if [ "$datapath" = netdev ]; then' in script
    assert "tunnel=10.0.0.149/26" in script and "a=10.0.0.21" in script
    assert 'add-port br-tun "$nic"' in script and 'external_ids:mortar-tunnel-ip="${tunnel%/*}"' in script
    assert 'ip addr replace "$tunnel" dev br-tun' in script and "arp_ignore" in script
    assert "systempaths=unconfined" in vswitchd["compute1"].security_opt
    # A host without one keeps no tunnel bridge (nor a record of one).
    other = vswitchd["compute2"].script
    assert "tunnel=" not in other and "--if-exists del-br br-tun" in other
    assert "exec $vswitchd" in other
    controller = next(c for c in desired.hosts["compute1"].containers() if c.name == "ovn_controller")
    assert "external_ids:mortar-tunnel-ip" in controller.script and 'ovn-encap-ip="$encap"' in controller.script


def test_a_bad_tunnel_address_in_the_inventory_is_one_error(site: Site) -> None:
    inventory = parse_inventory(TUNNELS.replace("10.0.0.149/26", "10.0.0.149"), "/etc/mortar/inventory")
    with pytest.raises(MortarError) as info:
        compute_desired(site, inventory)
    assert info.value.file == "/etc/mortar/inventory" and info.value.key == "compute1 neutron_tunnel_address"
    assert "has no prefix length" in info.value.message
