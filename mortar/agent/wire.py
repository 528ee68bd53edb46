"""What the controller and a host agent say to each other: typed, versioned, plain JSON.

The same dataclasses serve both ends: the catalogue declares a `Container` (templates),
desired-state rendering fills it in (contents, full image references), and the agent
converges it. `encode` and `decode` turn them into JSON-ready dicts and back, checking
every field's type, so a controller and an agent of different versions fail with one
clear message instead of a KeyError deep in converge.

Standard library only: the host agent ships this module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from mortar.errors import MortarError

WIRE_VERSION = 1
CONFIG_MOUNT = "/var/lib/mortar/config"
OUTPUT_MOUNT = "/var/lib/mortar/output"
LABEL_PREFIX = "org.mortar."


class WireError(MortarError):
    """A message between controller and agent that does not have the agreed shape."""


def declared(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, render: bool = True,
             help: str = "") -> Any:
    """A field the catalogue may set in service.yaml (rendered as a template unless render=False)."""
    meta = {"declared": True, "render": render, "help": help}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def computed(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING) -> Any:
    """A field mortar fills in; service.yaml may not set it."""
    meta = {"declared": False, "render": False}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(kw_only=True)
class File:
    """A config file: declared as a template, rendered into content, placed by mortar-start."""

    dest: str = declared(render=False, help="absolute path inside the container")
    template: str = declared("", render=False, help="template in the service's templates/ folder")
    owner: str = declared("root", help="user or user:group")
    mode: str = declared("0640", render=False, help="quoted octal, e.g. \"0640\"")
    merge: str = declared("ini", render=False, help="how overrides merge: ini, yaml, json or replace")
    main: bool = declared(False, render=False, help="global.conf and <service>.conf merge into it")
    content: str = computed("")
    source: str = computed("")  # its name among the container's files, when not dest's last part

    @property
    def name(self) -> str:
        return self.source or PurePosixPath(self.dest).name

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()


@dataclass(kw_only=True)
class Directory:
    path: str = declared(render=False)
    owner: str = declared("")
    mode: str = declared("", render=False)
    recurse: bool = declared(False, render=False)


@dataclass(kw_only=True)
class Mount:
    """A host path seen inside the container (`volumes` are the service's named volumes)."""

    source: str = declared(help="absolute path on the host")
    target: str = declared(help="absolute path in the container")
    read_only: bool = declared(False, render=False)
    propagation: str = declared("", render=False, help="'', rshared, rslave, shared, slave or private")


# The engine's interval between two probes of a running container when neither the catalogue
# nor the site sets one (kolla-ansible's default too).
HEALTH_INTERVAL = 30


@dataclass(kw_only=True)
class Healthcheck:
    test: str = declared(help="shell command in the container; exit 0 means it serves")
    # Seconds between the engine's probes of a running container; unset, the site's
    # healthcheck_interval (HEALTH_INTERVAL unless the site says otherwise). Each probe is an
    # exec, about 0.1 s of CPU: at 10 s, a control host's twenty containers took a quarter of a
    # core doing nothing else. A deploy does not wait for the engine: it probes a starting
    # container itself, at once and then every few seconds.
    interval: int | None = declared(None, render=False)
    timeout: int = declared(10, render=False)
    retries: int = declared(3, render=False)
    start_period: int = declared(5, render=False)

    def every(self) -> int:
        """Seconds between the engine's probes: the interval, or HEALTH_INTERVAL for a check
        nothing rendered (a deploy's containers carry the site's)."""
        return self.interval or HEALTH_INTERVAL


@dataclass(kw_only=True)
class Frontend:
    """What the load balancer serves for a container on the site's virtual address: the same
    port, with every host of the container behind it."""

    port: int = declared(0, render=False, help="the port on the virtual address, one the container binds on its "
                                                "host (default: its first port)")
    mode: str = declared("http", render=False, help="http (an HTTP API) or tcp (any other protocol)")
    check: str = declared("", render=False, help="http: the path a backend answers below 500 on when it serves; "
                                                 "tcp: empty (a connection) or mysql (a MySQL greeting)")
    backup: bool = declared(False, render=False, help="one host serves at a time and the others stand by (a "
                                                      "database with one writer)")
    tls_port: int = declared(0, render=False, help="http: the port on the virtual address with enable_tls_internal "
                                                   "(default: port), e.g. 443 for a dashboard on 80")
    member_check_port: int = declared(0, render=False, help="tcp, on several hosts: the port where each host "
                                                            "answers HTTP 200 on / while it serves as a member of "
                                                            "its cluster (checked instead of `check`)")


@dataclass(kw_only=True)
class Container:
    """One container of a service: the one type for what is declared and what is run."""

    name: str = computed()
    service: str = computed("")
    image: str = declared(render=False, help="image name (declared) or full reference (rendered)")
    group: str = declared("", render=False,
                          help="inventory group that runs it, or groups joined by ',' (default: the service's)")
    user: str = declared("root", help="user the command runs as")
    command: list[str] = declared(factory=list, help="exec form; a string is split into words before rendering")
    script: str = declared("", help="a shell script instead of a command; every {{ value }} is shell-quoted")
    files: list[File] = declared(factory=list)
    directories: list[Directory] = declared(factory=list)
    volumes: list[str] = declared(factory=list, help="VOLUME:/path[:ro], VOLUME one of the service's volumes")
    mounts: list[Mount] = declared(factory=list)
    environment: dict[str, str] = declared(factory=dict, help="given to the command by mortar-start, never "
                                                              "to the engine")
    healthcheck: Healthcheck | None = declared(None)
    ports: list[int] = declared(factory=list, help="TCP ports it binds (prechecks check they are free)")
    cap_add: list[str] = declared(factory=list, render=False)
    cap_drop: list[str] = declared(factory=list, render=False)
    devices: list[str] = declared(factory=list, render=False, help="HOST[:CONTAINER[:rwm]]")
    security_opt: list[str] = declared(factory=list, render=False)
    pid_mode: str = declared("", render=False, help="'' or host")
    ipc_mode: str = declared("", render=False, help="'', host or shareable")
    ulimits: dict[str, list[int]] = declared(factory=dict, render=False, help="name: [soft, hard]")
    sysctls: dict[str, str] = declared(factory=dict, render=False)
    tmpfs: list[str] = declared(factory=list, render=False)
    stop_timeout: int = declared(10, render=False, help="seconds between SIGTERM and SIGKILL")
    loadbalancer: Frontend | None = declared(None, render=False, help="served on the site's virtual address "
                                             "(internal_vip_address) by the load balancer")
    teardown: str = declared("", help="a shell script `destroy` runs inside the running container before "
                                      "removing it, to undo what it made on the host (bridges, links)")
    data: list[str] = computed(factory=list)  # "host/volume" of providers' data it relies on (a new one: recreate)
    # Seconds the load balancer needs to see this container gone (or back) when it spreads
    # clients over several hosts of it: a restart holds it stopped that long before starting it
    # again, so no request waits on a server that listens but has not loaded its application.
    drain: int = computed(0)

    def start_spec(self, output: str = "") -> dict[str, Any]:
        """The spec mortar-start reads inside the container."""
        spec: dict[str, Any] = {
            "command": self.command, "user": self.user, "environment": self.environment,
            "directories": [dataclasses.asdict(d) for d in self.directories],
            "files": [{"source": f.name, "dest": f.dest, "owner": f.owner, "mode": f.mode} for f in self.files]}
        if output:
            spec["output"] = output
        return spec

    def definition(self) -> dict[str, Any]:
        """Everything that decides the running container; contents as digests (no secrets). The
        image counts by its id on the host, not its name: a name that now means the same image
        (an infrastructure image of the next series) changes nothing."""
        data = dataclasses.asdict(self)
        data.pop("group")
        data.pop("image")
        data.pop("data")  # decided against the data's ids, not the hash
        data.pop("teardown")  # runs at destroy only: it decides nothing about the running container
        data.pop("loadbalancer")  # the load balancer's business, not the container's
        data.pop("drain")
        data["files"] = {f.name: {"dest": f.dest, "owner": f.owner, "mode": f.mode, "sha256": f.digest}
                         for f in self.files}
        data["environment"] = {k: hashlib.sha256(v.encode()).hexdigest()[:12] for k, v in self.environment.items()}
        data["script"] = hashlib.sha256(self.script.encode()).hexdigest()[:12] if self.script else ""
        return data

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.definition(), sort_keys=True).encode()).hexdigest()

    def rendered_files(self, output: str = "") -> dict[str, str]:
        files = {f.name: f.content for f in self.files}
        files["spec.json"] = json.dumps(self.start_spec(output), indent=1, sort_keys=True) + "\n"
        return files


