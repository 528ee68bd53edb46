"""`mortar k8s render | plan | apply | label-nodes | verify | init-runonce | post-deploy | destroy`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

import click

from mortar.cli.deploy import config_dir_option, inventory_option, keep_failed_option
from mortar.cli.main import MortarGroup, cli
from mortar.errors import MortarError


@cli.group("k8s", cls=MortarGroup)
def k8s() -> None:
    """The same site on a Kubernetes cluster, from the same catalogue.

    The inventory names the cluster's nodes (each with api_address=ITS-ADDRESS) in the usual
    groups (control, network, compute, ...); `mortar k8s label-nodes` marks the nodes of each
    group (or name your own labels in k8s_group_labels). Services reach each other at fixed
    Service addresses mortar chooses in k8s_service_cidr, so no cluster DNS is needed.

    \b
    Typical run:
      mortar k8s label-nodes
      mortar k8s render --out ./manifests      plain YAML, one file per object
      mortar k8s plan                          server-side dry-run and a diff against the cluster
      mortar k8s apply                         apply level by level, wait, prune, register, verify
      mortar k8s destroy --yes-i-really-really-mean-it
    """


kubeconfig_option = click.option(
    "--kubeconfig", type=click.Path(path_type=Path), default=None,
    help="The cluster administrator's kubeconfig (default: $KUBECONFIG, else ~/.kube/config).")
kube_version_option = click.option(
    "--kube-version", default=None, metavar="VERSION",
    help="Kubernetes version to render for: 1.20 or 1.30 (1.30 serves any cluster from 1.21 on, where "
         "PodDisruptionBudgets are policy/v1). Default: the cluster's, or 1.30 for render.")


def _site(config_dir: Path, inventory: Path | None):
    from mortar.catalogue.loader import load_catalogue
    from mortar.deploy.orchestrator import override_files
    from mortar.site.config import load_site
    from mortar.site.inventory import load_inventory
    from mortar.site.overrides import check_override_tree

    site = load_site(config_dir, load_catalogue())
    inv = load_inventory(inventory or config_dir / "inventory")
    check_override_tree(config_dir / "config", override_files(site), set(inv.hosts))
    return site, inv


def image_identities(site, refs: set[str]) -> dict[str, str]:
    """Each image's identity: the digest mortar pushed it with, else its id in this machine's
    engine; an image known to neither is named by its reference only."""
    from mortar.paths import state_root
    from mortar.registry.pins import pushed_digests

    ids = {ref: digest for ref, digest in pushed_digests(state_root()).items() if ref in refs}
    try:
        from mortar.engine import connect

        engine = connect()
    except MortarError:
        return ids
    for ref in refs - set(ids):
        image = engine.image(ref)
        if image is not None:
            ids[ref] = image.id
    return ids


def _render(config_dir: Path, inventory: Path | None, kube_version: str):
    from mortar.k8s.render import Renderer

    site, inv = _site(config_dir, inventory)
    refs = {site.image_ref(decl.image) for s in site.enabled for decl in site.services[s].containers.values()}
    return site, Renderer(site, inv, kube_version, image_identities(site, refs)).render()


def _client(kubeconfig: Path | None):
    from mortar.k8s.client import Client

    return Client(kubeconfig)


def _version(client, asked: str | None) -> str:
    if asked:
        return asked
    return "1.20" if client.version() == "1.20" else "1.30"


@k8s.command("render")
@config_dir_option
@inventory_option
@kube_version_option
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for one YAML file per object and a kustomization.yaml (0600: Secrets hold the "
                   "rendered configuration); default: print a summary only.")
def render_command(config_dir: Path, inventory: Path | None, kube_version: str | None, out: Path | None) -> None:
    """Render the site as Kubernetes objects, from the same desired state the host deploy uses.

    Deployments for stateless services, StatefulSets (a claim per named volume of data) for the
    stateful ones, DaemonSets on the nodes' network for per-node agents, Services at fixed
    addresses, one immutable Secret per container named after its configuration hash, a Job
    per one-shot job named after the hash of its inputs, probes from the healthchecks.
    """
    from mortar.k8s.render import to_files

    _, rendered = _render(config_dir, inventory, kube_version or "1.30")
    counts: dict[str, int] = {}
    for obj in rendered.objects:
        counts[obj["kind"]] = counts.get(obj["kind"], 0) + 1
    click.echo(f"{len(rendered.objects)} object(s): " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if out is not None:
        written = to_files(rendered, out)
        click.echo(f"wrote {len(written)} file(s) to {out} (kubectl apply --server-side -k {out})")


@k8s.command("plan")
@config_dir_option
@inventory_option
@kubeconfig_option
@kube_version_option
def plan_command(config_dir: Path, inventory: Path | None, kubeconfig: Path | None, kube_version: str | None) -> None:
    """What apply would create, change, run, replace and prune: every changed object is checked
    by the API server (server-side dry-run) and shown as a diff against the live one, Secrets'
    values as digests. Changes nothing."""
    from mortar.k8s.apply import plan, print_plan

    client = _client(kubeconfig)
    _, rendered = _render(config_dir, inventory, _version(client, kube_version))
    print_plan(plan(client, rendered), click.echo)


@k8s.command("apply")
@config_dir_option
@inventory_option
@kubeconfig_option
@kube_version_option
@click.option("--no-verify", is_flag=True, help="Skip `mortar verify`'s checks after the apply.")
def apply_command(config_dir: Path, inventory: Path | None, kubeconfig: Path | None, kube_version: str | None,
                  no_verify: bool) -> None:
    """Apply the site to the cluster, level by level, with live progress.

    Per level: the services' registrations with the identity service, their Secrets, their
    Jobs before (database creation, migrations, bootstrap; each waited for), their workloads
    (waited for until ready; per-node agents replaced node by node where their node's files or
    image changed), their Jobs after. Then objects no longer rendered are pruned (claims and
    volumes stay), and the verify checks run against the cluster's endpoints. A second apply
    with nothing changed changes nothing.
    """
    from mortar.k8s.apply import Applier

    started = time.monotonic()
    client = _client(kubeconfig)
    site, rendered = _render(config_dir, inventory, _version(client, kube_version))
    changes = Applier(client, rendered, click.echo, rendered.desired.secrets,
                      _registrations(site, rendered)).run()
    if changes and not no_verify and rendered.desired.identity:
        from mortar.verify.runner import run_checks

        if not run_checks(_as_deployment(site, rendered), click.echo):
            sys.exit(1)
    click.echo(f"mortar k8s apply finished in {time.monotonic() - started:.1f}s")


def _controller_dir(site) -> Path:
    from mortar.files import inside
    from mortar.paths import state_root

    return inside(state_root() / "sites", site.site_id, "site id")


def _as_deployment(site, rendered):
    """What verify, Tempest and the credentials need of a deployment."""
    return SimpleNamespace(desired=rendered.desired, site=site, controller_dir=_controller_dir(site))


def _registrations(site, rendered):
    from mortar.deploy.orchestrator import register_services
    from mortar.k8s.apply import Registrations

    desired = rendered.desired
    if not desired.identity or not desired.registrations:
        return None
    state = _controller_dir(site)
    state.mkdir(parents=True, exist_ok=True)

    def pending() -> dict[str, list[str]]:
        from mortar.deploy.identity import observe

        try:
            return {name: reasons for name, reasons in observe(desired.identity, desired.registrations,
                                                                 state).items() if reasons}
        except Exception:  # noqa: BLE001 - no identity service answering yet: every registration is due
            return {name: ["the identity service does not answer yet"] for name in desired.registrations}

    def register(services: list[str]) -> None:
        names = [s for s in services if s in desired.registrations]
        register_services(desired, state, names, click.echo, f"`kubectl -n {rendered.namespace} logs`")

    return Registrations(pending, register)


@k8s.command("label-nodes")
@config_dir_option
@inventory_option
@kubeconfig_option
def label_nodes_command(config_dir: Path, inventory: Path | None, kubeconfig: Path | None) -> None:
    """Label each node of the inventory with the groups it is in (mortar.openstack.org/group-GROUP=true,
    or the label k8s_group_labels names for a group), and remove mortar's group labels it is
    no longer in. Nodes must exist under their inventory names."""
    from mortar.k8s.render import PREFIX, group_label

    site, inv = _site(config_dir, inventory)
    client = _client(kubeconfig)
    for host in inv.hosts:
        node = client.get("v1", "Node", host)
        if node is None:
            raise MortarError(f"the cluster has no node {host}", file=inv.path, key=host,
                              fix="name the inventory's hosts as `kubectl get nodes` does")
        groups = [g for g, members in inv.groups.items() if host in members and g not in ("all", "ungrouped")]
        wanted = dict(group_label(site, g) for g in groups)
        labels: dict[str, str | None] = {k: None for k in node["metadata"].get("labels", {})
                                         if k.startswith(f"{PREFIX}/group-") and k not in wanted}
        labels.update(wanted)
        client.request("PATCH", f"/api/v1/nodes/{host}", f"label node {host}", {"metadata": {"labels": labels}},
                       "application/merge-patch+json")
        click.echo(f"{host}: {', '.join(f'{k}={v}' for k, v in wanted.items()) or 'no group'}")


@k8s.command("verify")
@config_dir_option
@inventory_option
@kube_version_option
@click.option("--tempest", is_flag=True, help="Then run upstream Tempest's smoke set (after init-runonce).")
@keep_failed_option
def verify_command(config_dir: Path, inventory: Path | None, kube_version: str | None, tempest: bool,
                   keep_failed: bool) -> None:
    """Every enabled service's verify checks through the cluster's endpoints (as `mortar verify`)."""
    from mortar.verify.runner import run_checks

    site, rendered = _render(config_dir, inventory, kube_version or "1.30")
    deployment = _as_deployment(site, rendered)
    ok = run_checks(deployment, click.echo, keep_failed)
    if tempest:
        from mortar.verify.tempest import run_tempest

        ok = run_tempest(deployment, click.echo).failed == 0 and ok
    if not ok:
        sys.exit(1)


@k8s.command("init-runonce")
@config_dir_option
@inventory_option
@click.option("--image-file", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="Guest image to upload (default: build or reuse mortar's own, `mortar guest-image`).")
def init_runonce_command(config_dir: Path, inventory: Path | None, image_file: Path | None) -> None:
    """Make what a fresh cloud needs for its first guest (as `mortar init-runonce`)."""
    from mortar.cloud.runonce import init_runonce
    from mortar.deploy.identity import connect
    from mortar.guest.image import build_guest_image

    site, rendered = _render(config_dir, inventory, "1.30")
    image = image_file or build_guest_image(log=click.echo)
    init_runonce(connect(rendered.desired.identity), site.globals, str(config_dir / "globals.yml"), image,
                 log=click.echo)


@k8s.command("post-deploy")
@config_dir_option
@inventory_option
def post_deploy_command(config_dir: Path, inventory: Path | None) -> None:
    """Write clouds.yaml and admin-openrc.sh (mode 0600) for the cluster's endpoints."""
    from mortar.deploy.credentials import write_credentials

    site, rendered = _render(config_dir, inventory, "1.30")
    for path in write_credentials(_as_deployment(site, rendered), config_dir):
        click.echo(f"wrote {path}")


@k8s.command("destroy")
@config_dir_option
@inventory_option
@kubeconfig_option
@click.option("--yes-i-really-really-mean-it", "confirmed", is_flag=True, help="Required.")
@click.option("--volumes", is_flag=True,
              help="Also delete the claims and mortar's local volumes: every byte of the cloud's data.")
def destroy_command(config_dir: Path, inventory: Path | None, kubeconfig: Path | None, confirmed: bool,
                    volumes: bool) -> None:
    """Delete every object of the site (labelled with its site id). Claims and volumes, which
    hold the databases and images, stay unless --volumes is given."""
    from mortar.k8s.destroy import destroy

    if not confirmed:
        raise MortarError("destroy deletes the whole site from the cluster", key="--yes-i-really-really-mean-it",
                          fix="add --yes-i-really-really-mean-it (and --volumes to delete its data too)")
    client = _client(kubeconfig)
    site, rendered = _render(config_dir, inventory, _version(client, None))
    destroy(client, site, rendered, volumes, click.echo)
