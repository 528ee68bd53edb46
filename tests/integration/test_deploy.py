"""The all-in-one deploy on the real engine, through the CLI an operator uses.

One site (the core services with their data plane, and Prometheus with its exporters), in
order: prechecks, deploy, post-deploy, guest-image, init-runonce, verify (a real guest over
SSH), upstream Tempest's smoke set; a no-op deploy; an override that restarts only keystone,
data kept; a running guest and data through a reconfigure of nova and neutron, the guest back
after stop + deploy, the data kept by it and by a second deploy; a running-but-unhealthy container
planned and fixed; no secret in the process table during the deploy, in any container's
definition or log (job containers included), in job logs or in any world-readable file; a
lost database volume re-initialised by the next deploy (jobs and registrations); destroy.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from mortar.verify.checks import ssh_to_guest, wait_active
from tests.integration.conftest import MEASURED, NAMESPACE, TAG, built, docker_evidence, failure, mortar
from tests.integration.secretscan import ProcessSampler, Scanner

pytestmark = pytest.mark.integration

CORE = ["mariadb-server", "memcached", "rabbitmq", "ovn-northd", "ovn-nb-db", "ovn-sb-db", "keystone", "glance-api",
        "placement-api", "nova-api", "nova-conductor", "nova-scheduler", "nova-compute", "nova-libvirt", "openvswitch",
        "ovn-controller", "neutron-server", "neutron-ovn-metadata-agent", "horizon"]
MONITORING = ["prometheus-server", "prometheus-node-exporter", "prometheus-mysqld-exporter"]




def running(docker) -> dict[str, tuple[str, str]]:
    return {c.name: (c.id, c.attrs["State"]["StartedAt"])
            for c in docker.containers.list(filters={"label": "org.mortar.managed"})}


class JobSampler(threading.Thread):
    """Keeps what `docker inspect` shows of every job container seen while a deploy runs."""

    def __init__(self, docker) -> None:
        super().__init__(daemon=True)
        self.docker = docker
        self.seen: dict[str, dict] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                for c in self.docker.containers.list(all=True, filters={"label": "org.mortar.purpose=job"}):
                    self.seen[c.name] = c.attrs
            except Exception:  # noqa: BLE001 - a container gone between list and inspect
                pass
            time.sleep(0.2)

    def stop(self) -> dict[str, dict]:
        self._stop_event.set()
        self.join(timeout=5)
        return self.seen


@pytest.fixture(scope="module")
def site(engine, docker, tmp_path_factory):
    managed = docker.containers.list(all=True, filters={"label": "org.mortar.managed"})
    if managed:
        pytest.fail(f"another mortar deployment runs on this engine ({managed[0].name}); "
                    "destroy it before running the integration tests")
    built(engine, CORE + MONITORING, tmp_path_factory.mktemp("core-build"))
    root = tmp_path_factory.mktemp("site")
    data = {"config": root / "etc", "state": root / "state", "log": root / "log", "outputs": [],
            "evidence": docker_evidence}
    mortar(data, "init")
    # The provider network on a veth pair mortar makes, in a subnet of its own: floating IPs answer here.
    (data["config"] / "globals.yml").write_text(yaml.safe_dump(
        {"image_namespace": NAMESPACE, "image_tag": TAG, "enable_prometheus": True,
         "neutron_external_interface": "mortar-ext", "neutron_external_veth_address": "10.213.78.1/24"}))
    mortar(data, "genpwd")
    yield data
    mortar(data, "destroy", "--yes-i-really-really-mean-it", check=False)


@pytest.fixture(scope="module")
def deployed(site, docker):
    mortar(site, "prechecks")
    processes, jobs = ProcessSampler(), JobSampler(docker)
    processes.start()
    jobs.start()
    try:
        started = time.monotonic()
        site["deploy"] = mortar(site, "deploy").stdout
        MEASURED["all-in-one deploy, full set, first time"] = f"{time.monotonic() - started:.1f} s"
    finally:
        site["processes"] = processes.stop()
        site["job_containers"] = jobs.stop()
    mortar(site, "post-deploy")
    site["guest_image"] = mortar(site, "guest-image", site_args=False).stdout
    site["runonce"] = mortar(site, "init-runonce").stdout
    return site


def connect(site):
    import openstack

    config = yaml.safe_load((site["config"] / "clouds.yaml").read_text())["clouds"]["mortar"]
    tls = {"cacert": config["cacert"]} if "cacert" in config else {}  # a site on TLS: its CA, never insecure
    return openstack.connect(load_yaml_config=False, load_envvars=False, **config["auth"],
                             region_name=config["region_name"], identity_api_version="3", **tls)


def test_verify_passes(deployed):
    out = mortar(deployed, "verify", "--keep-failed").stdout
    assert "0 failed" in out and "FAIL" not in out, out
    for check in ("token issued", "catalogue complete", "image upload/list/download", "network and subnet",
                  "server boots (no NIC)", "server boots (with port)", "horizon login", "every metrics target up",
                  "guests reachable over SSH"):
        assert check in out
    # node exporter, the database exporter and the metrics server itself
    assert "3/3 targets up" in out, out
    # A real guest: its console showed the metadata it read, and it answered SSH on its floating IP.
    assert re.search(r"guests reachable over SSH +PASS .*localhost: ACTIVE \d+s, metadata \d+s, ssh \d+s as "
                     r"mortar-verify-guest-localhost", out), out


def test_init_runonce_made_the_first_resources_once(deployed):
    out = deployed["runonce"]
    for line in ("image mortar-guest: uploaded", "flavor m1.tiny", "network public: 10.213.78.0/24",
                 "network demo-net: 10.0.0.0/24 behind demo-router"):
        assert line in out, out
    again = mortar(deployed, "init-runonce").stdout
    assert "image mortar-guest: exists" in again and "flavor" not in again and "network" not in again, again


def test_tempest_smoke_passes(deployed, tmp_path):
    """Upstream Tempest's smoke set, configured from the cloud, with real guests over SSH."""
    # The user's own register of Tempest workspaces already names one `tempest` (another cloud's):
    # the site's workspace is registered in the site, never there.
    home = tmp_path / "home"
    (home / ".tempest").mkdir(parents=True)
    register = home / ".tempest" / "workspace.yaml"
    register.write_text("tempest: /srv/another-cloud/tempest\n")
    proc = mortar(deployed, "verify", "--tempest", check=False, env={"HOME": str(home)})
    assert register.read_text() == "tempest: /srv/another-cloud/tempest\n"
    out = proc.stdout
    counts = re.search(r"tempest: (\d+) passed, (\d+) failed, (\d+) skipped", out)
    assert counts, failure("mortar verify --tempest", proc)
    passed, failed, _ = (int(n) for n in counts.groups())
    assert failed == 0 and proc.returncode == 0, "\n".join(line for line in out.splitlines() if "FAILED" in line)
    # The guest scenarios ran (they skip without validation, an image or a network).
    for test in ("test_server_basic_ops", "test_network_basic_ops"):
        assert re.search(test + r".* \.\.\. ok", out), out[-3000:]
    assert passed >= 60, out[-2000:]


