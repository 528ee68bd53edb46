"""High availability on the test bed: three control hosts behind a virtual address, one compute host.

One site of the default series over Ansible: HAProxy and keepalived on every control host
(internal_vip_address, reached by its name, internal_fqdn, which every host and this machine
resolve: prechecks ask) serving the APIs over TLS (enable_tls_internal, `mortar certificates`:
every client checks the certificate against the site CA, none is told to skip it) and speaking
TLS to every API behind it (enable_tls_backend: each serves its host's certificate), and on a
second address for the users' side, with its own certificate (external_vip_address,
enable_tls_external: the public endpoints, which verify's clients use), MariaDB
Galera, a RabbitMQ cluster with quorum queues, memcached on every control host, the OVN
databases as RAFT clusters, glance's images on the bed's shared folder (a shared filesystem
every node mounts). In order: deploy; every API registered on the virtual address's name; verify (a
real guest on the compute host, SSH on a floating IP) through it; the clusters formed; the
control host holding the virtual address killed while a client asks for a token, the images
and the servers once a second (the address moves, the APIs answer again and nothing fails
after; a server and an image made before are intact); the host back, rejoining every cluster;
a reconfigure that restarts keystone one control host at a time while the client loop sees no
failure; all three control hosts stopped, then `deploy`: every row back (keystone's, nova's,
glance's); `mortar mariadb-recovery`: the cluster started again, every row kept; destroy.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import ssl
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from mortar.site.certificates import covers
from mortar.testbed.nodes import GATEWAY, Testbed
from tests.integration.conftest import MEASURED, NAMESPACE, TAG, bed_evidence, built, mortar, wait_for

pytestmark = pytest.mark.integration

BED = "pytest-ha"
REGISTRY = f"{GATEWAY}:4002"  # beside test_multihost's (4000) and test_faults' (4001), which run at the same time
VIP = "10.213.77.70"
# The name of the internal side (internal_fqdn): the nodes resolve it as a site's DNS would
# (their /etc/hosts, from each start on), and so does this machine, where mortar and the
# clients run, for the session (a line of /etc/hosts, marked with the bed's name).
INTERNAL_FQDN = "ha-internal.mortar.test"
NAMES = {INTERNAL_FQDN: VIP}
HOSTS_FILE = Path("/etc/hosts")
EXTERNAL_VIP = "10.213.77.71"  # the users' side: the public endpoints, its own certificate
PROVIDER = "10.213.77.224/27"  # beside test_multihost's floating-IP range
IMAGES = ["haproxy", "keepalived", "mariadb-server", "memcached", "rabbitmq", "ovn-northd", "ovn-nb-db", "ovn-sb-db",
          "keystone", "glance-api", "placement-api", "nova-api", "nova-conductor", "nova-scheduler", "nova-compute",
          "nova-libvirt", "openvswitch", "ovn-controller", "neutron-server", "neutron-ovn-metadata-agent", "horizon"]
CONTROLS = ("control1", "control2", "control3")
# control3 is the network node: killing the host that holds the virtual address (control1 first)
# leaves the floating IPs' gateway alone.
LAYOUT = [("control1", ["control"]), ("control2", ["control"]), ("control3", ["control", "network"]),
          ("compute1", ["compute"])]


def on(bed: Testbed, node: str, command: str, timeout: float = 120) -> str:
    out = bed.run(node, command, timeout=timeout)
    assert out.returncode == 0, (node, command, out.stdout, out.stderr)
    return out.stdout


def forget_names() -> None:
    """This machine's /etc/hosts without the session's lines (in place: it may be a bind mount)."""
    lines = HOSTS_FILE.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.rstrip().endswith(f"# {BED}")]
    if kept != lines:
        HOSTS_FILE.write_text("".join(kept))


@contextlib.contextmanager
def resolvable_here(names: dict[str, str]):
    forget_names()
    text = HOSTS_FILE.read_text()
    HOSTS_FILE.write_text(text + ("" if text.endswith("\n") or not text else "\n") +
                          "".join(f"{address} {name} # {BED}\n" for name, address in names.items()))
    try:
        yield
    finally:
        forget_names()


def vip_holder(bed: Testbed, nodes: tuple[str, ...] | list[str] = CONTROLS) -> list[str]:
    return [n for n in nodes if f" {VIP}/32 " in bed.run(n, "ip -4 -o addr show", timeout=30).stdout]


def node_container(docker, node: str):
    return docker.containers.get(f"mortar-testbed-{BED}-{node}")


def galera_size(bed: Testbed, node: str) -> int:
    out = on(bed, node, "docker exec -u mysql mariadb mariadb -N -e \"SHOW STATUS LIKE 'wsrep_cluster_size'\"")
    return int(out.split()[-1])


def rabbit_running(bed: Testbed, node: str) -> list[str]:
    out = on(bed, node, "docker exec rabbitmq rabbitmqctl cluster_status --formatter json")
    return sorted(json.loads(out)["running_nodes"])


def raft_servers(bed: Testbed, node: str, db: str) -> str:
    ctl = {"OVN_Northbound": "/run/ovn/ovnnb_db.ctl", "OVN_Southbound": "/run/ovn/ovnsb_db.ctl"}[db]
    container = {"OVN_Northbound": "ovn_nb_db", "OVN_Southbound": "ovn_sb_db"}[db]
    return on(bed, node, f"docker exec {container} ovs-appctl -t {ctl} cluster/status {db}")


# How long the client waits for an answer before it counts the APIs as unavailable. Killing a
# host leaves requests hanging on its backends (HAProxy waits for a server up to 5 minutes): a
# client gives up on those after 10 s and asks again. During a rolling reconfigure nothing
# hangs on a dead host, but on this machine's two cores, beside the other test sessions, a
# token (bcrypt) can take over 10 s while one keystone of three reloads: slow is not failed there.
GIVE_UP = 10
SLOW_BUT_ANSWERING = 30


class ClientLoop:
    """An operator's client through the virtual address: once a second a token, the images and
    the servers. Records each round's time, what failed and how long it took."""

    def __init__(self, site: dict, timeout: float = GIVE_UP) -> None:
        self.timeout = timeout
        cloud = yaml.safe_load((site["config"] / "clouds.yaml").read_text())["clouds"]["mortar"]
        self.auth, self.cacert = cloud["auth"], cloud["cacert"]
        # (monotonic time the round ended, "" or what failed): a round that waited on a dead
        # host counts from when the client gave up, not from when it asked.
        self.rounds: list[tuple[float, str]] = []
        self.slowest = 0.0  # seconds: the longest round that did not fail
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _round(self) -> str:
        user = {"name": self.auth["username"], "password": self.auth["password"],
                "domain": {"name": self.auth.get("user_domain_name", "Default")}}
        project = {"name": self.auth["project_name"],
                   "domain": {"name": self.auth.get("project_domain_name", "Default")}}
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": user}},
                         "scope": {"project": project}}}
        asking = "token"
        try:
            token = requests.post(f"{self.auth['auth_url']}/auth/tokens", json=body, timeout=self.timeout,
                                  verify=self.cacert)
            if token.status_code != 201:
                return f"token: HTTP {token.status_code}"
            headers = {"X-Auth-Token": token.headers["X-Subject-Token"]}
            for asking, url in (("images", f"https://{VIP}:9292/v2/images"),
                                ("servers", f"https://{VIP}:8774/v2.1/servers")):
                answer = requests.get(url, headers=headers, timeout=self.timeout, verify=self.cacert)
                if answer.status_code != 200:
                    return f"{asking}: HTTP {answer.status_code}"
        except requests.RequestException as exc:
            return f"{asking}: {type(exc).__name__}"  # which request failed, e.g. "token: ReadTimeout"
        return ""

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            failed = self._round()
            ended = time.monotonic()
            self.rounds.append((ended, failed))
            if not failed:
                self.slowest = max(self.slowest, ended - started)
            self._stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    def __enter__(self) -> ClientLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def failures(self, since: float = 0.0) -> list[tuple[float, str]]:
        return [(t, why) for t, why in self.rounds if why and t >= since]

    def failed_at(self) -> list[str]:
        """Each failed round as UTC wall time and what failed, to set beside the logs."""
        offset = time.time() - time.monotonic()
        return [f"{time.strftime('%H:%M:%S', time.gmtime(t + offset))} {why}" for t, why in self.failures()]

    def unavailable(self, since: float) -> float:
        """Seconds from SINCE to the first good round after the last failed one (0: none failed)."""
        failed = self.failures(since)
        if not failed:
            return 0.0
        last = failed[-1][0]
        good = [t for t, why in self.rounds if not why and t > last]
        assert good, f"the APIs never answered again: {failed[-5:]}"
        return good[0] - since


