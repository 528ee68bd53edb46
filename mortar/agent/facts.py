"""What a host has, observed from its engine: containers, volumes, images, job records.

Facts are gathered once per step and never remembered between runs: the only thing kept on
the host is what no engine can tell (which job ran with which inputs on which data).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mortar.agent.health import probe
from mortar.agent.wire import LABEL_PREFIX, Container, HostState
from mortar.engine.protocol import ContainerInfo, Engine, ImageInfo, VolumeInfo
from mortar.errors import EngineError, MortarError
from mortar.records import RecordStore

MANAGED = LABEL_PREFIX + "managed"
SITE = LABEL_PREFIX + "site"
SERVICE = LABEL_PREFIX + "service"
CONTAINER = LABEL_PREFIX + "container"
HASH = LABEL_PREFIX + "config-hash"
DEFINITION = LABEL_PREFIX + "definition"
PURPOSE = LABEL_PREFIX + "purpose"
JOB = LABEL_PREFIX + "job"
DATA_ID = LABEL_PREFIX + "data-id"
DATA = LABEL_PREFIX + "data"  # on a container: the data ids it started on


@dataclass
class Facts:
    containers: dict[str, ContainerInfo]  # this site's service containers, by name
    jobs: dict[str, ContainerInfo]  # job containers left behind (an interrupted run), by name
    volumes: dict[str, VolumeInfo]  # every volume on the engine, by name
    images: dict[str, ImageInfo | None]  # every image ref the host state names
    records: dict[str, Any] = field(default_factory=dict)  # job -> what it last ran with


def records_store(state_dir: Path) -> RecordStore:
    return RecordStore(state_dir / "records.json")


def data_id(volume: VolumeInfo) -> str:
    """Who this volume's data is: a new volume (lost and made again) is a new id."""
    return volume.labels.get(DATA_ID) or f"{volume.name}@{volume.created_at}"


def new_data_id() -> str:
    return uuid.uuid4().hex


def current_data(engine: Engine, host: str, keys: list[str], known: dict[str, str]) -> dict[str, str]:
    """The data ids of KEYS ("host/volume"): this host's own volumes looked up, others' as KNOWN."""
    found: dict[str, str] = {}
    for key in keys:
        owner, _, name = key.partition("/")
        if owner == host:
            volume = engine.volume(name)
            if volume is not None:
                found[key] = data_id(volume)
        elif key in known:
            found[key] = known[key]
    return found


def started_on(container: ContainerInfo) -> dict[str, str] | None:
    """The data ids a container started on (None: it carries no such label)."""
    import json

    text = container.labels.get(DATA)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else None


def probed_again(engine: Engine, seen: ContainerInfo, container: Container) -> ContainerInfo:
    """SEEN with its health probed now. The engine's "unhealthy" is only as fresh as its last
    probe: a container that failed while a service it uses was down (a dashboard while its
    cache was frozen) serves again as soon as that service is back, and is not restarted."""
    try:
        code, output = probe(engine, container)
    except EngineError:
        return seen
    if code != 0:
        return replace(seen, health_output=output.strip() or f"probe exited {code}")
    return replace(seen, health="healthy", health_output=output.strip())


def gather(engine: Engine, host: HostState, state_dir: Path) -> Facts:
    managed = engine.containers({MANAGED: None})
    foreign = sorted({c.labels.get(SITE, "?") for c in managed} - {host.site})
    if foreign:
        raise MortarError(f"{host.host}: the engine already runs another mortar deployment (site {foreign[0]})",
                          fix="run mortar with that deployment's config directory, or destroy it first")
    containers = {c.name: c for c in managed if c.labels.get(PURPOSE) != "job"}
    for container in host.containers():
        seen = containers.get(container.name)
        if seen is not None and seen.health in ("unhealthy", "starting") and container.healthcheck is not None:
            containers[container.name] = probed_again(engine, seen, container)
    jobs = {c.name: c for c in managed if c.labels.get(PURPOSE) == "job"}
    volumes = {v.name: v for v in engine.volumes()}
    images = {ref: engine.image(ref) for ref in host.images()}
    records = records_store(state_dir).get("jobs", default={})
    return Facts(containers, jobs, volumes, images, records)
