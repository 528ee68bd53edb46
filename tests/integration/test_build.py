"""mortar build on the real engine: base + keystone and its parents, the runtime contract."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.integration.conftest import NAMESPACE, TAG, TEST_LABEL, build, free_port, run_container

pytestmark = pytest.mark.integration

KEYSTONE = f"{NAMESPACE}/keystone:{TAG}"
BASE = f"{NAMESPACE}/base:{TAG}"


def test_keystone_and_parents_built_with_identity_labels(engine, docker, keystone_build):
    _, results = keystone_build
    assert list(results) == ["base", "python-builder", "openstack-base", "keystone"]
    for name, result in results.items():
        image = docker.images.get(f"{NAMESPACE}/{name}:{TAG}")
        assert image.labels["org.mortar.identity"] == result.identity
        assert image.id == result.image_id and result.size and result.size > 0


def test_keystone_manage_runs(engine, docker, keystone_build):
    code, output = run_container(docker, KEYSTONE, ["keystone-manage", "--version"])
    assert code == 0, output
    assert output.strip().splitlines()[-1].startswith("30.")


def test_runtime_image_has_no_compiler_ca_or_pip_cert(engine, docker, keystone_build):
    script = ("test ! -e /etc/mortar/build-ca.crt && ! command -v gcc && test -z \"$PIP_CERT\" "
              "&& test ! -d /var/lib/openstack/lib/python3.13/site-packages/pip && echo clean")
    code, output = run_container(docker, KEYSTONE, ["sh", "-c", script])
    assert code == 0 and "clean" in output, output
    history = docker.api.history(KEYSTONE)
    assert not any("build-ca.crt" in (layer.get("CreatedBy") or "") for layer in history)


def test_second_build_rebuilds_nothing(engine, keystone_build, tmp_path):
    _, first = keystone_build
    started = time.monotonic()
    _, again = build(engine, ["keystone"], tmp_path)
    assert {n: r.status for n, r in again.items()} == {n: "cached" for n in first}
    assert {n: r.image_id for n, r in again.items()} == {n: r.image_id for n, r in first.items()}
    assert time.monotonic() - started < 60  # generous: a rebuild would take minutes


def test_manifest_lists_exact_versions(keystone_build, tmp_path):
    builder, _ = keystone_build
    written = builder.write_manifests(tmp_path / "manifests", tmp_path / "cache")
    manifest = json.loads((tmp_path / "manifests" / "keystone.json").read_text())
    assert len(written) == 4
    assert manifest["python_packages"]["keystone"].startswith("30.")
    assert "python3" in manifest["debian_packages"] and "tini" in manifest["debian_packages"]
    base = json.loads((tmp_path / "manifests" / "base.json").read_text())
    assert base["python_packages"] == {} and "curl" in base["debian_packages"]


def write_spec(tmp_path, spec: dict, files: dict[str, str]):
    config = tmp_path / "config"
    config.mkdir()
    for name, text in files.items():
        (config / name).write_text(text)
    (config / "spec.json").write_text(json.dumps(spec))
    return {str(config): {"bind": "/var/lib/mortar/config", "mode": "ro"}}


def test_start_program_places_files_and_runs_as_service_user(engine, docker, keystone_build, tmp_path):
    spec = {
        "command": ["sh", "-c", "id -un; stat -c '%U:%G %a' /etc/keystone/keystone.conf /var/log/keystone; "
                                "cat /etc/keystone/keystone.conf"],
        "user": "keystone",
        "directories": [{"path": "/var/log/keystone", "owner": "keystone:keystone", "mode": "0750"}],
        "files": [{"source": "keystone.conf", "dest": "/etc/keystone/keystone.conf", "owner": "keystone",
                   "mode": "0640"}],
    }
    volumes = write_spec(tmp_path, spec, {"keystone.conf": "[DEFAULT]\ndebug = true\n"})
    code, output = run_container(docker, KEYSTONE, None, volumes=volumes)  # the image's default command
    assert code == 0, output
    lines = output.splitlines()
    assert "keystone" in lines
    assert "keystone:keystone 640" in lines and "keystone:keystone 750" in lines
    assert "debug = true" in lines


def test_start_program_check_detects_drift(engine, docker, keystone_build, tmp_path):
    spec = {"command": "true", "files": [{"source": "a.conf", "dest": "/etc/a.conf", "owner": "root",
                                          "mode": "0600"}]}
    volumes = write_spec(tmp_path, spec, {"a.conf": "x = 1\n"})
    script = ("mortar-start --copy-only && mortar-start --check && echo CLEAN; "
              "echo 'x = 2' > /etc/a.conf; mortar-start --check; echo rc=$?")
    code, output = run_container(docker, KEYSTONE, ["sh", "-c", script], volumes=volumes)
    assert "CLEAN" in output, output
    assert "rc=1" in output and "-x = 2" in output and "+x = 1" in output


def test_healthchecks_against_live_and_dead_targets(engine, docker, keystone_build):
    live, dead = free_port(), free_port()
    script = f"""
