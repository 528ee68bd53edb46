"""Where each container lives on Kubernetes, decided from the catalogue's data alone.

A container that uses files of its host (`mounts` in service.yaml: the switch's socket, the
hypervisor's run folder, /proc of the host) is a per-node agent: it runs on every node of its
group, in the node's own network, and is reached at the node's address. Every other container
runs in the pod network: it binds every address, and where it has ports it is reached at a
Service address mortar chooses from the cluster's Service range, the same for every rendering
(a hash of the container's name, probing on), so services find each other by address on a
cluster with cluster DNS or without one. Such a pod sees the name of its workload as its host
name (a StatefulSet's first pod, WORKLOAD-0, for a container with named volumes of data).
"""

from __future__ import annotations

import hashlib
import ipaddress

from mortar.catalogue.loader import ServiceSpec
from mortar.deploy.desired import Topology
from mortar.errors import MortarError
from mortar.site.config import Site
from mortar.site.inventory import Inventory

# Addresses a cluster gives itself at the start of its Service range (kubernetes, cluster DNS).
RESERVED = 16


def workload_name(container: str) -> str:
    """A container's name as Kubernetes object names allow it (DNS-1123: no '_')."""
    return container.replace("_", "-")


def per_node_containers(services: dict[str, ServiceSpec], enabled: set[str]) -> set[str]:
    return {name for s in enabled for name, decl in services[s].containers.items() if decl.mounts}


def claimed_volumes(spec: ServiceSpec, volumes: list[str]) -> list[str]:
    """The entries (VOLUME:/path[:ro]) of VOLUMES that hold data: a claim each on the cluster
    (a secret volume's files come with the pod's configuration instead)."""
    return [v for v in volumes if v.split(":", 1)[0] not in spec.secret_volumes]


def stateful_containers(services: dict[str, ServiceSpec], enabled: set[str], per_node: set[str]) -> set[str]:
    """Pod-network containers with named volumes of data: StatefulSets, each volume a claim."""
    return {name for s in enabled for name, decl in services[s].containers.items()
            if claimed_volumes(services[s], decl.volumes) and name not in per_node}


def service_addresses(names: list[str], cidr: str) -> dict[str, str]:
    """A fixed address in CIDR for each name: its hash picks the place, the next free one on a
    collision (names taken in sorted order, so the result does not depend on their order)."""
    network = ipaddress.ip_network(cidr)
    usable = network.num_addresses - RESERVED - 1
    if usable < len(names):
        raise MortarError(f"the Service range {cidr} is too small for {len(names)} Services", key="k8s_service_cidr",
                          fix="give the cluster's whole Service range, e.g. 10.96.0.0/12")
    taken: dict[int, str] = {}
    chosen: dict[str, str] = {}
    for name in sorted(names):
        offset = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % usable
        while offset in taken:
            offset = (offset + 1) % usable
        taken[offset] = name
        chosen[name] = str(network[RESERVED + offset])
    return chosen


class ClusterTopology(Topology):
    """Addresses and host names on a cluster: nodes' own for per-node agents, Service addresses
    (reached) and every address (bound) for the pod network."""

    def __init__(self, site: Site, inventory: Inventory) -> None:
        for key in ("internal_fqdn", "enable_tls_internal", "enable_tls_external", "external_vip_address"):
            if site.globals.get(key):
                raise MortarError(f"mortar k8s does not serve {key} yet (it is the load balancer's, on hosts)",
                                  file=str(site.config_dir / "globals.yml"), key=key,
                                  fix=f"remove {key} for a Kubernetes site")
        super().__init__(site, inventory)
        self.per_node = per_node_containers(site.services, site.enabled)
        self.stateful = stateful_containers(site.services, site.enabled, self.per_node)
        with_ports = [name for s in site.enabled for name, decl in site.services[s].containers.items()
                      if name not in self.per_node and decl.ports]
        self.services = service_addresses(with_ports, str(site.globals["k8s_service_cidr"]))

    spreads_clients = True  # a Service spreads them over its pods

    def reach(self, host: str, container: str) -> str:
        if container in self.per_node or not container:
            return self.host_address(host)
        return self.services.get(container, "0.0.0.0")

    def bind(self, host: str, container: str) -> str:
        return self.host_address(host) if container in self.per_node or not container else "0.0.0.0"

    def public_reach(self, host: str, container: str) -> str:
        return self.reach(host, container)

    def public_scheme(self, host: str, container: str) -> str:
        return self.scheme(host, container)

    def hostname(self, host: str, container: str) -> str:
        if container in self.per_node or not container:
            return host
        return workload_name(container) + ("-0" if container in self.stateful else "")
