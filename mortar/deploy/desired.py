"""Desired state: what each host should run, computed from the site and the catalogue.

Pure: renders templates and builds the wire dataclasses; nothing here touches a host.
Placement follows the containers: a container runs on its group's hosts, a job beside the
container it names, a capability on the hosts of the container that provides it, an
endpoint where its container runs. Each host's state carries only the secrets that its
own rendered files, environments and commands hold.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from mortar.agent.wire import Container, File, HostState, Job, ServiceState
from mortar.catalogue.loader import Provides, ServiceSpec
from mortar.deploy.capabilities import Bindings, CapabilityView, bind, dependencies, levels, service_order
from mortar.deploy.filters import FILTERS, shell_word
from mortar.errors import MortarError
from mortar.releases import Series, releases
from mortar.site.certificates import (
    BACKEND_CERTIFICATE,
    BACKEND_KEY,
    CA_DEST,
    EXTERNAL,
    HOST_CERTIFICATE,
    HOST_KEY,
    INTERNAL,
    host_certificate,
)
from mortar.site.config import Site, host_settings
from mortar.site.inventory import Inventory
from mortar.site.overrides import apply_overrides, override_sources

SCRIPT_DEST = "/run/mortar/script.sh"
# How the load balancer checks each backend: every CHECK_EVERY seconds; CHECK_FALL failures
# take a backend out, CHECK_RISE passes put it back.
CHECK_EVERY, CHECK_FALL, CHECK_RISE = 2, 2, 2
# What a restart of a container the load balancer spreads over several hosts waits, stopped and
# again once healthy: long enough for every load balancer to take it out, then back.
DRAIN = CHECK_EVERY * (max(CHECK_FALL, CHECK_RISE) + 1)


@dataclass
class Registration:
    service: str
    type: str
    description: str
    region: str
    endpoints: dict[str, str]
    users: list[dict[str, str]]


@dataclass
class VerifyCheck:
    service: str
    name: str
    check: str
    params: dict[str, Any]


@dataclass
class DesiredState:
    site_id: str
    order: list[str]
    depends: dict[str, list[str]]
    hosts: dict[str, HostState]
    registrations: dict[str, Registration]
    identity: dict[str, str]  # the identity provider's admin credentials ({} when none is enabled)
    secrets: list[str]  # every secret of the site, longest first, to mask output
    checks: list[VerifyCheck] = field(default_factory=list)
    provided: set[str] = field(default_factory=set)  # capabilities some enabled service provides

    @property
    def levels(self) -> list[list[str]]:
        return levels(self.order, self.depends)

    def hosts_running(self, service: str) -> list[str]:
        return [h for h, state in self.hosts.items() if service in state.services]

    def hosts_of_container(self, name: str) -> list[str]:
        return [h for h, state in self.hosts.items() if any(c.name == name for c in state.containers())]


class Topology:
    """Where a container is reached and what it binds. On hosts (all-in-one and Ansible) a
    container binds the address of the host it runs on (api_address, per host in the
    inventory) and is reached there, unless it is served by the load balancer: then it is
    reached at the site's virtual address (internal_vip_address). The Kubernetes renderer
    gives its own (Service addresses, pods binding every address)."""

    def __init__(self, site: Site, inventory: Inventory) -> None:
        self.site, self.inventory = site, inventory
        self.vip = str(site.globals.get("internal_vip_address") or "")
        # The name the internal side carries instead of the address (resolved by the site's DNS).
        self.internal_name = str(site.globals.get("internal_fqdn") or "")
        # The users' side: a second virtual address and the name the public endpoints carry.
        self.external_vip = str(site.globals.get("external_vip_address") or "")
        self.external_name = str(site.globals.get("external_fqdn") or "")
        # With its certificate, the load balancer serves an address over TLS.
        self.tls = INTERNAL in site.certificates
        self.external_tls = EXTERNAL in site.certificates
        self.balanced = {name for spec in site.services.values() if spec.name in site.enabled
                         for name, decl in spec.containers.items() if decl.loadbalancer is not None}

    # Without a virtual address, nothing spreads a container's clients over its hosts.
    spreads_clients = False

    def host_address(self, host: str) -> str:
        return self.inventory.hosts[host].api_address(str(self.site.globals["api_address"]))

    def reach(self, host: str, container: str) -> str:
        """The address others use for CONTAINER on HOST: templates see it as api_address."""
        if self.vip and container in self.balanced:
            return self.internal_name or self.vip
        return self.host_address(host)

    def names(self) -> dict[str, str]:
        """The names containers reach others by, each with the address it must resolve to."""
        return {self.internal_name: self.vip} if self.internal_name and self.vip else {}

    def scheme(self, host: str, container: str) -> str:
        """How others speak HTTP to CONTAINER on HOST: templates see it as api_scheme."""
        return "https" if self.tls and self.vip and container in self.balanced else "http"

    def public_reach(self, host: str, container: str) -> str:
        """Where users reach CONTAINER on HOST (its public endpoint): templates see it as
        public_address. The external name or address for what the load balancer serves."""
        if self.vip and container in self.balanced:
            return self.external_name or self.external_vip or self.internal_name or self.vip
        return self.host_address(host)

    def public_scheme(self, host: str, container: str) -> str:
        """How users speak HTTP to CONTAINER on HOST: templates see it as public_scheme."""
        if self.vip and container in self.balanced and self.external_vip:
            return "https" if self.external_tls else "http"
        return self.scheme(host, container)

    def bind(self, host: str, container: str) -> str:
        """The address CONTAINER on HOST listens on: templates see it as bind_address."""
        return self.host_address(host)

    def hostname(self, host: str, container: str) -> str:
        """The host name CONTAINER on HOST runs under: templates see it as host."""
        return host


def _environment(directory: Path, script: bool) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(directory)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                             finalize=shell_word if script else None)
    env.filters.update(FILTERS)
    return env


class Planner:
    """Renders the catalogue for the inventory: one instance per desired-state computation."""

    def __init__(self, site: Site, inventory: Inventory, running: Mapping[str, str] | None = None,
                 topology: Topology | None = None) -> None:
        self.site = site
        self.inventory = inventory
        self.topology = topology or Topology(site, inventory)
        self.running = dict(running or {})  # host -> the series it was last deployed with
        self.services = site.services
        self.bindings: Bindings = bind(site.services, site.enabled, str(site.config_dir / "globals.yml"))
        self.depends = dependencies(site.services, self.bindings)
        self._behind_the_virtual_address()
        self.order = service_order(self.depends)
        self._envs: dict[tuple[str, bool], jinja2.Environment] = {}
        self._values: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.host_secrets: dict[str, dict[str, str]] = {}  # host -> its certificate and key, as read
        self.host_settings = host_settings(site.services, {name: h.vars for name, h in inventory.hosts.items()},
                                           inventory.path)

    def _behind_the_virtual_address(self) -> None:
        """With a virtual address, a service served on it comes after the load balancer (its
        clients reach it there from the first request on); without one, a served container
        runs on one host only, as nothing would spread its clients over several."""
        globals_file = str(self.site.config_dir / "globals.yml")
        balancers = sorted(s for s in self.site.enabled if "loadbalancer" in self.services[s].provides)
        vip = self.topology.vip
        self._external_side(globals_file, vip)
        if not vip and self.topology.spreads_clients:
            return
        if not vip:
            for name in sorted(self.site.enabled):
                spec = self.services[name]
                for cname, decl in spec.containers.items():
                    hosts = self.hosts_of(spec, cname) if decl.loadbalancer is not None else []
                    if len(hosts) > 1:
                        raise MortarError(
                            f"{cname} runs on {len(hosts)} hosts ({', '.join(hosts)}) and no virtual address "
                            "spreads its clients over them", file=globals_file, key="internal_vip_address",
                            fix="set internal_vip_address to an unused address of the control hosts' subnet "
                                f"({self._balancer_switch()}), or keep one host in the group")
            return
        if not balancers:
            raise MortarError("internal_vip_address is set but no enabled service serves it", file=globals_file,
                              key="internal_vip_address", fix=self._balancer_switch())
        self._no_host_has(globals_file, "internal_vip_address", vip)
        for name in self.depends:
            spec = self.services[name]
            if name not in balancers and any(c.loadbalancer for c in spec.containers.values()):
                self.depends[name] += [b for b in balancers if b not in self.depends[name]]

    def _external_side(self, globals_file: str, vip: str) -> None:
        """The names and the users' side (internal_fqdn, external_vip_address, external_fqdn) are
        the load balancer's too."""
        external = self.topology.external_vip
        for key in ("internal_fqdn", "external_vip_address", "external_fqdn", "enable_tls_external"):
            if self.site.globals.get(key) and not vip:
                raise MortarError(f"{key} is set but the site has no internal_vip_address", file=globals_file,
                                  key=key, fix="set internal_vip_address (the load balancer's address) as well, "
                                               f"or remove {key}")
        if not external:
            return
        if external == vip:
            raise MortarError(f"external_vip_address {external} is internal_vip_address too", file=globals_file,
                              key="external_vip_address",
                              fix="give another unused address, or remove external_vip_address (the public "
                                  "endpoints then use internal_vip_address)")
        self._no_host_has(globals_file, "external_vip_address", external)

    def _no_host_has(self, globals_file: str, key: str, address: str) -> None:
        """A virtual address (KEY) is no inventory host's own: keepalived adds it to its holder."""
        owners = [h for h in self.inventory.hosts if self.topology.host_address(h) == address]
        if owners:
            raise MortarError(f"{key} {address} is the address of {', '.join(owners)}", file=globals_file, key=key,
                              fix="choose an address no host has: keepalived adds it to the host that holds it")

    def _balancer_switch(self) -> str:
        could = sorted(s.name for s in self.services.values() if "loadbalancer" in s.provides)
        return " or ".join(f"enable_{name}: true" for name in could) or "add a service that provides loadbalancer"

    # ---- placement -----------------------------------------------------------------------
    def group_of(self, spec: ServiceSpec, container: Container) -> str:
        # An inventory group named after the container wins over its declared group; one named
        # after the service, only for containers that run where the service does (not one that
        # declares a group of its own, as a controller on every compute host does).
        candidates = [container.name.replace("_", "-"), container.name]
        if container.group == spec.group:
            candidates += [spec.name, spec.name.replace("_", "-")]
        for candidate in candidates:
            if self.inventory.has_group(candidate) and self.inventory.hosts_in(candidate):
                return candidate
        return container.group

    def hosts_of(self, spec: ServiceSpec, container: str) -> list[str]:
        decl = spec.containers[container]
        group = self.group_of(spec, decl)
        # "compute,network": every host of either group, once, in inventory order.
        groups = [g.strip() for g in group.split(",")]
        members = {h.name for g in groups for h in self.inventory.hosts_in(g)}
        hosts = [name for name in self.inventory.hosts if name in members]
        if not hosts:
            raise MortarError(f"group {' or '.join(repr(g) for g in groups)} is empty or missing, but {spec.name} "
                              f"runs {container} there", file=self.inventory.path, key=f"[{groups[0]}]",
                              fix=f"add at least one host to {' or '.join(f'[{g}]' for g in groups)} or set "
                                  f"enable_{spec.name}: false")
        return hosts

    def address(self, host: str) -> str:
        return self.topology.host_address(host)

    def addresses_of(self, spec: ServiceSpec, container: str) -> list[str]:
        """Where each host of SPEC's CONTAINER is reached, once each, in inventory order."""
        return list(dict.fromkeys(self.topology.reach(h, container) for h in self.hosts_of(spec, container)))

    def spread(self, spec: ServiceSpec, container: str) -> bool:
        """Whether the load balancer spreads CONTAINER's clients over several of its hosts."""
        return (bool(self.topology.vip) and container in self.topology.balanced
                and len(self.hosts_of(spec, container)) > 1)

    def loadbalanced(self) -> list[dict[str, Any]]:
        """What the load balancer serves: every enabled container with a frontend, its hosts
        and the address each binds, in deploy order."""
        entries = []
        for name in self.order:
            spec = self.services[name]
            for cname, decl in spec.containers.items():
                if decl.loadbalancer is None:
                    continue
                hosts = self.hosts_of(spec, cname)
                port = decl.loadbalancer.port or int(self.render(spec, decl.ports[0], self.base_variables(
                    spec, hosts[0], cname), f"containers.{cname}.ports[0]"))
                backends = [{"host": h, "address": self.topology.bind(h, cname)} for h in hosts]
                entries.append({**dataclasses.asdict(decl.loadbalancer), "name": cname, "service": name,
                                "port": port, "backends": backends, "check_every": CHECK_EVERY,
                                "fall": CHECK_FALL, "rise": CHECK_RISE})
        return entries

    def oldest_release_of(self, spec: ServiceSpec, container: str) -> Series:
        """The oldest series a host of CONTAINER runs: the site's own, unless a host still runs
        an older one (recorded until an upgrade moves it). Hosts an upgrade is moving count as
        their old series until the whole upgrade is done."""
        known = releases()
        names = known.names()
        series = [self.running.get(h, self.site.release) for h in self.hosts_of(spec, container)]
        oldest = min([self.site.release, *(s for s in series if s in names)], key=names.index)
        return known.get(oldest)

    # ---- rendering -----------------------------------------------------------------------
    def env(self, spec: ServiceSpec, script: bool = False) -> jinja2.Environment:
        key = (spec.name, script)
        if key not in self._envs:
            self._envs[key] = _environment(spec.template_dir, script)
        return self._envs[key]

    def base_variables(self, spec: ServiceSpec, host: str, container: str) -> dict[str, Any]:
        """What CONTAINER's templates on HOST see besides what the service consumes."""
        values: dict[str, Any] = dict(self.site.globals)
        # A service's templates see its own secrets only; others' come through capabilities.
        values.update({k: self.site.passwords[k] for k in spec.passwords})
        values.update(self.host_settings.get(host, {}))
        values.update(host=self.topology.hostname(host, container), api_address=self.topology.reach(host, container),
                      api_scheme=self.topology.scheme(host, container), site_ca_file=CA_DEST,
                      public_address=self.topology.public_reach(host, container),
                      public_scheme=self.topology.public_scheme(host, container),
                      bind_address=self.topology.bind(host, container), service=spec.name,
                      host_groups=[g for g, members in self.inventory.groups.items() if host in members],
                      host_address=self.topology.host_address(host),
                      hosts_of_container=lambda name: self.hosts_of(spec, name),
                      addresses_of=lambda name: self.addresses_of(spec, name),
                      loadbalanced=self.loadbalanced,
                      oldest_release_of=lambda name: self.oldest_release_of(spec, name))
        return values

    def variables(self, spec: ServiceSpec, host: str, container: str) -> dict[str, Any]:
        values = self.base_variables(spec, host, container)
        for capability, providers in self.bindings[spec.name].items():
            if capability in values:
                raise MortarError(f"capability '{capability}' has the name of a setting its templates see",
                                  file=str(spec.file), key=f"consumes.{capability}",
                                  fix="rename the capability (its provider and every consumer)")
            values[capability] = self.view(spec, host, container, capability, providers)
        return values

    def secret(self, host: str, name: str) -> str | None:
        """A secret a container's secret files hold on HOST: a password, the virtual address's
        certificate, or HOST's own certificate and key (None: the site does not use it). An API
        gets the host's certificate as its backend one only with enable_tls_backend."""
        backend = {BACKEND_CERTIFICATE: HOST_CERTIFICATE, BACKEND_KEY: HOST_KEY}
        if name in backend:
            if not self.site.globals.get("enable_tls_backend"):
                return None
            name = backend[name]
        if name in (HOST_CERTIFICATE, HOST_KEY):
            if not self.site.certificates:
                return None
            if host not in self.host_secrets:
                self.host_secrets[host] = host_certificate(self.site.config_dir, host, self.topology.host_address(host),
                                                           self.topology.vip, self.topology.internal_name)
            return self.host_secrets[host][name]
        return self.site.secrets.get(name)

    def render(self, spec: ServiceSpec, text: Any, variables: dict[str, Any], where: str,
               script: bool = False) -> Any:
        if isinstance(text, str):
            if "{{" not in text and "{%" not in text:
                return text
            try:
                return self.env(spec, script).from_string(text).render(variables)
            except jinja2.TemplateError as exc:
                raise MortarError(f"cannot render: {exc}", file=str(spec.file), key=where) from exc
        if isinstance(text, list):
            return [self.render(spec, t, variables, where, script) for t in text]
        if isinstance(text, dict):
            return {k: self.render(spec, v, variables, where, script) for k, v in text.items()}
        return text

    def render_file(self, spec: ServiceSpec, decl: File, variables: dict[str, Any], host: str,
                    overrides: bool = True) -> File:
        try:
            content = self.env(spec).get_template(decl.template).render(variables)
        except jinja2.TemplateError as exc:
            raise MortarError(f"cannot render: {exc}", file=str(spec.template_dir / decl.template)) from exc
        if overrides:
            sources = override_sources(self.site.config_dir / "config", spec.name, decl.name, host, main=decl.main)
            content = apply_overrides(content, decl.merge, sources, decl.dest)
        owner = self.render(spec, decl.owner, variables, f"{decl.template}.owner")
        return dataclasses.replace(decl, content=content, owner=owner)

    def render_container(self, spec: ServiceSpec, decl: Container, host: str, variables: dict[str, Any],
                         overrides: bool = True) -> Container:
        """The declared container made concrete for one host: every template field rendered."""
        where = f"containers.{decl.name}"
        variables = {**variables, "container": decl.name}
        rendered: dict[str, Any] = {}
        for f in dataclasses.fields(Container):
            value = getattr(decl, f.name)
            if f.name == "files":
                value = [self.render_file(spec, d, variables, host, overrides) for d in decl.files]
            elif f.name in ("script", "teardown"):
                value = self.render(spec, value, variables, f"{where}.{f.name}", script=True)
            elif f.metadata.get("render"):
                value = self.render(spec, _plain(value), variables, f"{where}.{f.name}")
                value = _rebuild(getattr(decl, f.name), value)
            rendered[f.name] = value
        rendered["image"] = self.site.image_ref(decl.image)
        try:
            # A port that renders empty is not bound here (e.g. a cluster's port on a single host).
            rendered["ports"] = [int(p) for p in rendered["ports"] if str(p).strip()]
        except ValueError as exc:
            raise MortarError(f"a port did not render to a number ({exc})", file=str(spec.file),
                              key=f"{where}.ports") from None
        container = with_secret_files(Container(**rendered), spec, lambda name: self.secret(host, name))
        return with_script(with_site_ca(with_health_interval(container, self.site), self.site))

    # ---- capabilities --------------------------------------------------------------------
    def instance_values(self, provider: ServiceSpec, provides: Provides, host: str) -> dict[str, Any]:
        """What one instance exports, rendered with the provider's own settings and secrets only."""
        key = (provider.name, provides.capability, host)
        if key not in self._values:
            values = self.render(provider, provides.values, self.base_variables(provider, host, provides.container),
                                 f"provides.{provides.capability}.values")
            values.update(host=host, address=self.topology.reach(host, provides.container), service=provider.name)
            self._values[key] = values
        return self._values[key]

    def request_of(self, consumer: ServiceSpec, capability: str, host: str, provider: ServiceSpec,
                   container: str) -> list[dict]:
        need = consumer.consumes[capability]
        provides = provider.provides[capability]
        if need.request is None:
            return []
        where = f"consumes.{capability}.request"
        if not isinstance(need.request, list):
            raise MortarError("a request is a list of entries", file=str(consumer.file), key=where)
        entries = self.render(consumer, need.request, self.base_variables(consumer, host, container), where)
        keys = provides.provision.request_keys if provides.provision else {}
        if not keys:
            raise MortarError(f"{provider.name} takes no requests for {capability}", file=str(consumer.file),
                              key=where, fix="remove the request")
        names: set[str] = set()
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise MortarError("a request entry is a mapping", file=str(consumer.file), key=f"{where}[{i}]")
            unknown = sorted(set(entry) - set(keys))
            if unknown:
                raise MortarError(f"{provider.name} does not take '{unknown[0]}' in a {capability} request",
                                  file=str(consumer.file), key=f"{where}[{i}]",
                                  fix=f"keys it takes: {', '.join(sorted(keys))}")
            missing = [k for k, need_ in keys.items() if need_ == "required" and k not in entry]
            if missing:
                raise MortarError(f"a {capability} request needs '{missing[0]}'", file=str(consumer.file),
                                  key=f"{where}[{i}]")
            if entry["name"] in names:
                raise MortarError(f"two request entries are named '{entry['name']}'", file=str(consumer.file),
                                  key=f"{where}[{i}]")
            names.add(entry["name"])
        return entries

    def view(self, consumer: ServiceSpec, host: str, container: str, capability: str,
             providers: list[str]) -> CapabilityView | None:
        if not providers:
            return None
        instances = []
        for name in providers:
            provider = self.services[name]
            provides = provider.provides[capability]
            for provider_host in self.hosts_of(provider, provides.container):
                values = dict(self.instance_values(provider, provides, provider_host))
                if provides.per_request and name != consumer.name:
                    entries = self.request_of(consumer, capability, host, provider, container)
                    pvars = self.base_variables(provider, provider_host, provides.container)
                    for key, template in provides.per_request.items():
                        values[key] = {e["name"]: self.render(provider, template, {**pvars, "entry": e},
                                                              f"provides.{capability}.per_request.{key}")
                                       for e in entries}
                instances.append(values)
        return CapabilityView(capability, instances)

    # ---- jobs ----------------------------------------------------------------------------
    def job(self, spec: ServiceSpec, decl: Job, base: Container, variables: dict[str, Any], host: str,
            files_spec: ServiceSpec, name: str, service: str, keep_volumes: bool = True) -> Job:
        where = f"jobs.{decl.name}"
        command = self.render(files_spec, decl.command, variables, f"{where}.command")
        script = self.render(files_spec, decl.script, variables, f"{where}.script", script=True)
        environment = {**base.environment,
                       **self.render(files_spec, decl.environment, variables, f"{where}.environment")}
        extra = [self.render_file(files_spec, f, variables, host, overrides=False) for f in decl.files]
        files = [f for f in base.files if f.dest != SCRIPT_DEST] + extra
        container = dataclasses.replace(
            base, name=f"{service}_{name}", service=service, command=command, script=script,
            user=self.render(files_spec, decl.user, variables, f"{where}.user"), environment=environment,
            files=files, healthcheck=None, volumes=list(base.volumes) if keep_volumes else [],
            mounts=list(base.mounts) if keep_volumes else [])
        return dataclasses.replace(decl, name=f"{service}.{name}", service=service, spec=with_script(container))


