"""`mortar init | genpwd | certificates | bootstrap-servers | prechecks | plan | pull | deploy | post-deploy
| verify | reconfigure | upgrade | stop | mariadb-recovery | destroy`."""

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
    help="Site directory: globals.yml, passwords.yml, inventory, config/ overrides, known_hosts.")
inventory_option = click.option(
    "-i", "--inventory", type=click.Path(path_type=Path), default=None,
    help="Ansible INI inventory (default: CONFIG_DIR/inventory).")
keep_failed_option = click.option(
    "--keep-failed", is_flag=True,
    help="Leave the guests of a failed guest check running (named mortar-verify-guest-HOST, their port "
         "and host in the failure) to look at them; delete them afterwards.")
limit_option = click.option(
    "--limit", metavar="HOSTS",
    help="Only touch these hosts or groups (Ansible pattern: 'compute', 'compute:!compute2', 'node[1:3]'). "
         "The whole inventory still decides addresses and who runs what; a job that a change on these "
         "hosts triggers (mapping a new compute host) runs where it lives.")
executor_option = click.option(
    "--executor", type=click.Choice(["auto", "local", "ansible"]), default=lambda: env_executor(),
    show_default="auto, or $MORTAR_EXECUTOR",
    help="How steps reach the hosts: local (this machine's engine) or ansible (SSH to every host). "
         "auto picks local when every inventory host is this machine.")


def env_executor() -> str:
    from mortar.deploy.executors import env_executor as from_env

    return from_env()


def hosts_options(func):
    return config_dir_option(inventory_option(limit_option(func)))


def site_options(func):
    return hosts_options(executor_option(func))


def _load(config_dir: Path, inventory: Path | None, limit: str | None):
    from mortar.deploy.orchestrator import load_deployment

    return load_deployment(config_dir, inventory, limit)


def _executor(deployment, choice: str):
    from mortar.deploy.executors import executor_for

    return executor_for(deployment, choice)


def _tasks_line(executor) -> str:
    if executor.name != "ansible":
        return ""
    from mortar.deploy.executors.ansible import ansible_log_dir

    return f", {executor.tasks} Ansible task(s) (full Ansible output under {ansible_log_dir()})"


@cli.command("init")
@config_dir_option
def init_command(config_dir: Path) -> None:
    """Write commented samples: globals.yml, inventory (all-in-one), inventory.multinode and config/.

    Existing files are kept. Also makes the site id (CONFIG_DIR/site-id) that labels every
    container and volume of this deployment. Then run `mortar genpwd` to fill passwords.yml.
    """
    from mortar.site.config import site_id
    from mortar.site.samples import write_samples

    for path, written in write_samples(config_dir):
        click.echo(f"{'wrote' if written else 'kept '} {path}")
    click.echo(f"site id {site_id(config_dir)} ({config_dir / 'site-id'})")


@cli.command("genpwd")
@config_dir_option
def genpwd_command(config_dir: Path) -> None:
    """Fill every password, key and secret the catalogue needs into passwords.yml (0600).

    Values already present are never overwritten.
    """
    from mortar.catalogue.loader import load_catalogue

    click.echo(merge_passwords(config_dir, load_catalogue())[1])


@cli.command("certificates")
@config_dir_option
@inventory_option
@click.option("--name", "names", metavar="NAME", multiple=True,
              help="Another name (DNS name or address) clients reach the virtual address by; repeatable.")
