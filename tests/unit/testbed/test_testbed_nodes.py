"""The test bed (mortar/testbed/nodes.py): its pure parts, and up/down/status/ssh on the in-memory engine.

SSH to the nodes is stubbed (subprocess.run for `ssh`); ssh-keygen runs for real, in tmp_path.
"""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mortar.errors import EngineError, MortarError
from mortar.site.inventory import parse_inventory
from mortar.testbed import image as node_image
from mortar.testbed import nodes
from mortar.testbed.nodes import (
    HOST_KEY,
    LABEL,
    NETWORK,
    NODE_LABEL,
    Node,
    Testbed,
    assign_addresses,
    check_bed_name,
    check_layout,
    container_name,
    free_addresses,
    inventory_text,
    known_hosts_text,
    standard_layout,
    volume_name,
)
from tests.unit.fakeengine import FakeEngine

KEY = Path("/var/lib/mortar-testbed/t/id_ed25519")


def test_standard_layout_defaults_make_control1_the_network_node() -> None:
    assert standard_layout() == [("control1", ["control", "network"]), ("compute1", ["compute"]),
                                 ("compute2", ["compute"])]


def test_standard_layout_with_network_nodes() -> None:
    assert standard_layout(2, 1, 2) == [("control1", ["control"]), ("control2", ["control"]),
                                        ("compute1", ["compute"]), ("network1", ["network"]),
                                        ("network2", ["network"])]


@pytest.mark.parametrize("layout, words", [
    ([], "no nodes"),
    ([("a", ["control"]), ("a", ["compute"])], "twice"),
    ([("Control_1", ["control"])], "host name"),
    ([("c1", ["all"])], "group name"),
    ([("c1", ["bad group"])], "group name"),
    ([(f"n{i}", ["compute"]) for i in range(300)], "do not fit"),
])
def test_check_layout_rejects(layout, words: str) -> None:
    with pytest.raises(MortarError, match=words):
        check_layout(layout)


@pytest.mark.parametrize("name", ["", "-x", "a/b", "..", "A", "x" * 32, "a_b"])
def test_bed_names_that_would_break_paths_or_container_names(name: str) -> None:
    with pytest.raises(MortarError, match="--name"):
        check_bed_name(name)


def test_addresses_are_assigned_in_order_from_11() -> None:
    assert assign_addresses(["c1", "x1", "x2"], {}, set()) == {
        "c1": "10.213.77.11", "x1": "10.213.77.12", "x2": "10.213.77.13"}


def test_addresses_are_kept_and_skip_other_containers() -> None:
    # x1 keeps .20; the lowest free for the others skips .11 and .13 (another bed's nodes).
    got = assign_addresses(["c1", "x1", "x2"], {"x1": "10.213.77.20"}, {"10.213.77.11", "10.213.77.13"})
    assert got == {"c1": "10.213.77.12", "x1": "10.213.77.20", "x2": "10.213.77.14"}


def test_an_address_another_container_holds_is_given_up() -> None:
    got = assign_addresses(["c1"], {"c1": "10.213.77.11"}, {"10.213.77.11"})
    assert got == {"c1": "10.213.77.12"}


@pytest.mark.parametrize("address", ["10.213.77.5", "10.9.9.9", "10.213.77.255", "nonsense"])
def test_addresses_outside_the_node_range_are_replaced(address: str) -> None:
    assert assign_addresses(["c1"], {"c1": address}, set()) == {"c1": "10.213.77.11"}


def test_running_out_of_addresses_is_an_error() -> None:
    taken = set(free_addresses(set())[:-1])
    assert assign_addresses(["a"], {}, taken) == {"a": "10.213.77.62"}
    with pytest.raises(MortarError, match="no free address"):
        assign_addresses(["a", "b"], {}, taken)


