"""Upgrades on the real engine, Grenade style, through the CLI an operator uses.

First a small site at 2025.2 (Flamingo, not a SLURP release; memcached only, whose image every
series shares): its upgrade to 2026.2 is refused in preflight with the path to take, and nothing
changes. Then one all-in-one site deployed at 2025.1 (Epoxy), with resources made on it (a
project and user, an image and its checksum, a network, subnet and router, a real guest,
placement's inventories and allocations). Then: an upgrade to 2026.2 refused in preflight
(not a supported path) with nothing changed; the skip-level upgrade 2025.1 -> 2026.1 (SLURP
to SLURP); the upgrade 2026.1 -> 2026.2 killed with SIGKILL during its database steps, deploy
refused while it is unfinished, and the same command run again to finish it. After each
upgrade every resource is there and unchanged, each service's own upgrade check passes, no
OpenStack container runs an image of an older series, the infrastructure containers and the
guest kept running, and new operations and `verify` work. A second upgrade changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from mortar.verify.checks import wait_active
from tests.integration.conftest import MEASURED, NAMESPACE, built, docker_evidence, failure, mortar, site_env
from tests.integration.test_deploy import CORE, connect, running

pytestmark = pytest.mark.integration

SERIES = ("2025.1", "2026.1", "2026.2")
OPENSTACK = {"keystone", "glance_api", "placement_api", "nova_api", "nova_conductor", "nova_scheduler", "nova_metadata",
             "nova_compute", "neutron_server", "neutron_ovn_metadata_agent", "horizon"}
# What holds the data and runs the guest: the same images in every series, never restarted.
KEPT_RUNNING = {"mariadb", "rabbitmq", "memcached", "ovn_nb_db", "ovn_sb_db", "openvswitch_db",
                "openvswitch_vswitchd", "nova_libvirt"}
# Each service's own check that its database is what its code expects (run after each upgrade).
UPGRADE_CHECKS = {
    "nova_api": "nova-status upgrade check",
    "placement_api": "placement-status upgrade check",
    "keystone": "keystone-manage db_sync --check",
    "glance_api": "glance-manage db check",
    "neutron_server": "neutron-db-manage --config-file /etc/neutron/neutron.conf "
                      "--config-file /etc/neutron/plugins/ml2/ml2_conf.ini has_offline_migrations",
}


@pytest.fixture(scope="module")
def images(engine, tmp_path_factory):
    """The core images of every series, tagged with it (infrastructure images are built once)."""
    ids: dict[str, dict[str, str]] = {}
    for series in SERIES:
        _, results = built(engine, CORE, tmp_path_factory.mktemp(f"build-{series}"), release=series, tag=series)
        ids[series] = {name: r.image_id or "" for name, r in results.items()}
    return ids


@pytest.fixture  # per test: destroyed before the next site is deployed on this engine
def small_site(engine, docker, tmp_path_factory):
    """A 2025.2 site of memcached alone: a real deployment of that series, made in seconds."""
    from mortar.catalogue.loader import load_catalogue

    managed = docker.containers.list(all=True, filters={"label": "org.mortar.managed"})
    if managed:
        pytest.fail(f"another mortar deployment runs on this engine ({managed[0].name}); destroy it first")
    built(engine, ["memcached"], tmp_path_factory.mktemp("build-2025.2"), release="2025.2", tag="2025.2")
    root = tmp_path_factory.mktemp("small-site")
    data = {"config": root / "etc", "state": root / "state", "log": root / "log", "outputs": [],
            "evidence": docker_evidence}
    mortar(data, "init")
    only_memcached = {f"enable_{name}": name == "memcached" for name in load_catalogue()}
    (data["config"] / "globals.yml").write_text(yaml.safe_dump(
        {"openstack_release": "2025.2", "image_namespace": NAMESPACE, **only_memcached}))
    mortar(data, "genpwd")
    try:
        mortar(data, "deploy")
        yield data
    finally:
        mortar(data, "destroy", "--yes-i-really-really-mean-it", check=False)


def test_an_upgrade_past_a_slurp_release_is_refused_with_nothing_changed(small_site, docker):
    before, globals_text = running(docker), (small_site["config"] / "globals.yml").read_text()
    assert "memcached" in before, before
    refused = mortar(small_site, "upgrade", "--release", "2026.2", check=False)
    assert refused.returncode == 2, failure("mortar upgrade --release 2026.2", refused)
    assert "2025.2 -> 2026.2 is not a supported upgrade" in refused.stderr, refused.stderr
    assert "go 2025.2 -> 2026.1 -> 2026.2" in refused.stderr, refused.stderr
    assert running(docker) == before and (small_site["config"] / "globals.yml").read_text() == globals_text
    plan = mortar(small_site, "plan").stdout
    assert "No changes" in plan, plan


@pytest.fixture(scope="module")
def site(engine, docker, images, tmp_path_factory):
    managed = docker.containers.list(all=True, filters={"label": "org.mortar.managed"})
    if managed:
        pytest.fail(f"another mortar deployment runs on this engine ({managed[0].name}); destroy it first")
    root = tmp_path_factory.mktemp("upgrade-site")
    data = {"config": root / "etc", "state": root / "state", "log": root / "log", "outputs": [], "images": images,
            "evidence": docker_evidence}
    mortar(data, "init")
    (data["config"] / "globals.yml").write_text(yaml.safe_dump(
        {"openstack_release": "2025.1", "image_namespace": NAMESPACE,
         "neutron_external_interface": "mortar-ext", "neutron_external_veth_address": "10.213.78.1/24"}))
    # An operator's override naming an option nova dropped in 2025.2 (ignored by nova under uWSGI).
    (data["config"] / "config" / "nova").mkdir(parents=True, exist_ok=True)
    (data["config"] / "config" / "nova" / "nova.conf").write_text("[wsgi]\nkeep_alive = false\n")
    mortar(data, "genpwd")
    yield data
    mortar(data, "destroy", "--yes-i-really-really-mean-it", check=False)


def snapshot(site) -> dict:
    """What an operator's users made, as the APIs show it (ids, checksums, states, placement's view)."""
    conn = connect(site)
    server = conn.compute.find_server("grenade-server")
    assert server is not None
    rp = next(iter(conn.placement.resource_providers()))
    inventories = conn.placement.get(f"/resource_providers/{rp.id}/inventories").json()["inventories"]
    allocations = conn.placement.get(f"/allocations/{server.id}").json()["allocations"]
    image = conn.image.find_image("grenade-image")
    return {
        "project": conn.identity.find_project("grenade").id,
        "user": conn.identity.find_user("grenade-user").id,
        "image": (image.id, image.checksum, image.size, image.status),
        "image_data": hashlib.sha256(conn.image.download_image(image).content).hexdigest(),
        "network": conn.network.find_network("grenade-net").id,
        "subnet": (lambda s: (s.id, s.cidr))(conn.network.find_subnet("grenade-subnet")),
        "router": (lambda r: (r.id, r.status))(conn.network.find_router("grenade-router")),
        "server": (server.id, server.status, server.compute_host, server.addresses),
        "inventories": {rc: {k: v for k, v in inv.items()} for rc, inv in inventories.items()},
        "allocations": {provider: a["resources"] for provider, a in allocations.items()},
    }


def make_resources(site) -> None:
    conn = connect(site)
    project = conn.identity.create_project(name="grenade", domain_id="default")
    user = conn.identity.create_user(name="grenade-user", password="grenade-password", domain_id="default",
                                     default_project_id=project.id)
    member = conn.identity.find_role("member")
    conn.identity.assign_project_role_to_user(project, user, member)
    conn.image.create_image(name="grenade-image", data=os.urandom(1024 * 1024), disk_format="raw",
                            container_format="bare", wait=True)
    network = conn.network.create_network(name="grenade-net")
    subnet = conn.network.create_subnet(name="grenade-subnet", network_id=network.id, ip_version=4,
                                        cidr="10.9.0.0/24")
    public = conn.network.find_network("public")
    router = conn.network.create_router(name="grenade-router", external_gateway_info={"network_id": public.id})
    conn.network.add_interface_to_router(router, subnet_id=subnet.id)
    server = conn.compute.create_server(name="grenade-server", image_id=conn.image.find_image("mortar-guest").id,
                                        flavor_id=conn.compute.find_flavor("m1.tiny").id,
                                        networks=[{"uuid": conn.network.find_network("demo-net").id}])
    wait_active(conn, server)


def guest_process(docker, server_id: str) -> str:
    """The guest's QEMU process (libvirt passes the server's UUID to QEMU) and when it started: a guest
    that was restarted shows another. Every QEMU process is listed on a mismatch."""
    script = r"""for d in /proc/[0-9]*; do
  case "$(tr '\0' ' ' < $d/cmdline 2>/dev/null)" in
    *qemu-system*) uuid=$(tr '\0' ' ' < $d/cmdline | grep -o -- '-uuid [0-9a-f-]*')
      echo "${d#/proc/} $(cut -d' ' -f22 $d/stat) $uuid";;
  esac
