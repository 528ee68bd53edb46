"""`mortar build` and `mortar lock`."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from mortar.builder import graph
from mortar.builder.builder import SUITES, Builder, BuildOptions, ImageTree, log_tail
from mortar.builder.status import StatusBoard
from mortar.builder.templates import IMAGES_DIR
from mortar.cli.main import cli
from mortar.errors import MortarError
from mortar.files import read_text
from mortar.paths import log_root
from mortar.releases import releases
from mortar.site.config import DEFAULT_CONFIG_DIR

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mortar"


def parse_plugins(specs: tuple[str, ...], files: tuple[Path, ...]) -> dict[str, list[str]]:
    entries: list[tuple[str, str]] = [(spec, "--plugin") for spec in specs]
    for path in files:
        lines = read_text(path, what="plugins file", key="--plugins-file").splitlines()
        for number, line in enumerate(lines, 1):
            line = line.split("#", 1)[0].strip()
            if line:
                entries.append((line, f"{path}:{number}"))
    plugins: dict[str, list[str]] = {}
    for spec, where in entries:
        image, sep, requirement = spec.partition("=")
        if not sep or not image.strip() or not requirement.strip():
            raise MortarError(f"'{spec}' is not IMAGE=PIP-REQUIREMENT", key=where,
                              fix="e.g. neutron-server=networking-foo==1.2.0")
        plugins.setdefault(image.strip(), []).append(requirement.strip())
    return plugins


def common_build_options(func):
    options = [
        click.option("--namespace", default="mortar", show_default=True, help="Image namespace (repository prefix)."),
        click.option("--release", default=lambda: releases().default, show_default="the newest series",
                     metavar="SERIES",
                     help="OpenStack series whose lock (images/locks/SERIES.lock) the images install: "
                          + ", ".join(releases().names()) + "."),
        click.option("--tag", default="", show_default="the release",
                     help="Tag given to every built image (infrastructure images of two series that "
                          "are the same image share it)."),
        click.option("--base", type=click.Choice(sorted(SUITES)), default="trixie", show_default=True,
                     help="Debian release the images are built on."),
        click.option("--base-image", metavar="NAME",
                     help="Build on this existing image instead of debian:<base> "
                          "(which mortar makes with debootstrap when it cannot be pulled)."),
        click.option("--ca-bundle", type=click.Path(path_type=Path), metavar="PATH",
                     help="CA bundle trusted by pip/HTTPS in build stages only (default: the host's "
                          "/etc/ssl/certs/ca-certificates.crt when present). Never in runtime images."),
        click.option("--template-override", type=click.Path(path_type=Path), metavar="FILE",
                     help="Jinja2 file that {% extends parent_template %} and fills blocks or sets "
                          "<list>_append/_remove/_override package lists."),
        click.option("--threads", type=click.IntRange(1, 32), default=2, show_default=True,
                     help="Images built at the same time."),
        click.option("--logs-dir", type=click.Path(path_type=Path), default=lambda: log_root() / "build",
                     show_default="$MORTAR_LOG_DIR/build, else /var/log/mortar/build",
                     help="Each image's full build log is written here as <image>.log."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def make_options(**kw) -> BuildOptions:
    from mortar.site.config import check_namespace, check_tag

    releases().get(kw["release"], key="--release")
    for option, check in (("namespace", check_namespace), ("tag", check_tag)):
        problem = check(kw[option]) if kw[option] else None
        if problem:
            raise MortarError(f"{kw[option]!r} {problem[0]}", key=f"--{option}", fix=problem[1])
    return BuildOptions(namespace=kw["namespace"], release=kw["release"], tag=kw["tag"], base=kw["base"],
                        base_image=kw["base_image"],
                        ca_bundle=kw["ca_bundle"], template_override=kw["template_override"],
                        threads=kw["threads"], logs_dir=kw["logs_dir"])


@cli.command("build")
@click.argument("patterns", nargs=-1, metavar="[REGEX ...]")
@click.option("--profile", metavar="NAME", help="A named image set from images/profiles.yaml (infra, core, all).")
@click.option("--list-images", is_flag=True, help="List the selected images (all when none selected) and exit.")
@click.option("--list-dependencies", is_flag=True, help="Print the image tree of the selection and exit.")
@click.option("--summary-json", type=click.Path(path_type=Path), metavar="FILE",
              help="Write per-image results (name, tag, image id, size, seconds, status, identity) here; "
                   "package manifests go to a manifests/ folder beside it.")
@click.option("--plugin", "plugins", multiple=True, metavar="IMAGE=PIP-REQUIREMENT",
              help="Extra Python package for one image, e.g. neutron-server=networking-foo==1.0. Repeatable.")
@click.option("--plugins-file", type=click.Path(path_type=Path), multiple=True, metavar="FILE",
              help="File of IMAGE=PIP-REQUIREMENT lines (# comments allowed).")
@click.option("--no-cache", is_flag=True, help="Rebuild the selected images even when their identity exists.")
@click.option("--push", is_flag=True,
              help="Push the selected images to --registry, in parallel (`mortar registry start` runs one).")
@click.option("--registry", metavar="HOST:PORT", help="Registry to push to (with --push).")
@click.option("--registry-insecure/--registry-secure", default=False, show_default=True,
              help="The registry speaks plain HTTP without a password (an operator's lab registry). When this "
                   "engine does not trust it, images go through skopeo from the engine's store instead.")
@click.option("--config-dir", type=click.Path(path_type=Path), default=DEFAULT_CONFIG_DIR, show_default=True,
              help="Site directory whose passwords.yml holds the registry password (docker_registry_password) "
                   "for --push.")
@common_build_options
def build(patterns, profile, list_images, list_dependencies, summary_json, plugins, plugins_file, no_cache,
          push, registry, registry_insecure, config_dir, **kw) -> None:
    """Build images and every parent they need, in dependency order, in parallel.

    REGEX selects images by name (searched, as kolla-build does: `nova` selects every nova
    image; `^keystone$` only keystone). With no REGEX and no --profile, every image is built.

    An image whose identity (hash of its rendered Dockerfile, build context, lock entries
    and parents) already exists locally is not rebuilt. Exit status: 0 when every image is
    done or cached, 1 when any failed, 2 on bad input.

    \b
    Examples:
      mortar build --profile core
      mortar build keystone --summary-json out/summary.json
      mortar build --template-override site.j2 --plugin neutron-server=networking-foo==1.0 neutron
      mortar build --profile core --push --registry 10.0.0.10:4000

    With --push, the digest of every pushed image is recorded (STATE_DIR/images/pushed.json) and
    every host pulls exactly that digest, so an image replaced in the registry is never run.
    """
    if push and not registry:
        raise MortarError("--push needs a registry to push to", key="--push",
                          fix="add --registry HOST:PORT, e.g. the docker_registry of globals.yml")
    if registry:
        from mortar.site.config import check_registry

        problem = check_registry(registry)
        if problem:
            raise MortarError(f"{registry!r} {problem[0]}", key="--registry", fix=problem[1])
    options = make_options(**kw)
    options.no_cache = no_cache
    options.plugins = parse_plugins(plugins, plugins_file)
    options.push = push
    options.registry = registry
    options.registry_insecure = registry_insecure
    if push and not registry_insecure:
        options.registry_auth = registry_auth(config_dir, registry)
    if options.template_override is not None and not options.template_override.is_file():
        raise MortarError("no such file", file=str(options.template_override), key="--template-override",
                          fix="give the path of a Jinja2 file that {% extends parent_template %}")
    tree = ImageTree(options)
    all_names = sorted(tree.specs)
    selected = select_images(all_names, patterns, profile)
    if list_images:
        for name in graph.with_ancestors(tree.specs, selected) if (patterns or profile) else all_names:
            click.echo(name)
        return
    if list_dependencies:
        for line in graph.tree_lines(tree.specs, graph.with_ancestors(tree.specs, selected)):
            click.echo(line)
        return
    run_build(tree, selected, summary_json)


def registry_auth(config_dir: Path, registry: str) -> dict[str, str]:
    """The site's registry credentials (from passwords.yml; never from the command line)."""
    from mortar.files import load_yaml
    from mortar.site.config import CORE_OPTIONS, check_private

    passwords = config_dir / "passwords.yml"
    data = load_yaml(passwords, what="passwords.yml", how_to_make="mortar genpwd")
    check_private(passwords)
    password = data.get("docker_registry_password")
    if not password:
        raise MortarError("no docker_registry_password to push with", file=str(passwords),
                          key="docker_registry_password", fix="run `mortar genpwd`, then `mortar registry start`")
    username = load_yaml(config_dir / "globals.yml", what="globals.yml", required=False).get(
        "docker_registry_username", CORE_OPTIONS["docker_registry_username"]["default"])
    return {"username": str(username), "password": str(password), "serveraddress": registry}