@pytest.fixture(scope="module")
def bed():
    testbed = Testbed(BED)
    try:
        testbed.up(LAYOUT, log=lambda _: None, names=NAMES)
        yield testbed
    finally:
        testbed.down(log=lambda _: None)


@pytest.fixture(scope="module")
def site(engine, bed, tmp_path_factory):
    built(engine, IMAGES, tmp_path_factory.mktemp("ha-build"))
    root = tmp_path_factory.mktemp("ha-site")
    data = {"config": root / "etc", "state": root / "state", "log": root / "log", "outputs": [], "bed": bed,
            "evidence": bed_evidence(bed, "control1")}
    mortar(data, "init")
    (bed.shared_dir / "glance").mkdir(parents=True, exist_ok=True)
    (data["config"] / "globals.yml").write_text(yaml.safe_dump({
        "image_namespace": NAMESPACE, "image_tag": TAG, "docker_registry": REGISTRY,
        "internal_vip_address": VIP, "internal_fqdn": INTERNAL_FQDN, "enable_haproxy": True,
        "enable_tls_internal": True, "enable_tls_backend": True,
        "external_vip_address": EXTERNAL_VIP, "enable_tls_external": True,
        # Three control planes on this machine's two cores start slowly beside other sessions.
        "healthcheck_timeout": 600,
        # Each probe of a running container is an exec of about 0.1 s of CPU: 70 containers here,
        # probed every 2 min, not 30 s. Failover does not wait for them (HAProxy checks every 2 s).
        "healthcheck_interval": 120,
        "volume_options": {"glance_images": {"type": "none", "o": "bind", "device": "/srv/shared/glance"}},
        "neutron_external_interface": "mortar-ext",
        "neutron_external_veth_address": "10.213.77.225/27"}))
    (data["config"] / "inventory").write_text(bed.inventory_path.read_text())
    mortar(data, "genpwd")
    mortar(data, "certificates")
    try:
        with resolvable_here(NAMES):
            mortar(data, "registry", "start")
            yield data
    finally:
        bed.unroute(PROVIDER)
        mortar(data, "destroy", "--yes-i-really-really-mean-it", check=False)
        mortar(data, "registry", "stop", "--remove-data", check=False)


