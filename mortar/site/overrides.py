"""Operator overrides merged over rendered config files, kolla-ansible style.

Merge order, later wins: the template, config/global.conf, config/<service>.conf,
config/<service>/<file>, config/<service>/<host>/<file>. INI files merge per section and
key (the way oslo.config reads them), YAML files merge mappings deeply, and anything else
(policy files, scripts) is replaced by the most specific override.
"""

from __future__ import annotations

import copy
import difflib
import json
from pathlib import Path
from typing import Any

import yaml

from mortar.errors import MortarError
from mortar.files import parse_yaml, read_text

BASE_NAME = "<rendered template>"
KINDS = ("ini", "yaml", "json", "replace")

# section -> lowercased key -> (key as first written, one value per line that set it)
_Ini = dict[str, dict[str, tuple[str, list[str]]]]


def merge_ini(base: str, *overrides: tuple[str, str], base_name: str = BASE_NAME) -> str:
    merged = _parse_ini(base, base_name)
    for source, text in overrides:
        for section, entries in _parse_ini(text, source).items():
            target = merged.setdefault(section, {})
            for lowered, (spelling, values) in entries.items():
                # An override replaces every line of a repeated (multi-valued) key, as kolla's merge_configs does.
                target[lowered] = (target[lowered][0] if lowered in target else spelling, values)
    return _render_ini(merged)


def _parse_ini(text: str, source: str) -> _Ini:
    sections: _Ini = {}
    current: dict[str, tuple[str, list[str]]] | None = None
    continuing: str | None = None
    key_indent = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped:
            # A blank line ends a multi-line value (oslo.config's rule).
            continuing = None
            continue
        if stripped[0] in "#;":
            continue
        indent = len(raw) - len(raw.lstrip())
        if current is not None and continuing is not None and indent > key_indent:
            current[continuing][1][-1] += "\n" + stripped
            continue
        where = f"line {lineno}"
        continuing = None
        if stripped.startswith("["):
            name = stripped[1:-1]
            if not stripped.endswith("]") or not name.strip() or "]" in name or "[" in name:
                raise MortarError(f"malformed section header {stripped!r}", file=source, key=where,
                                  fix="write a section header as [name], e.g. [DEFAULT]")
            current = sections.setdefault(name, {})
            continue
        if current is None:
            raise MortarError(f"{stripped!r} is outside any section", file=source, key=where,
                              fix="put it under a section header such as [DEFAULT]")
        positions = [p for p in (stripped.find("="), stripped.find(":")) if p >= 0]
        if not positions:
            raise MortarError(f"expected 'key = value', got {stripped!r}", file=source, key=where,
                              fix="write options as key = value")
        split = min(positions)
        key, value = stripped[:split].strip(), stripped[split + 1:].strip()
        if not key:
            raise MortarError(f"missing key before the separator in {stripped!r}", file=source, key=where,
                              fix="write options as key = value")
        lowered = key.lower()
        if lowered in current:
            # A repeated key keeps every line: oslo.config reads them as one multi-valued option.
            current[lowered][1].append(value)
        else:
            current[lowered] = (key, [value])
        continuing, key_indent = lowered, indent
    return sections


def ini_options(text: str, source: str) -> dict[str, list[str]]:
    """The options an INI file sets: section -> keys, as written."""
    parsed = _parse_ini(text, source)
    return {section: [spelling for spelling, _ in entries.values()] for section, entries in parsed.items()}


def _render_ini(sections: _Ini) -> str:
    blocks = []
    for name, entries in sections.items():
        lines = [f"[{name}]"]
        for spelling, values in entries.values():
            for value in values:
                first, *rest = value.split("\n")
                lines.append(f"{spelling} = {first}".rstrip())
                lines.extend(f"    {line}" for line in rest)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n" if blocks else ""


def merge_yaml(base: str, *overrides: tuple[str, str], base_name: str = BASE_NAME) -> str:
    data = _load_yaml(base, base_name)
    for source, text in overrides:
        override = _load_yaml(text, source)
        # An empty override file changes nothing rather than blanking the file.
        if override is not None:
            _check_mergeable(data, override, source)
            data = _deep_merge(data, override)
    if data is None:
        return ""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _load_yaml(text: str, source: str) -> Any:
    return parse_yaml(text, source)


def merge_json(base: str, *overrides: tuple[str, str], base_name: str = BASE_NAME) -> str:
    data = _load_json(base, base_name)
    for source, text in overrides:
        if text.strip():
            override = _load_json(text, source)
            _check_mergeable(data, override, source)
            data = _deep_merge(data, override)
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def _load_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MortarError(f"invalid JSON: {exc.msg}", file=source, key=f"line {exc.lineno}",
                          fix="fix the JSON syntax") from None


