#!/usr/bin/env python3
"""Multi-host benchmark: deploys over Ansible on test bed nodes against the all-in-one, in one run.

Prints, for the all-in-one (this machine's engine, local executor) and for test beds of
1 control + N compute hosts (default N = 2 and 4; N = 2 is the 3-host deploy): deploy wall
time with the images already in the registry (pulled by `mortar pull` first, timed apart),
a no-op deploy, a one-option reconfigure (keystone_workers), and the Ansible tasks each
ran; then the ratios the goals are stated in. Needs the core images
(`mortar build --profile core`) and no other mortar deployment on this engine. Starts the
registry on the test bed gateway and pushes to it; removes every deployment, bed and the
registry it made at the end. Compare ratios from one run: these machines are noisy.

With --ha: on a bed of 3 control + 1 compute hosts, the deploy of 1 control + 1 compute hosts
against the deploy of all four with a virtual address served over TLS (HAProxy, keepalived,
Galera, the RabbitMQ and OVN clusters, glance on the bed's shared folder), the memory each control host
uses, and how long the APIs do not answer (a client asking for a token, the images and the
servers once a second) when the control host that holds the virtual address is killed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mortar.testbed.nodes import GATEWAY, Testbed, inventory_text, standard_layout  # noqa: E402

REGISTRY = f"{GATEWAY}:4000"
BED = "bench-mh"
VIP = "10.213.77.71"
HA_LAYOUT = [("control1", ["control"]), ("control2", ["control"]), ("control3", ["control", "network"]),
             ("compute1", ["compute"])]


def mortar(site: Path | None, state: Path, *args: str) -> tuple[float, str, int]:
    """Wall seconds, output and Ansible task count of one mortar command; any failure ends the run
    (no figure is ever printed from a failed or partial command)."""
    env = dict(os.environ, MORTAR_STATE_DIR=str(state), MORTAR_LOG_DIR=str(state / "log"))
    started = time.monotonic()
    extra = ["--config-dir", str(site)] if site else []
    proc = subprocess.run([sys.executable, "-m", "mortar", *args, *extra], cwd=ROOT, capture_output=True, text=True,
                          env=env)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"mortar {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    match = re.search(r"(\d+) Ansible task\(s\)", proc.stdout)
    return wall, proc.stdout, int(match.group(1)) if match else 0


def make_site(root: Path, state: Path, inventory: str | None, extra: dict, registry_site: Path | None = None,
              known_hosts: Path | None = None) -> Path:
    site = root / "etc"
    mortar(site, state, "init")
    (site / "globals.yml").write_text(yaml.safe_dump(extra))
    if inventory is not None:
        (site / "inventory").write_text(inventory)
    if registry_site is not None:
        # The registry's password and CA are the registry site's: every bench site pulls from it.
        shutil.copytree(registry_site / "certificates", site / "certificates")
        password = yaml.safe_load((registry_site / "passwords.yml").read_text())["docker_registry_password"]
        path = site / "passwords.yml"
        path.write_text(yaml.safe_dump({"docker_registry_password": password}))
        path.chmod(0o600)
    if known_hosts is not None:
        shutil.copy(known_hosts, site / "known_hosts")
    mortar(site, state, "genpwd")
    return site


def measure(site: Path, state: Path, label: str) -> dict:
    row: dict = {"setup": label}
    row["deploy"], _, row["deploy_tasks"] = mortar(site, state, "deploy")
    row["noop"], out, row["noop_tasks"] = mortar(site, state, "deploy")
    if "Nothing to do" not in out:
        sys.exit(f"{label}: the no-op deploy changed something:\n{out}")
    globals_path = site / "globals.yml"
    data = yaml.safe_load(globals_path.read_text()) or {}
    data["keystone_workers"] = 3
    globals_path.write_text(yaml.safe_dump(data))
    row["reconfigure"], out, row["reconfigure_tasks"] = mortar(site, state, "reconfigure")
    row["restarted"] = ", ".join(sorted(set(re.findall(r"recreate (\w+)", out)))) or "-"
    mortar(site, state, "destroy", "--yes-i-really-really-mean-it")
    return row


def all_in_one(work: Path) -> dict:
    state = work / "aio-state"
    site = make_site(work / "aio", state, None, {})
    return measure(site, state, "all-in-one")


def multi_host(work: Path, bed: Testbed, nodes: list, computes: int, registry_site: Path) -> dict:
    """A site on the control node and the first COMPUTES compute nodes of the bed."""
    wanted = {"control1", *(f"compute{i}" for i in range(1, computes + 1))}
    chosen = [n for n in nodes if n.name in wanted]
    state = work / f"mh{computes}-state"
    site = make_site(work / f"mh{computes}", state, inventory_text(BED, chosen, bed.key_path),
                     {"docker_registry": REGISTRY}, registry_site, bed.known_hosts_path)
    bootstrap, _, bootstrap_tasks = mortar(site, state, "bootstrap-servers")
    pull, _, _ = mortar(site, state, "pull")
    row = measure(site, state, f"1 control + {computes} compute")
    row.update(bootstrap=bootstrap, pull=pull, bootstrap_tasks=bootstrap_tasks)
    return row


def node_memory(bed: Testbed, node: str) -> float:
    """MiB the node's containers use (their cgroups' usage, page cache excluded as docker stats does)."""
    out = bed.run(node, "docker stats --no-stream --format '{{.MemUsage}}'", timeout=120).stdout
    total = 0.0
    for line in out.splitlines():
        value = line.split("/")[0].strip()
        number, unit = re.match(r"([\d.]+)\s*([KMG]i?B)", value).groups()  # type: ignore[union-attr]
        total += float(number) * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "kB": 1 / 1024, "MB": 1, "GB": 1024}[unit]
    return total


def failover(bed: Testbed, site: Path) -> tuple[str, float]:
    """Kill the node holding the virtual address while a client asks once a second; the seconds
    from the kill to the first answer after which none failed."""
    import threading

    import requests

    cloud = yaml.safe_load((site / "clouds.yaml").read_text())["clouds"]["mortar"]
    auth, cacert = cloud["auth"], cloud.get("cacert", True)
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": auth["username"], "password": auth["password"], "domain": {"name": "Default"}}}},
        "scope": {"project": {"name": auth["project_name"], "domain": {"name": "Default"}}}}}
    rounds: list[tuple[float, bool]] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            began = time.monotonic()
            try:
                token = requests.post(f"{auth['auth_url']}/auth/tokens", json=body, timeout=10, verify=cacert)
                headers = {"X-Auth-Token": token.headers.get("X-Subject-Token", "")}
                scheme = auth["auth_url"].split(":")[0]
                ok = token.status_code == 201 and all(
                    requests.get(url, headers=headers, timeout=10, verify=cacert).status_code == 200
                    for url in (f"{scheme}://{VIP}:9292/v2/images", f"{scheme}://{VIP}:8774/v2.1/servers"))
            except requests.RequestException:
                ok = False
            # A round counts from when it ended: one left hanging on the killed host until the
            # client gave up counts toward the outage even when it began before the kill.
            rounds.append((time.monotonic(), ok))
            stop.wait(max(0.0, 1.0 - (time.monotonic() - began)))

    holder = next(n for n, _ in HA_LAYOUT if f" {VIP}/32 " in bed.run(n, "ip -4 -o addr show", timeout=30).stdout)
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    time.sleep(5)
    killed = time.monotonic()
    subprocess.run(["docker", "kill", f"mortar-testbed-{BED}-{holder}"], check=True, capture_output=True)
    time.sleep(150)
    stop.set()
    thread.join(timeout=30)
    failed = [t for t, ok in rounds if not ok and t >= killed]
    if not failed:
        return holder, 0.0
    good = [t for t, ok in rounds if ok and t > failed[-1]]
    if not good:
        sys.exit(f"the APIs did not answer again within 150 s of killing {holder}")
    return holder, good[0] - killed


def high_availability(work: Path) -> None:
    bed = Testbed(BED)
    try:
        nodes = bed.up(HA_LAYOUT, log=lambda _: None)
        (bed.shared_dir / "glance").mkdir(parents=True, exist_ok=True)
        registry_site = make_site(work / "registry", work / "registry-state", None, {"docker_registry": REGISTRY})
        mortar(registry_site, work / "registry-state", "registry", "start")
        mortar(None, work / "registry-state", "build", "--profile", "core", "^(haproxy|keepalived)$", "--push",
               "--registry", REGISTRY, "--config-dir", str(registry_site))
        rows = {}
        for label, chosen, extra in (
                ("1 control + 1 compute", [n for n in nodes if n.name in ("control3", "compute1")], {}),
                ("3 control + 1 compute", nodes, {
                    "internal_vip_address": VIP, "enable_haproxy": True, "enable_tls_internal": True,
                    "volume_options": {"glance_images": {"type": "none", "o": "bind",
                                                         "device": "/srv/shared/glance"}}})):
            state = work / f"{label.replace(' ', '')}-state"
            (state / "images").mkdir(parents=True, exist_ok=True)
            shutil.copy(work / "registry-state" / "images" / "pushed.json", state / "images" / "pushed.json")
            site = make_site(work / label.replace(" ", ""), state, inventory_text(BED, chosen, bed.key_path),
                             {"docker_registry": REGISTRY, **extra}, registry_site, bed.known_hosts_path)
            if extra:
                mortar(site, state, "certificates")
            mortar(site, state, "bootstrap-servers")
            mortar(site, state, "pull")
            rows[label], _, _ = mortar(site, state, "deploy")
            print(f"{label}: deploy {rows[label]:.1f}s", flush=True)
            if extra:
                mortar(site, state, "post-deploy")
                for node in ("control1", "control2", "control3"):
                    print(f"memory of {node}'s containers: {node_memory(bed, node):.0f} MiB", flush=True)
                holder, outage = failover(bed, site)
                print(f"APIs unavailable after killing {holder} (the virtual address's holder): {outage:.1f}s "
                      "(goal <= 30 s)", flush=True)
                bed.up(HA_LAYOUT, log=lambda _: None)
                mortar(site, state, "bootstrap-servers", "--limit", holder)
            mortar(site, state, "destroy", "--yes-i-really-really-mean-it")
        ratio = rows["3 control + 1 compute"] / rows["1 control + 1 compute"]
        print(f"\n3-control deploy / 1-control deploy: {ratio:.2f}x (goal <= 1.5x)")
    finally:
        subprocess.run([sys.executable, "-m", "mortar", "registry", "stop", "--remove-data", "--address",
                        REGISTRY], cwd=ROOT)
        bed.down(log=lambda _: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--computes", default="2,4", help="compute host counts to measure (default 2,4)")
    parser.add_argument("--skip-aio", action="store_true", help="only the multi-host runs")
    parser.add_argument("--ha", action="store_true", help="only the high-availability run (3 control hosts)")
    args = parser.parse_args()
    if args.ha:
        with tempfile.TemporaryDirectory(prefix="mortar-bench-ha-") as tmp:
            high_availability(Path(tmp))
        return
    counts = [int(c) for c in args.computes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mortar-bench-mh-") as tmp:
        work = Path(tmp)
        scratch = work / "registry-state"
        if not args.skip_aio:
            rows.append(all_in_one(work))
            print(f"all-in-one: {rows[-1]}", flush=True)
        bed = Testbed(BED)
        try:
            nodes = bed.up(standard_layout(1, max(counts), 0), log=lambda _: None)
            registry_site = make_site(work / "registry", scratch, None, {"docker_registry": REGISTRY})
            mortar(registry_site, scratch, "registry", "start")
            push, _, _ = mortar(None, scratch, "build", "--profile", "core", "--push", "--registry", REGISTRY,
                                "--config-dir", str(registry_site))
            print(f"push of the core images to {REGISTRY}: {push:.1f}s (not part of any deploy below)", flush=True)
            for count in counts:
                # Each site pulls the digests the push recorded (they live in the pushing state dir).
                state = work / f"mh{count}-state"
                (state / "images").mkdir(parents=True, exist_ok=True)
                shutil.copy(scratch / "images" / "pushed.json", state / "images" / "pushed.json")
                rows.append(multi_host(work, bed, nodes, count, registry_site))
        finally:
            subprocess.run([sys.executable, "-m", "mortar", "registry", "stop", "--remove-data", "--address",
                            REGISTRY], cwd=ROOT)
            bed.down(log=lambda _: None)
    print(f"\n{'setup':24} {'bootstrap':>9} {'pull':>6} {'deploy':>7} {'no-op':>6} {'reconf':>7}   "
          f"tasks (deploy/no-op/reconf)   restarted by reconfigure")
    for r in rows:
        boot = f"{r['bootstrap']:.1f}" if "bootstrap" in r else "-"
        pull = f"{r['pull']:.1f}" if "pull" in r else "-"
        print(f"{r['setup']:24} {boot:>9} {pull:>6} {r['deploy']:7.1f} {r['noop']:6.1f} {r['reconfigure']:7.1f}   "
              f"{r['deploy_tasks']:>5}/{r['noop_tasks']}/{r['reconfigure_tasks']:<20} {r['restarted']}")
    by = {r["setup"]: r for r in rows}
    aio = by.get("all-in-one")
    three = by.get("1 control + 2 compute")
    if aio and three:
        print(f"\n3-host deploy / all-in-one deploy: {three['deploy'] / aio['deploy']:.2f}x (goal <= 1.5x)")
    if three:
        print(f"no-op multi-host deploy: {three['noop']:.1f}s (goal <= 15 s)")
    measured = sorted(c for c in counts if f"1 control + {c} compute" in by)
    if len(measured) >= 2:
        low, high = measured[0], measured[-1]
        per_host = (by[f"1 control + {high} compute"]["deploy"] - by[f"1 control + {low} compute"]["deploy"]) / (
            high - low)
        print(f"each extra compute host adds {per_host:.1f}s to a deploy (goal <= 10 s; {low} -> {high} computes)")


if __name__ == "__main__":
    main()
