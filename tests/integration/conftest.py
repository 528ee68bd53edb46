"""Fixtures for tests on the real Docker Engine.

Images are built under the test namespace `mortar-test` with tag `it`; because images are
content-addressed, ones that already exist locally under any tag are reused, not rebuilt.
Only the `mortar-test/*` tags and the containers these tests label are removed afterwards.
"""

from __future__ import annotations

import os
import re
import socket
from contextlib import contextmanager
from pathlib import Path

import pytest

from mortar.builder.builder import Builder, BuildOptions, ImageTree

NAMESPACE = os.environ.get("MORTAR_TEST_NAMESPACE", "mortar-test")
TAG = "it"
TEST_LABEL = "org.mortar.test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Figures a test measured on the way (seconds of an apply, ...): printed at the end of the
# session, so a CI log carries them. Tests only report them; none asserts a duration.
MEASURED: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter) -> None:
    if MEASURED:
        terminalreporter.section("measured")
        for key, value in MEASURED.items():
            terminalreporter.write_line(f"{key}: {value}")


ENGINE_LOCK = os.environ.get("MORTAR_TEST_ENGINE_LOCK", "")  # set by scripts/test.sh for its two sessions


@pytest.fixture(scope="session", autouse=True)
def sharing_the_engine():
    """A session that runs beside another holds this machine's engine shared: a test that
    restarts the engine waits until it is alone (see `engine_alone`)."""
    if not ENGINE_LOCK or os.environ.get("MORTAR_TEST_SHARES_ENGINE") != "1":
        yield
        return
    import fcntl

    with open(ENGINE_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        yield


@contextmanager
def engine_shared():
    """Use this machine's engine beside the other sessions (none restarts it meanwhile): for a
    session that needs it only now and then (the Kubernetes cluster has an engine of its own)."""
    if not ENGINE_LOCK:
        yield
        return
    import fcntl

    with open(ENGINE_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def engine_alone(timeout: float = 3600):
    """Hold the engine alone (no other test session runs on it) while restarting it."""
    if not ENGINE_LOCK:
        yield
        return
    import fcntl
    import time

    with open(ENGINE_LOCK, "a") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "the other test session kept the engine for an hour"
                time.sleep(5)
        yield


@pytest.fixture(scope="session")
def engine():
    """mortar's own seam to the engine: what mortar's code is handed."""
    from mortar.engine import connect

    try:
        return connect()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"integration tests need the Docker Engine: {exc}")


@pytest.fixture(scope="session")
def docker(engine):
    """The docker SDK, for tests to look at what mortar did (and to clean up what they made)."""
    import docker as sdk

    client = sdk.from_env(timeout=600)
    yield client
    for container in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        container.remove(force=True)
    if os.environ.get("MORTAR_KEEP_TEST_IMAGES") == "1":  # a developer's next run reuses them
        return
    for image in client.images.list():
        for ref in image.tags:
            if ref.startswith(f"{NAMESPACE}/") or "/" + NAMESPACE + "/" in ref:
                client.images.remove(ref, noprune=False)


def build(engine, names: list[str], logs: Path, **overrides):
    from mortar.builder.baseimage import ensure_base_image

    options = BuildOptions(namespace=NAMESPACE, tag=overrides.pop("tag", TAG), logs_dir=logs, **overrides)
    tree = ImageTree(options)
    base_id = ensure_base_image(engine, options.base_ref, options.base, options.base_image is None)
    tree.compute_identities(base_id)
    builder = Builder(engine, tree)
    return builder, builder.run(names)


@pytest.fixture(scope="session")
def keystone_build(engine, docker, tmp_path_factory):
    logs = tmp_path_factory.mktemp("build-logs")
    builder, results = build(engine, ["keystone"], logs)
    failed = {n: r.error for n, r in results.items() if r.status not in ("done", "cached")}
    assert not failed, failed
    return builder, results


def run_container(docker, image: str, command, *, user: str | None = None, volumes=None, entrypoint=None):
    """Run to completion; returns (exit code, combined output)."""
    container = docker.containers.run(image, command, detach=True, network_mode="host", volumes=volumes or {},
                                      user=user or "", labels={TEST_LABEL: "1"},
                                      **({"entrypoint": entrypoint} if entrypoint is not None else {}))
    try:
        code = container.wait(timeout=300)["StatusCode"]
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    return code, output


def site_env(site: dict) -> dict[str, str]:
    """The environment a test's mortar runs in: its own state and log directories, live output."""
    import os

    return dict(os.environ, MORTAR_STATE_DIR=str(site["state"]), MORTAR_LOG_DIR=str(site["log"]),
                PYTHONUNBUFFERED="1")


def failure(what: str, proc) -> str:
    """Why PROC failed, the telling lines first (CI shows only the head of a long message): the
    FAIL rows and the error message, then the whole output."""
    output = proc.stdout + proc.stderr
    telling = [line for line in output.splitlines() if re.search(r"\bFAIL|[Ee]rror|failed|refused|timed out", line)]
    return "\n".join([f"{what} failed (exit {proc.returncode}):", *telling[-15:], proc.stderr.strip()[-1500:],
                      "---- whole output ----", proc.stdout, proc.stderr])


def mortar(site: dict, *args: str, check: bool = True, site_args: bool = True, env: dict[str, str] | None = None):
    """`mortar ARGS --config-dir SITE` as an operator runs it; its output is kept in site["outputs"]
    (for the secret scans), and a traceback always fails the test."""
    import subprocess
    import sys

    extra = ["--config-dir", str(site["config"])] if site_args else []
    proc = subprocess.run([sys.executable, "-m", "mortar", *args, *extra], capture_output=True, text=True,
                          env=site_env(site) | (env or {}), timeout=1800)
    site.setdefault("outputs", []).append(proc.stdout + proc.stderr)
    if check:
        assert proc.returncode == 0, failure(f"mortar {' '.join(args)}", proc)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc
