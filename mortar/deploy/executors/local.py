"""The local executor: every host of the inventory is this machine; steps run in threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from mortar.agent import steps
from mortar.agent.wire import StepReport, StepRequest
from mortar.deploy.executors import Progress, StepResult
from mortar.engine.protocol import Engine

if TYPE_CHECKING:
    from mortar.deploy.orchestrator import Deployment


class LocalExecutor:
    name = "local"

    def __init__(self, deployment: Deployment, engine: Engine | None = None) -> None:
        self.deployment = deployment
        self._engine = engine
        self._lock = threading.Lock()
        self.tasks = 0

    def connect(self) -> Engine:
        with self._lock:
            if self._engine is None:
                from mortar.engine import connect

                self._engine = connect()
            return self._engine

    def run(self, names: list[str], requests: dict[str, StepRequest], progress: Progress | None = None,
            *, stop_on_failure: bool = True) -> StepResult:
        d = self.deployment
        result = StepResult()
        hosts = list(requests)
        for name in names:
            def one(host: str, step: str = name) -> StepReport:
                def live(line: str) -> None:
                    if progress is not None:
                        progress(f"[{host}] {step:10} {line}")

                return steps.dispatch(step, requests[host], d.host_state(host), d.state_dir, d.log_dir,
                                      self.connect, live)

            with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
                reports = list(pool.map(one, hosts))
            result.reports += reports
            if stop_on_failure and any(r.failure for r in reports):
                break
        return result
