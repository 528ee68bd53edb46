"""Converge one host's containers and volumes: facts -> actions (each with its reasons) -> apply.

A container is recreated only when its image, its definition or one of its rendered files
changed (its config hash, a label); started when stopped; restarted when it runs but its
own healthcheck says it does not serve. Anything of this site that is no longer desired is
removed, and a removal that fails is a failure, never "removed".
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Callable
from pathlib import Path

from mortar.agent import facts as F
from mortar.agent.errors import StepError
from mortar.agent.health import wait_healthy
from mortar.agent.masking import redact
from mortar.agent.wire import CONFIG_MOUNT, Action, Container, HostState, ServiceState
from mortar.engine.dockerengine import split_ref
from mortar.engine.protocol import Engine, Health, Mount, RunSpec
from mortar.files import inside, private_directory, write_private

Progress = Callable[[str], None]


def config_dir(state_dir: Path, name: str) -> Path:
    return inside(state_dir / "config", name, "container name")


def write_config_dir(directory: Path, files: dict[str, str]) -> None:
    """Replace a container's rendered files (root only: they hold secrets)."""
    private_directory(directory)
    for existing in directory.iterdir():
        if existing.name not in files and existing.is_file():
            existing.unlink()
    for name, content in files.items():
        path = inside(directory, name, "file name")
        if path.is_file() and path.read_text(errors="replace") == content:
            continue
        write_private(path, content)


UNMASKED_PATHS = "systempaths=unconfined"


def make_mount_sources(container: Container) -> None:
    """A host path a container shares with others (a socket folder) is made when missing: the
    engine refuses to bind a path that does not exist."""
    for mount in container.mounts:
        Path(mount.source).mkdir(parents=True, exist_ok=True)


def run_spec(container: Container, files_dir: Path, labels: dict[str, str]) -> RunSpec:
    """The engine's view of a container: mortar's start program reads the mounted files."""
    mounts = [Mount(CONFIG_MOUNT, str(files_dir), "bind", read_only=True)]
    for entry in container.volumes:
        source, target, *mode = entry.split(":")
        mounts.append(Mount(target, source, "volume", read_only=bool(mode and mode[0] == "ro")))
    for mount in container.mounts:
        mounts.append(Mount(mount.target, mount.source, "bind", mount.read_only, mount.propagation))
    health = None
    if container.healthcheck is not None:
        h = container.healthcheck
        health = Health(h.test, h.every(), h.timeout, h.retries, h.start_period)
    return RunSpec(
        name=container.name, image=container.image, labels=labels, mounts=mounts, tmpfs=list(container.tmpfs),
        cap_add=list(container.cap_add), cap_drop=list(container.cap_drop), devices=list(container.devices),
        # `systempaths=unconfined` is the engine's flag, not a security option it is sent as.
        security_opt=[o for o in container.security_opt if o != UNMASKED_PATHS],
        unmasked_paths=UNMASKED_PATHS in container.security_opt, pid_mode=container.pid_mode,
        ipc_mode=container.ipc_mode,
        ulimits={k: (v[0], v[-1]) for k, v in container.ulimits.items()}, sysctls=dict(container.sysctls),
        health=health, restart="unless-stopped", stop_timeout=container.stop_timeout)


def container_labels(host: HostState, container: Container, data: dict[str, str]) -> dict[str, str]:
    return {F.MANAGED: "1", F.SITE: host.site, F.SERVICE: container.service, F.CONTAINER: container.name,
            F.HASH: container.config_hash, F.DEFINITION: json.dumps(container.definition(), sort_keys=True),
            F.DATA: json.dumps(data, sort_keys=True)}


# ---- plan --------------------------------------------------------------------------------

def image_reasons(host: HostState, ref: str, facts: F.Facts) -> list[str]:
    """Why REF must be pulled on this host ([] when the local image is the right one)."""
    image = facts.images.get(ref)
    if image is None:
        return ["image not on the host"]
    pin = host.image_pins.get(ref)
    if pin and f"{split_ref(ref)[0]}@{pin}" not in image.repo_digests:
        return [f"local image is not the one pushed ({pin[:19]}…)"]
    return []


