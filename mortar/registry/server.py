"""The site registry: the `registry` image run on this machine's network, data in a named volume.

It listens on the address hosts pull from (`docker_registry` in globals.yml), which must be
an address of this machine; port 4000 because keystone owns 5000. There is one registry per
address (container and data volume `mortar_registry_<host>_<port>`). It speaks TLS with a
certificate of the site CA (or the operator's) and asks every client for the site's
registry password; its files reach it as any mortar container's do, through mortar-start.
`docker_registry_insecure: true` runs it as plain HTTP without a password instead (for an
isolated lab network only).
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mortar.agent.converge import write_config_dir
from mortar.agent.wire import CONFIG_MOUNT, Container, File
from mortar.engine.protocol import Engine, Mount, RunSpec
from mortar.errors import EngineError, MortarError
from mortar.registry.tls import RegistryTLS, htpasswd_line

LABEL = "org.mortar.registry"
HASH_LABEL = "org.mortar.registry.config-hash"
DEFAULT_ADDRESS = "127.0.0.1:4000"
DATA_DIR = "/var/lib/docker-registry"
TLS_DIR = "/etc/docker/registry"


@dataclass
class RegistryStatus:
    running: bool
    address: str = ""
    image: str = ""
    repositories: list[str] | None = None


def name_for(address: str) -> str:
    """The registry container's (and its data volume's) name: one registry per address."""
    host, port = split_address(address)
    return f"mortar_registry_{host.strip('[]').replace(':', '.')}_{port}"


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "://" in address:
        raise MortarError(f"'{address}' is not HOST:PORT", key="docker_registry",
                          fix="e.g. 127.0.0.1:4000, or this machine's address on the deployment network")
    return host, int(port)


def _context(ca: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
    return context


def catalog(address: str, auth: tuple[str, str] | None, ca: str | None, timeout: float = 5) -> list[str]:
    """The repositories the registry holds (HTTPS with CA when ca is not None)."""
    scheme = "http" if ca is None else "https"
    request = urllib.request.Request(f"{scheme}://{address}/v2/_catalog?n=1000")
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=timeout, context=_context(ca) if ca is not None else None) as answer:
        return list(json.load(answer).get("repositories") or [])


def ensure_image(engine: Engine, namespace: str, release: str, tag: str, log: Callable[[str], None]) -> str:
    """The registry image's reference, built (with its parents) when missing."""
    from mortar.builder.baseimage import ensure_base_image
    from mortar.builder.builder import Builder, BuildOptions, ImageTree

    options = BuildOptions(namespace=namespace, release=release, tag=tag)
    ref = options.ref("registry")
    if engine.image(ref) is not None:
        return ref
    log(f"building {ref}")
    tree = ImageTree(options)
    tree.compute_identities(ensure_base_image(engine, options.base_ref, options.base, True, log=log))
    result = Builder(engine, tree).run(["registry"])["registry"]
    if result.status not in ("done", "cached"):
        raise EngineError(f"building {ref} failed: {result.error}", fix=f"see {result.log}")
    return ref


def container_spec(address: str, tls: RegistryTLS | None, username: str, password: str,
                   existing_htpasswd: str = "") -> Container:
    host, port = split_address(address)
    environment = {"REGISTRY_HTTP_ADDR": f"{host}:{port}"}
    files: list[File] = []
    if tls is not None:
        environment.update(REGISTRY_HTTP_TLS_CERTIFICATE=f"{TLS_DIR}/tls.crt",
                           REGISTRY_HTTP_TLS_KEY=f"{TLS_DIR}/tls.key",
                           REGISTRY_AUTH="htpasswd", REGISTRY_AUTH_HTPASSWD_REALM="mortar",
                           REGISTRY_AUTH_HTPASSWD_PATH=f"{TLS_DIR}/htpasswd")
        files = [File(dest=f"{TLS_DIR}/tls.crt", owner="docker-registry", mode="0444", content=tls.certificate),
                 File(dest=f"{TLS_DIR}/tls.key", owner="docker-registry", mode="0400", content=tls.key),
                 File(dest=f"{TLS_DIR}/htpasswd", owner="docker-registry", mode="0400",
                      content=htpasswd_line(username, password, existing_htpasswd))]
    return Container(name=name_for(address), service="registry", image="", user="docker-registry",
                     command=["/usr/bin/docker-registry", "serve", f"{TLS_DIR}/config.yml"],
                     environment=environment, files=files, volumes=[f"{name_for(address)}:{DATA_DIR}"])


