"""Converge one host to its desired state on its Docker Engine.

facts (containers, volumes, job records on the host) -> plan (actions, each with reasons)
-> apply (only those actions). The local executor calls this directly; the Ansible module
runs the very same functions on remote hosts.
"""

from __future__ import annotations

import difflib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mortar.deploy.model import (
    CONFIG_MOUNT,
    LABEL_PREFIX,
    ContainerSpec,
    HostState,
    JobSpec,
    ServiceState,
    redact,
    write_config_dir,
    write_private,
)
from mortar.errors import MortarError

STATE_DIR = Path(os.environ.get("MORTAR_STATE_DIR", "/var/lib/mortar"))
# Services converge in parallel threads; the job/registration records are shared.
RECORDS_LOCK = threading.Lock()
MANAGED = LABEL_PREFIX + "managed"
HASH = LABEL_PREFIX + "config-hash"
SERVICE = LABEL_PREFIX + "service"
CONTAINER = LABEL_PREFIX + "container"
SITE = LABEL_PREFIX + "site"


@dataclass
class Action:
    kind: str  # create | recreate | start | remove | job | volume
    host: str
    service: str
    target: str
    reasons: list[str] = field(default_factory=list)
    diff: str = ""

    def line(self) -> str:
        why = f": {'; '.join(self.reasons)}" if self.reasons else ""
        return f"{self.kind:8} {self.target}{why}"


class DeployError(MortarError):
    """A step failed on a host; names host, service, container and the last log lines."""

    exit_code = 1


@dataclass
class Facts:
    containers: dict[str, Any]  # name -> docker container (managed by mortar)
    volumes: set[str]
    image_ids: dict[str, str | None]  # image ref -> id (None: missing)
    records: dict[str, Any]


def state_paths(state_dir: Path) -> dict[str, Path]:
    return {"config": state_dir / "config", "jobs": state_dir / "jobs", "records": state_dir / "records.json"}


def load_records(state_dir: Path) -> dict[str, Any]:
    path = state_paths(state_dir)["records"]
    if path.exists():
        return json.loads(path.read_text())
    return {"jobs": {}, "registrations": {}}


def save_records(state_dir: Path, records: dict[str, Any]) -> None:
    path = state_paths(state_dir)["records"]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps(records, indent=1, sort_keys=True))


def gather_facts(engine, host: HostState, state_dir: Path) -> Facts:

    containers = {c.name: c for c in engine.containers.list(all=True, filters={"label": MANAGED})}
    others = sorted({c.labels.get(SITE, "?") for c in containers.values()} - {host.site})
    if others:
        raise MortarError(f"{host.host}: the engine already runs another mortar deployment (site {others[0]})",
                          fix=f"use --config-dir {others[0]}, or destroy that deployment first")
    volumes = {v.name for v in engine.volumes.list()}
    image_ids = {ref: _image_id(engine, ref) for ref in host.images()}
    return Facts(containers, volumes, image_ids, load_records(state_dir))


def _definition_path(state_dir: Path, name: str) -> Path:
    return state_paths(state_dir)["config"] / f"{name}.definition.json"


def container_reasons(spec: ContainerSpec, existing, facts: Facts, state_dir: Path,
                      secrets: list[str]) -> tuple[list[str], str]:
    """Why an existing container must be recreated ([] when it need not), and a diff."""
    reasons: list[str] = []
    diff = ""
    image_id = facts.image_ids.get(spec.image)
    if image_id and existing.image.id != image_id:
        reasons.append(f"image {spec.image} changed")
    if existing.labels.get(HASH) == spec.config_hash:
        return reasons, diff
    old_path = _definition_path(state_dir, spec.name)
    old = json.loads(old_path.read_text()) if old_path.exists() else {}
    new = spec.definition()
    for key in sorted(new):
        if key != "files" and old.get(key) != new[key]:
            reasons.append(f"{key} changed")
    config_dir = state_paths(state_dir)["config"] / spec.name
    for name, meta in new["files"].items():
        if old.get("files", {}).get(name) != meta:
            reasons.append(f"{name} changed")
            before = (config_dir / name).read_text() if (config_dir / name).exists() else ""
            after = next(f.content for f in spec.files if f.name == name)
            lines = difflib.unified_diff(before.splitlines(), after.splitlines(), f"{name} (running)",
                                         f"{name} (desired)", n=1, lineterm="")
            diff += redact("\n".join(lines), secrets) + "\n"
    for name in old.get("files", {}):
        if name not in new["files"]:
            reasons.append(f"{name} removed")
    if not reasons:
        reasons.append("definition changed")
    return reasons, diff