def certificates_command(config_dir: Path, inventory: Path | None, names: tuple[str, ...]) -> None:
    """Make the site CA and the certificates of the virtual addresses and every host (for enable_tls_internal
    and enable_tls_external).

    Writes CONFIG_DIR/certificates/ca.crt and ca.key (the site CA, made once; the registry uses
    the same); internal.pem: a certificate for internal_vip_address (and internal_fqdn, every
    --name, and external_fqdn when the public endpoints share the internal address), the CA's certificate
    and the key, HAProxy's format, 0600; with enable_tls_external and external_vip_address,
    external.pem: the same for external_vip_address and external_fqdn; and hosts/HOST.crt and HOST.key for
    every inventory host (its address, its name, the virtual address and internal_fqdn), which the broker and
    the database serve TLS with. A certificate that still names what it must and does not end
    within 30 days is kept; run it again after changing an address or adding a host.

    To use your own certificate instead, put it (with any intermediate certificates and its
    key) into internal.pem (external.pem) and the CA that signed it into ca.crt; deploy checks
    they match.
    Then `mortar reconfigure` (or deploy) gives HAProxy the certificate and every container,
    clouds.yaml and admin-openrc.sh the CA.
    """
    from mortar.catalogue.loader import load_catalogue
    from mortar.site.certificates import make, served_names
    from mortar.site.config import load_globals, site_id
    from mortar.site.inventory import load_inventory

    settings = load_globals(config_dir / "globals.yml", load_catalogue())
    hosts = load_inventory(inventory or config_dir / "inventory").hosts
    addresses = {name: h.api_address(str(settings["api_address"])) for name, h in hosts.items()}
    internal, external = served_names(settings)
    for line in make(config_dir, site_id(config_dir), str(settings.get("internal_vip_address") or ""),
                     [*(n for n in internal if n != settings.get("internal_vip_address")), *names], addresses,
                     external=list(external) if settings.get("enable_tls_external") else None,
                     internal_fqdn=str(settings.get("internal_fqdn") or "")):
        click.echo(line)


def merge_passwords(config_dir: Path, services) -> tuple[list[str], str]:
    """Fill what passwords.yml lacks for every service of the catalogue: the keys added, and a
    line that says so."""
    from mortar.site.config import genpwd, required_passwords

    added = genpwd(config_dir / "passwords.yml", required_passwords(services, set(services)))
    new = f": {', '.join(added)}" if added else ""
    return added, f"{config_dir / 'passwords.yml'}: {len(added)} new secret(s){new}"


@cli.command("bootstrap-servers")
@hosts_options
@click.option("--accept-new-host-keys", is_flag=True,
              help="Record the SSH host key of every host that has none in CONFIG_DIR/known_hosts (a key that "
                   "changed is still refused).")
def bootstrap_servers_command(config_dir: Path, inventory: Path | None, limit: str | None,
                              accept_new_host_keys: bool) -> None:
    """Prepare the inventory's hosts over SSH so mortar can deploy to them. Idempotent.

    On every host: hostname set to its inventory name and every host in /etc/hosts, clock
    checked against this machine, Debian's docker.io, python3 and python3-docker installed
    when missing, the container engine configured as `mortar engine setup` does here (no
    bridge, no iptables), the site registry's CA trusted (docker_registry), and started.
    Only what differs is changed. SSH host keys are checked against CONFIG_DIR/known_hosts:
    the first run needs --accept-new-host-keys (or a known_hosts the operator wrote).
    """
    from mortar.agent.wire import StepRequest
    from mortar.deploy.executors.ansible import AnsibleExecutor
    from mortar.site.certificates import site_ca_pem

    deployment = _load(config_dir, inventory, limit)
    started = time.monotonic()
    runner = AnsibleExecutor(deployment, accept_new_host_keys=accept_new_host_keys)
    registry = str(deployment.site.globals.get("docker_registry") or "")
    insecure = [registry] if registry and deployment.site.globals.get("docker_registry_insecure") else []
    request = StepRequest(registry=registry, insecure_registries=insecure,
                          registry_ca=site_ca_pem(deployment.site.config_dir) if registry and not insecure else "")
    result = runner.bootstrap(deployment.targets, request, click.echo)
    result.raise_for_failures()
    click.echo(f"bootstrap-servers: {len(deployment.targets)} host(s) ready in {time.monotonic() - started:.1f}s"
               f"{_tasks_line(runner)}")


