"""An in-memory Engine for unit tests: containers, images, volumes and networks as plain data.

It keeps mortar's `Engine` contract (None for a missing object, EngineError otherwise) so the
agent, builder and test bed run against it unchanged. Tests steer it: `job_results` says how a
job container exits and what it prints (written where mortar-start would write it),
`health` says what a container's health test answers, `container_files` what `cat PATH` run
in a container prints, `fail` makes one operation raise (`on_call` one operation on one target).
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mortar.agent.wire import OUTPUT_MOUNT
from mortar.engine.dockerengine import split_ref
from mortar.engine.protocol import ContainerInfo, EngineTimeout, ImageInfo, NetworkInfo, RunSpec, VolumeInfo
from mortar.errors import EngineError

_ids = itertools.count(1)


def new_id() -> str:
    return f"sha256:{next(_ids):064x}"


@dataclass
class FakeContainer:
    spec: RunSpec
    info: ContainerInfo
    restarts: int = 0


@dataclass
class FakeEngine:
    name: str = "fake"
    containers_by_name: dict[str, FakeContainer] = field(default_factory=dict)
    images_by_ref: dict[str, ImageInfo] = field(default_factory=dict)
    registry: dict[str, ImageInfo] = field(default_factory=dict)  # what pull can fetch, by ref or repo@digest
    volumes_by_name: dict[str, VolumeInfo] = field(default_factory=dict)
    volume_options: dict[str, dict[str, str]] = field(default_factory=dict)
    networks_by_name: dict[str, NetworkInfo] = field(default_factory=dict)
    # job container name -> (exit code, output); a missing one exits 0 printing nothing
    job_results: dict[str, tuple[int, str]] = field(default_factory=dict)
    # container name -> (exit code, output) of its health test; default: healthy
    health: dict[str, tuple[int, str]] = field(default_factory=dict)
    # container name -> {path: content}: what `cat PATH` prints in that container
    container_files: dict[str, dict[str, str]] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)  # containers whose wait times out
    fail: dict[str, Exception] = field(default_factory=dict)  # operation name -> error to raise
    calls: list[tuple[str, str]] = field(default_factory=list)
    created: list[RunSpec] = field(default_factory=list)  # every spec create was given, in order
    pushed: list[str] = field(default_factory=list)
    push_auth: dict[str, dict[str, str] | None] = field(default_factory=dict)  # ref -> auth it was pushed with
    ran: list[RunSpec] = field(default_factory=list)  # every spec given to run()
    on_call: Callable[[str, str], None] | None = None

    def _call(self, operation: str, target: str = "") -> None:
        self.calls.append((operation, target))
        if self.on_call is not None:
            self.on_call(operation, target)
        if operation in self.fail:
            raise self.fail[operation]

    def changes(self) -> list[tuple[str, str]]:
        """The calls that change something (not lookups)."""
        reads = {"ping", "info", "containers", "container", "image", "images", "volumes", "volume", "network",
                 "logs", "exec", "registry_digest"}
        return [c for c in self.calls if c[0] not in reads]

    # ---- test set-up helpers -------------------------------------------------------------
    def add_image(self, ref: str, labels: dict[str, str] | None = None, digest: str = "") -> ImageInfo:
        repository = ref.rsplit(":", 1)[0]
        image = ImageInfo(new_id(), [], dict(labels or {}), [f"{repository}@{digest}"] if digest else [], 1000)
        self._move_tag(ref, image)
        return image

    def _move_tag(self, ref: str, image: ImageInfo) -> None:
        # As in an engine: a tag names one image; giving it to another takes it from the first.
        previous = self.images_by_ref.get(ref)
        if previous is not None and ref in previous.tags:
            previous.tags.remove(ref)
        self.images_by_ref[ref] = image
        if ref not in image.tags:
            image.tags.append(ref)

    # ---- the Engine protocol --------------------------------------------------------------
    def ping(self) -> None:
        self._call("ping")

    def info(self) -> dict[str, Any]:
        self._call("info")
        return {"RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"]}}

    def containers(self, labels: dict[str, str | None] | None = None, network: str = "") -> list[ContainerInfo]:
        self._call("containers")
        found = []
        for c in self.containers_by_name.values():
            if labels and not all(k in c.info.labels and (v is None or c.info.labels[k] == v)
                                  for k, v in labels.items()):
                continue
            if network and c.spec.network != network:
                continue
            found.append(c.info)
        return found

    def container(self, name: str) -> ContainerInfo | None:
        self._call("container", name)
        c = self.containers_by_name.get(name)
        return c.info if c else None

    def create(self, spec: RunSpec) -> str:
        self._call("create", spec.name)
        if spec.name in self.containers_by_name:
            raise EngineError(f"create container {spec.name}: name already in use")
        image = self.image(spec.image)
        if image is None:
            raise EngineError(f"create container {spec.name}: no such image {spec.image}")
        info = ContainerInfo(spec.name, new_id(), "created", image.id, dict(spec.labels), address=spec.address)
        self.created.append(spec)
        self.containers_by_name[spec.name] = FakeContainer(spec, info)
        for mount in spec.mounts:
            if mount.kind == "volume" and mount.source not in self.volumes_by_name:
                self.volumes_by_name[mount.source] = VolumeInfo(mount.source, {}, _now())
        return info.id

    def _get(self, operation: str, name: str) -> FakeContainer:
        self._call(operation, name)
        if name not in self.containers_by_name:
            raise EngineError(f"{operation} container {name}: no such container")
        return self.containers_by_name[name]

    def start(self, name: str) -> None:
        c = self._get("start", name)
        c.info.status = "running"
        c.info.started_at = _now()
        if c.info.labels.get("org.mortar.purpose") == "job":
            code, output = self.job_results.get(name, (0, ""))
            for mount in c.spec.mounts:
                if mount.target == OUTPUT_MOUNT:
                    with open(Path(mount.source) / "output.log", "a") as out:
                        out.write(output)
            if name not in self.hang:
                c.info.status, c.info.exit_code = "exited", code
        else:
            self._probe(c)

    def stop(self, name: str, timeout: int = 10) -> None:
        self._get("stop", name).info.status = "exited"

    def restart(self, name: str, timeout: int = 10) -> None:
        c = self._get("restart", name)
        c.info.status = "running"
        c.info.started_at = _now()
        c.restarts += 1
        self._probe(c)

    def _probe(self, c: FakeContainer) -> None:
        # What the engine's own health test reports once a (re)started container ran it.
        if c.spec.health is not None:
            code, output = self.health.get(c.spec.name, (0, ""))
            c.info.health, c.info.health_output = ("healthy" if code == 0 else "unhealthy"), output

    def remove(self, name: str) -> bool:
        self._call("remove", name)
        return self.containers_by_name.pop(name, None) is not None

    def wait(self, name: str, timeout: float) -> int:
        c = self._get("wait", name)
        if name in self.hang:
            raise EngineTimeout(f"wait for container {name}: the engine did not answer in time")
        return c.info.exit_code

    def logs(self, name: str, tail: int | None = None) -> str:
        self._call("logs", name)
        return ""

    def exec(self, name: str, command: list[str], user: str = "root") -> tuple[int, str]:
        self._get("exec", name)
        if len(command) == 2 and command[0] == "cat":
            content = self.container_files.get(name, {}).get(command[1])
            return (0, content) if content is not None else (1, f"cat: {command[1]}: No such file or directory\n")
        return self.health.get(name, (0, "healthy: fake"))

    def put_archive(self, name: str, path: str, data: bytes) -> None:
        self._get("put_archive", name)

    def run(self, spec: RunSpec, timeout: float = 600) -> tuple[int, str]:
        self._call("run", spec.name)
        if self.image(spec.image) is None:
            raise EngineError(f"create container {spec.name}: no such image {spec.image}")
        self.ran.append(spec)
        return self.job_results.get(spec.name, (0, ""))

    def image(self, ref: str) -> ImageInfo | None:
        self._call("image", ref)
        if ref in self.images_by_ref:
            return self.images_by_ref[ref]
        return next((i for i in self.images_by_ref.values() if i.id == ref), None)

    def images(self, labels: dict[str, str | None] | None = None) -> list[ImageInfo]:
        self._call("images")
        unique = {i.id: i for i in self.images_by_ref.values()}
        return [i for i in unique.values()
                if not labels or all(k in i.labels and (v is None or i.labels[k] == v) for k, v in labels.items())]

    def pull(self, ref: str, auth: dict[str, str] | None = None) -> ImageInfo:
        self._call("pull", ref)
        if ref not in self.registry:
            raise EngineError(f"pull {ref}: not found")
        image = self.registry[ref]
        if "@" in ref:
            self.images_by_ref[ref] = image
        else:
            self._move_tag(ref, image)
        return image

    def push(self, ref: str, auth: dict[str, str] | None = None) -> str:
        """The registry's digest: the same for the same image, whatever its tag."""
        self._call("push", ref)
        image = self.images_by_ref.get(ref)
        if image is None:
            raise EngineError(f"push {ref}: An image does not exist locally with the tag")
        self.pushed.append(ref)
        self.push_auth[ref] = auth
        digest = "sha256:" + hashlib.sha256(image.id.encode()).hexdigest()
        by_digest = f"{split_ref(ref)[0]}@{digest}"
        if by_digest not in image.repo_digests:
            image.repo_digests.append(by_digest)
        self.registry[ref] = self.registry[by_digest] = image
        return digest

    def tag(self, image: str, ref: str) -> None:
        self._call("tag", ref)
        found = self.image(image)
        if found is None:
            raise EngineError(f"tag {ref}: no image {image}")
        self._move_tag(ref, found)

    def untag(self, ref: str) -> None:
        self._call("untag", ref)
        image = self.images_by_ref.pop(ref, None)
        if image is not None and ref in image.tags:
            image.tags.remove(ref)

    def build(self, context: IO[bytes], tag: str, labels: dict[str, str], nocache: bool,
              output: Callable[[str], None]) -> str:
        self._call("build", tag)
        output(f"built {tag}\n")
        return self.add_image(tag, labels).id

    def import_image(self, archive: str, repository: str, tag: str, changes: list[str]) -> str:
        self._call("import_image", f"{repository}:{tag}")
        return self.add_image(f"{repository}:{tag}").id

    def registry_digest(self, ref: str, auth: dict[str, str] | None = None) -> str | None:
        self._call("registry_digest", ref)
        image = self.registry.get(ref)
        if image is None:
            return None
        return next((d.split("@", 1)[1] for d in image.repo_digests), "sha256:" + "e" * 64)

    def volumes(self, labels: dict[str, str | None] | None = None) -> list[VolumeInfo]:
        self._call("volumes")
        return [v for v in self.volumes_by_name.values()
                if not labels or all(k in v.labels and (val is None or v.labels[k] == val)
                                     for k, val in labels.items())]

    def volume(self, name: str) -> VolumeInfo | None:
        self._call("volume", name)
        return self.volumes_by_name.get(name)

    def create_volume(self, name: str, labels: dict[str, str], options: dict[str, str] | None = None) -> VolumeInfo:
        self._call("create_volume", name)
        if options:
            self.volume_options[name] = dict(options)
        if name not in self.volumes_by_name:
            self.volumes_by_name[name] = VolumeInfo(name, dict(labels), _now())
        return self.volumes_by_name[name]

    def remove_volume(self, name: str) -> bool:
        self._call("remove_volume", name)
        return self.volumes_by_name.pop(name, None) is not None

    def network(self, name: str) -> NetworkInfo | None:
        self._call("network", name)
        return self.networks_by_name.get(name)

    def create_network(self, name: str, subnet: str, gateway: str, bridge: str, labels: dict[str, str]) -> None:
        self._call("create_network", name)
        self.networks_by_name[name] = NetworkInfo(name, dict(labels), [(subnet, gateway)])

    def remove_network(self, name: str) -> bool:
        self._call("remove_network", name)
        return self.networks_by_name.pop(name, None) is not None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S") + f".{time.time_ns() % 1_000_000_000:09d}Z"


def refuse_engine_connections(monkeypatch: Any) -> None:
    """Connecting to this machine's engine fails as when none runs: a unit test never reaches it."""
    from mortar.engine.dockerengine import SETUP_FIX, DockerEngine

    def refuse(cls: type, timeout: int = 600) -> DockerEngine:
        raise EngineError("the Docker Engine does not answer (unit tests reach no engine)", fix=SETUP_FIX)

    monkeypatch.setattr(DockerEngine, "connect", classmethod(refuse))
