"""`mortar init | genpwd | prechecks | plan | deploy | post-deploy | verify | reconfigure | stop | destroy`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from mortar.cli.main import cli
from mortar.errors import MortarError
from mortar.site.config import DEFAULT_CONFIG_DIR

config_dir_option = click.option(
    "--config-dir", type=click.Path(path_type=Path), default=DEFAULT_CONFIG_DIR, show_default=True,
    help="Site directory: globals.yml, passwords.yml, inventory, config/ overrides.")
inventory_option = click.option(
    "-i", "--inventory", type=click.Path(path_type=Path), default=None,
    help="Ansible INI inventory (default: CONFIG_DIR/inventory).")
limit_option = click.option("--limit", metavar="HOSTS", help="Only these hosts or groups (Ansible pattern).")


def site_options(func):
    return config_dir_option(inventory_option(limit_option(func)))


def _load(config_dir: Path, inventory: Path | None, limit: str | None):
    from mortar.deploy.runner import load_deployment

    return load_deployment(config_dir, inventory, limit)


@cli.command("init")
@config_dir_option
def init_command(config_dir: Path) -> None:
    """Write commented samples: globals.yml, an all-in-one inventory and config/.

    Existing files are kept. Then run `mortar genpwd` to fill passwords.yml.
    """
    from mortar.site.samples import write_samples

    for path, written in write_samples(config_dir):
        click.echo(f"{'wrote' if written else 'kept '} {path}")


@cli.command("genpwd")
@config_dir_option
def genpwd_command(config_dir: Path) -> None:
    """Fill every password, key and secret the catalogue needs into passwords.yml (0600).

    Values already present are never overwritten.
    """
    from mortar.catalogue.loader import load_catalogue
    from mortar.site.config import genpwd, required_passwords

    services = load_catalogue()
    added = genpwd(config_dir / "passwords.yml", required_passwords(services, set(services)))
    new = f": {', '.join(added)}" if added else ""
    click.echo(f"{config_dir / 'passwords.yml'}: {len(added)} new secret(s){new}")


@cli.command("prechecks")
@site_options
def prechecks_command(config_dir: Path, inventory: Path | None, limit: str | None) -> None:
    """Check the site and the hosts without changing anything.

    Engine reachable, images present or pullable, ports free (or held by mortar's own
    containers), disk and memory enough, passwords complete, inventory sane.
    """
    from mortar.deploy.prechecks import run_prechecks

    deployment = _load(config_dir, inventory, limit)
    failures = run_prechecks(deployment, click.echo)
    if failures:
        click.echo(f"{failures} precheck(s) failed", err=True)
        sys.exit(2)
    click.echo("all prechecks passed")


@cli.command("plan")
@site_options
def plan_command(config_dir: Path, inventory: Path | None, limit: str | None) -> None:
    """Show what deploy would do, per host, and why. Changes nothing.

    Containers to create, recreate (with the field or rendered file that changed and a
    short diff, secrets masked) or remove; jobs to run; keystone registrations to make.
    """
    from mortar.deploy.runner import engine_for, make_plan, print_plan

    deployment = _load(config_dir, inventory, limit)
    plan = make_plan(deployment, engine_for("localhost", deployment))
    print_plan(plan, deployment, click.echo)


def _deploy(config_dir: Path, inventory: Path | None, limit: str | None, verb: str) -> None:
    from mortar.deploy.runner import deploy, engine_for

    started = time.monotonic()
    deployment = _load(config_dir, inventory, limit)
    deploy(deployment, engine_for("localhost", deployment), click.echo)
    click.echo(f"{verb} finished in {time.monotonic() - started:.1f}s")


@cli.command("deploy")
@site_options
def deploy_command(config_dir: Path, inventory: Path | None, limit: str | None) -> None:
    """Apply the plan: create what is missing, recreate what changed, nothing else.

    Runs one-shot jobs (databases, db sync, bootstrap) once and again only when their
    image or files change, waits for every started container to be healthy, and registers
    services in keystone. Safe to re-run after a failure: it converges.
    """
    _deploy(config_dir, inventory, limit, "deploy")


@cli.command("reconfigure")
@site_options
def reconfigure_command(config_dir: Path, inventory: Path | None, limit: str | None) -> None:
    """Re-render every config file and restart only the containers whose files changed."""
    _deploy(config_dir, inventory, limit, "reconfigure")


@cli.command("post-deploy")
@config_dir_option
@inventory_option
def post_deploy_command(config_dir: Path, inventory: Path | None) -> None:
    """Write clouds.yaml and admin-openrc.sh (mode 0600) into the config directory."""
    from mortar.deploy.credentials import write_credentials

    deployment = _load(config_dir, inventory, None)
    for path in write_credentials(deployment, config_dir):
        click.echo(f"wrote {path}")


@cli.command("verify")
@config_dir_option
@inventory_option
def verify_command(config_dir: Path, inventory: Path | None) -> None:
    """Smoke-test the deployed cloud through its APIs; prints a table, exit 1 on failure.

    Token issued; catalogue lists every enabled service; image upload/list/download with the
    same checksum; network and subnet; a server reaches ACTIVE (no NIC, then with a port) and
    is deleted; Horizon's login page answers and a login succeeds.
    """
    from mortar.verify.smoke import run_smoke_tests

    deployment = _load(config_dir, inventory, None)
    if not run_smoke_tests(deployment, click.echo):
        sys.exit(1)


@cli.command("stop")
@site_options
def stop_command(config_dir: Path, inventory: Path | None, limit: str | None) -> None:
    """Stop every container (dependents first). Volumes and data are kept; deploy starts them again."""
    from mortar.deploy.runner import engine_for, stop

    deployment = _load(config_dir, inventory, limit)
    stop(deployment, engine_for("localhost", deployment), click.echo)


@cli.command("destroy")
@site_options
@click.option("--yes-i-really-really-mean-it", "confirmed", is_flag=True,
              help="Required: destroy deletes every database, queue and image store.")
def destroy_command(config_dir: Path, inventory: Path | None, limit: str | None, confirmed: bool) -> None:
    """Remove every mortar container, named volume (all data) and the site state."""
    if not confirmed:
        raise MortarError("destroy deletes every container, volume and all data; refusing",
                          fix="add --yes-i-really-really-mean-it if that is what you want")
    from mortar.deploy.runner import destroy, engine_for

    deployment = _load(config_dir, inventory, limit)
    destroy(deployment, engine_for("localhost", deployment), click.echo)
