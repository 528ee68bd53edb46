"""Executors: how the agent's steps reach the hosts.

Both dispatch through the agent's one step registry (`mortar.agent.steps`): the local
executor calls it in threads against this machine's engine; the Ansible executor ships the
agent to every host and calls it there, one task per step across all hosts. The
orchestrator decides *what* to run; an executor only says *where*. Both stop every later
step once a host fails one, and both report a failure the same way (a wire `Failure`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from mortar.agent.errors import StepError
from mortar.agent.wire import Failure, StepReport, StepRequest
from mortar.errors import MortarError

if TYPE_CHECKING:
    from mortar.deploy.orchestrator import Deployment

Progress = Callable[[str], None]


@dataclass
class StepResult:
    reports: list[StepReport] = field(default_factory=list)
    tasks: int = 0  # Ansible tasks run on hosts (0 for the local executor)

    @property
    def failures(self) -> list[Failure]:
        return [r.failure for r in self.reports if r.failure is not None]

    def of(self, step: str) -> list[StepReport]:
        return [r for r in self.reports if r.step == step]

    def raise_for_failures(self) -> None:
        failures = self.failures
        if not failures:
            return
        hosts = ", ".join(sorted({f.host for f in failures}))
        fixes = sorted({f.fix for f in failures if f.fix})
        raise StepError(f"failed on {hosts}:\n" + "\n".join(f.text() for f in failures),
                        fix="; ".join(fixes) + ("; " if fixes else "") + "hosts that succeeded are kept as they "
                                                                         "are, and running the same command again "
                                                                         "converges")


class Executor(Protocol):
    name: str
    tasks: int

    def run(self, steps: list[str], requests: dict[str, StepRequest], progress: Progress | None = None,
            *, stop_on_failure: bool = True) -> StepResult:
        """Each step on every host of REQUESTS, a step ending everywhere before the next begins;
        with stop_on_failure, no later step runs anywhere once a host fails one."""
        ...


def is_local(name: str, variables: dict[str, str]) -> bool:
    address = variables.get("ansible_host", name)
    return variables.get("ansible_connection") == "local" or address in ("localhost", "127.0.0.1", "::1")


def executor_for(deployment: Deployment, choice: str = "auto", engine=None) -> Executor:
    """`auto`: the local executor when every host is this machine, Ansible otherwise."""
    hosts = deployment.inventory.hosts.values()
    # This machine's one engine and state directory cannot be two hosts: each would remove the other's containers.
    here = [h.name for h in hosts if h.name in deployment.desired.hosts and is_local(h.name, h.vars)]
    if len(here) > 1:
        raise MortarError(f"hosts {here[0]} and {here[1]} are both this machine, which can only be one host",
                          file=str(deployment.inventory.path), key=here[1],
                          fix="name this machine once in the inventory, under every group it belongs to")
    if choice == "local" or (choice == "auto" and all(is_local(h.name, h.vars) for h in hosts)):
        remote = [h.name for h in hosts if not is_local(h.name, h.vars)]
        if remote:
            raise MortarError(f"host {remote[0]} is not this machine; the local executor cannot reach it",
                              file=str(deployment.inventory.path), key=remote[0],
                              fix="use --executor ansible (the default for multi-host inventories)")
        from mortar.deploy.executors.local import LocalExecutor

        return LocalExecutor(deployment, engine)
    from mortar.deploy.executors.ansible import AnsibleExecutor

    return AnsibleExecutor(deployment)


def env_executor() -> str:
    return os.environ.get("MORTAR_EXECUTOR", "auto")