def test_deploy_shows_progress_per_step(deployed):
    out = deployed["deploy"]
    for line in ("[localhost] provision  keystone: job database", "[localhost] before     keystone: job db_expand",
                 "[localhost] containers keystone: create keystone", "keystone healthy",
                 "[localhost] after      nova: job discover_hosts", "nova: registered"):
        assert line in out, out


def test_credentials_are_private(deployed):
    for name in ("clouds.yaml", "admin-openrc.sh", "passwords.yml"):
        assert (deployed["config"] / name).stat().st_mode & 0o777 == 0o600, name


def test_second_deploy_changes_nothing(deployed, docker):
    before = running(docker)
    out = mortar(deployed, "deploy").stdout
    assert "Nothing to do" in out
    assert running(docker) == before
    assert "No changes" in mortar(deployed, "plan").stdout


class KeptData:
    """A project and an image (its bytes too), made now, and checked at will through a new connection."""

    def __init__(self, site: dict) -> None:
        self.site = site
        conn = connect(site)
        self.project = conn.identity.create_project(name="mortar-it-keep", domain_id="default")
        self.image = conn.image.create_image(name="mortar-it-keep", data=b"keep me" * 1000, disk_format="raw",
                                             container_format="bare")

    def still_there(self) -> None:
        conn = connect(self.site)
        assert conn.identity.find_project("mortar-it-keep", domain_id="default") is not None
        assert conn.image.get_image(self.image.id).status == "active"
        body = conn.image.download_image(self.image.id)
        assert (body.content if hasattr(body, "content") else body) == b"keep me" * 1000

    def remove(self) -> None:
        conn = connect(self.site)
        conn.image.delete_image(self.image.id, ignore_missing=True)
        conn.identity.delete_project(self.project.id, ignore_missing=True)