def select_images(all_names: list[str], patterns: tuple[str, ...], profile: str | None) -> list[str]:
    chosen: list[str] = []
    if profile:
        profiles = graph.load_profiles(IMAGES_DIR / "profiles.yaml")
        if profile not in profiles:
            raise MortarError(f"unknown profile '{profile}'", key="--profile",
                              fix=f"choose one of {', '.join(sorted(profiles))}")
        chosen += graph.select(all_names, profiles[profile], source=f"profile {profile}")
    if patterns:
        chosen += [n for n in graph.select(all_names, list(patterns)) if n not in chosen]
    return chosen or list(all_names)


def run_build(tree: ImageTree, selected: list[str], summary_json: Path | None) -> None:
    from mortar.builder.baseimage import ensure_base_image
    from mortar.engine import connect

    options = tree.options
    started = time.monotonic()
    engine = connect()
    base_id = ensure_base_image(engine, options.base_ref, options.base, made_by_mortar=options.base_image is None,
                                log=lambda m: click.echo(f"base: {m}"))
    tree.compute_identities(base_id)
    builder = Builder(engine, tree)
    results = builder.run(selected)
    manifests_dir = (summary_json.parent if summary_json else options.logs_dir) / "manifests"
    builder.write_manifests(manifests_dir, CACHE_DIR / "manifests")
    if options.push:
        to_push = [n for n in results if n in selected and n != "python-builder"]
        board = StatusBoard(to_push)
        board.start()
        digests = builder.push(to_push, board)
        board.stop()
        from mortar.paths import state_root
        from mortar.registry.pins import record_pushed

        record_pushed(state_root(), digests)
    wall = time.monotonic() - started
    counts: dict[str, int] = {}
    for result in results.values():
        counts[result.status] = counts.get(result.status, 0) + 1
    if summary_json:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(json.dumps({
            "wall_seconds": round(wall, 2), "namespace": options.namespace, "tag": options.tag,
            "base_image": options.base_ref, "base_image_id": base_id,
            "images": [r.as_json() for r in results.values()]}, indent=2) + "\n")
    failed = [r for r in results.values() if r.status == "failed"]
    for result in failed:
        click.echo(f"\nFAILED {result.name}: {result.error}\n  log: {result.log}", err=True)
        for line in log_tail(result.log):
            click.echo(f"  | {line}", err=True)
    summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    click.echo(f"\n{len(results)} images in {wall:.1f}s: {summary}. Logs: {options.logs_dir}; "
               f"manifests: {manifests_dir}")
    if failed or counts.get("skipped"):
        sys.exit(1)


