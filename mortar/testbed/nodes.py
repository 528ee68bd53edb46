"""Node containers that stand in for hosts: create them, reach them over SSH, describe them to Ansible.

Every bed shares one docker network in a dedicated subnet; the host is the subnet's gateway
address, so the nodes reach the host (and each other) but nothing beyond. A bed's containers and
volumes carry the label `org.mortar.testbed=<bed>`, and `down` removes only what carries it.
"""

from __future__ import annotations

import io
import ipaddress
import re
import shlex
import shutil
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mortar.engine.protocol import ContainerInfo, Engine, Mount, RunSpec
from mortar.errors import EngineError, MortarError
from mortar.files import write_private
from mortar.testbed.image import ensure_node_image

NETWORK = "mortar-testbed"
SUBNET = "10.213.77.0/24"
GATEWAY = "10.213.77.1"
FIRST_ADDRESS = "10.213.77.11"
# The subnet's upper half is carved up: nodes get .11-.62, each node's Geneve tunnel address is
# its own plus 128 (TUNNEL_SUBNET, more specific than SUBNET so that tunnel traffic leaves
# through the node's br-tun), and PROVIDER_NETWORK is the floating-IP range a deployment puts
# behind its network node (this host reaches it through a route, see `route_via`).
LAST_ADDRESS = "10.213.77.62"
TUNNEL_SUBNET = "10.213.77.128/26"
TUNNEL_OFFSET = 128
PROVIDER_NETWORK = "10.213.77.192/27"
# Named so an operator finds the host's side of the subnet with `ip addr show mortar-testbed`.
BRIDGE = "mortar-testbed"
LABEL = "org.mortar.testbed"
NODE_LABEL = "org.mortar.testbed.node"
STATE_ROOT = Path("/var/lib/mortar-testbed")
HOSTS_MARK = "# mortar-testbed"
# Every node of a bed mounts the bed's `shared` folder here: it stands for a shared filesystem
# (an NFS export or CephFS) that every host of a site mounts, e.g. for glance's images.
SHARED_MOUNT = "/srv/shared"
# Addresses no node gets, for a site's virtual addresses (internal_vip_address).
VIRTUAL_ADDRESSES = "10.213.77.64/28"
STANDARD_GROUPS = ("control", "network", "compute", "storage", "monitoring")
SSH_OPTIONS = ("-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR")
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"
SSH_READY_TIMEOUT = 60.0
# docker-py keeps 10 connections per client; more threads than that only queue.
MAX_THREADS = 8
_KNOWN_HOSTS_LOCK = threading.Lock()

_BED_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")
_NODE_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?")
_GROUP_NAME = re.compile(r"[A-Za-z_][\w-]*")

Log = Callable[[str], None]
Layout = Sequence[tuple[str, Sequence[str]]]


@dataclass
class Node:
    name: str
    address: str
    groups: list[str] = field(default_factory=list)


def standard_layout(control: int = 1, compute: int = 2, network: int = 0) -> list[tuple[str, list[str]]]:
    """controlN, computeN, networkN; without network nodes control1 is the network node too."""
    layout: list[tuple[str, list[str]]] = []
    for i in range(1, control + 1):
        layout.append((f"control{i}", ["control", "network"] if i == 1 and network == 0 else ["control"]))
    layout += [(f"compute{i}", ["compute"]) for i in range(1, compute + 1)]
    layout += [(f"network{i}", ["network"]) for i in range(1, network + 1)]
    return layout


def check_bed_name(name: str) -> str:
    if not _BED_NAME.fullmatch(name):
        raise MortarError(f"test bed name {name!r} is not usable", key="--name",
                          fix="use lowercase letters, digits and '-', starting with a letter or digit, "
                              "at most 31 characters")
    return name


def check_layout(layout: Layout) -> None:
    seen: set[str] = set()
    for name, groups in layout:
        if not _NODE_NAME.fullmatch(name):
            raise MortarError(f"node name {name!r} is not a usable host name",
                              fix="use lowercase letters, digits and '-', e.g. compute1")
        if name in seen:
            raise MortarError(f"node {name!r} appears twice in the layout", fix="give every node its own name")
        seen.add(name)
        for group in groups:
            if not _GROUP_NAME.fullmatch(group) or group in ("all", "ungrouped"):
                raise MortarError(f"node {name!r}: {group!r} is not a usable group name",
                                  fix="use letters, digits, '_' and '-'; 'all' and 'ungrouped' are implicit")
    if not layout:
        raise MortarError("the layout has no nodes", fix="ask for at least one node")
    if len(layout) > len(free_addresses(set())):
        raise MortarError(f"{len(layout)} nodes do not fit in {SUBNET}",
                          fix=f"ask for at most {len(free_addresses(set()))} nodes")


