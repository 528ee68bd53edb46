"""Kubernetes probes from the healthchecks the images carry (service.yaml's `healthcheck:`).

- `healthcheck_curl URL` and `healthcheck_port PORT ... --http PATH`: an HTTP GET of that
  path on that port (readiness and liveness);
- `healthcheck_port PORT ...` otherwise: a TCP connection to the port (readiness and liveness);
- `healthcheck_established PROCESS PORT`, and any other command: the command itself, run in
  the container, for readiness only, so that a peer's outage (the message queue, say) takes
  a pod out of its Service but never restarts it.

Checks that decide liveness get a startup probe too (the start period, or the site's health
timeout when longer); interval, timeout and retries carry over (readiness is asked at least
every READINESS_PERIOD seconds).
"""

from __future__ import annotations

import shlex
import urllib.parse
from typing import Any

from mortar.agent.wire import Healthcheck

# A liveness probe gives a wedged process this many failed periods before the restart.
LIVENESS_FAILURES = 6
# Readiness is asked at least this often (seconds): it decides when a pod joins its Service
# and when mortar's apply goes on, so it cannot wait a whole health interval.
READINESS_PERIOD = 10


def _option(words: list[str], name: str) -> str | None:
    for i, word in enumerate(words):
        if word == name and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def action(test: str) -> tuple[dict[str, Any], bool]:
    """The probe's action for TEST, and whether it may also decide liveness."""
    try:
        words = shlex.split(test)
    except ValueError:
        words = []
    if len(words) >= 2 and words[0] == "healthcheck_curl":
        url = urllib.parse.urlsplit(words[1])
        port = url.port or (443 if url.scheme == "https" else 80)
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        return {"httpGet": {"path": target, "port": port, "scheme": url.scheme.upper() or "HTTP"}}, True
    if len(words) >= 2 and words[0] == "healthcheck_port" and words[1].isdigit():
        port = int(words[1])
        path = _option(words, "--http")
        if path is not None:
            return {"httpGet": {"path": path, "port": port}}, True
        return {"tcpSocket": {"port": port}}, True
    return {"exec": {"command": ["/bin/sh", "-c", test]}}, False


def probes(check: Healthcheck | None, start_timeout: int = 180) -> dict[str, dict[str, Any]]:
    """readinessProbe, and for checks that may decide liveness a livenessProbe and a startupProbe
    (the container has START_TIMEOUT seconds, or its start period when longer, to serve once)."""
    if check is None:
        return {}
    what, live = action(check.test)
    interval = check.every()
    ready = {"periodSeconds": min(interval, READINESS_PERIOD), "timeoutSeconds": check.timeout}
    found = {"readinessProbe": {**what, **ready, "failureThreshold": check.retries}}
    if live:
        found["livenessProbe"] = {**what, "periodSeconds": interval, "timeoutSeconds": check.timeout,
                                  "failureThreshold": max(check.retries, LIVENESS_FAILURES)}
        every = 2
        found["startupProbe"] = {**what, "periodSeconds": every, "timeoutSeconds": check.timeout,
                                 "failureThreshold": -(-max(check.start_period, start_timeout) // every)}
    return found
