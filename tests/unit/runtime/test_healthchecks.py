"""Tests for the in-image healthcheck scripts (mortar/runtime/healthchecks/)."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

HC_DIR = Path(__file__).resolve().parents[3] / "mortar" / "runtime" / "healthchecks"
PORT_SCRIPT = HC_DIR / "healthcheck_port.py"
ESTABLISHED_SCRIPT = HC_DIR / "healthcheck_established.py"
CURL_SCRIPT = HC_DIR / "healthcheck_curl.sh"


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    # Proxies from the environment would route 127.0.0.1 requests elsewhere.
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)


def run_py(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, str(script), *args])


def free_port() -> int:
    """A port nothing listens on: bind an ephemeral one, then release it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("script", [PORT_SCRIPT, ESTABLISHED_SCRIPT, CURL_SCRIPT])
def test_scripts_are_executable_with_help(script: Path) -> None:
    assert os.access(script, os.X_OK)
    first = script.read_text().splitlines()[0]
    assert first == ("#!/bin/sh" if script.suffix == ".sh" else "#!/usr/bin/python3")
    result = run(
        ["sh", str(script), "--help"] if script.suffix == ".sh" else [sys.executable, str(script), "--help"]
    )
    assert result.returncode == 0
    assert "usage" in result.stdout.lower()


def test_port_healthy_while_listening_then_unhealthy() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        result = run_py(PORT_SCRIPT, str(port))
        assert result.returncode == 0, result.stdout
        assert f"127.0.0.1:{port}" in result.stdout
        assert run_py(PORT_SCRIPT, str(port), "--host", "127.0.0.1").returncode == 0
        wrong_host = run_py(PORT_SCRIPT, str(port), "--host", "10.254.254.254")
        assert wrong_host.returncode == 1 and "unhealthy" in wrong_host.stdout
    finally:
        server.close()
    result = run_py(PORT_SCRIPT, str(port))
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 1 and str(port) in result.stdout


def test_port_ignores_connected_sockets() -> None:
    # A client socket bound to a port is not a listener on it.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname())
    try:
        assert run_py(PORT_SCRIPT, str(client.getsockname()[1])).returncode == 1
    finally:
        client.close()
        server.close()


TCP_HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
)


def tcp_line(local: str, remote: str, state: str, inode: str) -> str:
    return f"   0: {local} {remote} {state} 00000000:00000000 00:00000000 00000000     0        0 {inode} 1\n"


@pytest.fixture
def fake_proc(tmp_path: Path) -> Path:
    """A /proc with IPv6 sockets: a wildcard listener on 8080 and an ipv4-mapped listener on 9090."""
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(TCP_HEADER)
    zero6 = "0" * 32
    (tmp_path / "net" / "tcp6").write_text(
        TCP_HEADER
        + tcp_line(f"{zero6}:1F90", f"{zero6}:0000", "0A", "100")
        + tcp_line("0000000000000000FFFF00000100007F:2382", f"{zero6}:0000", "0A", "101")
        + tcp_line(
            "0000000000000000FFFF00000100007F:B000", "0000000000000000FFFF00000A00000A:1628", "01", "555"
        )
    )
    return tmp_path


def test_port_reads_tcp6_and_matches_hosts(fake_proc: Path) -> None:
    root = ["--proc-root", str(fake_proc)]
    assert run_py(PORT_SCRIPT, "8080", *root).returncode == 0
    assert run_py(PORT_SCRIPT, "8080", "--host", "192.0.2.1", *root).returncode == 0  # wildcard bind
    assert run_py(PORT_SCRIPT, "9090", "--host", "127.0.0.1", *root).returncode == 0  # ipv4-mapped
    assert run_py(PORT_SCRIPT, "9090", "--host", "127.0.0.2", *root).returncode == 1
    assert run_py(PORT_SCRIPT, "5672", *root).returncode == 1  # established, not listening
    bad = run_py(PORT_SCRIPT, "8080", "--host", "not-an-ip", *root)
    assert bad.returncode == 1 and "not-an-ip" in bad.stdout


