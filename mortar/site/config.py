"""The operator's site: globals.yml (schema-checked), passwords.yml, inventory, overrides.

All of it is read and validated before any host is touched; every error names the file,
the key and the fix.
"""

from __future__ import annotations

import difflib
import os
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mortar.catalogue.loader import OPTION_TYPES, ServiceSpec
from mortar.errors import MortarError

DEFAULT_CONFIG_DIR = Path(os.environ.get("MORTAR_CONFIG_DIR", "/etc/mortar"))

# Keys every site has; services add their own (`options:` in service.yaml) and an
# `enable_<service>` flag each.
CORE_OPTIONS: dict[str, dict[str, Any]] = {
    "api_address": {"type": "str", "default": "127.0.0.1",
                    "help": "address every API and infra service binds and is reached at"},
    "api_interface": {"type": "str", "default": "lo", "help": "interface that carries api_address"},
    "region_name": {"type": "str", "default": "RegionOne", "help": "keystone region of every endpoint"},
    "docker_registry": {"type": "str", "default": "",
                        "help": "registry HOST:PORT every host pulls images from (`mortar registry start` runs one); "
                                "empty: images are local to each host"},
    "docker_registry_insecure": {"type": "bool", "default": True,
                                 "help": "the registry speaks plain HTTP: engines are told to trust it"},
    "image_namespace": {"type": "str", "default": "mortar", "help": "image namespace (as given to mortar build)"},
    "image_tag": {"type": "str", "default": "2026.2", "help": "image tag (as given to mortar build)"},
    "openstack_debug": {"type": "bool", "default": False, "help": "debug logging in every OpenStack service"},
    "healthcheck_timeout": {"type": "int", "default": 180, "help": "seconds to wait for a container to be healthy"},
}


@dataclass
class Site:
    config_dir: Path
    globals: dict[str, Any]
    passwords: dict[str, str]
    services: dict[str, ServiceSpec]
    enabled: set[str] = field(default_factory=set)

    def image_ref(self, image: str) -> str:
        prefix = f"{self.globals['docker_registry']}/" if self.globals["docker_registry"] else ""
        return f"{prefix}{self.globals['image_namespace']}/{image}:{self.globals['image_tag']}"


def schema(services: dict[str, ServiceSpec]) -> dict[str, dict[str, Any]]:
    keys = dict(CORE_OPTIONS)
    for spec in services.values():
        keys[f"enable_{spec.name}"] = {"type": "bool", "default": spec.enabled,
                                       "help": f"deploy {spec.name} ({spec.description})"}
        keys.update(spec.options)
    return keys


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, OPTION_TYPES[kind])


def read_yaml(path: Path, *, required: bool = True, how_to_make: str = "mortar init") -> dict[str, Any]:
    if not path.exists():
        if required:
            raise MortarError("file not found", file=str(path), fix=f"run `{how_to_make}` to write it")
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        raise MortarError(f"malformed YAML: {getattr(exc, 'problem', exc)}", file=str(path), key=where,
                          fix="fix the YAML syntax") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MortarError("must be a mapping of key: value", file=str(path))
    return data


def load_globals(path: Path, services: dict[str, ServiceSpec]) -> dict[str, Any]:
    keys = schema(services)
    data = read_yaml(path)
    values = {key: decl["default"] for key, decl in keys.items()}
    for key, value in data.items():
        if key not in keys:
            close = difflib.get_close_matches(str(key), sorted(keys), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "see `mortar init` for the known keys"
            raise MortarError("unknown key", file=str(path), key=str(key), fix=hint)
        decl = keys[key]
        if not _type_ok(value, decl["type"]):
            raise MortarError(f"must be of type {decl['type']}, not {type(value).__name__} ({value!r})",
                              file=str(path), key=key)
        if "choices" in decl and value not in decl["choices"]:
            raise MortarError(f"'{value}' is not allowed", file=str(path), key=key,
                              fix=f"choose one of {', '.join(map(str, decl['choices']))}")
        if decl["type"] == "int" and value < decl.get("min", -(2**63)):
            raise MortarError(f"must be at least {decl['min']}", file=str(path), key=key)
        values[key] = value
    return values


def required_passwords(services: dict[str, ServiceSpec], enabled: set[str]) -> dict[str, str]:
    needed: dict[str, str] = {}
    for name in sorted(enabled):
        needed.update(services[name].passwords)
    return needed


def load_passwords(path: Path, needed: dict[str, str]) -> dict[str, str]:
    data = read_yaml(path, how_to_make="mortar genpwd")
    missing = [key for key in needed if not data.get(key)]
    if missing:
        raise MortarError(f"missing password{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
                          file=str(path), key=missing[0], fix="run `mortar genpwd` to fill them")
    return {str(k): str(v) for k, v in data.items()}


def generate_secret(kind: str) -> str:
    if kind == "fernet":
        import base64

        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    if kind == "hex":
        return secrets.token_hex(32)
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(32))


def genpwd(path: Path, needed: dict[str, str]) -> list[str]:
    """Fill every missing secret; never overwrite a value that is there. Returns new keys."""
    existing = read_yaml(path, required=False)
    added = []
    for key, kind in sorted(needed.items()):
        if not existing.get(key):
            existing[key] = generate_secret(kind)
            added.append(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# Generated by `mortar genpwd`: every secret the enabled services need. Keep it safe.\n")
        yaml.safe_dump(existing, out, default_flow_style=False, sort_keys=True)
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return added


def load_site(config_dir: Path, services: dict[str, ServiceSpec]) -> Site:
    values = load_globals(config_dir / "globals.yml", services)
    enabled = {name for name in services if values[f"enable_{name}"]}
    for name in sorted(enabled):
        for dep in services[name].depends:
            if dep not in enabled:
                raise MortarError(f"{name} needs {dep}, which is disabled", file=str(config_dir / "globals.yml"),
                                  key=f"enable_{dep}", fix=f"set enable_{dep}: true or enable_{name}: false")
    passwords = load_passwords(config_dir / "passwords.yml", required_passwords(services, enabled))
    return Site(config_dir=config_dir, globals=values, passwords=passwords, services=services, enabled=enabled)
