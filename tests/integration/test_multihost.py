"""The multi-host deploy over Ansible on the test bed, highly available: three control hosts behind
a virtual address and two compute hosts.

One site of 2026.1 (Gazpacho), in order, through the CLI an operator uses: registry start (TLS,
password), build --push (digests recorded), bootstrap-servers (refused until host keys are
accepted, then twice: the second changes nothing), prechecks, pull, deploy with compute1 only,
then compute2 added with `deploy --limit compute2` (its compute service is mapped by a control
host's job). The site is what an operator runs for high availability: HAProxy and keepalived on
every control host (internal_vip_address) serving the APIs over TLS (enable_tls_internal,
`mortar certificates`: every client checks the certificate against the site CA, none is told to
skip it) and speaking TLS to every API behind it (enable_tls_backend: each serves its host's
certificate), a second address for the users' side with its own certificate
(external_vip_address, enable_tls_external: the public endpoints, which verify's clients use),
MariaDB Galera, a RabbitMQ cluster with quorum queues, memcached on every control host, the OVN
databases as RAFT clusters, glance's images on the bed's shared folder (a shared filesystem
every node mounts).

Then: every API registered on the virtual address; guest-image, init-runonce and verify through
it: servers on both compute hosts, and a real guest per compute host answers SSH on a floating IP
(routed from here through control3, the network node) and reaches the other over Geneve (each
host's tunnel address on its br-tun); the clusters formed; a no-op deploy; a one-host override
that restarts only that host's nova_compute; a changed host key refused; a tag replaced in the
registry refused by prechecks and never run; host state checked with pytest-testinfra over the
same SSH; no secret in any world-readable file, job log, container definition, Ansible output or
the process table; a node stopped mid-deploy named, and a re-run that converges after it is
back; the upgrade to 2026.2 with --limit: the control plane first (the compute hosts stay on
2026.1, pinned to its compute RPC, and verify passes), then the compute hosts (the pin lifted on
every host, the guests kept).

High availability on the upgraded site: the control host holding the virtual address killed
while a client asks for a token, the images and the servers once a second (the address moves,
the APIs answer again and nothing fails after; a server and an image made before are intact);
the host back, rejoining every cluster; a reconfigure that restarts keystone one control host at
a time while the client loop sees no failure; all three control hosts stopped, then `deploy`:
every row back; `mortar mariadb-recovery`: the cluster started again, every row kept; stop,
deploy, destroy. Teardown removes the registry, its data and every node.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from mortar.site.certificates import covers
from mortar.testbed.nodes import GATEWAY, PROVIDER_NETWORK, Testbed
from mortar.verify.checks import wait_active
from tests.integration.conftest import MEASURED, NAMESPACE, bed_evidence, build, mortar, site_env
from tests.integration.ha import (
    CONTROLS,
    EXTERNAL_VIP,
    SLOW_BUT_ANSWERING,
    VIP,
    ClientLoop,
    cluster_logs,
    galera_size,
    on,
    rabbit_running,
    raft_servers,
    vip_holder,
    wait_for,
)
from tests.integration.secretscan import ProcessSampler, Scanner

pytestmark = pytest.mark.integration

BED = "pytest-mh"
REGISTRY = f"{GATEWAY}:4000"
IMAGES = ["haproxy", "keepalived", "mariadb-server", "memcached", "rabbitmq", "ovn-northd", "ovn-nb-db", "ovn-sb-db",
          "keystone", "glance-api", "placement-api", "nova-api", "nova-conductor", "nova-scheduler", "nova-compute",
          "nova-libvirt", "openvswitch", "ovn-controller", "neutron-server", "neutron-ovn-metadata-agent", "horizon"]
COMPUTES = ("compute1", "compute2")
NODES = (*CONTROLS, *COMPUTES)
# control3 is the network node: killing the host that holds the virtual address (control1 first)
# leaves the floating IPs' gateway alone.
LAYOUT = [("control1", ["control"]), ("control2", ["control"]), ("control3", ["control", "network"]),
          ("compute1", ["compute"]), ("compute2", ["compute"])]
# The series deployed first, and the one the site is upgraded to: image tags are the series.
OLD, NEW = "2026.1", "2026.2"
# The provider network: a veth behind control3's br-ex, its gateway end at the range's first
# address; this host reaches the floating IPs through a route via control3.
PROVIDER_GATEWAY = f"{ipaddress.ip_network(PROVIDER_NETWORK)[1]}/{ipaddress.ip_network(PROVIDER_NETWORK).prefixlen}"
# What a compute host runs: the hypervisor, its switch, OVN's controller and the metadata agent.
COMPUTE = {"nova_compute", "nova_libvirt", "openvswitch_db", "openvswitch_vswitchd", "ovn_controller",
           "neutron_ovn_metadata_agent"}
# What every control host runs.
CONTROL_PLANE = ("haproxy", "keepalived", "mariadb", "rabbitmq", "memcached", "keystone", "glance_api",
                 "placement_api", "nova_api", "nova_conductor", "nova_scheduler", "neutron_server", "ovn_nb_db",
                 "ovn_sb_db", "ovn_northd")


def started(bed: Testbed, node: str) -> dict[str, str]:
    """Every mortar container on a node: name -> start time (changes when it is recreated or restarted)."""
    out = bed.run(node, "docker ps -q --filter label=org.mortar.managed | xargs -r docker inspect "
                        "--format '{{.Name}} {{.State.StartedAt}}'", timeout=60)
    assert out.returncode == 0, out.stderr
    return dict(line.lstrip("/").split(" ", 1) for line in out.stdout.splitlines() if line.strip())


def inventory(bed: Testbed, computes: tuple[str, ...]) -> str:
    """The bed's inventory with only COMPUTES in [compute] (the others are not hosts of the site)."""
    text = bed.inventory_path.read_text()
    for node in NODES:
        if node.startswith("compute") and node not in computes:
            text = "\n".join(line for line in text.splitlines() if not line.startswith(f"{node} "))
    return text + "\n"