def container_reasons(container: Container, running, facts: F.Facts, files_dir: Path,
                      secrets: list[str]) -> tuple[list[str], str]:
    """Why a running container must be recreated ([] when it need not), and a masked diff."""
    reasons: list[str] = []
    image = facts.images.get(container.image)
    if image is None:
        reasons.append(f"image {container.image} is to be pulled")
    elif running.image_id != image.id:
        reasons.append(f"image {container.image} changed")
    if running.labels.get(F.HASH) == container.config_hash:
        return reasons, ""
    try:
        old = json.loads(running.labels.get(F.DEFINITION, "{}"))
    except json.JSONDecodeError:
        old = {}
    new = container.definition()
    for key in sorted(new):
        if key != "files" and old.get(key) != new[key]:
            reasons.append(f"{key} changed")
    diff = ""
    for name, meta in new["files"].items():
        if old.get("files", {}).get(name) != meta:
            reasons.append(f"{name} changed")
            path = files_dir / name
            before = path.read_text(errors="replace") if path.is_file() else ""
            after = next(f.content for f in container.files if f.name == name)
            lines = difflib.unified_diff(before.splitlines(), after.splitlines(), f"{name} (running)",
                                         f"{name} (desired)", n=1, lineterm="")
            diff += redact("\n".join(lines), secrets) + "\n"
    for name in old.get("files", {}):
        if name not in new["files"]:
            reasons.append(f"{name} removed")
    return reasons or ["definition changed"], diff


def plan_service(host: HostState, service: ServiceState, facts: F.Facts, state_dir: Path) -> list[Action]:
    actions: list[Action] = []
    for volume in service.volumes:
        if volume not in facts.volumes:
            actions.append(Action("volume", host.host, service.name, volume, ["missing"]))
    refs = [c.image for c in service.containers] + [j.spec.image for j in service.jobs if j.spec]
    for ref in dict.fromkeys(refs):
        why = image_reasons(host, ref, facts)
        if why:
            actions.append(Action("pull", host.host, service.name, ref, why))
    for container in service.containers:
        running = facts.containers.get(container.name)
        if running is None:
            actions.append(Action("create", host.host, service.name, container.name, ["not running"]))
            continue
        reasons, diff = container_reasons(container, running, facts, config_dir(state_dir, container.name),
                                          host.secrets)
        if reasons:
            actions.append(Action("recreate", host.host, service.name, container.name, reasons, diff))
        elif running.status != "running":
            actions.append(Action("start", host.host, service.name, container.name,
                                  [f"container is {running.status}"]))
        elif running.health == "unhealthy":
            probe = running.health_output.splitlines()[-1] if running.health_output else "no output"
            actions.append(Action("restart", host.host, service.name, container.name,
                                  [f"running but unhealthy ({redact(probe, host.secrets)[:120]})"]))
        elif running.health == "starting":
            # Started by the engine (the host came back) and not serving yet: waited for, so
            # what comes after it (registrations, the next level) finds it serving.
            actions.append(Action("wait", host.host, service.name, container.name,
                                  ["running, its healthcheck has not passed yet"]))
    return actions


def plan_removals(host: HostState, facts: F.Facts) -> list[Action]:
    wanted = {c.name for c in host.containers()}
    actions = [Action("remove", host.host, c.labels.get(F.SERVICE, "?"), name, ["no longer in the desired state"])
               for name, c in sorted(facts.containers.items()) if name not in wanted]
    actions += [Action("remove", host.host, c.labels.get(F.SERVICE, "?"), name,
                       [f"job container left by an interrupted run ({c.status})"])
                for name, c in sorted(facts.jobs.items())]
    return actions


def plan_host(host: HostState, facts: F.Facts, state_dir: Path) -> list[Action]:
    actions: list[Action] = []
    for service in host.services.values():
        actions += plan_service(host, service, facts, state_dir)
    return actions + plan_removals(host, facts)


# ---- apply -------------------------------------------------------------------------------

def registry_auth(host: HostState) -> dict[str, str] | None:
    """The credentials an engine pulls with (None: the registry needs none)."""
    auth = host.registry_auth
    if not auth:
        return None
    return {"username": auth["username"], "password": auth["password"], "serveraddress": auth["registry"]}


def pull(engine: Engine, host: HostState, ref: str) -> None:
    """Pull REF; when mortar recorded the digest it pushed, pull exactly that and tag it."""
    auth = registry_auth(host)
    pin = host.image_pins.get(ref)
    try:
        if pin:
            pinned = f"{split_ref(ref)[0]}@{pin}"
            image = engine.pull(pinned, auth)
            engine.tag(image.id, ref)
        else:
            engine.pull(ref, auth)
    except Exception as exc:
        registry = ref.split("/")[0]
        if pin:
            fix = (f"the registry no longer has the image mortar pushed as {ref}: push it again with "
                   "`mortar build --push`")
        elif "." in registry or ":" in registry or registry == "localhost":
            fix = "push it there with `mortar build --push` and check that the host trusts the registry"
        else:
            fix = "build it with `mortar build`, or set docker_registry and push there"
        raise StepError(f"image {ref} is not on the host and cannot be pulled ({exc})", target=ref,
                        fix=fix) from None


