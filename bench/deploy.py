#!/usr/bin/env python3
"""Deploy benchmark: all-in-one wall times and memory, in one run.

Prints: deploy wall time from built images to a verified cloud for the keystone-only set
(mariadb, memcached, rabbitmq, keystone) and for the full core set with its data plane
(libvirt/QEMU, Open vSwitch, ovn-controller, the metadata agent); with --baseline REV, the
full set as mortar at REV deploys it (a git worktree, same images), and the ratio; a no-op
deploy; a reconfigure after one keystone.conf option change (and which containers
restarted); a real guest from boot to SSH on its floating IP (under the virtualisation
libvirt detected: kvm or qemu/TCG); the memory of the running cloud with that guest
running (docker stats). Uses its own site directory and state directory; destroys its
deployment at the end unless --keep. Needs the core images (`mortar build --profile
core`). Compare ratios from one run: these machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
KEYSTONE_ONLY = {"enable_glance": False, "enable_placement": False, "enable_nova": False,
                 "enable_neutron": False, "enable_ovn": False, "enable_horizon": False}


# The provider network on a veth pair mortar makes (the sample globals.yml's setting).
DATA_PLANE = {"neutron_external_interface": "mortar-ext", "neutron_external_veth_address": "10.213.78.1/24"}


def mortar(site: Path, state: Path, *args: str, code: Path = ROOT, site_args: bool = True) -> tuple[float, str]:
    """Wall seconds and output of one mortar command (of the tree at CODE); a failure ends the
    run, so no figure is ever printed from a failed or partial command."""
    env = dict(os.environ, MORTAR_STATE_DIR=str(state), MORTAR_LOG_DIR=str(state / "log"), PYTHONPATH=str(code))
    started = time.monotonic()
    extra = ["--config-dir", str(site)] if site_args else []
    proc = subprocess.run([sys.executable, "-m", "mortar", *args, *extra], cwd=code,
                          capture_output=True, text=True, env=env)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"mortar {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return wall, proc.stdout


def started_at() -> dict[str, str]:
    out = subprocess.check_output(["docker", "ps", "--filter", "label=org.mortar.managed",
                                   "--format", "{{.Names}}"], text=True).split()
    result = {}
    for name in out:
        result[name] = subprocess.check_output(["docker", "inspect", "-f", "{{.State.StartedAt}}", name],
                                               text=True).strip()
    return result


def memory_mib() -> tuple[float, list[str]]:
    """Memory of mortar's own containers (label org.mortar.managed), whatever else runs here."""
    names = subprocess.check_output(["docker", "ps", "-q", "--filter", "label=org.mortar.managed"], text=True).split()
    if not names:
        sys.exit("no mortar container runs: nothing to measure")
    rows = subprocess.check_output(["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *names],
                                   text=True).splitlines()
    units = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}
    total, lines = 0.0, []
    for row in rows:
        name, usage = row.split(" ", 1)
        amount = usage.split("/")[0].strip()
        for unit, factor in sorted(units.items(), key=lambda u: -len(u[0])):
            if amount.endswith(unit):
                mib = float(amount[: -len(unit)]) * factor
                break
        total += mib
        lines.append(f"  {name:16} {mib:8.1f} MiB")
    return total, lines


def baseline_deploy(rev: str, work: Path) -> float:
    """Deploy seconds of the full set as mortar at REV deploys it, from the same images."""
    tree = work / f"baseline-{rev}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True,
                       capture_output=True)
    site, state = work / f"baseline-{rev}-etc", work / f"baseline-{rev}-state"
    mortar(site, state, "init", code=tree)
    mortar(site, state, "genpwd", code=tree)
    (site / "globals.yml").write_text("{}\n")
    try:
        deploy, _ = mortar(site, state, "deploy", code=tree)
    finally:
        mortar(site, state, "destroy", "--yes-i-really-really-mean-it", code=tree)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
    return deploy


