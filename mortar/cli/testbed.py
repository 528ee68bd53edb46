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