done"""
    out = docker.containers.get("nova_libvirt").exec_run(["sh", "-c", script])
    assert out.exit_code == 0, out.output
    lines = out.output.decode().splitlines()
    mine = [line for line in lines if line.endswith(f"-uuid {server_id}")]
    assert len(mine) == 1, f"not one QEMU process for server {server_id}: {lines}"
    return mine[0]


def compute_rpc(docker, container: str) -> str:
    """What the running container's nova.conf sets [upgrade_levels] compute to."""
    out = docker.containers.get(container).exec_run(["cat", "/etc/nova/nova.conf"], user="root")
    found = re.search(r"^\[upgrade_levels\]\n(?:#.*\n)*compute = (\S+)$", out.output.decode(), re.M)
    assert found, out.output.decode()
    return found.group(1)


def assert_upgraded_to(site, docker, series: str, before: dict, kept: dict[str, tuple[str, str]]) -> None:
    assert snapshot(site) == before
    now = running(docker)
    assert {name: now[name] for name in KEPT_RUNNING} == {name: kept[name] for name in KEPT_RUNNING}, \
        "the database, the queue, the switch and the hypervisor kept running"
    assert guest_process(docker, before["server"][0]) == site["guest"], "the guest kept running"
    older = {image for s in SERIES[:SERIES.index(series)] for name, image in site["images"][s].items()
             if image not in site["images"][series].values()}
    on_older = {c.name for c in docker.containers.list() if c.name in OPENSTACK and c.image.id in older}
    assert not on_older, f"still on an older series: {on_older}"
    for container, command in UPGRADE_CHECKS.items():
        result = docker.containers.get(container).exec_run(["sh", "-c", command], user="root")
        assert result.exit_code == 0, f"{container}: {command}: exit {result.exit_code}\n{result.output.decode()}"
    assert f"openstack_release: '{series}'" in (site["config"] / "globals.yml").read_text()