def check_replacement(text: str, source: str, dest: str) -> None:
    """A whole-file replacement must at least parse as what the file is (policy files are YAML)."""
    if dest.endswith((".yaml", ".yml")):
        parse_yaml(text, source)
    elif dest.endswith(".json"):
        _load_json(text, source)


def _check_mergeable(base: Any, override: Any, source: str) -> None:
    # A stray scalar or list would silently replace the whole rendered mapping.
    if isinstance(base, dict) and not isinstance(override, dict):
        raise MortarError(f"override is a {type(override).__name__}, but the file it merges into is a mapping",
                          file=source, fix="write only the keys to change, as `key: value` mappings")


def _deep_merge(base: Any, override: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(override, dict):
        return copy.deepcopy(override)
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _deep_merge(merged[key], value) if key in merged else copy.deepcopy(value)
    return merged


def override_sources(config_dir: Path, service: str, filename: str, host: str, *, main: bool) -> list[tuple[str, str]]:
    candidates = [config_dir / "global.conf", config_dir / f"{service}.conf"] if main else []
    candidates += [config_dir / service / filename, config_dir / service / host / filename]
    # A dangling symlink is an override the operator meant, not an absent one.
    return [(str(path), _read(path)) for path in candidates if path.exists() or path.is_symlink()]


def _read(path: Path) -> str:
    if path.exists() and not path.is_file():
        raise MortarError("override path is not a regular file", file=str(path),
                          fix="overrides are files; move or rename whatever is there")
    return read_text(path, what="override")


def check_override_tree(config_dir: Path, files: dict[str, set[str]], hosts: set[str]) -> None:
    """Every override names a known service, host and rendered file; FILES: service -> file names."""
    services = set(files)
    if not config_dir.exists():
        return
    if not config_dir.is_dir():
        raise MortarError("override config path is not a directory", file=str(config_dir),
                          fix="make it a directory holding global.conf, <service>.conf and <service>/ overrides")
    for entry in _entries(config_dir):
        if entry.is_dir():
            if entry.name not in services:
                raise _unknown("service", entry, services)
            _check_service_dir(entry, hosts, files[entry.name])
        elif entry.suffix == ".conf":
            if entry.stem != "global" and entry.stem not in services:
                raise _unknown("service", entry, services | {"global"}, entry.stem)
        elif entry.name in services:
            raise MortarError(f"expected a directory for service {entry.name!r}, found a file", file=str(entry),
                              fix=f"put per-file overrides in {entry.name}/, or main-config overrides in "
                                  f"{entry.name}.conf")
        else:
            raise MortarError("unexpected file in the override directory", file=str(entry),
                              fix="top-level overrides are global.conf, <service>.conf or <service>/")


def _check_service_dir(service_dir: Path, hosts: set[str], files: set[str]) -> None:
    what = f"{service_dir.name} file"
    for entry in _entries(service_dir):
        if not entry.is_dir():
            if entry.name not in files:
                raise _unknown(what, entry, files)
            continue
        if entry.name not in hosts:
            if entry.name in files:
                raise MortarError("override is a directory, expected a file", file=str(entry),
                                  fix=f"replace the directory with a file holding the {entry.name} override")
            raise _unknown("host", entry, hosts)
        for inner in _entries(entry):
            if inner.is_dir():
                raise MortarError("unexpected directory in a per-host override directory", file=str(inner),
                                  fix="a host directory holds only files named like the rendered files")
            if inner.name not in files:
                raise _unknown(what, inner, files)


def _entries(directory: Path) -> list[Path]:
    # Dotfiles (.git, .gitkeep, editor swap files) are never overrides and are left alone.
    return sorted(p for p in directory.iterdir() if not p.name.startswith("."))


def _unknown(what: str, entry: Path, known: set[str], name: str | None = None) -> MortarError:
    name = entry.name if name is None else name
    close = difflib.get_close_matches(name, sorted(known), n=1)
    if close:
        fix = f"did you mean {close[0]!r}?"
    elif known:
        fix = f"known {what}s: {', '.join(sorted(known)[:20])}"
    else:
        fix = f"there are no {what}s to override"
    return MortarError(f"unknown {what} {name!r} in override path", file=str(entry), fix=fix)


def apply_overrides(rendered: str, kind: str, sources: list[tuple[str, str]], dest: str = "") -> str:
    if not sources:
        return rendered
    if kind == "ini":
        return merge_ini(rendered, *sources)
    if kind == "yaml":
        return merge_yaml(rendered, *sources)
    if kind == "json":
        return merge_json(rendered, *sources)
    if kind == "replace":
        source, text = sources[-1]
        check_replacement(text, source, dest)
        return text
    raise MortarError(f"unknown override kind {kind!r}", key="kind", fix=f"use one of {', '.join(KINDS)}")