def infra_host(site, node: str):
    import testinfra

    bed = site["bed"]
    address = next(n["address"] for n in bed.status() if n["node"] == node)
    return testinfra.get_host(f"ssh://root@{address}", ssh_identity_file=str(bed.key_path),
                              ssh_extra_args=f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile="
                                             f"{site['config'] / 'known_hosts'} -o LogLevel=ERROR")


def node_container(docker, node: str):
    return docker.containers.get(f"mortar-testbed-{BED}-{node}")


@pytest.fixture(scope="module")
def bed():
    testbed = Testbed(BED)
    try:
        testbed.up(LAYOUT, log=lambda _: None)
        yield testbed
    finally:
        testbed.down(log=lambda _: None)


@pytest.fixture(scope="module")
def site(engine, bed, tmp_path_factory):
    _, results = build(engine, IMAGES, tmp_path_factory.mktemp("mh-build"), release=OLD, tag=OLD)
    failed = {n: r.error for n, r in results.items() if r.status not in ("done", "cached")}
    assert not failed, failed
    root = tmp_path_factory.mktemp("mh-site")
    data = {"config": root / "etc", "state": root / "state", "log": root / "log", "outputs": [], "bed": bed,
            "evidence": bed_evidence(bed, "control1")}
    mortar(data, "init")
    (bed.shared_dir / "glance").mkdir(parents=True, exist_ok=True)
    (data["config"] / "globals.yml").write_text(yaml.safe_dump({
        "openstack_release": OLD, "image_namespace": NAMESPACE, "docker_registry": REGISTRY,
        "internal_vip_address": VIP, "enable_haproxy": True, "enable_tls_internal": True, "enable_tls_backend": True,
        "external_vip_address": EXTERNAL_VIP, "enable_tls_external": True,
        # Three control planes on this machine's two cores start slowly beside other sessions.
        "healthcheck_timeout": 600,
        "volume_options": {"glance_images": {"type": "none", "o": "bind", "device": "/srv/shared/glance"}},
        "neutron_external_interface": "mortar-ext", "neutron_external_veth_address": PROVIDER_GATEWAY}))
    (data["config"] / "inventory").write_text(inventory(bed, ("compute1",)))
    mortar(data, "genpwd")
    mortar(data, "certificates")
    try:
        mortar(data, "registry", "start")
        yield data
    finally:
        bed.unroute(PROVIDER_NETWORK)
        mortar(data, "destroy", "--yes-i-really-really-mean-it", check=False)
        mortar(data, "registry", "stop", "--remove-data", check=False)
        shutil.rmtree(Path("/etc/docker/certs.d") / REGISTRY, ignore_errors=True)


@pytest.fixture(scope="module")
def deployed(site):
    mortar(site, "build", *[f"^{name}$" for name in IMAGES], "--namespace", NAMESPACE, "--release", OLD, "--tag", OLD,
           "--push", "--registry", REGISTRY, "--config-dir", str(site["config"]), site_args=False)
    unknown = mortar(site, "bootstrap-servers", check=False)
    assert unknown.returncode != 0 and "--accept-new-host-keys" in unknown.stderr, unknown.stdout + unknown.stderr
    first = mortar(site, "bootstrap-servers", "--accept-new-host-keys").stdout
    assert first.count("bootstrap ") == 4, first
    # The keys accepted are the nodes' own (the bed read them through the engine).
    recorded = {line.split()[0]: line.split()[2] for line in (site["config"] / "known_hosts").read_text().splitlines()}
    own = {line.split()[0]: line.split()[2] for line in site["bed"].known_hosts_path.read_text().splitlines()}
    assert recorded and all(own[address] == key for address, key in recorded.items())
    again = mortar(site, "bootstrap-servers").stdout
    assert again.count("ok (no change)") == 4, again
    mortar(site, "prechecks")
    pulled = mortar(site, "pull").stdout
    assert all(f"[{n}] pull" in pulled for n in (*CONTROLS, "compute1")), pulled
    sampler = ProcessSampler()
    sampler.start()
    clock = time.monotonic()
    try:
        site["deploy_output"] = mortar(site, "deploy").stdout
    except AssertionError as failed:
        raise AssertionError(f"{failed}\n---- the clusters' logs ----\n{cluster_logs(site['bed'])}") from None
    finally:
        site["processes"] = sampler.stop()
    MEASURED[f"test bed deploy of {OLD}, 3 control + 1 compute hosts (HA, TLS)"] = f"{time.monotonic() - clock:.1f} s"
    # Add compute2: only it is touched, and a control host's job maps it.
    (site["config"] / "inventory").write_text(inventory(site["bed"], COMPUTES))
    mortar(site, "certificates")
    mortar(site, "bootstrap-servers", "--limit", "compute2", "--accept-new-host-keys")
    site["add_output"] = mortar(site, "deploy", "--limit", "compute2").stdout
    mortar(site, "post-deploy")
    site["bed"].route_via(PROVIDER_NETWORK, "control3")
    return site


