"""The engine seam: what mortar asks of a container engine, in mortar's own terms.

Builder, deploy agent, registry and test bed call an `Engine`; only an adapter module
(today `dockerengine`, the Docker Engine through its SDK) knows an engine's API. A second
engine (Podman) is a second adapter, not an edit of the callers.

Standard library only: the host agent ships this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from mortar.errors import EngineError


class EngineTimeout(EngineError):
    """The engine did not answer, or a container did not finish, in time."""


@dataclass
class ContainerInfo:
    name: str
    id: str
    status: str  # created | running | restarting | exited | paused | dead
    image_id: str
    labels: dict[str, str] = field(default_factory=dict)
    health: str = ""  # "" (no healthcheck) | starting | healthy | unhealthy
    health_output: str = ""  # what the last health probe printed
    restart_count: int = 0
    exit_code: int = 0
    started_at: str = ""
    address: str = ""  # on a user-defined network (test bed nodes)


@dataclass
class ImageInfo:
    id: str
    tags: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    repo_digests: list[str] = field(default_factory=list)
    size: int = 0


@dataclass
class VolumeInfo:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    created_at: str = ""


@dataclass
class NetworkInfo:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    pools: list[tuple[str, str]] = field(default_factory=list)  # (subnet, gateway)


@dataclass
class Mount:
    target: str
    source: str = ""  # volume name (kind volume) or host path (kind bind)
    kind: str = "volume"  # volume | bind
    read_only: bool = False
    propagation: str = ""  # "" | rshared | rslave | shared | slave | private


@dataclass
class Health:
    test: str  # a shell command inside the container; exit 0 means healthy
    interval: float = 30
    timeout: float = 10
    retries: int = 3
    start_period: float = 5


@dataclass
class RunSpec:
    """A container as the engine should create it; every field is engine-neutral."""

    name: str
    image: str
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    user: str = ""
    hostname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)  # never secrets: engines show it
    mounts: list[Mount] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    network: str = "host"  # host | none | a network name
    address: str = ""  # fixed IPv4 address on that network
    extra_hosts: dict[str, str] = field(default_factory=dict)  # name -> address, in its /etc/hosts at each start
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)  # HOST[:CONTAINER[:PERMISSIONS]]
    device_cgroup_rules: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    unmasked_paths: bool = False  # systempaths=unconfined: /proc and /sys fully visible
    cgroupns: str = ""  # "" | private | host
    pid_mode: str = ""  # "" | host
    ipc_mode: str = ""  # "" | host | shareable
    ulimits: dict[str, tuple[int, int]] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)
    health: Health | None = None
    restart: str = "no"  # no | unless-stopped
    logs: bool = True  # False: the engine keeps no log of the container
    stop_timeout: int = 10


class Engine(Protocol):
    """Operations mortar uses. Lookups return None when the object does not exist; every
    other failure is an EngineError (EngineTimeout when it took too long)."""

    name: str

    def ping(self) -> None: ...

    def info(self) -> dict[str, Any]: ...

    # containers
    def containers(self, labels: dict[str, str | None] | None = None, network: str = "") -> list[ContainerInfo]: ...

    def container(self, name: str) -> ContainerInfo | None: ...

    def create(self, spec: RunSpec) -> str: ...

    def start(self, name: str) -> None: ...

    def stop(self, name: str, timeout: int = 10) -> None: ...

    def restart(self, name: str, timeout: int = 10) -> None: ...

    def remove(self, name: str) -> bool: ...

    def wait(self, name: str, timeout: float) -> int: ...

    def logs(self, name: str, tail: int | None = None) -> str: ...

    def exec(self, name: str, command: list[str], user: str = "root") -> tuple[int, str]: ...

    def put_archive(self, name: str, path: str, data: bytes) -> None: ...

    def run(self, spec: RunSpec, timeout: float = 600) -> tuple[int, str]: ...

    # images
    def image(self, ref: str) -> ImageInfo | None: ...

    def images(self, labels: dict[str, str | None] | None = None) -> list[ImageInfo]: ...

    def pull(self, ref: str, auth: dict[str, str] | None = None) -> ImageInfo: ...

    def push(self, ref: str, auth: dict[str, str] | None = None) -> str: ...

    def tag(self, image: str, ref: str) -> None: ...

    def untag(self, ref: str) -> None: ...

    def build(self, context: IO[bytes], tag: str, labels: dict[str, str], nocache: bool,
              output: Callable[[str], None]) -> str: ...

    def import_image(self, archive: str, repository: str, tag: str, changes: list[str]) -> str: ...

    def registry_digest(self, ref: str, auth: dict[str, str] | None = None) -> str | None: ...

    # volumes
    def volumes(self, labels: dict[str, str | None] | None = None) -> list[VolumeInfo]: ...

    def volume(self, name: str) -> VolumeInfo | None: ...

    def create_volume(self, name: str, labels: dict[str, str], options: dict[str, str] | None = None) -> VolumeInfo:
        """OPTIONS: the local driver's (type, o, device): e.g. a bind of a shared filesystem's folder."""
        ...

    def remove_volume(self, name: str) -> bool: ...

    # networks (the test bed's subnet)
    def network(self, name: str) -> NetworkInfo | None: ...

    def create_network(self, name: str, subnet: str, gateway: str, bridge: str, labels: dict[str, str]) -> None: ...

    def remove_network(self, name: str) -> bool: ...
