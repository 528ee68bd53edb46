"""The mariadb service on several control hosts: one Galera cluster (its settings, the start
script that decides how each member starts, a healthcheck that asks Galera); on one host, and on
Kubernetes, everything renders exactly as it did before Galera."""

from __future__ import annotations

import configparser
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mortar.agent.wire import Container
from mortar.deploy.desired import DesiredState, compute_desired
from mortar.k8s.render import render
from mortar.site.config import Site
from mortar.site.inventory import parse_inventory
from mortar.site.samples import INVENTORY_AIO
from tests.unit.inventories import THREE_CONTROL_HOSTS

PASSWORD = "r00t'pass\\word"  # a quote and a backslash: SQL escaping
VIP = "10.0.0.10"
MEMBERS = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
HA_GLOBALS = {"internal_vip_address": VIP, "enable_haproxy": True,
              "volume_options": {"glance_images": {"type": "none", "o": "bind", "device": "/srv/shared/glance"}}}

# What mariadb has always rendered on one host: a cluster adds to it, never changes it.
ONE_SERVER_SCRIPT = """\
# The datadir lives in the `mariadb` volume; it is initialised once, on first start.
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/dev/null
fi
exec mariadbd --init-file=/etc/mysql/mortar-init.sql
"""
ONE_SERVER_HEALTH = "healthcheck_port 3306 --host {address} --owner mariadbd --expect '^.{{4}}\\n[0-9]'"
ONE_SERVER_CNF = """\
[mysqld]
bind-address = {address}
port = 3306
datadir = /var/lib/mysql
socket = /run/mysqld/mysqld.sock
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
skip-name-resolve = 1
max_connections = 500
innodb_buffer_pool_size = 128M
innodb_log_file_size = 48M
performance_schema = OFF
"""
ONE_SERVER_INIT = """\
-- Runs at every start: the root password always matches passwords.yml, and no other
-- root account (e.g. a passwordless root@127.0.0.1) can shadow root@'%'.
DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1';
CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY 'r00t\\'pass\\\\word';
ALTER USER 'root'@'%' IDENTIFIED BY 'r00t\\'pass\\\\word';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
ALTER USER 'root'@'localhost' IDENTIFIED BY 'r00t\\'pass\\\\word';
FLUSH PRIVILEGES;
"""


@pytest.fixture
def make_site(configure: Callable[..., Site]) -> Callable[..., Site]:
    def make(**globals_: Any) -> Site:
        return configure(globals_=globals_ or None, passwords={"database_password": PASSWORD})
    return make


def servers(desired: DesiredState) -> dict[str, Container]:
    """The mariadb container on each host that runs one."""
    return {host: c for host, state in desired.hosts.items() for c in state.containers() if c.name == "mariadb"}


def file_of(container: Container, name: str) -> str:
    return next(f.content for f in container.files if f.name == name)


def mysqld(container: Container) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False, default_section="\x00none")
    parser.read_string(file_of(container, "99-mortar.cnf"))
    return parser


def helper(container: Container) -> dict[str, Any]:
    """The Python the start script writes and runs (what a member asks, decides and tells)."""
    script = container.script
    start = script.index("<<'EOF'\n") + len("<<'EOF'\n")
    namespace: dict[str, Any] = {"__name__": "galera"}
    exec(compile(script[start:script.index("\nEOF\n", start)], "galera.py", "exec"), namespace)
    return namespace


# ---- one server -----------------------------------------------------------------------------------

def test_one_host_renders_as_it_always_did(make_site: Callable[..., Site]) -> None:
    site = make_site()
    [(_, server)] = servers(compute_desired(site, parse_inventory(INVENTORY_AIO, "aio"))).items()
    address = str(site.globals["api_address"])
    assert server.script == ONE_SERVER_SCRIPT
    assert server.command == ["/bin/sh", "-e", "/run/mortar/script.sh"]
    assert server.healthcheck is not None and server.healthcheck.test == ONE_SERVER_HEALTH.format(address=address)
    assert file_of(server, "99-mortar.cnf") == ONE_SERVER_CNF.format(address=address)
    assert file_of(server, "mortar-init.sql") == ONE_SERVER_INIT
    assert server.ports == [3306]


