"""The test bed's pure parts (mortar/testbed/nodes.py) and its engine calls against a fake client."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from mortar.errors import MortarError
from mortar.site.inventory import parse_inventory
from mortar.testbed import nodes
from mortar.testbed.nodes import (
    LABEL,
    NETWORK,
    NODE_LABEL,
    Node,
    Testbed,
    assign_addresses,
    check_bed_name,
    check_layout,
    container_address,
    free_addresses,
    inventory_text,
    standard_layout,
)

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
    assert assign_addresses(["a"], {}, taken) == {"a": "10.213.77.254"}
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
    assert compute2.vars == {
        "ansible_host": "10.213.77.13",
        "api_address": "10.213.77.13",
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(KEY),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        "ansible_python_interpreter": "/usr/bin/python3",
    }


def test_inventory_has_every_standard_group_even_without_nodes() -> None:
    inventory = parse_inventory(inventory_text("t", [Node("c1", "10.213.77.11", ["compute"])], KEY))
    for group in nodes.STANDARD_GROUPS:
        assert inventory.has_group(group)
    assert inventory.hosts_in("control") == []


def test_container_address_of_a_stopped_container_comes_from_its_ipam_config() -> None:
    stopped = {"NetworkSettings": {"Networks": {NETWORK: {"IPAMConfig": {"IPv4Address": "10.213.77.12"},
                                                          "IPAddress": ""}}}}
    assert container_address(stopped) == "10.213.77.12"
    assert container_address({"NetworkSettings": {"Networks": {NETWORK: {"IPAMConfig": None,
                                                                         "IPAddress": "10.213.77.30"}}}}) \
        == "10.213.77.30"
    assert container_address({"NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"}}}}) is None
    assert container_address({}) is None


class FakeContainer:
    def __init__(self, bed: str, node: str, address: str, status: str = "running") -> None:
        self.name = nodes.container_name(bed, node)
        self.labels = {LABEL: bed, NODE_LABEL: node}
        self.status = status
        self.attrs = {"NetworkSettings": {"Networks": {NETWORK: {"IPAMConfig": {"IPv4Address": address}}}}}
        self.removed = False

    def remove(self, force: bool = False) -> None:
        self.removed = True


class FakeClient:
    """Only what status, ssh_command and down ask of docker-py."""

    def __init__(self, containers: list[FakeContainer]) -> None:
        import docker.errors

        self.all = containers
        self.removed_volumes: list[str] = []
        self.network_removed = False
        client = self

        def list_containers(all: bool = False, filters: dict | None = None) -> list[FakeContainer]:
            alive = [c for c in client.all if not c.removed]
            label = (filters or {}).get("label")
            if label:
                key, _, value = label.partition("=")
                return [c for c in alive if c.labels.get(key) == value]
            return alive

        def get_container(name: str) -> FakeContainer:
            for c in client.all:
                if c.name == name and not c.removed:
                    return c
            raise docker.errors.NotFound(name)

        def list_volumes(filters: dict) -> list:
            bed = filters["label"].partition("=")[2]
            return [SimpleNamespace(remove=lambda force=False, n=n: client.removed_volumes.append(n))
                    for n in sorted({nodes.volume_name(bed, c.labels[NODE_LABEL]) for c in client.all
                                     if c.labels[LABEL] == bed})]

        def remove_network() -> None:
            client.network_removed = True

        network = SimpleNamespace(attrs={"Labels": {LABEL: ""}}, remove=remove_network)
        self.containers = SimpleNamespace(list=list_containers, get=get_container)
        self.volumes = SimpleNamespace(list=list_volumes)
        self.networks = SimpleNamespace(get=lambda name: network)


def test_status_lists_the_bed_nodes_in_address_order(tmp_path: Path) -> None:
    client = FakeClient([FakeContainer("t", "compute1", "10.213.77.12", "exited"),
                         FakeContainer("t", "control1", "10.213.77.11"),
                         FakeContainer("other", "control1", "10.213.77.13")])
    assert Testbed("t", client, tmp_path).status() == [
        {"node": "control1", "address": "10.213.77.11", "state": "running", "container": "mortar-testbed-t-control1"},
        {"node": "compute1", "address": "10.213.77.12", "state": "exited", "container": "mortar-testbed-t-compute1"},
    ]


def test_ssh_command_uses_the_bed_key_and_the_node_address(tmp_path: Path) -> None:
    bed = Testbed("t", FakeClient([FakeContainer("t", "control1", "10.213.77.11")]), tmp_path)
    bed.state_dir.mkdir()
    bed.key_path.write_text("key")
    argv = bed.ssh_command("control1")
    assert argv[0] == "ssh" and argv[-1] == "root@10.213.77.11"
    assert argv[argv.index("-i") + 1] == str(tmp_path / "t" / "id_ed25519")
    assert "StrictHostKeyChecking=no" in argv and "BatchMode=yes" in argv
    assert bed.ssh_command(Node("x", "10.213.77.99", []))[-1] == "root@10.213.77.99"


def test_ssh_to_an_unknown_node_names_the_known_ones(tmp_path: Path) -> None:
    bed = Testbed("t", FakeClient([FakeContainer("t", "control1", "10.213.77.11")]), tmp_path)
    with pytest.raises(MortarError, match=r"no node 'compute9' \(nodes: control1\)"):
        bed.ssh_command("compute9")


def test_ssh_without_a_key_says_to_bring_the_bed_up(tmp_path: Path) -> None:
    bed = Testbed("t", FakeClient([FakeContainer("t", "control1", "10.213.77.11")]), tmp_path)
    with pytest.raises(MortarError, match="testbed up --name t"):
        bed.ssh_command("control1")


def test_down_removes_only_its_bed_and_keeps_a_shared_network(tmp_path: Path) -> None:
    mine = [FakeContainer("t", "control1", "10.213.77.11"), FakeContainer("t", "compute1", "10.213.77.12")]
    theirs = FakeContainer("other", "control1", "10.213.77.13")
    client = FakeClient([*mine, theirs])
    bed = Testbed("t", client, tmp_path)
    bed.state_dir.mkdir()
    lines: list[str] = []
    bed.down(log=lines.append)
    assert all(c.removed for c in mine) and not theirs.removed
    assert client.removed_volumes == ["mortar-testbed-t-compute1-docker", "mortar-testbed-t-control1-docker"]
    assert not client.network_removed
    assert "kept network mortar-testbed: still used by other" in lines
    assert not bed.state_dir.exists()
    Testbed("other", client, tmp_path).down(log=lines.append)
    assert client.network_removed


def test_down_of_an_absent_bed_does_nothing(tmp_path: Path) -> None:
    client = FakeClient([])
    Testbed("t", client, tmp_path).down(log=lambda _: None)
    assert client.removed_volumes == []


def test_hosts_command_replaces_its_own_lines_and_keeps_dockers(tmp_path: Path) -> None:
    import subprocess

    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1\tlocalhost\n10.213.77.12\tcompute1\n")
    first = [Node("control1", "10.213.77.11", []), Node("compute1", "10.213.77.12", [])]
    for bed_nodes in (first, first, [*first, Node("compute2", "10.213.77.13", [])]):
        subprocess.run(["sh", "-c", nodes.hosts_command(bed_nodes, str(hosts))], check=True)
    assert hosts.read_text() == (
        "127.0.0.1\tlocalhost\n10.213.77.12\tcompute1\n"
        "10.213.77.11 control1 # mortar-testbed\n10.213.77.12 compute1 # mortar-testbed\n"
        "10.213.77.13 compute2 # mortar-testbed\n")
