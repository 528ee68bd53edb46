"""The library of check kinds that services name in their `verify:` section.

Each kind is a function over a shared context (an admin connection, the desired state, and
the resources checks create and clean up) and the parameters the service gave it. A kind
knows APIs (identity, image, compute, network, HTTP), never which service serves them.
"""

from __future__ import annotations

import hashlib
import http.cookiejar
import json
import os
import re
import ssl
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mortar.cloud.runonce import DEMO_NETWORK, EXTERNAL_NETWORK, GUEST_FLAVOR, GUEST_IMAGE, GUEST_USER

PREFIX = "mortar-verify"
# TEST-NET-1 (RFC 5737): documentation addresses; a logical subnet only, no traffic is sent.
SUBNET_CIDR = "192.0.2.0/24"
# nova itself waits up to vif_plugging_timeout (300 s) for the port to be plugged: verify waits longer.
WAIT = 330


class Context:
    """What checks share: one admin connection, and what they made (deleted at the end)."""

    def __init__(self, deployment: Any, keep_failed: bool = False) -> None:
        from mortar.deploy.identity import connect

        self.deployment = deployment
        self.keep_failed = keep_failed  # a guest that fails its check stays, for the operator to look at
        self.identity = deployment.desired.identity
        self.conn: Any = connect(self.identity)
        self._image: Any = None
        self._network: Any = None
        self._flavor: Any = None

    def tls(self) -> ssl.SSLContext:
        """What an HTTPS check trusts: the site CA when the site has one, else the system's."""
        return ssl.create_default_context(cafile=self.identity.get("cacert") or None)

    def image(self) -> Any:
        """A 1 MiB raw image, uploaded once; its bytes are kept to compare."""
        if self._image is None:
            data = os.urandom(1024 * 1024)
            image = self.conn.image.create_image(name=f"{PREFIX}-image", data=data, disk_format="raw",
                                                 container_format="bare", allow_duplicates=True)
            self.conn.image.wait_for_status(image, status="active", wait=60)
            self._image = (image, data)
        return self._image

    def network(self) -> Any:
        if self._network is None:
            network = self.conn.network.create_network(name=f"{PREFIX}-net")
            subnet = self.conn.network.create_subnet(network_id=network.id, name=f"{PREFIX}-subnet", ip_version=4,
                                                     cidr=SUBNET_CIDR, enable_dhcp=False, gateway_ip=None)
            self._network = (network, subnet)
        return self._network

    def flavor(self) -> Any:
        if self._flavor is None:
            self._flavor = (self.conn.compute.find_flavor(f"{PREFIX}-tiny")
                            or self.conn.compute.create_flavor(name=f"{PREFIX}-tiny", ram=64, vcpus=1, disk=1))
        return self._flavor

    def cleanup(self) -> None:
        for step in (lambda: self._network and self.conn.network.delete_network(self._network[0].id),
                     lambda: self._image and self.conn.image.delete_image(self._image[0].id)):
            try:
                step()
            except Exception:  # noqa: BLE001 - cleanup is best effort; the checks already reported
                pass


@dataclass
class Kind:
    run: Callable[[Context, dict[str, Any]], str]
    params: dict[str, bool] = field(default_factory=dict)  # name -> required
    applies: Callable[[Context, dict[str, Any]], bool] = lambda ctx, params: True
    help: str = ""


def token(ctx: Context, params: dict[str, Any]) -> str:
    issued = ctx.conn.authorize()
    return f"token {issued[:8]}… issued"


def catalogue(ctx: Context, params: dict[str, Any]) -> str:
    services = {s.id: s for s in ctx.conn.identity.services()}
    public = {services[e.service_id].type for e in ctx.conn.identity.endpoints(interface="public")
              if e.service_id in services}
    wanted = {"identity"} | {r.type for r in ctx.deployment.desired.registrations.values()}
    missing = wanted - public
    if missing:
        raise AssertionError(f"no public endpoint for {', '.join(sorted(missing))}")
    return f"{len(wanted)} services with endpoints: {', '.join(sorted(wanted))}"