def _assignable(address: str) -> bool:
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        return False
    subnet = ipaddress.IPv4Network(SUBNET)
    return (ip in subnet and ipaddress.IPv4Address(FIRST_ADDRESS) <= ip <= ipaddress.IPv4Address(LAST_ADDRESS))


def tunnel_address(address: str) -> str:
    """The node's tunnel address (CIDR, in TUNNEL_SUBNET): its own address plus TUNNEL_OFFSET."""
    subnet = ipaddress.IPv4Network(TUNNEL_SUBNET)
    return f"{ipaddress.IPv4Address(address) + TUNNEL_OFFSET}/{subnet.prefixlen}"


def free_addresses(taken: set[str]) -> list[str]:
    """Addresses a node may get, in order: from FIRST_ADDRESS up, skipping those taken."""
    return [str(a) for a in ipaddress.IPv4Network(SUBNET).hosts() if _assignable(str(a)) and str(a) not in taken]


def assign_addresses(names: Sequence[str], current: dict[str, str], taken: set[str]) -> dict[str, str]:
    """Each node keeps its current address unless another container holds it; new ones get the lowest free.

    `taken` holds the addresses of every other container on the network.
    """
    assigned: dict[str, str] = {}
    used = set(taken)
    for name in names:
        address = current.get(name)
        if address and address not in used and _assignable(address):
            assigned[name] = address
            used.add(address)
    free = iter(free_addresses(used))
    for name in names:
        if name not in assigned:
            try:
                assigned[name] = next(free)
            except StopIteration:
                raise MortarError(f"no free address left in {SUBNET} for node {name!r}",
                                  fix="remove other test beds (`mortar testbed down --name BED`)") from None
    return {name: assigned[name] for name in names}


def hosts_command(nodes: Sequence[Node], path: str = "/etc/hosts") -> str:
    """Shell that puts the bed's nodes into a node's /etc/hosts, replacing what an earlier `up` put there.

    Docker's DNS on the shared network answers a node name with every bed's node of that name;
    /etc/hosts is read first, so a node finds its own bed's peers. In place: /etc/hosts is a bind mount
    that cannot be renamed over (sed -i fails), and docker rewrites it when the node restarts.
    """
    block = "".join(f"{node.address} {node.name} {HOSTS_MARK}\n" for node in nodes)
    return (f"kept=$(grep -v ' {HOSTS_MARK}$' {path} || true); "
            f"printf '%s\\n%s' \"$kept\" {shlex.quote(block)} > {path}")


def inventory_text(bed: str, nodes: Sequence[Node], key_path: Path) -> str:
    """An Ansible INI inventory of the nodes: the standard groups always present, even when empty,
    each node with its tunnel address. Host keys are not in it: the bed writes them to
    known_hosts beside it, for the site."""
    groups: dict[str, list[Node]] = {group: [] for group in STANDARD_GROUPS}
    for node in nodes:
        for group in node.groups:
            groups.setdefault(group, []).append(node)
    lines = [f"# Test bed {bed!r}: written by `mortar testbed up`, removed by `mortar testbed down`.", ""]
    for group, members in groups.items():
        lines.append(f"[{group}]")
        lines += [f"{node.name} ansible_host={node.address} api_address={node.address} "
                  f"neutron_tunnel_address={tunnel_address(node.address)}" for node in members]
        lines.append("")
    lines += [
        "[all:vars]",
        "ansible_user=root",
        f"ansible_ssh_private_key_file={key_path}",
        "ansible_python_interpreter=/usr/bin/python3",
        "",
    ]
    return "\n".join(lines)


def known_hosts_text(keys: dict[str, str]) -> str:
    """known_hosts lines (address, then the node's own public host key), as ssh reads them."""
    return "".join(f"{address} {' '.join(key.split()[:2])}\n" for address, key in sorted(keys.items()))


def container_name(bed: str, node: str) -> str:
    return f"mortar-testbed-{bed}-{node}"


def volume_name(bed: str, node: str) -> str:
    return f"mortar-testbed-{bed}-{node}-docker"


def authorized_keys_tar(public_key: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("authorized_keys")
        info.size = len(public_key)
        info.mode = 0o600
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(public_key))
    return buf.getvalue()