@dataclass(kw_only=True)
class Job:
    """A one-shot container: declared beside a container whose image, files and volumes it uses."""

    name: str = declared(render=False)
    container: str = declared("", render=False, help="the container it runs beside (and where it is placed)")
    phase: str = declared("before", render=False, help="provision, before or after the service's containers; "
                                                       "check: only run by upgrade's preflight, from the new "
                                                       "series' image, and never recorded")
    run: str = declared("on_change", render=False, help="on_change, once or always")
    user: str = declared("root")
    command: list[str] = declared(factory=list)
    script: str = declared("")
    files: list[File] = declared(factory=list)
    environment: dict[str, str] = declared(factory=dict)
    timeout: int = declared(600, render=False, help="seconds before the job is stopped and reported")
    retry_delay: int = declared(0, render=False, help="> 0: rerun until it succeeds or times out, this many "
                                                       "seconds apart")
    ok: list[int] = declared(factory=lambda: [0], render=False, help="exit codes that count as success")
    before_upgrade: bool = declared(False, render=False, help="also run by upgrade's preflight from the running "
                                                              "series' image, which must finish it first (its "
                                                              "online data migrations)")
    every_host: bool = declared(False, render=False, help="run beside the container on every host that runs it "
                                                          "(it fills that host's own volume), not on the first only")
    service: str = computed("")
    spec: Container | None = computed(None)
    data: list[str] = computed(factory=list)  # "host/volume" of the data it initialises or depends on
    hosts: list[str] = computed(factory=list)  # hosts whose services its inputs describe (its service's, providers')

    @property
    def inputs(self) -> str:
        """What decides whether the job must run again (besides its image and its data)."""
        assert self.spec is not None
        return hashlib.sha256(json.dumps([self.spec.definition(), self.run, self.timeout],
                                         sort_keys=True).encode()).hexdigest()