def image_roundtrip(ctx: Context, params: dict[str, Any]) -> str:
    image, data = ctx.image()
    if image.id not in {i.id for i in ctx.conn.image.images()}:
        raise AssertionError("uploaded image not listed")
    response = ctx.conn.image.download_image(image)
    body = response.content if hasattr(response, "content") else response
    if hashlib.sha256(body).hexdigest() != hashlib.sha256(data).hexdigest():
        raise AssertionError("downloaded bytes differ from the uploaded ones")
    return f"1 MiB uploaded, listed, downloaded, sha256 {hashlib.sha256(data).hexdigest()[:12]} matches"


def network(ctx: Context, params: dict[str, Any]) -> str:
    net, subnet = ctx.network()
    return f"network {net.id[:8]} and subnet {subnet.cidr} created"


def wait_active(conn: Any, server: Any, wait: float = WAIT, interval: float = 1) -> Any:
    """SERVER once ACTIVE; an AssertionError that names nova's fault (its message and the last
    line of its details) when it went to ERROR instead, and a timeout as openstacksdk says it."""
    import openstack.exceptions

    try:
        return conn.compute.wait_for_server(server, status="ACTIVE", wait=wait, interval=interval)
    except openstack.exceptions.ResourceFailure:
        fault = conn.compute.get_server(server.id).fault or {}
        details = (fault.get("details") or "").strip().splitlines()
        raise AssertionError(f"server {server.name} ({server.id}) went to ERROR: "
                             f"{fault.get('message') or 'no fault recorded'}"
                             + (f" [{details[-1][:300]}]" if details else "")) from None


def _boot(ctx: Context, name: str, **nics: Any) -> Any:
    image, _ = ctx.image()
    server = ctx.conn.compute.create_server(name=name, image_id=image.id, flavor_id=ctx.flavor().id, **nics)
    return server, wait_active(ctx.conn, server)


def _delete(ctx: Context, servers: list[Any]) -> None:
    for server in servers:
        ctx.conn.compute.delete_server(server)
    # A guest under software emulation on a busy host takes its time to go (nova stops the
    # domain, unplugs the port and waits for neutron): as long as a boot may take.
    for server in servers:
        ctx.conn.compute.wait_for_delete(server, wait=WAIT, interval=1)


def server_boot(ctx: Context, params: dict[str, Any]) -> str:
    started = time.monotonic()
    nic = params.get("nic", "none")
    if nic == "port":
        net, _ = ctx.network()
        port = ctx.conn.network.create_port(network_id=net.id, name=f"{PREFIX}-port")
        try:
            server, _ = _boot(ctx, f"{PREFIX}-server-port", networks=[{"port": port.id}])
            _delete(ctx, [server])
        finally:
            if ctx.conn.network.find_port(port.id):
                ctx.conn.network.delete_port(port)
        return f"ACTIVE with a port in {time.monotonic() - started:.1f}s, deleted"
    server, _ = _boot(ctx, f"{PREFIX}-server", networks="none")
    try:
        return f"ACTIVE in {time.monotonic() - started:.1f}s, deleted"
    finally:
        _delete(ctx, [server])


def _hosts_of(ctx: Context, params: dict[str, Any]) -> list[str]:
    return ctx.deployment.desired.hosts_of_container(str(params["hosts_of"]))


def server_spread(ctx: Context, params: dict[str, Any]) -> str:
    """Servers land on every host of a container (booted until each host has one)."""
    wanted = set(_hosts_of(ctx, params))
    landed: dict[str, str] = {}
    servers = []
    try:
        for attempt in range(3 * len(wanted)):
            server, active = _boot(ctx, f"{PREFIX}-spread-{attempt}", networks="none")
            servers.append(server)
            landed.setdefault(active.compute_host, active.name)
            if wanted <= set(landed):
                break
    finally:
        _delete(ctx, servers)
    if not wanted <= set(landed):
        raise AssertionError(f"{len(servers)} servers landed only on {', '.join(sorted(landed))}")
    return f"{len(servers)} servers spread over {', '.join(sorted(landed))}, deleted"


