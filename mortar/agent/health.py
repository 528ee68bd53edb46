"""Waiting, bounded, until a started container serves (its own healthcheck passes)."""

from __future__ import annotations

import time

from mortar.agent.errors import StepError
from mortar.agent.masking import redact
from mortar.agent.wire import Container
from mortar.engine.protocol import Engine

# Seconds before the second probe; each later wait is half as long again, up to SLOWEST times
# POLL. Every probe is an exec in the container: a container that takes a minute to start is
# probed about 25 times, not 120, and one that serves at once is still seen at once.
POLL = 0.5
SLOWEST = 6


def logs_tail(engine: Engine, name: str, secrets: list[str], lines: int = 20) -> str:
    try:
        return redact(engine.logs(name, tail=lines), secrets).strip()
    except Exception:  # noqa: BLE001 - the container may be gone; the failure is reported anyway
        return ""


def probe(engine: Engine, container: Container) -> tuple[int, str]:
    """The container's own health test, run now, bounded by its timeout (a test against a frozen
    peer would otherwise hang); exit code and output. The container must have a healthcheck."""
    check = container.healthcheck
    assert check is not None
    return engine.exec(container.name, ["timeout", str(check.timeout), "sh", "-c", check.test])


def wait_healthy(engine: Engine, container: Container, timeout: float, secrets: list[str]) -> float:
    """Seconds until the container's health test passed; a StepError when it exited, crash-loops
    or did not pass within TIMEOUT. Runs the test itself, faster than the engine's interval, at
    growing intervals (POLL)."""
    started = time.monotonic()
    delay = POLL
    first = engine.container(container.name)
    restarts = first.restart_count if first is not None else 0
    last = ""
    while True:
        info = engine.container(container.name)
        if info is None:
            raise StepError(f"container {container.name} disappeared while starting", service=container.service,
                            target=container.name, fix="run the command again")
        if info.status in ("exited", "dead"):
            raise StepError(f"container {container.name} exited (code {info.exit_code})",
                            service=container.service, target=container.name,
                            log_tail=logs_tail(engine, container.name, secrets),
                            fix=f"see `docker logs {container.name}`, fix the cause and run the command again")
        # The restart policy hides a crash loop behind "restarting" (and between two runs the
        # engine shows a running container with code 0): fail fast on it, with the log of the
        # runs before this one, where the cause is.
        if info.restart_count - restarts >= 2:
            raise StepError(f"container {container.name} keeps exiting: the engine restarted it "
                            f"{info.restart_count - restarts} times while it started", service=container.service,
                            target=container.name, log_tail=logs_tail(engine, container.name, secrets, lines=80),
                            fix=f"see `docker logs {container.name}` (every run's output), fix the cause and run "
                                "the command again")
        if container.healthcheck is None:
            return time.monotonic() - started
        if info.status == "running":
            code, output = probe(engine, container)
            if code == 0:
                return time.monotonic() - started
            last = output.strip().splitlines()[-1] if output.strip() else f"exit {code}"
        if time.monotonic() - started > timeout:
            raise StepError(f"container {container.name} does not serve after {timeout:.0f} s "
                            f"(last health check: {redact(last, secrets)[:200]})", service=container.service,
                            target=container.name, log_tail=logs_tail(engine, container.name, secrets),
                            fix=f"see `docker logs {container.name}`, then run the command again",
                            kind="timeout")
        time.sleep(delay)
        delay = min(delay * 1.5, POLL * SLOWEST)
