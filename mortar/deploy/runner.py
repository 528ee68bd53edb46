"""Deploy operations on the hosts of an inventory: plan, deploy, reconfigure, stop, destroy.

A service starts as soon as every service it depends on is done (independent ones run at
once); for each one, every host that runs it is converged (volumes, jobs before,
containers, health, jobs after), then its keystone registrations are made. This module
orders the work; `converge` does it on a host.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from mortar.catalogue.loader import load_catalogue
from mortar.deploy import converge
from mortar.deploy.desired import DesiredState, compute_desired
from mortar.errors import MortarError
from mortar.site.config import Site, load_site
from mortar.site.inventory import Inventory, load_inventory
from mortar.site.overrides import check_override_tree

LOG_DIR = Path("/var/log/mortar/deploy")


@dataclass
class Deployment:
    site: Site
    inventory: Inventory
    desired: DesiredState
    state_dir: Path = converge.STATE_DIR

    @property
    def timeout(self) -> float:
        return float(self.site.globals["healthcheck_timeout"])


def load_deployment(config_dir: Path, inventory_path: Path | None = None, limit: str | None = None,
                    state_dir: Path | None = None) -> Deployment:
    services = load_catalogue()
    site = load_site(config_dir, services)
    inventory = load_inventory(inventory_path or config_dir / "inventory")
    if limit:
        inventory = inventory.limit(limit)
    if (config_dir / "config").is_dir():
        check_override_tree(config_dir / "config", set(services), set(inventory.hosts))
    remote = [h.name for h in inventory.hosts.values() if not is_local(h.name, h.vars)]
    if remote:
        raise MortarError(f"host {remote[0]} is not this machine: only all-in-one deploys are implemented so far",
                          file=inventory.path, key=remote[0],
                          fix="use an inventory whose hosts are localhost (ansible_connection=local)")
    desired = compute_desired(site, inventory)
    return Deployment(site, inventory, desired, state_dir or converge.STATE_DIR)


def is_local(name: str, variables: dict[str, str]) -> bool:
    address = variables.get("ansible_host", name)
    return variables.get("ansible_connection") == "local" or address in ("localhost", "127.0.0.1", "::1")


@dataclass
class Plan:
    actions: list[converge.Action] = field(default_factory=list)
    registrations: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.actions and not self.registrations


def engine_for(host: str, deployment: Deployment):
    from mortar.engine.client import engine_client

    del host, deployment  # every host of an all-in-one inventory is this one

    return engine_client()


def make_plan(deployment: Deployment, engine) -> Plan:
    plan = Plan()
    desired = deployment.desired
    for state in desired.hosts.values():
        facts = converge.gather_facts(engine, state, deployment.state_dir)
        for name in desired.order:
            if name in state.services:
                plan.actions += converge.plan_service(state, state.services[name], facts, deployment.state_dir,
                                                      desired.secrets)
        plan.actions += converge.plan_removals(state, facts)
    changed = {a.service for a in plan.actions}
    for state in desired.hosts.values():
        for service in state.services.values():
            for job in service.jobs:
                planned = any(a.kind == "job" and a.target == job.name for a in plan.actions)
                if job.run == "always" and service.name in changed and not planned:
                    plan.actions.append(converge.Action("job", state.host, service.name, job.name,
                                                        ["the service changed"]))
    records = converge.load_records(deployment.state_dir)
    for name, reg in desired.registrations.items():
        if records.get("registrations", {}).get(name) != reg.digest:
            plan.registrations.append(name)
    return plan


def print_plan(plan: Plan, deployment: Deployment, echo: Callable[[str], None]) -> None:
    if plan.empty:
        echo("No changes: every container, job and registration is as desired.")
        return
    for host in deployment.desired.hosts:
        host_actions = [a for a in plan.actions if a.host == host]
        if not host_actions:
            continue
        echo(f"host {host}:")
        for action in host_actions:
            echo(f"  {action.service:10} {action.line()}")
            for line in action.diff.splitlines()[:20]:
                echo(f"      {line}")
    if plan.registrations:
        echo("keystone registrations: " + ", ".join(plan.registrations))


def deploy(deployment: Deployment, engine, echo: Callable[[str], None]) -> Plan:
    desired = deployment.desired
    plan = make_plan(deployment, engine)
    if plan.empty:
        echo("Nothing to do: the deployment is as desired.")
        return plan
    for action in plan.actions:
        if action.kind == "pull":
            pull_image(engine, action.target, action.host)
    for action in plan.actions:
        if action.kind == "remove":
            echo(f"[{action.host}] remove {action.target}: {'; '.join(action.reasons)}")
            converge.remove_container(engine, action)
    records = converge.load_records(deployment.state_dir)
    run_services(desired.order, lambda name: _deploy_service(deployment, engine, plan, records, name, echo),
                 {name: deployment.site.services[name].depends for name in desired.order}, echo)
    return plan


def run_services(order: list[str], work: Callable[[str], None], depends: dict[str, list[str]],
                 echo: Callable[[str], None], workers: int = 4) -> None:
    """Each service as soon as every service it depends on is done; independent ones at once.

    A failure stops only the services that depend on the failed one; the first error is
    raised once everything that could run has run.
    """
    done: set[str] = set()
    failed: dict[str, BaseException] = {}
    pending = list(order)
    running: dict[Future, str] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while pending or running:
            for name in list(pending):
                needs = [d for d in depends.get(name, []) if d in order]
                if any(d in failed for d in needs):
                    pending.remove(name)
                    failed[name] = MortarError(f"{name}: not deployed because a service it needs failed")
                    echo(f"{name}: skipped (a service it needs failed)")
                elif all(d in done for d in needs):
                    pending.remove(name)
                    running[pool.submit(work, name)] = name
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                error = future.exception()
                if error is None:
                    done.add(name)
                else:
                    failed[name] = error
    first = next((e for n, e in failed.items() if not str(e).endswith("a service it needs failed")), None)
    if first is not None:
        raise first


def _deploy_service(deployment: Deployment, engine, plan: Plan, records: dict, name: str,
                    echo: Callable[[str], None]) -> None:
    desired = deployment.desired
    started = time.monotonic()
    hosts = [h for h in desired.hosts_running(name)
             if any(a.host == h and a.service == name and a.kind != "remove" for a in plan.actions)]
    job_host = next((h for h in desired.hosts_running(name) if desired.hosts[h].services[name].jobs), None)
    if job_host in hosts:
        _step(deployment, engine, plan, records, name, job_host, "before", echo)
    for host in hosts:
        _step(deployment, engine, plan, records, name, host, "containers", echo)
    if job_host in hosts:
        _step(deployment, engine, plan, records, name, job_host, "after", echo)
    touched = bool(hosts)
    if name in plan.registrations:
        from mortar.deploy.keystone import register

        register(desired.admin, desired.registrations[name])
        with converge.RECORDS_LOCK:
            records.setdefault("registrations", {})[name] = desired.registrations[name].digest
            converge.save_records(deployment.state_dir, records)
        echo(f"{name}: registered in keystone")
        touched = True
    if touched:
        echo(f"{name}: done in {time.monotonic() - started:.1f}s")


def _step(deployment: Deployment, engine, plan: Plan, records: dict, name: str, host: str, phase: str,
          echo: Callable[[str], None]) -> None:
    """One phase of one service on one host: jobs before, containers, or jobs after."""
    desired = deployment.desired
    state = desired.hosts[host]
    actions = [a for a in plan.actions if a.host == host and a.service == name]

    def progress(message: str) -> None:
        echo(f"[{host}] {name}: {message}")

    if phase == "containers":
        facts = converge.gather_facts(engine, state, deployment.state_dir)
        converge.converge_containers(engine, state, state.services[name], actions, facts, deployment.state_dir,
                                     desired.secrets, deployment.timeout, progress)
        return
    # Volumes the jobs use must exist before the first job runs.
    for volume in state.services[name].volumes:
        if any(a.kind == "volume" and a.target == volume for a in actions):
            converge.ensure_volume(engine, volume, name, state.site)
    converge.run_jobs(engine, state, state.services[name], phase, actions, records, deployment.state_dir,
                      desired.secrets, LOG_DIR, progress)


def pull_image(engine, ref: str, host: str) -> None:
    import docker.errors

    repository, _, tag = ref.rpartition(":")
    try:
        engine.images.pull(repository, tag=tag)
    except docker.errors.APIError as exc:
        raise MortarError(f"{host}: image {ref} is not on the host and cannot be pulled ({exc.explanation})",
                          fix="build it with `mortar build --profile core` (or push it to image_registry)") from exc


def stop(deployment: Deployment, engine, echo: Callable[[str], None]) -> None:
    """Stop every container, dependents first; data volumes stay."""
    for name in reversed(deployment.desired.order):
        for host in deployment.desired.hosts_running(name):
            for spec in deployment.desired.hosts[host].services[name].containers:
                try:
                    container = engine.containers.get(spec.name)
                except Exception:  # noqa: BLE001 - not there: nothing to stop
                    continue
                if container.status == "running":
                    container.stop(timeout=spec.stop_timeout)
                    echo(f"[{host}] stopped {spec.name}")


def destroy(deployment: Deployment, engine, echo: Callable[[str], None]) -> None:
    """Remove every mortar container, named volume and the site state."""
    import shutil

    site = f"{converge.SITE}={deployment.site.config_dir.resolve()}"
    for container in engine.containers.list(all=True, filters={"label": site}):
        container.remove(force=True)
        echo(f"removed container {container.name}")
    for volume in engine.volumes.list(filters={"label": site}):
        volume.remove(force=True)
        echo(f"removed volume {volume.name}")
    if deployment.state_dir.exists():
        shutil.rmtree(deployment.state_dir)
        echo(f"removed {deployment.state_dir}")