def test_deploy_places_services_by_group(deployed):
    bed = deployed["bed"]
    for node in CONTROLS:
        control = started(bed, node)
        for name in CONTROL_PLANE:
            assert name in control, (node, name, sorted(control))
        assert "nova_compute" not in control
    for node in COMPUTES:
        assert set(started(bed, node)) == COMPUTE
    # one line per host per phase, not Ansible's task output
    out = deployed["deploy_output"]
    assert "[compute1] containers nova: create nova_compute" in out and "TASK [" not in out, out
    assert "Ansible task(s)" in out


def test_adding_a_compute_host_with_limit_maps_it(deployed):
    out = deployed["add_output"]
    assert "[compute2] containers nova: create nova_compute" in out, out
    assert re.search(r"\[control\d\] after      nova: job discover_hosts", out), out
    assert not re.search(r"\[control\d\] containers", out), out


def test_services_bind_the_hosts_address_not_loopback(deployed):
    host = infra_host(deployed, "control1")
    address = next(n["address"] for n in deployed["bed"].status() if n["node"] == "control1")
    assert host.socket(f"tcp://{address}:5000").is_listening
    assert not host.socket("tcp://127.0.0.1:5000").is_listening


def test_every_endpoint_and_client_goes_through_the_virtual_address(deployed):
    from tests.integration.test_deploy import connect

    clouds = yaml.safe_load((deployed["config"] / "clouds.yaml").read_text())["clouds"]["mortar"]
    assert clouds["auth"]["auth_url"] == f"https://{VIP}:5000/v3"
    assert clouds["cacert"] == str(deployed["config"] / "certificates" / "ca.crt")
    conn = connect(deployed)
    endpoints = list(conn.identity.endpoints())
    for interface, address in (("internal", VIP), ("admin", VIP), ("public", EXTERNAL_VIP)):
        urls = [e.url for e in endpoints if e.interface == interface]
        assert urls and all(url.startswith(f"https://{address}:") for url in urls), (interface, urls)
    # The certificates are checked: against the site CA they pass, against the system's CAs
    # they do not, and plain HTTP is not served on either virtual address. Each address has
    # its own certificate (external.pem names the users' address, not the internal one).
    for address in (VIP, EXTERNAL_VIP):
        assert requests.get(f"https://{address}:5000/v3", timeout=10, verify=clouds["cacert"]).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"https://{address}:5000/v3", timeout=10)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://{address}:5000/v3", timeout=10)
        assert requests.get(f"https://{address}/auth/login/", timeout=10, verify=clouds["cacert"]).status_code == 200
    served = {address: ssl.get_server_certificate((address, 5000)) for address in (VIP, EXTERNAL_VIP)}
    assert served[VIP] != served[EXTERNAL_VIP]
    assert not covers(served[EXTERNAL_VIP], VIP) and covers(served[EXTERNAL_VIP], EXTERNAL_VIP)
    # A user's client reaches the APIs through the public endpoints, on the users' address.
    assert conn.image.get_endpoint().startswith(f"https://{EXTERNAL_VIP}:9292")
    bed = deployed["bed"]
    assert len(vip_holder(bed)) == 1
    assert vip_holder(bed) == [n for n in CONTROLS if f" {EXTERNAL_VIP}/32 " in on(bed, n, "ip -4 -o addr show")]
    # Behind HAProxy too (enable_tls_backend), each API speaks HTTPS only, with its host's own
    # certificate (signed by the site CA, naming the host's address).
    addresses = {row["node"]: row["address"] for row in bed.status()}
    for node in CONTROLS:
        for port, path in ((5000, "/v3"), (9292, "/healthcheck"), (8774, "/"), (8778, "/"), (9696, "/"),
                           (8775, "/"), (80, "/auth/login/")):
            url = f"https://{addresses[node]}:{port}{path}"
            assert requests.get(url, timeout=30, verify=clouds["cacert"]).status_code == 200, url
            with pytest.raises(requests.exceptions.ConnectionError):
                requests.get(f"http://{addresses[node]}:{port}{path}", timeout=30)
        assert covers(ssl.get_server_certificate((addresses[node], 5000)), addresses[node])


