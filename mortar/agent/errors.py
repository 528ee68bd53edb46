"""How a step fails on a host: one error type carrying what the operator needs to act."""

from __future__ import annotations

import json

from mortar.agent.wire import Failure
from mortar.engine.protocol import EngineTimeout
from mortar.errors import EngineError, MortarError


class StepError(MortarError):
    """A step failed on a host: names the service, the container or job, the last log lines."""

    exit_code = 1

    def __init__(self, message: str, *, service: str = "", target: str = "", log_tail: str = "",
                 fix: str | None = None, kind: str = "permanent") -> None:
        super().__init__(message, fix=fix)
        self.service = service
        self.target = target
        self.log_tail = log_tail
        self.kind = kind


def failure_of(exc: BaseException, host: str, step: str) -> Failure | None:
    """EXC as a Failure, or None when it is a bug in mortar (which keeps its traceback)."""
    if isinstance(exc, StepError):
        return Failure(host, step, exc.message, exc.service, exc.target, exc.log_tail, exc.fix or "", exc.kind)
    if isinstance(exc, EngineTimeout):
        return Failure(host, step, exc.message, fix=exc.fix or "check the engine and run the command again",
                       kind="timeout")
    if isinstance(exc, EngineError):
        return Failure(host, step, exc.message, fix=exc.fix or "check the engine (`docker info`) and run the "
                                                               "command again", kind="temporary")
    if isinstance(exc, MortarError):
        return Failure(host, step, str(exc), fix=exc.fix or "", kind="permanent")
    if isinstance(exc, PermissionError):
        return Failure(host, step, f"permission denied: {exc.filename or exc}",
                       fix="run mortar as root (hosts: ansible_user root or ansible_become=true)")
    if isinstance(exc, json.JSONDecodeError):
        return Failure(host, step, f"a state file is not valid JSON ({exc.msg})",
                       fix="move the file aside and run the command again")
    if isinstance(exc, OSError):
        return Failure(host, step, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
                       fix="check the host's disk and permissions, then run the command again", kind="temporary")
    if isinstance(exc, TimeoutError):
        return Failure(host, step, f"timed out: {exc}", fix="run the command again", kind="timeout")
    return None
