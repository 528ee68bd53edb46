"""The Ansible executor: the agent's steps run on every host by ansible-runner.

Each call is one `ansible-playbook` run of a playbook written from the steps it needs, one
task per step across all hosts (`any_errors_fatal`: a host that fails a step stops every
later step, as the local executor does). The agent travels as a zip of the `mortar.agent`
package and everything it imports from mortar (found by reading its imports, copied once
by content hash); each host's desired state as a JSON file (0600). SSH host keys are
checked against the site's known_hosts. Ansible's own output goes to a log file; the
operator sees one line per host per step.
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
import stat
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import mortar
from mortar.agent import wire
from mortar.agent.wire import Failure, StepReport, StepRequest
from mortar.deploy.executors import Progress, StepResult
from mortar.errors import MortarError
from mortar.files import inside, private_directory, write_private
from mortar.paths import log_root

if TYPE_CHECKING:
    from mortar.deploy.orchestrator import Deployment

COLLECTIONS = Path(__file__).resolve().parents[2] / "ansible"
PLAYBOOKS = COLLECTIONS / "ansible_collections" / "mortar" / "deploy" / "playbooks"
MODULE = "mortar.deploy.host"
REMOTE_DIR = "/var/lib/mortar"
REMOTE_LOG_DIR = "/var/log/mortar/deploy"


def ansible_log_dir() -> Path:
    return log_root() / "ansible"


def _imports(path: Path) -> set[str]:
    """The mortar modules a source file imports (at any depth: lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "mortar"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mortar":
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def agent_files(root: Path | None = None) -> list[str]:
    """Paths (relative to the mortar package) of the agent and all it imports from mortar."""
    root = root or Path(mortar.__file__).resolve().parent
    todo = [f"mortar.agent.{p.stem}" for p in sorted((root / "agent").glob("*.py"))]
    seen: set[str] = set()
    files: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        relative = Path(*module.split(".")[1:])
        # `mortar` itself is only its __init__.py (relative is then the package root, unnamed)
        candidates = [relative.with_suffix(".py")] if relative.name else []
        for candidate in [*candidates, relative / "__init__.py"]:
            if (root / candidate).is_file():
                files.add(str(candidate))
                todo += sorted(_imports(root / candidate))
        # every package on the way in must be importable too
        for depth in range(1, len(module.split("."))):
            package = Path(*module.split(".")[1:depth]) / "__init__.py"
            if (root / package).is_file() and str(package) not in files:
                files.add(str(package))
                todo.append(".".join(module.split(".")[:depth]))
    return sorted(files)


def agent_library(directory: Path) -> Path:
    """The zip of the agent, named by its content so hosts copy it only when it changes."""
    root = Path(mortar.__file__).resolve().parent
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in agent_files(root):
            info = zipfile.ZipInfo(f"mortar/{name}", date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, (root / name).read_bytes())
    data = buffer.getvalue()
    path = directory / f"mortar-agent-{hashlib.sha256(data).hexdigest()[:16]}.zip"
    if not path.exists():
        private_directory(directory)
        write_private(path, data, mode=0o644)
    return path


# A Unix socket's path holds at most 107 bytes. SSH names a master connection's socket
# DIR/<10-character hash>, and first binds it with a 17-character random suffix.
SOCKET_PATH_MAX = 107
CONTROL_NAME = 1 + 10 + 17


def control_path_dir(private_dir: Path, temporary: Path = Path("/tmp")) -> Path:
    """Where SSH keeps the site's master connections: PRIVATE_DIR/cp, or, when that path is too
    long for a socket (a deep state directory), a short private folder named after it."""
    wanted = Path(os.path.realpath(private_dir)) / "cp"  # as Ansible hands it to SSH: absolute, resolved
    if len(os.fsencode(str(wanted))) + CONTROL_NAME <= SOCKET_PATH_MAX:
        return wanted
    short = temporary / f"mortar-ssh-{hashlib.sha256(os.fsencode(str(wanted))).hexdigest()[:16]}"
    try:
        short.mkdir(mode=0o700)
    except FileExistsError:
        pass
    found = os.lstat(short)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid():
        raise MortarError(f"{short} (for SSH's connections, as {wanted} is too long for a socket) is not a "
                          "directory of this user", fix=f"remove {short}, or use a shorter state directory "
                                                        "(MORTAR_STATE_DIR)")
    os.chmod(short, 0o700)
    return short


def ansible_env(forks: int, private_dir: Path, known_hosts: Path, accept_new_keys: bool) -> dict[str, str]:
    """Ansible's settings for one site: its facts and SSH master connections live in the site's
    own private directory, its host keys in the site's known_hosts."""
    checking = "accept-new" if accept_new_keys else "yes"
    return {
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_FORKS": str(forks),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_GATHERING": "smart",
        "ANSIBLE_FACT_CACHING": "jsonfile",
        "ANSIBLE_FACT_CACHING_CONNECTION": str(private_dir / "facts"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_path_dir(private_dir)),
        "ANSIBLE_FACT_CACHING_TIMEOUT": "86400",
        "ANSIBLE_SSH_ARGS": (f"-C -o ControlMaster=auto -o ControlPersist=300s -o UserKnownHostsFile={known_hosts} "
                             f"-o StrictHostKeyChecking={checking} -o HashKnownHosts=no"),
        "ANSIBLE_TIMEOUT": "20",
        # A multiplexed SSH session that drops under load (ssh exits 255: "Data could not be sent
        # to remote host") is opened again instead of failing the host; the agent's steps converge,
        # so a step sent twice does no harm.
        "ANSIBLE_SSH_RETRIES": "2",
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_NOCOLOR": "True",
        # ansible-playbook from mortar's own environment, whatever else is on PATH
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
    }


def playbook(steps: list[str], sync: bool, stop_on_failure: bool) -> list[dict[str, Any]]:
    """The play for these steps: one task per step, each run on every host before the next."""
    args = {"lib": "{{ mortar_remote_lib }}", "host": "{{ inventory_hostname }}",
            "state": f"{REMOTE_DIR}/desired.json", "state_dir": REMOTE_DIR, "log_dir": REMOTE_LOG_DIR,
            "request": "{{ mortar_requests[inventory_hostname] }}"}
    tasks: list[dict[str, Any]] = []
    if sync:
        tasks += [
            {"name": "sync: mortar directories", "ansible.builtin.file": {"path": f"{REMOTE_DIR}/lib",
                                                                          "state": "directory", "mode": "0700"}},
            {"name": "sync: mortar agent", "ansible.builtin.copy": {"src": "{{ mortar_lib }}",
                                                                    "dest": "{{ mortar_remote_lib }}",
                                                                    "mode": "0644"}},
            {"name": "sync: desired state", "no_log": True,  # rendered config files hold secrets
             "ansible.builtin.copy": {"src": "{{ mortar_states }}/{{ inventory_hostname }}.json",
                                      "dest": f"{REMOTE_DIR}/desired.json", "mode": "0600"}},
        ]
    tasks += [{"name": step, MODULE: {**args, "step": step}} for step in steps]
    return [{"name": "mortar", "hosts": "all", "gather_facts": False, "any_errors_fatal": stop_on_failure,
             "vars": {"mortar_remote_lib": f"{REMOTE_DIR}/lib/{{{{ mortar_lib | basename }}}}"}, "tasks": tasks}]


def _unreachable_message(host: str, message: str, known_hosts: Path) -> tuple[str, str]:
    text = message.strip()
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "Host key for" in text and "has changed" in text:
        return (f"its SSH host key is not the one recorded in {known_hosts}: refusing to connect",
                f"if {host} was reinstalled, remove its key (`ssh-keygen -R ADDRESS -f {known_hosts}`) and run "
                "`mortar bootstrap-servers --accept-new-host-keys`; otherwise find out who answers at its address")
    if "Host key verification failed" in text or "No ED25519 host key is known" in text:
        return (f"no SSH host key of {host} is recorded in {known_hosts}",
                "run `mortar bootstrap-servers --accept-new-host-keys` once to record it")
    return (f"unreachable: {text.splitlines()[0] if text else 'no answer'}",
            "check SSH access (ansible_host, ansible_user, key), then run `mortar bootstrap-servers`")


class AnsibleRun:
    """One ansible-playbook run: collects each host's report per step, echoes one line each."""

    def __init__(self, progress: Progress | None, known_hosts: Path) -> None:
        self.progress = progress
        self.known_hosts = known_hosts
        self.result = StepResult()
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
            report: StepReport | None = None
            if isinstance(res.get("report"), dict):
                report = wire.decode(StepReport, res["report"], f"{host}: {task}")
                report.host = host
            elif kind == "runner_on_unreachable":
                message, fix = _unreachable_message(host, str(res.get("msg", "")), self.known_hosts)
                report = StepReport(host, task, failure=Failure(host, task, message, fix=fix, kind="unreachable"))
            elif kind == "runner_on_failed":
                message = str(res.get("msg") or res.get("stderr") or res.get("module_stderr") or "failed").strip()
                if res.get("censored"):
                    message = f"task '{task}' failed (output hidden: it carries secrets)"
                report = StepReport(host, task, failure=Failure(host, task, message[-2000:],
                                                                fix="see the Ansible log named below"))
            elif res.get("changed"):
                self.changed_tasks.setdefault(host, []).append(task)
            if report is None:
                return True
            self.result.reports.append(report)
            if self.progress and (report.changed or report.failure):
                self.progress(report.line())
        return True


class AnsibleExecutor:
    """Runs every step on the inventory's hosts through Ansible (SSH, become, forks)."""

    name = "ansible"
    # What this process last shipped to each host's desired.json: (controller dir, host) -> digest.
    # An upgrade runs the running series' jobs and the next series' through two executors of one
    # site; a host's file is what the last of them shipped, so each ships its own before it runs.
    shipped: ClassVar[dict[tuple[str, str], str]] = {}

    def __init__(self, deployment: Deployment, accept_new_host_keys: bool = False) -> None:
        self.deployment = deployment
        self.accept_new_host_keys = accept_new_host_keys
        self.tasks = 0
        self.private_dir = deployment.controller_dir / "ansible"
        self.states_dir = deployment.controller_dir / "hosts"
        self.runs = 0
        self.last_log: Path | None = None

    @property
    def known_hosts(self) -> Path:
        # Absolute: Ansible's ssh runs in another directory than a relative --config-dir names.
        return self.deployment.site.config_dir.absolute() / "known_hosts"

    def _write_states(self, hosts: list[str]) -> None:
        private_directory(self.states_dir)
        for host in hosts:
            path = inside(self.states_dir, f"{host}.json", "host name")
            write_private(path, wire.dumps(self.deployment.host_state(host)))

    def _run(self, play: Any, hosts: list[str], extravars: dict[str, Any], progress: Progress | None,
             label: str) -> AnsibleRun:
        import ansible_runner

        d = self.deployment
        private_directory(self.private_dir)
        logs = ansible_log_dir()
        logs.mkdir(parents=True, exist_ok=True)
        if not self.known_hosts.exists():
            write_private(self.known_hosts, "", mode=0o644)
        collector = AnsibleRun(progress, self.known_hosts)
        self.runs += 1
        ident = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{self.runs}-{label[:40]}"
        forks = max(1, min(len(hosts), 50))
        runner = ansible_runner.run(
            private_data_dir=str(self.private_dir), playbook=play, inventory=str(Path(d.inventory.path).resolve()),
            limit=",".join(hosts), extravars=extravars, forks=forks, quiet=True, event_handler=collector.handle,
            envvars=ansible_env(forks, self.private_dir, self.known_hosts, self.accept_new_host_keys),
            artifact_dir=str(logs), ident=ident, rotate_artifacts=50, suppress_env_files=True)
        self.tasks += collector.result.tasks
        self.last_log = logs / ident / "stdout"
        if runner.rc != 0 and not collector.result.failures:
            tail = "\n".join(self.last_log.read_text(errors="replace").splitlines()[-15:]) \
                if self.last_log.exists() else ""
            raise MortarError(f"ansible-playbook failed (exit {runner.rc}):\n{tail}", fix=f"full log: {self.last_log}")
        return collector

    def run(self, steps: list[str], requests: dict[str, StepRequest], progress: Progress | None = None,
            *, stop_on_failure: bool = True) -> StepResult:
        hosts = list(requests)
        if not hosts:
            return StepResult()
        lib = agent_library(self.deployment.state_dir / "lib")
        site = str(self.deployment.controller_dir)
        digests = {h: hashlib.sha256(wire.dumps(self.deployment.host_state(h)).encode()).hexdigest() for h in hosts}
        sync = any(self.shipped.get((site, h)) != digests[h] for h in hosts)
        if sync:
            self._write_states(list(self.deployment.desired.hosts))
        play = playbook(steps, sync, stop_on_failure)
        extravars = {"mortar_lib": str(lib), "mortar_states": str(self.states_dir),
                     "mortar_requests": {h: wire.encode(r) for h, r in requests.items()}}
        collector = self._run(play, hosts, extravars, progress, "-".join(steps))
        failed = {f.host for f in collector.result.failures}
        for host in hosts:
            if "destroy" in steps or (sync and host in failed):
                self.shipped.pop((site, host), None)
            elif sync:
                self.shipped[(site, host)] = digests[host]
        return collector.result

    def bootstrap(self, hosts: list[str], request: StepRequest, progress: Progress) -> StepResult:
        lib = agent_library(self.deployment.state_dir / "lib")
        extravars = {"mortar_lib": str(lib), "mortar_request": wire.encode(request),
                     "mortar_controller_epoch": int(time.time())}
        collector = self._run(str(PLAYBOOKS / "bootstrap.yml"), hosts, extravars, None, "bootstrap")
        failed = {f.host for f in collector.result.failures}
        for failure in collector.result.failures:
            progress(f"[{failure.host}] bootstrap  FAILED: {failure.message.splitlines()[0]}")
        for host in hosts:
            if host not in failed:
                changed = collector.changed_tasks.get(host, [])
                lines = [line for r in collector.result.reports if r.host == host for line in r.lines]
                progress(f"[{host}] bootstrap  " + (f"changed: {'; '.join(changed + lines)}" if changed or lines
                                                    else "ok (no change)"))
        return collector.result