@pytest.fixture(scope="module")
def deployed(site):
    bed = site["bed"]
    mortar(site, "build", *[f"^{name}$" for name in IMAGES], "--namespace", NAMESPACE, "--tag", TAG, "--push",
           "--registry", REGISTRY, "--config-dir", str(site["config"]), site_args=False)
    mortar(site, "bootstrap-servers", "--accept-new-host-keys")
    site["prechecks"] = mortar(site, "prechecks").stdout
    clock = time.monotonic()
    site["deploy_output"] = mortar(site, "deploy").stdout
    MEASURED["HA deploy (3 control + 1 compute hosts)"] = f"{time.monotonic() - clock:.1f} s"
    mortar(site, "post-deploy")
    bed.route_via(PROVIDER, "control3")
    mortar(site, "guest-image", site_args=False)
    mortar(site, "init-runonce")
    return site


def test_every_endpoint_and_client_goes_through_the_virtual_address(deployed):
    from tests.integration.test_deploy import connect

    # The internal side by its name (internal_fqdn), which every host and this machine resolve.
    for where in ("this machine", *CONTROLS, "compute1"):
        assert f"ok   {where}: {INTERNAL_FQDN} resolves to {VIP}" in deployed["prechecks"], deployed["prechecks"]
    clouds = yaml.safe_load((deployed["config"] / "clouds.yaml").read_text())["clouds"]["mortar"]
    assert clouds["auth"]["auth_url"] == f"https://{INTERNAL_FQDN}:5000/v3"
    assert clouds["cacert"] == str(deployed["config"] / "certificates" / "ca.crt")
    conn = connect(deployed)
    endpoints = list(conn.identity.endpoints())
    for interface, address in (("internal", INTERNAL_FQDN), ("admin", INTERNAL_FQDN), ("public", EXTERNAL_VIP)):
        urls = [e.url for e in endpoints if e.interface == interface]
        assert urls and all(url.startswith(f"https://{address}:") for url in urls), (interface, urls)
    # The certificates are checked: against the site CA they pass, against the system's CAs
    # they do not, and plain HTTP is not served on either virtual address. Each address has
    # its own certificate (external.pem names the users' address, not the internal one).
    for address in (VIP, EXTERNAL_VIP):
        assert requests.get(f"https://{address}:5000/v3", timeout=10, verify=clouds["cacert"]).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"https://{address}:5000/v3", timeout=10)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://{address}:5000/v3", timeout=10)
        assert requests.get(f"https://{address}/auth/login/", timeout=10, verify=clouds["cacert"]).status_code == 200
    served = {address: ssl.get_server_certificate((address, 5000)) for address in (VIP, EXTERNAL_VIP)}
    assert served[VIP] != served[EXTERNAL_VIP] and covers(served[VIP], INTERNAL_FQDN)
    assert requests.get(f"https://{INTERNAL_FQDN}:5000/v3", timeout=10, verify=clouds["cacert"]).status_code == 200
    assert not covers(served[EXTERNAL_VIP], VIP) and covers(served[EXTERNAL_VIP], EXTERNAL_VIP)
    # A user's client reaches the APIs through the public endpoints, on the users' address.
    assert conn.image.get_endpoint().startswith(f"https://{EXTERNAL_VIP}:9292")
    # Each control host runs the whole control plane; HAProxy and keepalived on each.
    bed = deployed["bed"]
    for node in CONTROLS:
        names = on(bed, node, "docker ps --format '{{.Names}}'").split()
        for name in ("haproxy", "keepalived", "mariadb", "rabbitmq", "memcached", "keystone", "glance_api",
                     "placement_api", "nova_api", "nova_conductor", "neutron_server", "ovn_nb_db", "ovn_sb_db",
                     "ovn_northd"):
            assert name in names, (node, name, names)
    assert len(vip_holder(bed)) == 1
    assert vip_holder(bed) == [n for n in CONTROLS if f" {EXTERNAL_VIP}/32 " in on(bed, n, "ip -4 -o addr show")]
    # Behind HAProxy too (enable_tls_backend), each API speaks HTTPS only, with its host's own
    # certificate (signed by the site CA, naming the host's address).
    addresses = {row["node"]: row["address"] for row in bed.status()}
    for node in CONTROLS:
        for port, path in ((5000, "/v3"), (9292, "/healthcheck"), (8774, "/"), (8778, "/"), (9696, "/"),
                           (8775, "/"), (80, "/auth/login/")):
            url = f"https://{addresses[node]}:{port}{path}"
            assert requests.get(url, timeout=30, verify=clouds["cacert"]).status_code == 200, url
            with pytest.raises(requests.exceptions.ConnectionError):
                requests.get(f"http://{addresses[node]}:{port}{path}", timeout=30)
        assert covers(ssl.get_server_certificate((addresses[node], 5000)), addresses[node])


