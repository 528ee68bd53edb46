"""The `mortar` command: one entry point, errors turned into one readable line."""

from __future__ import annotations

import sys

import click

from mortar import __version__
from mortar.errors import MortarError


class MortarGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MortarError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except PermissionError as exc:
            click.echo(f"error: permission denied: {exc.filename or exc} (run mortar as root)", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("error: interrupted; running the same command again converges", err=True)
            sys.exit(130)


@click.group(cls=MortarGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mortar")
def cli() -> None:
    """mortar: build OpenStack container images and deploy them.

    \b
    Typical all-in-one run:
      mortar engine setup          install and start the Docker Engine
      mortar build --profile core  build the core image set
      mortar init && mortar genpwd write /etc/mortar (globals, inventory, passwords)
      mortar deploy && mortar post-deploy && mortar verify

    \b
    Multi-host (an Ansible INI inventory, hosts reached over SSH):
      mortar registry start        serve images at docker_registry (TLS, password)
      mortar build --profile core --push --registry ADDR:4000
      mortar bootstrap-servers --accept-new-host-keys
                                   engine, Python and registry trust on every host
      mortar prechecks && mortar pull && mortar deploy
    """


def main() -> None:
    from mortar.cli import deploy, engine, images, k8s, registry  # noqa: F401 - registers the commands
    from mortar.cli.testbed import testbed

    cli.add_command(testbed)

    cli(prog_name="mortar")