def test_one_host_behind_the_virtual_address_lets_haproxy_check_it(make_site: Callable[..., Site]) -> None:
    # Still one server, no Galera; HAProxy's mysql-check logs in from the host as haproxy.
    site = make_site(**HA_GLOBALS)
    inventory = parse_inventory("[control]\ncontrol1 api_address=10.0.0.11\n[network]\ncontrol1\n"
                                "[compute]\ncompute1 api_address=10.0.0.21\n", "inv")
    [(_, server)] = servers(compute_desired(site, inventory)).items()
    assert server.script == ONE_SERVER_SCRIPT
    assert "wsrep" not in file_of(server, "99-mortar.cnf")
    init = file_of(server, "mortar-init.sql")
    assert "CREATE USER IF NOT EXISTS 'haproxy'@'10.0.0.11';" in init
    assert init.startswith(ONE_SERVER_INIT.removesuffix("FLUSH PRIVILEGES;\n"))
    haproxy = next(c for state in compute_desired(site, inventory).hosts.values() for c in state.containers()
                   if c.name == "haproxy")
    cfg = file_of(haproxy, "haproxy.cfg")
    assert "option mysql-check user haproxy post-41" in cfg and "4569" not in cfg


def test_kubernetes_runs_one_server_whatever_the_hosts(make_site: Callable[..., Site]) -> None:
    # Every pod binds 0.0.0.0: one address, so no Galera, even with several control hosts.
    inventory = parse_inventory("[control]\nctl1 api_address=10.0.0.11\nctl2 api_address=10.0.0.12\n"
                                "ctl3 api_address=10.0.0.13\n[network:children]\ncontrol\n"
                                "[compute]\ncmp1 api_address=10.0.0.21\n", "inv")
    desired = render(make_site(), inventory, "1.30").desired
    assert desired is not None
    for host, server in servers(desired).items():
        assert server.script == ONE_SERVER_SCRIPT, host
        assert "wsrep" not in file_of(server, "99-mortar.cnf"), host
        assert server.healthcheck is not None and "wsrep" not in server.healthcheck.test.lower(), host


# ---- three members --------------------------------------------------------------------------------

@pytest.fixture
def three(make_site: Callable[..., Site]) -> dict[str, Container]:
    return servers(compute_desired(make_site(**HA_GLOBALS), parse_inventory(THREE_CONTROL_HOSTS, "inventory")))


def test_every_control_host_is_a_member_bound_to_its_own_address(three: dict[str, Container]) -> None:
    assert list(three) == ["control1", "control2", "control3"]
    for (host, server), address in zip(three.items(), MEMBERS, strict=True):
        cnf = mysqld(server)
        section = cnf["mysqld"]
        assert file_of(server, "99-mortar.cnf").startswith(ONE_SERVER_CNF.format(address=address))
        assert section["wsrep_on"] == "ON"
        assert section["wsrep_provider"] == "/usr/lib/galera/libgalera_smm.so"
        assert section["wsrep_cluster_address"] == "gcomm://" + ",".join(f"{a}:4567" for a in MEMBERS)
        assert section["wsrep_node_name"] == host
        assert section["wsrep_node_address"] == f"{address}:4567"
        options = dict(o.strip().split("=", 1) for o in section["wsrep_provider_options"].strip('"').split(";"))
        assert options == {"gmcast.listen_addr": f"tcp://{address}:4567", "ist.recv_addr": f"{address}:4568",
                           # a busy host's member is not left out for a 5 s stall (Galera's default)
                           "evs.suspect_timeout": "PT10S", "evs.inactive_timeout": "PT30S",
                           "evs.install_timeout": "PT15S"}
        assert section["wsrep_sst_receive_address"] == f"{address}:4444"
        assert section["wsrep_sst_method"] == "mariabackup"
        assert (section["binlog_format"], section["innodb_autoinc_lock_mode"]) == ("ROW", "2")
        assert section["default_storage_engine"] == "InnoDB"
        # The SST receiver binds this member's address only; its log goes to the container's output.
        assert dict(cnf["sst"]) == {"sockopt": f"bind={address}", "sst-syslog": "-1"}
        assert "wsrep_sst_auth" not in section  # the donor makes a user of its own for each copy
        assert "0.0.0.0" not in file_of(server, "99-mortar.cnf")


