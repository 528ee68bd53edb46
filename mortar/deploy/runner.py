"""Deploy operations on the hosts of an inventory: plan, deploy, reconfigure, pull, stop, destroy.

The whole inventory decides the desired state (addresses, who runs what); `--limit`
only narrows which hosts are touched, as in Ansible. A deploy goes level by level through
the service dependency graph: the services of one level converge together on every host
that needs a change (jobs before, containers, jobs after, each phase across all hosts
before the next), then their keystone registrations are made. An executor carries each
step to the hosts; this module decides what the steps are.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mortar.catalogue.loader import load_catalogue
from mortar.deploy import converge
from mortar.deploy.desired import DesiredState, compute_desired
from mortar.deploy.executors import Executor, StepResult
from mortar.errors import MortarError
from mortar.site.config import Site, load_site
from mortar.site.inventory import Inventory, load_inventory
from mortar.site.overrides import check_override_tree


@dataclass
class Deployment:
    site: Site
    inventory: Inventory
    desired: DesiredState
    state_dir: Path = converge.STATE_DIR
    targets: list[str] = field(default_factory=list)  # hosts this run may touch (--limit)

    def __post_init__(self) -> None:
        if not self.targets:
            self.targets = list(self.desired.hosts)

    @property
    def timeout(self) -> float:
        return float(self.site.globals["healthcheck_timeout"])

    @property
    def site_id(self) -> str:
        return hashlib.sha256(str(self.site.config_dir.resolve()).encode()).hexdigest()[:12]

    @property
    def controller_dir(self) -> Path:
        """This machine's records of the site: keystone registrations, per-host state files."""
        return self.state_dir / "sites" / self.site_id


def load_deployment(config_dir: Path, inventory_path: Path | None = None, limit: str | None = None,
                    state_dir: Path | None = None) -> Deployment:
    services = load_catalogue()
    site = load_site(config_dir, services)
    inventory = load_inventory(inventory_path or config_dir / "inventory")
    if (config_dir / "config").is_dir():
        check_override_tree(config_dir / "config", set(services), set(inventory.hosts))
    desired = compute_desired(site, inventory)
    targets = list(desired.hosts)
    if limit:
        chosen = set(inventory.limit(limit).hosts)
        targets = [h for h in desired.hosts if h in chosen]
        if not targets:
            raise MortarError(f"--limit {limit!r} matches no host that runs a service", key="--limit",
                              file=inventory.path, fix="name hosts or groups of the inventory")
    return Deployment(site, inventory, desired, state_dir or converge.STATE_DIR, targets)


@dataclass
class Plan:
    actions: list[converge.Action] = field(default_factory=list)
    registrations: list[str] = field(default_factory=list)
    forced_jobs: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.actions and not self.registrations

    def hosts_for(self, services: list[str]) -> list[str]:
        hosts: list[str] = []
        for action in self.actions:
            if action.service in services and action.kind not in ("pull", "remove") and action.host not in hosts:
                hosts.append(action.host)
        return hosts


def registration_records(deployment: Deployment) -> dict[str, str]:
    path = deployment.controller_dir / "registrations.json"
    return json.loads(path.read_text()) if path.exists() else {}


def record_registration(deployment: Deployment, name: str, digest: str) -> None:
    with converge.RECORDS_LOCK:
        records = registration_records(deployment)
        records[name] = digest
        path = deployment.controller_dir / "registrations.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(deployment.state_dir, 0o700)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(records, indent=1, sort_keys=True))
        tmp.replace(path)


def make_plan(deployment: Deployment, executor: Executor) -> Plan:
    desired = deployment.desired
    result = executor.plan(deployment.targets)
    result.raise_for_failures()
    by_host = {r.host: r.actions for r in result.reports}
    plan = Plan()
    for host in deployment.targets:
        plan.actions += by_host.get(host, [])
    changed = {a.service for a in plan.actions}
    for host in deployment.targets:
        for service in desired.hosts[host].services.values():
            for job in service.jobs:
                planned = any(a.kind == "job" and a.target == job.name for a in plan.actions)
                if job.run == "always" and service.name in changed and not planned:
                    plan.actions.append(converge.Action("job", host, service.name, job.name, ["the service changed"]))
                    plan.forced_jobs.append(job.name)
    records = registration_records(deployment)
    for name, reg in desired.registrations.items():
        if records.get(name) != reg.digest:
            plan.registrations.append(name)
    return plan


def print_plan(plan: Plan, deployment: Deployment, echo: Callable[[str], None]) -> None:
    for host in deployment.targets:
        host_actions = [a for a in plan.actions if a.host == host]
        if not host_actions:
            echo(f"host {host}: no changes")
            continue
        echo(f"host {host}: {len(host_actions)} change(s)")
        for action in host_actions:
            echo(f"  {action.service:10} {action.line()}")
            for line in action.diff.splitlines()[:20]:
                echo(f"      {line}")
    if plan.registrations:
        echo("keystone registrations: " + ", ".join(plan.registrations))
    if plan.empty:
        echo("No changes: every container, job and registration is as desired.")