def test_the_clusters_have_every_control_host(deployed):
    bed = deployed["bed"]
    for node in CONTROLS:
        assert galera_size(bed, node) == 3
        assert rabbit_running(bed, node) == [f"rabbit@{n}" for n in CONTROLS]
    for db in ("OVN_Northbound", "OVN_Southbound"):
        status = raft_servers(bed, "control1", db)
        assert status.count("(self)") == 1 and "Role: " in status, status
        assert status.count("at tcp:") >= 3, status


def test_verify_through_the_virtual_address_boots_guests_on_both_compute_hosts_over_geneve(deployed):
    bed = deployed["bed"]
    # Each host's tunnel address sits on its br-tun, and OVN's chassis advertises it.
    for node in ("control3", *COMPUTES):
        host_line = next(line for line in bed.inventory_path.read_text().splitlines() if line.startswith(node + " "))
        tunnel = host_line.split("neutron_tunnel_address=", 1)[1].split()[0]
        shown = bed.run(node, "ip -4 -o addr show br-tun; docker exec ovn_controller ovs-vsctl get Open_vSwitch . "
                              "external_ids:ovn-encap-ip", timeout=60).stdout
        assert tunnel in shown and f'"{tunnel.split("/")[0]}"' in shown, (node, shown)
    mortar(deployed, "guest-image", site_args=False)
    made = mortar(deployed, "init-runonce").stdout
    assert f"network public: {PROVIDER_NETWORK}" in made, made
    again = mortar(deployed, "init-runonce").stdout
    assert "network public:" not in again and "exists" in again, again
    out = mortar(deployed, "verify", "--keep-failed").stdout
    assert "0 failed" in out and "FAIL" not in out, out
    line = next(line for line in out.splitlines() if line.startswith("servers on every compute host"))
    assert "compute1" in line and "compute2" in line, line
    line = next(line for line in out.splitlines() if line.startswith("guests reachable over SSH"))
    assert "PASS" in line and "compute1: ACTIVE" in line and "compute2: ACTIVE" in line, line
    assert "reached compute" in line and "over the tenant network" in line, line


def test_second_deploy_changes_nothing(deployed):
    bed = deployed["bed"]
    before = {n: started(bed, n) for n in NODES}
    out = mortar(deployed, "deploy").stdout
    assert "Nothing to do" in out, out
    assert {n: started(bed, n) for n in before} == before
    plan = mortar(deployed, "plan").stdout
    assert "No changes" in plan and plan.count(": no changes") == len(NODES), plan


def test_one_host_override_restarts_only_its_container(deployed):
    bed = deployed["bed"]
    before = {n: started(bed, n) for n in NODES}
    override = deployed["config"] / "config" / "nova" / "compute2" / "nova.conf"
    override.parent.mkdir(parents=True, exist_ok=True)
    override.write_text("[DEFAULT]\nreserved_host_memory_mb = 256\n")
    plan = mortar(deployed, "plan").stdout
    assert "host compute1: no changes" in plan and "recreate nova_compute: nova.conf changed" in plan, plan
    mortar(deployed, "reconfigure")
    after = {n: started(bed, n) for n in before}
    for node in (*CONTROLS, "compute1"):
        assert after[node] == before[node], node
    assert after["compute2"]["nova_compute"] != before["compute2"]["nova_compute"]
    conf = bed.run("compute2", "cat /var/lib/mortar/config/nova_compute/nova.conf").stdout
    assert "reserved_host_memory_mb = 256" in conf
    # nova-compute must survive its restart (it keeps its node identity in its volume).
    time.sleep(20)
    assert started(bed, "compute2") == after["compute2"]
    assert "No changes" in mortar(deployed, "plan").stdout


def test_a_changed_host_key_is_refused(deployed):
    known = deployed["config"] / "known_hosts"
    saved = known.read_text()
    address = next(n["address"] for n in deployed["bed"].status() if n["node"] == "compute1")
    other = deployed["state"] / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    forged = f"{address} {' '.join(Path(f'{other}.pub').read_text().split()[:2])}\n"
    known.write_text("".join(line + "\n" for line in saved.splitlines() if not line.startswith(address + " "))
                     + forged)
    # An open SSH master connection was verified when it was made; new ones are checked.
    for socket in (deployed["state"] / "sites").glob("*/ansible/cp/*"):
        socket.unlink()
    try:
        checks = mortar(deployed, "prechecks", check=False)
        assert checks.returncode == 2, checks.stdout + checks.stderr
        assert re.search(r"FAIL compute1: .*not the one recorded", checks.stdout), checks.stdout
        refused = mortar(deployed, "bootstrap-servers", "--accept-new-host-keys", "--limit", "compute1", check=False)
        assert refused.returncode != 0 and "not the one recorded" in refused.stdout + refused.stderr
    finally:
        known.write_text(saved)
    mortar(deployed, "prechecks")


