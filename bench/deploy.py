#!/usr/bin/env python3
"""Deploy benchmark: all-in-one wall times and memory, in one run.

Prints: deploy wall time from built images to a verified cloud for the keystone-only set
(mariadb, memcached, rabbitmq, keystone) and for the full core set; a no-op deploy; a
reconfigure after one keystone.conf option change (and which containers restarted); the
memory of the running cloud (docker stats). Uses its own site directory and state
directory; destroys its deployment at the end unless --keep. Needs the core images
(`mortar build --profile core`). Compare ratios from one run: these machines are noisy.
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


def mortar(site: Path, state: Path, *args: str) -> tuple[float, str]:
    """Wall seconds and output of one mortar command; a failure ends the run, so no figure is
    ever printed from a failed or partial command."""
    env = dict(os.environ, MORTAR_STATE_DIR=str(state), MORTAR_LOG_DIR=str(state / "log"))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "mortar", *args, "--config-dir", str(site)], cwd=ROOT,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mortar-bench-deploy"))
    parser.add_argument("--keep", action="store_true", help="leave the full cloud running at the end")
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

    (site / "globals.yml").write_text("{}\n")
    deploy, _ = mortar(site, state, "deploy")
    post, _ = mortar(site, state, "post-deploy")
    verify, out = mortar(site, state, "verify")
    rows.append(f"full core set:     deploy {deploy:6.1f} s + verify {verify:4.1f} s = {deploy + post + verify:6.1f} s")
    print(out)

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

    total, lines = memory_mib()
    print("== memory of the running cloud (docker stats) ==")
    print("\n".join(lines))
    rows.append(f"memory of the running cloud: {total:.0f} MiB ({total / 1024:.2f} GiB)")
    print("\n== deploy benchmark ==")
    print("\n".join(rows))
    print(json.dumps({"rows": rows}))
    if not args.keep:
        mortar(site, state, "destroy", "--yes-i-really-really-mean-it")


if __name__ == "__main__":
    main()