def _plain(value: Any) -> Any:
    """Declared dataclass values as plain data, for rendering."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _rebuild(declared_value: Any, rendered: Any) -> Any:
    """Rendered plain data back into the declared value's dataclasses."""
    if dataclasses.is_dataclass(declared_value) and not isinstance(declared_value, type):
        return type(declared_value)(**rendered)
    if isinstance(declared_value, list):
        return [_rebuild(d, r) for d, r in zip(declared_value, rendered, strict=True)]
    return rendered


def with_secret_files(container: Container, spec: ServiceSpec, secret: Callable[[str], str | None]) -> Container:
    """A secret volume (files that are secrets of passwords.yml) is no volume where it runs: its
    files are among the container's rendered files, copied by mortar-start into the folder at
    each start (owner as the catalogue's directory entry says, mode 0600). So every host and
    every replica holds the same keys, and a changed secret restarts the container."""
    entries = [e for e in container.volumes if e.split(":")[0] in spec.secret_volumes]
    if not entries:
        return container
    owners = {d.path: d.owner for d in container.directories if d.owner}
    files = list(container.files)
    for entry in entries:
        volume, target = entry.split(":")[:2]
        owner = owners.get(target) or container.user or "root"
        for name, password in sorted(spec.secret_volumes[volume].items()):
            value = secret(password)
            if value is None:  # a site certificate the site does not use (no TLS)
                continue
            files.append(File(dest=f"{target}/{name}", template="", owner=owner, mode="0600", merge="replace",
                              content=value, source=f"{volume}.{name}"))
    return dataclasses.replace(container, files=files, volumes=[v for v in container.volumes if v not in entries])


