"""What the high-availability tests of the test bed ask of a site behind a virtual address: which
control host holds the address, the clusters' members, and an operator's client that asks the
APIs through the address once a second while a host is killed or the control plane restarts."""

from __future__ import annotations

import json
import threading
import time

import requests
import yaml

from mortar.testbed.nodes import Testbed

VIP = "10.213.77.70"
EXTERNAL_VIP = "10.213.77.71"  # the users' side: the public endpoints, its own certificate
CONTROLS = ("control1", "control2", "control3")


def on(bed: Testbed, node: str, command: str, timeout: float = 120) -> str:
    out = bed.run(node, command, timeout=timeout)
    assert out.returncode == 0, (node, command, out.stdout, out.stderr)
    return out.stdout


def vip_holder(bed: Testbed, nodes: tuple[str, ...] | list[str] = CONTROLS) -> list[str]:
    return [n for n in nodes if f" {VIP}/32 " in bed.run(n, "ip -4 -o addr show", timeout=30).stdout]


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


def wait_for(what: str, check, timeout: float = 600, delay: float = 5):
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


def cluster_logs(bed: Testbed, nodes: tuple[str, ...] = CONTROLS) -> str:
    """What each control host's MariaDB and RabbitMQ said of their clusters' members (views,
    suspicions, partitions), for a failure's message."""
    said = "WSREP: (view|.*suspect|.*non-prim|.*partition|.*evict)|node down|nodedown|partial partition"
    sections = []
    for node in nodes:
        for container in ("mariadb", "rabbitmq"):
            out = bed.run(node, f"docker logs --timestamps --tail 3000 {container} 2>&1 | grep -E -i '{said}' "
                                f"| tail -15", timeout=60)
            sections.append(f"== {container} on {node}\n{out.stdout.strip()}")
    return "\n".join(sections)