@cli.command("prechecks")
@site_options
def prechecks_command(config_dir: Path, inventory: Path | None, limit: str | None, executor: str) -> None:
    """Check the site and every host without changing anything; exit 2 when any check fails.

    The site files load (globals, passwords, inventory groups every enabled service needs);
    then on each host: reachable (SSH for remote hosts, with its known host key), engine
    answering, images present or pullable from the registry (and the ones mortar pushed),
    api_address one of the host's own addresses, service ports free (or held by mortar's
    own containers), internal_fqdn resolving to internal_vip_address (there and on this
    machine), disk and memory enough.
    """
    from mortar.agent.hostchecks import name_checks
    from mortar.deploy.orchestrator import prechecks

    deployment = _load(config_dir, inventory, limit)
    click.echo(f"ok   site {config_dir}: {len(deployment.site.enabled)} service(s) on "
               f"{len(deployment.desired.hosts)} host(s)")
    failures = 0
    # mortar registers the endpoints from here, and clouds.yaml's clients run here.
    names: dict[str, str] = next((state.names for state in deployment.desired.hosts.values()), {})
    for check in name_checks("this machine", names):
        click.echo(check.line())
        failures += not check.ok
    for host, checks in prechecks(deployment, _executor(deployment, executor)).items():
        if not checks:
            click.echo(f"FAIL {host}: no result  -> see the Ansible log under /var/log/mortar/ansible")
            failures += 1
        for check in checks:
            click.echo(check.line())
            failures += not check.ok
    if failures:
        click.echo(f"{failures} precheck(s) failed", err=True)
        sys.exit(2)
    click.echo("all prechecks passed")


@cli.command("plan")
@site_options
def plan_command(config_dir: Path, inventory: Path | None, limit: str | None, executor: str) -> None:
    """Show what deploy would do, per host, and why. Changes nothing.

    Containers to create, recreate (with the field or rendered file that changed and a
    short diff, secrets masked), start, restart (running but unhealthy) or remove; images to
    pull; jobs to run (never ran, new inputs, new data, triggered); registrations that the
    identity service does not hold as desired.
    """
    from mortar.deploy.orchestrator import make_plan, print_plan

    deployment = _load(config_dir, inventory, limit)
    deployment.check_release()
    plan = make_plan(deployment, _executor(deployment, executor))
    print_plan(plan, deployment, click.echo)


@cli.command("pull")
@site_options
def pull_command(config_dir: Path, inventory: Path | None, limit: str | None, executor: str) -> None:
    """Pull every image each host needs, on all hosts in parallel (before a deploy or upgrade)."""
    from mortar.deploy.orchestrator import pull

    started = time.monotonic()
    deployment = _load(config_dir, inventory, limit)
    runner = _executor(deployment, executor)
    pull(deployment, runner, click.echo)
    click.echo(f"pull finished in {time.monotonic() - started:.1f}s{_tasks_line(runner)}")


def _deploy(config_dir: Path, inventory: Path | None, limit: str | None, executor: str, verb: str) -> None:
    from mortar.deploy.orchestrator import deploy

    started = time.monotonic()
    deployment = _load(config_dir, inventory, limit)
    runner = _executor(deployment, executor)
    deploy(deployment, runner, click.echo, verb)
    click.echo(f"{verb} finished in {time.monotonic() - started:.1f}s{_tasks_line(runner)}")


@cli.command("deploy")
@site_options
def deploy_command(config_dir: Path, inventory: Path | None, limit: str | None, executor: str) -> None:
    """Apply the plan on every host: create what is missing, fix what changed, nothing else.

    Services go level by level through the capabilities they need; within a level every
    host converges in parallel: provision jobs (databases, users), jobs before (db sync,
    bootstrap), containers (each waited for until its healthcheck proves it serves), jobs
    after. Every job and wait has a timeout. Then the level's services are registered with
    the identity service. A failure names the host, the service, the container or job and
    its last log lines; hosts that succeeded keep what they reached, and running the same
    command again converges. One changing command per site at a time.
    """
    _deploy(config_dir, inventory, limit, executor, "deploy")


