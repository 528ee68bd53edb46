"""Desired state: what each host should run, computed from the site and the catalogue.

Pure: renders templates and builds plain dataclasses; nothing here touches a host. The
HostState models (mortar.deploy.model) are what the local executor and the Ansible module
converge.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jinja2

from mortar.catalogue.loader import ContainerDecl, FileDecl, ServiceSpec, service_order
from mortar.deploy.model import (  # noqa: F401 - re-exported: the models are part of this module's API
    CONFIG_MOUNT,
    LABEL_PREFIX,
    ContainerSpec,
    FileSpec,
    HostState,
    JobSpec,
    ServiceState,
    host_state_from_dict,
    redact,
    write_config_dir,
)
from mortar.errors import MortarError
from mortar.site.config import Site
from mortar.site.inventory import Inventory
from mortar.site.overrides import apply_overrides, override_sources


@dataclass
class Registration:
    service: str
    type: str
    description: str
    endpoints: dict[str, str]
    users: list[dict[str, Any]]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


@dataclass
class DesiredState:
    order: list[str]
    hosts: dict[str, HostState]
    registrations: dict[str, Registration]
    secrets: list[str]
    admin: dict[str, str]

    def hosts_running(self, service: str) -> list[str]:
        return [h for h, state in self.hosts.items() if service in state.services]


class Context:
    """What templates see: globals, passwords, this host, and where every service runs."""

    def __init__(self, site: Site, inventory: Inventory) -> None:
        self.site = site
        self.inventory = inventory

    def group_of(self, spec: ServiceSpec, decl: ContainerDecl) -> str:
        # An inventory group named after the container or the service wins over the default.
        for candidate in (decl.name.replace("_", "-"), decl.name, spec.name):
            if self.inventory.has_group(candidate) and self.inventory.hosts_in(candidate):
                return candidate
        return decl.group

    def host_address(self, host: str) -> str:
        return self.inventory.hosts[host].vars.get("api_address") or str(self.site.globals["api_address"])

    def hosts_of(self, service: str) -> list[str]:
        spec = self.site.services[service]
        hosts: list[str] = []
        for decl in spec.containers.values():
            for host in self.inventory.hosts_in(self.group_of(spec, decl)):
                if host.name not in hosts:
                    hosts.append(host.name)
        return hosts

    def hosts_of_container(self, service: str, container: str) -> list[str]:
        spec = self.site.services[service]
        return [h.name for h in self.inventory.hosts_in(self.group_of(spec, spec.containers[container]))]

    def address_of(self, service: str) -> str:
        hosts = self.hosts_of(service)
        if not hosts:
            raise MortarError(f"no host runs {service}", file=self.inventory.path,
                              fix=f"add a host to the group {self.site.services[service].group}")
        return self.host_address(hosts[0])

    def variables(self, host: str, service: str) -> dict[str, Any]:
        values: dict[str, Any] = dict(self.site.globals)
        values.update(self.site.passwords)
        values.update(
            host=host, api_address=self.host_address(host), service=service, enabled=sorted(self.site.enabled),
            address_of=self.address_of, hosts_of=self.hosts_of, host_address=self.host_address,
            hosts_of_container=self.hosts_of_container,
            keystone_url=f"http://{self.address_of('keystone')}:5000" if "keystone" in self.site.enabled else "",
        )
        return values


def _env(spec: ServiceSpec) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(spec.template_dir)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["rabbitmq_password_hash"] = rabbitmq_password_hash
    return env


def rabbitmq_password_hash(password: str) -> str:
    """RabbitMQ's SHA-256 password hash with a salt derived from the password itself, so
    the rendered definitions stay the same from one deploy to the next."""
    import base64

    salt = hashlib.sha256(b"mortar-rabbitmq-salt" + password.encode()).digest()[:4]
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def _render_string(env: jinja2.Environment, text: Any, variables: dict[str, Any], where: str) -> Any:
    if isinstance(text, str):
        try:
            return env.from_string(text).render(variables)
        except jinja2.TemplateError as exc:
            raise MortarError(f"cannot render: {exc}", key=where) from exc
    if isinstance(text, list):
        return [_render_string(env, t, variables, where) for t in text]
    if isinstance(text, dict):
        return {k: _render_string(env, v, variables, where) for k, v in text.items()}
    return text


def _render_file(env: jinja2.Environment, spec: ServiceSpec, decl: FileDecl, variables: dict[str, Any],
                 host: str, site: Site) -> FileSpec:
    try:
        content = env.get_template(decl.template).render(variables)
    except jinja2.TemplateError as exc:
        raise MortarError(f"cannot render: {exc}", file=str(spec.template_dir / decl.template)) from exc
    name = Path(decl.dest).name
    sources = override_sources(site.config_dir / "config", spec.name, name, host, main=decl.main)
    content = apply_overrides(content, decl.merge, sources)
    return FileSpec(name=name, dest=decl.dest, content=content, owner=decl.owner, mode=decl.mode)


def _command(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _container(env, spec: ServiceSpec, decl: ContainerDecl, variables: dict[str, Any], host: str,
               site: Site) -> ContainerSpec:
    where = f"{spec.name}.containers.{decl.name}"
    return ContainerSpec(
        name=decl.name, service=spec.name, image=site.image_ref(decl.image),
        command=_command(_render_string(env, decl.command, variables, where)), user=decl.user,
        files=[_render_file(env, spec, f, variables, host, site) for f in decl.files],
        directories=_render_string(env, decl.directories, variables, where),
        volumes=_render_string(env, decl.volumes, variables, where),
        environment=_render_string(env, decl.environment, variables, where),
        healthcheck=_render_string(env, decl.healthcheck, variables, where),
        ports=[int(_render_string(env, p, variables, where)) for p in decl.ports], cap_add=decl.cap_add,
        tmpfs=decl.tmpfs, stop_timeout=decl.stop_timeout)


DATABASE_SQL = """\
{% for db in databases %}
CREATE DATABASE IF NOT EXISTS `{{ db.name }}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;
CREATE USER IF NOT EXISTS '{{ db.user }}'@'%' IDENTIFIED BY '{{ db.password }}';
ALTER USER '{{ db.user }}'@'%' IDENTIFIED BY '{{ db.password }}';
GRANT ALL PRIVILEGES ON `{{ db.name }}`.* TO '{{ db.user }}'@'%';
{% endfor %}
"""


def _database_job(spec: ServiceSpec, site: Site, ctx: Context) -> JobSpec:
    """Databases a service declares are created by one generic job in the mariadb image."""
    databases = [{"name": d["name"], "user": d["user"], "password": site.passwords[d["password"]]}
                 for d in spec.databases]
    sql = jinja2.Template(DATABASE_SQL, trim_blocks=True).render(databases=databases)
    client = (f"[client]\nhost={ctx.address_of('mariadb')}\nuser=root\n"
              f"password={site.passwords['database_password']}\n")
    container = ContainerSpec(
        name=f"{spec.name}_database", service=spec.name, image=site.image_ref("mariadb-server"),
        command=["sh", "-c", "mariadb --defaults-extra-file=/etc/mortar-job/client.cnf < /etc/mortar-job/db.sql"],
        user="root",
        files=[FileSpec("client.cnf", "/etc/mortar-job/client.cnf", client, "root", "0600"),
               FileSpec("db.sql", "/etc/mortar-job/db.sql", sql, "root", "0600")])
    return JobSpec(name=f"{spec.name}.database", service=spec.name, phase="before", run="on_change",
                   container=container)


def compute_desired(site: Site, inventory: Inventory) -> DesiredState:
    ctx = Context(site, inventory)
    order = service_order(site.services, site.enabled)
    hosts: dict[str, HostState] = {}
    registrations: dict[str, Registration] = {}
    for name in order:
        spec = site.services[name]
        env = _env(spec)
        for cname, decl in spec.containers.items():
            group = ctx.group_of(spec, decl)
            members = inventory.hosts_in(group)
            if not members:
                raise MortarError(f"group '{group}' is empty or missing, but {name} runs {cname} there",
                                  file=inventory.path, key=f"[{group}]",
                                  fix=f"add at least one host to [{group}] or set enable_{name}: false")
            for host in members:
                state = hosts.setdefault(host.name, HostState(host.name, ctx.host_address(host.name),
                                                              str(site.config_dir.resolve())))
                svc = state.services.setdefault(name, ServiceState(name, volumes=list(spec.volumes)))
                svc.containers.append(_container(env, spec, decl, ctx.variables(host.name, name), host.name, site))
        first_host = ctx.hosts_of(name)[0]
        variables = ctx.variables(first_host, name)
        jobs: list[JobSpec] = [_database_job(spec, site, ctx)] if spec.databases else []
        for job in spec.jobs:
            base = next(c for c in hosts[first_host].services[name].containers if c.name == job.container)
            extra = [_render_file(env, spec, f, variables, first_host, site) for f in job.files]
            command = _command(_render_string(env, job.command, variables, f"{name}.jobs.{job.name}"))
            container = ContainerSpec(**{**asdict(base), "files": base.files + extra, "command": command,
                                         "user": job.user, "name": f"{name}_{job.name}", "healthcheck": {}})
            container.files = base.files + extra
            jobs.append(JobSpec(name=f"{name}.{job.name}", service=name, phase=job.phase, run=job.run,
                                container=container))
        # One-shot jobs run once per deployment, on the first host of the service.
        hosts[first_host].services[name].jobs = jobs
        # A host gets only the service volumes its own containers and jobs mount.
        for state in hosts.values():
            if name in state.services:
                svc = state.services[name]
                mounted = {entry.split(":", 1)[0] for c in [*svc.containers, *(j.container for j in svc.jobs)]
                           for entry in c.volumes}
                svc.volumes = [v for v in svc.volumes if v in mounted]
        if spec.registration:
            reg = _render_string(env, spec.registration, variables, f"{name}.registration")
            registrations[name] = Registration(
                service=reg.get("name", name), type=reg["type"], description=reg.get("description", ""),
                endpoints=reg.get("endpoints", {}),
                users=[{**u, "password": site.passwords[u["password"]]} for u in reg.get("users", [])])
    secrets = sorted({v for v in site.passwords.values() if len(v) >= 6}, key=len, reverse=True)
    admin = {"auth_url": f"http://{ctx.address_of('keystone')}:5000/v3" if "keystone" in site.enabled else "",
             "username": "admin", "password": site.passwords.get("keystone_admin_password", ""),
             "project_name": "admin", "region_name": str(site.globals["region_name"])}
    return DesiredState(order=order, hosts=hosts, registrations=registrations, secrets=secrets, admin=admin)
