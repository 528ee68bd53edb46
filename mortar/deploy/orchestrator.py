"""Orchestrates deploy operations across the hosts of an inventory: plan, deploy, reconfigure,
pull, stop, destroy, prechecks.

The whole inventory decides the desired state (addresses, who runs what); `--limit` only
narrows which hosts are touched, as in Ansible, with one exception an operator expects: a
job that a change on a limited host triggers runs where its container lives (adding a
compute host maps it into its cell). A deploy goes level by level through the capability
graph: the services of one level converge together on every host that needs a change
(provision, jobs before, containers, jobs after, each phase across all hosts before the
next), their registrations with the identity service made first.

Everything is decided from what the hosts and the identity service report now; the only
thing remembered here is work that was due and could not run (pending jobs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mortar.agent.errors import StepError
from mortar.agent.jobs import INPUTS_CHANGED, job_reasons
from mortar.agent.steps import APPLY_PHASES
from mortar.agent.wire import Action, Check, Failure, HostState, Job, StepRequest
from mortar.catalogue.loader import load_catalogue
from mortar.deploy.desired import DesiredState, compute_desired
from mortar.deploy.executors import Executor, StepResult
from mortar.deploy.sitelock import site_lock
from mortar.errors import MortarError
from mortar.files import inside
from mortar.paths import log_root, state_root
from mortar.records import RecordStore
from mortar.registry.pins import pushed_digests
from mortar.retry import TimedOut, retry
from mortar.site.config import Site, load_site
from mortar.site.inventory import Inventory, load_inventory
from mortar.site.overrides import check_override_tree

Echo = Callable[[str], None]
REGISTRATION_TIMEOUT = 120.0
# What the agent keeps on this machine when it is one of the hosts (removed with the last site).
AGENT_FILES = {"config", "jobs", "records.json", ".records.json.lock", "agent.lock", "desired.json"}


@dataclass
class Deployment:
    site: Site
    inventory: Inventory
    desired: DesiredState
    state_dir: Path = field(default_factory=state_root)
    log_dir: Path = field(default_factory=lambda: log_root() / "deploy")
    targets: list[str] = field(default_factory=list)  # hosts this run may touch (--limit)

    def __post_init__(self) -> None:
        if not self.targets:
            self.targets = list(self.desired.hosts)

    @property
    def controller_dir(self) -> Path:
        """This machine's records of the site: pending jobs, per-host state files, Ansible's files."""
        return inside(self.state_dir / "sites", self.desired.site_id, "site id")

    @property
    def pending(self) -> RecordStore:
        return RecordStore(self.controller_dir / "pending.json")

    @property
    def releases(self) -> RecordStore:
        """The OpenStack series each host was last deployed with (no fact shows it: infrastructure
        images are the same in every series, and image tags are the operator's choice)."""
        return releases_record(self.state_dir, self.desired.site_id)

    def check_release(self) -> None:
        """deploy, reconfigure and plan keep a host on the series it runs; only upgrade moves it,
        and an upgrade under way is finished by upgrade alone (its databases are migrated)."""
        recorded = self.releases.read()
        underway = recorded.get("upgrade")
        if underway:
            raise MortarError(
                f"an upgrade from {underway['from']} to {underway['to']} is under way and did not finish",
                fix=f"run `mortar upgrade --release {underway['to']}` again: it carries on where it stopped")
        running = recorded.get("hosts", {})
        wanted = self.site.release
        other = sorted({running[h] for h in self.targets if h in running and running[h] != wanted})
        if other:
            hosts = [h for h in self.targets if running.get(h) in other]
            raise MortarError(
                f"the site runs {', '.join(other)} on {', '.join(hosts)}, not {wanted}: deploy and reconfigure "
                f"never change the series", file=str(self.site.config_dir / "globals.yml"), key="openstack_release",
                fix=f"run `mortar upgrade` to move the site to {wanted}, or set openstack_release: '{other[0]}'")

    def record_release(self) -> None:
        def change(data: dict) -> None:
            data.setdefault("hosts", {}).update(dict.fromkeys(self.targets, self.site.release))

        self.releases.update(change)

    def host_state(self, host: str) -> HostState:
        if host in self.desired.hosts:
            return self.desired.hosts[host]
        address = self.inventory.hosts[host].api_address(str(self.site.globals["api_address"]))
        return HostState(host, address, self.desired.site_id, order=self.desired.order)


def override_files(site: Site) -> dict[str, set[str]]:
    return {name: {f.name for c in spec.containers.values() for f in c.files} for name, spec in site.services.items()}


def releases_record(state_dir: Path, site_id: str) -> RecordStore:
    return RecordStore(inside(state_dir / "sites", site_id, "site id") / "releases.json")


def recorded_series(state_dir: Path, site_id: str) -> dict[str, str]:
    """Host -> the series it was last deployed with ({} for a site never deployed here)."""
    return dict(releases_record(state_dir, site_id).read().get("hosts", {})) if site_id else {}


def load_deployment(config_dir: Path, inventory_path: Path | None = None, limit: str | None = None,
                    state_dir: Path | None = None, release: str | None = None) -> Deployment:
    services = load_catalogue()
    site = load_site(config_dir, services, release)
    inventory = load_inventory(inventory_path or config_dir / "inventory")
    check_override_tree(config_dir / "config", override_files(site), set(inventory.hosts))
    state = state_dir or state_root()
    desired = compute_desired(site, inventory, recorded_series(state, site.site_id))
    pins = pushed_digests(state)
    for host in desired.hosts.values():
        host.image_pins = {ref: pins[ref] for ref in host.images() if ref in pins}
    targets = list(desired.hosts)
    if limit:
        chosen = set(inventory.limit(limit).hosts)
        targets = [h for h in desired.hosts if h in chosen]
        if not targets:
            raise MortarError(f"--limit {limit!r} matches no host that runs a service", key="--limit",
                              file=inventory.path, fix="name hosts or groups of the inventory")
    return Deployment(site, inventory, desired, state, log_root() / "deploy", targets)


# ---- plan -----------------------------------------------------------------------------------

@dataclass
class PlannedJob:
    host: str
    service: str
    job: str
    phase: str
    reasons: list[str]


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    jobs: list[PlannedJob] = field(default_factory=list)
    registrations: dict[str, list[str]] = field(default_factory=dict)
    unobserved: list[Failure] = field(default_factory=list)  # hosts outside --limit that did not answer
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> volume -> data id
    recreate: dict[str, list[str]] = field(default_factory=dict)  # host -> containers whose data is new

    @property
    def empty(self) -> bool:
        return not self.actions and not self.jobs and not self.registrations

    def changed_services(self) -> set[str]:
        return {a.service for a in self.actions} | {j.service for j in self.jobs}


def observed_hosts(deployment: Deployment) -> list[str]:
    """Hosts whose facts decide this run: the targets, and every host holding a job or the data
    a job depends on (read only, never changed unless a target's change triggers a job there)."""
    d = deployment.desired
    wanted = list(deployment.targets)
    for host, state in d.hosts.items():
        for job in state.jobs():
            for name in [host] + [key.split("/", 1)[0] for key in job.data]:
                if name not in wanted and name in d.hosts:
                    wanted.append(name)
    return wanted


def make_plan(deployment: Deployment, executor: Executor) -> Plan:
    d = deployment.desired
    hosts = observed_hosts(deployment)
    result = executor.run(["plan"], {h: StepRequest() for h in hosts}, stop_on_failure=False)
    reports = {r.host: r for r in result.of("plan")}
    plan = Plan()
    failed_targets = [f for f in result.failures if f.host in deployment.targets]
    if failed_targets:
        StepResult([r for r in result.reports if r.failure and r.host in deployment.targets]).raise_for_failures()
    plan.unobserved = [f for f in result.failures if f.host not in deployment.targets]
    for host in deployment.targets:
        plan.actions += reports[host].actions
    plan.volumes = {h: dict(r.volumes) for h, r in reports.items() if r.failure is None}
    # A container that started on data no longer there (a database made again) starts again.
    for host in deployment.targets:
        acted = {a.target for a in plan.actions if a.host == host}
        for container in d.hosts[host].containers():
            started_on = reports[host].container_data.get(container.name)
            if started_on is None or container.name in acted:
                continue
            new = [key.split("/", 1)[1] for key in container.data if _observed(plan, key)
                   and (_data_id(plan, key) is None or started_on.get(key) != _data_id(plan, key))]
            if new:
                plan.actions.append(Action("recreate", host, container.service, container.name,
                                           [f"{volume} is new data" for volume in new]))
                plan.recreate.setdefault(host, []).append(container.name)
    pending = deployment.pending.get("jobs", default={})
    changed = {a.service for a in plan.actions if a.kind != "wait"}  # waiting for one changes nothing
    created_data = {f"{a.host}/{a.target}" for a in plan.actions if a.kind == "volume"}
    for host, state in d.hosts.items():
        report = reports.get(host)
        if report is None or report.failure is not None:
            continue
        for job in state.jobs():
            assert job.spec is not None
            if job.phase == "check":
                continue  # run by upgrade's preflight only
            record = report.job_records.get(job.name) or {}
            # Data on a host that did not answer is taken as it was: nothing says it changed.
            data_ids = {key: _data_id(plan, key) if _observed(plan, key) else record.get("data", {}).get(key)
                        for key in job.data}
            reasons = job_reasons(job, report.job_records.get(job.name), report.image_ids.get(job.spec.image),
                                  data_ids)
            if host not in deployment.targets:
                # Outside --limit, a job runs only when a change on the targets needs it now: their
                # data is made in this run, or its inputs changed and describe a target host (a
                # compute host added with --limit, say).
                about_targets = bool(set(job.hosts) & set(deployment.targets))
                reasons = [r for r in reasons if any(key in created_data for key in job.data)
                           or (about_targets and r == INPUTS_CHANGED)]
            if job.name in pending:
                reasons.append(f"was due and did not run ({pending[job.name].get('why', 'interrupted')})")
            plan.jobs.append(PlannedJob(host, job.service, job.name, job.phase, reasons))
    # Changes trigger the service's run-always jobs (and one trigger pulls in the next).
    changed |= {j.service for j in plan.jobs if j.reasons}
    for planned in plan.jobs:
        job = _job(d, planned.host, planned.job)
        if job.run == "always" and job.service in changed and not planned.reasons:
            planned.reasons.append("the service changed")
    plan.jobs = [j for j in plan.jobs if j.reasons]
    if d.identity and d.registrations:
        from mortar.deploy.identity import observe

        plan.registrations = {n: r for n, r in observe(d.identity, d.registrations, deployment.controller_dir).items()
                              if r}
    return plan


def _observed(plan: Plan, key: str) -> bool:
    return key.partition("/")[0] in plan.volumes


def _data_id(plan: Plan, key: str) -> str | None:
    owner, _, volume = key.partition("/")
    return plan.volumes.get(owner, {}).get(volume)


def _job(desired: DesiredState, host: str, name: str) -> Job:
    return next(j for j in desired.hosts[host].jobs() if j.name == name)


def print_plan(plan: Plan, deployment: Deployment, echo: Echo) -> None:
    for host in deployment.targets:
        actions = [a for a in plan.actions if a.host == host]
        jobs = [j for j in plan.jobs if j.host == host]
        if not actions and not jobs:
            echo(f"host {host}: no changes")
            continue
        echo(f"host {host}: {len(actions) + len(jobs)} change(s)")
        for action in actions:
            echo(f"  {action.service:10} {action.line()}")
            for line in action.diff.splitlines()[:20]:
                echo(f"      {line}")
        for job in jobs:
            echo(f"  {job.service:10} {'job':8} {job.job}: {'; '.join(job.reasons)}")
    for job in (j for j in plan.jobs if j.host not in deployment.targets):
        echo(f"host {job.host} (outside --limit): job {job.job}: {'; '.join(job.reasons)}")
    for name, reasons in plan.registrations.items():
        echo(f"registration {name}: {'; '.join(reasons)}")
    for failure in plan.unobserved:
        echo(f"note: {failure.host} (outside --limit) did not answer: {failure.message.splitlines()[0]}")
    if plan.empty:
        echo("No changes: every container, job and registration is as desired.")


# ---- deploy ---------------------------------------------------------------------------------

def deploy(deployment: Deployment, executor: Executor, echo: Echo, command: str = "deploy") -> Plan:
    if command != "upgrade":
        deployment.check_release()
    with site_lock(deployment.controller_dir, command):
        plan = _deploy(deployment, executor, echo)
        deployment.record_release()
        return plan


def _deploy(deployment: Deployment, executor: Executor, echo: Echo) -> Plan:
    d = deployment.desired
    plan = make_plan(deployment, executor)
    for failure in plan.unobserved:
        echo(f"note: {failure.host} (outside --limit) did not answer; its jobs wait for the next run")
    if plan.empty:
        echo(f"Nothing to do: the deployment is as desired on {len(deployment.targets)} host(s).")
        return plan
    echo(f"{len(plan.actions)} change(s) and {len(plan.jobs)} job(s) on "
         f"{len({a.host for a in plan.actions} | {j.host for j in plan.jobs})} host(s), "
         f"{len(plan.registrations)} registration(s)")
    # Triggered work is written down before it starts: an interrupted run leaves it due.
    store = deployment.pending

    def due(data: dict) -> None:
        # Only triggers need writing down: a job whose inputs or data changed shows so again.
        jobs = data.setdefault("jobs", {})
        for j in plan.jobs:
            if j.host not in deployment.targets or _job(d, j.host, j.job).run == "always":
                jobs[j.job] = {"host": j.host, "why": "the run that triggered it stopped before it"}

    store.update(due)
    prepare = sorted({a.host for a in plan.actions if a.kind in ("pull", "remove")}, key=deployment.targets.index)
    if prepare:
        result = executor.run(["prepare"], {h: StepRequest() for h in prepare}, echo)
        result.raise_for_failures()
    for level in d.levels:
        # A service's own users and endpoints exist before its containers start with them.
        _register(deployment, [s for s in level if s in plan.registrations], echo)
        services = [s for s in level if s in plan.changed_services()]
        hosts = sorted({a.host for a in plan.actions if a.service in services and a.kind not in ("pull", "remove")}
                       | {j.host for j in plan.jobs if j.service in services},
                       key=list(d.hosts).index)
        if hosts:
            started = time.monotonic()
            requests = {h: _request(deployment, plan, h, services) for h in hosts}
            rolling = rolling_hosts(plan, d, serving_containers(deployment.site), services, hosts)
            batches = [(list(APPLY_PHASES), requests)]
            if len(rolling) > 1:
                # Containers that serve on several hosts restart one host at a time: the others
                # (and the load balancer in front of them) keep answering meanwhile.
                echo(f"{', '.join(services)}: restarting on {', '.join(rolling)} one host at a time")
                others = {h: r for h, r in requests.items() if h not in rolling}
                batches = [(["provision", "before"], requests)]
                batches += [(["containers"], others)] if others else []
                batches += [(["containers"], {h: requests[h]}) for h in rolling]
                batches += [(["after"], requests)]
            for phases, batch in batches:
                result = executor.run(phases, batch, echo)
                for report in result.reports:
                    plan.volumes.setdefault(report.host, {}).update(report.volumes)
                result.raise_for_failures()
            store.update(_forget({j.job for j in plan.jobs if j.service in services}))
            echo(f"{', '.join(services)}: done on {len(hosts)} host(s) in {time.monotonic() - started:.1f}s")
    return plan


def serving_containers(site: Site) -> set[str]:
    """Containers others talk to: those behind the load balancer and those that serve a capability."""
    return {name for spec in site.services.values() for name, decl in spec.containers.items()
            if decl.loadbalancer is not None} | {p.container for spec in site.services.values()
                                                 for p in spec.provides.values()}


def rolling_hosts(plan: Plan, desired: DesiredState, serving: set[str], services: list[str],
                  hosts: list[str]) -> list[str]:
    """Hosts where a running container that serves others from several hosts is recreated or
    restarted: those go one at a time. A first start, or a container on one host only, need no order."""
    rolling = {a.host for a in plan.actions
               if a.service in services and a.kind in ("recreate", "restart") and a.target in serving
               and len(desired.hosts_of_container(a.target)) > 1}
    return [h for h in hosts if h in rolling]


def _forget(done: set[str]) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        for name in done:
            data.get("jobs", {}).pop(name, None)

    return change


def _request(deployment: Deployment, plan: Plan, host: str, services: list[str]) -> StepRequest:
    jobs = [j.job for j in plan.jobs if j.host == host and j.service in services]
    # The ids of other hosts' data, as observed (and as made earlier in this run).
    known = {f"{owner}/{volume}": data for owner, volumes in plan.volumes.items() if owner != host
             for volume, data in volumes.items()}
    # Outside --limit a host only runs the jobs a change on the targets triggered there.
    present = [s for s in services if s in deployment.desired.hosts[host].services] \
        if host in deployment.targets else []
    recreate = [name for name in plan.recreate.get(host, [])
                if any(c.name == name and c.service in present for c in deployment.desired.hosts[host].containers())]
    return StepRequest(services=present, jobs=jobs, recreate=recreate, data_ids=known)


def _register(deployment: Deployment, names: list[str], echo: Echo) -> None:
    d = deployment.desired
    providers = ", ".join(h for s in d.order if "identity" in deployment.site.services[s].provides
                          for h in d.hosts_running(s)) or "its host"
    register_services(d, deployment.controller_dir, names, echo, f"its logs on {providers}")


def register_services(desired: DesiredState, state: Path, names: list[str], echo: Echo, where: str) -> None:
    """Register NAMES with the identity service (in parallel, each retried while it is not
    answering yet); STATE keeps the admin token between calls; WHERE says where to look."""
    if not names:
        return
    from mortar.deploy.identity import register, transient

    def one(name: str) -> None:
        try:
            retry(lambda: register(desired.identity, desired.registrations[name], state),
                  timeout=REGISTRATION_TIMEOUT, delay=1,
                  temporary=transient, what=f"registering {name}")
        except Exception as exc:  # noqa: BLE001 - keystoneauth and SDK errors alike, said once
            cause = exc.last if isinstance(exc, TimedOut) and exc.last else exc
            raise StepError(f"{name}: registration with the identity service failed: {type(cause).__name__}: "
                            f"{str(cause)[:300]}",
                            fix=f"check the identity service ({where}) and run the same command again; "
                                "registrations are idempotent") from None
        echo(f"{name}: registered")

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        for future in [pool.submit(one, n) for n in names]:
            future.result()


# ---- other operations -----------------------------------------------------------------------

def _echo_lines(result: StepResult, echo: Echo) -> None:
    """Every line of every host's report, then one error naming the hosts that failed."""
    for report in result.reports:
        for line in report.lines:
            echo(f"[{report.host}] {line}")
    result.raise_for_failures()


def pull(deployment: Deployment, executor: Executor, echo: Echo) -> None:
    result = executor.run(["pull"], {h: StepRequest() for h in deployment.targets}, stop_on_failure=False)
    for report in result.reports:
        if report.failure is None:
            echo(report.line())
    result.raise_for_failures()


def stop(deployment: Deployment, executor: Executor, echo: Echo, services: list[str] | None = None) -> None:
    """Stop every container (SERVICES': those services' only), dependents first; data volumes stay."""
    unknown = sorted(set(services or []) - set(deployment.desired.order))
    if unknown:
        raise MortarError(f"no enabled service is called {', '.join(unknown)}", key="--service",
                          fix=f"one of {', '.join(sorted(deployment.desired.order))}")
    hosts = [h for h in deployment.targets
             if not services or set(services) & set(deployment.desired.hosts[h].services)]
    with site_lock(deployment.controller_dir, "stop"):
        _echo_lines(executor.run(["stop"], {h: StepRequest(services=list(services or [])) for h in hosts},
                                 stop_on_failure=False), echo)


def destroy(deployment: Deployment, executor: Executor, echo: Echo) -> None:
    """Remove every mortar container, named volume and the site state on the hosts."""
    import shutil

    with site_lock(deployment.controller_dir, "destroy"):
        _echo_lines(executor.run(["destroy"], {h: StepRequest() for h in deployment.targets},
                                 stop_on_failure=False), echo)
    if deployment.targets != list(deployment.desired.hosts) and deployment.releases.path.exists():
        def forget(data: dict) -> None:
            for host in deployment.targets:
                data.get("hosts", {}).pop(host, None)

        deployment.releases.update(forget)
    if deployment.targets == list(deployment.desired.hosts) and deployment.controller_dir.exists():
        shutil.rmtree(deployment.controller_dir)
        echo(f"removed {deployment.controller_dir}")
        # Nothing of any site left here: the state directory goes too (the agent zip is remade on demand).
        state = deployment.state_dir
        sites = state / "sites"
        if sites.is_dir() and not any(sites.iterdir()):
            sites.rmdir()
            shutil.rmtree(state / "lib", ignore_errors=True)
            leftovers = [p for p in state.iterdir() if p.name not in AGENT_FILES] if state.is_dir() else []
            if not leftovers:
                shutil.rmtree(state, ignore_errors=True)


def prechecks(deployment: Deployment, executor: Executor) -> dict[str, list[Check]]:
    result = executor.run(["prechecks"], {h: StepRequest() for h in deployment.targets}, stop_on_failure=False)
    checks: dict[str, list[Check]] = {h: [] for h in deployment.targets}
    for report in result.reports:
        if report.failure is not None:
            checks[report.host] = [Check(False, f"{report.host}: {report.failure.message}", report.failure.fix)]
        else:
            checks[report.host] = report.checks
    return checks

