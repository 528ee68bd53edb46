"""The all-in-one deploy on the real engine, through the CLI an operator uses.

One site, in order: prechecks, deploy, post-deploy, verify; a no-op deploy; an override
that restarts only keystone; data kept through reconfigure, stop + deploy and a second
deploy; no secret in outputs, logs, container definitions or image layers; destroy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import NAMESPACE, TAG, build

pytestmark = pytest.mark.integration


def mortar(site, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, MORTAR_STATE_DIR=str(site["state"]))
    proc = subprocess.run([sys.executable, "-m", "mortar", *args, "--config-dir", str(site["config"])],
                          capture_output=True, text=True, env=env, timeout=1800)
    site["outputs"].append(proc.stdout + proc.stderr)
    if check:
        assert proc.returncode == 0, f"mortar {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def running(engine) -> dict[str, tuple[str, str]]:
    return {c.name: (c.id, c.attrs["State"]["StartedAt"])
            for c in engine.containers.list(filters={"label": "org.mortar.managed"})}


@pytest.fixture(scope="module")
def site(engine, tmp_path_factory):
    managed = engine.containers.list(all=True, filters={"label": "org.mortar.managed"})
    if managed:
        pytest.fail(f"another mortar deployment runs on this engine ({managed[0].name}); "
                    "destroy it before running the integration tests")
    logs = tmp_path_factory.mktemp("core-build")
    _, results = build(engine, ["mariadb-server", "memcached", "rabbitmq", "ovn-northd", "ovn-nb-db", "ovn-sb-db",
                                "keystone", "glance-api", "placement-api", "nova-api", "nova-conductor",
                                "nova-scheduler", "nova-compute", "neutron-server", "horizon"], logs)
    failed = {n: r.error for n, r in results.items() if r.status not in ("done", "cached")}
    assert not failed, failed
    root = tmp_path_factory.mktemp("site")
    data = {"config": root / "etc", "state": root / "state", "outputs": []}
    mortar(data, "init")
    (data["config"] / "globals.yml").write_text(yaml.safe_dump({"image_namespace": NAMESPACE, "image_tag": TAG}))
    mortar(data, "genpwd")
    yield data
    mortar(data, "destroy", "--yes-i-really-really-mean-it", check=False)


@pytest.fixture(scope="module")
def deployed(site):
    mortar(site, "prechecks")
    mortar(site, "deploy")
    mortar(site, "post-deploy")
    return site


def connect(site):
    import openstack

    config = yaml.safe_load((site["config"] / "clouds.yaml").read_text())["clouds"]["mortar"]
    return openstack.connect(load_yaml_config=False, load_envvars=False, **config["auth"],
                             region_name=config["region_name"], identity_api_version="3")


def test_verify_passes(deployed):
    out = mortar(deployed, "verify").stdout
    assert "0 failed" in out and "FAIL" not in out, out
    for check in ("token issued", "catalogue complete", "image upload/list/download", "network and subnet",
                  "server boots (no NIC)", "server boots (with port)", "horizon login"):
        assert check in out


def test_credentials_are_private(deployed):
    for name in ("clouds.yaml", "admin-openrc.sh", "passwords.yml"):
        assert (deployed["config"] / name).stat().st_mode & 0o777 == 0o600, name


def test_second_deploy_changes_nothing(deployed, engine):
    before = running(engine)
    out = mortar(deployed, "deploy").stdout
    assert "Nothing to do" in out
    assert running(engine) == before
    assert "No changes" in mortar(deployed, "plan").stdout


def test_data_kept_and_override_restarts_only_its_containers(deployed, engine):
    conn = connect(deployed)
    project = conn.identity.create_project(name="mortar-it-keep", domain_id="default")
    image = conn.image.create_image(name="mortar-it-keep", data=b"keep me" * 1000, disk_format="raw",
                                    container_format="bare")
    before = running(engine)
    override = deployed["config"] / "config" / "keystone"
    override.mkdir(parents=True, exist_ok=True)
    (override / "keystone.conf").write_text("[token]\nexpiration = 7200\n")
    plan = mortar(deployed, "plan").stdout
    assert "recreate keystone: keystone.conf changed" in plan and "+expiration = 7200" in plan
    mortar(deployed, "reconfigure")
    after = running(engine)
    changed = {name for name in before if before[name] != after.get(name)}
    assert changed == {"keystone"}, changed

    def still_there():
        conn2 = connect(deployed)
        assert conn2.identity.find_project("mortar-it-keep", domain_id="default") is not None
        assert conn2.image.get_image(image.id).status == "active"
        body = conn2.image.download_image(image.id)
        assert (body.content if hasattr(body, "content") else body) == b"keep me" * 1000

    still_there()
    mortar(deployed, "stop")
    assert not engine.containers.list(filters={"label": "org.mortar.managed"})
    mortar(deployed, "deploy")
    still_there()
    mortar(deployed, "deploy")
    still_there()
    conn3 = connect(deployed)
    conn3.image.delete_image(image.id)
    conn3.identity.delete_project(project.id)


def test_no_secret_anywhere(deployed, engine):
    passwords = [v for v in yaml.safe_load((deployed["config"] / "passwords.yml").read_text()).values()
                 if len(str(v)) >= 8]
    texts = list(deployed["outputs"])
    for log in Path("/var/log/mortar/deploy").glob("*.log"):
        texts.append(log.read_text())
    for container in engine.containers.list(all=True, filters={"label": "org.mortar.managed"}):
        texts.append(json.dumps({"env": container.attrs["Config"]["Env"], "cmd": container.attrs["Config"]["Cmd"],
                                 "labels": container.labels}))
        texts.append(container.logs(tail=2000).decode(errors="replace"))
        texts.append(json.dumps(engine.api.history(container.image.id)))
    for text in texts:
        for secret in passwords:
            assert secret not in text


def test_destroy_needs_confirmation_then_removes_everything(deployed, engine):
    refused = mortar(deployed, "destroy", check=False)
    assert refused.returncode == 2 and "yes-i-really-really-mean-it" in refused.stderr
    assert engine.containers.list(filters={"label": "org.mortar.managed"})
    mortar(deployed, "destroy", "--yes-i-really-really-mean-it")
    assert not engine.containers.list(all=True, filters={"label": "org.mortar.managed"})
    assert not engine.volumes.list(filters={"label": "org.mortar.managed"})
    assert not deployed["state"].exists()