def with_health_interval(container: Container, site: Site) -> Container:
    """A healthcheck without an interval of its own probes at the site's healthcheck_interval."""
    check = container.healthcheck
    if check is None or check.interval is not None:
        return container
    return dataclasses.replace(container, healthcheck=dataclasses.replace(
        check, interval=int(site.globals["healthcheck_interval"])))


def with_site_ca(container: Container, site: Site) -> Container:
    """On a site that speaks TLS, every container holds the site CA and its HTTP clients
    (python-requests: keystoneauth, so every OpenStack client) check certificates against it."""
    if not site.ca_pem:
        return container
    ca = File(dest=CA_DEST, template="", owner="root", mode="0644", merge="replace", content=site.ca_pem,
              source="site-ca.crt")
    return dataclasses.replace(container, files=[*container.files, ca],
                               environment={"REQUESTS_CA_BUNDLE": CA_DEST, **container.environment})


def with_script(container: Container) -> Container:
    """A container with a script runs it from a file mortar-start places, never from argv."""
    if not container.script:
        return container
    script = File(dest=SCRIPT_DEST, template="", owner=container.user, mode="0500", merge="replace",
                  content=container.script)
    files = [f for f in container.files if f.dest != SCRIPT_DEST] + [script]
    return dataclasses.replace(container, files=files, command=["/bin/sh", "-e", SCRIPT_DEST])