def ensure_volume(engine: Engine, host: HostState, name: str, service: str) -> str:
    """The volume's data id (a new volume gets a new one)."""
    volume = engine.create_volume(name, {F.MANAGED: "1", F.SITE: host.site, F.SERVICE: service,
                                         F.DATA_ID: F.new_data_id()}, host.volume_options.get(name))
    return F.data_id(volume)


def remove_container(engine: Engine, name: str, service: str = "") -> None:
    try:
        engine.remove(name)
    except Exception as exc:
        raise StepError(f"could not remove container {name}: {exc}", service=service, target=name,
                        fix=f"remove it by hand (`docker rm -f {name}`) and run the command again") from None
    if engine.container(name) is not None:
        raise StepError(f"container {name} is still there after its removal", service=service, target=name,
                        fix=f"see `docker inspect {name}`, remove it by hand and run the command again")


def start_container(engine: Engine, host: HostState, container: Container, state_dir: Path,
                    known: dict[str, str]) -> None:
    files_dir = config_dir(state_dir, container.name)
    write_config_dir(files_dir, container.rendered_files())
    data = F.current_data(engine, host.host, container.data, known)
    make_mount_sources(container)
    engine.create(run_spec(container, files_dir, container_labels(host, container, data)))
    engine.start(container.name)


def converge_service(engine: Engine, host: HostState, service: ServiceState, actions: list[Action],
                     facts: F.Facts, state_dir: Path, progress: Progress, recreate: list[str] | None = None,
                     known: dict[str, str] | None = None) -> dict[str, str]:
    """Volumes, then containers; waits until each started container serves. RECREATE names
    containers the controller found on data that is no longer there. Returns new data ids."""
    todo = {(a.kind, a.target): a for a in actions}
    for name in recreate or []:
        if name in facts.containers and ("recreate", name) not in todo:
            todo[("recreate", name)] = Action("recreate", host.host, service.name, name, ["its data is new"])
    created: dict[str, str] = {}
    for volume in service.volumes:
        if ("volume", volume) in todo:
            created[volume] = ensure_volume(engine, host, volume, service.name)
    started = []
    restarted: set[str] = set()
    for container in service.containers:
        running = facts.containers.get(container.name)
        if ("recreate", container.name) in todo and running is not None:
            progress(f"recreate {container.name}")
            # A clean stop first: databases and queues flush before the container goes.
            try:
                engine.stop(container.name, timeout=container.stop_timeout)
            except Exception as exc:  # noqa: BLE001 - the removal below decides
                progress(f"stop {container.name} failed ({exc}); removing it")
            remove_container(engine, container.name, service.name)
            held_stopped(container, progress)
            restarted.add(container.name)
            running = None
        if running is None:
            if ("recreate", container.name) not in todo:
                progress(f"create {container.name}")
            start_container(engine, host, container, state_dir, known or {})
            started.append(container)
        elif ("start", container.name) in todo:
            progress(f"start {container.name}")
            engine.start(container.name)
            started.append(container)
        elif ("restart", container.name) in todo:
            progress(f"restart {container.name} ({todo[('restart', container.name)].reasons[0]})")
            if container.drain:
                engine.stop(container.name, timeout=container.stop_timeout)
                held_stopped(container, progress)
                engine.start(container.name)
            else:
                engine.restart(container.name, timeout=container.stop_timeout)
            restarted.add(container.name)
            started.append(container)
        elif ("wait", container.name) in todo:
            progress(f"wait for {container.name} (its healthcheck has not passed yet)")
            started.append(container)
    for container in started:
        seconds = wait_healthy(engine, container, host.health_timeout, host.secrets)
        progress(f"{container.name} healthy ({seconds:.1f}s)")
    # The load balancers put what restarted back once their checks pass: before another host's goes.
    settle = max((c.drain for c in started if c.name in restarted), default=0)
    if settle:
        time.sleep(settle)
    return created


def held_stopped(container: Container, progress: Progress) -> None:
    """Keep a stopped container the load balancer spreads over several hosts down until every
    load balancer has taken it out: a server that listens again before its application is
    loaded would otherwise be sent requests that wait on it."""
    if container.drain:
        progress(f"{container.name} held stopped {container.drain}s (the load balancers take it out first)")
        time.sleep(container.drain)
