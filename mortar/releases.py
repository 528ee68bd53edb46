"""The OpenStack series mortar knows (images/releases.yaml) and the upgrade paths between them.

A series is data: its services' versions, the requirements it adds, whether it is a SLURP
release. Which upgrades are supported follows from the order of the series alone: the next
series (N -> N+1), or the next SLURP series from a SLURP series (skipping one).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from mortar.builder.lock import canonical, requirement_name
from mortar.errors import MortarError
from mortar.files import load_yaml

RELEASES_FILE = Path(__file__).resolve().parent / "images" / "releases.yaml"


@dataclass(frozen=True)
class Series:
    name: str  # "2026.1"
    codename: str  # "Gazpacho"
    slurp: bool
    services: dict[str, str]  # PyPI project -> version
    requirements: dict[str, list[str]]  # image -> requirements the series adds to its top level
    build_constraints: tuple[str, ...] = ()  # what pip may build sdists with
    unconstrained: tuple[str, ...] = ()  # projects resolved outside the upper-constraints

    @property
    def lock_file(self) -> Path:
        return RELEASES_FILE.parent / "locks" / f"{self.name}.lock"

    @property
    def title(self) -> str:
        return f"{self.name} ({self.codename}{', SLURP' if self.slurp else ''})"

    def top_level(self, requirements: dict[str, list[str]]) -> dict[str, list[str]]:
        """Each image's top-level requirements in this series: a service named there is pinned
        to the series' version, and the series' own additions are appended."""
        pinned = {canonical(k): f"{k}=={v}" for k, v in self.services.items()}
        result = {image: [pinned.get(requirement_name(r), r) for r in reqs] for image, reqs in requirements.items()}
        for image, added in self.requirements.items():
            result.setdefault(image, []).extend(added)
        return result


@dataclass(frozen=True)
class Releases:
    default: str
    series: tuple[Series, ...]  # oldest first

    def names(self) -> list[str]:
        return [s.name for s in self.series]

    def get(self, name: str, *, key: str = "openstack_release", file: str | None = None) -> Series:
        for series in self.series:
            if series.name == name:
                return series
        raise MortarError(f"'{name}' is not an OpenStack series mortar knows", key=key, file=file,
                          fix=f"choose one of {', '.join(self.names())}")

    def upgrade_targets(self, current: str) -> list[str]:
        """The series a deployment of CURRENT may upgrade to directly."""
        names = self.names()
        at = names.index(self.get(current).name)
        targets = names[at + 1:at + 2]
        if self.series[at].slurp and at + 2 < len(names) and self.series[at + 2].slurp:
            targets.append(names[at + 2])
        return targets

    def upgrade_path(self, current: str, target: str) -> list[str]:
        """The shortest chain of supported upgrades, [CURRENT, ..., TARGET]; empty when TARGET
        is not later than CURRENT."""
        names = self.names()
        self.get(current)
        self.get(target, key="--release")
        if names.index(target) <= names.index(current):
            return []
        paths = [[current]]
        while paths:
            path = paths.pop(0)
            for step in self.upgrade_targets(path[-1]):
                if step == target:
                    return path + [step]
                if names.index(step) < names.index(target):
                    paths.append(path + [step])
        return []  # pragma: no cover - the N+1 steps always reach a later series


def parse_releases(data: object, file: str) -> Releases:
    if not isinstance(data, dict) or not isinstance(data.get("series"), dict) or not data["series"]:
        raise MortarError("must have a 'series' mapping of series name -> its services", file=file)
    series = []
    for name, entry in data["series"].items():
        where = f"series.{name}"
        if not isinstance(entry, dict) or not isinstance(entry.get("services"), dict):
            raise MortarError("must map 'services' to {project: version}", file=file, key=where)
        unknown = set(entry) - {"name", "slurp", "services", "requirements", "build_constraints",
                                 "unconstrained"}
        if unknown:
            raise MortarError(f"unknown keys {', '.join(sorted(unknown))}", file=file, key=where,
                              fix="use name, slurp, services, requirements, build_constraints, unconstrained")
        added = entry.get("requirements") or {}
        if not isinstance(added, dict) or not all(isinstance(v, list) for v in added.values()):
            raise MortarError("must map image names to lists of requirements", file=file, key=f"{where}.requirements")
        series.append(Series(name=str(name), codename=str(entry.get("name", name)), slurp=bool(entry.get("slurp")),
                             services={str(k): str(v) for k, v in entry["services"].items()},
                             requirements={str(k): [str(r) for r in v] for k, v in added.items()},
                             build_constraints=tuple(str(c) for c in entry.get("build_constraints") or ()),
                             unconstrained=tuple(str(c) for c in entry.get("unconstrained") or ())))
    names = [s.name for s in series]
    if names != sorted(names, key=lambda n: tuple(int(p) for p in n.split("."))):
        raise MortarError("series must be listed oldest first", file=file, key="series")
    default = str(data.get("default", names[-1]))
    if default not in names:
        raise MortarError(f"default '{default}' is not a listed series", file=file, key="default",
                          fix=f"choose one of {', '.join(names)}")
    return Releases(default=default, series=tuple(series))


@cache
def releases(path: Path = RELEASES_FILE) -> Releases:
    return parse_releases(load_yaml(path, what="releases file"), str(path))