def test_every_member_lets_haproxy_check_it_and_asks_galera_without_a_password(
        three: dict[str, Container]) -> None:
    for host, server in three.items():
        init = file_of(server, "mortar-init.sql")
        assert init.startswith(ONE_SERVER_INIT.removesuffix("FLUSH PRIVILEGES;\n")), host
        assert init.endswith("FLUSH PRIVILEGES;\n"), host
        for address in MEMBERS:
            assert f"CREATE USER IF NOT EXISTS 'haproxy'@'{address}';" in init, host
        assert "CREATE USER IF NOT EXISTS 'mysql'@'localhost' IDENTIFIED VIA unix_socket;" in init
        [init_file] = [f for f in server.files if f.name == "mortar-init.sql"]
        assert (init_file.owner, init_file.mode) == ("mysql", "0600")
        health = server.healthcheck
        assert health is not None
        assert health.test.startswith(ONE_SERVER_HEALTH.format(address=MEMBERS[list(three).index(host)]))
        assert health.test.endswith(" && setpriv --reuid=mysql --regid=mysql --clear-groups python3 "
                                    "/run/mysqld/galera.py serving")
        assert "--socket=/run/mysqld/mysqld.sock" in server.script and "--user=mysql" in server.script
        for text in (health.test, server.script, " ".join(server.command), *server.environment.values()):
            assert "r00t" not in text, host
        # The ports stay what prechecks check on one host (see the service's ports comment).
        assert server.ports == [3306]


def test_the_start_script_is_valid_shell_and_knows_its_members(three: dict[str, Container],
                                                                 tmp_path: Path) -> None:
    for host, server in three.items():
        script = tmp_path / f"{host}.sh"
        script.write_text(server.script)
        subprocess.run(["sh", "-n", str(script)], check=True)
        address = MEMBERS[list(three).index(host)]
        assert f"\nme={address}\n" in server.script, host
        assert f"\nmembers='{' '.join(MEMBERS)}'\n" in server.script, host
        assert "--wsrep-new-cluster" in server.script and "--wsrep-recover" in server.script


# ---- how a member decides to start ----------------------------------------------------------------

A, B, C = MEMBERS
UUID = "52bb7198-f163-11f1-b60b-ee737378506e"


def tells(data: str, node: str = "-") -> tuple[str, ...]:
    return ("tells", data, node)


@pytest.fixture
def decide(three: dict[str, Container]) -> Callable[..., tuple[str, str]]:
    function = helper(three["control1"])["decide"]

    def run(me: str, mine: str, answers: dict[str, tuple[str, ...]], safe: bool = False,
            view: list[str] | None = None) -> tuple[str, str]:
        return function(me, mine, safe, view or [], MEMBERS, answers)
    return run


def test_a_new_cluster_starts_on_the_first_host_once_every_member_says_it_has_no_data(decide) -> None:
    assert decide(A, "empty", {B: tells("empty"), C: tells("empty")})[0] == "new"
    assert decide(B, "empty", {A: tells("empty"), C: tells("empty")}) == (
        "wait", f"no member holds data: the cluster starts on {A}")
    # A member that does not answer may hold the data: the first host does not start an empty cluster.
    verdict, why = decide(A, "empty", {B: ("silent",), C: tells("empty")})
    assert verdict == "wait" and f"{B} (no answer)" in why