def _in_parallel(work: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    """Run work on every item; the results in order, or every node's MortarError as one error."""
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(items))) as pool:
        futures = [pool.submit(work, item) for item in items]
    errors: list[BaseException] = [e for f in futures if (e := f.exception()) is not None]
    for error in errors:
        if not isinstance(error, MortarError):
            raise error
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise MortarError(f"{len(errors)} nodes failed:\n  " + "\n  ".join(str(e) for e in errors))
    return [f.result() for f in futures]


class Testbed:
    """One named bed of node containers and what it needs on this host (key, inventory, host keys)."""

    __test__ = False  # the name starts with "Test"; pytest must not collect it where tests import it

    def __init__(self, name: str = "mortar", engine: Engine | None = None, state_root: Path = STATE_ROOT) -> None:
        self.name = check_bed_name(name)
        self._engine = engine
        self.state_root = state_root

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from mortar.engine import connect

            self._engine = connect()
        return self._engine

    @property
    def state_dir(self) -> Path:
        return self.state_root / self.name

    @property
    def key_path(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def inventory_path(self) -> Path:
        return self.state_dir / "inventory"

    @property
    def known_hosts_path(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def shared_dir(self) -> Path:
        """This host's side of the folder every node mounts at SHARED_MOUNT."""
        return self.state_dir / "shared"

    def up(self, layout: Layout, log: Log = print, names: dict[str, str] | None = None) -> list[Node]:
        """Make the bed match the layout: node containers running and reachable, inventory and
        known_hosts (each node's own host key, read through the engine) written. NAMES (name ->
        address) go into the /etc/hosts of the nodes it creates, from their every start on, as
        a site's DNS would answer them (a node that exists keeps what it was made with)."""
        check_layout(layout)
        image = ensure_node_image(self.engine, log=log)
        image_info = self.engine.image(image)
        assert image_info is not None
        self._ensure_network(log)
        public_key = self._ensure_key()
        existing = {c.labels.get(NODE_LABEL, ""): c for c in self._containers()}
        wanted = [name for name, _ in layout]
        for node, container in existing.items():
            if node not in wanted:
                log(f"{node}: not in the layout; removing it")
                self.engine.remove(container.name)
                self.engine.remove_volume(volume_name(self.name, node))
        current = {node: c.address for node, c in existing.items() if node in wanted and c.address}
        taken = {c.address for c in self.engine.containers(network=NETWORK)
                 if c.labels.get(LABEL) != self.name and c.address}
        addresses = assign_addresses(wanted, current, taken)
        nodes = [Node(name, addresses[name], list(groups)) for name, groups in layout]
        keys: dict[str, str] = {}

        def bring_up(node: Node) -> None:
            self._ensure_node(node, image, image_info.id, existing.get(node.name), public_key, log, names or {})
            keys[node.address] = self._host_key(node)
            self._write_known_hosts(keys)
            self._wait_for_ssh(node)
            proc = self.run(node, hosts_command(nodes), timeout=30)
            if proc.returncode != 0:
                raise MortarError(f"node {node.name}: cannot write /etc/hosts: {proc.stderr.strip()}")
            log(f"{node.name}: ready at {node.address}")

        _in_parallel(bring_up, nodes)
        self._write_known_hosts(keys, every=True)
        # Whole or not at all: a deploy may be reading the previous one.
        partial = self.inventory_path.with_suffix(".partial")
        partial.write_text(inventory_text(self.name, nodes, self.key_path))
        partial.replace(self.inventory_path)
        return nodes

    def down(self, log: Log = print) -> None:
        """Remove the bed's containers, volumes, state and (when nothing else uses it) the network."""
        self.unroute(PROVIDER_NETWORK)
        containers = self._containers()
        _in_parallel(lambda c: self.engine.remove(c.name), containers)
        if containers:
            log(f"removed {len(containers)} node container(s): "
                + ", ".join(sorted(c.labels.get(NODE_LABEL, c.name) for c in containers)))
        volumes = self.engine.volumes({LABEL: self.name})
        for volume in volumes:
            self.engine.remove_volume(volume.name)
        if volumes:
            log(f"removed {len(volumes)} volume(s)")
        self._remove_network_if_unused(log)
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
            log(f"removed {self.state_dir}")

    def route_via(self, network: str, node: str) -> None:
        """Route NETWORK (inside SUBNET, e.g. PROVIDER_NETWORK) from this host through a node;
        `unroute` or `down` removes it."""
        self._ip_route("replace", network, self._address_of(node))

    def unroute(self, network: str) -> None:
        """Remove this host's route to NETWORK if it goes through one of the bed's nodes."""
        ours = {c.address for c in self._containers() if c.address}
        if not ours:
            return
        proc = subprocess.run(["ip", "-4", "route", "show", network], capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            words = line.split()
            if "via" in words and words[words.index("via") + 1] in ours:
                self._ip_route("del", network, words[words.index("via") + 1])

    def _ip_route(self, verb: str, network: str, via: str) -> None:
        if not ipaddress.IPv4Network(network).subnet_of(ipaddress.IPv4Network(SUBNET)):
            raise MortarError(f"{network} is not inside the test bed's subnet {SUBNET}",
                              fix=f"route only a part of {SUBNET}, e.g. {PROVIDER_NETWORK}")
        proc = subprocess.run(["ip", "route", verb, network, "via", via, "dev", BRIDGE],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise MortarError(f"ip route {verb} {network} via {via}: {proc.stderr.strip()}",
                              fix="run as root on the host of the test bed")

    def status(self) -> list[dict[str, str]]:
        rows = [{"node": c.labels.get(NODE_LABEL, ""), "address": c.address, "state": c.status,
                 "container": c.name} for c in self._containers()]
        return sorted(rows, key=lambda r: (ipaddress.ip_address(r["address"] or "0.0.0.0"), r["node"]))

    def ssh_command(self, node: str | Node) -> list[str]:
        """argv of an ssh to the node as root with the bed's key; append a command to run one."""
        address = node.address if isinstance(node, Node) else self._address_of(node)
        if not self.key_path.exists():
            raise MortarError(f"test bed {self.name!r} has no SSH key at {self.key_path}",
                              fix=f"run `mortar testbed up --name {self.name}`")
        return ["ssh", "-i", str(self.key_path), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts_path}", *SSH_OPTIONS, f"root@{address}"]

    def run(self, node: str | Node, command: str | Sequence[str], timeout: float | None = None,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a shell command on the node; output captured as text."""
        text = command if isinstance(command, str) else shlex.join(command)
        return subprocess.run([*self.ssh_command(node), text], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout, check=check)

    def _containers(self) -> list[ContainerInfo]:
        return self.engine.containers({LABEL: self.name})

    def _address_of(self, node: str) -> str:
        container = self.engine.container(container_name(self.name, node))
        if container is None:
            known = ", ".join(r["node"] for r in self.status()) or "none"
            raise MortarError(f"test bed {self.name!r} has no node {node!r} (nodes: {known})",
                              fix=f"see `mortar testbed status --name {self.name}`")
        if not container.address:
            raise MortarError(f"node {node!r} has no address on {NETWORK}",
                              fix=f"run `mortar testbed up --name {self.name}` again")
        return container.address

    def _ensure_key(self) -> bytes:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.key_path.exists():
            proc = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"mortar-testbed-{self.name}",
                                   "-f", str(self.key_path)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise MortarError(f"ssh-keygen failed: {proc.stderr.strip()}", fix="install openssh-client")
        self.key_path.chmod(0o600)
        return Path(f"{self.key_path}.pub").read_bytes()

    def _host_key(self, node: Node, timeout: float = SSH_READY_TIMEOUT) -> str:
        """The node's own SSH host key, read through the engine (a channel no one can spoof)."""
        deadline = time.monotonic() + timeout
        name = container_name(self.name, node.name)
        while True:
            code, output = self.engine.exec(name, ["cat", HOST_KEY])
            if code == 0 and output.startswith("ssh-"):
                return output.strip()
            if time.monotonic() > deadline:
                raise MortarError(f"node {node.name}: no SSH host key after {timeout:.0f}s",
                                  fix=f"see `docker logs {name}`")
            time.sleep(0.3)

    def _write_known_hosts(self, keys: dict[str, str], every: bool = False) -> None:
        with _KNOWN_HOSTS_LOCK:
            merged = dict(keys)
            if not every and self.known_hosts_path.exists():
                for line in self.known_hosts_path.read_text().splitlines():
                    address, _, key = line.partition(" ")
                    merged.setdefault(address, key)
            write_private(self.known_hosts_path, known_hosts_text(merged), mode=0o644)

    def _ensure_network(self, log: Log) -> None:
        network = self.engine.network(NETWORK)
        if network is None:
            log(f"creating network {NETWORK} ({SUBNET}, host at {GATEWAY})")
            try:
                self.engine.create_network(NETWORK, SUBNET, GATEWAY, BRIDGE, {LABEL: ""})
                return
            except EngineError as exc:
                network = self.engine.network(NETWORK)  # another bed's `up` made it at the same moment
                if network is None:
                    raise EngineError(f"cannot create network {NETWORK} ({SUBNET}): {exc}",
                                      fix=f"remove the network that already uses {SUBNET} or the bridge "
                                          f"named {BRIDGE}") from None
        if (SUBNET, GATEWAY) not in network.pools:
            raise MortarError(f"network {NETWORK} exists but is not {SUBNET} with gateway {GATEWAY} "
                              f"({network.pools})",
                              fix=f"remove it (`docker network rm {NETWORK}`) when nothing uses it")

    def _ensure_node(self, node: Node, image: str, image_id: str, container: ContainerInfo | None,
                     public_key: bytes, log: Log, names: dict[str, str]) -> None:
        name = container_name(self.name, node.name)
        if container is not None and (container.image_id != image_id or container.address != node.address):
            log(f"{node.name}: image or address changed; recreating (its /var/lib/docker volume is kept)")
            self.engine.remove(name)
            container = None
        if container is None:
            self._create_node(node, image, names)
            log(f"{node.name}: created")
        self.engine.put_archive(name, "/root/.ssh", authorized_keys_tar(public_key))
        current = self.engine.container(name)
        if current is None or current.status != "running":
            self.engine.start(name)
            log(f"{node.name}: started")

    def _create_node(self, node: Node, image: str, names: dict[str, str]) -> None:
        volume = volume_name(self.name, node.name)
        self.shared_dir.mkdir(parents=True, exist_ok=True)
        if self.engine.volume(volume) is None:
            self.engine.create_volume(volume, {LABEL: self.name, NODE_LABEL: node.name})
        # What a host needs that a container lacks, without --privileged (see FIELD-NOTES: this VM
        # withholds CAP_SYS_RESOURCE, so a privileged container cannot start here). The node's dockerd
        # cannot put overlay2 on the container's overlay root: /var/lib/docker is a volume.
        self.engine.create(RunSpec(
            name=container_name(self.name, node.name), image=image, hostname=node.name,
            labels={LABEL: self.name, NODE_LABEL: node.name}, network=NETWORK, address=node.address, extra_hosts=names,
            cap_add=["ALL"], cap_drop=["SYS_RESOURCE"], security_opt=["seccomp=unconfined", "apparmor=unconfined"],
            device_cgroup_rules=["a *:* rwm"], cgroupns="private", unmasked_paths=True,
            # A network node routes between this subnet and the provider network behind its br-ex.
            sysctls={"net.ipv4.ip_forward": "1"},
            mounts=[Mount("/var/lib/docker", volume, "volume"), Mount(SHARED_MOUNT, str(self.shared_dir), "bind")]))

    def _wait_for_ssh(self, node: Node, timeout: float = SSH_READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        argv = [*self.ssh_command(node)[:-1], "-o", "ConnectTimeout=2", f"root@{node.address}", "true"]
        last = ""
        name = container_name(self.name, node.name)
        while time.monotonic() < deadline:
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=10)
                if proc.returncode == 0:
                    return
                last = proc.stderr.strip()
            except subprocess.TimeoutExpired:
                last = "ssh timed out"
            container = self.engine.container(name)
            if container is None:
                raise MortarError(f"node {node.name}: its container disappeared while starting")
            if container.status not in ("running", "created"):
                logs = self.engine.logs(name, tail=10).strip()
                raise MortarError(f"node {node.name}: container {container.status} while starting:\n{logs}",
                                  fix=f"see `docker logs {name}`")
            time.sleep(0.3)
        raise MortarError(f"node {node.name} ({node.address}) does not answer SSH after {timeout:.0f}s"
                          + (f": {last}" if last else ""),
                          fix=f"check that this host reaches {SUBNET} (`ip addr show {BRIDGE}`) and see "
                              f"`docker logs {name}`")

    def _remove_network_if_unused(self, log: Log) -> None:
        network = self.engine.network(NETWORK)
        if network is None:
            return
        if LABEL not in network.labels:
            log(f"kept network {NETWORK}: mortar did not create it")
            return
        users = self.engine.containers(network=NETWORK)
        if users:
            beds = sorted({c.labels.get(LABEL) or f"container {c.name}" for c in users})
            log(f"kept network {NETWORK}: still used by {', '.join(beds)}")
            return
        self.engine.remove_network(NETWORK)
        log(f"removed network {NETWORK}")
