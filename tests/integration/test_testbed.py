"""The multi-host test bed on the real Docker Engine: two nodes that behave like hosts.

Brings up the bed "pytest-tb" (its state in a temporary directory) and always takes it down again.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import time

import pytest

from mortar.testbed.nodes import GATEWAY, LABEL, NETWORK, SUBNET, Testbed

pytestmark = pytest.mark.integration

BED = "pytest-tb"
LAYOUT = [("control1", ["control", "network"]), ("compute1", ["compute"])]
INNER_DAEMON = {"bridge": "none", "iptables": False, "ip-forward": False}


@pytest.fixture(scope="module")
def bed(engine, tmp_path_factory):
    testbed = Testbed(BED, engine, tmp_path_factory.mktemp("testbed-state"))
    try:
        nodes = testbed.up(LAYOUT, log=lambda _: None)
        yield testbed, nodes
    finally:
        testbed.down(log=lambda _: None)


def run(testbed: Testbed, node: str, command: str, timeout: float = 60):
    proc = testbed.run(node, command, timeout=timeout)
    assert proc.returncode == 0, f"{node}: {command!r} exited {proc.returncode}: {proc.stderr}{proc.stdout}"
    return proc.stdout


def test_nodes_answer_ssh_under_their_own_names(bed) -> None:
    testbed, nodes = bed
    assert [n.name for n in nodes] == [name for name, _ in LAYOUT]
    assert len({n.address for n in nodes}) == 2
    assert all(ipaddress.IPv4Address(n.address) in ipaddress.IPv4Network(SUBNET) for n in nodes)
    for node in nodes:
        assert run(testbed, node.name, "hostname").strip() == node.name
    assert {row["node"]: row["state"] for row in testbed.status()} == {"control1": "running", "compute1": "running"}


def test_nodes_reach_each_other_and_the_host_but_have_no_default_route(bed) -> None:
    testbed, nodes = bed
    control, compute = nodes
    run(testbed, "control1", f"ping -c1 -W2 {compute.address}")
    run(testbed, "compute1", f"ping -c1 -W2 {control.address}")
    run(testbed, "compute1", f"ping -c1 -W2 {GATEWAY}")
    # By name too, and to this bed's node even when another bed on the network has one of that name.
    assert run(testbed, "compute1", "getent hosts control1").split()[0] == control.address
    for node in nodes:
        assert run(testbed, node.name, "ip -4 route show default").strip() == ""


def test_var_lib_docker_is_a_volume_not_the_overlay_root(bed) -> None:
    testbed, _ = bed
    run(testbed, "compute1", "mountpoint -q /var/lib/docker")
    assert run(testbed, "compute1", "findmnt -n -o FSTYPE /var/lib/docker").strip() != "overlay"


def test_second_up_keeps_the_running_nodes(bed, docker) -> None:
    testbed, nodes = bed
    before = {c.name: c.id for c in docker.containers.list(filters={"label": f"{LABEL}={BED}"})}
    again = testbed.up(LAYOUT, log=lambda _: None)
    after = {c.name: c.id for c in docker.containers.list(filters={"label": f"{LABEL}={BED}"})}
    assert again == nodes
    assert after == before


def test_a_dockerd_runs_inside_a_node(bed) -> None:
    testbed, _ = bed
    config = shlex.quote(json.dumps(INNER_DAEMON))
    run(testbed, "compute1", f"mkdir -p /etc/docker && echo {config} > /etc/docker/daemon.json")
    # Every stream redirected, or the background dockerd holds the SSH session open.
    pid = run(testbed, "compute1", "dockerd </dev/null >/var/log/dockerd.log 2>&1 & echo $!").strip()
    assert pid.isdigit(), pid
    try:
        deadline = time.monotonic() + 60
        while testbed.run("compute1", "docker info", timeout=30).returncode != 0:
            assert time.monotonic() < deadline, run(testbed, "compute1", "tail -20 /var/log/dockerd.log")
            time.sleep(0.5)
        assert "overlay2" in run(testbed, "compute1", "docker info --format '{{.Driver}}'")
    finally:
        run(testbed, "compute1", f"kill {pid}; for i in $(seq 100); do kill -0 {pid} 2>/dev/null || exit 0; "
                                 "sleep 0.2; done; exit 1")


def test_down_leaves_nothing_labelled(bed, docker) -> None:
    testbed, _ = bed
    testbed.down(log=lambda _: None)
    selector = {"label": f"{LABEL}={BED}"}
    assert docker.containers.list(all=True, filters=selector) == []
    assert docker.volumes.list(filters=selector) == []
    assert not testbed.state_dir.exists()
    other_beds = docker.containers.list(all=True, filters={"label": LABEL})
    if not other_beds:
        assert docker.networks.list(names=[NETWORK]) == []
        assert docker.networks.list(filters={"label": LABEL}) == []
    testbed.down(log=lambda _: None)  # idempotent
