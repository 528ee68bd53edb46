"""The image tree: which images exist, who builds FROM whom, and in what order.

Parents are read from the rendered `FROM` lines (every stage, so a build stage's parent
counts too): an operator's override that changes a FROM changes the tree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mortar.errors import MortarError
from mortar.files import load_yaml

FROM_RE = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?\s*$", re.I | re.M)
COPY_FROM_RE = re.compile(r"^\s*COPY\s+--from=(\S+)", re.I | re.M)


@dataclass
class ImageSpec:
    name: str
    dockerfile: str
    parents: list[str] = field(default_factory=list)   # images of this tree, in FROM order
    external: list[str] = field(default_factory=list)  # references outside the tree (the base image)
    context_dir: Path | None = None

    @property
    def runtime_parent(self) -> str | None:
        """The parent of the final stage: the image this one extends at run time."""
        return self.parents[-1] if self.parents else None


def discover_images(images_dir: Path) -> list[str]:
    return sorted(p.parent.name for p in images_dir.glob("*/Dockerfile.j2"))


def parse_parents(dockerfile: str, ref_to_name: dict[str, str]) -> tuple[list[str], list[str]]:
    """Parents inside the tree and external references, from FROM and COPY --from lines."""
    stages: set[str] = set()
    parents: list[str] = []
    external: list[str] = []
    refs: list[str] = []
    for match in FROM_RE.finditer(dockerfile):
        refs.append(match.group(1))
        if match.group(2):
            stages.add(match.group(2).lower())
    refs += [m.group(1) for m in COPY_FROM_RE.finditer(dockerfile)]
    for ref in refs:
        if ref.lower() in stages or ref.isdigit():
            continue
        if ref in ref_to_name:
            name = ref_to_name[ref]
            if name not in parents:
                parents.append(name)
        elif ref not in external:
            external.append(ref)
    # The final stage's parent goes last: that is the image's runtime parent.
    last = FROM_RE.findall(dockerfile)
    if last:
        final_ref = last[-1][0]
        if final_ref in ref_to_name and parents and parents[-1] != ref_to_name[final_ref]:
            parents.remove(ref_to_name[final_ref])
            parents.append(ref_to_name[final_ref])
    return parents, external


def topological_order(specs: dict[str, ImageSpec], names: list[str]) -> list[str]:
    """Parents before children; ties broken by name so the order is stable."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join(path[path.index(name):] + [name])
            raise MortarError(f"image tree has a cycle: {cycle}", fix="fix the FROM lines")
        state[name] = 1
        for parent in sorted(specs[name].parents):
            visit(parent, path + [name])
        state[name] = 2
        order.append(name)

    for name in sorted(names):
        visit(name, [])
    return order


def with_ancestors(specs: dict[str, ImageSpec], names: list[str]) -> list[str]:
    wanted: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name in wanted:
            continue
        wanted.add(name)
        stack.extend(specs[name].parents)
    return topological_order(specs, sorted(wanted))


def descendants(specs: dict[str, ImageSpec], name: str) -> set[str]:
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for spec in specs.values():
            if spec.name not in found and (name in spec.parents or found & set(spec.parents)):
                found.add(spec.name)
                changed = True
    return found


def load_profiles(path: Path) -> dict[str, list[str]]:
    data = load_yaml(path, what="image profiles")
    if not isinstance(data, dict):
        raise MortarError("must map profile names to lists of image patterns", file=str(path))
    return {str(k): [str(p) for p in v] for k, v in data.items()}


def select(all_names: list[str], patterns: list[str], *, source: str = "command line") -> list[str]:
    """Images matching any pattern (regular expressions, searched like kolla-build does)."""
    chosen: list[str] = []
    for pattern in patterns:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise MortarError(f"'{pattern}' is not a valid regular expression: {exc}", key=source) from exc
        matched = [name for name in all_names if regex.search(name)]
        if not matched:
            raise MortarError(f"no image matches '{pattern}'", key=source,
                              fix="see `mortar build --list-images`")
        chosen += [name for name in matched if name not in chosen]
    return chosen


def tree_lines(specs: dict[str, ImageSpec], names: list[str] | None = None) -> list[str]:
    """The dependency tree, one image a line, children indented under their runtime parent."""
    shown = set(names or specs)
    children: dict[str | None, list[str]] = {}
    for spec in specs.values():
        if spec.name in shown:
            parent = spec.runtime_parent if spec.runtime_parent in shown else None
            children.setdefault(parent, []).append(spec.name)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for name in sorted(children.get(parent, [])):
            extra = [p for p in specs[name].parents if p != specs[name].runtime_parent]
            note = f"  (build stage from {', '.join(extra)})" if extra else ""
            root = f"  (from {', '.join(specs[name].external)})" if specs[name].external and depth == 0 else ""
            lines.append("  " * depth + name + note + root)
            walk(name, depth + 1)

    walk(None, 0)
    return lines
