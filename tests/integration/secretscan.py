"""Looking for secrets where they really go: the process table, containers (their definition
and logs), job logs, Ansible output and every world-readable file. Each scan reports where a
secret was seen (never the secret itself); tests/integration/test_secretscan.py shows each
one catches a planted leak."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SKIP_DIRS = ("/proc", "/sys", "/dev", "/usr", "/var/lib/docker/overlay2", "/var/lib/docker/image",
             "/var/cache", "/var/lib/apt", "/var/lib/dpkg")
MAX_FILE = 4 * 1024 * 1024


@dataclass
class Leak:
    where: str
    secret: str  # its first characters only

    def __str__(self) -> str:
        return f"{self.where} holds {self.secret}…"


@dataclass
class Scanner:
    secrets: list[str]
    leaks: list[Leak] = field(default_factory=list)

    @classmethod
    def of_site(cls, passwords_file: Path) -> Scanner:
        import yaml

        values = yaml.safe_load(passwords_file.read_text()) or {}
        return cls(sorted({str(v) for v in values.values() if isinstance(v, str) and len(v) >= 8}))

    def text(self, where: str, text: str | bytes) -> list[Leak]:
        data = text.decode(errors="replace") if isinstance(text, bytes) else text
        found = [Leak(where, s[:4]) for s in self.secrets if s in data]
        self.leaks += found
        return found

    def processes(self, cmdlines: Iterable[str]) -> list[Leak]:
        found: list[Leak] = []
        for line in cmdlines:
            found += self.text(f"process table: {line[:80]}", line)
        return found

    def containers(self, docker, label: str) -> list[Leak]:
        """Every container with LABEL: its engine definition (what `docker inspect` shows) and its log."""
        found: list[Leak] = []
        for container in docker.containers.list(all=True, filters={"label": label}):
            found += self.text(f"docker inspect {container.name}", json.dumps(container.attrs))
            try:
                found += self.text(f"docker logs {container.name}", container.logs(tail=5000))
            except Exception:  # noqa: BLE001 - a container without a log driver has no log to leak
                pass
        return found

    def files(self, roots: Iterable[Path], world_readable_only: bool = True) -> list[Leak]:
        found: list[Leak] = []
        for root in roots:
            for path in walk(root):
                try:
                    info = path.lstat()
                except OSError:
                    continue
                if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE:
                    continue
                if world_readable_only and not readable_by_others(path):
                    continue
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                found += self.text(f"file {path} (mode {stat.S_IMODE(info.st_mode):04o})", data)
        return found


def readable_by_others(path: Path) -> bool:
    """World-readable, and every directory on the way there world-searchable."""
    try:
        if not path.lstat().st_mode & stat.S_IROTH:
            return False
        for parent in path.parents:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
    except OSError:
        return False
    return True


def walk(root: Path) -> Iterable[Path]:
    if not root.exists():
        return
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not os.path.join(directory, d).startswith(SKIP_DIRS)]
        for name in files:
            yield Path(directory) / name


class ProcessSampler(threading.Thread):
    """Reads every process's command line on this machine every INTERVAL seconds while it runs."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.seen: set[str] = set()
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as f:
                        line = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    continue
                if line:
                    self.seen.add(line)
            self.samples += 1
            time.sleep(self.interval)

    def stop(self) -> set[str]:
        self._stop_event.set()
        self.join(timeout=5)
        return self.seen