def test_inventory_parses_into_groups_hosts_and_vars() -> None:
    layout = standard_layout() + [("store1", ["storage", "ceph"])]
    addresses = assign_addresses([name for name, _ in layout], {}, set())
    text = inventory_text("t", [Node(name, addresses[name], groups) for name, groups in layout], KEY)
    inventory = parse_inventory(text, "testbed-inventory")
    assert inventory.groups["control"] == ["control1"]
    assert inventory.groups["network"] == ["control1"]
    assert inventory.groups["compute"] == ["compute1", "compute2"]
    assert inventory.groups["storage"] == ["store1"]
    assert inventory.groups["monitoring"] == []
    assert inventory.groups["ceph"] == ["store1"]
    assert inventory.groups["ungrouped"] == []
    assert inventory.groups["all"] == ["control1", "compute1", "compute2", "store1"]
    compute2 = inventory.hosts["compute2"]
    assert compute2.address == "10.213.77.13"
    # No ssh options: the site's known_hosts decides, and host keys are checked.
    assert compute2.vars == {
        "ansible_host": "10.213.77.13",
        "api_address": "10.213.77.13",
        "neutron_tunnel_address": "10.213.77.141/26",
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(KEY),
        "ansible_python_interpreter": "/usr/bin/python3",
    }


def test_inventory_never_turns_host_key_checking_off() -> None:
    text = inventory_text("t", [Node("c1", "10.213.77.11", ["compute"])], KEY)
    for weakening in ("StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "ansible_ssh_common_args",
                      "host_key_checking"):
        assert weakening not in text


def test_inventory_has_every_standard_group_even_without_nodes() -> None:
    inventory = parse_inventory(inventory_text("t", [Node("c1", "10.213.77.11", ["compute"])], KEY))
    for group in nodes.STANDARD_GROUPS:
        assert inventory.has_group(group)
    assert inventory.hosts_in("control") == []


def test_known_hosts_text_is_address_then_key_type_and_key() -> None:
    keys = {"10.213.77.12": "ssh-ed25519 AAAAC3Nzb root@compute1\n",
            "10.213.77.11": "ssh-ed25519 AAAAC3Nza"}
    assert known_hosts_text(keys) == ("10.213.77.11 ssh-ed25519 AAAAC3Nza\n"
                                      "10.213.77.12 ssh-ed25519 AAAAC3Nzb\n")  # the comment is dropped
    assert known_hosts_text({}) == ""


def host_key(node: str) -> str:
    return f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{node} root@{node}"


@pytest.fixture
def engine() -> FakeEngine:
    """An engine holding the node image, whose nodes show their own host key to `cat`."""
    engine = FakeEngine()
    engine.add_image(node_image.image_ref())
    for bed in ("t", "other"):
        for node in ("control1", "control2", "compute1", "compute2", "compute3"):
            engine.container_files[container_name(bed, node)] = {HOST_KEY: host_key(f"{bed}-{node}") + "\n"}
    return engine


