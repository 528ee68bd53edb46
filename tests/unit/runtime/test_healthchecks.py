"""The in-image healthcheck scripts (mortar/runtime/healthchecks/), run as the images run them.

healthcheck_socket.py is installed twice (images/base links it as healthcheck_port and
healthcheck_established); the name it runs by picks the check. Sockets are real ones of this
process; which process holds a socket comes from a fake /proc tree (--proc-root).
"""

from __future__ import annotations

import http.server
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3] / "mortar"
HC_DIR = ROOT / "runtime" / "healthchecks"
SOCKET_SCRIPT = HC_DIR / "healthcheck_socket.py"
CURL_SCRIPT = HC_DIR / "healthcheck_curl.sh"
# The names the images install them under.
PORT = ROOT / "images" / "base" / "healthcheck_port"
ESTABLISHED = ROOT / "images" / "base" / "healthcheck_established"
# Beyond any kernel's pid_max: a fake pid can never be the checking process's own.
PID = 99_000_001
OTHER_PID = 99_000_002


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    # Proxies from the environment would route 127.0.0.1 requests elsewhere.
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)


def run_py(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Standard library only, as in the images: -I -S starts Python without this venv's site.
    return run([sys.executable, "-I", "-S", str(script), *args])


def free_port() -> int:
    """A port nothing listens on: bind an ephemeral one, then release it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_images_install_the_socket_script_under_both_names() -> None:
    for link in (PORT, ESTABLISHED):
        assert link.is_symlink() and link.resolve() == SOCKET_SCRIPT
    assert (ROOT / "images" / "base" / "healthcheck_curl").resolve() == CURL_SCRIPT


@pytest.mark.parametrize("script", [SOCKET_SCRIPT, CURL_SCRIPT])
def test_scripts_are_executable(script: Path) -> None:
    assert os.access(script, os.X_OK)
    assert script.read_text().splitlines()[0] == ("#!/bin/sh" if script.suffix == ".sh" else "#!/usr/bin/python3")


@pytest.mark.parametrize("command", [
    [sys.executable, "-I", "-S", str(PORT), "--help"],
    [sys.executable, "-I", "-S", str(ESTABLISHED), "--help"],
    ["sh", str(CURL_SCRIPT), "--help"],
])
def test_help(command: list[str]) -> None:
    result = run(command)
    assert result.returncode == 0
    assert "usage" in result.stdout.lower()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server
    server.close()


def test_port_healthy_while_listening_then_unhealthy(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    result = run_py(PORT, str(port))
    assert result.returncode == 0, result.stdout
    assert result.stdout == f"healthy: listening on 127.0.0.1:{port}\n"
    assert run_py(PORT, str(port), "--host", "127.0.0.1").returncode == 0
    wrong_host = run_py(PORT, str(port), "--host", "10.254.254.254")
    assert wrong_host.returncode == 1 and "on 10.254.254.254" in wrong_host.stdout
    listener.close()
    result = run_py(PORT, str(port))
    assert result.returncode == 1
    assert result.stdout == f"unhealthy: nothing listening on TCP port {port}\n"


def test_port_ignores_connected_sockets(listener: socket.socket) -> None:
    # A client socket bound to a port is not a listener on it.
    with socket.create_connection(listener.getsockname()) as client:
        assert run_py(PORT, str(client.getsockname()[1])).returncode == 1


def test_usage_errors_are_unhealthy_not_docker_reserved_2() -> None:
    for args in ([], ["not-a-port"], ["80", "--bogus"]):
        result = run_py(PORT, *args)
        assert result.returncode == 1 and result.stdout.startswith("unhealthy: "), (args, result)
    bad = run_py(PORT, "80", "--host", "not-an-ip")
    assert bad.returncode == 1 and "not-an-ip" in bad.stdout


class Server:
    """A TCP server on 127.0.0.1 in a thread; `answer` gets each connection."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    self.answer(conn)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[socket.socket], None]], Server]]:
    servers: list[Server] = []

    def start(answer: Callable[[socket.socket], None]) -> Server:
        servers.append(Server(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def greeting(conn: socket.socket) -> None:
    conn.sendall(b"220 mortar-test ESMTP ready\r\n")


def echo(conn: socket.socket) -> None:
    conn.sendall(conn.recv(4096))


def silent(conn: socket.socket) -> None:
    time.sleep(2)


def http_status(code: int) -> Callable[[socket.socket], None]:
    def answer(conn: socket.socket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = conn.recv(4096)
            if not chunk:
                return
            request += chunk
        path = request.split(b" ")[1].decode()
        # Answer in two writes: the check must read until the server closes.
        conn.sendall(f"HTTP/1.1 {code} Whatever\r\nContent-Type: text/plain\r\n".encode())
        time.sleep(0.05)
        conn.sendall(f"Connection: close\r\n\r\npath={path}\n".encode())
    return answer


def test_expect_matches_a_greeting(serve) -> None:
    server = serve(greeting)
    ok = run_py(PORT, str(server.port), "--expect", r"^220 ")
    assert ok.returncode == 0, ok.stdout
    assert ok.stdout == f"healthy: listening on 127.0.0.1:{server.port}, answered as expected\n"
    bad = run_py(PORT, str(server.port), "--expect", r"^500")
    assert bad.returncode == 1 and "'220 mortar-test" in bad.stdout and "/^500/" in bad.stdout


def test_send_then_expect_the_services_answer(serve) -> None:
    server = serve(echo)
    ok = run_py(PORT, str(server.port), "--send", r"PING mortar\r\n", "--expect", r"^PING mortar\r\n$")
    assert ok.returncode == 0, ok.stdout
    bad = run_py(PORT, str(server.port), "--send", r"\x01\x02", "--expect", "PONG")
    assert bad.returncode == 1 and r"'\x01\x02'" in bad.stdout


def test_a_listener_that_says_nothing_is_unhealthy(serve) -> None:
    server = serve(silent)
    started = time.monotonic()
    result = run_py(PORT, str(server.port), "--expect", "hello", "--timeout", "0.5")
    assert result.returncode == 1 and "answered ''" in result.stdout
    assert time.monotonic() - started < 1.9  # gave up at --timeout, not when the server closed


@pytest.mark.parametrize("code, args, healthy", [
    (200, [], True),
    (401, [], True),  # the API answered; it wants a token
    (404, [], True),
    (503, [], False),
    (503, ["--status", "200,503"], True),
    (401, ["--status", "200"], False),
])
def test_http_status(serve, code: int, args: list[str], healthy: bool) -> None:
    server = serve(http_status(code))
    result = run_py(PORT, str(server.port), "--http", "/v3", *args)
    assert result.returncode == (0 if healthy else 1), result.stdout
    if healthy:
        assert result.stdout == f"healthy: listening on 127.0.0.1:{server.port}, GET /v3 answered {code}\n"
    else:
        assert result.stdout == f"unhealthy: GET /v3 on 127.0.0.1:{server.port} answered {code}\n"


def test_http_reads_the_whole_answer_for_expect(serve) -> None:
    server = serve(http_status(200))
    ok = run_py(PORT, str(server.port), "--http", "/healthcheck", "--expect", "path=/healthcheck")
    assert ok.returncode == 0, ok.stdout


def test_http_to_something_not_speaking_http_is_unhealthy(serve) -> None:
    server = serve(greeting)
    result = run_py(PORT, str(server.port), "--http", "/")
    assert result.returncode == 1 and "answered '220 mortar-test" in result.stdout


def tls_http(certificate: str, key: str, tmp_path: Path, code: int = 300) -> Callable[[socket.socket], None]:
    """An HTTPS server's answer: TLS with CERTIFICATE and KEY, then http_status(CODE)."""
    import ssl

    (tmp_path / "server.pem").write_text(certificate + key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem")
    plain = http_status(code)

    def answer(conn: socket.socket) -> None:
        try:
            wrapped = context.wrap_socket(conn, server_side=True)
        except ssl.SSLError:
            return  # the client refused the certificate, or spoke no TLS
        with wrapped:
            plain(wrapped)
    return answer


def test_tls_ca_checks_the_certificate_and_speaks_http_over_tls(serve, tmp_path: Path) -> None:
    from mortar import pki

    ca, other = pki.make_ca("site CA"), pki.make_ca("another CA")
    issued = pki.issue(ca, "control1", names=("127.0.0.1",), server=True)
    (tmp_path / "ca.crt").write_text(ca.certificate)
    (tmp_path / "other.crt").write_text(other.certificate)
    server = serve(tls_http(issued.certificate, issued.key, tmp_path))
    ok = run_py(PORT, str(server.port), "--http", "/v3", "--tls-ca", str(tmp_path / "ca.crt"))
    assert ok.returncode == 0, ok.stdout
    assert ok.stdout == (f"healthy: listening on 127.0.0.1:{server.port}, GET /v3 answered 300, over TLS "
                         f"(certificate signed by {tmp_path / 'ca.crt'})\n")
    handshake = run_py(PORT, str(server.port), "--tls-ca", str(tmp_path / "ca.crt"))
    assert handshake.returncode == 0, handshake.stdout
    stranger = run_py(PORT, str(server.port), "--http", "/v3", "--tls-ca", str(tmp_path / "other.crt"))
    assert stranger.returncode == 1 and "its TLS is refused" in stranger.stdout, stranger.stdout
    assert "CERTIFICATE_VERIFY_FAILED" in stranger.stdout, stranger.stdout
    # A certificate that names another address is refused too.
    elsewhere = pki.issue(ca, "control2", names=("10.0.0.2",), server=True)
    moved = serve(tls_http(elsewhere.certificate, elsewhere.key, tmp_path))
    wrong = run_py(PORT, str(moved.port), "--http", "/v3", "--tls-ca", str(tmp_path / "ca.crt"))
    assert wrong.returncode == 1 and "its TLS is refused" in wrong.stdout and "mismatch" in wrong.stdout, wrong.stdout
    # A CA file that cannot be read is named, not blamed on the service.
    missing = run_py(PORT, str(server.port), "--tls-ca", str(tmp_path / "no-such.crt"))
    assert missing.returncode == 1 and f"--tls-ca {tmp_path / 'no-such.crt'}: cannot read it" in missing.stdout
    # Plain HTTP where TLS is asked for: unhealthy, and TLS where plain HTTP is asked: unhealthy.
    plain = serve(http_status(200))
    assert run_py(PORT, str(plain.port), "--http", "/", "--tls-ca", str(tmp_path / "ca.crt")).returncode == 1
    assert run_py(PORT, str(server.port), "--http", "/").returncode == 1


TCP_HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
)
ZERO6 = "0" * 32


def tcp_line(local: str, remote: str, state: str, inode: str) -> str:
    return f"   0: {local} {remote} {state} 00000000:00000000 00:00000000 00000000     0        0 {inode} 1\n"


def hex_port(port: int) -> str:
    return f"{port:04X}"


def fake_process(proc: Path, pid: int, argv: list[str], links: dict[str, str]) -> None:
    (proc / str(pid) / "fd").mkdir(parents=True)
    (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    for fd, target in links.items():
        os.symlink(target, proc / str(pid) / "fd" / fd)


@pytest.fixture
def fake_proc(tmp_path: Path) -> Path:
    """A /proc: a wildcard IPv4 listener on 8080 (inode 100), an ipv4-mapped IPv6 listener on 9090
    (inode 101) and an ESTABLISHED connection to 10.0.0.10:5672 (inode 555)."""
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "net" / "tcp").write_text(TCP_HEADER + tcp_line("00000000:1F90", "00000000:0000", "0A", "100"))
    (proc / "net" / "tcp6").write_text(
        TCP_HEADER
        + tcp_line("0000000000000000FFFF00000100007F:2382", f"{ZERO6}:0000", "0A", "101")
        + tcp_line("0000000000000000FFFF00000100007F:B000", "0000000000000000FFFF00000A00000A:1628", "01", "555")
    )
    return proc


def test_port_reads_tcp6_and_matches_hosts(fake_proc: Path) -> None:
    root = ["--proc-root", str(fake_proc)]
    assert run_py(PORT, "8080", *root).stdout == "healthy: listening on 0.0.0.0:8080\n"
    assert run_py(PORT, "8080", "--host", "192.0.2.1", *root).returncode == 0  # wildcard bind
    assert run_py(PORT, "9090", "--host", "127.0.0.1", *root).returncode == 0  # ipv4-mapped
    assert run_py(PORT, "9090", "--host", "::ffff:127.0.0.1", *root).returncode == 0
    assert run_py(PORT, "9090", "--host", "127.0.0.2", *root).returncode == 1
    assert run_py(PORT, "5672", *root).returncode == 1  # established, not listening


def test_owner_holds_the_listener(fake_proc: Path) -> None:
    fake_process(fake_proc, PID, ["/usr/bin/python3", "/usr/bin/keystone-wsgi-public"],
                 {"0": "/dev/null", "3": "pipe:[7]", "4": "socket:[100]"})
    fake_process(fake_proc, OTHER_PID, ["/usr/sbin/apache2", "-DFOREGROUND"], {"3": "socket:[101]"})
    root = ["--proc-root", str(fake_proc)]
    ok = run_py(PORT, "8080", "--owner", "keystone-wsgi", *root)
    assert ok.returncode == 0, ok.stdout
    assert ok.stdout == f"healthy: listening on 0.0.0.0:8080 by 'keystone-wsgi' (pid {PID})\n"
    # Someone listens on 9090, but not the keystone process.
    bad = run_py(PORT, "9090", "--owner", "keystone-wsgi", *root)
    assert bad.returncode == 1
    assert bad.stdout == "unhealthy: 127.0.0.1:9090 is not held by a 'keystone-wsgi' process of this container\n"
    assert run_py(PORT, "9090", "--owner", "apache2", *root).returncode == 0
    assert run_py(PORT, "8080", "--owner", "nova-api", *root).returncode == 1


def test_owner_in_a_tree_without_the_process(fake_proc: Path) -> None:
    (fake_proc / str(PID)).mkdir()  # exited between listing and reading: no cmdline, no fd
    result = run_py(PORT, "8080", "--owner", "keystone", "--proc-root", str(fake_proc))
    assert result.returncode == 1 and "not held by a 'keystone' process" in result.stdout


def test_owner_and_answer_together(serve, tmp_path: Path) -> None:
    # The listener is a real socket; which process holds it comes from the fake tree.
    server = serve(greeting)
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "net" / "tcp").write_text(TCP_HEADER + tcp_line(f"0100007F:{hex_port(server.port)}",
                                                            "00000000:0000", "0A", "4711"))
    fake_process(proc, PID, ["exim4", "-bd"], {"5": "socket:[4711]"})
    result = run_py(PORT, str(server.port), "--owner", "exim4", "--expect", "^220", "--proc-root", str(proc))
    assert result.returncode == 0, result.stdout
    assert result.stdout == (f"healthy: listening on 127.0.0.1:{server.port} by 'exim4' (pid {PID}), "
                             "answered as expected\n")


def test_established_with_fake_proc(fake_proc: Path) -> None:
    fake_process(fake_proc, PID, ["/usr/bin/python3", "/usr/bin/nova-compute", "--config-file", "x"],
                 {"7": "socket:[555]", "0": "/dev/null"})
    fake_process(fake_proc, OTHER_PID, ["/usr/bin/neutron-server"], {"7": "socket:[100]"})
    (fake_proc / "99000003").mkdir()  # a process that vanished: no cmdline
    root = ["--proc-root", str(fake_proc)]
    ok = run_py(ESTABLISHED, "nova-compute", "5672", *root)
    assert ok.returncode == 0, ok.stdout
    assert ok.stdout == f"healthy: 'nova-compute' (pid {PID}) is connected to 10.0.0.10:5672\n"
    wrong_port = run_py(ESTABLISHED, "nova-compute", "5671", *root)
    assert wrong_port.returncode == 1
    assert wrong_port.stdout == (f"unhealthy: 'nova-compute' (pid {PID}) has no ESTABLISHED connection to "
                                 "remote port 5671\n")
    # neutron-server holds a listener, not a connection to 5672.
    assert run_py(ESTABLISHED, "neutron-server", "5672", *root).returncode == 1
    absent = run_py(ESTABLISHED, "cinder-volume", "5672", *root)
    assert absent.stdout == "unhealthy: no process matching 'cinder-volume' is running\n"


def test_established_usage_errors_are_unhealthy() -> None:
    result = run_py(ESTABLISHED, "nova-compute")
    assert result.returncode == 1 and result.stdout.startswith("unhealthy: ")


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
        proc.kill()
        proc.wait(timeout=10)
        server.close()


def test_established_real_connection(connected_client: tuple[str, int]) -> None:
    marker, port = connected_client
    ok = run_py(ESTABLISHED, marker, str(port))
    assert ok.returncode == 0, ok.stdout
    assert f"127.0.0.1:{port}" in ok.stdout
    wrong_port = run_py(ESTABLISHED, marker, str(free_port()))
    assert wrong_port.returncode == 1 and "no ESTABLISHED connection" in wrong_port.stdout
    wrong_name = run_py(ESTABLISHED, marker + "-nope", str(port))
    assert wrong_name.returncode == 1 and "no process matching" in wrong_name.stdout


def test_run_as_healthcheck_socket_the_first_argument_names_the_check(fake_proc: Path) -> None:
    root = ["--proc-root", str(fake_proc)]
    assert run_py(SOCKET_SCRIPT, "port", "8080", *root).stdout == "healthy: listening on 0.0.0.0:8080\n"
    assert run_py(SOCKET_SCRIPT, "port", "8081", *root).returncode == 1
    assert run_py(SOCKET_SCRIPT, "established", "nova-compute", "5672", *root).stdout.startswith(
        "unhealthy: no process matching")
    for args in ([], ["8080"], ["listen", "8080"]):
        result = run_py(SOCKET_SCRIPT, *args)
        assert result.returncode == 1
        assert result.stdout.startswith("unhealthy: run as healthcheck_port or healthcheck_established")


@pytest.fixture
def socket_module():
    spec = importlib.util.spec_from_file_location("healthcheck_socket", SOCKET_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("program, argv, check", [
    ("/usr/local/bin/healthcheck_port", ["8080"], "port"),
    ("/usr/local/bin/healthcheck_established", ["nova", "5672"], "established"),
    ("healthcheck_socket.py", ["port", "8080"], "port"),
    ("healthcheck_socket", ["established", "nova", "5672"], "established"),
])
def test_the_program_name_picks_the_check(socket_module, monkeypatch: pytest.MonkeyPatch, program: str,
                                          argv: list[str], check: str) -> None:
    called: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(sys, "argv", [program, *argv])
    monkeypatch.setitem(socket_module.CHECKS, "healthcheck_port", lambda a: called.append(("port", a)) or 0)
    monkeypatch.setitem(socket_module.CHECKS, "healthcheck_established",
                        lambda a: called.append(("established", a)) or 0)
    assert socket_module.main() == 0
    assert called == [(check, argv if "socket" not in program else argv[1:])]


def test_decode_address_in_kernel_order(socket_module) -> None:
    import ipaddress

    assert socket_module.decode_address("0100007F:1F90") == (ipaddress.ip_address("127.0.0.1"), 8080)
    assert socket_module.decode_address("0000000000000000FFFF00000A00000A:1628") == (
        ipaddress.ip_address("10.0.0.10"), 5672)
    assert socket_module.decode_address("B80D0120000000000000000001000000:0050") == (
        ipaddress.ip_address("2001:db8::1"), 80)


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
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
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
