"""The Ansible executor: mortar's host code, run on every host by ansible-runner.

Each call is one `ansible-playbook` run of the collection's `site.yml` with the steps it
needs; every step is one task across all hosts. The host code travels as a zip of
mortar's pure-Python modules (copied once, by content hash) and each host's desired state
as a JSON file (0600). Ansible's own output goes to a log file; the operator sees one
line per host per step.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mortar
from mortar.deploy.converge import StepReport
from mortar.deploy.executors import APPLY_PHASES, HostFailure, StepResult
from mortar.deploy.model import write_private
from mortar.deploy.prechecks import Check
from mortar.errors import MortarError

if TYPE_CHECKING:
    from mortar.deploy.runner import Deployment

COLLECTIONS = Path(__file__).resolve().parent.parent / "ansible"
PLAYBOOKS = COLLECTIONS / "ansible_collections" / "mortar" / "deploy" / "playbooks"
ANSIBLE_LOG_DIR = Path("/var/log/mortar/ansible")
# The modules a host needs: standard library and the docker SDK only.
HOST_MODULES = ["__init__.py", "errors.py", "deploy/__init__.py", "deploy/model.py", "deploy/converge.py",
                "deploy/prechecks.py", "engine/__init__.py", "engine/setup.py"]


def host_library(directory: Path) -> Path:
    """The zip of mortar's host code, named by its content so hosts copy it only when it changes."""
    root = Path(mortar.__file__).resolve().parent
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in HOST_MODULES:
            info = zipfile.ZipInfo(f"mortar/{name}", date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, (root / name).read_bytes())
    data = buffer.getvalue()
    path = directory / f"mortar-host-{hashlib.sha256(data).hexdigest()[:16]}.zip"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def ansible_env(forks: int, fact_cache: Path) -> dict[str, str]:
    return {
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_FORKS": str(forks),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_GATHERING": "smart",
        "ANSIBLE_FACT_CACHING": "jsonfile",
        "ANSIBLE_FACT_CACHING_CONNECTION": str(fact_cache),
        "ANSIBLE_FACT_CACHING_TIMEOUT": "86400",
        "ANSIBLE_SSH_ARGS": "-C -o ControlMaster=auto -o ControlPersist=300s",
        "ANSIBLE_TIMEOUT": "20",
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_NOCOLOR": "True",
        # ansible-playbook from mortar's own environment, whatever else is on PATH
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
    }