def secrets_in(text: str, secrets: list[str]) -> list[str]:
    # As written, URL-quoted (in a URL) or JSON-escaped (a multi-line key in a host's state).
    return [s for s in secrets if s in text or urllib.parse.quote(s, safe="") in text or json.dumps(s)[1:-1] in text]


def site_secrets(site: Site, more: list[str] | None = None) -> list[str]:
    values = {v for v in [*site.secrets.values(), *(more or [])] if len(v) >= 6}
    return sorted(values, key=len, reverse=True)


def compute_desired(site: Site, inventory: Inventory, running: Mapping[str, str] | None = None,
                    topology: Topology | None = None) -> DesiredState:
    """RUNNING: the series each host was last deployed with (templates see the oldest through
    oldest_release_of); a host missing there counts as running the site's series. TOPOLOGY:
    addresses and host names (default: each host's own, as on hosts)."""
    planner = Planner(site, inventory, running, topology)
    hosts: dict[str, HostState] = {}

    def state(host: str) -> HostState:
        if host not in hosts:
            hosts[host] = HostState(host, planner.address(host), site.site_id, order=planner.order,
                                    health_timeout=float(site.globals["healthcheck_timeout"]),
                                    registry_auth=site.registry_auth(), names=planner.topology.names())
        return hosts[host]

    def service_state(host: str, spec: ServiceSpec) -> ServiceState:
        return state(host).services.setdefault(spec.name, ServiceState(spec.name))

    rendered: dict[tuple[str, str, str], Container] = {}
    for name in planner.order:
        spec = site.services[name]
        for cname, decl in spec.containers.items():
            for host in planner.hosts_of(spec, cname):
                container = planner.render_container(spec, decl, host, planner.variables(spec, host, cname))
                rendered[(name, cname, host)] = container
                service_state(host, spec).containers.append(container)
    # The hosts of the load balancer may be given the virtual addresses: prechecks look at them.
    virtual = [a for a in (planner.topology.vip, planner.topology.external_vip) if a]
    for name in planner.order:
        balancer = site.services[name].provides.get("loadbalancer")
        if balancer is not None and virtual:
            for host in planner.hosts_of(site.services[name], balancer.container):
                state(host).virtual_addresses = list(virtual)
    registrations: dict[str, Registration] = {}
    checks: list[VerifyCheck] = []
    for name in planner.order:
        spec = site.services[name]
        # Provision jobs: a provider makes what this service asked for (its databases, its users).
        for capability, providers in planner.bindings[name].items():
            for provider_name in providers:
                provider = site.services[provider_name]
                provides = provider.provides[capability]
                if provides.provision is None or provider_name == name:
                    continue
                first = next(iter(spec.containers), "")
                entries = planner.request_of(spec, capability, planner.hosts_of(spec, first)[0] if first else "",
                                             provider, first)
                if not entries:
                    continue
                provider_host = planner.hosts_of(provider, provides.container)[0]
                variables = {**planner.variables(provider, provider_host, provides.container), "requests": entries,
                             "consumer": name}
                base = planner.render_container(provider, provider.containers[provides.container], provider_host,
                                                planner.variables(provider, provider_host, provides.container))
                job = planner.job(provider, provides.provision.job, base, variables, provider_host, provider,
                                  capability, name, keep_volumes=False)
                job.data = [f"{provider_host}/{provides.data}"] if provides.data else []
                service_state(provider_host, spec).jobs.append(job)
        # The service's own jobs, each beside the container it names; its containers and jobs
        # rely on the data of the providers it needs (a new one starts them again).
        data = _data_of(planner, spec)
        for (owner, cname, _), container in rendered.items():
            if owner == name:
                container.data = list(data)
                container.drain = DRAIN if planner.spread(spec, cname) else 0
        for job_decl in spec.jobs:
            container_hosts = planner.hosts_of(spec, job_decl.container)
            for host in container_hosts if job_decl.every_host else container_hosts[:1]:
                base = rendered[(name, job_decl.container, host)]
                job = planner.job(spec, job_decl, base, planner.variables(spec, host, job_decl.container), host,
                                  spec, job_decl.name, name)
                mounts = [f"{host}/{entry.split(':', 1)[0]}" for entry in base.volumes]
                job.data = sorted(set(mounts) | set(data))
                service_state(host, spec).jobs.append(job)
        if spec.registration is not None:
            reg = spec.registration
            host = planner.hosts_of(spec, reg.container)[0]
            variables = planner.variables(spec, host, reg.container)
            registrations[name] = Registration(
                service=reg.name, type=reg.type, description=reg.description,
                region=str(site.globals["region_name"]),
                endpoints=planner.render(spec, reg.endpoints, variables, "registration.endpoints"),
                users=planner.render(spec, reg.users, variables, "registration.users"))
        for check in spec.verify:
            if not set(check.when) <= {c for s in planner.order for c in site.services[s].provides}:
                continue
            host = planner.hosts_of(spec, check.container)[0]
            params = planner.render(spec, check.params, planner.variables(spec, host, check.container),
                                    f"verify.{check.name}")
            checks.append(VerifyCheck(name, check.name, check.check, params))
    # What each job's inputs describe: its own service's hosts and those of what it consumes.
    for name in planner.order:
        spec = site.services[name]
        described = {h for cname in spec.containers for h in planner.hosts_of(spec, cname)}
        for capability, providers in planner.bindings[name].items():
            for provider_name in providers:
                provider = site.services[provider_name]
                described |= set(planner.hosts_of(provider, provider.provides[capability].container))
        for host_state in hosts.values():
            for job in host_state.services.get(name, ServiceState(name)).jobs:
                job.hosts = sorted(described)
    # A host gets only the service volumes its own containers and jobs mount.
    for host_state in hosts.values():
        for name, svc in host_state.services.items():
            mounted = {entry.split(":", 1)[0] for c in [*svc.containers, *(j.spec for j in svc.jobs if j.spec)]
                       for entry in c.volumes}
            svc.volumes = [v for v in site.services[name].volumes if v in mounted]
    _volume_options(site, hosts, planner.topology.spreads_clients)
    secrets = site_secrets(site, [k for each in planner.host_secrets.values() for k in each.values()])
    candidates = secrets + ([site.registry_auth()["password"]] if site.registry_auth() else [])
    for host_state in hosts.values():
        host_state.secrets = secrets_in(json.dumps(dataclasses.asdict(host_state)), candidates)
    provided = {c for s in planner.order for c in site.services[s].provides}
    identity: dict[str, str] = {}
    if "identity" in provided:
        view = next(v for s in planner.order
                    if "identity" in site.services[s].provides
                    for v in [planner.view(site.services[s], "", "", "identity", [s])] if v)
        identity = {k: str(view[k]) for k in ("auth_url", "admin_username", "admin_password", "admin_project",
                                               "region")}
        if site.ca_file is not None:
            identity["cacert"] = str(site.ca_file)
    return DesiredState(site.site_id, planner.order, planner.depends, hosts, registrations, identity, secrets,
                        checks, provided)


