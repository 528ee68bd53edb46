"""Executors: how a step reaches the hosts.

Both run the same host-side code (`converge`, `prechecks.host_checks`): the local
executor calls it in threads against this machine's engine; the Ansible executor ships it
to every host and calls it there through the `mortar.deploy.host` module, one task per
step across all hosts. The runner decides *what* to do; an executor only says *where*.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mortar.deploy import converge
from mortar.deploy.converge import DeployError, StepReport
from mortar.deploy.prechecks import Check, host_checks
from mortar.errors import MortarError

if TYPE_CHECKING:
    from mortar.deploy.runner import Deployment

LOG_DIR = Path("/var/log/mortar/deploy")
# Steps of a deploy, in order; the three apply phases are synchronised across hosts.
APPLY_PHASES = ("before", "containers", "after")


@dataclass
class HostFailure:
    host: str
    step: str
    message: str


@dataclass
class StepResult:
    reports: list[StepReport] = field(default_factory=list)
    failures: list[HostFailure] = field(default_factory=list)
    tasks: int = 0  # Ansible tasks run on hosts (0 for the local executor)

    def raise_for_failures(self) -> None:
        if not self.failures:
            return
        lines = [f"{f.host}: {f.step}: {f.message}" for f in self.failures]
        raise DeployError("failed on " + ", ".join(sorted({f.host for f in self.failures})) + ":\n"
                          + "\n".join(lines),
                          fix="fix the cause and run the same command again: hosts that succeeded are kept as they "
                              "are and a re-run converges")


class Executor(Protocol):
    name: str
    tasks: int

    def plan(self, hosts: list[str]) -> StepResult: ...

    def prechecks(self, hosts: list[str]) -> dict[str, list[Check]]: ...

    def prepare(self, hosts: list[str]) -> StepResult: ...

    def apply(self, hosts: list[str], services: list[str], force_jobs: list[str],
              echo: Callable[[str], None]) -> StepResult: ...

    def pull(self, hosts: list[str]) -> StepResult: ...

    def stop(self, hosts: list[str]) -> StepResult: ...

    def destroy(self, hosts: list[str]) -> StepResult: ...


def _run_on_hosts(hosts: list[str], step: str, work: Callable[[str], StepReport]) -> StepResult:
    result = StepResult()
    if not hosts:
        return result
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        futures = {host: pool.submit(work, host) for host in hosts}
    for host, future in futures.items():
        error = future.exception()
        if error is None:
            result.reports.append(future.result())
        elif isinstance(error, MortarError) or type(error).__module__.startswith("docker"):
            result.failures.append(HostFailure(host, step, str(error)))
        else:
            raise error
    return result


class LocalExecutor:
    """Every host of the inventory is this machine: its engine, in threads."""

    name = "local"

    def __init__(self, deployment: Deployment, engine=None) -> None:
        if engine is None:
            from mortar.engine.client import engine_client

            engine = engine_client()
        self.deployment = deployment
        self.engine = engine
        self.tasks = 0

    def _state(self, host: str):
        return self.deployment.desired.hosts[host]

    def plan(self, hosts: list[str]) -> StepResult:
        d = self.deployment
        return _run_on_hosts(hosts, "plan", lambda h: converge.plan_host(self.engine, self._state(h), d.state_dir,
                                                                          d.desired.secrets))

    def prechecks(self, hosts: list[str]) -> dict[str, list[Check]]:
        return {host: host_checks(self._state(host)) for host in hosts}

    def prepare(self, hosts: list[str]) -> StepResult:
        d = self.deployment
        return _run_on_hosts(hosts, "prepare", lambda h: converge.prepare_host(
            self.engine, self._state(h), d.state_dir, d.desired.secrets))

    def apply(self, hosts: list[str], services: list[str], force_jobs: list[str],
              echo: Callable[[str], None]) -> StepResult:
        d = self.deployment
        total = StepResult()
        for phase in APPLY_PHASES:
            step = _run_on_hosts(hosts, phase, lambda h, p=phase: converge.apply_phase(  # type: ignore[misc]
                self.engine, self._state(h), services, p, force_jobs, d.state_dir, d.desired.secrets, d.timeout,
                LOG_DIR))
            for report in step.reports:
                if report.changed:
                    echo(report.line())
            total.reports += step.reports
            total.failures += step.failures
            if step.failures:
                break
        return total

    def pull(self, hosts: list[str]) -> StepResult:
        return _run_on_hosts(hosts, "pull", lambda h: converge.pull_images(self.engine, self._state(h)))

    def stop(self, hosts: list[str]) -> StepResult:
        order = self.deployment.desired.order
        return _run_on_hosts(hosts, "stop", lambda h: converge.stop_host(self.engine, self._state(h), order))

    def destroy(self, hosts: list[str]) -> StepResult:
        d = self.deployment
        # Every local host is the same engine: destroy once.
        result = _run_on_hosts(hosts[:1], "destroy", lambda h: converge.destroy_host(
            self.engine, self._state(h).site, d.state_dir))
        for report in result.reports:
            report.host = hosts[0]
        return result


def is_local(name: str, variables: dict[str, str]) -> bool:
    address = variables.get("ansible_host", name)
    return variables.get("ansible_connection") == "local" or address in ("localhost", "127.0.0.1", "::1")


def executor_for(deployment: Deployment, choice: str = "auto", engine=None) -> Executor:
    """`auto`: the local executor when every host is this machine, Ansible otherwise."""
    hosts = deployment.inventory.hosts.values()
    if choice == "local" or (choice == "auto" and all(is_local(h.name, h.vars) for h in hosts)):
        remote = [h.name for h in hosts if not is_local(h.name, h.vars)]
        if remote:
            raise MortarError(f"host {remote[0]} is not this machine; the local executor cannot reach it",
                              file=str(deployment.inventory.path), key=remote[0],
                              fix="use --executor ansible (the default for multi-host inventories)")
        return LocalExecutor(deployment, engine)
    from mortar.deploy.ansible import AnsibleExecutor

    return AnsibleExecutor(deployment)


def env_executor() -> str:
    return os.environ.get("MORTAR_EXECUTOR", "auto")
