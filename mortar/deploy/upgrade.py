"""`mortar upgrade`: move a running site from its OpenStack series to a supported next one.

Preflight first, before anything changes: the path is one mortar supports (N -> N+1, or
SLURP -> SLURP), every host on it runs the series the upgrade starts from, every image of the
new series is present or pullable, the running series has finished its own online data
migrations (the catalogue's `before_upgrade` jobs, run from the running series' images), and
each service's own upgrade check (the catalogue's `phase: check` jobs: nova-status,
placement-status, ...) passes when run from the new image against the running databases.
Overrides that name an option the new series removed are reported. Then the upgrade is a
deploy of the new series: the catalogue's levels put infrastructure first and each service
after what it uses; a service's jobs (its database migrations, then its online data
migrations after its containers run the new code) run because their image changed, and each
job's record proves it ran, so an upgrade killed at any point carries on from there when it
is run again. The series each host runs is recorded only when the whole upgrade is done; until
then deploy and reconfigure refuse to run, so nothing moves a half-migrated database back to
older code. What a host still on the older series holds back (a template rendering the oldest
series some host runs: nova's compute RPC pin) is converged on every moved host once the last
older host is gone, by this upgrade or the one (with --limit) that moves that host.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mortar.agent.wire import StepRequest
from mortar.deploy.executors import Executor
from mortar.deploy.orchestrator import Deployment, Echo, Plan, deploy, make_plan, prechecks, print_plan
from mortar.errors import MortarError
from mortar.releases import releases
from mortar.site.removed_options import removed_in_overrides


@dataclass
class UpgradePath:
    target: str
    running: dict[str, str]  # target host -> the series it runs now
    hosts: list[str] = field(default_factory=list)  # target hosts still to move

    @property
    def starts_from(self) -> str:
        return next(iter(self.running[h] for h in self.hosts), self.target)


def upgrade_path(deployment: Deployment) -> UpgradePath:
    """Which target hosts move, and from which series; refuses an unsupported path."""
    target = deployment.site.release
    known = releases()
    recorded = deployment.releases.read()
    running: dict[str, str] = recorded.get("hosts", {})
    underway = recorded.get("upgrade")
    if underway and underway["to"] != target:
        raise MortarError(f"an upgrade from {underway['from']} to {underway['to']} is under way", key="--release",
                          fix=f"finish it first: mortar upgrade --release {underway['to']}")
    unknown = [h for h in deployment.targets if h not in running]
    if unknown:
        raise MortarError(f"mortar has no record of the series {', '.join(unknown)} run(s)",
                          fix="deploy them first (mortar deploy, with openstack_release set to the series they "
                              "run); an upgrade moves a deployed site")
    path = UpgradePath(target, {h: running[h] for h in deployment.targets})
    path.hosts = [h for h in deployment.targets if running[h] != target]
    if underway:
        # Hosts the interrupted run had already moved show the target; they converge again.
        path.hosts = list(deployment.targets)
        path.running = {h: underway["from"] for h in deployment.targets}
    starts = sorted({path.running[h] for h in path.hosts})
    if len(starts) > 1:
        raise MortarError(f"the hosts to upgrade run different series ({', '.join(starts)})", key="--limit",
                          fix="upgrade the hosts of one series at a time with --limit")
    if not starts:
        return path
    current = starts[0]
    names = known.names()
    if names.index(target) < names.index(current):
        raise MortarError(f"{current} -> {target} is a downgrade, which OpenStack's databases do not support",
                          key="--release", fix=f"choose a later series than {current}")
    if target not in known.upgrade_targets(current):
        chain = known.upgrade_path(current, target)
        steps = " -> ".join(chain)
        raise MortarError(
            f"{current} -> {target} is not a supported upgrade (mortar upgrades one series at a time, or from one "
            f"SLURP series to the next)", key="--release",
            fix=f"go {steps}: mortar upgrade --release {chain[1]} first" if chain else "choose a later series")
    return path


# The same site at another series (the one it runs): its deployment and an executor for it.
Running = Callable[[str], tuple[Deployment, Executor]]
# The whole site (every host, no --limit) loaded again: templates read the series each host runs.
Reload = Callable[[], tuple[Deployment, Executor]]


def preflight(deployment: Deployment, executor: Executor, echo: Echo, running: Running | None = None) -> UpgradePath:
    path = upgrade_path(deployment)
    if not path.hosts:
        return path
    # Every image of the new series present or pullable on every host, and the rest of prechecks
    # (the running site's own ports count as free).
    failed = [c for checks in prechecks(deployment, executor).values() for c in checks if not c.ok]
    if failed:
        raise MortarError("preflight failed:\n" + "\n".join(f"  {c.line()}" for c in failed),
                          fix="nothing was changed; fix the failures above and run mortar upgrade again")
    report_removed_options(deployment, path, echo)
    underway = deployment.releases.get("upgrade")
    if running is not None and not underway:
        # The running series finishes its own online data migrations, from its own images: the
        # next series' code may refuse rows it would have migrated. (Not when resuming: some
        # databases already run the new schema, which the old code must not touch.)
        old, old_executor = running(path.starts_from)
        _must_pass(old_executor, {h: [j.name for j in old.desired.hosts[h].jobs() if j.before_upgrade]
                                  for h in path.hosts if h in old.desired.hosts}, echo,
                   f"{path.starts_from} did not finish its online data migrations",
                   "nothing was changed; do what the log named above asks and run mortar upgrade again")
    # Each service's own upgrade check, from the new series' image, against the running data.
    _must_pass(executor, {h: [j.name for j in deployment.desired.hosts[h].jobs() if j.phase == "check"]
                          for h in path.hosts}, echo,
               "a service's upgrade check refused the new series",
               "nothing was changed; do what the check asks (its full log is named above) and run mortar upgrade "
               "again")
    echo(f"preflight passed: {path.starts_from} -> {path.target} on {', '.join(path.hosts)}")
    return path


def _must_pass(executor: Executor, jobs: dict[str, list[str]], echo: Echo, refused: str, fix: str) -> None:
    """Run JOBS (host -> job names) through the agent's checks step; any failure refuses the upgrade."""
    requests = {h: StepRequest(jobs=names) for h, names in jobs.items() if names}
    if not requests:
        return
    result = executor.run(["checks"], requests, echo, stop_on_failure=False)
    if result.failures:
        raise MortarError(f"preflight failed: {refused}:\n" + "\n".join(f.text() for f in result.failures), fix=fix)


