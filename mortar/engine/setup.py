"""Bring up a Docker Engine the way mortar needs it.

Installs Debian's docker.io when dockerd is missing, merges mortar's daemon settings
into /etc/docker/daemon.json (keeping the operator's other keys) and starts dockerd when
nothing answers on the socket: through systemd when it is PID 1, otherwise in the
background with a pid file and a log file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mortar.errors import EngineError

# Containers use host networking: no docker bridge, no iptables rules on the host.
DAEMON_SETTINGS = {"bridge": "none", "iptables": False, "ip-forward": False}
DAEMON_JSON = Path("/etc/docker/daemon.json")
SOCKET = Path("/var/run/docker.sock")
CERTS_DIR = Path("/etc/docker/certs.d")
PID_FILE = Path("/run/mortar-dockerd.pid")
LOG_FILE = Path("/var/log/mortar-dockerd.log")


@dataclass
class SetupReport:
    installed: bool
    config_changed: bool
    started: str  # "already running", "systemd", "background"


def merged_daemon_config(existing: dict, wanted: dict = DAEMON_SETTINGS) -> dict:
    """The operator's keys stay; mortar's keys win."""
    merged = dict(existing)
    merged.update(wanted)
    return merged


def read_daemon_config(path: Path = DAEMON_JSON) -> dict:
    if not path.exists() or not path.read_text().strip():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EngineError(f"not valid JSON ({exc})", file=str(path),
                          fix="fix or remove the file, then run `mortar engine setup` again") from exc
    if not isinstance(data, dict):
        raise EngineError("must hold a JSON object", file=str(path))
    return data


def engine_answers(timeout: float = 2.0) -> bool:
    from mortar.engine.dockerengine import DockerEngine

    try:
        DockerEngine.connect(timeout=int(max(1, timeout)))
        return True
    except EngineError:
        return False


def install_engine() -> bool:
    if shutil.which("dockerd"):
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "docker.io"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-5:] + proc.stderr.splitlines()[-5:])
            raise EngineError(f"`{' '.join(cmd)}` failed:\n{tail}",
                              fix="check the host's apt sources, then run `mortar engine setup` again")
    return True


def wanted_settings(insecure_registries: list[str] | tuple[str, ...] = ()) -> dict:
    """mortar's settings, plus registries served over plain HTTP (kept with the operator's)."""
    wanted: dict = dict(DAEMON_SETTINGS)
    if insecure_registries:
        existing = read_daemon_config().get("insecure-registries", [])
        wanted["insecure-registries"] = sorted(set(existing) | set(insecure_registries))
    return wanted


def trust_registry_ca(registry: str, ca_pem: str, certs_dir: Path = CERTS_DIR) -> bool:
    """Make the engine trust REGISTRY's certificate authority (read per connection: no restart).
    True when the file changed."""
    from mortar.files import write_private

    directory = certs_dir / registry
    path = directory / "ca.crt"
    if path.is_file() and path.read_text() == ca_pem:
        return False
    directory.mkdir(parents=True, exist_ok=True)
    write_private(path, ca_pem, mode=0o644)
    return True


def write_daemon_config(path: Path = DAEMON_JSON, wanted: dict = DAEMON_SETTINGS) -> bool:
    existing = read_daemon_config(path)
    merged = merged_daemon_config(existing, wanted)
    if merged == existing:
        return False
    from mortar.files import write_private

    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps(merged, indent=2, sort_keys=True) + "\n", mode=0o644)
    return True


def _systemd_is_init() -> bool:
    return Path("/run/systemd/system").is_dir()


def _our_dockerd() -> int | None:
    """The pid of a dockerd mortar started in the background, if it still runs."""
    try:
        pid = int(PID_FILE.read_text().strip())
        # After a reboot the pid in the file may belong to anything: only a dockerd counts.
        if Path(f"/proc/{pid}/comm").read_text().strip() != "dockerd":
            return None
        return pid
    except (OSError, ValueError):
        return None


def restart_engine() -> str | None:
    """Restart an engine mortar manages (systemd's docker unit, or our background dockerd).

    Containers with a restart policy come back when the engine does. None: not ours to restart.
    """
    if _systemd_is_init():
        subprocess.run(["systemctl", "restart", "docker"], check=False)
    else:
        pid = _our_dockerd()
        if pid is None:
            return None
        os.kill(pid, 15)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
    return start_engine(config_changed=False)


def start_engine(config_changed: bool, restart: bool = False) -> str:
    if engine_answers():
        if config_changed and restart:
            how = restart_engine()
            if how is not None:
                return f"restarted ({how})"
        if config_changed:
            # A running engine keeps its old settings until restarted; say so rather than
            # restart an engine mortar did not start.
            print(f"note: {DAEMON_JSON} changed; restart dockerd for it to take effect")
        return "already running"
    if _systemd_is_init():
        subprocess.run(["systemctl", "enable", "--now", "docker"], check=False)
        subprocess.run(["systemctl", "restart", "docker"], check=False)
        how = "systemd"
    else:
        _clear_stale_pid()
        LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
        with open(LOG_FILE, "ab") as log:
            subprocess.Popen(["dockerd", "--pidfile", str(PID_FILE)], stdout=log, stderr=log,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        how = "background"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if engine_answers():
            return how
        time.sleep(0.5)
    tail = LOG_FILE.read_text(errors="replace").splitlines()[-10:] if LOG_FILE.exists() else []
    raise EngineError("dockerd did not answer within 60 s:\n" + "\n".join(tail),
                      fix=f"see {LOG_FILE}")


def _clear_stale_pid(pid_files: tuple[Path, ...] = (PID_FILE, Path("/var/run/docker.pid"))) -> None:
    """dockerd refuses to start while its pid file names a running process. After a reboot (a
    /run that is no tmpfs, a node container started again) that number may be any process's:
    only a dockerd that has not exited (a zombie's parent has not reaped it yet) keeps the file."""
    for pid_file in pid_files:
        if not pid_file.exists():
            continue
        try:
            pid = int(pid_file.read_text().strip())
            running = Path(f"/proc/{pid}/comm").read_text().strip()
            # /proc/PID/stat: "PID (COMM) STATE ..."; COMM may hold spaces and parentheses.
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (ValueError, OSError, IndexError):
            running, state = "", ""
        if running != "dockerd" or state == "Z":
            pid_file.unlink(missing_ok=True)


def setup_engine(insecure_registries: list[str] | tuple[str, ...] = (), restart: bool = False) -> SetupReport:
    """Install, configure and start the engine; `restart` applies a changed daemon.json to an
    engine mortar manages (`mortar bootstrap-servers` does; `mortar engine setup` asks)."""
    if os.geteuid() != 0 and not engine_answers():
        raise EngineError("setting up the engine needs root", fix="run `sudo mortar engine setup`")
    installed = install_engine() if not engine_answers() else False
    changed = write_daemon_config(wanted=wanted_settings(insecure_registries)) if os.geteuid() == 0 else False
    how = start_engine(changed, restart)
    return SetupReport(installed=installed, config_changed=changed, started=how)
