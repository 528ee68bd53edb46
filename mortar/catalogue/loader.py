"""The service catalogue: one folder per service, `service.yaml` plus config templates.

Everything a deployer needs to know about a service lives here as data: its containers and
the inventory group that runs them, files, volumes, healthchecks, one-shot jobs, the
capabilities it provides (a database, identity, messaging, ...) and consumes, keystone-style
registrations, verify checks, options it adds to globals.yml and passwords it needs.
Executors and the planner read these specs; none of them knows any service by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from mortar.agent.wire import Container, File, Job
from mortar.catalogue.schema import Where, is_template, load, unknown_keys
from mortar.errors import MortarError
from mortar.files import load_yaml
from mortar.site.certificates import SITE_CERTIFICATES

CATALOGUE_DIR = Path(__file__).resolve().parent
IMAGES_DIR = CATALOGUE_DIR.parent / "images"

SERVICE_KEYS = ["name", "description", "enabled", "enabled_with", "group", "options", "passwords", "volumes",
                "secret_volumes", "shared_volumes", "rotations", "provides", "consumes", "containers", "jobs",
                "registration", "verify"]
PROVIDES_KEYS = ["container", "values", "per_request", "data", "provision", "request_keys"]
CONSUMES_KEYS = ["optional", "multiple", "request"]
# Formats a str option may name (`format:`); mortar.site.config checks each value against it.
OPTION_FORMATS = {"address", "interface_address", "network", "address_range", "interface"}
# What every instance of a capability carries besides its declared values.
INSTANCE_KEYS = {"host", "address", "service"}
PROVISION_KEYS = ["user", "command", "script", "files", "environment", "timeout", "retry_delay"]
REGISTRATION_KEYS = ["container", "name", "type", "description", "endpoints", "users"]
VERIFY_KEYS = ["name", "check", "container", "when"]
OPTION_TYPES = {"int": int, "str": str, "bool": bool, "list": list, "dict": dict}
PASSWORD_KINDS = {"password", "fernet", "hex"}
MERGE_KINDS = ("ini", "yaml", "json", "replace")
INTERFACES = ("public", "internal", "admin")
NAME = re.compile(r"[a-z][a-z0-9_]*")
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
CAPABILITY = re.compile(r"[a-z][a-z0-9_]*")
VOLUME_ENTRY = re.compile(r"(?P<name>[A-Za-z0-9][\w.-]*):(?P<path>/[^:]*)(:(?P<mode>ro|rw))?")
OCTAL = re.compile(r"[0-7]{3,4}")
CAP_NAME = re.compile(r"[A-Z][A-Z_]*")
ULIMITS = {"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
           "rtprio", "rttime", "sigpending", "stack"}


@dataclass
class Provision:
    """The job a provider runs for each consumer that sends it a request (a database, a user)."""

    job: Job
    request_keys: dict[str, str]  # key -> required | optional


@dataclass
class Provides:
    capability: str
    container: str  # where the capability is served: its instances are this container's hosts
    values: dict[str, Any] = field(default_factory=dict)  # rendered on each instance's host
    per_request: dict[str, str] = field(default_factory=dict)  # rendered per request entry, keyed by its name
    data: str = ""  # the volume holding what consumers' jobs initialise
    provision: Provision | None = None


@dataclass
class Consumes:
    capability: str
    optional: bool = False  # absent provider: the template sees none, and no ordering is implied
    multiple: bool = False  # every provider's instances, not exactly one provider
    request: Any = None  # what the provider's provision job makes for this service


@dataclass
class RegistrationDecl:
    container: str
    name: str
    type: str
    description: str = ""
    endpoints: dict[str, str] = field(default_factory=dict)
    users: list[dict[str, str]] = field(default_factory=list)


@dataclass
class VerifyDecl:
    name: str
    check: str
    container: str
    when: list[str] = field(default_factory=list)  # capabilities that must be provided
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rotation:
    """Secrets that move along together (`mortar fernet-rotate`): each destination of MOVES takes
    its source's value at the same moment, then NEW gets a fresh secret of its kind."""

    new: str
    moves: dict[str, str] = field(default_factory=dict)  # destination -> source