def test_data_kept_and_override_restarts_only_its_containers(deployed, docker):
    kept = KeptData(deployed)
    try:
        before = running(docker)
        override = deployed["config"] / "config" / "keystone"
        override.mkdir(parents=True, exist_ok=True)
        (override / "keystone.conf").write_text("[token]\nexpiration = 7200\n")
        plan = mortar(deployed, "plan").stdout
        assert "recreate keystone: keystone.conf changed" in plan and "+expiration = 7200" in plan
        mortar(deployed, "reconfigure")
        after = running(docker)
        changed = {name for name in before if before[name] != after.get(name)}
        assert changed == {"keystone"}, changed
        kept.still_there()
    finally:
        kept.remove()


def guest_ssh(key: Path, address: str, command: str, wait: float = 180) -> str:
    return ssh_to_guest(key, address, command, wait).strip()


# What runs the guests and their network: none of it may restart when nova or neutron is reconfigured.
DATA_PLANE = {"nova_libvirt", "openvswitch_db", "openvswitch_vswitchd", "ovn_controller"}


def test_guest_and_data_survive_reconfigure_and_come_back_after_stop(deployed, docker, tmp_path):
    conn = connect(deployed)
    kept = KeptData(deployed)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")], check=True)
    keypair = conn.compute.create_keypair(name="mortar-it-guest", public_key=(tmp_path / "id.pub").read_text())
    server = conn.compute.create_server(
        name="mortar-it-guest", image_id=conn.image.find_image("mortar-guest").id,
        flavor_id=conn.compute.find_flavor("m1.tiny").id, key_name=keypair.name,
        networks=[{"uuid": conn.network.find_network("demo-net").id}])
    ip = None
    try:
        server = wait_active(conn, server)
        port = next(iter(conn.network.ports(device_id=server.id)))
        ip = conn.network.create_ip(floating_network_id=conn.network.find_network("public").id, port_id=port.id)
        address = ip.floating_ip_address
        boot = guest_ssh(tmp_path / "id", address, "cat /proc/sys/kernel/random/boot_id")
        # nova and neutron reconfigured: their API and agent containers restart, the guest keeps running.
        before = running(docker)
        for service, name, text in (("nova", "nova.conf", "[DEFAULT]\nreboot_timeout = 0\n"),
                                    ("neutron", "neutron.conf", "[DEFAULT]\nagent_down_time = 80\n")):
            override = deployed["config"] / "config" / service
            override.mkdir(parents=True, exist_ok=True)
            (override / name).write_text(text)
        mortar(deployed, "reconfigure")
        after = running(docker)
        changed = {name for name in before if before[name] != after.get(name)}
        assert {"nova_compute", "neutron_server"} <= changed, changed
        assert not changed & DATA_PLANE, changed
        assert guest_ssh(tmp_path / "id", address, "cat /proc/sys/kernel/random/boot_id") == boot
        assert conn.compute.get_server(server.id).status == "ACTIVE"
        kept.still_there()
        # stop + deploy: every row and byte kept, and nova starts the guest again
        # (resume_guests_state_on_host_boot): a new boot. Another deploy keeps them too.
        mortar(deployed, "stop")
        assert not docker.containers.list(filters={"label": "org.mortar.managed"})
        mortar(deployed, "deploy")
        kept.still_there()
        conn = connect(deployed)
        wait_active(conn, conn.compute.get_server(server.id), interval=2)
        again = guest_ssh(tmp_path / "id", address, "cat /proc/sys/kernel/random/boot_id", wait=300)
        assert again and again != boot
        mortar(deployed, "deploy")
        kept.still_there()
    finally:
        if ip is not None:
            conn.network.delete_ip(ip)
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=120, interval=1)
        conn.compute.delete_keypair(keypair)
        kept.remove()


def test_running_but_unhealthy_container_is_planned_and_fixed(deployed, docker):
    memcached = docker.containers.get("memcached")
    pid = memcached.attrs["State"]["Pid"]
    # A frozen memcached still holds its port but answers nothing: only a real probe notices.
    top = memcached.top(ps_args="-eo pid,comm")
    inner = next(int(row[0]) for row in top["Processes"] if row[1] == "memcached")
    os.kill(inner, 19)  # SIGSTOP
    try:
        # The engine probes every 30 s and calls it unhealthy after 3 failed probes in a row.
        deadline = time.monotonic() + 240
        while docker.containers.get("memcached").attrs["State"].get("Health", {}).get("Status") != "unhealthy":
            assert time.monotonic() < deadline, "the engine never marked the frozen memcached unhealthy"
            time.sleep(2)
        plan = mortar(deployed, "plan").stdout
        assert "restart  memcached: running but unhealthy" in plan, plan
        out = mortar(deployed, "deploy").stdout
        assert "restart memcached" in out and "memcached healthy" in out, out
    finally:
        try:
            os.kill(inner, 18)  # SIGCONT, should the restart not have replaced it
        except ProcessLookupError:
            pass
    assert pid != 0
    assert "No changes" in mortar(deployed, "plan").stdout


