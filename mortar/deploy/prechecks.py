"""`mortar prechecks`: is everything in place for a deploy? Changes nothing."""

from __future__ import annotations

import errno
import os
import shutil
import socket
from collections.abc import Callable

from mortar.deploy.converge import MANAGED

MIN_FREE_DISK_GB = 5
MIN_AVAILABLE_MEMORY_GB = 2


def port_in_use(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def available_memory_gb() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def run_prechecks(deployment, echo: Callable[[str], None]) -> int:
    from mortar.engine.client import engine_client

    failures = 0

    def check(ok: bool, what: str, fix: str = "") -> None:
        nonlocal failures
        echo(f"{'ok  ' if ok else 'FAIL'} {what}" + ("" if ok or not fix else f"  -> {fix}"))
        failures += 0 if ok else 1

    echo(f"ok   site: globals.yml, passwords.yml and inventory valid ({len(deployment.desired.order)} services)")
    try:
        engine = engine_client(timeout=10)
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        check(False, f"engine reachable ({exc})", "run `mortar engine setup`")
        return failures
    check(True, "engine reachable")
    ours = {c.name: c for c in engine.containers.list(all=True, filters={"label": MANAGED})}
    import docker.errors

    for host, state in deployment.desired.hosts.items():
        refs = sorted({c.image for c in state.containers()})
        missing = []
        for ref in refs:
            try:
                engine.images.get(ref)
            except docker.errors.ImageNotFound:
                try:
                    engine.api.inspect_distribution(ref)
                except docker.errors.APIError:
                    missing.append(ref)
        check(not missing, f"{host}: {len(refs)} images present or pullable" +
              (f"; missing: {', '.join(missing)}" if missing else ""), "run `mortar build --profile core`")
        busy = []
        for container in state.containers():
            running = ours.get(container.name)
            if running is not None and running.status == "running":
                continue
            for port in container.ports:
                if port_in_use(state.address, port):
                    busy.append(f"{state.address}:{port} ({container.name})")
        check(not busy, f"{host}: service ports free" + (f"; in use: {', '.join(busy)}" if busy else ""),
              "stop whatever listens there, or change api_address")
    free_gb = shutil.disk_usage("/var/lib/docker" if os.path.isdir("/var/lib/docker") else "/").free / 1e9
    check(free_gb >= MIN_FREE_DISK_GB, f"disk: {free_gb:.0f} GB free for images and volumes (need {MIN_FREE_DISK_GB})",
          "free some disk space")
    memory = available_memory_gb()
    check(memory >= MIN_AVAILABLE_MEMORY_GB, f"memory: {memory:.1f} GiB available (need {MIN_AVAILABLE_MEMORY_GB})",
          "stop other workloads")
    return failures