def job_needed(job: JobSpec, records: dict[str, Any], image_id: str | None) -> str | None:
    recorded = records.get("jobs", {}).get(job.name)
    if recorded is None:
        return "never ran"
    if job.run == "always" and recorded == f"{job.job_hash}:{image_id}":
        return None  # planned by the caller, when anything else in the service changes
    if job.run == "once":
        return None
    if recorded != f"{job.job_hash}:{image_id}":
        return "its image or files changed"
    return None


def plan_service(host: HostState, service: ServiceState, facts: Facts, state_dir: Path,
                 secrets: list[str]) -> list[Action]:
    actions: list[Action] = []
    for volume in service.volumes:
        if volume not in facts.volumes:
            actions.append(Action("volume", host.host, service.name, volume, ["missing"]))
    for phase in ("before",):
        for job in (j for j in service.jobs if j.phase == phase):
            why = job_needed(job, facts.records, facts.image_ids.get(job.container.image))
            if why:
                actions.append(Action("job", host.host, service.name, job.name, [why]))
    for spec in service.containers:
        existing = facts.containers.get(spec.name)
        if facts.image_ids.get(spec.image) is None:
            actions.append(Action("pull", host.host, service.name, spec.image, ["image not on the host"]))
        if existing is None:
            actions.append(Action("create", host.host, service.name, spec.name, ["not running"]))
            continue
        reasons, diff = container_reasons(spec, existing, facts, state_dir, secrets)
        if reasons:
            actions.append(Action("recreate", host.host, service.name, spec.name, reasons, diff))
        elif existing.status != "running":
            actions.append(Action("start", host.host, service.name, spec.name, [f"container is {existing.status}"]))
    for job in (j for j in service.jobs if j.phase == "after"):
        why = job_needed(job, facts.records, facts.image_ids.get(job.container.image))
        if why:
            actions.append(Action("job", host.host, service.name, job.name, [why]))
    return actions


def plan_removals(host: HostState, facts: Facts) -> list[Action]:
    wanted = {c.name for c in host.containers()}
    actions = []
    for name, container in sorted(facts.containers.items()):
        if name in wanted or container.labels.get(LABEL_PREFIX + "purpose") == "job":
            continue
        service = container.labels.get(SERVICE, "?")
        actions.append(Action("remove", host.host, service, name, ["no longer in the desired state"]))
    return actions


# ---- apply -----------------------------------------------------------------------------

def docker_healthcheck(spec: ContainerSpec) -> dict[str, Any] | None:
    test = spec.healthcheck.get("test")
    if not test:
        return None
    second = 1_000_000_000
    return {"test": ["CMD-SHELL", test], "interval": int(spec.healthcheck.get("interval", 10)) * second,
            "timeout": int(spec.healthcheck.get("timeout", 10)) * second,
            "retries": int(spec.healthcheck.get("retries", 3)),
            "start_period": int(spec.healthcheck.get("start_period", 5)) * second}


def run_args(spec: ContainerSpec, config_dir: Path, labels: dict[str, str]) -> dict[str, Any]:
    volumes: dict[str, dict[str, str]] = {str(config_dir): {"bind": CONFIG_MOUNT, "mode": "ro"}}
    for entry in spec.volumes:
        source, target, *mode = entry.split(":")
        volumes[source] = {"bind": target, "mode": mode[0] if mode else "rw"}
    args: dict[str, Any] = {
        "name": spec.name, "image": spec.image, "network_mode": "host", "volumes": volumes, "labels": labels,
        "cap_add": spec.cap_add or None, "tmpfs": {t: "" for t in spec.tmpfs} or None,
        "stop_signal": "SIGTERM", "log_config": {"type": "json-file", "config": {"max-size": "50m", "max-file": "2"}},
    }
    health = docker_healthcheck(spec)
    if health:
        args["healthcheck"] = health
    return args