def _volume_options(site: Site, hosts: dict[str, HostState], cluster: bool) -> None:
    """Each host's volumes made with globals.yml's volume_options; a shared volume on several
    hosts must have them (else each host would keep data of its own). On a cluster (CLUSTER)
    volumes are claims: its storage class decides."""
    globals_file = str(site.config_dir / "globals.yml")
    options: dict[str, dict[str, str]] = site.globals.get("volume_options") or {}
    known = sorted({v for name in site.enabled for v in site.services[name].volumes})
    for volume in options:
        if volume not in known:
            close = difflib.get_close_matches(str(volume), known, n=1)
            raise MortarError(f"no enabled service has a volume named '{volume}'", file=globals_file,
                              key=f"volume_options.{volume}",
                              fix=f"did you mean '{close[0]}'?" if close else f"volumes: {', '.join(known)}")
    for name in sorted(site.enabled) if not cluster else []:
        for volume in site.services[name].shared_volumes:
            holders = [h for h, state in hosts.items()
                       if volume in state.services.get(name, ServiceState(name)).volumes]
            if len(holders) > 1 and volume not in options:
                raise MortarError(
                    f"{volume} holds data every host of {name} must see alike, and {name} runs on {len(holders)} "
                    f"hosts ({', '.join(holders)})", file=globals_file, key="volume_options",
                    fix=f"put it on a filesystem every one of them mounts, e.g. volume_options: {{{volume}: {{type: "
                        f"none, o: bind, device: /srv/shared/{volume}}}}} (or type: nfs), or keep {name} on one host "
                        "(a group named after its container in the inventory)")
    for state in hosts.values():
        state.volume_options = {v: dict(options[v]) for svc in state.services.values() for v in svc.volumes
                                if v in options}


def _data_of(planner: Planner, spec: ServiceSpec) -> list[str]:
    """The data a service's jobs initialise elsewhere: each required provider's data volume."""
    keys = []
    for capability, providers in planner.bindings[spec.name].items():
        if spec.consumes[capability].optional:
            continue
        for provider_name in providers:
            provider = planner.services[provider_name]
            provides = provider.provides[capability]
            if provides.data and provider_name != spec.name:
                keys.append(f"{planner.hosts_of(provider, provides.container)[0]}/{provides.data}")
    return keys
