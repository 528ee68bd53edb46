"""`mortar verify --tempest`: upstream Tempest against the deployed cloud.

Tempest runs from a venv of its own, made once per content of `tempest-requirements.txt`
under the cache directory. Its workspace (tempest.conf, which holds the admin password, and
Tempest's logs) lives in the site's state directory, readable by root only. The
configuration comes from the cloud itself: the guest image, flavors and external network
that `mortar init-runonce` made, the service types in the catalogue, the number of compute
hosts, and the dashboard's login page when a web login check is declared.
"""

from __future__ import annotations

import configparser
import fcntl
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mortar.cloud.runonce import EXTERNAL_NETWORK, FLAVORS, GUEST_IMAGE, GUEST_USER
from mortar.errors import MortarError
from mortar.files import load_yaml, write_private
from mortar.paths import cache_root

REQUIREMENTS = Path(__file__).resolve().parent / "tempest-requirements.txt"
SERVICES = Path(__file__).resolve().parent / "tempest-services.yaml"
SMOKE = "smoke"
TOTALS = re.compile(r"^ - (Passed|Skipped|Failed|Expected Fail|Unexpected Success): (\d+)", re.M)


@dataclass
class Counts:
    passed: int = 0
    failed: int = 0
    skipped: int = 0

    def line(self) -> str:
        return f"tempest: {self.passed} passed, {self.failed} failed, {self.skipped} skipped"


def venv_path() -> Path:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()[:12]
    return cache_root() / "tempest" / f"venv-{digest}"


def ensure_venv(log: Callable[[str], None] = print) -> Path:
    """The Tempest venv, made when missing; a half-made one (no stamp) is made again."""
    venv = venv_path()
    stamp = venv / ".mortar-complete"
    if stamp.is_file():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs on one machine make it once
        if stamp.is_file():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        log(f"installing Tempest into {venv} (pinned in {REQUIREMENTS.name})")
        started = time.monotonic()
        base = getattr(sys, "_base_executable", sys.executable)
        for argv in ([base, "-m", "venv", str(venv)],
                     [str(venv / "bin/pip"), "install", "-q", "--no-deps", "-r", str(REQUIREMENTS)],
                     [str(venv / "bin/pip"), "check"]):
            proc = subprocess.run(argv, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
                raise MortarError(f"installing Tempest failed ({' '.join(argv[:3])}):\n{tail}",
                                  fix="Tempest comes from PyPI: check that pip reaches it, then run again")
        stamp.write_text(REQUIREMENTS.read_text())
        log(f"Tempest installed in {time.monotonic() - started:.0f}s")
    return venv


def workspace(deployment: Any) -> Path:
    """The site's own: destroy removes it with the rest of the site's state."""
    return Path(deployment.controller_dir) / "tempest"


def _service_types(conn: Any) -> set[str]:
    return {s.type for s in conn.identity.services()}


def tempest_conf(deployment: Any, conn: Any, work: Path) -> str:
    """tempest.conf for the deployed cloud (raises MortarError when init-runonce has not run)."""
    identity = deployment.desired.identity
    image = conn.image.find_image(GUEST_IMAGE)
    public = conn.network.find_network(EXTERNAL_NETWORK)
    flavors = [conn.compute.find_flavor(name) for name, *_ in FLAVORS]
    if image is None or public is None or None in flavors:
        raise MortarError("the cloud has no guest image, flavors or external network for Tempest",
                          fix="run `mortar guest-image` and `mortar init-runonce` first")
    types = _service_types(conn)
    vocabulary = load_yaml(SERVICES)
    by_type: dict[str, str] = vocabulary["service_types"]
    computes = sum(1 for h in conn.compute.hypervisors() if getattr(h, "state", "up") == "up")
    auth_url = identity["auth_url"].rstrip("/")
    if not auth_url.endswith("/v3"):
        auth_url += "/v3"
    dashboard = next((str(c.params["url"]) for c in deployment.desired.checks if c.check == "form_login"), "")
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_dict({
        "DEFAULT": {"log_dir": str(work / "logs"), "log_file": "tempest.log"},
        "oslo_concurrency": {"lock_path": str(work / "locks")},
        "auth": {"use_dynamic_credentials": "true", "create_isolated_networks": "true",
                 "admin_username": identity["admin_username"], "admin_password": identity["admin_password"],
                 "admin_project_name": identity["admin_project"], "admin_domain_name": "Default",
                 "default_credentials_domain_name": "Default"},
        "identity": {"uri_v3": auth_url, "auth_version": "v3", "region": identity["region"],
                     "v3_endpoint_type": "public",
                     **({"ca_certificates_file": identity["cacert"]} if identity.get("cacert") else {})},
        "identity-feature-enabled": {"api_v2": "false"},
        "compute": {"image_ref": image.id, "image_ref_alt": image.id,
                    "flavor_ref": flavors[0].id, "flavor_ref_alt": flavors[1].id,
                    "min_compute_nodes": str(computes), "max_microversion": "latest",
                    "build_timeout": "600", "build_interval": "2"},
        "compute-feature-enabled": {"console_output": "true", "metadata_service": "true",
                                    "config_drive": "false", "change_password": "false",
                                    "live_migration": "false", "resize": "false", "cold_migration": "false",
                                    "vnc_console": "false", "serial_console": "false", "spice_console": "false",
                                    "attach_encrypted_volume": "false", "shelve": "false", "suspend": "false",
                                    "rescue": "false"},
        "image": {"disk_formats": "raw,qcow2,ami,ari,aki,iso", "container_formats": "bare,ami,ari,aki,ovf"},
        "network": {"public_network_id": public.id, "floating_network_name": EXTERNAL_NETWORK,
                    "project_network_cidr": "10.100.0.0/16", "project_network_mask_bits": "28",
                    "project_networks_reachable": "false", "build_timeout": "300"},
        "network-feature-enabled": {"ipv6": "true", "ipv6_subnet_attributes": "true", "port_security": "true",
                                    "api_extensions": ",".join(sorted(e.alias for e in conn.network.extensions()))},
        "validation": {"run_validation": "true", "connect_method": "floating", "auth_method": "keypair",
                       "image_ssh_user": GUEST_USER, "image_alt_ssh_user": GUEST_USER, "ip_version_for_ssh": "4",
                       "ssh_timeout": "300", "ping_timeout": "180", "connect_timeout": "60"},
        "service_available": {name: "false" for name in sorted(set(by_type.values()))}
        | {by_type[t]: "true" for t in sorted(types) if t in by_type}
        | {vocabulary["dashboard"]: "true" if dashboard else "false"},
    })
    if dashboard:
        conf["dashboard"] = {"dashboard_url": dashboard.rsplit("auth/login/", 1)[0], "login_url": dashboard}
    out = io.StringIO()
    conf.write(out)
    return out.getvalue()


def prepare_workspace(venv: Path, work: Path) -> None:
    """Tempest's own layout (`tempest init`), made once; root-only because tempest.conf holds a password."""
    work.parent.mkdir(parents=True, exist_ok=True)
    if not (work / ".stestr.conf").is_file():
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(mode=0o700)
        # Tempest's register of workspaces is the site's own: its default, ~/.tempest, is one per
        # user and refuses a second workspace named `tempest` (a second site, a second test run).
        argv = [str(venv / "bin/tempest"), "init", "--workspace-path", str(work / "workspace.yaml"), str(work)]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise MortarError(f"tempest init failed:\n{(proc.stdout + proc.stderr).strip()[-800:]}",
                              fix=f"remove {work} and run again")
    os.chmod(work, 0o700)
    for name in ("logs", "locks"):
        (work / name).mkdir(exist_ok=True)


def counts_of(output: str) -> Counts:
    found = dict(TOTALS.findall(output))
    return Counts(int(found.get("Passed", 0)), int(found.get("Failed", 0)) + int(found.get("Unexpected Success", 0)),
                  int(found.get("Skipped", 0)))


def run_tempest(deployment: Any, echo: Callable[[str], None], tests: str = SMOKE, concurrency: int = 2) -> Counts:
    """Run TESTS (`smoke`, or a regex of test names); every result line is shown as it comes."""
    from mortar.deploy.identity import connect

    if shutil.which("ping") is None:
        raise MortarError("Tempest pings floating IPs from this host and there is no ping here",
                          fix="install it (Debian: apt-get install iputils-ping), or run scripts/bootstrap.sh")
    venv = ensure_venv(echo)
    work = workspace(deployment)
    prepare_workspace(venv, work)
    conn = connect(deployment.desired.identity)
    write_private(work / "etc" / "tempest.conf", tempest_conf(deployment, conn, work))
    selection = ["--smoke"] if tests == SMOKE else ["--regex", tests]
    echo(f"tempest: running {'the smoke set' if tests == SMOKE else tests!r} with concurrency {concurrency} "
         f"(workspace {work})")
    argv = [str(venv / "bin/tempest"), "run", *selection, "--concurrency", str(concurrency)]
    proc = subprocess.Popen(argv, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1", OS_CLOUD=""))
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        echo(line.rstrip("\n"))
    proc.wait()
    counts = counts_of("".join(lines))
    if proc.returncode != 0 and counts.failed == 0:
        counts.failed = 1  # Tempest ended in error before counting (e.g. a configuration it refused)
    echo(counts.line())
    return counts