def test_verify_passes_through_the_virtual_address(deployed):
    out = mortar(deployed, "verify", "--keep-failed").stdout
    assert "0 failed" in out and "FAIL" not in out, out
    assert "guests reachable over SSH" in out


def test_the_clusters_have_every_control_host(deployed):
    bed = deployed["bed"]
    for node in CONTROLS:
        assert galera_size(bed, node) == 3
        assert rabbit_running(bed, node) == [f"rabbit@{n}" for n in CONTROLS]
    for db in ("OVN_Northbound", "OVN_Southbound"):
        status = raft_servers(bed, "control1", db)
        assert status.count("(self)") == 1 and "Role: " in status, status
        assert sum(f"10.213.77.{i}" in status for i in range(11, 14)) >= 3 or status.count("at tcp:") >= 3, status


def test_killing_the_holder_of_the_virtual_address_moves_it_and_loses_nothing(deployed, docker):
    from mortar.verify.checks import wait_active
    from tests.integration.test_deploy import connect

    bed = deployed["bed"]
    conn = connect(deployed)
    server = wait_active(conn, conn.compute.create_server(
        name="ha-kept", image_id=conn.image.find_image("mortar-guest").id,
        flavor_id=conn.compute.find_flavor("m1.tiny").id, networks="none"))
    data = b"kept through a controller's loss\n" * 4096
    image = conn.image.create_image(name="ha-kept-image", data=io.BytesIO(data), disk_format="raw",
                                    container_format="bare", allow_duplicates=True)
    project = conn.identity.create_project(name="ha-kept-project")
    holder = vip_holder(bed)[0]
    with ClientLoop(deployed) as loop:
        time.sleep(5)
        assert not loop.failures(), loop.failures()
        killed_at = time.monotonic()
        node_container(docker, holder).kill()
        deployed["killed"] = holder  # the next test brings it back, whatever this one finds
        survivors = [n for n in CONTROLS if n != holder]
        wait_for("the virtual address moved", lambda: vip_holder(bed, survivors), timeout=120, delay=1)
        wait_for("the APIs answer again", lambda: loop.rounds and not loop.rounds[-1][1] and
                 loop.rounds[-1][0] > killed_at, timeout=300, delay=1)
        time.sleep(30)  # and go on answering
    outage = loop.unavailable(killed_at)
    MEASURED[f"HA: APIs unavailable after killing {holder} (the virtual address's holder)"] = f"{outage:.1f} s"
    assert outage <= 30, f"the APIs were unavailable for {outage:.1f} s (failed rounds, UTC: {loop.failed_at()})"
    last_failure = loop.failures(killed_at)[-1][0] if loop.failures(killed_at) else killed_at
    # Nothing failed after the APIs came back, and the loop kept asking for the 30 s it was
    # given (rounds, not a count of them: a round takes longer than a second on a loaded machine).
    after = [t for t, _ in loop.rounds if t > last_failure]
    assert len(after) >= 5 and after[-1] - after[0] >= 20, f"the loop stopped asking: {len(after)} rounds"
    assert len(vip_holder(bed, survivors)) == 1
    for node in survivors:
        assert galera_size(bed, node) == 2
        assert f"rabbit@{holder}" not in rabbit_running(bed, node)
    assert conn.compute.get_server(server.id).status == "ACTIVE"
    assert hashlib.md5(b"".join(conn.image.download_image(image.id, stream=True).iter_content(65536))).hexdigest() \
        == hashlib.md5(data).hexdigest()
    assert conn.identity.find_project("ha-kept-project").id == project.id


