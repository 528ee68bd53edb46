"""The desired state of one host as plain data: what the planner computes and what the
converge code (locally, or inside the Ansible module on a remote host) applies.

Standard library only: this module travels to remote hosts, where only python3 and the
docker SDK are installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CONFIG_MOUNT = "/var/lib/mortar/config"
LABEL_PREFIX = "org.mortar."


@dataclass
class FileSpec:
    name: str  # file name inside the container's config directory
    dest: str
    content: str
    owner: str
    mode: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()


@dataclass
class ContainerSpec:
    name: str
    service: str
    image: str
    command: list[str]
    user: str
    files: list[FileSpec] = field(default_factory=list)
    directories: list[dict] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    healthcheck: dict[str, Any] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    stop_timeout: int = 10

    def start_spec(self) -> dict[str, Any]:
        """The spec mortar-start reads inside the container."""
        return {"command": self.command, "user": self.user, "environment": self.environment,
                "directories": self.directories,
                "files": [{"source": f.name, "dest": f.dest, "owner": f.owner, "mode": f.mode} for f in self.files]}

    def definition(self) -> dict[str, Any]:
        """Everything that decides the container, file contents as digests (no secrets)."""
        data = asdict(self)
        data["files"] = {f.name: {"dest": f.dest, "owner": f.owner, "mode": f.mode, "sha256": f.digest}
                         for f in self.files}
        data["environment"] = {k: hashlib.sha256(v.encode()).hexdigest()[:12] for k, v in self.environment.items()}
        return data

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.definition(), sort_keys=True).encode()).hexdigest()

    def rendered_files(self) -> dict[str, str]:
        files = {f.name: f.content for f in self.files}
        files["spec.json"] = json.dumps(self.start_spec(), indent=1, sort_keys=True) + "\n"
        return files


@dataclass
class JobSpec:
    name: str  # "<service>.<job>"
    service: str
    phase: str
    run: str
    container: ContainerSpec  # image, files, volumes and the job's command

    @property
    def job_hash(self) -> str:
        return self.container.config_hash


@dataclass
class ServiceState:
    name: str
    volumes: list[str] = field(default_factory=list)
    containers: list[ContainerSpec] = field(default_factory=list)
    jobs: list[JobSpec] = field(default_factory=list)


@dataclass
class HostState:
    host: str
    address: str
    site: str = ""  # which deployment owns the containers (its config directory)
    services: dict[str, ServiceState] = field(default_factory=dict)

    def containers(self) -> list[ContainerSpec]:
        return [c for s in self.services.values() for c in s.containers]

    def images(self) -> list[str]:
        """Every image this host runs, for its containers and its jobs, sorted."""
        return sorted({c.image for c in self.containers()} |
                      {j.container.image for s in self.services.values() for j in s.jobs})


def host_state_from_dict(data: dict[str, Any]) -> HostState:
    def container(c: dict[str, Any]) -> ContainerSpec:
        return ContainerSpec(**{**c, "files": [FileSpec(**f) for f in c["files"]]})

    services = {}
    for name, s in data["services"].items():
        services[name] = ServiceState(
            name=name, volumes=s["volumes"], containers=[container(c) for c in s["containers"]],
            jobs=[JobSpec(**{**j, "container": container(j["container"])}) for j in s["jobs"]])
    return HostState(host=data["host"], address=data["address"], site=data.get("site", ""), services=services)


URL_CREDENTIALS = re.compile(r"(://[^:/\s@]+:)[^@\s]+(@)")
SECRET_SETTING = re.compile(r"^([-+ ]?\s*[\w.-]*(?:password|secret|passwd)[\w.-]*\s*[=:]\s*)\S.*$",
                            re.IGNORECASE | re.MULTILINE)


def redact(text: str, secrets: list[str]) -> str:
    """Mask known secrets (as written and URL-encoded), credentials inside URLs, and the
    value of any *password*/*secret* setting: an old value in a running file is masked too."""
    for secret in secrets:
        for form in {secret, urllib.parse.quote(secret), urllib.parse.quote(secret, safe="")}:
            text = text.replace(form, "********")
    text = URL_CREDENTIALS.sub(r"\1********\2", text)
    return SECRET_SETTING.sub(r"\1********", text)


def write_private(path: Path, text: str) -> None:
    """Replace PATH atomically with TEXT, readable by root only (0600) from the first byte."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_config_dir(directory: Path, files: dict[str, str]) -> None:
    """Replace a container's rendered files (root only: they hold secrets)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    wanted = set(files)
    for existing in directory.iterdir():
        if existing.name not in wanted and existing.is_file():
            existing.unlink()
    for name, content in files.items():
        path = directory / name
        if path.exists() and path.read_text() == content:
            continue
        write_private(path, content)
