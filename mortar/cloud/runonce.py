"""`mortar init-runonce`: what a fresh cloud needs before its first guest, made once.

The guest image, flavors, a provider (external) network on physnet1 with a floating-IP
range, a demo tenant network behind a router, and ingress rules for ICMP and SSH in the
admin project's default security group. Running it again changes nothing that exists.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mortar.errors import MortarError

GUEST_IMAGE = "mortar-guest"
GUEST_USER = "mortar"
EXTERNAL_NETWORK = "public"
DEMO_NETWORK = "demo-net"
DEMO_CIDR = "10.0.0.0/24"
FLAVORS = [("m1.tiny", 256, 1, 1), ("m1.small", 512, 1, 2)]
GUEST_FLAVOR = FLAVORS[0][0]  # what verify boots the guest image with


@dataclass
class ExternalNetwork:
    cidr: str
    gateway: str
    pool_start: str
    pool_end: str


def external_network(settings: dict[str, Any], globals_file: str) -> ExternalNetwork:
    """The provider subnet: external_network_cidr (and gateway, pool), or the subnet of
    neutron_external_veth_address with that address as the gateway."""
    cidr = str(settings.get("external_network_cidr") or "")
    gateway = str(settings.get("external_network_gateway") or "")
    veth = str(settings.get("neutron_external_veth_address") or "")
    try:
        if not cidr and veth:
            interface = ipaddress.ip_interface(veth)
            cidr, gateway = str(interface.network), gateway or str(interface.ip)
        if not cidr:
            raise MortarError("no provider network is configured", file=globals_file, key="external_network_cidr",
                              fix="set external_network_cidr (and neutron_external_interface), or "
                                  "neutron_external_veth_address for a veth mortar creates")
        network = ipaddress.ip_network(cidr)
        hosts = list(network.hosts())
        gateway = gateway or str(hosts[0])
        pool = str(settings.get("external_allocation_pool") or "")
        if pool:
            start, end = (p.strip() for p in pool.split("-", 1))
        else:
            start, end = str(hosts[len(hosts) // 2]), str(hosts[-1])
        for address in (gateway, start, end):
            if ipaddress.ip_address(address) not in network:
                raise ValueError(f"{address} is not in {cidr}")
    except ValueError as exc:
        raise MortarError(f"the provider network is not valid: {exc}", file=globals_file,
                          key="external_network_cidr",
                          fix="give a CIDR, a gateway and an allocation pool (START-END) inside it") from None
    return ExternalNetwork(str(network), gateway, start, end)


def init_runonce(conn: Any, settings: dict[str, Any], globals_file: str, image_file: Path,
                 log: Callable[[str], None] = print) -> None:
    ext = external_network(settings, globals_file)
    image = conn.image.find_image(GUEST_IMAGE)
    digest = hashlib.md5(image_file.read_bytes(), usedforsecurity=False).hexdigest()  # glance's `checksum`
    if image is not None and image.checksum and image.checksum != digest:
        # A newer guest image was made (`mortar guest-image`): it replaces the one uploaded before.
        conn.image.delete_image(image.id)
        log(f"image {GUEST_IMAGE}: the guest image changed, replacing the one uploaded before")
        image = None
    if image is None:
        image = conn.image.create_image(name=GUEST_IMAGE, filename=str(image_file), disk_format="raw",
                                        container_format="bare", visibility="public", wait=True)
        log(f"image {GUEST_IMAGE}: uploaded ({image_file.stat().st_size // 1024} KiB)")
    else:
        log(f"image {GUEST_IMAGE}: exists")
    for name, ram, vcpus, disk in FLAVORS:
        if conn.compute.find_flavor(name) is None:
            conn.compute.create_flavor(name=name, ram=ram, vcpus=vcpus, disk=disk)
            log(f"flavor {name}: {ram} MiB, {vcpus} vCPU, {disk} GiB")
    public = conn.network.find_network(EXTERNAL_NETWORK)
    if public is None:
        public = conn.network.create_network(name=EXTERNAL_NETWORK, is_router_external=True, is_shared=False,
                                             provider_network_type="flat", provider_physical_network="physnet1")
        conn.network.create_subnet(network_id=public.id, name=f"{EXTERNAL_NETWORK}-subnet", ip_version=4,
                                   cidr=ext.cidr, gateway_ip=ext.gateway, enable_dhcp=False,
                                   allocation_pools=[{"start": ext.pool_start, "end": ext.pool_end}])
        log(f"network {EXTERNAL_NETWORK}: {ext.cidr}, floating IPs {ext.pool_start}-{ext.pool_end}")
    demo = conn.network.find_network(DEMO_NETWORK)
    if demo is None:
        demo = conn.network.create_network(name=DEMO_NETWORK)
        subnet = conn.network.create_subnet(network_id=demo.id, name=f"{DEMO_NETWORK}-subnet", ip_version=4,
                                            cidr=DEMO_CIDR, dns_nameservers=[])
        router = conn.network.create_router(name="demo-router", external_gateway_info={"network_id": public.id})
        conn.network.add_interface_to_router(router, subnet_id=subnet.id)
        log(f"network {DEMO_NETWORK}: {DEMO_CIDR} behind demo-router (gateway on {EXTERNAL_NETWORK})")
    project = conn.current_project_id
    group = next(iter(conn.network.security_groups(name="default", project_id=project)), None)
    if group is not None:
        have = {(r.protocol, r.port_range_min) for r in conn.network.security_group_rules(security_group_id=group.id)
                if r.direction == "ingress" and r.remote_ip_prefix == "0.0.0.0/0"}
        for protocol, port in (("icmp", None), ("tcp", 22)):
            if (protocol, port) not in have:
                conn.network.create_security_group_rule(
                    security_group_id=group.id, direction="ingress", ethertype="IPv4", protocol=protocol,
                    port_range_min=port, port_range_max=port, remote_ip_prefix="0.0.0.0/0")
                log(f"security group default: ingress {protocol}{f'/{port}' if port else ''} allowed")