def test_a_member_joins_whatever_is_up(decide) -> None:
    assert decide(B, "empty", {A: ("serves",), C: ("silent",)})[0] == "join"
    assert decide(A, f"{UUID}:7", {B: ("silent",), C: ("serves",)})[0] == "join"


def test_a_database_from_before_the_cluster_starts_it_and_is_never_replaced(decide) -> None:
    assert decide(A, "plain", {B: tells("empty"), C: tells("empty")})[0] == "plain"
    assert decide(B, "empty", {A: tells("plain"), C: tells("empty")}) == (
        "wait", f"the cluster starts from the database on {A}")
    verdict, why = decide(A, "plain", {B: ("serves",), C: tells("empty")})
    assert verdict == "wait" and "joining would replace it" in why


def test_after_a_full_stop_the_member_with_the_latest_data_starts_the_cluster(decide) -> None:
    assert decide(C, f"{UUID}:10", {A: tells(f"{UUID}:9"), B: tells(f"{UUID}:9")})[0] == "elected"
    assert decide(A, f"{UUID}:9", {B: tells(f"{UUID}:9"), C: tells(f"{UUID}:10")}) == (
        "wait", f"{C} holds the latest data (seqno 10) and starts the cluster")
    # A tie: the first in inventory order; an empty member (a lost volume) does not count.
    assert decide(B, f"{UUID}:9", {A: tells("empty"), C: tells(f"{UUID}:9")})[0] == "elected"
    assert decide(C, f"{UUID}:9", {A: tells("empty"), B: tells(f"{UUID}:9")})[0] == "wait"
    # The one that stopped last and cleanly starts at once.
    assert decide(B, f"{UUID}:9", {A: ("silent",), C: ("silent",)}, safe=True)[0] == "elected"


def test_a_member_waits_for_every_member_of_its_last_primary_component(decide) -> None:
    # C had left the cluster before A and B stopped: their last primary component is A and B.
    assert decide(A, f"{UUID}:12", {B: tells(f"{UUID}:11", "node-b"), C: ("silent",)},
                  view=["node-a", "node-b"])[0] == "elected"
    verdict, why = decide(A, f"{UUID}:12", {B: tells(f"{UUID}:11", "node-b"), C: ("silent",)},
                          view=["node-a", "node-b", "node-c"])
    assert verdict == "wait" and f"{C} (no answer)" in why
    assert decide(A, f"{UUID}:12", {B: ("galera",), C: tells(f"{UUID}:12")})[1].startswith(
        f"waiting for {B} (Galera runs there, not serving)")


def test_members_that_cannot_be_ordered_wait_for_the_operator(decide) -> None:
    other = "0a0a0a0a-0000-11f1-0000-000000000000"
    verdict, why = decide(A, f"{UUID}:9", {B: tells(f"{other}:20"), C: tells(f"{UUID}:9")})
    assert verdict == "wait" and "cannot choose" in why
    verdict, why = decide(A, f"{UUID}:-1", {B: tells(f"{UUID}:-1"), C: tells(f"{UUID}:-1")})
    assert verdict == "wait" and "cannot choose" in why


# ---- a member that stays outside the primary component -------------------------------------------

