"""The container engine: mortar's seam to it (`protocol`), the Docker adapter, and its set-up."""

from __future__ import annotations

from mortar.engine.protocol import Engine


def connect(timeout: int = 600) -> Engine:
    """This machine's engine, answering; an EngineError with the fix when it does not."""
    from mortar.engine.dockerengine import DockerEngine

    return DockerEngine.connect(timeout=timeout)