@cli.command("reconfigure")
@site_options
def reconfigure_command(config_dir: Path, inventory: Path | None, limit: str | None, executor: str) -> None:
    """Re-render every config file and restart only the containers whose files changed."""
    _deploy(config_dir, inventory, limit, executor, "reconfigure")


@cli.command("fernet-rotate")
@site_options
def fernet_rotate_command(config_dir: Path, inventory: Path | None, limit: str | None, executor: str) -> None:
    """Rotate keystone's Fernet keys, then restart keystone one host at a time.

    In passwords.yml the staged key (0) becomes the primary, which signs new tokens, the
    primary a secondary, the oldest goes, and a new staged key is made: every token signed
    before still validates, on every keystone, during the restart too. With the three keys
    kept, a token outlives one rotation: rotate at most once per token lifetime ([token]
    expiration, 24 h by default), e.g. daily. passwords.yml is the only copy of the keys: back
    it up after each rotation.
    """
    from mortar.catalogue.loader import load_catalogue
    from mortar.site.config import rotate

    changed = rotate(config_dir / "passwords.yml", load_catalogue(), "fernet")
    click.echo(f"{config_dir / 'passwords.yml'}: rotated {', '.join(changed)}")
    _deploy(config_dir, inventory, limit, executor, "reconfigure")


@cli.command("upgrade")
@site_options
@click.option("--release", metavar="SERIES",
              help="The series to move the site to (default: openstack_release of globals.yml). When it differs "
                   "from globals.yml, globals.yml is updated once the upgrade is done.")
@click.option("--plan", "plan_only", is_flag=True,
              help="Run the preflight and show every container, job and registration the upgrade would change, "
                   "with reasons; change nothing.")
def upgrade_command(config_dir: Path, inventory: Path | None, limit: str | None, executor: str,
                    release: str | None, plan_only: bool) -> None:
    """Move the site from the OpenStack series it runs to the next one, keeping every byte of data.

    \b
    Supported paths: one series at a time (2025.1 -> 2025.2 -> 2026.1 -> 2026.2), or from one
    SLURP series to the next (2025.1 -> 2026.1). Anything else is refused with the path to take.

    Preflight, before anything changes: the path is supported, every host runs the series the
    upgrade starts from, every image of the new series is present or pullable (build them with
    `mortar build --release SERIES`), the rest of prechecks pass, the running series has
    finished its online data migrations (run to the end from its own images), and each
    service's own upgrade check (nova-status, placement-status, keystone-manage db_sync
    --check, ...) passes when run from its new image against the running databases. Overrides
    naming an option the new series removed are reported. Then, level by level
    (infrastructure, keystone, glance/placement/neutron/horizon, nova, the metadata agent),
    each service's database migrations run from its new image, its containers are recreated
    on the new image (infrastructure images that are the same in both series are left running,
    and so are the guests), and its jobs after them (online data migrations) run.

    Secrets the new series needs are added to passwords.yml first (as `mortar genpwd` does: none
    that exists is changed).

    Killed at any point, the same command carries on from where it stopped: every finished
    job and container is kept. Until it is done, deploy and reconfigure refuse to run. With
    --limit, hosts move one group at a time (the control plane first, compute hosts later):
    while a compute host runs the older series, nova's services speak that series' compute
    RPC version ([upgrade_levels] compute = its name); the upgrade that moves the last one
    renders `auto` again and restarts, on every host, the nova services that read it.
    A second upgrade to the same series changes nothing.
    """
    from mortar.catalogue.loader import load_catalogue
    from mortar.deploy.orchestrator import load_deployment
    from mortar.deploy.upgrade import upgrade
    from mortar.releases import releases
    from mortar.site.config import load_globals, site_id

    started = time.monotonic()
    services = load_catalogue()
    # A site that is not one (no globals.yml, no site id, no passwords.yml) is refused untouched.
    load_globals(config_dir / "globals.yml", services)
    site_id(config_dir, create=False)
    if release is not None:
        releases().get(release, key="--release")
    if not plan_only and (config_dir / "passwords.yml").is_file():
        # Secrets a service of the new series needs are made now; none that exists is touched.
        added, said = merge_passwords(config_dir, services)
        if added:
            click.echo(said)
    deployment = load_deployment(config_dir, inventory, limit, release=release)
    runner = _executor(deployment, executor)

    def running(series: str):
        old = load_deployment(config_dir, inventory, limit, release=series)
        return old, _executor(old, executor)

    def whole_site():
        every_host = load_deployment(config_dir, inventory, None, release=deployment.site.release)
        return every_host, _executor(every_host, executor)

    plan = upgrade(deployment, runner, click.echo, plan_only=plan_only, running=running, reload=whole_site)
    if plan_only:
        return
    if release and plan is not None:
        from mortar.site.config import set_global

        if set_global(config_dir / "globals.yml", "openstack_release", deployment.site.release):
            click.echo(f"{config_dir / 'globals.yml'}: openstack_release: '{deployment.site.release}'")
    click.echo(f"upgrade finished in {time.monotonic() - started:.1f}s{_tasks_line(runner)}")


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
@click.option("--tempest", "tempest", is_flag=True,
              help="Then run upstream Tempest's smoke set against the cloud (after init-runonce); "
                   "Tempest is installed once into its own venv under the cache directory.")
