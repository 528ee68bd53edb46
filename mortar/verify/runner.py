"""`mortar verify`: the checks of every enabled service, through the deployed APIs.

Each service lists its checks in its `verify:` section (a kind from `checks.KINDS` and its
parameters); this runs them in service order, prints one row each, and cleans up what
they created.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mortar.verify.checks import KINDS, Context


@dataclass
class Result:
    check: str
    ok: bool
    seconds: float
    detail: str


def run_checks(deployment: Any, echo: Callable[[str], None], keep_failed: bool = False) -> bool:
    checks = deployment.desired.checks
    if not checks:
        echo("no enabled service declares verify checks")
        return True
    ctx = Context(deployment, keep_failed)
    results: list[Result] = []
    try:
        for check in checks:
            kind = KINDS[check.check]
            if not kind.applies(ctx, check.params):
                continue
            started = time.monotonic()
            try:
                detail, ok = kind.run(ctx, check.params), True
            except Exception as exc:  # noqa: BLE001 - every failure is a row in the table
                detail, ok = f"{type(exc).__name__}: {exc}"[:800], False
            results.append(Result(check.name, ok, time.monotonic() - started, detail))
    finally:
        ctx.cleanup()
    width = max((len(r.check) for r in results), default=5)
    echo(f"{'check':<{width}}  result  seconds  detail")
    for r in results:
        echo(f"{r.check:<{width}}  {'PASS' if r.ok else 'FAIL':6}  {r.seconds:7.1f}  {r.detail}")
    passed = sum(r.ok for r in results)
    echo(f"{passed} passed, {len(results) - passed} failed")
    return passed == len(results)
