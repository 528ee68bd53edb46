"""Regenerate a series' lock (images/locks/<series>.lock) inside the build image (the target
Python and platform), within that series' upper-constraints."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from mortar.builder.builder import Builder, BuildOptions, ImageTree
from mortar.builder.lock import (
    Lock,
    canonical,
    digest,
    dump_lock,
    load_lock,
    load_requirements,
    requirement_name,
    requirements_digest,
    split_by_image,
)
from mortar.errors import MortarError
from mortar.files import read_text
from mortar.releases import releases

# Runs in the python-builder image after every top-level requirement is installed: prints
# every installed distribution's version and, per image, the closure of its requirements.
CLOSURE_SCRIPT = r"""
import json, re, sys, platform, importlib.metadata as md
from pip._vendor.packaging.requirements import Requirement
canon = lambda n: re.sub(r"[-_.]+", "-", n).lower()
dists = {canon(d.metadata["Name"]): d for d in md.distributions()}
def closure(reqs):
    # A package is revisited when it is required with extras not seen before.
    extras_seen, stack = {}, [Requirement(r) for r in reqs]
    while stack:
        req = stack.pop()
        name = canon(req.name)
        if name not in dists:
            continue
        wanted = set(req.extras) | {""}
        if name in extras_seen and wanted <= extras_seen[name]:
            continue
        new = wanted - extras_seen.get(name, set())
        extras_seen[name] = extras_seen.get(name, set()) | wanted
        for text in dists[name].requires or []:
            dep = Requirement(text)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in new):
                stack.append(dep)
    return sorted(extras_seen)
tops = json.loads(sys.argv[1])
print(json.dumps({"python": platform.python_version(),
                  "versions": {n: d.version for n, d in dists.items()},
                  "closures": {image: closure(reqs) for image, reqs in tops.items()}}))
"""
NOT_LOCKED = {"pip"}


def regenerate_lock(options: BuildOptions, output: Path, log: Callable[[str], None] = print, *,
                    constraints: Path | None = None, upgrade: bool = False) -> Lock:
    """Resolve the requirements of the series options.release into OUTPUT, inside CONSTRAINTS
    (OpenStack's upper-constraints.txt for that series) when given. Pins already in OUTPUT of
    packages the constraints leave free are kept (a new requirement resolves around them, so
    adding one package moves nothing else) unless UPGRADE."""
    from mortar.builder.baseimage import ensure_base_image
    from mortar.engine import connect
    from mortar.engine.protocol import RunSpec

    requirements_file = options.images_dir / "python-requirements.yaml"
    series = releases(options.images_dir / "releases.yaml").get(options.release, key="--release")
    top_level = series.top_level(load_requirements(requirements_file))
    free = set(map(canonical, [*series.services, *series.unconstrained]))
    tested = read_constraints(constraints, exclude=free) if constraints else []
    tree = ImageTree(options, lock=Lock("", "", {}))
    for image in top_level:
        if image not in tree.specs:
            raise MortarError(f"no image named '{image}'", file=str(requirements_file), key=image)
    engine = connect()
    base_id = ensure_base_image(engine, options.base_ref, options.base, options.base_image is None, log)
    tree.compute_identities(base_id)
    builder = Builder(engine, tree)
    result = builder.run(["python-builder"])["python-builder"]
    if result.status not in ("done", "cached"):
        raise MortarError(f"python-builder image failed to build: {result.error}", fix=f"see {result.log}")
    everything = sorted({req for reqs in top_level.values() for req in reqs}, key=str.lower)
    constrained = {requirement_name(line) for line in tested} | set(map(canonical, series.services))
    kept = [] if upgrade or not output.is_file() else [
        pin for pin in load_lock(output).all_pins() if requirement_name(pin) not in constrained]
    log(f"resolving {len(everything)} top-level requirements of {series.title} together in python-builder"
        + (f" within {len(tested)} upper-constraints" if tested else "")
        + (f", keeping {len(kept)} locked pins" if kept else ""))
    # PIP_CONSTRAINT reaches the environments pip builds sdists in as well; -c would not.
    script = ("set -e; printf '%s\\n' \"$2\" > /tmp/constraints.txt; export PIP_CONSTRAINT=/tmp/constraints.txt; "
              "/var/lib/openstack/bin/pip install -q " + " ".join(f"'{r}'" for r in everything)
              + " >&2; /var/lib/openstack/bin/pip check >&2; /var/lib/openstack/bin/python3 -c \"$0\" \"$1\"")
    assert result.image_id
    code, printed = engine.run(RunSpec(name="mortar_lock", image=result.image_id, entrypoint=[],
                                      command=["sh", "-c", script, CLOSURE_SCRIPT, json.dumps(top_level),
                                               "\n".join(tested + kept + list(series.build_constraints))],
                                      labels={"org.mortar.purpose": "lock"}), timeout=3600)
    if code != 0:
        raise MortarError("resolving the requirements failed:\n" + "\n".join(printed.splitlines()[-15:]),
                          file=str(requirements_file))
    # The script's answer is its last line; pip's own output went to stderr before it.
    data = json.loads(next(line for line in reversed(printed.strip().splitlines()) if line.startswith("{")))
    versions = {n: v for n, v in data["versions"].items() if n not in NOT_LOCKED}
    closures = {image: {canonical(n) for n in names} - NOT_LOCKED for image, names in data["closures"].items()}
    ancestors = {image: runtime_ancestors(tree, image) for image in top_level}
    lock = Lock(python=data["python"], requirements_digest=requirements_digest(requirements_file),
                images=split_by_image(closures, versions, ancestors), series=series.name,
                build_constraints=list(series.build_constraints),
                constraints_digest=digest(constraints.read_bytes()) if constraints else "")
    output.write_text(dump_lock(lock))
    log(f"wrote {output}: {len(lock.all_pins())} packages for {len(lock.images)} images of {series.title} "
        f"(Python {lock.python})")
    return lock


def read_constraints(path: Path, exclude: set[str]) -> list[str]:
    """The pins of an upper-constraints file, minus the projects in EXCLUDE (the series' own
    services, which releases.yaml pins, as upstream lists a few of them, e.g. horizon; and what
    the series resolves freely)."""
    text = read_text(path, what="upper-constraints file")
    pins = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            name = requirement_name(line)
        except MortarError:
            raise MortarError(f"line {number} is not a requirement: {raw!r}", file=str(path),
                              fix="give OpenStack's upper-constraints.txt of the series") from None
        if "=" not in line:
            raise MortarError(f"line {number} pins no version: {raw!r}", file=str(path),
                              fix="give OpenStack's upper-constraints.txt of the series")
        if name not in exclude:
            pins.append(line)
    return pins


def runtime_ancestors(tree: ImageTree, image: str) -> list[str]:
    chain: list[str] = []
    parent = tree.specs[image].runtime_parent
    while parent is not None:
        chain.append(parent)
        parent = tree.specs[parent].runtime_parent
    return chain