def test_the_killed_host_comes_back_and_rejoins_every_cluster(deployed):
    bed = deployed["bed"]
    holder = deployed["killed"]
    bed.up(LAYOUT, log=lambda _: None, names=NAMES)
    # The host boots: its engine starts (what bootstrap-servers does) and restarts its containers.
    mortar(deployed, "bootstrap-servers", "--limit", holder)
    wait_for("Galera has three members again", lambda: all(galera_size(bed, n) == 3 for n in CONTROLS))
    wait_for("RabbitMQ runs on three nodes again",
             lambda: rabbit_running(bed, holder) == [f"rabbit@{n}" for n in CONTROLS])
    for db in ("OVN_Northbound", "OVN_Southbound"):
        wait_for(f"{db}: the member is back", lambda db=db: "Status: cluster member" in raft_servers(bed, holder, db))
    out = mortar(deployed, "deploy").stdout
    assert "deploy finished" in out or "Nothing to do" in out, out


def test_a_rolling_reconfigure_keeps_the_apis_answering(deployed):
    bed = deployed["bed"]
    (deployed["config"] / "config").mkdir(exist_ok=True)
    (deployed["config"] / "config" / "keystone.conf").write_text("[token]\nexpiration = 43200\n")
    before = {n: on(bed, n, "docker inspect --format '{{.State.StartedAt}}' keystone").strip() for n in CONTROLS}
    with ClientLoop(deployed, timeout=SLOW_BUT_ANSWERING) as loop:
        time.sleep(3)
        out = mortar(deployed, "reconfigure").stdout
        time.sleep(3)
    assert "one host at a time" in out, out
    MEASURED["HA: slowest client round during the rolling reconfigure"] = f"{loop.slowest:.1f} s"
    after = {n: on(bed, n, "docker inspect --format '{{.State.StartedAt}}' keystone").strip() for n in CONTROLS}
    assert all(after[n] != before[n] for n in CONTROLS), (before, after)
    if loop.failures():
        # When each HAProxy took each keystone out and put it back, beside when the client failed.
        asked = "docker logs --timestamps --since 15m haproxy 2>&1 | grep 'Server keystone/' | tail -20"
        seen = {n: bed.run(n, asked, timeout=60).stdout for n in CONTROLS}
        raise AssertionError(f"failed rounds (UTC): {loop.failed_at()}; the reconfigure said: "
                             f"{[line for line in out.splitlines() if 'keystone' in line][:30]}; "
                             f"HAProxy said: {seen}")
    assert len(loop.rounds) > 10