def test_no_secret_anywhere(deployed, docker):
    scanner = Scanner.of_site(deployed["config"] / "passwords.yml")
    assert len(scanner.secrets) >= 15
    for text in deployed["outputs"]:
        scanner.text("mortar output", text)
    scanner.processes(deployed["processes"])
    for name, attrs in deployed["job_containers"].items():
        scanner.text(f"docker inspect {name} (during the deploy)", json.dumps(attrs))
        assert attrs["HostConfig"]["LogConfig"]["Type"] == "none", name
    assert len(deployed["job_containers"]) >= 10, sorted(deployed["job_containers"])
    for log in deployed["log"].rglob("*.log"):
        scanner.text(str(log), log.read_text(errors="replace"))
    scanner.containers(docker, "org.mortar.managed")
    for container in docker.containers.list(filters={"label": "org.mortar.managed"}):
        history = docker.api.history(container.image.id)
        scanner.text(f"image history of {container.name}", json.dumps(history))
    scanner.files([deployed["state"], deployed["log"], deployed["config"], Path("/etc"), Path("/root"),
                   Path("/run"), Path("/tmp"), Path("/var/log"), Path("/var/lib/mortar"),
                   Path("/var/lib/docker/containers"), Path("/var/lib/docker/volumes")])
    assert scanner.leaks == [], [str(leak) for leak in scanner.leaks][:10]


def test_lost_database_is_initialised_again_with_its_registrations(deployed, docker):
    docker.containers.get("mariadb").remove(force=True)
    docker.volumes.get("mariadb").remove(force=True)
    plan = mortar(deployed, "plan").stdout
    assert "volume   mariadb: missing" in plan, plan
    assert "keystone.db_migrate: mariadb is not created yet" in plan, plan
    # What runs on the database's data starts again too (nova-compute's service record lives there).
    assert "recreate nova_compute: mariadb is new data" in plan, plan
    out = mortar(deployed, "deploy").stdout
    for line in ("keystone: job database", "keystone: job bootstrap", "nova: job db_sync", "glance: registered",
                 "nova: registered", "nova: recreate nova_compute", "nova: job discover_hosts done"):
        assert line in out, out
    assert "No changes" in mortar(deployed, "plan").stdout
    # The cloud works on its new database: a token, every endpoint, the compute host mapped
    # again, an image stored, a server booted.
    conn = connect(deployed)
    assert conn.authorize()
    assert {"identity", "image", "compute", "network", "placement"} <= {s.type for s in conn.identity.services()}
    assert [s.state for s in conn.compute.services(binary="nova-compute")] == ["up"]
    image = conn.image.create_image(name="mortar-it-new-db", data=b"x" * 4096, disk_format="raw",
                                    container_format="bare")
    flavor = conn.compute.create_flavor(name="mortar-it-new-db", ram=64, vcpus=1, disk=1)
    server = conn.compute.create_server(name="mortar-it-new-db", image_id=image.id, flavor_id=flavor.id,
                                        networks="none")
    try:
        wait_active(conn, server)
    finally:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=120, interval=1)
        conn.compute.delete_flavor(flavor)
        conn.image.delete_image(image.id)


def test_destroy_needs_confirmation_then_removes_everything(deployed, docker):
    refused = mortar(deployed, "destroy", check=False)
    assert refused.returncode == 2 and "yes-i-really-really-mean-it" in refused.stderr
    assert docker.containers.list(filters={"label": "org.mortar.managed"})
    out = mortar(deployed, "destroy", "--yes-i-really-really-mean-it").stdout
    assert "teardown openvswitch_vswitchd" in out and "teardown ovn_controller" in out, out
    assert "teardown openvswitch_vswitchd failed" not in out and "teardown ovn_controller failed" not in out, out
    assert not docker.containers.list(all=True, filters={"label": "org.mortar.managed"})
    assert not docker.volumes.list(filters={"label": "org.mortar.managed"})
    assert not deployed["state"].exists()
    # Nothing the data plane made stays on the host: the provider veth pair, the bridges' ports.
    links = {line.split(":")[1].strip().split("@")[0]
             for line in subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                                        check=True).stdout.splitlines()}
    assert not links & {"mortar-ext", "mortar-ext-host", "br-int", "br-ex", "br-tun"}, sorted(links)