def form_login(ctx: Context, params: dict[str, Any]) -> str:
    """A Django login form (CSRF token, then POST) logs the admin in."""
    url = str(params["url"])
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar),
                                         urllib.request.HTTPSHandler(context=ctx.tls()))
    page = opener.open(url, timeout=30)
    if page.status != 200:
        raise AssertionError(f"login page answered {page.status}")
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.read().decode())
    if not found:
        raise AssertionError("no CSRF token on the login page")
    form = {"csrfmiddlewaretoken": found.group(1), "username": ctx.identity["admin_username"],
            "password": ctx.identity["admin_password"], "region": "default", "domain": "Default"}
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), headers={"Referer": url})
    landed = opener.open(request, timeout=60)
    if urllib.parse.urlparse(url).path in landed.url or landed.status != 200:
        raise AssertionError(f"login did not succeed (ended at {landed.url}, {landed.status})")
    return f"login page 200, admin logged in (landed on {urllib.parse.urlparse(landed.url).path})"


def scrape_targets(ctx: Context, params: dict[str, Any]) -> str:
    """A metrics server speaking the Prometheus HTTP API scrapes every expected target, all up."""
    url = str(params["url"]).rstrip("/") + "/api/v1/targets?state=active"
    expected = int(params["expect"])
    deadline = time.monotonic() + float(params.get("wait", 90))
    while True:
        with urllib.request.urlopen(url, timeout=15, context=ctx.tls()) as answer:
            targets = json.load(answer)["data"]["activeTargets"]
        up = [t for t in targets if t.get("health") == "up"]
        if len(targets) >= expected and len(up) == len(targets):
            jobs = sorted({t.get("labels", {}).get("job", "?") for t in targets})
            return f"{len(up)}/{expected} targets up ({', '.join(jobs)})"
        if time.monotonic() > deadline:
            down = [f"{t.get('scrapeUrl')}: {t.get('lastError') or t.get('health')}" for t in targets
                    if t.get("health") != "up"]
            raise AssertionError(f"{len(up)} of {expected} expected targets up ({len(targets)} known); "
                                 + "; ".join(down[:3]))
        time.sleep(3)


def _guest_ready(ctx: Context) -> bool:
    """The cloud has what init-runonce makes: the guest image and the external network."""
    return (ctx.conn.image.find_image(GUEST_IMAGE) is not None
            and ctx.conn.network.find_network(EXTERNAL_NETWORK) is not None)


def _console_until(ctx: Context, server: Any, marker: str, wait: float, where: str = "") -> str:
    """The server's console once MARKER shows on it; WHERE (its port, its host) goes in the failure."""
    deadline = time.monotonic() + wait
    while True:
        output = ctx.conn.compute.get_server_console_output(server).get("output", "")
        if marker in output:
            return output
        if time.monotonic() > deadline:
            said = [line for line in output.splitlines() if "mortar-guest" in line]
            rounds = [line for line in said if "round" in line][-1:]  # what the NIC carried while it asked
            tail = "\n".join(dict.fromkeys(rounds + said[-2:]))[-400:]
            raise AssertionError(f"{server.name}{where}: no '{marker}' on the console after {wait:.0f}s; "
                                 f"seen: {tail!r}")
        time.sleep(2)


def ssh_to_guest(key: Path, address: str, command: str, wait: float) -> str:
    """COMMAND's output over SSH as the guest image's user, retried until WAIT seconds have passed."""
    argv = ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"{GUEST_USER}@{address}",
            command]
    deadline = time.monotonic() + wait
    while True:
        proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        if proc.returncode == 0:
            return proc.stdout
        if time.monotonic() > deadline:
            raise AssertionError(f"ssh {GUEST_USER}@{address} `{command}` failed: {proc.stderr.strip()[-200:]}")
        time.sleep(3)