def ensure_volume(engine, name: str, service: str, site: str) -> None:
    engine.volumes.create(name=name, labels={MANAGED: "1", SITE: site, SERVICE: service})


def start_container(engine, spec: ContainerSpec, state_dir: Path, site: str) -> Any:
    config_dir = state_paths(state_dir)["config"] / spec.name
    write_config_dir(config_dir, spec.rendered_files())
    labels = {MANAGED: "1", SITE: site, SERVICE: spec.service, CONTAINER: spec.name, HASH: spec.config_hash}
    container = engine.containers.create(restart_policy={"Name": "unless-stopped"},
                                         **run_args(spec, config_dir, labels))
    write_private(_definition_path(state_dir, spec.name), json.dumps(spec.definition(), sort_keys=True, indent=1))
    container.start()
    return container


def logs_tail(container, lines: int = 20, secrets: list[str] | None = None) -> str:
    try:
        text = container.logs(tail=lines).decode(errors="replace")
    except Exception:  # noqa: BLE001 - the container may already be gone
        return ""
    return redact(text, secrets or [])


def wait_healthy(container, spec: ContainerSpec, host: str, timeout: float, secrets: list[str]) -> float:
    """Run the container's own health test until it passes (faster than Docker's interval)."""
    test = spec.healthcheck.get("test")
    started = time.monotonic()
    while True:
        container.reload()
        # The restart policy hides a crash loop behind "restarting": fail fast on it.
        if container.status in ("exited", "dead") or container.attrs.get("RestartCount", 0) >= 2:
            raise DeployError(f"{host}: {spec.service}: container {spec.name} exited "
                              f"(code {container.attrs['State'].get('ExitCode')}):\n"
                              + logs_tail(container, secrets=secrets), fix="fix the cause and run deploy again")
        if not test:
            return time.monotonic() - started
        if container.status == "running":
            result = container.exec_run(["sh", "-c", test], user="root")
            if result.exit_code == 0:
                return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise DeployError(f"{host}: {spec.service}: container {spec.name} not healthy after {timeout:.0f} s "
                              f"({test}):\n" + logs_tail(container, secrets=secrets),
                              fix="see `docker logs " + spec.name + "`, then run deploy again")
        time.sleep(0.5)