def test_a_tag_replaced_in_the_registry_is_refused(deployed, docker):
    import json

    password = yaml.safe_load((deployed["config"] / "passwords.yml").read_text())["docker_registry_password"]
    auth = {"username": "mortar", "password": password, "serveraddress": REGISTRY}
    ref = f"{REGISTRY}/{NAMESPACE}/memcached"
    impostor = docker.images.get(f"{NAMESPACE}/base:{OLD}")
    impostor.tag(ref, OLD)
    for chunk in docker.api.push(ref, OLD, stream=True, decode=True, auth_config=auth):
        assert "error" not in chunk, chunk
    checks = mortar(deployed, "prechecks", check=False)
    assert checks.returncode == 2 and "memcached" in checks.stdout and "mortar pushed" in checks.stdout, checks.stdout
    # The hosts still run (and would pull) exactly what mortar pushed.
    bed = deployed["bed"]
    before = started(bed, "control1")
    assert "Nothing to do" in mortar(deployed, "deploy").stdout
    assert started(bed, "control1") == before
    pins = json.loads((deployed["state"] / "images" / "pushed.json").read_text())["digests"]
    running = bed.run("control1", "docker inspect --format '{{index .RepoDigests 0}}' "
                                  "$(docker inspect --format '{{.Image}}' memcached)").stdout.strip()
    assert running.endswith(pins[f"{ref}:{OLD}"]), (running, pins[f"{ref}:{OLD}"])
    # Put the real image back under its tag so later runs of the registry are not confused.
    real = docker.images.get(f"{NAMESPACE}/memcached:{OLD}")
    real.tag(ref, OLD)
    list(docker.api.push(ref, OLD, stream=True, decode=True, auth_config=auth))


def test_host_state_with_testinfra(deployed):
    for node, containers in (("control1", ["mariadb", "keystone", "nova_api"]), ("compute1", ["nova_compute"]),
                             ("compute2", ["nova_compute"])):
        host = infra_host(deployed, node)
        for name in containers:
            assert host.docker(name).is_running, (node, name)
        state = host.file("/var/lib/mortar")
        assert state.is_directory and state.mode == 0o700 and state.user == "root"
        assert host.file("/var/lib/mortar/desired.json").mode == 0o600
        for container in containers:
            assert host.file(f"/var/lib/mortar/config/{container}").mode == 0o700, (node, container)
        modes = host.check_output("find /var/lib/mortar/config -type f -printf '%m %p\\n'").splitlines()
        assert modes and all(line.split()[0] == "600" for line in modes), modes


def test_each_host_holds_only_the_secrets_it_uses(deployed):
    secrets = yaml.safe_load((deployed["config"] / "passwords.yml").read_text())
    for node in ("compute1", "compute2"):
        state = deployed["bed"].run(node, "cat /var/lib/mortar/desired.json").stdout
        for key in ("database_password", "keystone_admin_password", "keystone_database_password",
                    "nova_database_password", "rabbitmq_cluster_cookie", "glance_keystone_password"):
            assert secrets[key] not in state, (node, key)
        assert secrets["rabbitmq_password"] in state  # it does talk to the queue


def test_no_secret_in_any_output_file_process_or_container(deployed):
    scanner = Scanner.of_site(deployed["config"] / "passwords.yml")
    for text in deployed["outputs"]:
        scanner.text("mortar output", text)
    scanner.processes(deployed["processes"])
    for stdout in (deployed["log"] / "ansible").glob("*/stdout"):
        scanner.text(str(stdout), stdout.read_text(errors="replace"))
    scanner.files([deployed["state"], deployed["log"], deployed["config"]])
    bed = deployed["bed"]
    pattern = deployed["state"] / "patterns"
    pattern.write_text("\n".join(scanner.secrets) + "\n")
    pattern.chmod(0o600)
    for node in NODES:
        # Every world-readable file of the host (outside the system's own trees), its job logs,
        # and what its engine shows of every container.
        copy = subprocess.run([*bed.ssh_command(node), "umask 077; cat > /root/.mortar-it-patterns"],
                              stdin=pattern.open("rb"), capture_output=True, timeout=30)
        assert copy.returncode == 0, copy.stderr
        try:
            found = bed.run(node, "find / -xdev \\( -path /proc -o -path /sys -o -path /usr -o -path /var/lib/docker "
                                  "-o -path /var/lib/apt -o -path /var/cache \\) -prune -o -type f -perm -o+r "
                                  "-size -4M -print0 2>/dev/null | xargs -0 -r grep -lF -f /root/.mortar-it-patterns "
                                  "2>/dev/null; grep -lF -f /root/.mortar-it-patterns /var/log/mortar/deploy/*.log "
                                  "2>/dev/null; docker inspect $(docker ps -aq) 2>/dev/null | "
                                  "grep -cF -f /root/.mortar-it-patterns", timeout=300).stdout.split()
        finally:
            bed.run(node, "rm -f /root/.mortar-it-patterns", timeout=30)
        assert found == ["0"], (node, found)
    assert scanner.leaks == [], [str(leak) for leak in scanner.leaks][:10]


