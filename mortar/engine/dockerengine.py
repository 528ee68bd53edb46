"""The Docker Engine behind mortar's `Engine` seam, through the docker SDK's low-level API.

Every SDK and transport error becomes an EngineError naming what was being done; a missing
object is None (or False), never an exception the caller has to know the SDK for.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from mortar.engine.protocol import (
    ContainerInfo,
    EngineTimeout,
    ImageInfo,
    NetworkInfo,
    RunSpec,
    VolumeInfo,
)
from mortar.errors import EngineError

SECOND = 1_000_000_000
SETUP_FIX = "run `mortar engine setup` (as root) to install and start it"


class _Missing(Exception):
    """The object asked for does not exist."""


@contextmanager
def _translated(what: str) -> Iterator[None]:
    import docker.errors
    import requests.exceptions

    try:
        yield
    except docker.errors.NotFound as exc:
        raise _Missing(str(exc)) from exc
    except docker.errors.APIError as exc:
        raise EngineError(f"{what}: {exc.explanation or exc}") from None
    except docker.errors.DockerException as exc:
        raise EngineError(f"{what}: {exc}") from None
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectTimeout) as exc:
        raise EngineTimeout(f"{what}: the engine did not answer in time ({exc.__class__.__name__})",
                            fix="check the engine (`docker info`) and run the command again") from None
    except requests.exceptions.ConnectionError as exc:
        if "timed out" in str(exc):  # urllib3's read timeout, as some versions raise it
            raise EngineTimeout(f"{what}: the engine did not answer in time",
                                fix="check the engine (`docker info`) and run the command again") from None
        raise EngineError(f"{what}: the engine does not answer ({_first_line(exc)})", fix=SETUP_FIX) from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def _label_filter(labels: dict[str, str | None] | None) -> dict[str, list[str]]:
    if not labels:
        return {}
    return {"label": [key if value is None else f"{key}={value}" for key, value in labels.items()]}


def _container_info(attrs: dict[str, Any]) -> ContainerInfo:
    state = attrs.get("State") or {}
    health = state.get("Health") or {}
    probes = health.get("Log") or []
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    # The fixed address (kept while the container is stopped), else the one it was given.
    address = next((a for n in networks.values()
                    if (a := (n.get("IPAMConfig") or {}).get("IPv4Address") or n.get("IPAddress"))), "")
    return ContainerInfo(
        name=attrs.get("Name", "").lstrip("/"), id=attrs.get("Id", ""), status=state.get("Status", ""),
        image_id=attrs.get("Image", ""), labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
        health=health.get("Status", ""), health_output=(probes[-1].get("Output", "") if probes else "").strip(),
        restart_count=int(attrs.get("RestartCount") or 0), exit_code=int(state.get("ExitCode") or 0),
        started_at=state.get("StartedAt", ""), address=address or "")


def _image_info(attrs: dict[str, Any]) -> ImageInfo:
    return ImageInfo(id=attrs.get("Id", ""), tags=list(attrs.get("RepoTags") or []),
                     labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
                     repo_digests=list(attrs.get("RepoDigests") or []), size=int(attrs.get("Size") or 0))


def split_ref(ref: str) -> tuple[str, str]:
    """'reg:4000/ns/name:tag' -> ('reg:4000/ns/name', 'tag'); digests ('@sha256:…') stay whole."""
    if "@" in ref:
        repository, digest = ref.split("@", 1)
        return repository, digest
    name, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return ref, "latest"


class DockerEngine:
    """mortar's Engine over docker-py's APIClient."""

    name = "docker"

    def __init__(self, api) -> None:
        self.api = api

    @classmethod
    def connect(cls, timeout: int = 600) -> DockerEngine:
        import docker

        # DOCKER_HOST as the docker CLI reads it: tests point it at no engine at all.
        base_url = os.environ.get("DOCKER_HOST") or docker.constants.DEFAULT_UNIX_SOCKET
        try:
            api = docker.APIClient(base_url=base_url, timeout=timeout, version="auto")
        except Exception as exc:  # noqa: BLE001 - any failure to connect is the same to the operator
            raise EngineError(f"the Docker Engine does not answer ({_first_line(exc)})", fix=SETUP_FIX) from None
        engine = cls(api)
        engine.ping()
        return engine

    def ping(self) -> None:
        try:
            with _translated("ping"):
                self.api.ping()
        except _Missing as exc:
            raise EngineError(f"the Docker Engine does not answer ({exc})", fix=SETUP_FIX) from None

    def info(self) -> dict[str, Any]:
        with _translated("engine info"):
            return dict(self.api.info())

    # ---- containers -------------------------------------------------------------------
    def containers(self, labels: dict[str, str | None] | None = None, network: str = "") -> list[ContainerInfo]:
        filters = _label_filter(labels)
        if network:
            filters["network"] = [network]
        with _translated("list containers"):
            listed = self.api.containers(all=True, filters=filters)
        found = []
        for entry in listed:
            try:
                with _translated("inspect container"):
                    found.append(_container_info(self.api.inspect_container(entry["Id"])))
            except _Missing:
                continue  # removed between the list and the inspect
        return found

    def container(self, name: str) -> ContainerInfo | None:
        try:
            with _translated(f"inspect container {name}"):
                return _container_info(self.api.inspect_container(name))
        except _Missing:
            return None

    def create(self, spec: RunSpec) -> str:
        from docker.types import LogConfig, Mount, Ulimit

        api = self.api
        mounts = [Mount(m.target, m.source or None, type=m.kind, read_only=m.read_only,
                        propagation=m.propagation or None) for m in spec.mounts]
        network_mode = spec.network if spec.network in ("host", "none") else spec.network
        log_config = (LogConfig(type="json-file", config={"max-size": "50m", "max-file": "2"}) if spec.logs
                      else LogConfig(type="none"))
        host_config = api.create_host_config(
            network_mode=network_mode, mounts=mounts or None, tmpfs={t: "" for t in spec.tmpfs} or None,
            cap_add=spec.cap_add or None, cap_drop=spec.cap_drop or None, devices=spec.devices or None,
            device_cgroup_rules=spec.device_cgroup_rules or None, security_opt=spec.security_opt or None,
            cgroupns=spec.cgroupns or None, pid_mode=spec.pid_mode or None, ipc_mode=spec.ipc_mode or None,
            ulimits=[Ulimit(name=k, soft=v[0], hard=v[1]) for k, v in spec.ulimits.items()] or None,
            sysctls=spec.sysctls or None, log_config=log_config, extra_hosts=spec.extra_hosts or None,
            restart_policy={"Name": spec.restart} if spec.restart != "no" else None)
        if spec.unmasked_paths:
            # What the docker CLI sends for `--security-opt systempaths=unconfined`.
            host_config.update(MaskedPaths=[], ReadonlyPaths=[])
        networking = None
        if spec.address:
            networking = api.create_networking_config({spec.network: api.create_endpoint_config(
                ipv4_address=spec.address)})
        healthcheck = None
        if spec.health is not None:
            healthcheck = {"test": ["CMD-SHELL", spec.health.test], "interval": int(spec.health.interval * SECOND),
                           "timeout": int(spec.health.timeout * SECOND), "retries": spec.health.retries,
                           "start_period": int(spec.health.start_period * SECOND)}
        with _translated(f"create container {spec.name}"):
            created = api.create_container(
                spec.image, command=spec.command, entrypoint=spec.entrypoint, user=spec.user or None,
                hostname=spec.hostname or None, name=spec.name, labels=spec.labels, detach=True,
                environment=spec.environment or None, host_config=host_config, networking_config=networking,
                healthcheck=healthcheck, stop_signal="SIGTERM", stop_timeout=spec.stop_timeout)
        return str(created["Id"])

    def _on_container(self, what: str, name: str, call: Callable[[], Any]) -> Any:
        try:
            with _translated(f"{what} container {name}"):
                return call()
        except _Missing:
            raise EngineError(f"{what} container {name}: no such container") from None

    def start(self, name: str) -> None:
        self._on_container("start", name, lambda: self.api.start(name))

    def stop(self, name: str, timeout: int = 10) -> None:
        self._on_container("stop", name, lambda: self.api.stop(name, timeout=timeout))

    def restart(self, name: str, timeout: int = 10) -> None:
        self._on_container("restart", name, lambda: self.api.restart(name, timeout=timeout))

    def remove(self, name: str) -> bool:
        try:
            with _translated(f"remove container {name}"):
                self.api.remove_container(name, force=True, v=False)
            return True
        except _Missing:
            return False

    def wait(self, name: str, timeout: float) -> int:
        result = self._on_container("wait for", name, lambda: self.api.wait(name, timeout=timeout))
        return int(result.get("StatusCode", -1))

    def logs(self, name: str, tail: int | None = None) -> str:
        try:
            with _translated(f"logs of container {name}"):
                data = self.api.logs(name, stdout=True, stderr=True, tail=tail if tail is not None else "all")
        except _Missing:
            return ""
        return data.decode(errors="replace") if isinstance(data, bytes) else str(data)

    def exec(self, name: str, command: list[str], user: str = "root") -> tuple[int, str]:
        """Exit code and output of COMMAND run in the container. A container that is not running,
        or that stops while the command runs (the engine then forgets the command: inspecting it
        is a 404), gives exit code -1 and says so; only a missing container is an error."""
        import docker.errors

        def create() -> str | None:
            try:
                return str(self.api.exec_create(name, command, user=user, stdout=True, stderr=True)["Id"])
            except docker.errors.APIError as exc:
                if exc.status_code == 409:  # restarting, paused or stopped
                    return None
                raise

        created = self._on_container("exec in", name, create)
        if created is None:
            return -1, f"container {name} is not running"
        try:
            with _translated(f"exec in container {name}"):
                output = self.api.exec_start(created)
                code = self.api.exec_inspect(created).get("ExitCode")
        except _Missing:
            return -1, f"container {name} stopped while the command ran"
        return int(code if code is not None else -1), output.decode(errors="replace")

    def put_archive(self, name: str, path: str, data: bytes) -> None:
        self._on_container("copy into", name, lambda: self.api.put_archive(name, path, data))

    def run(self, spec: RunSpec, timeout: float = 600) -> tuple[int, str]:
        self.remove(spec.name)
        self.create(spec)
        try:
            self.start(spec.name)
            code = self.wait(spec.name, timeout)
            return code, self.logs(spec.name)
        finally:
            self.remove(spec.name)

    # ---- images -----------------------------------------------------------------------
    def image(self, ref: str) -> ImageInfo | None:
        try:
            with _translated(f"inspect image {ref}"):
                return _image_info(self.api.inspect_image(ref))
        except _Missing:
            return None

    def images(self, labels: dict[str, str | None] | None = None) -> list[ImageInfo]:
        with _translated("list images"):
            listed = self.api.images(filters=_label_filter(labels))
        return [ImageInfo(id=i["Id"], tags=list(i.get("RepoTags") or []), labels=dict(i.get("Labels") or {}),
                          repo_digests=list(i.get("RepoDigests") or []), size=int(i.get("Size") or 0))
                for i in listed]

    def _stream(self, what: str, chunks) -> list[dict[str, Any]]:
        seen = []
        for chunk in chunks:
            if "error" in chunk:
                raise EngineError(f"{what}: {str(chunk['error']).strip()}")
            seen.append(chunk)
        return seen

    def pull(self, ref: str, auth: dict[str, str] | None = None) -> ImageInfo:
        repository, tag = split_ref(ref)
        try:
            with _translated(f"pull {ref}"):
                self._stream(f"pull {ref}", self.api.pull(repository, tag=tag, stream=True, decode=True,
                                                          auth_config=auth))
        except _Missing as exc:
            raise EngineError(f"pull {ref}: not in the registry ({exc})") from None
        found = self.image(ref)
        if found is None:
            raise EngineError(f"pull {ref}: the engine reported success but has no such image")
        return found

    def push(self, ref: str, auth: dict[str, str] | None = None) -> str:
        repository, tag = split_ref(ref)
        try:
            with _translated(f"push {ref}"):
                chunks = self._stream(f"push {ref}", self.api.push(repository, tag=tag, stream=True, decode=True,
                                                                    auth_config=auth))
        except _Missing as exc:
            raise EngineError(f"push {ref}: {exc}") from None
        digests = [c["aux"]["Digest"] for c in chunks if isinstance(c.get("aux"), dict) and "Digest" in c["aux"]]
        return digests[-1] if digests else ""

    def tag(self, image: str, ref: str) -> None:
        repository, tag = split_ref(ref)
        try:
            with _translated(f"tag {image} as {ref}"):
                self.api.tag(image, repository, tag)
        except _Missing:
            raise EngineError(f"tag {ref}: no image {image}") from None

    def untag(self, ref: str) -> None:
        try:
            with _translated(f"remove image {ref}"):
                self.api.remove_image(ref, noprune=False)
        except _Missing:
            pass

    def build(self, context: IO[bytes], tag: str, labels: dict[str, str], nocache: bool,
              output: Callable[[str], None]) -> str:
        image_id = ""
        try:
            with _translated(f"build {tag}"):
                for chunk in self.api.build(fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True,
                                            network_mode="host", nocache=nocache, pull=False, labels=labels,
                                            decode=True):
                    if "stream" in chunk:
                        output(chunk["stream"])
                    if "error" in chunk:
                        output(str(chunk["error"]) + "\n")
                        raise EngineError(str(chunk["error"]).strip())
                    if isinstance(chunk.get("aux"), dict) and "ID" in chunk["aux"]:
                        image_id = chunk["aux"]["ID"]
        except _Missing as exc:
            raise EngineError(f"build {tag}: {exc}") from None
        found = self.image(image_id or tag)
        if found is None:
            raise EngineError(f"build {tag}: the engine reported success but has no such image")
        return found.id

    def import_image(self, archive: str, repository: str, tag: str, changes: list[str]) -> str:
        try:
            with _translated(f"import {repository}:{tag}"):
                self.api.import_image_from_file(archive, repository=repository, tag=tag, changes=changes)
        except _Missing as exc:
            raise EngineError(f"import {repository}:{tag}: {exc}") from None
        found = self.image(f"{repository}:{tag}")
        if found is None:
            raise EngineError(f"import {repository}:{tag}: the engine has no such image afterwards")
        return found.id

    def registry_digest(self, ref: str, auth: dict[str, str] | None = None) -> str | None:
        try:
            with _translated(f"look up {ref} in its registry"):
                answer = self.api.inspect_distribution(ref, auth_config=auth)
        except (_Missing, EngineError):
            return None
        return str((answer.get("Descriptor") or {}).get("digest") or "") or None

    # ---- volumes ------------------------------------------------------------------------
    def volumes(self, labels: dict[str, str | None] | None = None) -> list[VolumeInfo]:
        with _translated("list volumes"):
            listed = self.api.volumes(filters=_label_filter(labels) or None).get("Volumes") or []
        return [VolumeInfo(v["Name"], dict(v.get("Labels") or {}), v.get("CreatedAt", "")) for v in listed]

    def volume(self, name: str) -> VolumeInfo | None:
        try:
            with _translated(f"inspect volume {name}"):
                v = self.api.inspect_volume(name)
        except _Missing:
            return None
        return VolumeInfo(v["Name"], dict(v.get("Labels") or {}), v.get("CreatedAt", ""))

    def create_volume(self, name: str, labels: dict[str, str], options: dict[str, str] | None = None) -> VolumeInfo:
        try:
            with _translated(f"create volume {name}"):
                self.api.create_volume(name=name, labels=labels, driver="local", driver_opts=options or None)
        except _Missing as exc:
            raise EngineError(f"create volume {name}: {exc}") from None
        found = self.volume(name)
        if found is None:
            raise EngineError(f"create volume {name}: the engine has no such volume afterwards")
        return found

    def remove_volume(self, name: str) -> bool:
        try:
            with _translated(f"remove volume {name}"):
                self.api.remove_volume(name, force=True)
            return True
        except _Missing:
            return False

    # ---- networks -----------------------------------------------------------------------
    def network(self, name: str) -> NetworkInfo | None:
        try:
            with _translated(f"inspect network {name}"):
                n = self.api.inspect_network(name)
        except _Missing:
            return None
        pools = [(p.get("Subnet", ""), p.get("Gateway", "")) for p in (n.get("IPAM") or {}).get("Config") or []]
        return NetworkInfo(n.get("Name", name), dict(n.get("Labels") or {}), pools)

    def create_network(self, name: str, subnet: str, gateway: str, bridge: str, labels: dict[str, str]) -> None:
        from docker.types import IPAMConfig, IPAMPool

        try:
            with _translated(f"create network {name} ({subnet})"):
                self.api.create_network(name, driver="bridge", check_duplicate=True, labels=labels,
                                        options={"com.docker.network.bridge.name": bridge},
                                        ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=subnet, gateway=gateway)]))
        except _Missing as exc:
            raise EngineError(f"create network {name}: {exc}") from None

    def remove_network(self, name: str) -> bool:
        try:
            with _translated(f"remove network {name}"):
                self.api.remove_network(name)
            return True
        except _Missing:
            return False