@pytest.fixture(autouse=True)
def no_route_changes_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may run `ip` on this machine (a real bed's route could match a fake node's address)."""
    real = subprocess.run

    def guarded(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert argv[0] != "ip", f"a unit test ran {argv} on this host"
        return real(argv, **kwargs)

    monkeypatch.setattr(nodes.subprocess, "run", guarded)


class FakeSsh:
    """subprocess.run for `ssh`: records each call and what known_hosts held at that moment."""

    def __init__(self, known_hosts: Path, returncode: int = 0) -> None:
        self.known_hosts = known_hosts
        self.returncode = returncode
        self.calls: list[tuple[list[str], str]] = []
        self.real_run = subprocess.run
        # `ip route` on this host: never the real one; `routes` is what `ip route show` answers.
        self.routes: list[str] = []
        self.ip_calls: list[list[str]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if argv[0] == "ip":
            self.ip_calls.append(list(argv))
            shown = "".join(line + "\n" for line in self.routes) if "show" in argv else ""
            return subprocess.CompletedProcess(argv, 0, shown, "")
        if argv[0] != "ssh":
            return self.real_run(argv, **kwargs)  # ssh-keygen, into tmp_path
        held = self.known_hosts.read_text() if self.known_hosts.exists() else ""
        self.calls.append((list(argv), held))
        return subprocess.CompletedProcess(argv, self.returncode, "", "" if self.returncode == 0 else "refused")


@pytest.fixture
def ssh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeSsh:
    fake = FakeSsh(tmp_path / "beds" / "t" / "known_hosts")
    monkeypatch.setattr(nodes.subprocess, "run", fake)
    return fake


def bed(engine: FakeEngine, tmp_path: Path, name: str = "t") -> Testbed:
    return Testbed(name, engine=engine, state_root=tmp_path / "beds")


def up(testbed: Testbed, layout=None) -> list[Node]:
    return testbed.up(layout if layout is not None else standard_layout(1, 2), log=lambda _: None)


def option(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1].split("=", 1)[1] for i, a in enumerate(argv[:-1])
            if a == "-o" and argv[i + 1].startswith(f"{name}=")]


def test_up_writes_known_hosts_from_each_nodes_own_key(engine: FakeEngine, ssh: FakeSsh, tmp_path: Path) -> None:
    testbed = bed(engine, tmp_path)
    made = up(testbed)
    assert [(n.name, n.address) for n in made] == [("control1", "10.213.77.11"), ("compute1", "10.213.77.12"),
                                                   ("compute2", "10.213.77.13")]
    assert testbed.known_hosts_path.read_text() == (
        f"10.213.77.11 {' '.join(host_key('t-control1').split()[:2])}\n"
        f"10.213.77.12 {' '.join(host_key('t-compute1').split()[:2])}\n"
        f"10.213.77.13 {' '.join(host_key('t-compute2').split()[:2])}\n")
    reads = [(target, c) for c, target in engine.calls if c == "exec"]
    assert sorted(reads) == sorted((container_name("t", n.name), "exec") for n in made)
    # Every ssh checks the host key strictly, against the bed's known_hosts, which already holds the node.
    assert ssh.calls
    for argv, held in ssh.calls:
        assert option(argv, "StrictHostKeyChecking") == ["yes"]
        assert option(argv, "UserKnownHostsFile") == [str(testbed.known_hosts_path)]
        address = next(a for a in argv if a.startswith("root@")).removeprefix("root@")
        assert f"{address} ssh-ed25519 " in held


def test_up_writes_the_inventory_and_a_private_key(engine: FakeEngine, ssh: FakeSsh, tmp_path: Path) -> None:
    testbed = bed(engine, tmp_path)
    up(testbed)
    text = testbed.inventory_path.read_text()
    inventory = parse_inventory(text, "inventory")
    assert inventory.groups["compute"] == ["compute1", "compute2"]
    assert inventory.hosts["control1"].vars["ansible_ssh_private_key_file"] == str(testbed.key_path)
    assert "StrictHostKeyChecking=no" not in text and "/dev/null" not in text
    assert testbed.key_path.stat().st_mode & 0o777 == 0o600
    assert not testbed.inventory_path.with_suffix(".partial").exists()


def test_up_creates_labelled_nodes_on_the_bed_network(engine: FakeEngine, ssh: FakeSsh, tmp_path: Path) -> None:
    up(bed(engine, tmp_path))
    network = engine.network(NETWORK)
    assert network is not None and network.pools == [(nodes.SUBNET, nodes.GATEWAY)]
    node = engine.containers_by_name[container_name("t", "compute1")]
    assert node.info.status == "running"
    assert node.spec.labels == {LABEL: "t", NODE_LABEL: "compute1"}
    assert node.spec.network == NETWORK and node.spec.address == "10.213.77.12"
    assert node.spec.hostname == "compute1" and node.spec.image == node_image.image_ref()
    assert node.spec.extra_hosts == {}  # names only when up is given them
    # Its own /var/lib/docker, and the bed's shared folder (a shared filesystem every node mounts).
    assert [(m.source, m.target) for m in node.spec.mounts] == [
        (volume_name("t", "compute1"), "/var/lib/docker"),
        (str(tmp_path / "beds" / "t" / "shared"), nodes.SHARED_MOUNT)]
    assert engine.volumes_by_name[volume_name("t", "compute1")].labels == {LABEL: "t", NODE_LABEL: "compute1"}
    assert ("put_archive", container_name("t", "compute1")) in engine.calls


def test_names_given_to_up_go_into_every_new_nodes_hosts(engine: FakeEngine, ssh: FakeSsh, tmp_path: Path) -> None:
    testbed = bed(engine, tmp_path)
    testbed.up(standard_layout(1, 1), log=lambda _: None, names={"internal.example.test": "10.213.77.70"})
    for node in ("control1", "compute1"):
        assert engine.containers_by_name[container_name("t", node)].spec.extra_hosts == {
            "internal.example.test": "10.213.77.70"}


def test_a_second_up_keeps_nodes_and_addresses(engine: FakeEngine, ssh: FakeSsh, tmp_path: Path) -> None:
    testbed = bed(engine, tmp_path)
    first = up(testbed)
    known_hosts = testbed.known_hosts_path.read_text()
    engine.calls.clear()
    assert up(testbed) == first
    assert [c for c in engine.changes() if c[0] in ("create", "remove", "start")] == []
    assert testbed.known_hosts_path.read_text() == known_hosts


def test_up_with_fewer_nodes_removes_the_others_and_their_host_keys(engine: FakeEngine, ssh: FakeSsh,
                                                                    tmp_path: Path) -> None:
    testbed = bed(engine, tmp_path)
    up(testbed)
    up(testbed, standard_layout(1, 1))
    assert container_name("t", "compute2") not in engine.containers_by_name
    assert volume_name("t", "compute2") not in engine.volumes_by_name
    assert "10.213.77.13" not in testbed.known_hosts_path.read_text()
    assert "compute2" not in testbed.inventory_path.read_text()


def test_two_beds_share_the_network_without_sharing_addresses(engine: FakeEngine, ssh: FakeSsh,
                                                              tmp_path: Path) -> None:
    up(bed(engine, tmp_path, "other"), standard_layout(1, 1))
    mine = up(bed(engine, tmp_path))
    assert [n.address for n in mine] == ["10.213.77.13", "10.213.77.14", "10.213.77.15"]
    assert "10.213.77.11" not in bed(engine, tmp_path).known_hosts_path.read_text()


def test_a_node_without_a_host_key_is_an_error(engine: FakeEngine, tmp_path: Path) -> None:
    testbed = bed(engine, tmp_path)
    engine.add_image("debian:trixie")
    engine.create(nodes.RunSpec(name=container_name("t", "compute9"), image="debian:trixie"))
    with pytest.raises(MortarError, match="node compute9: no SSH host key after 0s"):
        testbed._host_key(Node("compute9", "10.213.77.19", []), timeout=0.2)


def test_a_node_that_stops_while_starting_fails_the_up(engine: FakeEngine, monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    ssh = FakeSsh(tmp_path / "beds" / "t" / "known_hosts", returncode=255)
    monkeypatch.setattr(nodes.subprocess, "run", ssh)

    def crash_after_key_read(operation: str, target: str) -> None:
        if operation == "exec":  # the node showed its host key, then its sshd died
            engine.containers_by_name[target].info.status = "exited"

    engine.on_call = crash_after_key_read
    with pytest.raises(MortarError, match="node control1: container exited while starting"):
        up(bed(engine, tmp_path), standard_layout(1, 0))
    assert len(ssh.calls) == 1  # gave up at once, not after the SSH timeout


def test_up_without_the_node_image_builds_it(engine: FakeEngine, ssh: FakeSsh, tmp_path: Path) -> None:
    engine.images_by_ref.clear()
    engine.add_image("debian:trixie")
    up(bed(engine, tmp_path), standard_layout(1, 0))
    built = engine.images_by_ref[node_image.image_ref()]
    assert built.labels == {node_image.IMAGE_LABEL: node_image.content_hash()}


def test_a_failed_node_image_build_says_so(engine: FakeEngine, tmp_path: Path) -> None:
    engine.images_by_ref.clear()
    engine.add_image("debian:trixie")
    engine.fail["build"] = EngineError("E: Unable to locate package docker-cli")
    with pytest.raises(EngineError, match="building the test bed node image failed: E: Unable to locate"):
        up(bed(engine, tmp_path), standard_layout(1, 0))
    assert engine.containers_by_name == {}


def test_status_lists_the_bed_nodes_in_address_order(engine: FakeEngine, ssh: FakeSsh, tmp_path: Path) -> None:
    up(bed(engine, tmp_path, "other"), standard_layout(1, 0))
    testbed = bed(engine, tmp_path)
    up(testbed, [("compute1", ["compute"]), ("control1", ["control"])])
    engine.stop(container_name("t", "compute1"))
    assert testbed.status() == [
        {"node": "compute1", "address": "10.213.77.12", "state": "exited", "container": "mortar-testbed-t-compute1"},
        {"node": "control1", "address": "10.213.77.13", "state": "running", "container": "mortar-testbed-t-control1"},
    ]


def test_ssh_command_checks_the_host_key_against_the_beds_known_hosts(engine: FakeEngine, ssh: FakeSsh,
                                                                      tmp_path: Path) -> None:
    testbed = bed(engine, tmp_path)
    up(testbed, standard_layout(1, 0))
    argv = testbed.ssh_command("control1")
    assert argv[0] == "ssh" and argv[-1] == "root@10.213.77.11"
    assert argv[argv.index("-i") + 1] == str(tmp_path / "beds" / "t" / "id_ed25519")
    assert option(argv, "StrictHostKeyChecking") == ["yes"] and option(argv, "BatchMode") == ["yes"]
    assert option(argv, "UserKnownHostsFile") == [str(testbed.known_hosts_path)]
    assert "StrictHostKeyChecking=no" not in argv
    assert testbed.ssh_command(Node("x", "10.213.77.99", []))[-1] == "root@10.213.77.99"


def test_ssh_to_an_unknown_node_names_the_known_ones(engine: FakeEngine, ssh: FakeSsh, tmp_path: Path) -> None:
    testbed = bed(engine, tmp_path)
    up(testbed, standard_layout(1, 0))
    with pytest.raises(MortarError, match=r"no node 'compute9' \(nodes: control1\)"):
        testbed.ssh_command("compute9")


def test_ssh_without_a_key_says_to_bring_the_bed_up(engine: FakeEngine, tmp_path: Path) -> None:
    engine.add_image("debian:trixie")
    engine.create(nodes.RunSpec(name=container_name("t", "control1"), image="debian:trixie", address="10.213.77.11",
                                labels={LABEL: "t", NODE_LABEL: "control1"}))
    with pytest.raises(MortarError, match="testbed up --name t"):
        bed(engine, tmp_path).ssh_command("control1")


def test_down_removes_only_its_bed_and_keeps_a_shared_network(engine: FakeEngine, ssh: FakeSsh,
                                                              tmp_path: Path) -> None:
    other, testbed = bed(engine, tmp_path, "other"), bed(engine, tmp_path)
    up(other, standard_layout(1, 0))
    up(testbed, standard_layout(1, 1))
    lines: list[str] = []
    testbed.down(log=lines.append)
    assert sorted(engine.containers_by_name) == [container_name("other", "control1")]
    assert sorted(engine.volumes_by_name) == [volume_name("other", "control1")]
    assert engine.network(NETWORK) is not None
    assert "kept network mortar-testbed: still used by other" in lines
    assert not testbed.state_dir.exists() and other.state_dir.exists()
    other.down(log=lines.append)
    assert engine.network(NETWORK) is None and "removed network mortar-testbed" in lines


def test_down_keeps_a_network_mortar_did_not_create(engine: FakeEngine, tmp_path: Path) -> None:
    engine.create_network(NETWORK, nodes.SUBNET, nodes.GATEWAY, nodes.BRIDGE, {})
    lines: list[str] = []
    bed(engine, tmp_path).down(log=lines.append)
    assert engine.network(NETWORK) is not None and "kept network mortar-testbed: mortar did not create it" in lines


def test_down_of_an_absent_bed_changes_nothing(engine: FakeEngine, tmp_path: Path) -> None:
    bed(engine, tmp_path).down(log=lambda _: None)
    assert engine.changes() == []


def test_up_refuses_a_network_in_another_subnet(engine: FakeEngine, tmp_path: Path) -> None:
    engine.create_network(NETWORK, "172.30.0.0/24", "172.30.0.1", nodes.BRIDGE, {})
    with pytest.raises(MortarError, match="exists but is not 10.213.77.0/24"):
        up(bed(engine, tmp_path))


def test_hosts_command_replaces_its_own_lines_and_keeps_dockers(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1\tlocalhost\n10.213.77.12\tcompute1\n")
    first = [Node("control1", "10.213.77.11", []), Node("compute1", "10.213.77.12", [])]
    for bed_nodes in (first, first, [*first, Node("compute2", "10.213.77.13", [])]):
        subprocess.run(["sh", "-c", nodes.hosts_command(bed_nodes, str(hosts))], check=True)
    assert hosts.read_text() == (
        "127.0.0.1\tlocalhost\n10.213.77.12\tcompute1\n"
        "10.213.77.11 control1 # mortar-testbed\n10.213.77.12 compute1 # mortar-testbed\n"
        "10.213.77.13 compute2 # mortar-testbed\n")


def test_each_node_has_a_tunnel_address_in_the_tunnel_slice() -> None:
    assert nodes.tunnel_address("10.213.77.11") == "10.213.77.139/26"
    last = nodes.tunnel_address(nodes.LAST_ADDRESS)
    assert ipaddress.ip_interface(last).ip in ipaddress.ip_network(nodes.TUNNEL_SUBNET).hosts()
    # Nodes, tunnels and the provider range never overlap.
    node_range = {ipaddress.ip_address(a) for a in free_addresses(set())}
    tunnels = {ipaddress.ip_interface(nodes.tunnel_address(str(a))).ip for a in node_range}
    provider = set(ipaddress.ip_network(nodes.PROVIDER_NETWORK))
    assert not node_range & tunnels and not tunnels & provider and not node_range & provider


def test_a_route_through_a_node_is_made_and_removed_by_down(engine: FakeEngine, ssh: FakeSsh,
                                                            tmp_path: Path) -> None:
    testbed = bed(engine, tmp_path)
    up(testbed, standard_layout(1, 1))
    testbed.route_via(nodes.PROVIDER_NETWORK, "control1")
    assert ssh.ip_calls[-1] == ["ip", "route", "replace", "10.213.77.192/27", "via", "10.213.77.11", "dev",
                                nodes.BRIDGE]
    # Only a route through one of its own nodes is the bed's to remove.
    ssh.routes = ["10.213.77.192/27 via 10.213.77.40 dev mortar-testbed"]
    testbed.unroute(nodes.PROVIDER_NETWORK)
    assert not any("del" in call for call in ssh.ip_calls)
    ssh.routes = ["10.213.77.192/27 via 10.213.77.11 dev mortar-testbed"]
    testbed.down(log=lambda _: None)
    assert ["ip", "route", "del", "10.213.77.192/27", "via", "10.213.77.11", "dev", nodes.BRIDGE] in ssh.ip_calls


def test_a_route_outside_the_subnet_is_refused(engine: FakeEngine, ssh: FakeSsh, tmp_path: Path) -> None:
    testbed = bed(engine, tmp_path)
    up(testbed, standard_layout(1, 0))
    with pytest.raises(MortarError, match="not inside the test bed's subnet"):
        testbed.route_via("0.0.0.0/0", "control1")
    assert ssh.ip_calls == []
