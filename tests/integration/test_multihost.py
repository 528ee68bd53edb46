"""A multi-host deploy over Ansible on three node hosts (1 control, 2 compute) of the test bed.

One site, in order, through the CLI an operator uses: registry start, build --push,
bootstrap-servers (twice: the second changes nothing), prechecks, pull, deploy, verify
(servers on both compute hosts); then a no-op deploy, a one-host override that restarts
only that host's nova_compute, host state checked with pytest-testinfra over the same SSH,
an unreachable host named by prechecks and a re-run that converges after it is back, stop,
and destroy. Teardown removes the registry, its data and every node.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mortar.testbed.nodes import GATEWAY, Testbed, standard_layout
from tests.integration.conftest import NAMESPACE, TAG, build

pytestmark = pytest.mark.integration

BED = "pytest-mh"
REGISTRY = f"{GATEWAY}:4000"
IMAGES = ["mariadb-server", "memcached", "rabbitmq", "ovn-northd", "ovn-nb-db", "ovn-sb-db", "keystone", "glance-api",
          "placement-api", "nova-api", "nova-conductor", "nova-scheduler", "nova-compute", "neutron-server", "horizon"]


def mortar(site, *args: str, check: bool = True, site_args: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, MORTAR_STATE_DIR=str(site["state"]))
    extra = ["--config-dir", str(site["config"])] if site_args else []
    proc = subprocess.run([sys.executable, "-m", "mortar", *args, *extra], capture_output=True, text=True, env=env,
                          timeout=1800)
    site["outputs"].append(proc.stdout + proc.stderr)
    if check:
        assert proc.returncode == 0, f"mortar {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def started(bed: Testbed, node: str) -> dict[str, str]:
    """Every mortar container on a node: name -> start time (changes when it is recreated or restarted)."""
    out = bed.run(node, "docker ps -q --filter label=org.mortar.managed | xargs -r docker inspect "
                        "--format '{{.Name}} {{.State.StartedAt}}'", timeout=60)
    assert out.returncode == 0, out.stderr
    return dict(line.lstrip("/").split(" ", 1) for line in out.stdout.splitlines() if line.strip())


def infra_host(bed: Testbed, node: str):
    import testinfra

    address = next(n["address"] for n in bed.status() if n["node"] == node)
    return testinfra.get_host(f"ssh://root@{address}", ssh_identity_file=str(bed.key_path),
                              ssh_extra_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                             "-o LogLevel=ERROR")


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
    _, results = build(engine, IMAGES, tmp_path_factory.mktemp("mh-build"))
    failed = {n: r.error for n, r in results.items() if r.status not in ("done", "cached")}
    assert not failed, failed
    root = tmp_path_factory.mktemp("mh-site")
    data = {"config": root / "etc", "state": root / "state", "outputs": [], "bed": bed}
    mortar(data, "init")
    (data["config"] / "globals.yml").write_text(yaml.safe_dump(
        {"image_namespace": NAMESPACE, "image_tag": TAG, "docker_registry": REGISTRY}))
    (data["config"] / "inventory").write_text(bed.inventory_path.read_text())
    mortar(data, "genpwd")
    try:
        mortar(data, "registry", "start")
        yield data
    finally:
        mortar(data, "destroy", "--yes-i-really-really-mean-it", check=False)
        mortar(data, "registry", "stop", "--remove-data", check=False, site_args=False)


@pytest.fixture(scope="module")
def deployed(site):
    mortar(site, "build", *[f"^{name}$" for name in IMAGES], "--namespace", NAMESPACE, "--tag", TAG,
           "--push", "--registry", REGISTRY, site_args=False)
    first = mortar(site, "bootstrap-servers").stdout
    assert first.count("bootstrap ") == 3, first
    again = mortar(site, "bootstrap-servers").stdout
    assert again.count("ok (no change)") == 3, again
    mortar(site, "prechecks")
    pulled = mortar(site, "pull").stdout
    assert all(f"[{n}] pull" in pulled for n in ("control1", "compute1", "compute2")), pulled
    out = mortar(site, "deploy").stdout
    site["deploy_output"] = out
    mortar(site, "post-deploy")
    return site


def test_deploy_places_services_by_group(deployed):
    bed = deployed["bed"]
    control = started(bed, "control1")
    for name in ("mariadb", "rabbitmq", "memcached", "keystone", "glance_api", "placement_api", "nova_api",
                 "nova_conductor", "nova_scheduler", "neutron_server", "ovn_nb_db", "ovn_sb_db", "ovn_northd"):
        assert name in control, (name, sorted(control))
    assert "nova_compute" not in control
    for node in ("compute1", "compute2"):
        assert set(started(bed, node)) == {"nova_compute"}
    # one line per host per phase, not Ansible's task output
    out = deployed["deploy_output"]
    assert "[compute1] containers nova: create nova_compute" in out and "TASK [" not in out, out
    assert "Ansible task(s)" in out


def test_services_bind_the_hosts_address_not_loopback(deployed):
    host = infra_host(deployed["bed"], "control1")
    address = next(n["address"] for n in deployed["bed"].status() if n["node"] == "control1")
    assert host.socket(f"tcp://{address}:5000").is_listening
    assert not host.socket("tcp://127.0.0.1:5000").is_listening


def test_verify_boots_servers_on_both_compute_hosts(deployed):
    out = mortar(deployed, "verify").stdout
    assert "0 failed" in out and "FAIL" not in out, out
    line = next(line for line in out.splitlines() if line.startswith("servers on every compute host"))
    assert "compute1" in line and "compute2" in line, line


def test_second_deploy_changes_nothing(deployed):
    bed = deployed["bed"]
    before = {n: started(bed, n) for n in ("control1", "compute1", "compute2")}
    out = mortar(deployed, "deploy").stdout
    assert "Nothing to do" in out, out
    assert {n: started(bed, n) for n in before} == before
    plan = mortar(deployed, "plan").stdout
    assert "No changes" in plan and plan.count(": no changes") == 3, plan


def test_one_host_override_restarts_only_its_container(deployed):
    bed = deployed["bed"]
    before = {n: started(bed, n) for n in ("control1", "compute1", "compute2")}
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


def test_host_state_with_testinfra(deployed):
    passwords = [v for v in yaml.safe_load((deployed["config"] / "passwords.yml").read_text()).values()
                 if isinstance(v, str) and len(v) >= 8]
    for node, containers in (("control1", ["mariadb", "keystone", "nova_api"]), ("compute1", ["nova_compute"]),
                             ("compute2", ["nova_compute"])):
        host = infra_host(deployed["bed"], node)
        for name in containers:
            assert host.docker(name).is_running, (node, name)
        state = host.file("/var/lib/mortar")
        assert state.is_directory and state.mode == 0o700 and state.user == "root"
        desired = host.file("/var/lib/mortar/desired.json")
        assert desired.mode == 0o600
        for container in containers:
            directory = host.file(f"/var/lib/mortar/config/{container}")
            assert directory.mode == 0o700, (node, container)
        modes = host.check_output("find /var/lib/mortar/config -type f -printf '%m %p\\n'").splitlines()
        assert modes and all(line.split()[0] == "600" for line in modes), modes
        # No secret in any file others can read, in the places mortar and Ansible write.
        readable = host.check_output(
            "find /var/lib/mortar /var/log/mortar /etc /root /tmp -xdev -type f -perm -o+r -size -2M 2>/dev/null "
            "|| true").splitlines()
        listing = "\n".join(readable)
        assert "/var/lib/mortar/desired.json" not in listing
        pattern_file = "/root/.mortar-it-secrets"
        host.run(f"umask 077; cat > {pattern_file} <<'EOF'\n" + "\n".join(passwords) + "\nEOF")
        try:
            hits = host.run(f"printf '%s\\n' {' '.join(repr(p) for p in readable)} | tr '\\n' '\\0' | "
                            f"xargs -0 -r grep -lF -f {pattern_file} 2>/dev/null").stdout.split()
        finally:
            host.run(f"rm -f {pattern_file}")
        assert hits == [], (node, hits)


def test_unreachable_host_is_named_and_a_rerun_converges(deployed, engine):
    bed = deployed["bed"]
    node = engine.containers.get(f"mortar-testbed-{BED}-compute2")
    node.stop(timeout=5)
    try:
        checks = mortar(deployed, "prechecks", check=False)
        assert checks.returncode == 2, checks.stdout + checks.stderr
        assert "FAIL compute2: unreachable" in checks.stdout, checks.stdout
        failed = mortar(deployed, "deploy", check=False)
        assert failed.returncode != 0
        assert "compute2" in failed.stdout + failed.stderr
    finally:
        bed.up(standard_layout(1, 2, 0), log=lambda _: None)
    # The node rebooted: its engine is down until bootstrap-servers starts it again.
    mortar(deployed, "bootstrap-servers", "--limit", "compute2")
    mortar(deployed, "deploy")
    assert set(started(bed, "compute2")) == {"nova_compute"}
    assert "Nothing to do" in mortar(deployed, "deploy").stdout


def test_stop_keeps_data_then_deploy_starts_again(deployed):
    bed = deployed["bed"]
    mortar(deployed, "stop")
    for node in ("control1", "compute1", "compute2"):
        assert started(bed, node) == {}
    mortar(deployed, "deploy")
    assert set(started(bed, "compute1")) == {"nova_compute"}
    assert "keystone" in started(bed, "control1")


def test_destroy_removes_everything_on_every_host(deployed):
    bed = deployed["bed"]
    mortar(deployed, "destroy", "--yes-i-really-really-mean-it")
    for node in ("control1", "compute1", "compute2"):
        out = bed.run(node, "docker ps -aq --filter label=org.mortar.managed; docker volume ls -q "
                            "--filter label=org.mortar.managed; ls /var/lib/mortar/config 2>/dev/null; "
                            "ls /var/lib/mortar/desired.json 2>/dev/null", timeout=60)
        assert out.stdout.strip() == "", (node, out.stdout)


def test_no_secret_in_outputs(deployed):
    passwords = [v for v in yaml.safe_load((deployed["config"] / "passwords.yml").read_text()).values()
                 if isinstance(v, str) and len(v) >= 8]
    text = "\n".join(deployed["outputs"])
    logs = Path("/var/log/mortar/ansible")
    if logs.is_dir():
        for stdout in logs.glob("*/stdout"):
            text += stdout.read_text(errors="replace")
    leaked = [p[:4] + "…" for p in passwords if p in text]
    assert leaked == []
