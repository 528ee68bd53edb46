"""`mortar testbed ...`: node containers on this machine that act as hosts for a multi-node deploy."""

from __future__ import annotations

import subprocess
import sys
import time

import click

from mortar.cli.main import MortarGroup

# The same one-line errors as the `mortar` group, also when this group is run on its own.
_TestbedGroup = MortarGroup


def _bed(name: str):
    from mortar.testbed.nodes import Testbed

    return Testbed(name)


name_option = click.option("--name", default="mortar", show_default=True, metavar="BED",
                           help="Test bed name; several beds can share this machine and its network.")


@click.group(cls=_TestbedGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def testbed() -> None:
    """A multi-host test bed on this machine: node containers that act as hosts.

    Each node is a Debian container on the docker network `mortar-testbed` (10.213.77.0/24; this
    host is 10.213.77.1) running sshd; mortar starts a dockerd inside it over SSH like on any host.
    Nodes reach each other and this host only. State (SSH key, Ansible inventory) lives in
    /var/lib/mortar-testbed/BED/.

    \b
    Typical run:
      mortar testbed up                     control1 + compute1, compute2
      mortar deploy -i /var/lib/mortar-testbed/mortar/inventory
      mortar testbed ssh compute1 docker ps
      mortar testbed down
    """


@testbed.command("up", short_help="Create or update the nodes; write the inventory.")
@name_option
@click.option("--control", type=click.IntRange(1, 50), default=1, show_default=True,
              help="Control nodes (control1, control2, ...).")
@click.option("--compute", type=click.IntRange(0, 100), default=2, show_default=True,
              help="Compute nodes (compute1, ...).")
@click.option("--network-nodes", type=click.IntRange(0, 50), default=0, show_default=True,
              help="Dedicated network nodes (network1, ...); with 0, control1 is also the network node.")
def up(name: str, control: int, compute: int, network_nodes: int) -> None:
    """Create or update the nodes, wait until each answers SSH, write the inventory.

    Idempotent: running nodes with the current node image are kept, stopped ones are started,
    nodes no longer asked for are removed. The first run builds the node image (about a minute).
    """
    from mortar.testbed.nodes import standard_layout

    bed = _bed(name)
    started = time.monotonic()
    nodes = bed.up(standard_layout(control, compute, network_nodes), log=click.echo)
    click.echo(f"{len(nodes)} node(s) of test bed {name!r} up in {time.monotonic() - started:.1f}s:")
    for node in nodes:
        click.echo(f"  {node.name:<12} {node.address:<15} {','.join(node.groups)}")
    click.echo(f"inventory: {bed.inventory_path}")
    click.echo(f"next: mortar deploy -i {bed.inventory_path}")


@testbed.command("down", short_help="Remove the bed: nodes, volumes, state.")
@name_option
def down(name: str) -> None:
    """Remove the bed's node containers, their volumes and its state directory.

    The shared network goes too once no container uses it. Only objects labelled
    org.mortar.testbed=BED are touched. Idempotent.
    """
    bed = _bed(name)
    started = time.monotonic()
    bed.down(log=click.echo)
    click.echo(f"test bed {name!r} is down ({time.monotonic() - started:.1f}s)")


@testbed.command("status")
@name_option
def status(name: str) -> None:
    """List the bed's nodes: name, address and container state."""
    rows = _bed(name).status()
    if not rows:
        click.echo(f"test bed {name!r} has no nodes")
        return
    click.echo(f"{'NODE':<12} {'ADDRESS':<15} STATE")
    for row in rows:
        click.echo(f"{row['node']:<12} {row['address']:<15} {row['state']}")


@testbed.command("ssh", short_help="A root shell, or one command, on a node.",
                 context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@name_option
@click.argument("node")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def ssh(name: str, node: str, command: tuple[str, ...]) -> None:
    """Open a root shell on NODE, or run COMMAND there and exit with its status.

    Like ssh, the words of COMMAND are joined with spaces and run by the node's shell, so
    `mortar testbed ssh control1 'ip route; docker ps'` runs both. Put --name before NODE.
    """
    argv = _bed(name).ssh_command(node)
    if command:
        argv.append(" ".join(command))
    sys.exit(subprocess.call(argv))


@testbed.group("k8s", cls=_TestbedGroup)
def k8s() -> None:
    """A one-node Kubernetes cluster on this machine, to run `mortar k8s` against.

    Kubernetes 1.20 (kube-apiserver, controller-manager, scheduler, kubelet, kube-proxy) is
    built once from Debian bookworm's source package into /var/cache/mortar/kubernetes-1.20
    (about 20 minutes on 2 cores; etcd and the CNI plugins are Debian's). The cluster runs in
    its own network namespace, reached through a veth pair in 10.213.80.0/24 (this host .1,
    the node .2); pods get 10.213.81.0/24 and Services 10.213.82.0/24, routed from this host
    through the node. Its own containerd, mount namespace and state folder
    (/var/lib/mortar-k8s/NAME) keep the host as it was.

    \b
    Typical run:
      mortar testbed k8s up                 build once, start, wait for the node
      mortar testbed k8s load-images mortar/keystone:2026.2 ...
      export KUBECONFIG=/var/lib/mortar-k8s/mortar/admin.kubeconfig
      mortar testbed k8s down
    """


k8s_name_option = click.option("--name", default="mortar", show_default=True, metavar="CLUSTER",
                               help="Cluster name (its namespace, veth and state folder are named after it).")


def _cluster(name: str):
    from mortar.testbed.k8scluster import Cluster

    return Cluster(name)


@k8s.command("build", short_help="Build the cluster's programs into the cache (once per machine).")
def k8s_build() -> None:
    """Build kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy from
    Debian's kubernetes source package, unpack etcd and the CNI plugins, and make the pause
    image; nothing happens when the cache is complete. `up` does this first by itself."""
    from mortar.testbed.k8sbuild import ensure_built

    click.echo(f"programs in {ensure_built(click.echo) / 'bin'}")


@k8s.command("up", short_help="Start the cluster (building its programs first when needed).")
@k8s_name_option
def k8s_up(name: str) -> None:
    """Start every part of the cluster that is not running and wait until its node is Ready.
    Idempotent: running parts are kept."""
    _cluster(name).up(click.echo)


@k8s.command("status", short_help="Each daemon of the cluster, and its node.")
@k8s_name_option
def k8s_status(name: str) -> None:
    """Each daemon of the cluster (running with its pid, or stopped) and whether its node is Ready."""
    for what, state in _cluster(name).status():
        click.echo(f"{what:<28} {state}")


@k8s.command("load-images", short_help="Copy images from this machine's engine into the cluster.")
@k8s_name_option
@click.argument("refs", nargs=-1, required=True)
def k8s_load_images(name: str, refs: tuple[str, ...]) -> None:
    """Copy the images REFS (as `docker images` names them) from this machine's Docker Engine into
    the cluster's containerd, under the same names."""
    from mortar.engine import connect

    _cluster(name).load_images(connect(), list(refs), click.echo)


@k8s.command("down", short_help="Stop the cluster and remove its state (the programs stay cached).")
@k8s_name_option
def k8s_down(name: str) -> None:
    """Stop every pod, end the processes `up` started (by their recorded ids), remove the network
    namespace, veth, routes and state folder. Idempotent."""
    _cluster(name).down(click.echo)