def test_a_node_stopped_mid_deploy_is_named_and_a_rerun_converges(deployed, docker):
    bed = deployed["bed"]
    override = deployed["config"] / "config" / "nova.conf"
    override.write_text("[DEFAULT]\nreserved_host_disk_mb = 512\n")
    proc = subprocess.Popen([sys.executable, "-m", "mortar", "deploy", "--config-dir", str(deployed["config"])],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=site_env(deployed))
    assert proc.stdout is not None
    lines = []
    node = docker.containers.get(f"mortar-testbed-{BED}-compute2")
    for line in proc.stdout:
        lines.append(line)
        if "nova: job api_db_sync" in line:
            node.stop(timeout=5)
            break
    lines.append(proc.stdout.read())
    proc.wait(timeout=900)
    out = "".join(lines)
    try:
        assert proc.returncode != 0, out
        assert "compute2" in out and "unreachable" in out and "Traceback" not in out, out
        # The failed phase stopped every later phase on every host.
        assert not re.search(r"\[control\d\] after", out.split("compute2", 1)[1]), out
    finally:
        bed.up(LAYOUT, log=lambda _: None)
    # The node rebooted: its engine is down until bootstrap-servers starts it again.
    mortar(deployed, "bootstrap-servers", "--limit", "compute2")
    out = mortar(deployed, "deploy").stdout
    assert "deploy finished" in out
    assert set(started(bed, "compute2")) == COMPUTE
    assert "Nothing to do" in mortar(deployed, "deploy").stdout
    # compute2 boots servers again: the upgrade's verify, next, boots them on both compute hosts.