def start(engine: Engine, address: str, image: str, state_dir: Path, tls: RegistryTLS | None, username: str,
          password: str, log: Callable[[str], None] = print, timeout: float = 60) -> str:
    """Run the registry on ADDRESS (idempotent: a running one with the same settings is kept)."""
    from mortar.agent.hostchecks import address_is_local

    host, _port = split_address(address)
    if not address_is_local(host):
        raise MortarError(f"{host} is not an address of this machine, so the registry cannot listen on it",
                          key="docker_registry",
                          fix="use one of this machine's addresses (`ip -br addr`) that every host reaches; "
                              "for the test bed, run `mortar testbed up` first (it adds 10.213.77.1)")
    name = name_for(address)
    files_dir = state_dir / "registry" / name
    old = files_dir / "htpasswd"
    container = container_spec(address, tls, username, password, old.read_text() if old.is_file() else "")
    container.image = image
    image_info = engine.image(image)
    assert image_info is not None
    digest = hashlib.sha256((image_info.id + container.config_hash).encode()).hexdigest()
    current = engine.container(name)
    if current is not None:
        if current.labels.get(HASH_LABEL) == digest and current.status == "running":
            log(f"registry already running on {address}")
            return address
        log(f"replacing the registry container ({current.status}, serving {current.labels.get(LABEL) or '?'})")
        engine.remove(name)
    write_config_dir(files_dir, container.rendered_files())
    engine.create(RunSpec(name=name, image=image, labels={LABEL: address, HASH_LABEL: digest},
                          mounts=[Mount(CONFIG_MOUNT, str(files_dir), "bind", read_only=True),
                                  Mount(DATA_DIR, name, "volume")], restart="unless-stopped"))
    engine.start(name)
    deadline = time.monotonic() + timeout
    auth = (username, password) if tls is not None else None
    while True:
        try:
            catalog(address, auth, tls.ca if tls is not None else None, timeout=2)
            break
        except urllib.error.HTTPError as exc:
            raise EngineError(f"the registry on {address} answered {exc.code} to its own password",
                              fix="run `mortar registry start` again") from None
        except (OSError, ValueError) as exc:
            if time.monotonic() > deadline:
                logs = engine.logs(name, tail=15)
                raise EngineError(f"the registry on {address} does not answer after {timeout:.0f}s ({exc})\n{logs}",
                                  fix="check that the address is one of this machine's (`ip -br addr`) and the "
                                      "port is free") from None
            time.sleep(0.5)
    log(f"registry running on {address} ({'TLS, password' if tls else 'plain HTTP'}; data in volume {name})")
    return address


def stop(engine: Engine, address: str, remove_data: bool, log: Callable[[str], None] = print) -> None:
    name = name_for(address)
    if engine.remove(name):
        log(f"removed container {name}")
    else:
        log(f"no registry container for {address}")
    if remove_data and engine.remove_volume(name):
        log(f"removed volume {name} (every pushed image)")


def status(engine: Engine, address: str, auth: tuple[str, str] | None, ca: str | None) -> RegistryStatus:
    container = engine.container(name_for(address))
    if container is None:
        return RegistryStatus(False)
    result = RegistryStatus(container.status == "running", container.labels.get(LABEL, address),
                            container.image_id[:19])
    if result.running:
        try:
            result.repositories = catalog(result.address, auth, ca)
        except (OSError, urllib.error.URLError, ValueError):
            result.repositories = None
    return result
