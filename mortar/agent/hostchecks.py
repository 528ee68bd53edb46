"""Prechecks on the host being checked: engine, images, address, ports, disk, memory. Changes nothing."""

from __future__ import annotations

import errno
import ipaddress
import os
import shutil
import socket
import subprocess

from mortar.agent import facts as F
from mortar.agent.converge import registry_auth
from mortar.agent.wire import Check, HostState
from mortar.engine.dockerengine import split_ref
from mortar.engine.protocol import Engine

MIN_FREE_DISK_GB = 5
MIN_AVAILABLE_MEMORY_GB = 2


def port_in_use(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address.strip("[]"), port))
        except OSError as exc:
            # Not an address of this host: the service could never bind it.
            return exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL)
    return False


def address_is_local(address: str) -> bool:
    """Whether this machine has ADDRESS (IPv4, or IPv6 with or without brackets): bind, send nothing."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address.strip("[]"), 0))
        except OSError:
            return False
    return True


def interface_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The networks of this host's interfaces (`ip -o addr show`); [] when ip cannot say."""
    try:
        out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    networks = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[2] in ("inet", "inet6"):
            try:
                networks.append(ipaddress.ip_interface(fields[3]).network)
            except ValueError:
                continue
    return networks


def resolved(name: str) -> set[str]:
    """The addresses NAME resolves to here (the system's resolver: /etc/hosts, then DNS); none
    when it does not."""
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        return set()


def name_checks(where: str, names: dict[str, str]) -> list[Check]:
    """One check per name the site's clients use: it resolves here to its address, and only to it."""
    checks = []
    for name, address in names.items():
        found = resolved(name)
        if found == {address}:
            seen = ""
        elif found:
            seen = f"; it resolves to {', '.join(sorted(found))}"
        else:
            seen = "; it does not resolve"
        checks.append(Check(not seen, f"{where}: {name} resolves to {address}{seen}",
                            f"make your DNS resolve {name} to {address}, or add `{address} {name}` to /etc/hosts "
                            f"on {where}"))
    return checks


def available_memory_gb() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def image_problem(engine: Engine, host: HostState, ref: str) -> str:
    """'' when REF is usable on this host, else what is wrong with it. An image mortar pushed is
    also looked up in the registry: a tag replaced there is named even while hosts, pulling the
    pushed digest, never run it."""
    local = engine.image(ref)
    pin = host.image_pins.get(ref)
    present = local is not None and (not pin or f"{split_ref(ref)[0]}@{pin}" in local.repo_digests)
    if present and not pin:
        return ""
    found = engine.registry_digest(ref, registry_auth(host))
    if found is None:
        return "" if present else f"{ref} (not on the host, not in the registry)"
    if pin and found != pin:
        return f"{ref} (the registry's tag holds {found[:19]}…, not the {pin[:19]}… mortar pushed)"
    return ""


def host_checks(state: HostState, engine: Engine) -> list[Check]:
    name = state.host
    try:
        engine.ping()
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        return [Check(False, f"{name}: container engine reachable ({exc})",
                      "run `mortar bootstrap-servers` (or `mortar engine setup` on this machine)")]
    checks = [Check(True, f"{name}: container engine reachable")]
    refs = state.images()
    problems = [p for p in (image_problem(engine, state, ref) for ref in refs) if p]
    checks.append(Check(not problems, f"{name}: {len(refs)} images present or pullable" +
                        (f"; {', '.join(problems)}" if problems else ""),
                        "build them (`mortar build`) and push them (`--push`); a tag replaced in the registry "
                        "is someone else's image: find out who, then push again"))
    local = address_is_local(state.address)
    checks.append(Check(local, f"{name}: api_address {state.address} is an address of this host",
                        "set api_address for this host in the inventory to one of its own addresses"))
    if local:
        ours = {c.name: c for c in engine.containers({F.MANAGED: None})}
        busy = []
        for container in state.containers():
            running = ours.get(container.name)
            if running is not None and running.status == "running":
                continue
            for port in container.ports:
                if port_in_use(state.address, int(port)):
                    busy.append(f"{state.address}:{port} ({container.name})")
        checks.append(Check(not busy, f"{name}: service ports free" + (f"; in use: {', '.join(busy)}" if busy else ""),
                            "stop whatever listens there, or change api_address"))
    if state.virtual_addresses:
        networks = interface_networks()
        outside = [a for a in state.virtual_addresses if not any(ipaddress.ip_address(a) in n for n in networks)]
        checks.append(Check(not outside, f"{name}: virtual address(es) {', '.join(state.virtual_addresses)} in a "
                                         "network of this host's interfaces" +
                            (f"; not so: {', '.join(outside)}" if outside else ""),
                            "choose internal_vip_address (external_vip_address) in the subnet of the control "
                            "hosts' interfaces: keepalived adds it beside the host's own address"))
    checks.extend(name_checks(name, state.names))
    root = "/var/lib/docker" if os.path.isdir("/var/lib/docker") else "/"
    free_gb = shutil.disk_usage(root).free / 1e9
    checks.append(Check(free_gb >= MIN_FREE_DISK_GB,
                        f"{name}: {free_gb:.0f} GB free for images and volumes (need {MIN_FREE_DISK_GB})",
                        "free some disk space"))
    memory = available_memory_gb()
    checks.append(Check(memory >= MIN_AVAILABLE_MEMORY_GB,
                        f"{name}: {memory:.1f} GiB memory available (need {MIN_AVAILABLE_MEMORY_GB})",
                        "stop other workloads"))
    return checks
