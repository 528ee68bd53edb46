"""The rabbitmq service on several hosts: one RabbitMQ cluster, every broker in the clients'
transport_url and quorum queues for OpenStack's RPC; on one host (and on Kubernetes, where one
Service address stands for the broker) everything renders as it always did."""

from __future__ import annotations

import configparser
import urllib.parse
from collections.abc import Callable

import pytest

from mortar.agent.wire import Container
from mortar.deploy.desired import DesiredState, compute_desired
from mortar.k8s.render import render
from mortar.site.config import Site
from mortar.site.inventory import parse_inventory
from mortar.site.samples import INVENTORY_AIO
from tests.unit.inventories import THREE_CONTROL_HOSTS

PASSWORD = "p@ss/w:rd%"  # every character that must be quoted in a URL
QUOTED = urllib.parse.quote(PASSWORD, safe="")
# Three control hosts; the rest of the control plane stays on control1 (groups named after the
# containers), so that only the broker is spread.
ONE_HOST_GROUPS = "".join(f"[{group}]\ncontrol1\n" for group in (
    "mariadb", "memcached", "keystone", "glance", "placement", "horizon", "nova-api", "nova-conductor",
    "nova-scheduler", "nova-metadata", "neutron-server", "ovn-nb-db", "ovn-sb-db", "ovn-northd"))
CLUSTER_URL = ("rabbit://" + ",".join(f"openstack:{QUOTED}@10.0.0.1{i}:5672" for i in (1, 2, 3)) + "//")

# What rabbitmq.conf has always been on one host: a cluster adds to it, never changes it.
ONE_BROKER_CONF = """\
listeners.tcp.default = {address}:5672
distribution.listener.interface = {address}
load_definitions = /etc/rabbitmq/definitions.json
loopback_users = none
log.console = true
log.console.level = info
log.file = false
"""


@pytest.fixture
def site(configure: Callable[..., Site]) -> Site:
    return configure(passwords={"rabbitmq_password": PASSWORD})


def containers(desired: DesiredState, name: str) -> dict[str, Container]:
    """NAME's container on each host that runs it."""
    return {host: c for host, state in desired.hosts.items() for c in state.containers() if c.name == name}


def file_of(container: Container, name: str) -> str:
    return next(f.content for f in container.files if f.name == name)


def ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False, default_section="\x00none")
    parser.read_string(text)
    return parser


def client_configs(desired: DesiredState) -> dict[str, configparser.ConfigParser]:
    """Every nova.conf and neutron.conf of the site, by host and container."""
    found = {}
    for host, state in desired.hosts.items():
        for c in state.containers():
            for f in c.files:
                if f.name in ("nova.conf", "neutron.conf") and "transport_url" in f.content:
                    found[f"{host}/{c.name}"] = ini(f.content)
    return found


# ---- one broker ----------------------------------------------------------------------------------

def test_one_broker_renders_as_it_always_did(site: Site) -> None:
    desired = compute_desired(site, parse_inventory(INVENTORY_AIO, "aio"))
    [(host, broker)] = containers(desired, "rabbitmq").items()
    address = str(site.globals["api_address"])
    assert file_of(broker, "rabbitmq.conf") == ONE_BROKER_CONF.format(address=address)
    clients = client_configs(desired)
    assert {"localhost/nova_conductor", "localhost/nova_compute", "localhost/neutron_server"} <= set(clients)
    for name, conf in clients.items():
        assert conf["DEFAULT"]["transport_url"] == f"rabbit://openstack:{QUOTED}@{address}:5672//", name
        # Classic queues, as before: no option section at all.
        assert not conf.has_section("oslo_messaging_rabbit"), name


def test_kubernetes_has_one_broker_address_whatever_the_hosts(site: Site) -> None:
    # Kubernetes reaches the broker at its Service: one address, so no cluster settings and no
    # quorum queues, even with several control hosts.
    inventory = parse_inventory("[control]\nctl1 api_address=10.0.0.11\nctl2 api_address=10.0.0.12\n"
                                "[network:children]\ncontrol\n[compute]\ncmp1 api_address=10.0.0.21\n", "inv")
    desired = render(site, inventory, "1.30").desired
    assert desired is not None
    for host, broker in containers(desired, "rabbitmq").items():
        assert "cluster_formation" not in file_of(broker, "rabbitmq.conf"), host
    urls = set()
    for name, conf in client_configs(desired).items():
        assert not conf.has_section("oslo_messaging_rabbit"), name
        urls.add(conf["DEFAULT"]["transport_url"])
    [url] = urls
    assert url.count("@") == 1 and url.endswith(":5672//")


# ---- three brokers -------------------------------------------------------------------------------

@pytest.fixture
def three(site: Site) -> DesiredState:
    return compute_desired(site, parse_inventory(THREE_CONTROL_HOSTS + ONE_HOST_GROUPS, "inventory"))


def test_every_client_lists_every_broker(three: DesiredState) -> None:
    assert list(containers(three, "rabbitmq")) == ["control1", "control2", "control3"]
    clients = client_configs(three)
    assert {"control1/nova_conductor", "control1/neutron_server", "compute1/nova_compute"} <= set(clients)
    for name, conf in clients.items():
        assert conf["DEFAULT"]["transport_url"] == CLUSTER_URL, name


def test_the_brokers_form_one_cluster(three: DesiredState) -> None:
    nodes = [f"cluster_formation.classic_config.nodes.{i} = rabbit@control{i}" for i in (1, 2, 3)]
    cookies = set()
    for host, broker in containers(three, "rabbitmq").items():
        address = {"control1": "10.0.0.11", "control2": "10.0.0.12", "control3": "10.0.0.13"}[host]
        conf = file_of(broker, "rabbitmq.conf")
        # What one broker has, then the cluster: the same member list on every host.
        assert conf.startswith(ONE_BROKER_CONF.format(address=address)), host
        lines = conf.splitlines()
        assert "cluster_formation.peer_discovery_backend = classic_config" in lines, host
        assert [line for line in lines if line.startswith("cluster_formation.classic_config.")] == nodes, host
        assert "cluster_partition_handling = pause_minority" in lines, host
        # Each node is named after its host (which the other hosts resolve) and binds its address.
        assert broker.environment["RABBITMQ_NODENAME"] == f"rabbit@{host}"
        assert broker.environment["ERL_EPMD_ADDRESS"] == address
        assert broker.healthcheck is not None and f"--host {address} " in broker.healthcheck.test
        assert {25672, 4369} <= set(broker.ports)
        cookies.add(file_of(broker, ".erlang.cookie"))
    assert len(cookies) == 1, "one Erlang cookie for the whole cluster"


def test_clients_use_quorum_queues_on_a_cluster(three: DesiredState) -> None:
    for name, conf in client_configs(three).items():
        assert conf.has_section("oslo_messaging_rabbit"), name
        options = dict(conf["oslo_messaging_rabbit"])
        assert options == {"rabbit_quorum_queue": "true", "rabbit_transient_quorum_queue": "true"}, name


def test_the_definitions_are_the_same_on_every_broker(three: DesiredState) -> None:
    brokers = containers(three, "rabbitmq")
    definitions = {file_of(b, "definitions.json") for b in brokers.values()}
    assert len(definitions) == 1
    # No mirroring policy: RabbitMQ 4 has no classic queue mirroring; quorum queues replicate.
    assert "ha-mode" not in definitions.pop()
