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


@click.group(cls=MortarGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mortar")
def cli() -> None:
    """mortar: build OpenStack container images and deploy them.

    \b
    Typical all-in-one run:
      mortar engine setup          install and start the Docker Engine
      mortar build --profile core  build the core image set
    """


def main() -> None:
    from mortar.cli import build, deploy, engine  # noqa: F401 - registers the commands

    cli(prog_name="mortar")
