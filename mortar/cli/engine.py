"""`mortar engine ...`: the container engine on this host."""

from __future__ import annotations

import click

from mortar.cli.main import cli


@cli.group()
def engine() -> None:
    """The Docker Engine on this host."""


@engine.command("setup")
def engine_setup() -> None:
    """Install Debian's docker.io when missing, configure and start dockerd.

    Writes {"bridge": "none", "iptables": false, "ip-forward": false} into
    /etc/docker/daemon.json (other keys kept) and starts dockerd when nothing answers on
    the socket: with systemd when it runs, otherwise in the background
    (pid file /run/mortar-dockerd.pid, log /var/log/mortar-dockerd.log). Idempotent.
    """
    from mortar.engine.setup import setup_engine

    report = setup_engine()
    click.echo(f"engine: {'installed docker.io, ' if report.installed else ''}"
               f"{'daemon.json updated, ' if report.config_changed else ''}{report.started}")