def report_removed_options(deployment: Deployment, path: UpgradePath, echo: Echo) -> None:
    """Overrides that name an option the new series removed: the upgrade goes on (oslo.config
    ignores such an option), and the operator is told which setting stops counting."""
    files = [(name, f.name, host, f.main) for host in path.hosts
             for name, service in deployment.desired.hosts[host].services.items()
             for container in service.containers for f in container.files if f.merge == "ini"]
    for removed in removed_in_overrides(deployment.site.config_dir, files, path.starts_from, path.target):
        echo(f"note: {removed.line()}")


def upgrade(deployment: Deployment, executor: Executor, echo: Echo, *, plan_only: bool = False,
            running: Running | None = None, reload: Reload | None = None) -> Plan | None:
    path = preflight(deployment, executor, echo, None if plan_only else running)
    if not path.hosts:
        # An upgrade stopped between its last host and the release of what that host held back
        # finishes here; otherwise this changes nothing.
        lifted = release_held_back(reload, path.target, echo) if reload and not plan_only else None
        if lifted is None:
            echo(f"Nothing to do: {', '.join(deployment.targets)} already run(s) {path.target}.")
        return lifted
    if plan_only:
        plan = make_plan(deployment, executor)
        for host in path.hosts:
            echo(f"host {host}: {path.running[host]} -> {path.target}")
        print_plan(plan, deployment, echo)
        return plan

    def start(data: dict) -> None:
        data["upgrade"] = {"from": path.starts_from, "to": path.target}

    def finish(data: dict) -> None:
        data.pop("upgrade", None)

    deployment.releases.update(start)
    plan = deploy(deployment, executor, echo, "upgrade")
    deployment.releases.update(finish)
    if reload is not None:
        release_held_back(reload, path.target, echo)
    lagging = sorted({h for h, s in deployment.releases.get("hosts", default={}).items() if s != path.target})
    if lagging:
        echo(f"note: {', '.join(lagging)} still run(s) {path.starts_from}: upgrade them with --limit; until "
             f"then what talks to them speaks {path.starts_from}'s RPC versions")
    return plan


def release_held_back(reload: Reload, target: str, echo: Echo) -> Plan | None:
    """Converge every host that runs TARGET against the site as recorded now. While a host runs
    an older series, templates that render the oldest series (nova's compute RPC pin) are
    rendered for it and nothing here changes; once the last one moved, what read them is
    restarted on every host, inside --limit or not (they all run TARGET already)."""
    whole, executor = reload()
    recorded = whole.releases.get("hosts", default={})
    if any(recorded.get(h, target) != target for h in whole.targets):
        return None
    whole.targets = [h for h in whole.targets if h in recorded]
    if not whole.targets:
        return None
    if make_plan(whole, executor).empty:
        return None
    echo(f"every host runs {target} now: restarting what was held back for older hosts (RPC version pins)")
    return deploy(whole, executor, echo, "upgrade")