def image_of(bed: Testbed, node: str, container: str) -> str:
    out = bed.run(node, f"docker inspect --format '{{{{.Config.Image}}}}' {container}", timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def compute_rpc(bed: Testbed, node: str, container: str) -> str:
    """What the container's nova.conf sets [upgrade_levels] compute to."""
    conf = bed.run(node, f"cat /var/lib/mortar/config/{container}/nova.conf", timeout=60).stdout
    found = re.search(r"^\[upgrade_levels\]\n(?:#.*\n)*compute = (\S+)$", conf, re.M)
    assert found, conf
    return found.group(1)


def guest_process(bed: Testbed, node: str, server_id: str) -> str:
    """The guest's QEMU process on NODE (libvirt gives QEMU the server's UUID) and its start time."""
    script = (r"""for d in /proc/[0-9]*; do case "$(tr '\0' ' ' < $d/cmdline 2>/dev/null)" in *qemu-system*) """
              r"""uuid=$(tr '\0' ' ' < $d/cmdline | grep -o -- '-uuid [0-9a-f-]*'); """
              r"""echo "${d#/proc/} $(cut -d' ' -f22 $d/stat) $uuid";; esac; done""")
    out = bed.run(node, f"docker exec nova_libvirt sh -c {shlex.quote(script)}", timeout=60)
    assert out.returncode == 0, out.stderr
    mine = [line for line in out.stdout.splitlines() if line.endswith(f"-uuid {server_id}")]
    assert len(mine) == 1, f"not one QEMU process for server {server_id} on {node}: {out.stdout}"
    return mine[0]


def test_upgrade_moves_the_control_plane_first_then_the_compute_hosts(deployed):
    from tests.integration.test_deploy import connect

    bed = deployed["bed"]
    mortar(deployed, "build", *[f"^{name}$" for name in IMAGES], "--namespace", NAMESPACE, "--release", NEW,
           "--tag", NEW, "--push", "--registry", REGISTRY, "--config-dir", str(deployed["config"]), site_args=False)
    conn = connect(deployed)
    server = conn.compute.create_server(name="kept-guest", image_id=conn.image.find_image("mortar-guest").id,
                                        flavor_id=conn.compute.find_flavor("m1.tiny").id,
                                        networks=[{"uuid": conn.network.find_network("demo-net").id}])
    server = wait_active(conn, server)
    guest_node = server.compute_host
    guest = guest_process(bed, guest_node, server.id)
    before = {n: started(bed, n) for n in NODES}

    # The control plane first: the compute hosts keep running 2026.1, untouched.
    clock = time.monotonic()
    out = mortar(deployed, "upgrade", "--release", NEW, "--limit", "control").stdout
    MEASURED[f"test bed upgrade {OLD} -> {NEW}, --limit control"] = f"{time.monotonic() - clock:.1f} s"
    assert f"preflight passed: {OLD} -> {NEW} on {', '.join(CONTROLS)}" in out, out
    assert f"note: compute1, compute2 still run(s) {OLD}: upgrade them with --limit" in out, out
    assert "held back" not in out, out
    for node in CONTROLS:
        assert image_of(bed, node, "nova_conductor").endswith(f"/nova-conductor:{NEW}"), (node, out)
    for node in COMPUTES:
        assert started(bed, node) == before[node], node
        assert image_of(bed, node, "nova_compute").endswith(f"/nova-compute:{OLD}")
    # The new control plane speaks 2026.1's compute RPC (nova's alias of it) to those hosts.
    for node in CONTROLS:
        assert {compute_rpc(bed, node, c) for c in ("nova_api", "nova_conductor", "nova_scheduler")} == {"gazpacho"}
    refused = mortar(deployed, "deploy", check=False)
    assert refused.returncode == 2 and "compute1, compute2" in refused.stderr, refused.stderr
    # A cloud half-way through: servers boot on both compute hosts one series behind, guests answer SSH.
    out = mortar(deployed, "verify", "--keep-failed").stdout
    assert "0 failed" in out and "FAIL" not in out, out

    # Then the compute hosts: the last one moved lifts the pin on every host.
    control = {n: started(bed, n) for n in CONTROLS}
    clock = time.monotonic()
    out = mortar(deployed, "upgrade", "--release", NEW, "--limit", "compute").stdout
    MEASURED[f"test bed upgrade {OLD} -> {NEW}, --limit compute"] = f"{time.monotonic() - clock:.1f} s"
    assert f"preflight passed: {OLD} -> {NEW} on compute1, compute2" in out, out
    assert f"every host runs {NEW} now: restarting what was held back for older hosts" in out, out
    assert "still run(s)" not in out, out
    for node in CONTROLS:
        after = started(bed, node)
        assert all(after[c] != control[node][c] for c in ("nova_api", "nova_conductor", "nova_scheduler")), \
            (node, control[node], after)
        assert after["keystone"] == control[node]["keystone"] and after["mariadb"] == control[node]["mariadb"], node
    for node in NODES:
        containers = ("nova_compute",) if node in COMPUTES else ("nova_api", "nova_conductor", "nova_scheduler")
        assert {compute_rpc(bed, node, c) for c in containers} == {"auto"}, node
    for node in COMPUTES:
        assert image_of(bed, node, "nova_compute").endswith(f"/nova-compute:{NEW}")
        now = started(bed, node)
        assert {c: now[c] for c in ("nova_libvirt", "openvswitch_vswitchd")} == \
            {c: before[node][c] for c in ("nova_libvirt", "openvswitch_vswitchd")}, node
    assert guest_process(bed, guest_node, server.id) == guest, "the guest kept running"
    assert conn.compute.get_server(server.id).status == "ACTIVE"
    out = mortar(deployed, "verify", "--keep-failed").stdout
    assert "0 failed" in out and "FAIL" not in out, out
    assert "Nothing to do" in mortar(deployed, "upgrade", "--release", NEW).stdout
    assert "Nothing to do" in mortar(deployed, "deploy").stdout
    conn.compute.delete_server(server)


def test_killing_the_holder_of_the_virtual_address_moves_it_and_loses_nothing(deployed, docker):
    from tests.integration.test_deploy import connect

    bed = deployed["bed"]
    conn = connect(deployed)
    server = wait_active(conn, conn.compute.create_server(
        name="ha-kept", image_id=conn.image.find_image("mortar-guest").id,
        flavor_id=conn.compute.find_flavor("m1.tiny").id, networks="none"))
    data = b"kept through a controller's loss\n" * 4096
    image = conn.image.create_image(name="ha-kept-image", data=io.BytesIO(data), disk_format="raw",
                                    container_format="bare", allow_duplicates=True)
    project = conn.identity.create_project(name="ha-kept-project")
    holder = vip_holder(bed)[0]
    with ClientLoop(deployed) as loop:
        time.sleep(5)
        assert not loop.failures(), loop.failures()
        killed_at = time.monotonic()
        node_container(docker, holder).kill()
        deployed["killed"] = holder  # the next test brings it back, whatever this one finds
        survivors = [n for n in CONTROLS if n != holder]
        wait_for("the virtual address moved", lambda: vip_holder(bed, survivors), timeout=120, delay=1)
        wait_for("the APIs answer again", lambda: loop.rounds and not loop.rounds[-1][1] and
                 loop.rounds[-1][0] > killed_at, timeout=300, delay=1)
        time.sleep(30)  # and go on answering
    outage = loop.unavailable(killed_at)
    MEASURED[f"HA: APIs unavailable after killing {holder} (the virtual address's holder)"] = f"{outage:.1f} s"
    assert outage <= 30, f"the APIs were unavailable for {outage:.1f} s (failed rounds, UTC: {loop.failed_at()})"
    last_failure = loop.failures(killed_at)[-1][0] if loop.failures(killed_at) else killed_at
    # Nothing failed after the APIs came back, and the loop kept asking for the 30 s it was
    # given (rounds, not a count of them: a round takes longer than a second on a loaded machine).
    after = [t for t, _ in loop.rounds if t > last_failure]
    assert len(after) >= 5 and after[-1] - after[0] >= 20, f"the loop stopped asking: {len(after)} rounds"
    assert len(vip_holder(bed, survivors)) == 1
    for node in survivors:
        assert galera_size(bed, node) == 2
        assert f"rabbit@{holder}" not in rabbit_running(bed, node)
    assert conn.compute.get_server(server.id).status == "ACTIVE"
    assert hashlib.md5(b"".join(conn.image.download_image(image.id, stream=True).iter_content(65536))).hexdigest() \
        == hashlib.md5(data).hexdigest()
    assert conn.identity.find_project("ha-kept-project").id == project.id


def test_the_killed_host_comes_back_and_rejoins_every_cluster(deployed):
    bed = deployed["bed"]
    holder = deployed["killed"]
    bed.up(LAYOUT, log=lambda _: None)
    # The host boots: its engine starts (what bootstrap-servers does) and restarts its containers.
    mortar(deployed, "bootstrap-servers", "--limit", holder)
    wait_for("Galera has three members again", lambda: all(galera_size(bed, n) == 3 for n in CONTROLS))
    wait_for("RabbitMQ runs on three nodes again",
             lambda: rabbit_running(bed, holder) == [f"rabbit@{n}" for n in CONTROLS])
    for db in ("OVN_Northbound", "OVN_Southbound"):
        wait_for(f"{db}: the member is back", lambda db=db: "Status: cluster member" in raft_servers(bed, holder, db))
    out = mortar(deployed, "deploy").stdout
    assert "deploy finished" in out or "Nothing to do" in out, out


def test_a_rolling_reconfigure_keeps_the_apis_answering(deployed):
    bed = deployed["bed"]
    (deployed["config"] / "config").mkdir(exist_ok=True)
    (deployed["config"] / "config" / "keystone.conf").write_text("[token]\nexpiration = 43200\n")
    before = {n: on(bed, n, "docker inspect --format '{{.State.StartedAt}}' keystone").strip() for n in CONTROLS}
    with ClientLoop(deployed, timeout=SLOW_BUT_ANSWERING) as loop:
        time.sleep(3)
        out = mortar(deployed, "reconfigure").stdout
        time.sleep(3)
    assert "one host at a time" in out, out
    MEASURED["HA: slowest client round during the rolling reconfigure"] = f"{loop.slowest:.1f} s"
    after = {n: on(bed, n, "docker inspect --format '{{.State.StartedAt}}' keystone").strip() for n in CONTROLS}
    assert all(after[n] != before[n] for n in CONTROLS), (before, after)
    if loop.failures():
        # When each HAProxy took each keystone out and put it back, beside when the client failed.
        asked = "docker logs --timestamps --since 15m haproxy 2>&1 | grep 'Server keystone/' | tail -20"
        seen = {n: bed.run(n, asked, timeout=60).stdout for n in CONTROLS}
        raise AssertionError(f"failed rounds (UTC): {loop.failed_at()}; the reconfigure said: "
                             f"{[line for line in out.splitlines() if 'keystone' in line][:30]}; "
                             f"HAProxy said: {seen}")
    assert len(loop.rounds) > 10


def test_all_control_hosts_stopped_then_deploy_brings_back_every_row(deployed, docker):
    from tests.integration.test_deploy import connect

    bed = deployed["bed"]
    conn = connect(deployed)
    before = sorted(p.name for p in conn.identity.projects())
    for node in CONTROLS:
        node_container(docker, node).stop(timeout=30)
    bed.up(LAYOUT, log=lambda _: None)
    mortar(deployed, "bootstrap-servers", "--limit", "control")
    clock = time.monotonic()
    mortar(deployed, "deploy")
    MEASURED["HA: deploy after all control hosts stopped"] = f"{time.monotonic() - clock:.1f} s"
    wait_for("Galera has three members", lambda: all(galera_size(bed, n) == 3 for n in CONTROLS))
    conn = connect(deployed)
    assert sorted(p.name for p in conn.identity.projects()) == before
    assert "ha-kept-project" in before
    out = mortar(deployed, "verify", "--keep-failed").stdout
    assert "0 failed" in out and "FAIL" not in out, out


def test_mariadb_recovery_starts_the_cluster_again_with_every_row(deployed):
    from tests.integration.test_deploy import connect

    bed = deployed["bed"]
    before = sorted(p.name for p in connect(deployed).identity.projects())
    out = mortar(deployed, "mariadb-recovery").stdout
    for node in CONTROLS:
        assert f"[{node}] stopped mariadb" in out, out
    assert "mariadb-recovery finished" in out, out
    wait_for("Galera has three members", lambda: all(galera_size(bed, n) == 3 for n in CONTROLS))
    assert sorted(p.name for p in connect(deployed).identity.projects()) == before


def test_stop_keeps_data_then_deploy_starts_again(deployed):
    bed = deployed["bed"]
    mortar(deployed, "stop")
    for node in NODES:
        assert started(bed, node) == {}
    mortar(deployed, "deploy")
    for node in COMPUTES:
        assert set(started(bed, node)) == COMPUTE
    for node in CONTROLS:
        assert set(CONTROL_PLANE) <= set(started(bed, node)), node


def test_destroy_removes_everything_on_every_host(deployed):
    bed = deployed["bed"]
    mortar(deployed, "destroy", "--yes-i-really-really-mean-it")
    for node in NODES:
        out = bed.run(node, "docker ps -aq --filter label=org.mortar.managed; docker volume ls -q "
                            "--filter label=org.mortar.managed; ls /var/lib/mortar/config 2>/dev/null; "
                            "ls /var/lib/mortar/desired.json 2>/dev/null", timeout=60)
        assert out.stdout.strip() == "", (node, out.stdout)