@click.option("--tempest-tests", metavar="REGEX", default="smoke", show_default=True,
              help="With --tempest: the tests to run, `smoke` or a regex of Tempest test names.")
@click.option("--tempest-concurrency", metavar="N", type=click.IntRange(1, 16), default=2, show_default=True,
              help="With --tempest: tests run side by side (each server test boots a real guest).")
@keep_failed_option
def verify_command(config_dir: Path, inventory: Path | None, tempest: bool, tempest_tests: str,
                   tempest_concurrency: int, keep_failed: bool) -> None:
    """Run every enabled service's verify checks through the APIs; a table, exit 1 on failure.

    Each service lists its checks in its service.yaml (`verify:`): a token is issued, the
    catalogue lists every service, an image uploads and downloads intact, a network is
    made, servers boot (and land on every compute host), a real guest per compute host
    answers SSH on a floating IP, the dashboard logs the admin in, the metrics server
    scrapes every target. What the checks create is deleted again.

    With --tempest, upstream Tempest runs next, configured from the cloud itself (guest
    image, flavors, external network, the services in the catalogue); its workspace and
    tempest.conf (root-only) are in the site's state directory (gone with destroy).
    Exit 1 when a test fails.
    """
    from mortar.verify.runner import run_checks

    deployment = _load(config_dir, inventory, None)
    if not deployment.desired.identity:
        raise MortarError("nothing to verify against: no enabled service provides identity",
                          fix="enable the service that provides identity in globals.yml")
    ok = run_checks(deployment, click.echo, keep_failed)
    if tempest:
        from mortar.verify.tempest import run_tempest

        ok = run_tempest(deployment, click.echo, tempest_tests, tempest_concurrency).failed == 0 and ok
    if not ok:
        sys.exit(1)


@cli.command("stop")
@site_options
@click.option("--service", "services", metavar="NAME", multiple=True,
              help="Stop only this service's containers (repeatable), e.g. --service mariadb.")
def stop_command(config_dir: Path, inventory: Path | None, limit: str | None, executor: str,
                 services: tuple[str, ...]) -> None:
    """Stop every container (dependents first). Volumes and data are kept; deploy starts them again."""
    from mortar.deploy.orchestrator import stop

    deployment = _load(config_dir, inventory, limit)
    stop(deployment, _executor(deployment, executor), click.echo, list(services))