def test_the_older_series_deploys_and_gets_resources(site, docker):
    mortar(site, "deploy")
    mortar(site, "post-deploy")
    mortar(site, "guest-image", site_args=False)
    mortar(site, "init-runonce")
    make_resources(site)
    site["before"] = snapshot(site)
    site["guest"] = guest_process(docker, site["before"]["server"][0])
    assert site["before"]["server"][1] == "ACTIVE" and site["before"]["allocations"], site["before"]


def test_an_unsupported_upgrade_is_refused_with_nothing_changed(site, docker):
    before, globals_text = running(docker), (site["config"] / "globals.yml").read_text()
    refused = mortar(site, "upgrade", "--release", "2026.2", check=False)
    assert refused.returncode == 2, failure("mortar upgrade --release 2026.2", refused)
    assert "2025.1 -> 2026.2 is not a supported upgrade" in refused.stderr, refused.stderr
    assert "go 2025.1 -> 2026.1 -> 2026.2" in refused.stderr, refused.stderr
    assert running(docker) == before and (site["config"] / "globals.yml").read_text() == globals_text


def test_the_skip_level_upgrade_keeps_every_resource(site, docker):
    kept = running(docker)
    plan = mortar(site, "upgrade", "--release", "2026.1", "--plan").stdout
    assert "host localhost: 2025.1 -> 2026.1" in plan and "recreate keystone" in plan, plan
    assert "recreate mariadb" not in plan, plan
    started = time.monotonic()
    out = mortar(site, "upgrade", "--release", "2026.1").stdout
    MEASURED["all-in-one upgrade 2025.1 -> 2026.1 (SLURP, one guest running)"] = f"{time.monotonic() - started:.1f} s"
    assert "preflight passed: 2025.1 -> 2026.1 on localhost" in out, out
    assert "nova.conf: [wsgi] keep_alive was removed in 2025.2; the new code ignores it" in out, out
    assert "nova: check online_data_migrations passed" in out, out
    # nova ran pinned to 2025.1's compute RPC until its compute moved, then restarted unpinned.
    assert "every host runs 2026.1 now: restarting what was held back for older hosts" in out, out
    assert compute_rpc(docker, "nova_conductor") == "auto"
    assert_upgraded_to(site, docker, "2026.1", site["before"], kept)