def test_all_control_hosts_stopped_then_deploy_brings_back_every_row(deployed, docker):
    from tests.integration.test_deploy import connect

    bed = deployed["bed"]
    conn = connect(deployed)
    before = sorted(p.name for p in conn.identity.projects())
    for node in CONTROLS:
        node_container(docker, node).stop(timeout=30)
    bed.up(LAYOUT, log=lambda _: None, names=NAMES)
    mortar(deployed, "bootstrap-servers", "--limit", "control")
    clock = time.monotonic()
    mortar(deployed, "deploy")
    MEASURED["HA: deploy after all control hosts stopped"] = f"{time.monotonic() - clock:.1f} s"
    wait_for("Galera has three members", lambda: all(galera_size(bed, n) == 3 for n in CONTROLS))
    conn = connect(deployed)
    assert sorted(p.name for p in conn.identity.projects()) == before
    assert "ha-kept-project" in before
    # Not only keystone's rows: nova's and glance's too (the server and the image made before
    # the controller's kill). The deploy's health checks had each API answering again.
    server = conn.compute.find_server("ha-kept")
    assert server and conn.compute.get_server(server.id).status == "ACTIVE"
    assert conn.image.find_image("ha-kept-image") is not None


def test_mariadb_recovery_starts_the_cluster_again_with_every_row(deployed):
    from tests.integration.test_deploy import connect

    bed = deployed["bed"]
    before = sorted(p.name for p in connect(deployed).identity.projects())
    out = mortar(deployed, "mariadb-recovery").stdout
    for node in CONTROLS:
        assert f"[{node}] stopped mariadb" in out, out
    assert "mariadb-recovery finished" in out, out
    wait_for("Galera has three members", lambda: all(galera_size(bed, n) == 3 for n in CONTROLS))
    assert sorted(p.name for p in connect(deployed).identity.projects()) == before


def test_destroy_removes_every_container_and_volume(deployed):
    bed = deployed["bed"]
    mortar(deployed, "destroy", "--yes-i-really-really-mean-it")
    for node in (*CONTROLS, "compute1"):
        out = on(bed, node, "docker ps -aq --filter label=org.mortar.managed; docker volume ls -q "
                            "--filter label=org.mortar.managed")
        assert out.strip() == "", (node, out)
