"""`mortar registry start | stop | status`."""

from __future__ import annotations

from pathlib import Path

import click

from mortar.cli.main import cli
from mortar.site.config import DEFAULT_CONFIG_DIR

config_dir_option = click.option(
    "--config-dir", type=click.Path(path_type=Path), default=DEFAULT_CONFIG_DIR, show_default=True,
    help="Site directory: docker_registry and docker_registry_insecure in globals.yml, the registry password in "
         "passwords.yml, the site CA in certificates/.")


@cli.group()
def registry() -> None:
    """The image registry every host pulls from (Debian's docker-registry in a container).

    It speaks TLS with a certificate signed by the site CA (made on first start, kept in
    CONFIG_DIR/certificates) and asks for the site's password (docker_registry_username,
    docker_registry_password in passwords.yml). `mortar build --push` records the digest of
    every image it pushes, and hosts pull exactly that digest: a tag replaced in the
    registry is never run.

    \b
    Typical multi-host flow:
      echo 'docker_registry: 10.0.0.10:4000' >> /etc/mortar/globals.yml
      mortar genpwd && mortar registry start
      mortar build --profile core --push --registry 10.0.0.10:4000
      mortar bootstrap-servers --accept-new-host-keys && mortar pull && mortar deploy
    """


def _site(config_dir: Path):
    from mortar.catalogue.loader import load_catalogue
    from mortar.site.config import load_site

    return load_site(config_dir, load_catalogue())


@registry.command("start")
@config_dir_option
@click.option("--address", metavar="HOST:PORT",
              help="Listen here instead (default: docker_registry, else 127.0.0.1:4000). Must be an address "
                   "of this machine that every host can reach. One registry runs per address.")
@click.option("--certificate", type=click.Path(path_type=Path), metavar="PEM",
              help="Serve the operator's certificate (with --key) instead of one the site CA signs.")
@click.option("--key", type=click.Path(path_type=Path), metavar="PEM", help="The key of --certificate.")
def registry_start(config_dir: Path, address: str | None, certificate: Path | None, key: Path | None) -> None:
    """Start the registry (building its image when missing). Idempotent; data survives restarts.

    This machine's engine is told to trust the site CA for the registry's address, so
    `mortar build --push` goes straight through it.
    """
    from mortar.engine import connect
    from mortar.engine.setup import trust_registry_ca
    from mortar.registry import server
    from mortar.registry.tls import registry_tls

    site = _site(config_dir)
    address = address or str(site.globals["docker_registry"] or server.DEFAULT_ADDRESS)
    host, _ = server.split_address(address)
    engine = connect()
    image = server.ensure_image(engine, str(site.globals["image_namespace"]), site.release, site.image_tag,
                                click.echo)
    from mortar.paths import state_root

    if site.globals["docker_registry_insecure"]:
        server.start(engine, address, image, state_root(), None, "", "", click.echo)
        return
    tls = registry_tls(config_dir, site.site_id, host, certificate, key)
    if tls.ca and trust_registry_ca(address, tls.ca):
        click.echo(f"this machine's engine trusts the site CA for {address}")
    server.start(engine, address, image, state_root(), tls, str(site.globals["docker_registry_username"]),
                 site.passwords["docker_registry_password"], click.echo)


address_option = click.option(
    "--address", metavar="HOST:PORT",
    help="The registry's address (default: docker_registry of the site, else 127.0.0.1:4000).")


def _address(config_dir: Path, address: str | None) -> str:
    """The address asked for, else the site's docker_registry (read leniently: stopping a
    registry must work whatever state the site is in), else the default."""
    from mortar.files import load_yaml
    from mortar.registry import server

    if not address:
        path = config_dir / "globals.yml"
        configured = load_yaml(path, what="globals.yml", required=False).get("docker_registry") \
            if path.is_file() else None
        address = str(configured or server.DEFAULT_ADDRESS)
    server.split_address(address)
    return address


@registry.command("stop")
@config_dir_option
@address_option
@click.option("--remove-data", is_flag=True, help="Also delete the volume holding every pushed image.")
def registry_stop(config_dir: Path, address: str | None, remove_data: bool) -> None:
    """Stop and remove the registry container (its images are kept unless --remove-data)."""
    from mortar.engine import connect
    from mortar.registry import server

    server.stop(connect(), _address(config_dir, address), remove_data, click.echo)


@registry.command("status")
@config_dir_option
@address_option
def registry_status(config_dir: Path, address: str | None) -> None:
    """Whether the registry runs, where, and which repositories it holds; exit 1 when not running."""
    from mortar.engine import connect
    from mortar.registry import server
    from mortar.site.certificates import site_ca_pem

    site = _site(config_dir)
    insecure = bool(site.globals["docker_registry_insecure"])
    auth = None if insecure else (str(site.globals["docker_registry_username"]),
                                  site.passwords["docker_registry_password"])
    state = server.status(connect(), _address(config_dir, address), auth,
                          None if insecure else site_ca_pem(config_dir))
    if not state.running:
        click.echo("registry: not running")
        raise SystemExit(1)
    repos = "unknown (no answer)" if state.repositories is None else f"{len(state.repositories)} repositories"
    click.echo(f"registry: running on {state.address} ({state.image}), {repos}")
    for name in state.repositories or []:
        click.echo(f"  {name}")