@dataclass
class ServiceSpec:
    name: str
    path: Path
    description: str = ""
    enabled: bool = True
    enabled_with: str = ""  # default of enable_<name> is the value of enable_<enabled_with>
    group: str = "control"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)
    # volume -> {file name: password}: volumes that hold nothing but secrets of passwords.yml (or site
    # certificates: mortar.site.certificates)
    secret_volumes: dict[str, dict[str, str]] = field(default_factory=dict)
    # Volumes whose data every host of the service must see alike (several hosts: globals.yml's
    # volume_options must put it on a shared filesystem)
    shared_volumes: list[str] = field(default_factory=list)
    rotations: dict[str, Rotation] = field(default_factory=dict)
    provides: dict[str, Provides] = field(default_factory=dict)
    consumes: dict[str, Consumes] = field(default_factory=dict)
    containers: dict[str, Container] = field(default_factory=dict)
    jobs: list[Job] = field(default_factory=list)
    registration: RegistrationDecl | None = None
    verify: list[VerifyDecl] = field(default_factory=list)

    @property
    def template_dir(self) -> Path:
        return self.path / "templates"

    @property
    def file(self) -> Path:
        return self.path / "service.yaml"


def _expect(value: Any, kind: type, where: Where, what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise where.error(f"must be {what}, not {type(value).__name__}")
    return value


def _check_file(decl: File, where: Where, spec: ServiceSpec) -> None:
    if not decl.template:
        raise where.error("a file needs a 'template'")
    if not (spec.template_dir / decl.template).is_file():
        raise where.at("template").error(f"template '{decl.template}' not found in {spec.template_dir}")
    if not PurePosixPath(decl.dest).is_absolute():
        raise where.at("dest").error(f"dest must be an absolute path, not '{decl.dest}'")
    if not OCTAL.fullmatch(decl.mode):
        raise where.at("mode").error(f"mode must be a quoted octal string like \"0640\", not {decl.mode!r}")
    if decl.merge not in MERGE_KINDS:
        raise where.at("merge").error(f"merge must be one of {', '.join(MERGE_KINDS)}, not '{decl.merge}'")


def _check_files(files: list[File], where: Where, spec: ServiceSpec) -> None:
    seen: set[str] = set()
    for i, decl in enumerate(files):
        _check_file(decl, where.at(i), spec)
        if decl.name in seen:
            raise where.at(i).error(f"two files named '{decl.name}' in one container",
                                    fix="file names (the last part of dest) must differ within a container")
        seen.add(decl.name)


def _check_command(holder: Container | Job, where: Where) -> None:
    if holder.command and holder.script:
        raise where.error("give either 'command' or 'script', not both")


def _check_container(c: Container, where: Where, spec: ServiceSpec, images: set[str]) -> None:
    if images and c.image not in images:
        import difflib

        close = difflib.get_close_matches(c.image, sorted(images), n=1)
        raise where.at("image").error(f"no image named '{c.image}' in {IMAGES_DIR}",
                                      fix=f"did you mean '{close[0]}'?" if close else "add the image first")
    _check_command(c, where)
    _check_files(c.files, where.at("files"), spec)
    for i, entry in enumerate(c.volumes):
        match = VOLUME_ENTRY.fullmatch(entry)
        if not match:
            raise where.at("volumes").at(i).error(f"'{entry}' is not VOLUME:/path or VOLUME:/path:ro")
        if match["name"] not in spec.volumes:
            raise where.at("volumes").at(i).error(f"volume '{match['name']}' is not one of the service's "
                                                  f"volumes ({', '.join(spec.volumes) or 'none'})",
                                                  fix="list it under the service's `volumes:`")
    for i, mount in enumerate(c.mounts):
        for key in ("source", "target"):
            if not PurePosixPath(getattr(mount, key)).is_absolute() and not is_template(getattr(mount, key)):
                raise where.at("mounts").at(i).at(key).error(f"{key} must be an absolute path")
        if mount.propagation not in ("", "rshared", "rslave", "shared", "slave", "private", "rprivate"):
            raise where.at("mounts").at(i).at("propagation").error(f"unknown propagation '{mount.propagation}'")
    for i, d in enumerate(c.directories):
        if not PurePosixPath(d.path).is_absolute():
            raise where.at("directories").at(i).error(f"path must be absolute, not '{d.path}'")
        if d.mode and not OCTAL.fullmatch(d.mode):
            raise where.at("directories").at(i).at("mode").error(f"mode must be quoted octal, not {d.mode!r}")
    for i, port in enumerate(c.ports):
        if not is_template(port) and not 0 < int(port) < 65536:
            raise where.at("ports").at(i).error(f"port {port} is not between 1 and 65535")
    if c.healthcheck is not None:
        h = c.healthcheck
        if not h.test.strip():
            raise where.at("healthcheck").at("test").error("the health test is empty")
        for key in ("interval", "timeout", "start_period"):
            if getattr(h, key) is not None and getattr(h, key) <= 0:
                raise where.at("healthcheck").at(key).error("must be more than 0 seconds")
        if h.retries < 1:
            raise where.at("healthcheck").at("retries").error("must be at least 1")
    for key in ("cap_add", "cap_drop"):
        for i, cap in enumerate(getattr(c, key)):
            if not CAP_NAME.fullmatch(cap):
                raise where.at(key).at(i).error(f"'{cap}' is not a capability name (e.g. NET_ADMIN)")
    for i, device in enumerate(c.devices):
        if not device.startswith("/dev/"):
            raise where.at("devices").at(i).error(f"'{device}' is not /dev/... [:/dev/...[:rwm]]")
    if c.pid_mode not in ("", "host"):
        raise where.at("pid_mode").error("pid_mode must be '' or host")
    if c.ipc_mode not in ("", "host", "shareable", "private"):
        raise where.at("ipc_mode").error("ipc_mode must be '', host, shareable or private")
    for name, limits in c.ulimits.items():
        if name not in ULIMITS:
            raise where.at("ulimits").at(name).error(f"unknown ulimit '{name}'",
                                                     fix=f"one of {', '.join(sorted(ULIMITS))}")
        if len(limits) != 2 or limits[0] > limits[1]:
            raise where.at("ulimits").at(name).error("give one number, or [soft, hard] with soft <= hard")
    if c.stop_timeout < 1:
        raise where.at("stop_timeout").error("must be at least 1 second")
    if c.loadbalancer is not None:
        _check_frontend(c, where.at("loadbalancer"))


def _check_frontend(c: Container, where: Where) -> None:
    front = c.loadbalancer
    assert front is not None
    if not c.ports:
        raise where.error("a container the load balancer serves binds a port", fix="list it under `ports:`")
    if front.port and front.port not in [int(p) for p in c.ports if not is_template(p)]:
        raise where.at("port").error(f"port {front.port} is not one of the container's ports",
                                     fix="list it under the container's `ports:` (it binds it on its host)")
    if front.mode not in ("http", "tcp"):
        raise where.at("mode").error(f"mode must be http or tcp, not '{front.mode}'")
    if front.mode == "http" and front.check and not front.check.startswith("/"):
        raise where.at("check").error(f"an http check is a path starting with '/', not '{front.check}'")
    if front.tls_port and front.mode != "http":
        raise where.at("tls_port").error("only an http frontend is served over TLS", fix="remove tls_port")
    if front.mode == "tcp" and front.check not in ("", "mysql"):
        raise where.at("check").error(f"a tcp check is empty (a connection) or mysql, not '{front.check}'")
    if front.member_check_port and (front.mode != "tcp" or not 0 < front.member_check_port < 65536):
        raise where.at("member_check_port").error("a port number (1-65535), for a tcp frontend only",
                                                  fix="remove it, or give the port its members answer HTTP on")


def _check_job(job: Job, where: Where, spec: ServiceSpec) -> None:
    _check_command(job, where)
    if not job.command and not job.script:
        raise where.error("a job needs a 'command' or a 'script'")
    if job.run not in ("on_change", "once", "always"):
        raise where.at("run").error(f"run must be on_change, once or always, not '{job.run}'")
    if job.timeout < 1:
        raise where.at("timeout").error("must be at least 1 second")
    if job.retry_delay < 0:
        raise where.at("retry_delay").error("must not be negative")
    _check_files(job.files, where.at("files"), spec)


def _load_provides(spec: ServiceSpec, raw: Any, where: Where) -> None:
    for capability, entry in _expect(raw, dict, where, "a mapping of capability: declaration").items():
        at = where.at(str(capability))
        if not CAPABILITY.fullmatch(str(capability)):
            raise at.error("a capability name uses lowercase letters, digits and '_'")
        _expect(entry, dict, at, "a mapping with at least 'container'")
        unknown_keys(entry, PROVIDES_KEYS, at)
        container = entry.get("container") or (next(iter(spec.containers)) if len(spec.containers) == 1 else "")
        if container not in spec.containers:
            raise at.at("container").error(f"'{container}' is not a container of {spec.name}",
                                           fix=f"one of {', '.join(spec.containers)}")
        provides = Provides(str(capability), container, dict(_expect(entry.get("values", {}), dict,
                                                                     at.at("values"), "a mapping")),
                            {str(k): str(v) for k, v in _expect(entry.get("per_request", {}), dict,
                                                                at.at("per_request"), "a mapping").items()},
                            str(entry.get("data", "")))
        reserved = sorted(INSTANCE_KEYS & set(provides.values))
        if reserved:
            raise at.at("values").at(reserved[0]).error(f"'{reserved[0]}' is set by mortar for every instance "
                                                        "(its host, address and service)",
                                                        fix="give the value another name")
        if provides.data and provides.data not in spec.volumes:
            raise at.at("data").error(f"'{provides.data}' is not one of the service's volumes")
        if entry.get("provision") is not None:
            job_raw = _expect(entry["provision"], dict, at.at("provision"), "a mapping")
            unknown_keys(job_raw, PROVISION_KEYS, at.at("provision"))
            job = load(Job, {**job_raw, "name": str(capability), "container": container, "phase": "provision"},
                       at.at("provision"))
            _check_job(job, at.at("provision"), spec)
            keys = _expect(entry.get("request_keys", {}), dict, at.at("request_keys"), "a mapping")
            for key, need in keys.items():
                if need not in ("required", "optional"):
                    raise at.at("request_keys").at(str(key)).error("must be required or optional")
            if "name" not in keys:
                raise at.at("request_keys").error("request entries need a 'name' (they are keyed by it)",
                                                  fix="add `name: required`")
            provides.provision = Provision(job, {str(k): str(v) for k, v in keys.items()})
        spec.provides[provides.capability] = provides


def _load_consumes(spec: ServiceSpec, raw: Any, where: Where) -> None:
    if isinstance(raw, list):
        raw = {str(name): {} for name in raw}
    for capability, entry in _expect(raw, dict, where, "a list or mapping of capabilities").items():
        at = where.at(str(capability))
        entry = entry or {}
        _expect(entry, dict, at, "a mapping (optional, multiple, request)")
        unknown_keys(entry, CONSUMES_KEYS, at)
        for key in ("optional", "multiple"):
            if not isinstance(entry.get(key, False), bool):
                raise at.at(key).error("must be true or false")
        spec.consumes[str(capability)] = Consumes(str(capability), bool(entry.get("optional", False)),
                                                  bool(entry.get("multiple", False)), entry.get("request"))


def _load_registration(spec: ServiceSpec, raw: Any, where: Where) -> None:
    _expect(raw, dict, where, "a mapping")
    unknown_keys(raw, REGISTRATION_KEYS, where)
    container = raw.get("container") or (next(iter(spec.containers)) if len(spec.containers) == 1 else "")
    if container not in spec.containers:
        raise where.at("container").error("name the container whose host serves the endpoints",
                                          fix=f"one of {', '.join(spec.containers)}")
    if not raw.get("type"):
        raise where.at("type").error("a registration needs a service type (e.g. image, compute)")
    endpoints = _expect(raw.get("endpoints", {}), dict, where.at("endpoints"), "a mapping of interface: URL")
    for interface in endpoints:
        if interface not in INTERFACES:
            raise where.at("endpoints").at(str(interface)).error(f"interface must be one of {', '.join(INTERFACES)}")
    users = _expect(raw.get("users", []), list, where.at("users"), "a list")
    for i, user in enumerate(users):
        _expect(user, dict, where.at("users").at(i), "a mapping with name and password")
        unknown_keys(user, ["name", "password"], where.at("users").at(i))
        if not user.get("name") or not user.get("password"):
            raise where.at("users").at(i).error("a service user needs a name and a password")
    spec.registration = RegistrationDecl(container, str(raw.get("name") or spec.name), str(raw["type"]),
                                         str(raw.get("description", "")),
                                         {str(k): str(v) for k, v in endpoints.items()},
                                         [{"name": str(u["name"]), "password": str(u["password"])} for u in users])


def _load_verify(spec: ServiceSpec, raw: Any, where: Where) -> None:
    from mortar.verify.checks import KINDS

    for i, entry in enumerate(_expect(raw, list, where, "a list of checks")):
        at = where.at(i)
        _expect(entry, dict, at, "a mapping with name and check")
        kind = KINDS.get(str(entry.get("check")))
        if kind is None:
            raise at.at("check").error(f"unknown check kind {entry.get('check')!r}",
                                       fix=f"one of {', '.join(sorted(KINDS))}")
        unknown_keys(entry, VERIFY_KEYS + sorted(kind.params), at)
        if not entry.get("name"):
            raise at.at("name").error("a check needs a name (the row of `mortar verify`)")
        container = entry.get("container") or next(iter(spec.containers), "")
        if container not in spec.containers:
            raise at.at("container").error(f"'{container}' is not a container of {spec.name}")
        params = {k: v for k, v in entry.items() if k in kind.params}
        missing = [p for p, required in kind.params.items() if required and p not in params]
        if missing:
            raise at.error(f"check {entry['check']} needs {', '.join(missing)}")
        when = entry.get("when", [])
        spec.verify.append(VerifyDecl(str(entry["name"]), str(entry["check"]), container,
                                      [str(w) for w in _expect(when, list, at.at("when"), "a list")], params))


def _load_secret_volumes(spec: ServiceSpec, raw: Any, where: Where) -> None:
    if raw is None:
        return
    for volume, files in _expect(raw, dict, where, "a mapping of volume: {file: password}").items():
        at = where.at(str(volume))
        if volume not in spec.volumes:
            raise at.error(f"'{volume}' is not one of the service's volumes ({', '.join(spec.volumes) or 'none'})",
                           fix="list it under the service's `volumes:`")
        _expect(files, dict, at, "a mapping of file name: password")
        if not files:
            raise at.error("a secret volume needs at least one file")
        for name, password in files.items():
            if not FILE_NAME.fullmatch(str(name)):
                raise at.at(str(name)).error(f"'{name}' is not a file name (letters, digits, '.', '_', '-')")
            if password not in spec.passwords and password not in SITE_CERTIFICATES:
                raise at.at(str(name)).error(f"'{password}' is not one of the service's passwords nor a site "
                                             f"certificate ({', '.join(SITE_CERTIFICATES)})",
                                             fix="list it under the service's `passwords:`")
        spec.secret_volumes[str(volume)] = {str(k): str(v) for k, v in files.items()}


def _load_rotations(spec: ServiceSpec, raw: Any, where: Where) -> None:
    for name, entry in _expect(raw or {}, dict, where, "a mapping of rotation: {new, moves}").items():
        at = where.at(str(name))
        _expect(entry, dict, at, "a mapping with new and moves")
        unknown_keys(entry, ["new", "moves"], at)
        moves = _expect(entry.get("moves", {}), dict, at.at("moves"), "a mapping of secret: the secret it takes")
        for key, password in [("new", entry.get("new")), *((f"moves.{d}", s) for d, s in moves.items()),
                              *((f"moves.{d}", d) for d in moves)]:
            if password not in spec.passwords:
                raise at.at(key).error(f"'{password}' is not one of the service's passwords",
                                       fix="list it under the service's `passwords:`")
        spec.rotations[str(name)] = Rotation(str(entry["new"]), {str(d): str(s) for d, s in moves.items()})


def image_names(root: Path = IMAGES_DIR) -> set[str]:
    return {p.parent.name for p in root.glob("*/Dockerfile.j2")}


def load_service(path: Path, images: set[str] | None = None) -> ServiceSpec:
    raw = load_yaml(path, what="service definition")
    where = Where(path)
    unknown_keys(raw, SERVICE_KEYS, where)
    name = str(raw.get("name") or path.parent.name)
    if not NAME.fullmatch(name):
        raise where.at("name").error(f"service name '{name}' must be lowercase letters, digits and '_'")
    for key, kind, what in (("volumes", list, "a list"), ("jobs", list, "a list"), ("options", dict, "a mapping"),
                            ("passwords", dict, "a mapping"), ("containers", dict, "a mapping"),
                            ("verify", list, "a list")):
        if raw.get(key) is not None:
            _expect(raw[key], kind, where.at(key), what)
    spec = ServiceSpec(name=name, path=path.parent, description=str(raw.get("description", "")),
                       enabled=bool(raw.get("enabled", True)), enabled_with=str(raw.get("enabled_with", "")),
                       group=str(raw.get("group", "control")), options=dict(raw.get("options") or {}),
                       passwords=dict(raw.get("passwords") or {}),
                       volumes=[str(v) for v in raw.get("volumes") or []])
    for option, decl in spec.options.items():
        if not isinstance(decl, dict) or decl.get("type") not in OPTION_TYPES or "default" not in decl:
            raise where.at("options").at(option).error(
                "an option needs a type (int, str, bool, list, dict) and a default")
        if "format" in decl and decl["format"] not in OPTION_FORMATS:
            raise where.at("options").at(option).at("format").error(
                f"unknown format {decl['format']!r}", fix=f"one of {', '.join(sorted(OPTION_FORMATS))}")
        if decl.get("per_host") and decl["type"] != "str":
            raise where.at("options").at(option).at("per_host").error(
                "only a str option may be set per host (inventory values are text)", fix="use type: str")
    for password, password_kind in spec.passwords.items():
        if password_kind not in PASSWORD_KINDS:
            raise where.at("passwords").at(password).error(f"password kind must be one of {sorted(PASSWORD_KINDS)}")
    _load_secret_volumes(spec, raw.get("secret_volumes"), where.at("secret_volumes"))
    for i, volume in enumerate(_expect(raw.get("shared_volumes") or [], list, where.at("shared_volumes"), "a list")):
        if volume not in spec.volumes:
            raise where.at("shared_volumes").at(i).error(f"'{volume}' is not one of the service's volumes",
                                                         fix="list it under the service's `volumes:`")
        spec.shared_volumes.append(str(volume))
    _load_rotations(spec, raw.get("rotations"), where.at("rotations"))
    images = image_names() if images is None else images
    for cname, craw in (raw.get("containers") or {}).items():
        at = where.at("containers").at(str(cname))
        if not NAME.fullmatch(str(cname)):
            raise at.error(f"container name '{cname}' must be lowercase letters, digits and '_'")
        container = load(Container, craw, at, name=str(cname), service=name)
        container.group = container.group or spec.group
        _check_container(container, at, spec, images)
        spec.containers[str(cname)] = container
    seen_jobs: set[str] = set()
    for index, jraw in enumerate(raw.get("jobs") or []):
        at = where.at("jobs").at(index)
        job = load(Job, jraw, at, service=name)
        if job.container not in spec.containers:
            raise at.at("container").error(f"'{job.container}' is not a container of this service",
                                           fix=f"one of {', '.join(spec.containers)}")
        if job.phase not in ("before", "after", "check"):
            raise at.at("phase").error("phase must be 'before', 'after' or 'check'")
        if job.name in seen_jobs or not NAME.fullmatch(job.name):
            raise at.at("name").error(f"job name '{job.name}' must be unique, lowercase letters, digits and '_'")
        seen_jobs.add(job.name)
        _check_job(job, at, spec)
        spec.jobs.append(job)
    if raw.get("provides") is not None:
        _load_provides(spec, raw["provides"], where.at("provides"))
    if raw.get("consumes") is not None:
        _load_consumes(spec, raw["consumes"], where.at("consumes"))
    if raw.get("registration") is not None:
        _load_registration(spec, raw["registration"], where.at("registration"))
    if raw.get("verify") is not None:
        _load_verify(spec, raw["verify"], where.at("verify"))
    return spec


def load_catalogue(root: Path = CATALOGUE_DIR, images: set[str] | None = None) -> dict[str, ServiceSpec]:
    services: dict[str, ServiceSpec] = {}
    for path in sorted(root.glob("*/service.yaml")):
        spec = load_service(path, images)
        if spec.name in services:
            raise MortarError(f"two services are named '{spec.name}'", file=str(path), key="name")
        services[spec.name] = spec
    provided = {cap for s in services.values() for cap in s.provides}
    for spec in services.values():
        for cap in spec.consumes:
            if cap not in provided:
                raise MortarError(f"consumes '{cap}', which no service of the catalogue provides", file=str(spec.file),
                                  key=f"consumes.{cap}")
        if spec.enabled_with and spec.enabled_with not in services:
            raise MortarError(f"enabled_with names unknown service '{spec.enabled_with}'", file=str(spec.file),
                              key="enabled_with")
    return services