@cli.command("lock")
@click.option("--constraints", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="OpenStack's upper-constraints.txt of the series (from its requirements project's "
                   "stable/SERIES branch): every library is resolved within it, as upstream tested them.")
@click.option("--output", type=click.Path(path_type=Path), metavar="FILE",
              help="Where to write the lock file.  [default: images/locks/SERIES.lock]")
@click.option("--upgrade", is_flag=True,
              help="Resolve every package anew (newest allowed versions); by default the pins already "
                   "in the lock that the constraints leave free are kept and only new requirements are "
                   "resolved around them.")
@common_build_options
def lock_command(constraints: Path | None, output: Path | None, upgrade: bool, **kw) -> None:
    """Resolve one series' requirements into its lock file (pins every package of every image).

    The top-level requirements of images/python-requirements.yaml, with the services pinned to
    the series' versions of images/releases.yaml, are installed together in the python-builder
    image within the series' upper-constraints (so they are co-installable on the target
    Python, as OpenStack tested them), then, per image, the exact packages it installs on top
    of its ancestors are written. Needs the engine and PyPI; building and deploying need only
    the committed lock.

    \b
    Example:
      mortar lock --release 2026.1 --constraints upper-constraints-2026.1.txt
    """
    from mortar.builder.lockgen import regenerate_lock

    options = make_options(**kw)
    regenerate_lock(options, output or options.lock_file, log=click.echo, constraints=constraints, upgrade=upgrade)
