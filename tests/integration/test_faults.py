"""Faults survived, all-in-one: `mortar deploy` killed (SIGKILL) at many points of every phase,
the engine restarted mid-deploy; every time, running deploy again converges, verify passes,
and what existed before (a project, a user, an image and its checksum, a network) is there.

The site pulls its images from mortar's own registry (TLS, password, pushed digests) on
127.0.0.1:4001, so the pull phase is one of the points. A kill point is a line of deploy's
live progress (optionally a moment after it, to land inside a job or a health wait): the
deploy is killed when it prints it, and the test fails if it never does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import (
    NAMESPACE,
    TAG,
    built,
    docker_evidence,
    engine_alone,
    mortar,
    site_env,
)
from tests.integration.secretscan import Scanner
from tests.integration.test_deploy import CORE, connect

pytestmark = pytest.mark.integration

REGISTRY = "127.0.0.1:4001"
KILLS: list[list[str]] = []  # [kill point, what the deploy that followed it did]





def deploy_until(site, point: str, act: Callable[[subprocess.Popen], None]) -> tuple[int, str]:
    """Run deploy; when it prints a line matching POINT, ACT on it. Its exit status and all it printed
    (the test fails if the point never comes)."""
    proc = subprocess.Popen([sys.executable, "-m", "mortar", "deploy", "--config-dir", str(site["config"])],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=site_env(site))
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if re.search(point, line):
            act(proc)
            break
    else:
        proc.wait(timeout=60)
        pytest.fail(f"deploy ended (exit {proc.returncode}) before {point!r}:\n{''.join(lines)}")
    lines.append(proc.stdout.read())
    proc.wait(timeout=600)
    output = "".join(lines)
    assert "Traceback" not in output, output
    return proc.returncode, output


def deploy_killed_at(site, point: str, delay: float = 0.0) -> list[str]:
    """Run deploy and SIGKILL it `delay` seconds after it prints a line matching POINT."""
    code, output = deploy_until(site, point, lambda proc: (time.sleep(delay), proc.kill()))
    assert code == -signal.SIGKILL, f"deploy was not killed at {point!r}:\n{output}"
    settle("got further, and was killed at the next point")
    KILLS.append([f"{point} (+{delay:.1f}s)", "?"])
    return output.splitlines()


def settle(outcome: str) -> None:
    """Say what the run after the last kill did."""
    if KILLS and KILLS[-1][1] == "?":
        KILLS[-1][1] = outcome


def converges(site, point: str) -> str:
    out = mortar(site, "deploy").stdout
    assert "deploy finished" in out, out
    plan = mortar(site, "plan").stdout
    assert "No changes" in plan, f"after the kill at {point!r} the deploy did not converge:\n{plan}"
    settle("re-run converged")
    return out


@pytest.fixture(scope="module")
def site(engine, docker, tmp_path_factory):
    managed = docker.containers.list(all=True, filters={"label": "org.mortar.managed"})
    if managed:
        pytest.fail(f"another mortar deployment runs on this engine ({managed[0].name})")
    built(engine, CORE + ["registry"], tmp_path_factory.mktemp("faults-build"))
    root = tmp_path_factory.mktemp("faults")
    data = {"config": root / "etc", "state": root / "state", "log": root / "log", "evidence": docker_evidence}
    mortar(data, "init")
    (data["config"] / "globals.yml").write_text(yaml.safe_dump(
        {"image_namespace": NAMESPACE, "image_tag": TAG, "docker_registry": REGISTRY}))
    mortar(data, "genpwd")
    try:
        mortar(data, "registry", "start")
        mortar(data, "build", *[f"^{name}$" for name in CORE], "--namespace", NAMESPACE, "--tag", TAG, "--push",
               "--registry", REGISTRY, "--config-dir", str(data["config"]), site_args=False)
        yield data
    finally:
        mortar(data, "destroy", "--yes-i-really-really-mean-it", check=False)
        mortar(data, "registry", "stop", "--remove-data", check=False)
        certs = Path("/etc/docker/certs.d") / REGISTRY
        if certs.is_dir():
            for path in certs.iterdir():
                path.unlink()
            certs.rmdir()
        for ref in [r for image in docker.images.list() for r in image.tags if r.startswith(REGISTRY + "/")]:
            docker.images.remove(ref)
        print(f"\n{len(KILLS)} kill points and their outcomes:\n" + "\n".join(f"  {p}: {o}" for p, o in KILLS))


def untag(docker, *images: str) -> None:
    for name in images:
        docker.images.remove(f"{REGISTRY}/{NAMESPACE}/{name}:{TAG}")


# Points of a fresh deploy, in the order they come: each killed run is followed by one that
# must get further (it is killed at the next point), and the last one converges.
FRESH = [
    ("pulling \\d+ image", 0.0),
    ("provision  keystone: job database", 0.1),
    ("before     keystone: job db_expand", 2.0),
    ("before     keystone: job db_migrate", 1.0),
    ("before     keystone: job bootstrap", 1.0),
    ("containers keystone: create keystone", 0.5),
    ("(glance|neutron|placement): registered", 0.0),
    ("before     horizon: job static", 3.0),
    ("waiting for mortar_job_horizon_static", 0.5),
    ("containers neutron: create neutron_server", 1.0),
    ("before     nova: job api_db_sync", 1.0),
    ("containers nova: create nova_compute", 0.5),
    ("after      nova: job discover_hosts", 0.5),
]


@pytest.fixture(scope="module")
def deployed(site, docker):
    untag(docker, "mariadb-server", "memcached", "rabbitmq", "keystone")
    for point, delay in FRESH:
        deploy_killed_at(site, point, delay)
    out = converges(site, FRESH[-1][0])
    assert "nova: job discover_hosts done" in out, out
    mortar(site, "post-deploy")
    conn = connect(site)
    data = os.urandom(256 * 1024)
    project = conn.identity.create_project(name="mortar-faults-keep", domain_id="default")
    user = conn.identity.create_user(name="mortar-faults-keep", password="keep-me-1234", domain_id="default",
                                     default_project_id=project.id)
    image = conn.image.create_image(name="mortar-faults-keep", data=data, disk_format="raw", container_format="bare")
    network = conn.network.create_network(name="mortar-faults-keep")
    site["kept"] = {"project": project.id, "user": user.id, "image": image.id, "network": network.id,
                    "sha256": hashlib.sha256(data).hexdigest()}
    return site


def still_there(site) -> None:
    kept = site["kept"]
    conn = connect(site)
    assert conn.identity.get_project(kept["project"]).name == "mortar-faults-keep"
    assert conn.identity.get_user(kept["user"]).name == "mortar-faults-keep"
    body = conn.image.download_image(kept["image"])
    assert hashlib.sha256(body.content if hasattr(body, "content") else body).hexdigest() == kept["sha256"]
    assert conn.network.get_network(kept["network"]).name == "mortar-faults-keep"


def verify_passes(site) -> None:
    assert "0 failed" in mortar(site, "verify", "--keep-failed").stdout


def test_fresh_deploy_killed_at_every_phase_converges(deployed):
    verify_passes(deployed)
    still_there(deployed)


def set_override(site, service: str, name: str, text: str) -> None:
    path = site["config"] / "config" / service / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def set_global(site, key: str, value) -> None:
    path = site["config"] / "globals.yml"
    data = yaml.safe_load(path.read_text()) or {}
    data[key] = value
    path.write_text(yaml.safe_dump(data))


def test_kill_during_registration(deployed):
    conn = connect(deployed)
    service = next(s for s in conn.identity.services() if s.type == "image")
    for endpoint in conn.identity.endpoints(service_id=service.id):
        conn.identity.delete_endpoint(endpoint)
    deploy_killed_at(deployed, "registration\\(s\\)", 0.2)
    converges(deployed, "registration")
    endpoints = [e for e in connect(deployed).identity.endpoints(service_id=service.id)]
    assert {e.interface for e in endpoints} == {"public", "internal", "admin"}


def test_kill_during_pull(deployed, docker):
    untag(docker, "memcached", "placement-api")
    deploy_killed_at(deployed, "pulling \\d+ image", 0.5)
    converges(deployed, "pull (converged deployment)")


def test_kill_during_a_provision_job(deployed):
    path = deployed["config"] / "passwords.yml"
    passwords = yaml.safe_load(path.read_text())
    passwords["glance_database_password"] = "changed-" + passwords["glance_database_password"][:16]
    path.write_text(yaml.safe_dump(passwords))
    path.chmod(0o600)
    deploy_killed_at(deployed, "provision  glance: job database", 0.1)
    converges(deployed, "provision job (a changed database password)")


def test_kill_inside_a_long_job_and_inside_the_wait_for_it(deployed, docker):
    set_global(deployed, "horizon_workers", 3)
    deploy_killed_at(deployed, "before     horizon: job static", 3.0)
    # The job an interrupted run left running keeps no log an engine could show, and its
    # definition holds no secret.
    left = docker.containers.get("mortar_job_horizon_static")
    assert left.attrs["HostConfig"]["LogConfig"]["Type"] == "none"
    scanner = Scanner.of_site(deployed["config"] / "passwords.yml")
    assert scanner.text("docker inspect of the job left running", json.dumps(left.attrs)) == []
    lines = deploy_killed_at(deployed, "waiting for mortar_job_horizon_static", 0.5)
    assert any("left running by an interrupted run" in line for line in lines), lines
    out = converges(deployed, "waiting for a job an interrupted run left running")
    assert "job static done" in out, out


def test_kill_at_a_recreate_and_inside_its_health_wait(deployed):
    set_override(deployed, "keystone", "keystone.conf", "[token]\nexpiration = 3600\n")
    deploy_killed_at(deployed, "containers keystone: recreate keystone", 0.0)
    converges(deployed, "recreate")
    set_override(deployed, "keystone", "keystone.conf", "[token]\nexpiration = 5400\n")
    deploy_killed_at(deployed, "containers keystone: recreate keystone", 1.5)
    converges(deployed, "health wait after a recreate")


def test_kill_at_a_start_and_at_a_create(deployed, docker):
    docker.containers.get("rabbitmq").stop(timeout=30)
    deploy_killed_at(deployed, "containers rabbitmq: start rabbitmq", 1.0)
    converges(deployed, "start (health wait)")
    docker.containers.get("memcached").remove(force=True)
    deploy_killed_at(deployed, "containers memcached: create memcached", 0.0)
    converges(deployed, "create")


def test_kill_in_jobs_before_and_after_a_triggered_job_is_not_lost(deployed):
    set_override(deployed, "nova", "nova.conf", "[DEFAULT]\nreserved_host_memory_mb = 256\n")
    deploy_killed_at(deployed, "before     nova: job db_sync", 1.0)
    converges(deployed, "nova db sync")
    set_override(deployed, "nova", "nova.conf", "[DEFAULT]\nreserved_host_memory_mb = 384\n")
    deploy_killed_at(deployed, "after      nova: job discover_hosts", 0.3)
    out = mortar(deployed, "plan").stdout
    assert "nova.discover_hosts: was due and did not run" in out, out
    out = converges(deployed, "run-always job after the containers")
    assert "job discover_hosts done" in out, out


def test_engine_restarted_mid_deploy(deployed):
    from mortar.engine.setup import restart_engine

    set_override(deployed, "keystone", "keystone.conf", "[token]\nexpiration = 4800\n")
    with engine_alone():
        restarted_mid_deploy(deployed, restart_engine)
    converges(deployed, "after the engine restart")


def restarted_mid_deploy(deployed, restart_engine) -> None:
    def restart(proc: subprocess.Popen) -> None:
        assert restart_engine() is not None, "the engine is not one mortar started: cannot restart it here"

    code, output = deploy_until(deployed, "containers keystone: recreate keystone", restart)
    print(f"\nthe engine restarted during a recreate: deploy exited {code}")
    if code != 0:
        assert "error:" in output, output


def test_everything_survived(deployed):
    verify_passes(deployed)
    still_there(deployed)
    assert len(KILLS) >= 20 and all(outcome != "?" for _, outcome in KILLS), KILLS
