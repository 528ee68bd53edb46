"""The site registry: the `registry` image run on this machine's network, data in a named volume.

It listens on the address hosts pull from (`docker_registry` in globals.yml), which must be
an address of this machine; port 4000 because keystone owns 5000. No TLS and no auth: meant
for a loopback address or a dedicated deployment network, and the hosts' engines are told to
trust it by `mortar bootstrap-servers`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from mortar.errors import EngineError, MortarError

CONTAINER = "mortar_registry"
VOLUME = "mortar_registry"
LABEL = "org.mortar.registry"
DEFAULT_ADDRESS = "127.0.0.1:4000"
DATA_DIR = "/var/lib/docker-registry"


@dataclass
class RegistryStatus:
    running: bool
    address: str = ""
    image: str = ""
    repositories: list[str] | None = None


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise MortarError(f"'{address}' is not HOST:PORT", key="docker_registry",
                          fix="e.g. 127.0.0.1:4000, or this machine's address on the deployment network")
    return host, int(port)


def catalog(address: str, timeout: float = 5) -> list[str]:
    with urllib.request.urlopen(f"http://{address}/v2/_catalog?n=1000", timeout=timeout) as answer:
        return list(json.load(answer).get("repositories") or [])


def ensure_image(client, namespace: str, tag: str, log: Callable[[str], None]) -> str:
    """The registry image's reference, built (with its parents) when missing."""
    import docker.errors

    from mortar.build.baseimage import ensure_base_image
    from mortar.build.builder import Builder, BuildOptions, ImageTree

    options = BuildOptions(namespace=namespace, tag=tag)
    ref = options.ref("registry")
    try:
        client.images.get(ref)
        return ref
    except docker.errors.ImageNotFound:
        pass
    log(f"building {ref}")
    tree = ImageTree(options)
    tree.compute_identities(ensure_base_image(client, options.base_ref, options.base, True, log=log))
    result = Builder(client, tree).run(["registry"])["registry"]
    if result.status not in ("done", "cached"):
        raise EngineError(f"building {ref} failed: {result.error}", fix=f"see {result.log}")
    return ref


def start(client, address: str, image: str, log: Callable[[str], None] = print, timeout: float = 60) -> str:
    """Run the registry on ADDRESS (idempotent: a running one with the same settings is kept)."""
    import docker.errors

    host, port = split_address(address)
    from mortar.deploy.prechecks import address_is_local

    if not address_is_local(host):
        raise MortarError(f"{host} is not an address of this machine, so the registry cannot listen on it",
                          key="docker_registry",
                          fix="use one of this machine's addresses (`ip -br addr`) that every host reaches; "
                              "for the test bed, run `mortar testbed up` first (it adds 10.213.77.1)")
    environment = {"REGISTRY_HTTP_ADDR": f"{host}:{port}"}
    wanted_image = client.images.get(image).id
    try:
        current = client.containers.get(CONTAINER)
        same = (current.attrs["Image"] == wanted_image and current.labels.get(LABEL) == address
                and current.status == "running")
        if same:
            log(f"registry already running on {address}")
            return address
        log(f"replacing the registry container ({current.status}, serving {current.labels.get(LABEL) or '?'})")
        current.remove(force=True)
    except docker.errors.NotFound:
        pass
    client.containers.run(
        image, name=CONTAINER, detach=True, network_mode="host", environment=environment,
        command=["/usr/bin/docker-registry", "serve", "/etc/docker/registry/config.yml"],
        user="docker-registry", volumes={VOLUME: {"bind": DATA_DIR, "mode": "rw"}},
        labels={LABEL: address}, restart_policy={"Name": "unless-stopped"})
    deadline = time.monotonic() + timeout
    while True:
        try:
            catalog(address, timeout=2)
            break
        except (OSError, urllib.error.URLError, ValueError) as exc:
            if time.monotonic() > deadline:
                logs = client.containers.get(CONTAINER).logs(tail=15).decode(errors="replace")
                raise EngineError(f"the registry on {address} does not answer after {timeout:.0f}s ({exc})\n{logs}",
                                  fix="check that the address is one of this machine's "
                                      "(`ip -br addr`) and the port is free") from exc
            time.sleep(0.5)
    log(f"registry running on {address} (data in volume {VOLUME})")
    return address


def stop(client, remove_data: bool, log: Callable[[str], None] = print) -> None:
    import docker.errors

    try:
        client.containers.get(CONTAINER).remove(force=True)
        log(f"removed container {CONTAINER}")
    except docker.errors.NotFound:
        log("no registry container")
    if remove_data:
        try:
            client.volumes.get(VOLUME).remove()
            log(f"removed volume {VOLUME} (every pushed image)")
        except docker.errors.NotFound:
            pass


def status(client) -> RegistryStatus:
    import docker.errors

    try:
        container = client.containers.get(CONTAINER)
    except docker.errors.NotFound:
        return RegistryStatus(False)
    address = container.labels.get(LABEL, "")
    result = RegistryStatus(container.status == "running", address, container.attrs["Config"]["Image"])
    if result.running:
        try:
            result.repositories = catalog(address)
        except (OSError, urllib.error.URLError, ValueError):
            result.repositories = None
    return result