def test_only_a_member_outside_the_primary_component_counts_time_there(three: dict[str, Container]) -> None:
    outside_since = helper(three["control1"])["outside_since"]
    assert outside_since(None, 100.0, "non-Primary Joining: receiving State Transfer") == 100.0
    assert outside_since(100.0, 130.0, "non-Primary Joining: receiving State Transfer") == 100.0
    assert outside_since(100.0, 130.0, "Disconnected Initialized") == 100.0
    # Back in the primary component, giving or receiving a copy there, or not answering: no count.
    for status in ("Primary Synced", "Primary Donor/Desynced", "Primary Joining: receiving State Transfer", None):
        assert outside_since(100.0, 130.0, status) is None, status


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_watch_stops_a_member_stuck_outside_and_spares_one_that_comes_back(three: dict[str, Container]) -> None:
    namespace = helper(three["control1"])
    namespace["time"] = clock = FakeClock()
    answers = iter(["non-Primary Joining: receiving State Transfer"] * 10 + ["Primary Synced"]
                   + ["non-Primary Joining: receiving State Transfer"] * 100)
    namespace["galera_status"] = lambda: next(answers)
    signals: list[tuple[float, int]] = []

    class Os:
        def kill(self, pid: int, sig: int) -> None:
            if sig:
                signals.append((clock.now, sig))
            os.kill(pid, sig)

    namespace["os"] = Os()
    server = subprocess.Popen(["sleep", "600"])
    reaper = threading.Thread(target=server.wait)
    reaper.start()
    try:
        namespace["watch"](server.pid, limit=180)
        reaper.join(timeout=10)
        assert server.returncode == -signal.SIGTERM  # mariadbd shuts down cleanly
    finally:
        server.kill()
    # Checked every 10 s: 100 s outside, then back at 110 s (the count starts over), outside again
    # from 120 s: stopped at 300 s.
    assert signals[0] == (300.0, signal.SIGTERM)


def test_every_member_starts_the_watch_beside_its_server(three: dict[str, Container]) -> None:
    for host, server in three.items():
        script = server.script
        assert script.index("python3 /run/mysqld/galera.py watch $$ &") < script.index('case "$verdict" in'), host


def test_a_peer_outside_the_primary_component_is_not_joined(three: dict[str, Container]) -> None:
    namespace = helper(three["control1"])
    greeting = socket.create_server(("127.0.0.1", 0))  # a server's greeting: length, sequence, protocol 10
    galera = socket.create_server(("127.0.0.1", 0))
    unused = socket.create_server(("127.0.0.1", 0))
    namespace["PORTS"] = {"serves": greeting.getsockname()[1], "tells": unused.getsockname()[1],
                          "galera": galera.getsockname()[1]}
    unused.close()  # nobody tells on it

    def greet() -> None:
        while True:
            try:
                conn, _ = greeting.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"\x5b\x00\x00\x00\n11.8.3-MariaDB\x00")

    threading.Thread(target=greet, daemon=True).start()
    try:
        asked: list[str] = []
        for says, expected in ((True, ("serves",)), (None, ("serves",)), (False, ("galera",))):
            namespace["in_primary"] = lambda address, says=says: asked.append(address) or says
            assert namespace["ask"]("127.0.0.1") == expected, says
        assert asked == ["127.0.0.1"] * 3
    finally:
        greeting.close()
        galera.close()


def test_each_member_answers_haproxy_whether_it_serves(three: dict[str, Container]) -> None:
    import urllib.error
    import urllib.request

    namespace = helper(three["control1"])
    says = ["Primary Synced"]
    namespace["galera_status"] = lambda: says[0]
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    threading.Thread(target=namespace["answer"], args=("127.0.0.1", port), daemon=True).start()

    def ask() -> tuple[int, str]:
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as error:
                return error.code, error.read().decode()
            except urllib.error.URLError:
                time.sleep(0.1)  # the server is still starting
        raise AssertionError("no answer")

    assert ask() == (200, "Galera says Primary Synced\n")
    assert namespace["health"]() == (0, "healthy: Galera says Primary Synced")
    for status, code in (("Primary Donor/Desynced", 200), ("non-Primary Joining: receiving State Transfer", 503),
                         ("Primary Joining: receiving State Transfer", 503), (None, 503)):
        says[0] = status
        assert ask()[0] == code, status
        # The container's health says the same as HAProxy's check.
        assert namespace["health"]()[0] == (0 if code == 200 else 1), status
    assert namespace["health"]() == (1, "unhealthy: Galera says 'nothing (mariadbd does not answer)', "
                                        "not Primary Synced")