def levels(order: list[str], depends: dict[str, list[str]]) -> list[list[str]]:
    """Services grouped so that each one comes after everything it depends on."""
    depth: dict[str, int] = {}
    for name in order:
        depth[name] = 1 + max((depth[d] for d in depends.get(name, []) if d in depth), default=-1)
    return [[n for n in order if depth[n] == level] for level in range(max(depth.values(), default=-1) + 1)]


def echo_reports(result: StepResult, echo: Callable[[str], None], quiet_unchanged: bool = True) -> None:
    for report in result.reports:
        if report.changed or not quiet_unchanged:
            echo(report.line())


def deploy(deployment: Deployment, executor: Executor, echo: Callable[[str], None]) -> Plan:
    desired = deployment.desired
    plan = make_plan(deployment, executor)
    if plan.empty:
        echo(f"Nothing to do: the deployment is as desired on {len(deployment.targets)} host(s).")
        return plan
    echo(f"{len(plan.actions)} change(s) on {len({a.host for a in plan.actions})} host(s), "
         f"{len(plan.registrations)} registration(s)")
    prepare_hosts = sorted({a.host for a in plan.actions if a.kind in ("pull", "remove")},
                           key=deployment.targets.index)
    if prepare_hosts:
        result = executor.prepare(prepare_hosts)
        echo_reports(result, echo)
        result.raise_for_failures()
    depends = {name: deployment.site.services[name].depends for name in desired.order}
    for level in levels(desired.order, depends):
        services = [s for s in level if any(a.service == s and a.kind not in ("pull", "remove")
                                            for a in plan.actions)]
        hosts = plan.hosts_for(services)
        if hosts:
            started = time.monotonic()
            result = executor.apply(hosts, services, plan.forced_jobs, echo)
            result.raise_for_failures()
            echo(f"{', '.join(services)}: done on {len(hosts)} host(s) in {time.monotonic() - started:.1f}s")
        _register(deployment, [s for s in level if s in plan.registrations], echo)
    return plan


REGISTER_ATTEMPTS = 5


def _transient(exc: Exception) -> bool:
    """Worth another try: a dropped connection or 5xx from a keystone still warming up, or a create race."""
    from keystoneauth1 import exceptions as ksa
    from openstack import exceptions as sdk

    if isinstance(exc, ksa.ConnectFailure | ksa.ConnectTimeout | sdk.ConflictException):
        return True
    status = getattr(exc, "status_code", None) or getattr(exc, "http_status", None)
    # 409: a registration running beside this one just created the same shared project or role.
    return isinstance(status, int) and (status >= 500 or status == 409)


def _register(deployment: Deployment, names: list[str], echo: Callable[[str], None]) -> None:
    if not names:
        return
    from mortar.deploy.keystone import register

    desired = deployment.desired

    def one(name: str) -> None:
        for attempt in range(REGISTER_ATTEMPTS):
            try:
                register(desired.admin, desired.registrations[name])
                break
            except Exception as exc:  # noqa: BLE001 - keystoneauth and SDK errors alike
                if not _transient(exc) or attempt == REGISTER_ATTEMPTS - 1:
                    keystone = ", ".join(desired.hosts_running("keystone")) or "its host"
                    raise converge.DeployError(
                        f"{name}: keystone registration failed: {type(exc).__name__}: {exc}",
                        fix=f"check keystone (`docker logs keystone` on {keystone}) and run the same command "
                            "again; registrations are idempotent") from exc
                time.sleep(2 ** attempt)
        record_registration(deployment, name, desired.registrations[name].digest)
        echo(f"{name}: registered in keystone")

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        for future in [pool.submit(one, n) for n in names]:
            future.result()


def pull(deployment: Deployment, executor: Executor, echo: Callable[[str], None]) -> None:
    result = executor.pull(deployment.targets)
    echo_reports(result, echo, quiet_unchanged=False)
    result.raise_for_failures()


def _echo_lines(result: StepResult, echo: Callable[[str], None]) -> None:
    """Every line of every host's report, then one error naming the hosts that failed."""
    for report in result.reports:
        for line in report.lines:
            echo(f"[{report.host}] {line}")
    result.raise_for_failures()


def stop(deployment: Deployment, executor: Executor, echo: Callable[[str], None]) -> None:
    """Stop every container, dependents first; data volumes stay."""
    _echo_lines(executor.stop(deployment.targets), echo)


def destroy(deployment: Deployment, executor: Executor, echo: Callable[[str], None]) -> None:
    """Remove every mortar container, named volume and the site state on the hosts."""
    import shutil

    _echo_lines(executor.destroy(deployment.targets), echo)
    if deployment.targets == list(deployment.desired.hosts) and deployment.controller_dir.exists():
        shutil.rmtree(deployment.controller_dir)
        echo(f"removed {deployment.controller_dir}")
        # Nothing of any site left here: the state directory goes too (the lib cache is rebuilt on demand).
        state = deployment.state_dir
        sites = state / "sites"
        if not (sites.is_dir() and any(sites.iterdir())):
            shutil.rmtree(state / "lib", ignore_errors=True)
            converge.remove_if_empty(sites, state)
