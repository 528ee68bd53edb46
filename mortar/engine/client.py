"""The one way mortar talks to the local Docker Engine."""

from __future__ import annotations

from mortar.errors import EngineError


def engine_client(timeout: int = 600):
    import docker

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the same to the operator
        raise EngineError(f"the Docker Engine does not answer ({exc})",
                          fix="run `mortar engine setup` (as root) to install and start it") from exc
    return client