class AnsibleRun:
    """One ansible-playbook run: collects per-host results, echoes one line per host per step."""

    def __init__(self, steps: list[str], echo: Callable[[str], None] | None) -> None:
        self.steps = steps
        self.echo = echo
        self.result = StepResult()
        self.checks: dict[str, list[Check]] = {}
        self.changed_tasks: dict[str, list[str]] = {}
        self.lock = threading.Lock()

    def handle(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        if kind not in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
            return True
        data = event.get("event_data", {})
        host, task, res = data.get("host", "?"), data.get("task", "?"), data.get("res", {}) or {}
        with self.lock:
            self.result.tasks += 1
            if kind == "runner_on_ok":
                if "report" in res:
                    report = StepReport.from_dict(res["report"])
                    report.host = host
                    self.result.reports.append(report)
                    if self.echo and report.step in APPLY_PHASES and report.changed:
                        self.echo(report.line())
                if "checks" in res:
                    self.checks[host] = [Check(**c) for c in res["checks"]]
                if res.get("changed"):
                    self.changed_tasks.setdefault(host, []).append(task)
                return True
            if kind == "runner_on_unreachable":
                message = f"unreachable: {str(res.get('msg', '')).strip()}"
            else:
                message = str(res.get("msg") or res.get("stderr") or res.get("module_stderr") or "failed").strip()
                if res.get("censored"):
                    message = f"task '{task}' failed (output hidden: it carries secrets)"
            self.result.failures.append(HostFailure(host, task, message))
            if self.echo:
                self.echo(f"[{host}] {task:10} FAILED: {message.splitlines()[0] if message else ''}")
        return True


class AnsibleExecutor:
    """Runs every step on the inventory's hosts through Ansible (SSH, become, forks)."""

    name = "ansible"

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.tasks = 0
        self.private_dir = deployment.controller_dir / "ansible"
        self.states_dir = deployment.controller_dir / "hosts"
        self.synced = False
        self.runs = 0

    # ---- plumbing -----------------------------------------------------------------------
    def _write_states(self) -> None:
        d = self.deployment
        self.states_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(d.state_dir, 0o700)
        os.chmod(self.states_dir, 0o700)
        for host, state in d.desired.hosts.items():
            data = {"host": asdict(state), "secrets": d.desired.secrets, "timeout": d.timeout,
                    "order": d.desired.order}
            write_private(self.states_dir / f"{host}.json", json.dumps(data, sort_keys=True))

    def run(self, playbook: str, hosts: list[str], steps: list[str], extravars: dict[str, Any] | None = None,
            echo: Callable[[str], None] | None = None) -> AnsibleRun:
        import ansible_runner

        d = self.deployment
        lib = host_library(d.state_dir / "lib")
        if playbook == "site.yml" and not self.synced:
            self._write_states()
            steps = ["sync", *steps]
            self.synced = True
        self.private_dir.mkdir(parents=True, exist_ok=True)
        ANSIBLE_LOG_DIR.mkdir(parents=True, exist_ok=True)
        collector = AnsibleRun(steps, echo)
        variables = {"mortar_steps": steps, "mortar_lib": str(lib), "mortar_states": str(self.states_dir),
                     "mortar_services": [], "mortar_force_jobs": [], **(extravars or {})}
        self.runs += 1
        ident = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{self.runs}-{'-'.join(steps)[:40]}"
        runner = ansible_runner.run(
            private_data_dir=str(self.private_dir), playbook=str(PLAYBOOKS / playbook),
            inventory=str(Path(d.inventory.path).resolve()), limit=",".join(hosts), extravars=variables,
            forks=max(1, min(len(hosts), 50)), envvars=ansible_env(max(1, min(len(hosts), 50)),
                                                                   self.private_dir / "facts"),
            quiet=True, event_handler=collector.handle,
            artifact_dir=str(ANSIBLE_LOG_DIR), ident=ident, rotate_artifacts=50,
            suppress_env_files=True)
        self.tasks += collector.result.tasks
        if runner.rc != 0 and not collector.result.failures:
            log = ANSIBLE_LOG_DIR / ident / "stdout"
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.exists() else ""
            raise MortarError(f"ansible-playbook {playbook} failed (exit {runner.rc}):\n{tail}",
                              fix=f"full log: {log}")
        return collector

    # ---- the executor interface ---------------------------------------------------------------
    def plan(self, hosts: list[str]) -> StepResult:
        return self.run("site.yml", hosts, ["plan"]).result

    def prechecks(self, hosts: list[str]) -> dict[str, list[Check]]:
        collector = self.run("site.yml", hosts, ["prechecks"])
        checks = dict(collector.checks)
        for failure in collector.result.failures:
            checks[failure.host] = [Check(False, f"{failure.host}: {failure.message}",
                                          "check SSH access (ansible_host, ansible_user, key) and run "
                                          "`mortar bootstrap-servers`")]
        return {host: checks.get(host, []) for host in hosts}

    def prepare(self, hosts: list[str]) -> StepResult:
        return self.run("site.yml", hosts, ["prepare"]).result

    def apply(self, hosts: list[str], services: list[str], force_jobs: list[str],
              echo: Callable[[str], None]) -> StepResult:
        return self.run("site.yml", hosts, list(APPLY_PHASES),
                        {"mortar_services": services, "mortar_force_jobs": force_jobs}, echo).result

    def pull(self, hosts: list[str]) -> StepResult:
        return self.run("site.yml", hosts, ["pull"]).result

    def stop(self, hosts: list[str]) -> StepResult:
        return self.run("site.yml", hosts, ["stop"]).result

    def destroy(self, hosts: list[str]) -> StepResult:
        return self.run("site.yml", hosts, ["destroy"]).result

    def bootstrap(self, hosts: list[str], insecure_registries: list[str], echo: Callable[[str], None]) -> StepResult:
        collector = self.run("bootstrap.yml", hosts, ["bootstrap"], {
            "mortar_insecure_registries": insecure_registries, "mortar_controller_epoch": int(time.time())})
        result = collector.result
        failed = {f.host for f in result.failures}
        for host in hosts:
            if host not in failed:
                changed = collector.changed_tasks.get(host, [])
                echo(f"[{host}] bootstrap  " + (f"changed: {'; '.join(changed)}" if changed else "ok (no change)"))
        return result