@dataclass
class ServiceState:
    name: str
    volumes: list[str] = field(default_factory=list)
    containers: list[Container] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)


@dataclass
class HostState:
    """Everything one host must run, and only the secrets that it uses."""

    host: str
    address: str
    site: str = ""  # the deployment's site id: labels every container and volume
    services: dict[str, ServiceState] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # service order; stop goes backwards
    secrets: list[str] = field(default_factory=list)  # every secret this state holds, to mask output
    health_timeout: float = 180.0
    image_pins: dict[str, str] = field(default_factory=dict)  # image ref -> digest recorded at push
    registry_auth: dict[str, str] = field(default_factory=dict)  # registry, username, password
    # volume -> the local driver's options it is made with (volume_options of globals.yml)
    volume_options: dict[str, dict[str, str]] = field(default_factory=dict)
    # The site's virtual addresses this host may be given (it runs the load balancer).
    virtual_addresses: list[str] = field(default_factory=list)
    # The names this host's containers reach others by (internal_fqdn), each with the address
    # it must resolve to: the site's DNS or the host's /etc/hosts gives them, prechecks look.
    names: dict[str, str] = field(default_factory=dict)
    version: int = WIRE_VERSION

    def containers(self) -> list[Container]:
        return [c for s in self.services.values() for c in s.containers]

    def jobs(self) -> list[Job]:
        return [j for s in self.services.values() for j in s.jobs]

    def images(self) -> list[str]:
        """Every image this host runs, for its containers and its jobs, sorted."""
        return sorted({c.image for c in self.containers()} | {j.spec.image for j in self.jobs() if j.spec})


@dataclass
class Check:
    ok: bool
    what: str
    fix: str = ""

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.what}" + ("" if self.ok or not self.fix else f"  -> {self.fix}")


@dataclass
class Action:
    kind: str  # pull | volume | create | recreate | start | restart | wait | remove | job
    host: str
    service: str
    target: str
    reasons: list[str] = field(default_factory=list)
    diff: str = ""

    def line(self) -> str:
        why = f": {'; '.join(self.reasons)}" if self.reasons else ""
        return f"{self.kind:8} {self.target}{why}"


@dataclass
class Failure:
    """A step that failed on a host, said the same way whichever executor carried it."""

    host: str
    step: str
    message: str
    service: str = ""
    target: str = ""  # the container or job
    log_tail: str = ""
    fix: str = ""
    kind: str = "permanent"  # permanent | temporary | timeout | unreachable

    def text(self) -> str:
        where = " ".join(p for p in (self.service + ":" if self.service else "", self.target) if p)
        head = f"{self.host}: {self.step}: {where + ': ' if where else ''}{self.message}"
        if self.log_tail:
            head += "\n" + "\n".join(f"    | {line}" for line in self.log_tail.splitlines())
        return head