def run_job(engine, job: JobSpec, host: str, state_dir: Path, secrets: list[str], log_dir: Path,
            host_site: str = "") -> None:
    spec = job.container
    config_dir = state_paths(state_dir)["jobs"] / job.name
    write_config_dir(config_dir, spec.rendered_files())
    labels = {MANAGED: "1", SITE: host_site, SERVICE: job.service, LABEL_PREFIX + "purpose": "job",
              LABEL_PREFIX + "job": job.name}
    args = run_args(spec, config_dir, labels)
    args["name"] = f"mortar_job_{spec.name}"
    args.pop("healthcheck", None)
    try:
        engine.containers.get(args["name"]).remove(force=True)
    except Exception:  # noqa: BLE001 - not there: nothing to clean
        pass
    container = engine.containers.run(detach=True, **args)
    try:
        code = container.wait()["StatusCode"]
        output = redact(container.logs().decode(errors="replace"), secrets)
    finally:
        container.remove(force=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    write_private(log_dir / f"{job.name}.log", output)
    if code != 0:
        tail = "\n".join(output.splitlines()[-20:])
        raise DeployError(f"{host}: {job.service}: job {job.name} failed (exit {code}):\n{tail}",
                          fix=f"full log: {log_dir / (job.name + '.log')}; fix the cause and run deploy again")


def record_job(state_dir: Path, name: str, value: str) -> None:
    with RECORDS_LOCK:
        records = load_records(state_dir)
        records.setdefault("jobs", {})[name] = value
        save_records(state_dir, records)


def run_jobs(engine, host: HostState, service: ServiceState, phase: str, actions: list[Action], state_dir: Path,
             secrets: list[str], log_dir: Path, progress: Callable[[str], None]) -> None:
    todo = {(a.kind, a.target) for a in actions}
    for job in (j for j in service.jobs if j.phase == phase):
        if ("job", job.name) in todo:
            progress(f"job {job.name}")
            run_job(engine, job, host.host, state_dir, secrets, log_dir, host.site)
            image_id = engine.images.get(job.container.image).id
            record_job(state_dir, job.name, f"{job.job_hash}:{image_id}")


def converge_containers(engine, host: HostState, service: ServiceState, actions: list[Action], facts: Facts,
                        state_dir: Path, secrets: list[str], timeout: float,
                        progress: Callable[[str], None]) -> None:
    todo = {(a.kind, a.target) for a in actions}
    for volume in service.volumes:
        if ("volume", volume) in todo:
            ensure_volume(engine, volume, service.name, host.site)
    started = []
    for spec in service.containers:
        existing = facts.containers.get(spec.name)
        if ("recreate", spec.name) in todo and existing is not None:
            progress(f"recreate {spec.name}")
            # A clean stop first: databases and queues flush before the container goes.
            existing.stop(timeout=spec.stop_timeout)
            existing.remove(force=True)
            existing = None
        if existing is None:
            if ("recreate", spec.name) not in todo:
                progress(f"create {spec.name}")
            started.append((start_container(engine, spec, state_dir, host.site), spec))
        elif ("start", spec.name) in todo:
            progress(f"start {spec.name}")
            existing.start()
            started.append((existing, spec))
    for container, spec in started:
        seconds = wait_healthy(container, spec, host.host, timeout, secrets)
        progress(f"{spec.name} healthy ({seconds:.1f}s)")


def remove_container(engine, action: Action) -> None:
    try:
        engine.containers.get(action.target).remove(force=True)
    except Exception:  # noqa: BLE001 - already gone is fine
        pass


# ---- one host, one step: what the local executor calls and the Ansible module runs ---------

@dataclass
class StepReport:
    """What one host did in one step: a one-line summary and the detailed lines."""

    host: str
    step: str
    changed: bool = False
    lines: list[str] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)

    def summary(self) -> str:
        if not self.changed:
            return "ok (no change)"
        shown = "; ".join(self.lines[:3])
        return shown if len(self.lines) <= 3 else f"{shown} (+{len(self.lines) - 3} more)"

    def line(self) -> str:
        """The operator's one line for this host and step."""
        return f"[{self.host}] {self.step:10} {self.summary()}"

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "step": self.step, "changed": self.changed, "lines": self.lines,
                "actions": [vars(a) for a in self.actions]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepReport:
        return cls(data["host"], data["step"], bool(data.get("changed")), list(data.get("lines", [])),
                   [Action(**a) for a in data.get("actions", [])])


def plan_host(engine, host: HostState, state_dir: Path, secrets: list[str]) -> StepReport:
    """Facts of this host against its desired state: every action needed, with reasons."""
    facts = gather_facts(engine, host, state_dir)
    actions: list[Action] = []
    for service in host.services.values():
        actions += plan_service(host, service, facts, state_dir, secrets)
    actions += plan_removals(host, facts)
    return StepReport(host.host, "plan", changed=False, actions=actions)


def prepare_host(engine, host: HostState, state_dir: Path, secrets: list[str], threads: int = 3) -> StepReport:
    """Pull missing images (in parallel) and remove containers no longer desired."""
    report = StepReport(host.host, "prepare")
    planned = plan_host(engine, host, state_dir, secrets).actions
    refs = sorted({a.target for a in planned if a.kind == "pull"})
    if refs:
        started = time.monotonic()
        pull_all(engine, refs, host.host, threads)
        report.lines.append(f"pulled {len(refs)} image(s) in {time.monotonic() - started:.1f}s")
    for action in (a for a in planned if a.kind == "remove"):
        remove_container(engine, action)
        report.lines.append(f"removed {action.target}")
    report.changed = bool(report.lines)
    return report


def pull_images(engine, host: HostState, threads: int = 3) -> StepReport:
    """Pull every image this host needs (present ones are checked against the registry)."""
    refs = host.images()
    before = {ref: _image_id(engine, ref) for ref in refs}
    started = time.monotonic()
    pull_all(engine, refs, host.host, threads)
    changed = [ref for ref in refs if _image_id(engine, ref) != before[ref]]
    report = StepReport(host.host, "pull", changed=bool(changed))
    report.lines.append(f"{len(refs)} image(s) checked, {len(changed)} new or updated, "
                        f"{time.monotonic() - started:.1f}s")
    return report


