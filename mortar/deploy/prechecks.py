"""`mortar prechecks`: is everything in place for a deploy? Changes nothing.

`host_checks` runs on the host being checked (called by the local executor, or by the
Ansible module on a remote host); the runner adds the checks that need no host.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
from dataclasses import dataclass

from mortar.deploy.converge import MANAGED
from mortar.deploy.model import HostState

MIN_FREE_DISK_GB = 5
MIN_AVAILABLE_MEMORY_GB = 2


@dataclass
class Check:
    ok: bool
    what: str
    fix: str = ""

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.what}" + ("" if self.ok or not self.fix else f"  -> {self.fix}")


def port_in_use(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            # Not an address of this host: the service could never bind it.
            return exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL)
    return False


def available_memory_gb() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def address_is_local(address: str) -> bool:
    """Whether this machine has ADDRESS (IPv4, or IPv6 with or without brackets): bind, send nothing."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address.strip("[]"), 0))
        except OSError:
            return False
    return True


def host_checks(state: HostState) -> list[Check]:
    """Engine, images, address, ports, disk and memory of the host this runs on."""
    import docker
    import docker.errors

    name = state.host
    try:
        engine = docker.from_env(timeout=10)
        engine.ping()
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        return [Check(False, f"{name}: container engine reachable ({exc})",
                      "run `mortar bootstrap-servers` (or `mortar engine setup` on this machine)")]
    checks = [Check(True, f"{name}: container engine reachable")]
    refs = state.images()
    missing = []
    for ref in refs:
        try:
            engine.images.get(ref)
        except docker.errors.ImageNotFound:
            try:
                engine.api.inspect_distribution(ref)
            except docker.errors.APIError:
                missing.append(ref)
    checks.append(Check(not missing, f"{name}: {len(refs)} images present or pullable" +
                        (f"; missing: {', '.join(missing)}" if missing else ""),
                        "build them (`mortar build --profile core`), and with a registry push them (`--push`)"))
    local = address_is_local(state.address)
    checks.append(Check(local, f"{name}: api_address {state.address} is an address of this host",
                        "set api_address for this host in the inventory to one of its own addresses"))
    if local:
        ours = {c.name: c for c in engine.containers.list(all=True, filters={"label": MANAGED})}
        busy = []
        for container in state.containers():
            running = ours.get(container.name)
            if running is not None and running.status == "running":
                continue
            for port in container.ports:
                if port_in_use(state.address, port):
                    busy.append(f"{state.address}:{port} ({container.name})")
        checks.append(Check(not busy, f"{name}: service ports free" + (f"; in use: {', '.join(busy)}" if busy else ""),
                            "stop whatever listens there, or change api_address"))
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
