"""A multi-host deploy over Ansible on three node hosts (1 control, 2 compute) of the test bed.

One site of 2026.1 (Gazpacho), in order, through the CLI an operator uses: registry start (TLS,
password), build --push (digests recorded), bootstrap-servers (refused until host keys are
accepted, then twice: the second changes nothing), prechecks, pull, deploy with compute1 only
(no dashboard: test_deploy and test_ha cover it), then compute2 added with `deploy --limit
compute2` (its compute service is mapped by the control host's job); guest-image, init-runonce
and verify: servers on both compute hosts, and a real guest per compute host answers SSH on a
floating IP (routed from here through control1) and reaches the other over Geneve (each host's
tunnel address on its br-tun); a no-op deploy; a one-host override that restarts only that
host's nova_compute; a changed host key refused; a tag replaced in the registry refused by
prechecks and never run; host state checked with pytest-testinfra over the same SSH; no secret
in any world-readable file, job log, container definition, Ansible output or the process table;
a node stopped mid-deploy named, and a re-run that converges after it is back (its compute
service reports again); the upgrade to 2026.2 with --limit: the control plane first (the
compute hosts stay on 2026.1, pinned to its compute RPC, and verify passes), then the compute
hosts (the pin lifted on every host, the guests kept); stop, destroy. Teardown removes the
registry, its data and every node.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mortar.testbed.nodes import GATEWAY, PROVIDER_NETWORK, Testbed, standard_layout
from mortar.verify.checks import wait_active
from tests.integration.conftest import MEASURED, NAMESPACE, bed_evidence, built, mortar, site_env, wait_for
from tests.integration.secretscan import ProcessSampler, Scanner

pytestmark = pytest.mark.integration

BED = "pytest-mh"
REGISTRY = f"{GATEWAY}:4000"
IMAGES = ["mariadb-server", "memcached", "rabbitmq", "ovn-northd", "ovn-nb-db", "ovn-sb-db", "keystone", "glance-api",
          "placement-api", "nova-api", "nova-conductor", "nova-scheduler", "nova-compute", "nova-libvirt",
          "openvswitch", "ovn-controller", "neutron-server", "neutron-ovn-metadata-agent"]
NODES = ("control1", "compute1", "compute2")
# The series deployed first, and the one the site is upgraded to: image tags are the series.
OLD, NEW = "2026.1", "2026.2"
# The provider network: a veth behind control1's br-ex, its gateway end at the range's first
# address; this host reaches the floating IPs through a route via control1.
PROVIDER_GATEWAY = f"{ipaddress.ip_network(PROVIDER_NETWORK)[1]}/{ipaddress.ip_network(PROVIDER_NETWORK).prefixlen}"
# What a compute host runs: the hypervisor, its switch, OVN's controller and the metadata agent.
COMPUTE = {"nova_compute", "nova_libvirt", "openvswitch_db", "openvswitch_vswitchd", "ovn_controller",
           "neutron_ovn_metadata_agent"}


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


@pytest.fixture(scope="module")
def bed():
    testbed = Testbed(BED)
    try:
        testbed.up(standard_layout(1, 2, 0), log=lambda _: None)
        yield testbed
    finally:
        testbed.down(log=lambda _: None)


@pytest.fixture(scope="module")
def site(engine, bed, tmp_path_factory):
    built(engine, IMAGES, tmp_path_factory.mktemp("mh-build"), release=OLD, tag=OLD)
    root = tmp_path_factory.mktemp("mh-site")
    data = {"config": root / "etc", "state": root / "state", "log": root / "log", "outputs": [], "bed": bed,
            "evidence": bed_evidence(bed, "control1")}
    mortar(data, "init")
    (data["config"] / "globals.yml").write_text(yaml.safe_dump(
        {"openstack_release": OLD, "image_namespace": NAMESPACE, "docker_registry": REGISTRY,
         # The dashboard is tested on one host (test_deploy, test_upgrade) and behind HAProxy on
         # three (test_ha); here its static-file job would only take CPU from the other sessions.
         "enable_horizon": False,
         # Each probe of a running container is an exec of about 0.1 s of CPU; beside the other
         # sessions' clouds on two cores, the bed's containers are probed every 2 min, not 30 s.
         "healthcheck_interval": 120,
         "neutron_external_interface": "mortar-ext", "neutron_external_veth_address": PROVIDER_GATEWAY}))
    (data["config"] / "inventory").write_text(inventory(bed, ("compute1",)))
    mortar(data, "genpwd")
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
    assert first.count("bootstrap ") == 2, first
    # The keys accepted are the nodes' own (the bed read them through the engine).
    recorded = {line.split()[0]: line.split()[2] for line in (site["config"] / "known_hosts").read_text().splitlines()}
    own = {line.split()[0]: line.split()[2] for line in site["bed"].known_hosts_path.read_text().splitlines()}
    assert recorded and all(own[address] == key for address, key in recorded.items())
    again = mortar(site, "bootstrap-servers").stdout
    assert again.count("ok (no change)") == 2, again
    mortar(site, "prechecks")
    pulled = mortar(site, "pull").stdout
    assert all(f"[{n}] pull" in pulled for n in ("control1", "compute1")), pulled
    sampler = ProcessSampler()
    sampler.start()
    try:
        site["deploy_output"] = mortar(site, "deploy").stdout
    finally:
        site["processes"] = sampler.stop()
    # Add compute2: only it is touched, and the control host's job maps it.
    (site["config"] / "inventory").write_text(inventory(site["bed"], ("compute1", "compute2")))
    mortar(site, "bootstrap-servers", "--limit", "compute2", "--accept-new-host-keys")
    site["add_output"] = mortar(site, "deploy", "--limit", "compute2").stdout
    mortar(site, "post-deploy")
    site["bed"].route_via(PROVIDER_NETWORK, "control1")
    return site


def test_deploy_places_services_by_group(deployed):
    bed = deployed["bed"]
    control = started(bed, "control1")
    for name in ("mariadb", "rabbitmq", "memcached", "keystone", "glance_api", "placement_api", "nova_api",
                 "nova_conductor", "nova_scheduler", "neutron_server", "ovn_nb_db", "ovn_sb_db", "ovn_northd"):
        assert name in control, (name, sorted(control))
    assert "nova_compute" not in control
    for node in ("compute1", "compute2"):
        assert set(started(bed, node)) == COMPUTE
    # one line per host per phase, not Ansible's task output
    out = deployed["deploy_output"]
    assert "[compute1] containers nova: create nova_compute" in out and "TASK [" not in out, out
    assert "Ansible task(s)" in out


def test_adding_a_compute_host_with_limit_maps_it(deployed):
    out = deployed["add_output"]
    assert "[compute2] containers nova: create nova_compute" in out, out
    assert "[control1] after      nova: job discover_hosts" in out, out
    assert "[control1] containers" not in out, out


def test_services_bind_the_hosts_address_not_loopback(deployed):
    host = infra_host(deployed, "control1")
    address = next(n["address"] for n in deployed["bed"].status() if n["node"] == "control1")
    assert host.socket(f"tcp://{address}:5000").is_listening
    assert not host.socket("tcp://127.0.0.1:5000").is_listening


def test_verify_boots_servers_and_guests_on_both_compute_hosts_over_geneve(deployed):
    bed = deployed["bed"]
    # Each host's tunnel address sits on its br-tun, and OVN's chassis advertises it.
    for node in NODES:
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
    assert "No changes" in plan and plan.count(": no changes") == 3, plan


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
    assert after["control1"] == before["control1"]
    assert after["compute1"] == before["compute1"]
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
    from tests.integration.test_deploy import connect

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
        assert "[control1] after" not in out.split("compute2", 1)[1], out
    finally:
        bed.up(standard_layout(1, 2, 0), log=lambda _: None)
    # The node rebooted: its engine is down until bootstrap-servers starts it again.
    mortar(deployed, "bootstrap-servers", "--limit", "compute2")
    out = mortar(deployed, "deploy").stdout
    assert "deploy finished" in out
    assert set(started(bed, "compute2")) == COMPUTE
    assert "Nothing to do" in mortar(deployed, "deploy").stdout
    # Its compute service reports to the control plane again (the next test's verify boots
    # servers on it, one series behind and then on the new one).
    conn = connect(deployed)
    wait_for("compute2's nova-compute is up", lambda: [s.state for s in conn.compute.services()
                                                        if s.binary == "nova-compute" and s.host == "compute2"]
             == ["up"])


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
    assert f"preflight passed: {OLD} -> {NEW} on control1" in out, out
    assert f"note: compute1, compute2 still run(s) {OLD}: upgrade them with --limit" in out, out
    assert "held back" not in out, out
    assert image_of(bed, "control1", "nova_conductor").endswith(f"/nova-conductor:{NEW}"), out
    for node in ("compute1", "compute2"):
        assert started(bed, node) == before[node], node
        assert image_of(bed, node, "nova_compute").endswith(f"/nova-compute:{OLD}")
    # The new control plane speaks 2026.1's compute RPC (nova's alias of it) to those hosts.
    assert {compute_rpc(bed, "control1", c) for c in ("nova_api", "nova_conductor", "nova_scheduler")} == {"gazpacho"}
    refused = mortar(deployed, "deploy", check=False)
    assert refused.returncode == 2 and "compute1, compute2" in refused.stderr, refused.stderr
    # A cloud half-way through: servers boot on both compute hosts one series behind, guests answer SSH.
    out = mortar(deployed, "verify", "--keep-failed").stdout
    assert "0 failed" in out and "FAIL" not in out, out

    # Then the compute hosts: the last one moved lifts the pin on every host.
    control = started(bed, "control1")
    clock = time.monotonic()
    out = mortar(deployed, "upgrade", "--release", NEW, "--limit", "compute").stdout
    MEASURED[f"test bed upgrade {OLD} -> {NEW}, --limit compute"] = f"{time.monotonic() - clock:.1f} s"
    assert f"preflight passed: {OLD} -> {NEW} on compute1, compute2" in out, out
    assert f"every host runs {NEW} now: restarting what was held back for older hosts" in out, out
    assert "still run(s)" not in out, out
    after = started(bed, "control1")
    assert all(after[c] != control[c] for c in ("nova_api", "nova_conductor", "nova_scheduler")), (control, after)
    assert after["keystone"] == control["keystone"] and after["mariadb"] == control["mariadb"]
    for node in ("control1", "compute1", "compute2"):
        containers = ("nova_compute",) if node != "control1" else ("nova_api", "nova_conductor", "nova_scheduler")
        assert {compute_rpc(bed, node, c) for c in containers} == {"auto"}, node
    for node in ("compute1", "compute2"):
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


def test_stop_keeps_data_then_deploy_starts_again(deployed):
    bed = deployed["bed"]
    mortar(deployed, "stop")
    for node in NODES:
        assert started(bed, node) == {}
    mortar(deployed, "deploy")
    assert set(started(bed, "compute1")) == COMPUTE
    assert "keystone" in started(bed, "control1")


def test_destroy_removes_everything_on_every_host(deployed):
    bed = deployed["bed"]
    mortar(deployed, "destroy", "--yes-i-really-really-mean-it")
    for node in NODES:
        out = bed.run(node, "docker ps -aq --filter label=org.mortar.managed; docker volume ls -q "
                            "--filter label=org.mortar.managed; ls /var/lib/mortar/config 2>/dev/null; "
                            "ls /var/lib/mortar/desired.json 2>/dev/null", timeout=60)
        assert out.stdout.strip() == "", (node, out.stdout)
