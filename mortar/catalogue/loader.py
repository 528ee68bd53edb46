"""The service catalogue: one folder per service, `service.yaml` plus config templates.

Everything a deployer needs to know about a service lives here as data: containers and
the inventory group that runs them, files, volumes, healthchecks, one-shot jobs,
databases, keystone registrations, options it adds to globals.yml and passwords it needs.
Executors read these specs; none of them knows any service by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mortar.errors import MortarError

CATALOGUE_DIR = Path(__file__).resolve().parent

SERVICE_KEYS = {"name", "description", "enabled", "depends", "group", "options", "passwords", "databases",
                "volumes", "containers", "jobs", "registration"}
CONTAINER_KEYS = {"image", "group", "user", "command", "files", "directories", "volumes", "environment",
                  "healthcheck", "ports", "cap_add", "tmpfs", "stop_timeout"}
FILE_KEYS = {"template", "dest", "owner", "mode", "merge", "main"}
JOB_KEYS = {"name", "container", "phase", "command", "user", "run", "files", "image", "volumes"}
OPTION_TYPES = {"int": int, "str": str, "bool": bool, "list": list}
PASSWORD_KINDS = {"password", "fernet", "hex"}


@dataclass
class FileDecl:
    template: str
    dest: str
    owner: str = "root"
    mode: str = "0640"
    merge: str = "ini"  # ini | yaml | replace
    main: bool = False  # global.conf and <service>.conf merge into it


@dataclass
class ContainerDecl:
    name: str
    image: str
    group: str
    user: str = "root"
    command: Any = None
    files: list[FileDecl] = field(default_factory=list)
    directories: list[dict] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    healthcheck: dict[str, Any] = field(default_factory=dict)
    ports: list[str] = field(default_factory=list)  # templates, e.g. "{{ horizon_port }}"
    cap_add: list[str] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    stop_timeout: int = 10


@dataclass
class JobDecl:
    name: str
    container: str
    phase: str  # before | after
    command: Any
    user: str = "root"
    run: str = "on_change"  # on_change | once | always
    files: list[FileDecl] = field(default_factory=list)


@dataclass
class ServiceSpec:
    name: str
    path: Path
    description: str = ""
    enabled: bool = True
    depends: list[str] = field(default_factory=list)
    group: str = "control"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    databases: list[dict[str, str]] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    containers: dict[str, ContainerDecl] = field(default_factory=dict)
    jobs: list[JobDecl] = field(default_factory=list)
    registration: dict[str, Any] = field(default_factory=dict)

    @property
    def template_dir(self) -> Path:
        return self.path / "templates"


def _unknown(data: dict, allowed: set[str], where: str, path: Path) -> None:
    import difflib

    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            raise MortarError(f"unknown key '{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""),
                              file=str(path), key=where)


def _expect(value: Any, kind: type, where: str, path: Path, what: str) -> Any:
    if not isinstance(value, kind):
        raise MortarError(f"must be {what}, not {type(value).__name__}", file=str(path), key=where)
    return value


def _file(raw: dict, where: str, path: Path) -> FileDecl:
    _expect(raw, dict, where, path, "a mapping")
    _unknown(raw, FILE_KEYS, where, path)
    if "template" not in raw or "dest" not in raw:
        raise MortarError("a file needs 'template' and 'dest'", file=str(path), key=where)
    decl = FileDecl(**raw)
    if decl.merge not in ("ini", "yaml", "replace"):
        raise MortarError(f"merge must be ini, yaml or replace, not '{decl.merge}'", file=str(path), key=where)
    if not (path.parent / "templates" / decl.template).is_file():
        raise MortarError(f"template '{decl.template}' not found in templates/", file=str(path), key=where)
    return decl


def load_service(path: Path) -> ServiceSpec:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise MortarError(f"not valid YAML: {exc}", file=str(path)) from exc
    if not isinstance(raw, dict):
        raise MortarError("must be a mapping", file=str(path))
    _unknown(raw, SERVICE_KEYS, "service", path)
    for key, kind, what in (("depends", list, "a list"), ("volumes", list, "a list"), ("jobs", list, "a list"),
                            ("databases", list, "a list"), ("options", dict, "a mapping"),
                            ("passwords", dict, "a mapping"), ("containers", dict, "a mapping"),
                            ("registration", dict, "a mapping")):
        if raw.get(key) is not None:
            _expect(raw[key], kind, key, path, what)
    name = raw.get("name") or path.parent.name
    group = raw.get("group", "control")
    spec = ServiceSpec(name=name, path=path.parent, description=raw.get("description", ""),
                       enabled=bool(raw.get("enabled", True)), depends=list(raw.get("depends", [])), group=group,
                       options=dict(raw.get("options", {})), passwords=dict(raw.get("passwords", {})),
                       databases=list(raw.get("databases", [])), volumes=list(raw.get("volumes", [])),
                       registration=dict(raw.get("registration", {})))
    for option, decl in spec.options.items():
        if not isinstance(decl, dict) or decl.get("type") not in OPTION_TYPES or "default" not in decl:
            raise MortarError("an option needs a type (int, str, bool, list) and a default", file=str(path),
                              key=f"options.{option}")
    for password, password_kind in spec.passwords.items():
        if password_kind not in PASSWORD_KINDS:
            raise MortarError(f"password kind must be one of {sorted(PASSWORD_KINDS)}", file=str(path),
                              key=f"passwords.{password}")
    for cname, craw in (raw.get("containers") or {}).items():
        where = f"containers.{cname}"
        _expect(craw, dict, where, path, "a mapping with at least an image")
        _unknown(craw, CONTAINER_KEYS, where, path)
        if "image" not in craw:
            raise MortarError("a container needs an image", file=str(path), key=where)
        files = [_file(f, f"{where}.files", path) for f in craw.get("files", [])]
        spec.containers[cname] = ContainerDecl(
            name=cname, image=craw["image"], group=craw.get("group", group), user=craw.get("user", "root"),
            command=craw.get("command"), files=files, directories=list(craw.get("directories", [])),
            volumes=list(craw.get("volumes", [])), environment=dict(craw.get("environment", {})),
            healthcheck=dict(craw.get("healthcheck", {})), ports=[str(p) for p in craw.get("ports", [])],
            cap_add=list(craw.get("cap_add", [])), tmpfs=list(craw.get("tmpfs", [])),
            stop_timeout=int(craw.get("stop_timeout", 10)))
    for index, jraw in enumerate(raw.get("jobs") or []):
        where = f"jobs[{index}]"
        _expect(jraw, dict, where, path, "a mapping")
        _unknown(jraw, JOB_KEYS, where, path)
        for required in ("name", "command"):
            if not jraw.get(required):
                raise MortarError(f"a job needs '{required}'", file=str(path), key=where)
        if jraw.get("container") not in spec.containers:
            raise MortarError(f"job container '{jraw.get('container')}' is not a container of this service",
                              file=str(path), key=where)
        if jraw.get("phase") not in ("before", "after"):
            raise MortarError("phase must be 'before' or 'after'", file=str(path), key=where)
        if jraw.get("run", "on_change") not in ("on_change", "once", "always"):
            raise MortarError("run must be on_change, once or always", file=str(path), key=where)
        spec.jobs.append(JobDecl(name=jraw["name"], container=jraw["container"], phase=jraw["phase"],
                                 command=jraw["command"], user=jraw.get("user", "root"),
                                 run=jraw.get("run", "on_change"),
                                 files=[_file(f, f"{where}.files", path) for f in jraw.get("files", [])]))
    return spec


def load_catalogue(root: Path = CATALOGUE_DIR) -> dict[str, ServiceSpec]:
    services = {}
    for path in sorted(root.glob("*/service.yaml")):
        spec = load_service(path)
        services[spec.name] = spec
    for spec in services.values():
        for dep in spec.depends:
            if dep not in services:
                raise MortarError(f"depends on unknown service '{dep}'", file=str(spec.path / "service.yaml"),
                                  key="depends")
    return services


def service_order(services: dict[str, ServiceSpec], enabled: set[str]) -> list[str]:
    """Enabled services, dependencies first (a disabled dependency is simply skipped)."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in stack:
            raise MortarError(f"service dependency cycle: {' -> '.join(stack + (name,))}")
        if name in seen or name not in enabled:
            return
        for dep in services[name].depends:
            visit(dep, stack + (name,))
        seen.add(name)
        order.append(name)

    for name in sorted(enabled):
        visit(name, ())
    return order