python3 -m http.server --bind 127.0.0.1 {live} >/dev/null 2>&1 &
server=$!
for i in $(seq 50); do healthcheck_port {live} >/dev/null && break; sleep 0.1; done
python3 -c 'import socket,time,sys; s=socket.create_connection(("127.0.0.1",{live})); time.sleep(30)' marker-client &
client=$!
sleep 1
healthcheck_curl http://127.0.0.1:{live}/; echo curl-live=$?
healthcheck_curl http://127.0.0.1:{dead}/ --timeout 2; echo curl-dead=$?
healthcheck_port {live}; echo port-live=$?
healthcheck_port {dead}; echo port-dead=$?
healthcheck_port {live} --host 127.0.0.1 --owner http.server --http / --status 200; echo owner-live=$?
healthcheck_port {live} --host 127.0.0.1 --owner no-such-server; echo owner-other=$?
healthcheck_port {live} --host 127.0.0.1 --http / --status 404; echo status-wrong=$?
healthcheck_established marker-client {live}; echo est-live=$?
healthcheck_established marker-client {dead}; echo est-dead=$?
kill $client $server
"""
    code, output = run_container(docker, BASE, ["sh", "-c", script])
    for expected in ("curl-live=0", "curl-dead=1", "port-live=0", "port-dead=1", "owner-live=0", "owner-other=1",
                     "status-wrong=1", "est-live=0", "est-dead=1"):
        assert expected in output, output


def test_override_blocks_package_lists_and_plugin_in_a_real_build(engine, docker, keystone_build, tmp_path):
    # A label of this run's own makes the identity new, so keystone is built here even on a machine
    # that kept an earlier run's image of the same override (the engine keeps untagged images).
    run = uuid.uuid4().hex[:12]
    override = tmp_path / "site.j2"
    override.write_text(
        "{% extends parent_template %}\n"
        "{% block keystone_header %}LABEL com.example.site=lab-1 com.example.run=" + run + "{% endblock %}\n"
        "{% block keystone_footer %}RUN echo tuned > /etc/keystone-site{% endblock %}\n"
        "{% set keystone_packages_append = ['less'] %}\n")
    _, results = build(engine, ["keystone"], tmp_path / "logs", tag="it-custom", template_override=override,
                       plugins={"keystone": ["tomli-w==1.2.0"]})
    assert results["keystone"].status == "done", results["keystone"].error
    # Parents are untouched by a keystone-only block: they come from the cache.
    assert results["openstack-base"].status == "cached"
    image = docker.images.get(f"{NAMESPACE}/keystone:it-custom")
    assert image.labels["com.example.site"] == "lab-1" and image.labels["com.example.run"] == run
    try:
        code, output = run_container(docker, image.id, [
            "sh", "-c", "cat /etc/keystone-site; command -v less; "
                        "python3 -c 'import importlib.metadata as m; print(m.version(\"tomli-w\"))'; "
                        "keystone-manage --version"])
    finally:
        docker.images.remove(image.id, force=True)  # this run's own image: no later run can use it
    assert code == 0, output
    assert "tuned" in output and "/usr/bin/less" in output and "1.2.0" in output


def test_push_to_a_local_registry(engine, docker, keystone_build, tmp_path):
    import urllib.request

    from mortar.builder.status import StatusBoard

    _, results = build(engine, ["registry"], tmp_path / "logs")
    assert results["registry"].status in ("done", "cached"), results["registry"].error
    port = free_port()
    registry = docker.containers.run(
        f"{NAMESPACE}/registry:{TAG}", ["docker-registry", "serve", "/etc/docker/registry/config.yml"],
        detach=True, network_mode="host", labels={"org.mortar.test": "1"},
        environment={"REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}",
                     "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/tmp/registry"})
    try:
        url = f"http://127.0.0.1:{port}/v2/"
        for _ in range(50):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        builder, _ = build(engine, ["base"], tmp_path / "logs2", push=True, registry=f"127.0.0.1:{port}",
                           registry_insecure=True)
        builder.push(["base"], StatusBoard(["base"], live=False))
        assert builder.results["base"].status != "failed", builder.results["base"].error
        tags = json.load(urllib.request.urlopen(f"{url}{NAMESPACE}/base/tags/list", timeout=5))
        assert tags["tags"] == [TAG]
    finally:
        registry.remove(force=True)
        docker.images.remove(f"127.0.0.1:{port}/{NAMESPACE}/base:{TAG}")


def test_exec_in_a_container_that_stops_or_is_gone(engine, docker, keystone_build):
    """A health probe racing a container's restart gets a failed probe, not an error: the engine
    forgets a command whose container stopped under it, and refuses one in a stopped container."""
    from mortar.errors import EngineError

    container = docker.containers.run(BASE, ["sleep", "5"], detach=True, network_mode="host",
                                      labels={TEST_LABEL: "1"})
    try:
        assert engine.exec(container.name, ["echo", "served"]) == (0, "served\n")
        # Killed with the container: the engine reports its exit code, or has forgotten it already.
        code, _ = engine.exec(container.name, ["sleep", "60"])
        assert code != 0
        container.wait(timeout=30)
        assert engine.exec(container.name, ["true"]) == (-1, f"container {container.name} is not running")
    finally:
        container.remove(force=True)
    with pytest.raises(EngineError, match="no such container"):
        engine.exec(container.name, ["true"])