def test_an_upgrade_killed_in_its_database_steps_is_finished_by_running_it_again(site, docker):
    kept = running(docker)
    proc = subprocess.Popen([sys.executable, "-m", "mortar", "upgrade", "--release", "2026.2", "--config-dir",
                             str(site["config"])], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=site_env(site), start_new_session=True)
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if re.search(r"keystone: job db_migrate$", line.strip()):
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    refused = mortar(site, "deploy", check=False)
    assert refused.returncode == 2 and "is under way and did not finish" in refused.stderr, refused.stderr
    started = time.monotonic()
    out = mortar(site, "upgrade", "--release", "2026.2").stdout
    assert "upgrade finished" in out, out
    site["resumed_upgrade_seconds"] = time.monotonic() - started
    MEASURED["all-in-one upgrade 2026.1 -> 2026.2 resumed after SIGKILL"] = f"{site['resumed_upgrade_seconds']:.1f} s"
    assert_upgraded_to(site, docker, "2026.2", site["before"], kept)


def test_new_operations_and_verify_work_on_the_upgraded_cloud(site, docker):
    conn = connect(site)
    data = os.urandom(512 * 1024)
    image = conn.image.create_image(name="grenade-image-2", data=data, disk_format="raw", container_format="bare",
                                    wait=True)
    assert hashlib.sha256(conn.image.download_image(image).content).hexdigest() == hashlib.sha256(data).hexdigest()
    server = conn.compute.create_server(name="grenade-server-2", image_id=conn.image.find_image("mortar-guest").id,
                                        flavor_id=conn.compute.find_flavor("m1.tiny").id,
                                        networks=[{"uuid": conn.network.find_network("grenade-net").id}])
    assert wait_active(conn, server).status == "ACTIVE"
    conn.compute.delete_server(server)
    # The conductor chose its compute RPC version from the new compute's service version: no
    # pin of an older series is left in it.
    conductor = docker.containers.get("nova_conductor")
    version = conductor.exec_run(["python3", "-c", "from nova.objects import service; print(service.SERVICE_VERSION)"])
    assert version.exit_code == 0, version.output
    chosen = re.findall(r"Automatically selected compute RPC version \S+ from minimum service version (\d+)",
                        conductor.logs().decode(errors="replace"))
    assert chosen == [version.output.decode().split()[-1]], chosen
    conn.image.delete_image(image)
    # verify's guest boots on demo-net, made at 2025.1: DHCP, metadata and SSH on the old network.
    out = mortar(site, "verify", "--keep-failed").stdout
    assert "0 failed" in out, out


def test_a_second_upgrade_and_a_deploy_change_nothing(site):
    again = mortar(site, "upgrade", "--release", "2026.2").stdout
    assert "Nothing to do: localhost already run(s) 2026.2." in again, again
    deployed = mortar(site, "deploy").stdout
    assert "Nothing to do" in deployed, deployed