def guest_ssh(ctx: Context, params: dict[str, Any]) -> str:
    """A real guest on every host of a container: ACTIVE, port ACTIVE, DHCP lease and metadata
    on its console, SSH on a floating IP from here; guests on two hosts reach each other."""
    conn = ctx.conn
    hosts = _hosts_of(ctx, params)
    image = conn.image.find_image(GUEST_IMAGE)
    flavor = conn.compute.find_flavor(GUEST_FLAVOR) or ctx.flavor()
    network = conn.network.find_network(DEMO_NETWORK)
    public = conn.network.find_network(EXTERNAL_NETWORK)
    if network is None:
        raise AssertionError(f"no network {DEMO_NETWORK} (run `mortar init-runonce`)")
    timings: list[str] = []
    servers: list[Any] = []
    ips: list[Any] = []
    with tempfile.TemporaryDirectory() as scratch:
        key = Path(scratch) / "id"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        keypair = conn.compute.create_keypair(name=f"{PREFIX}-key-{os.getpid()}",
                                              public_key=(Path(scratch) / "id.pub").read_text())
        try:
            started = time.monotonic()
            for host in hosts:
                # Pinned to the host (admin's ZONE:HOST form) when there are several to cover.
                pinned = {"availability_zone": f"{params['zone']}:{host}"} if len(hosts) > 1 else {}
                servers.append(conn.compute.create_server(
                    name=f"{PREFIX}-guest-{host}", image_id=image.id, flavor_id=flavor.id, key_name=keypair.name,
                    networks=[{"uuid": network.id}], **pinned))
            fixed: list[str] = []
            for index, server in enumerate(servers):
                server = servers[index] = wait_active(conn, server)
                active = time.monotonic() - started
                port = next(iter(conn.network.ports(device_id=server.id)))
                deadline = time.monotonic() + 60
                while port.status != "ACTIVE" and time.monotonic() < deadline:
                    time.sleep(1)
                    port = conn.network.get_port(port.id)
                if port.status != "ACTIVE":
                    raise AssertionError(f"{server.name}: port {port.id[:8]} is {port.status}")
                fixed.append(port.fixed_ips[0]["ip_address"])
                _console_until(ctx, server, "mortar-guest: metadata instance-id=" + server.id, WAIT,
                               f" (port {port.id} {port.mac_address} on {server.compute_host})")
                booted = time.monotonic() - started
                ip = conn.network.create_ip(floating_network_id=public.id, port_id=port.id)
                ips.append(ip)
                answer = ssh_to_guest(key, ip.floating_ip_address, "hostname", 120)
                timings.append(f"{server.compute_host}: ACTIVE {active:.0f}s, metadata {booted:.0f}s, "
                               f"ssh {time.monotonic() - started:.0f}s as {answer.strip()}")
            if len(servers) > 1:
                ssh_to_guest(key, ips[0].floating_ip_address, f"ping -c 3 -W 2 {fixed[1]}", 60)
                timings.append(f"{hosts[0]} reached {hosts[1]} over the tenant network")
        except Exception as exc:
            if ctx.keep_failed:
                ips, servers = [], []
                raise AssertionError(f"{exc} (its guests are kept: {PREFIX}-guest-*)") from exc
            raise
        finally:
            for ip in ips:
                conn.network.delete_ip(ip)
            _delete(ctx, servers)
            conn.compute.delete_keypair(keypair)
    return "; ".join(timings)


KINDS: dict[str, Kind] = {
    "token": Kind(token, help="the identity service issues the admin a token"),
    "catalogue": Kind(catalogue, help="every registered service has a public endpoint"),
    "image_roundtrip": Kind(image_roundtrip, help="an image uploads, lists and downloads byte for byte"),
    "network": Kind(network, help="a network and a subnet are created"),
    "server_boot": Kind(server_boot, {"nic": False}, help="a server reaches ACTIVE (nic: none or port)"),
    "server_spread": Kind(server_spread, {"hosts_of": True}, lambda ctx, p: len(_hosts_of(ctx, p)) > 1,
                          help="servers land on every host of a container (when there are several)"),
    "guest_ssh": Kind(guest_ssh, {"hosts_of": True, "zone": True}, lambda ctx, p: _guest_ready(ctx),
                      help="a real guest per host: DHCP, metadata, SSH on a floating IP (after init-runonce)"),
    "form_login": Kind(form_login, {"url": True}, help="the admin logs in through a web login form"),
    "scrape_targets": Kind(scrape_targets, {"url": True, "expect": True, "wait": False},
                           help="a metrics server scrapes every expected target, all up"),
}