def test_established_with_fake_proc(fake_proc: Path) -> None:
    pid = fake_proc / "4242"
    (pid / "fd").mkdir(parents=True)
    (pid / "cmdline").write_bytes(b"/usr/bin/python3\0/usr/bin/nova-compute\0--config-file\0x\0")
    os.symlink("socket:[555]", pid / "fd" / "7")
    os.symlink("/dev/null", pid / "fd" / "0")
    (fake_proc / "4343").mkdir()  # a process that vanished: no cmdline
    root = ["--proc-root", str(fake_proc)]
    ok = run_py(ESTABLISHED_SCRIPT, "nova-compute", "5672", *root)
    assert ok.returncode == 0, ok.stdout
    assert "4242" in ok.stdout and "10.0.0.10:5672" in ok.stdout
    assert run_py(ESTABLISHED_SCRIPT, "nova-compute", "5671", *root).returncode == 1
    assert run_py(ESTABLISHED_SCRIPT, "neutron-server", "5672", *root).returncode == 1


@pytest.fixture
def connected_client() -> Iterator[tuple[str, int]]:
    """A subprocess with a distinctive argv holding an ESTABLISHED connection to a local listener."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    marker = f"mortar-hc-marker-{uuid.uuid4().hex[:12]}"
    code = (
        "import socket, sys, time\n"
        f"s = socket.create_connection(('127.0.0.1', {port}))\n"
        "print('connected', flush=True)\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, marker], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "connected"
        yield marker, port
    finally:
        os.kill(proc.pid, 9)
        proc.wait(timeout=10)
        server.close()


def test_established_real_connection(connected_client: tuple[str, int]) -> None:
    marker, port = connected_client
    ok = run_py(ESTABLISHED_SCRIPT, marker, str(port))
    assert ok.returncode == 0, ok.stdout
    assert f"127.0.0.1:{port}" in ok.stdout
    wrong_port = run_py(ESTABLISHED_SCRIPT, marker, str(free_port()))
    assert wrong_port.returncode == 1 and "no ESTABLISHED connection" in wrong_port.stdout
    wrong_name = run_py(ESTABLISHED_SCRIPT, marker + "-nope", str(port))
    assert wrong_name.returncode == 1 and "no process matching" in wrong_name.stdout


class StatusHandler(http.server.BaseHTTPRequestHandler):
    """GET /status/NNN answers NNN, /slow waits 3s; anything else answers 200."""

    def do_GET(self) -> None:
        code = 200
        if self.path.startswith("/status/"):
            code = int(self.path.rsplit("/", 1)[1])
        elif self.path == "/slow":
            time.sleep(3)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_base() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StatusHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def curl_check(*args: str) -> subprocess.CompletedProcess[str]:
    return run(["sh", str(CURL_SCRIPT), *args])


@needs_curl
def test_curl_default_accepts_200_to_499(http_base: str) -> None:
    ok = curl_check(f"{http_base}/")
    assert ok.returncode == 0 and "200" in ok.stdout
    assert curl_check(f"{http_base}/status/401").returncode == 0
    assert curl_check(f"{http_base}/status/404").returncode == 0
    bad = curl_check(f"{http_base}/status/503")
    assert bad.returncode == 1 and "503" in bad.stdout


@needs_curl
def test_curl_expect(http_base: str) -> None:
    assert curl_check(f"{http_base}/status/300", "--expect", "200,300").returncode == 0
    bad = curl_check(f"{http_base}/status/404", "--expect", "200,300")
    assert bad.returncode == 1 and "404" in bad.stdout and "200,300" in bad.stdout
    assert curl_check(f"{http_base}/status/404", "--expect=404").returncode == 0


@needs_curl
def test_curl_unreachable_and_timeout(http_base: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    down = curl_check(url)
    assert down.returncode == 1
    assert down.stdout.startswith(f"unhealthy: {url}: (7)") and len(down.stdout.splitlines()) == 1
    slow = curl_check(f"{http_base}/slow", "--timeout", "1")
    assert slow.returncode == 1 and "(28)" in slow.stdout


@needs_curl
def test_curl_usage_errors_are_unhealthy() -> None:
    assert curl_check().returncode == 1
    assert curl_check("http://127.0.0.1:1/", "--bogus").returncode == 1
