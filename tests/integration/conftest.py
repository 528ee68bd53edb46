"""Fixtures for tests on the real Docker Engine.

Images are built under the test namespace `mortar-test` with tag `it`; because images are
content-addressed, ones that already exist locally under any tag are reused, not rebuilt.
Only the `mortar-test/*` tags and the containers these tests label are removed afterwards.
"""

from __future__ import annotations

import os
import re
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from mortar.builder.builder import Builder, BuildOptions, ImageTree

NAMESPACE = os.environ.get("MORTAR_TEST_NAMESPACE", "mortar-test")
TAG = "it"
TEST_LABEL = "org.mortar.test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Figures a test measured on the way (seconds of an apply, ...): printed at the end of the
# session, so a CI log carries them. Tests only report them; none asserts a duration.
MEASURED: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter) -> None:
    if MEASURED:
        terminalreporter.section("measured")
        for key, value in MEASURED.items():
            terminalreporter.write_line(f"{key}: {value}")


ENGINE_LOCK = os.environ.get("MORTAR_TEST_ENGINE_LOCK", "")  # set by scripts/test.sh for its sessions


@pytest.fixture(scope="session", autouse=True)
def sharing_the_engine():
    """A session that runs beside another holds this machine's engine shared: a test that
    restarts the engine waits until it is alone (see `engine_alone`)."""
    if not ENGINE_LOCK or os.environ.get("MORTAR_TEST_SHARES_ENGINE") != "1":
        yield
        return
    import fcntl

    with open(ENGINE_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        yield


@contextmanager
def engine_shared():
    """Use this machine's engine beside the other sessions (none restarts it meanwhile): for a
    session that needs it only now and then (the Kubernetes cluster has an engine of its own)."""
    if not ENGINE_LOCK:
        yield
        return
    import fcntl

    with open(ENGINE_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def engine_alone(timeout: float = 3600):
    """Hold the engine alone (no other test session runs on it) while restarting it."""
    if not ENGINE_LOCK:
        yield
        return
    import fcntl

    with open(ENGINE_LOCK, "a") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "the other test session kept the engine for an hour"
                time.sleep(5)
        yield


@pytest.fixture(scope="session")
def engine():
    """mortar's own seam to the engine: what mortar's code is handed."""
    from mortar.engine import connect

    try:
        return connect()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"integration tests need the Docker Engine: {exc}")


@pytest.fixture(scope="session")
def docker(engine):
    """The docker SDK, for tests to look at what mortar did (and to clean up what they made)."""
    import docker as sdk

    client = sdk.from_env(timeout=600)
    yield client
    for container in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        container.remove(force=True)
    if os.environ.get("MORTAR_KEEP_TEST_IMAGES") == "1":  # a developer's next run reuses them
        return
    for image in client.images.list():
        for ref in image.tags:
            if ref.startswith(f"{NAMESPACE}/") or "/" + NAMESPACE + "/" in ref:
                client.images.remove(ref, noprune=False)


def build(engine, names: list[str], logs: Path, **overrides):
    from mortar.builder.baseimage import ensure_base_image

    options = BuildOptions(namespace=NAMESPACE, tag=overrides.pop("tag", TAG), logs_dir=logs, **overrides)
    tree = ImageTree(options)
    base_id = ensure_base_image(engine, options.base_ref, options.base, options.base_image is None)
    tree.compute_identities(base_id)
    builder = Builder(engine, tree)
    return builder, builder.run(names)


def built(engine, names: list[str], logs: Path, **overrides):
    """`build`, failing the test with each image that was neither built nor found cached; the builder
    and its results."""
    builder, results = build(engine, names, logs, **overrides)
    failed = {n: r.error for n, r in results.items() if r.status not in ("done", "cached")}
    assert not failed, failed
    return builder, results


@pytest.fixture(scope="session")
def keystone_build(engine, docker, tmp_path_factory):
    logs = tmp_path_factory.mktemp("build-logs")
    return built(engine, ["keystone"], logs)


def run_container(docker, image: str, command, *, user: str | None = None, volumes=None, entrypoint=None):
    """Run to completion; returns (exit code, combined output)."""
    container = docker.containers.run(image, command, detach=True, network_mode="host", volumes=volumes or {},
                                      user=user or "", labels={TEST_LABEL: "1"},
                                      **({"entrypoint": entrypoint} if entrypoint is not None else {}))
    try:
        code = container.wait(timeout=300)["StatusCode"]
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    return code, output


def site_env(site: dict) -> dict[str, str]:
    """The environment a test's mortar runs in: its own state and log directories, live output."""
    import os

    return dict(os.environ, MORTAR_STATE_DIR=str(site["state"]), MORTAR_LOG_DIR=str(site["log"]),
                PYTHONUNBUFFERED="1")


def failure(what: str, proc, evidence: str = "") -> str:
    """Why PROC failed, the telling lines first (CI shows only the head of a long message): the
    FAIL rows and the error message, then EVIDENCE gathered beside it, then the whole output."""
    output = proc.stdout + proc.stderr
    telling = [line for line in output.splitlines() if re.search(r"\bFAIL|[Ee]rror|failed|refused|timed out", line)]
    return "\n".join([f"{what} failed (exit {proc.returncode}):", *telling[-15:], proc.stderr.strip()[-1500:],
                      *([evidence] if evidence else []), "---- whole output ----", proc.stdout, proc.stderr])


# A guest that verify found silent: "NAME (port ID MAC on HOST): no 'mortar-guest: ...' on the console".
SILENT_GUEST = re.compile(r"\(port ([0-9a-f-]{36}) ([0-9a-f:]{17}) on ([^)\s]+)\): no 'mortar-guest")


def silent_guest_evidence(output: str, run) -> str:
    """What Open vSwitch and OVN said of each guest in OUTPUT that verify found silent (no DHCP
    lease, no metadata), for the failure message. RUN(container, host, argv) returns ARGV's output
    in that container of that host (host "" is the one with the OVN databases); argv ["log"] asks
    for the container's log."""
    found = list(dict.fromkeys(SILENT_GUEST.findall(output)))
    sections = []
    for port, mac, host in found[:2]:
        short = port[:11]  # nova names the guest's tap "tap" + the port id's first 11 characters
        nb = "ovn-nbctl --db=unix:/run/ovn/ovnnb_db.sock"
        lsp = f"Logical_Switch_Port name={port}"
        northbound = (f"{nb} --columns=addresses,port_security,dhcpv4_options,up,enabled find {lsp}; "
                      f"u=$({nb} --bare --columns=_uuid find {lsp}); "
                      f"{nb} --bare --columns=name find Port_Group \"ports{{>=}}$u\"; "
                      f"{nb} --columns=_uuid,options list DHCP_Options")
        probes = [
            ("ovn_nb_db", "", ["sh", "-c", northbound]),
            ("ovn_sb_db", "", ["ovn-sbctl", "--db=unix:/run/ovn/ovnsb_db.sock", "--columns=chassis,up", "find",
                               "Port_Binding", f"logical_port={port}"]),
            ("openvswitch_db", host, ["ovs-vsctl", "--columns=name,ofport,statistics,external_ids", "find",
                                      "Interface", f"external_ids:iface-id={port}"]),
            ("openvswitch_vswitchd", host, ["ip", "-d", "-s", "link", "show", f"tap{short}"]),
            ("openvswitch_vswitchd", host, ["log"]),
            ("ovn_controller", host, ["log"]),
        ]
        for container, where, argv in probes:
            try:
                text = run(container, where, argv)
            except Exception as exc:  # noqa: BLE001 - evidence is best effort; the failure stands
                text = f"(not read: {exc})"
            if argv == ["log"]:
                text = "\n".join([line for line in text.splitlines() if mac in line or short in line
                                  or re.search(r"\|(WARN|ERR|EMER)\||reconnect", line)][-25:])
            sections.append(f"== {container}{' on ' + where if where else ''}: {' '.join(argv)[:80]}\n{text.strip()}")
    return "\n".join(sections)


def docker_argv(container: str, argv: list[str]) -> list[str]:
    return ["docker", "logs", "--tail", "400", container] if argv == ["log"] else ["docker", "exec", container, *argv]


def docker_evidence(container: str, host: str, argv: list[str]) -> str:
    """silent_guest_evidence's RUN for an all-in-one on this machine's engine."""
    import subprocess

    proc = subprocess.run(docker_argv(container, argv), capture_output=True, text=True, timeout=60)
    return proc.stdout + proc.stderr


def bed_evidence(bed, control: str):
    """silent_guest_evidence's RUN for a test bed: the engine of the named node, the databases on CONTROL."""
    def run(container: str, host: str, argv: list[str]) -> str:
        proc = bed.run(host or control, docker_argv(container, argv), timeout=60)
        return proc.stdout + proc.stderr
    return run


def k8s_evidence(cluster, namespace: str):
    """silent_guest_evidence's RUN for the one-node test cluster: containerd's task of the
    container named like the Docker one (dashes for underscores), its pod's log through the API."""
    import subprocess

    from mortar.k8s.client import Client

    ctr = ["ctr", "--address", str(cluster.containerd_socket), "-n", "k8s.io"]

    def run(container: str, host: str, argv: list[str]) -> str:
        name = container.replace("_", "-")
        if argv == ["log"]:
            client = Client(cluster.kubeconfig)
            pods = [p["metadata"]["name"] for p in client.list("v1", "Pod", namespace)
                    if any(c["name"] == name for c in p["spec"]["containers"])]
            return "\n".join(client.logs(namespace, pod, tail=400) for pod in pods)
        listed = subprocess.run([*ctr, "containers", "ls", "-q", f'labels."io.kubernetes.container.name"=={name}'],
                                capture_output=True, text=True, timeout=30).stdout.split()
        tasks = subprocess.run([*ctr, "tasks", "ls"], capture_output=True, text=True, timeout=30).stdout
        status = {line.split()[0]: line.split()[-1] for line in tasks.splitlines()[1:] if line.split()}
        running = [c for c in listed if status.get(c) == "RUNNING"]
        if not running:
            return f"no running container {name}"
        proc = subprocess.run([*ctr, "tasks", "exec", "--exec-id", f"evidence-{os.getpid()}", running[0], *argv],
                              capture_output=True, text=True, timeout=60)
        return proc.stdout + proc.stderr
    return run


def wait_for(what: str, check, timeout: float = 600, delay: float = 5):
    """CHECK's first true answer, asked every DELAY seconds; fails naming WHAT and the last answer."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (AssertionError, ValueError, KeyError, IndexError) as exc:
            last = exc
        time.sleep(delay)
    raise AssertionError(f"{what}: not so after {timeout:.0f} s (last: {last!r})")


def remove_kept_guests(site: dict) -> None:
    """Delete the guests `verify --keep-failed` left (once their evidence is read)."""
    from tests.integration.test_deploy import connect

    if not (site["config"] / "clouds.yaml").exists():
        return
    conn = connect(site)
    for server in conn.compute.servers(all_projects=True):
        if server.name.startswith("mortar-verify-guest-"):
            for port in conn.network.ports(device_id=server.id):
                for ip in conn.network.ips(port_id=port.id):
                    conn.network.delete_ip(ip)
            conn.compute.delete_server(server)


def mortar(site: dict, *args: str, check: bool = True, site_args: bool = True, env: dict[str, str] | None = None):
    """`mortar ARGS --config-dir SITE` as an operator runs it; its output is kept in site["outputs"]
    (for the secret scans), and a traceback always fails the test."""
    import subprocess
    import sys

    extra = ["--config-dir", str(site["config"])] if site_args else []
    proc = subprocess.run([sys.executable, "-m", "mortar", *args, *extra], capture_output=True, text=True,
                          env=site_env(site) | (env or {}), timeout=1800)
    site.setdefault("outputs", []).append(proc.stdout + proc.stderr)
    if check and proc.returncode != 0:
        evidence = ""
        if SILENT_GUEST.search(proc.stdout) and site.get("evidence"):
            evidence = "---- what OVN and Open vSwitch say of the silent guest ----\n" + \
                silent_guest_evidence(proc.stdout, site["evidence"])
        if "--keep-failed" in args:
            remove_kept_guests(site)
        raise AssertionError(failure(f"mortar {' '.join(args)}", proc, evidence))
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc
