"""`mortar verify`: smoke tests through the deployed APIs, with openstacksdk.

Each check creates what it needs, checks it through the API, and deletes it again.
"""

from __future__ import annotations

import hashlib
import http.cookiejar
import os
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PREFIX = "mortar-verify"
# TEST-NET-1 (RFC 5737): documentation addresses; a logical subnet only, no traffic is sent.
SUBNET_CIDR = "192.0.2.0/24"


@dataclass
class Result:
    check: str
    ok: bool
    seconds: float
    detail: str


class Checks:
    def __init__(self, deployment) -> None:
        from mortar.deploy.keystone import connect

        self.deployment = deployment
        self.enabled = deployment.site.enabled
        self.admin = deployment.desired.admin
        self.conn: Any = connect(self.admin)
        self.image_id: str | None = None
        self.network_id: str | None = None
        self.results: list[Result] = []

    def run(self, name: str, func: Callable[[], str]) -> bool:
        started = time.monotonic()
        try:
            detail = func()
            ok = True
        except Exception as exc:  # noqa: BLE001 - every failure is a row in the table
            detail, ok = f"{type(exc).__name__}: {exc}"[:300], False
        self.results.append(Result(name, ok, time.monotonic() - started, detail))
        return ok

    def token(self) -> str:
        token = self.conn.authorize()
        return f"token {token[:8]}… issued"

    def catalogue(self) -> str:
        services = {s.id: s for s in self.conn.identity.services()}
        public = {services[e.service_id].type for e in self.conn.identity.endpoints(interface="public")
                  if e.service_id in services}
        wanted = {"identity"} | {r.type for r in self.deployment.desired.registrations.values()}
        missing = wanted - public
        if missing:
            raise AssertionError(f"no public endpoint for {', '.join(sorted(missing))}")
        return f"{len(wanted)} services with endpoints: {', '.join(sorted(wanted))}"

    def image(self) -> str:
        data = os.urandom(1024 * 1024)
        image = self.conn.image.create_image(name=f"{PREFIX}-image", data=data, disk_format="raw",
                                             container_format="bare", allow_duplicates=True)
        self.image_id = image.id
        self.conn.image.wait_for_status(image, status="active", wait=60)
        if image.id not in {i.id for i in self.conn.image.images()}:
            raise AssertionError("uploaded image not listed")
        response = self.conn.image.download_image(image)
        body = response.content if hasattr(response, "content") else response
        if hashlib.sha256(body).hexdigest() != hashlib.sha256(data).hexdigest():
            raise AssertionError("downloaded bytes differ from the uploaded ones")
        return f"1 MiB uploaded, listed, downloaded, sha256 {hashlib.sha256(data).hexdigest()[:12]} matches"

    def network(self) -> str:
        network = self.conn.network.create_network(name=f"{PREFIX}-net")
        self.network_id = network.id
        subnet = self.conn.network.create_subnet(network_id=network.id, name=f"{PREFIX}-subnet", ip_version=4,
                                                 cidr=SUBNET_CIDR, enable_dhcp=False, gateway_ip=None)
        return f"network {network.id[:8]} and subnet {subnet.cidr} created"

    def _flavor(self):
        flavor = self.conn.compute.find_flavor(f"{PREFIX}-tiny")
        if flavor is None:
            flavor = self.conn.compute.create_flavor(name=f"{PREFIX}-tiny", ram=64, vcpus=1, disk=1)
        return flavor

    def _boot(self, name: str, **network: Any) -> float:
        started = time.monotonic()
        server = self.conn.compute.create_server(name=name, image_id=self.image_id,
                                                 flavor_id=self._flavor().id, **network)
        try:
            self.conn.compute.wait_for_server(server, status="ACTIVE", wait=180, interval=1)
            return time.monotonic() - started
        finally:
            self.conn.compute.delete_server(server)
            self.conn.compute.wait_for_delete(server, wait=120, interval=1)

    def server_no_nic(self) -> str:
        seconds = self._boot(f"{PREFIX}-server", networks="none")
        return f"ACTIVE in {seconds:.1f}s, deleted"

    def server_with_port(self) -> str:
        port = self.conn.network.create_port(network_id=self.network_id, name=f"{PREFIX}-port")
        try:
            seconds = self._boot(f"{PREFIX}-server-port", networks=[{"port": port.id}])
        finally:
            if self.conn.network.find_port(port.id):
                self.conn.network.delete_port(port)
        return f"ACTIVE with a port in {seconds:.1f}s, deleted"

    def compute_hosts(self) -> list[str]:
        return [h for h, state in self.deployment.desired.hosts.items()
                if any(c.name == "nova_compute" for c in state.containers())]

    def every_compute_host(self) -> str:
        """Each compute host is up in nova and placement, and servers land on every one of them."""
        wanted = set(self.compute_hosts())
        up = {s.host for s in self.conn.compute.services(binary="nova-compute") if s.state == "up"}
        if wanted - up:
            raise AssertionError(f"nova-compute not up on {', '.join(sorted(wanted - up))}")
        providers = {p.name for p in self.conn.placement.resource_providers()}
        if wanted - providers:
            raise AssertionError(f"no placement resource provider for {', '.join(sorted(wanted - providers))}")
        flavor = self._flavor()
        landed: dict[str, str] = {}
        servers = []
        try:
            for attempt in range(3 * len(wanted)):
                server = self.conn.compute.create_server(name=f"{PREFIX}-spread-{attempt}", image_id=self.image_id,
                                                         flavor_id=flavor.id, networks="none")
                servers.append(server)
                server = self.conn.compute.wait_for_server(server, status="ACTIVE", wait=180, interval=1)
                landed.setdefault(server.compute_host, server.name)
                if wanted <= set(landed):
                    break
        finally:
            for server in servers:
                self.conn.compute.delete_server(server)
            for server in servers:
                self.conn.compute.wait_for_delete(server, wait=120, interval=1)
        if not wanted <= set(landed):
            raise AssertionError(f"{len(servers)} servers landed only on {', '.join(sorted(landed))}")
        return f"{len(servers)} servers spread over {', '.join(sorted(landed))}, deleted"

    def horizon(self) -> str:
        address = self.deployment.site.globals["api_address"]
        hosts = self.deployment.desired.hosts_running("horizon")
        if hosts:
            address = self.deployment.desired.hosts[hosts[0]].address
        base = f"http://{address}:{self.deployment.site.globals['horizon_port']}"
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(f"{base}/auth/login/", timeout=30)
        if page.status != 200:
            raise AssertionError(f"login page answered {page.status}")
        html = page.read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
        if not token:
            raise AssertionError("no CSRF token on the login page")
        form = {"csrfmiddlewaretoken": token.group(1), "username": self.admin["username"],
                "password": self.admin["password"], "region": "default", "domain": "Default"}
        request = urllib.request.Request(f"{base}/auth/login/", data=urllib.parse.urlencode(form).encode(),
                                         headers={"Referer": f"{base}/auth/login/"})
        landed = opener.open(request, timeout=60)
        if "/auth/login" in landed.url or landed.status != 200:
            raise AssertionError(f"login did not succeed (ended at {landed.url}, {landed.status})")
        return f"login page 200, admin logged in (landed on {urllib.parse.urlparse(landed.url).path})"

    def cleanup(self) -> None:
        try:
            if self.network_id:
                self.conn.network.delete_network(self.network_id)
            if self.image_id:
                self.conn.image.delete_image(self.image_id)
        except Exception:  # noqa: BLE001 - cleanup is best effort; the checks already reported
            pass


def run_smoke_tests(deployment, echo: Callable[[str], None]) -> bool:
    checks = Checks(deployment)
    enabled = deployment.site.enabled
    plan: list[tuple[str, Callable[[], str], bool]] = [
        ("token issued", checks.token, True),
        ("catalogue complete", checks.catalogue, True),
        ("image upload/list/download", checks.image, "glance" in enabled),
        ("network and subnet", checks.network, "neutron" in enabled),
        ("server boots (no NIC)", checks.server_no_nic, {"nova", "glance"} <= enabled),
        ("server boots (with port)", checks.server_with_port, {"nova", "glance", "neutron"} <= enabled),
        ("servers on every compute host", checks.every_compute_host,
         {"nova", "glance"} <= enabled and len(checks.compute_hosts()) > 1),
        ("horizon login", checks.horizon, "horizon" in enabled),
    ]
    try:
        for name, func, wanted in plan:
            if wanted:
                checks.run(name, func)
    finally:
        checks.cleanup()
    width = max(len(r.check) for r in checks.results)
    echo(f"{'check':<{width}}  result  seconds  detail")
    for r in checks.results:
        echo(f"{r.check:<{width}}  {'PASS' if r.ok else 'FAIL':6}  {r.seconds:7.1f}  {r.detail}")
    passed = sum(r.ok for r in checks.results)
    echo(f"{passed} passed, {len(checks.results) - passed} failed")
    return passed == len(checks.results)
