"""`mortar registry start | stop | status`."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from mortar.cli.main import cli
from mortar.errors import MortarError
from mortar.site.config import DEFAULT_CONFIG_DIR


def _site_globals(config_dir: Path) -> dict:
    path = config_dir / "globals.yml"
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise MortarError(f"not valid YAML: {exc}", file=str(path), fix="fix the syntax") from exc
    return data if isinstance(data, dict) else {}


@cli.group()
def registry() -> None:
    """The image registry every host pulls from (Debian's docker-registry in a container).

    \b
    Typical multi-host flow:
      echo 'docker_registry: 10.0.0.10:4000' >> /etc/mortar/globals.yml
      mortar registry start
      mortar build --profile core --push --registry 10.0.0.10:4000
      mortar bootstrap-servers && mortar pull && mortar deploy
    """


@registry.command("start")
@click.option("--config-dir", type=click.Path(path_type=Path), default=DEFAULT_CONFIG_DIR, show_default=True,
              help="Site directory: the address comes from docker_registry in its globals.yml.")
@click.option("--address", metavar="HOST:PORT",
              help="Listen here instead (default: docker_registry, else 127.0.0.1:4000). Must be an address "
                   "of this machine that every host can reach.")
def registry_start(config_dir: Path, address: str | None) -> None:
    """Start the registry (building its image when missing). Idempotent; data survives restarts."""
    from mortar.engine.client import engine_client
    from mortar.registry import server

    site = _site_globals(config_dir)
    address = address or str(site.get("docker_registry") or server.DEFAULT_ADDRESS)
    server.split_address(address)
    client = engine_client()
    namespace, tag = str(site.get("image_namespace", "mortar")), str(site.get("image_tag", "2026.2"))
    image = server.ensure_image(client, namespace, tag, click.echo)
    server.start(client, address, image, click.echo)


@registry.command("stop")
@click.option("--remove-data", is_flag=True, help="Also delete the volume holding every pushed image.")
def registry_stop(remove_data: bool) -> None:
    """Stop and remove the registry container (its images are kept unless --remove-data)."""
    from mortar.engine.client import engine_client
    from mortar.registry import server

    server.stop(engine_client(), remove_data, click.echo)


@registry.command("status")
def registry_status() -> None:
    """Whether the registry runs, where, and which repositories it holds; exit 1 when not running."""
    from mortar.engine.client import engine_client
    from mortar.registry import server

    state = server.status(engine_client())
    if not state.running:
        click.echo("registry: not running")
        raise SystemExit(1)
    repos = "unknown (no answer)" if state.repositories is None else f"{len(state.repositories)} repositories"
    click.echo(f"registry: running on {state.address} ({state.image}), {repos}")
    for name in state.repositories or []:
        click.echo(f"  {name}")