def pull_all(engine, refs: list[str], host: str, threads: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda ref: pull_image(engine, ref, host), refs))


def _image_id(engine, ref: str) -> str | None:
    import docker.errors

    try:
        return engine.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


def pull_image(engine, ref: str, host: str) -> None:
    import docker.errors

    repository, _, tag = ref.rpartition(":")
    try:
        engine.images.pull(repository, tag=tag)
    except docker.errors.APIError as exc:
        first = repository.split("/")[0]
        if "." in first or ":" in first or first == "localhost":
            fix = "push it there with `mortar build --push` and check the host trusts the registry"
        else:
            fix = "build it with `mortar build --profile core`, or set docker_registry and push there"
        raise DeployError(f"{host}: image {ref} is not on the host and cannot be pulled ({exc.explanation})",
                          fix=fix) from exc


def apply_phase(engine, host: HostState, services: list[str], phase: str, force_jobs: list[str], state_dir: Path,
                secrets: list[str], timeout: float, log_dir: Path) -> StepReport:
    """One phase (jobs before, containers, jobs after) of some services on this host.

    The host re-plans from its own facts, so a retried or concurrent step does only what
    is still missing. Services of one step do not depend on each other: they run at once.
    """
    from concurrent.futures import ThreadPoolExecutor

    report = StepReport(host.host, phase)
    facts = gather_facts(engine, host, state_dir)
    lock = threading.Lock()

    def one(name: str) -> None:
        service = host.services[name]
        actions = plan_service(host, service, facts, state_dir, secrets)
        actions += [Action("job", host.host, name, job.name, ["the service changed"])
                    for job in service.jobs if job.name in force_jobs]

        def progress(message: str) -> None:
            with lock:
                report.lines.append(f"{name}: {message}")

        if phase == "containers":
            converge_containers(engine, host, service, actions, facts, state_dir, secrets, timeout, progress)
            return
        # Volumes the jobs use must exist before the first job runs.
        for volume in service.volumes:
            if any(a.kind == "volume" and a.target == volume for a in actions):
                ensure_volume(engine, volume, name, host.site)
        run_jobs(engine, host, service, phase, actions, state_dir, secrets, log_dir, progress)

    names = [n for n in services if n in host.services]
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        for future in [pool.submit(one, n) for n in names]:
            future.result()
    report.changed = bool(report.lines)
    return report


def stop_host(engine, host: HostState, order: list[str]) -> StepReport:
    """Stop this host's containers, dependents first; volumes and data stay."""
    import docker.errors

    report = StepReport(host.host, "stop")
    for name in reversed(order):
        for spec in host.services[name].containers if name in host.services else []:
            try:
                container = engine.containers.get(spec.name)
            except docker.errors.NotFound:
                continue
            if container.status in ("running", "restarting"):
                container.stop(timeout=spec.stop_timeout)
                report.lines.append(f"stopped {spec.name}")
    report.changed = bool(report.lines)
    return report


def destroy_host(engine, site: str, state_dir: Path) -> StepReport:
    """Remove this site's containers, named volumes (all data) and state on this host."""
    import shutil

    report = StepReport(host="", step="destroy")
    label = f"{SITE}={site}"
    for container in engine.containers.list(all=True, filters={"label": label}):
        container.remove(force=True)
        report.lines.append(f"removed container {container.name}")
    for volume in engine.volumes.list(filters={"label": label}):
        volume.remove(force=True)
        report.lines.append(f"removed volume {volume.name}")
    # The desired state a remote executor copied here holds rendered secrets: it goes too.
    paths = state_paths(state_dir)
    for path in (paths["config"], paths["jobs"], paths["records"], state_dir / "desired.json"):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    report.changed = bool(report.lines)
    return report


def remove_if_empty(*directories: Path) -> None:
    """rmdir each directory, in order, when nothing is left in it."""
    for directory in directories:
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