@cli.command("mariadb-recovery")
@site_options
def mariadb_recovery_command(config_dir: Path, inventory: Path | None, limit: str | None, executor: str) -> None:
    """Bring the Galera cluster back after its members stopped: every row kept.

    Stops the database on every host that runs it, then deploys, so every member starts at
    once. Starting members tell each other what they hold; the one that stopped last cleanly
    (safe_to_bootstrap), else the one holding the furthest position (mariadbd --wsrep-recover),
    starts the cluster and the others join it, copying from it what they lack. A `deploy`
    after all control hosts were down does the same; this command is for the case where some
    members still run but no longer form a cluster (each alone, non-primary), after a network
    split or a partial restart. Other services reconnect on their own.
    """
    from mortar.deploy.orchestrator import deploy, stop

    started = time.monotonic()
    deployment = _load(config_dir, inventory, limit)
    if "mariadb" not in deployment.desired.order:
        raise MortarError("the site runs no database (enable_mariadb is false)", file=str(config_dir / "globals.yml"),
                          key="enable_mariadb", fix="nothing to recover")
    runner = _executor(deployment, executor)
    stop(deployment, runner, click.echo, ["mariadb"])
    deploy(deployment, runner, click.echo, "deploy")
    click.echo(f"mariadb-recovery finished in {time.monotonic() - started:.1f}s{_tasks_line(runner)}")


@cli.command("destroy")
@site_options
@click.option("--yes-i-really-really-mean-it", "confirmed", is_flag=True,
              help="Required: destroy deletes every database, queue and image store.")
def destroy_command(config_dir: Path, inventory: Path | None, limit: str | None, executor: str,
                    confirmed: bool) -> None:
    """Remove every mortar container, named volume (all data) and the site state on the hosts."""
    if not confirmed:
        raise MortarError("destroy deletes every container, volume and all data; refusing without it",
                          key="--yes-i-really-really-mean-it",
                          fix="add --yes-i-really-really-mean-it if that is what you want")
    from mortar.deploy.orchestrator import destroy

    deployment = _load(config_dir, inventory, limit)
    destroy(deployment, _executor(deployment, executor), click.echo)


@cli.command("guest-image")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Where to write the image (default: $MORTAR_CACHE_DIR/guest/mortar-guest.img; "
                   "the cache directory is /var/cache/mortar unless set).")
@click.option("--force", is_flag=True, help="Build again even when the inputs did not change.")
def guest_image_command(output: Path | None, force: bool) -> None:
    """Build mortar's guest disk image offline from Debian packages (about 25 MiB).

    Debian's cloud kernel and a busybox initramfs, booted by syslinux: the guest brings up its
    NIC by DHCP, reads the metadata service (instance id, SSH keys, user data), prints
    "mortar-guest:" lines on its serial console and serves SSH (dropbear) for user "mortar"
    with the injected key; curl, ping and bash are there for tests run from inside (Tempest).
    Built once per input, shared by every site on this machine; `mortar init-runonce`
    uploads it (and replaces an uploaded one that differs).
    """
    from mortar.guest.image import build_guest_image

    build_guest_image(output, log=click.echo, force=force)


@cli.command("init-runonce")
@config_dir_option
@inventory_option
@click.option("--image-file", type=click.Path(path_type=Path), default=None,
              help="Guest image to upload (default: the one `mortar guest-image` builds, built if missing).")
def init_runonce_command(config_dir: Path, inventory: Path | None, image_file: Path | None) -> None:
    """Make what a fresh cloud needs for its first guest (again: changes nothing that exists).

    Uploads the guest image, creates flavors m1.tiny and m1.small, the provider network
    "public" on physnet1 (external_network_cidr, or the veth subnet of
    neutron_external_veth_address) with its floating-IP range, "demo-net" behind
    "demo-router", and lets ICMP and SSH into the admin project's default security group.
    """
    from mortar.cloud.runonce import init_runonce
    from mortar.deploy.identity import connect
    from mortar.guest.image import build_guest_image

    deployment = _load(config_dir, inventory, None)
    if not deployment.desired.identity:
        raise MortarError("no enabled service provides identity", fix="enable keystone in globals.yml")
    image = image_file or build_guest_image(log=click.echo)
    init_runonce(connect(deployment.desired.identity), deployment.site.globals, str(config_dir / "globals.yml"),
                 image, log=click.echo)