@dataclass
class StepRequest:
    """What the controller asks of one host for the steps of one run."""

    services: list[str] = field(default_factory=list)  # whose containers converge (none outside --limit)
    jobs: list[str] = field(default_factory=list)  # the jobs to run, chosen by the controller
    recreate: list[str] = field(default_factory=list)  # containers whose providers' data is new
    data_ids: dict[str, str] = field(default_factory=dict)  # "host/volume" -> data id, of other hosts' volumes
    registry: str = ""  # the site registry, HOST:PORT (engine step)
    insecure_registries: list[str] = field(default_factory=list)
    registry_ca: str = ""  # PEM of the CA the registry's certificate is signed by
    version: int = WIRE_VERSION


@dataclass
class StepReport:
    host: str
    step: str
    changed: bool = False
    lines: list[str] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    volumes: dict[str, str] = field(default_factory=dict)  # volume -> data id
    job_records: dict[str, dict[str, Any]] = field(default_factory=dict)  # job -> what it last ran with
    container_data: dict[str, dict[str, str]] = field(default_factory=dict)  # container -> the data it started on
    image_ids: dict[str, str] = field(default_factory=dict)  # image ref -> id on this host
    checks: list[Check] = field(default_factory=list)
    failure: Failure | None = None
    version: int = WIRE_VERSION

    def summary(self) -> str:
        if self.failure is not None:
            return f"FAILED: {self.failure.message.splitlines()[0] if self.failure.message else ''}"
        if not self.changed:
            return "ok (no change)"
        shown = "; ".join(self.lines[:3])
        return shown if len(self.lines) <= 3 else f"{shown} (+{len(self.lines) - 3} more)"

    def line(self) -> str:
        """The operator's one line for this host and step."""
        return f"[{self.host}] {self.step:10} {self.summary()}"


# ---- encoding ---------------------------------------------------------------------------

def encode(value: Any) -> Any:
    """A dataclass (or list/dict of them) as JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def decode(cls: Any, data: Any, where: str = "") -> Any:
    """DATA as an instance of CLS (a dataclass or a typing form), every field checked."""
    where = where or getattr(cls, "__name__", str(cls))
    origin = typing.get_origin(cls)
    if cls is Any:
        return data
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(cls)
        if data is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return decode(inner[0], data, where)
    if origin is list:
        if not isinstance(data, list):
            raise WireError(f"{where}: expected a list, got {type(data).__name__}")
        (item,) = typing.get_args(cls) or (Any,)
        return [decode(item, v, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin is dict:
        if not isinstance(data, dict):
            raise WireError(f"{where}: expected a mapping, got {type(data).__name__}")
        _, item = typing.get_args(cls) or (str, Any)
        return {str(k): decode(item, v, f"{where}.{k}") for k, v in data.items()}
    if isinstance(cls, type) and dataclasses.is_dataclass(cls):
        if not isinstance(data, dict):
            raise WireError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise WireError(f"{where}: unknown field {unknown[0]!r}")
        kinds = hints(cls)
        values = {}
        for name, f in known.items():
            if name in data:
                values[name] = decode(kinds[name], data[name], f"{where}.{name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise WireError(f"{where}: missing field {name!r}")
        return cls(**values)
    if cls is float:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return float(data)
        raise WireError(f"{where}: expected a number, got {type(data).__name__}")
    if cls is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        raise WireError(f"{where}: expected an integer, got {type(data).__name__}")
    if cls in (str, bool):
        if isinstance(data, cls) and not (cls is str and isinstance(data, bool)):
            return data
        raise WireError(f"{where}: expected {cls.__name__}, got {type(data).__name__}")
    raise WireError(f"{where}: cannot decode {cls!r}")


def dumps(value: Any) -> str:
    return json.dumps({"wire": WIRE_VERSION, "kind": type(value).__name__, "data": encode(value)}, sort_keys=True)


def loads(cls: type, text: str, source: str = "message") -> Any:
    try:
        envelope = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WireError(f"{source} is not JSON ({exc.msg})") from None
    if not isinstance(envelope, dict) or "wire" not in envelope or "data" not in envelope:
        raise WireError(f"{source} is not a mortar message")
    if envelope["wire"] != WIRE_VERSION:
        raise WireError(f"{source} speaks wire version {envelope['wire']}, this mortar speaks {WIRE_VERSION}",
                        fix="use the same mortar version on the controller and the hosts (a deploy copies it)")
    if envelope.get("kind") != cls.__name__:
        raise WireError(f"{source} holds a {envelope.get('kind')}, expected a {cls.__name__}")
    return decode(cls, envelope["data"], cls.__name__)