def guest_running(site: Path):
    """Boot one guest on the demo network (init-runonce's) and return (connection, server)."""
    import openstack

    from mortar.verify.checks import wait_active

    cloud = yaml.safe_load((site / "clouds.yaml").read_text())["clouds"]["mortar"]
    conn = openstack.connect(load_yaml_config=False, load_envvars=False, **cloud["auth"],
                             region_name=cloud["region_name"], identity_api_version="3")
    server = conn.compute.create_server(name="mortar-bench-guest", image_id=conn.image.find_image("mortar-guest").id,
                                        flavor_id=conn.compute.find_flavor("m1.tiny").id,
                                        networks=[{"uuid": conn.network.find_network("demo-net").id}])
    server = wait_active(conn, server)
    deadline = time.monotonic() + 300
    while "mortar-guest: ssh ready" not in conn.compute.get_server_console_output(server).get("output", ""):
        if time.monotonic() > deadline:
            sys.exit("the benchmark's guest never got to 'ssh ready'")
        time.sleep(2)
    return conn, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mortar-bench-deploy"))
    parser.add_argument("--keep", action="store_true", help="leave the full cloud running at the end")
    parser.add_argument("--baseline", metavar="REV", default="",
                        help="also deploy the full set with mortar at git revision REV (e.g. the last one before "
                             "the data plane, 4229e52) and print the ratio")
    args = parser.parse_args()
    site, state = args.work / "etc", args.work / "state"
    site.mkdir(parents=True, exist_ok=True)
    mortar(site, state, "init")
    mortar(site, state, "genpwd")
    mortar(site, state, "destroy", "--yes-i-really-really-mean-it")
    rows = []

    (site / "globals.yml").write_text(yaml.safe_dump(KEYSTONE_ONLY))
    deploy, _ = mortar(site, state, "deploy")
    mortar(site, state, "post-deploy")
    verify, out = mortar(site, state, "verify")
    rows.append(f"keystone-only set: deploy {deploy:6.1f} s + verify {verify:4.1f} s = {deploy + verify:6.1f} s")
    mortar(site, state, "destroy", "--yes-i-really-really-mean-it")

    baseline = baseline_deploy(args.baseline, args.work) if args.baseline else 0.0

    (site / "globals.yml").write_text(yaml.safe_dump(DATA_PLANE))
    deploy, _ = mortar(site, state, "deploy")
    post, _ = mortar(site, state, "post-deploy")
    mortar(site, state, "guest-image", site_args=False)
    runonce, _ = mortar(site, state, "init-runonce")
    verify, out = mortar(site, state, "verify")
    rows.append(f"full core set with the data plane: deploy {deploy:6.1f} s + init-runonce {runonce:4.1f} s "
                f"+ verify {verify:4.1f} s = {deploy + post + runonce + verify:6.1f} s")
    if baseline:
        rows.append(f"full set as {args.baseline} deploys it (fake compute driver, no data plane): {baseline:6.1f} s; "
                    f"with the data plane {deploy / baseline:.2f}x that")
    print(out)
    virt = subprocess.run(["docker", "exec", "nova_libvirt", "cat", "/run/libvirt/mortar-virt-type"],
                          capture_output=True, text=True).stdout.strip() or "?"
    guest = next((line for line in out.splitlines() if line.startswith("guests reachable over SSH")), "")
    rows.append(f"guest boot to SSH on its floating IP (virt_type {virt}): "
                f"{guest.split('PASS', 1)[-1].strip() if guest else 'no guest check ran'}")

    before = started_at()
    noop, out = mortar(site, state, "deploy")
    if "Nothing to do" not in out or started_at() != before:
        sys.exit(f"the no-op deploy changed something:\n{out}")
    rows.append(f"no-op deploy:      {noop:6.1f} s  ({out.strip().splitlines()[0]})")

    before = started_at()
    override = site / "config" / "keystone"
    override.mkdir(parents=True, exist_ok=True)
    (override / "keystone.conf").write_text("[token]\nexpiration = 7200\n")
    reconf, _ = mortar(site, state, "reconfigure")
    after = started_at()
    restarted = sorted(n for n in after if before.get(n) != after[n])
    rows.append(f"one-option reconfigure: {reconf:6.1f} s, restarted: {', '.join(restarted)}")
    (override / "keystone.conf").unlink()
    mortar(site, state, "reconfigure")

    conn, server = guest_running(site)
    try:
        total, lines = memory_mib()
    finally:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=120, interval=1)
    print("== memory of the running cloud with one guest (docker stats) ==")
    print("\n".join(lines))
    rows.append(f"memory of the running cloud with one guest: {total:.0f} MiB ({total / 1024:.2f} GiB)")
    print("\n== deploy benchmark ==")
    print("\n".join(rows))
    print(json.dumps({"rows": rows}))
    if not args.keep:
        mortar(site, state, "destroy", "--yes-i-really-really-mean-it")


if __name__ == "__main__":
    main()
