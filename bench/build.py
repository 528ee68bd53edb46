#!/usr/bin/env python3
"""Build benchmark: mortar's cold and no-op builds and image sizes, optionally beside Kolla's.

Prints, in one run:
  - cold build wall time of the Kolla-anchor subset (base, keystone, mariadb-server,
    memcached, rabbitmq and their parents) and of the `core` profile (`--no-cache`, in the
    `mortar-bench` namespace, so the operator's images are untouched);
  - the no-op rebuild wall time of the whole `core` profile (the CLI, end to end);
  - each image's size and the unique on-disk size of the subset and of the core set;
  - with --with-kolla: Kolla 23's cold and unchanged-rerun builds of the same subset on this
    machine (../shared/anchors/kolla-build), its sizes, and the ratios.
Timings on shared machines are noisy: compare the ratios printed by one run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ANCHOR = ROOT.parent / "shared" / "anchors" / "kolla-build"
MORTAR = [str(ROOT / ".venv" / "bin" / "mortar")] if (ROOT / ".venv/bin/mortar").exists() else ["mortar"]
NAMESPACE = "mortar-bench"
# The same services on both sides: keystone (its API and its fernet/credential keys), MariaDB,
# memcached and RabbitMQ. Kolla spreads keystone over five images (keystone-base, keystone,
# keystone-api, keystone-fernet, keystone-ssh; the last distributes keys between controllers,
# which mortar does with volumes and jobs); mortar needs one, plus its build-only python-builder.
SUBSET = ["^base$", "^keystone$", "^mariadb-server$", "^memcached$", "^rabbitmq$"]
KOLLA_NAMES = ["base", "openstack-base", "keystone-base", "keystone", "keystone-api", "keystone-fernet",
               "keystone-ssh", "mariadb-server", "memcached", "rabbitmq"]
SERVICES = {"keystone API + keys": (["keystone"], ["keystone-base", "keystone", "keystone-api", "keystone-fernet",
                                                    "keystone-ssh"]),
            "MariaDB": (["mariadb-server"], ["mariadb-server"]), "memcached": (["memcached"], ["memcached"]),
            "RabbitMQ": (["rabbitmq"], ["rabbitmq"]),
            "shared parents": (["base", "openstack-base", "python-builder (build only)"], ["base", "openstack-base"])}
LAYERDB = Path("/var/lib/docker/image/overlay2/layerdb/sha256")


def timed(cmd: list[str], log: Path) -> tuple[int, float]:
    started = time.monotonic()
    with open(log, "w") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
    return rc, time.monotonic() - started


def inspect(ref: str) -> dict:
    return json.loads(subprocess.check_output(["docker", "image", "inspect", ref]))[0]


def chain_ids(diff_ids: list[str]) -> list[str]:
    chains: list[str] = []
    for i, diff in enumerate(diff_ids):
        chains.append(diff if i == 0 else "sha256:" + hashlib.sha256(f"{chains[-1]} {diff}".encode()).hexdigest())
    return chains


def layer_size(chain: str) -> int:
    try:
        return int((LAYERDB / chain[7:] / "size").read_text())
    except FileNotFoundError:
        return 0


def unique_size(refs: list[str], exclude_first_layer_of: str | None) -> int:
    """Bytes on disk of the union of the images' layers, without the Debian root filesystem."""
    union: dict[str, int] = {}
    for ref in refs:
        for chain in chain_ids(inspect(ref)["RootFS"]["Layers"]):
            union[chain] = layer_size(chain)
    if exclude_first_layer_of:
        union.pop(inspect(exclude_first_layer_of)["RootFS"]["Layers"][0], None)
    return sum(union.values())


def mortar_build(args: list[str], logs: Path, name: str) -> tuple[int, float, dict]:
    summary = logs / f"{name}.json"
    rc, wall = timed(MORTAR + ["build", "--namespace", NAMESPACE, "--logs-dir", str(logs / name),
                               "--summary-json", str(summary)] + args, logs / f"{name}.out")
    data = json.loads(summary.read_text()) if summary.exists() else {"images": []}
    return rc, wall, data


def kolla(logs: Path) -> dict:
    work = Path(os.environ.get("KOLLA_ANCHOR_DIR", "/tmp/kolla-anchor"))
    if subprocess.call(["bash", str(ANCHOR / "setup.sh"), str(work)], stdout=open(logs / "kolla-setup.out", "w"),
                       stderr=subprocess.STDOUT) != 0:
        sys.exit(f"kolla anchor set-up failed: see {logs / 'kolla-setup.out'}")
    reset_kolla()
    results = {}
    for run in ("cold", "rerun"):
        out = subprocess.check_output(["bash", str(ANCHOR / "run-build.sh"), str(work), f"bench-{run}"], text=True)
        match = re.search(r"rc=(\d+) wall=([\d.]+)", out)
        assert match, out
        results[run] = (int(match.group(1)), float(match.group(2)))
    tag = "2026.2-debian-trixie"
    results["sizes"] = {n: inspect(f"kanchor/{n}:{tag}")["Size"] for n in KOLLA_NAMES}
    results["unique"] = unique_size([f"kanchor/{n}:{tag}" for n in KOLLA_NAMES], "kanchor/debian:trixie")
    return results


def reset_kolla() -> None:
    """Remove kanchor/* images (not the Debian base) so Kolla's next build is cold."""
    refs = subprocess.check_output(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "kanchor/*"],
                                   text=True).split()
    refs = [r for r in refs if r != "kanchor/debian:trixie"]
    if refs:
        subprocess.call(["docker", "rmi", "-f", *refs], stdout=subprocess.DEVNULL)
    subprocess.call(["docker", "image", "prune", "-f", "--filter", "dangling=true"], stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--with-kolla", action="store_true", help="also build Kolla 23's images of the subset")
    parser.add_argument("--logs", type=Path, default=Path("/tmp/mortar-bench"))
    parser.add_argument("--skip-core", action="store_true", help="only the subset (faster)")
    parser.add_argument("--mortar-first", action="store_true",
                        help="with --with-kolla: build with mortar before Kolla (default: Kolla first)")
    args = parser.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)

    rows: list[str] = []
    failed: list[str] = []
    order = "mortar, then Kolla" if args.mortar_first else "Kolla, then mortar"
    if args.with_kolla:
        print(f"order of the cold builds: {order} (the second finds the Debian archive's and PyPI's caches warm)")
    kolla_results = kolla(args.logs) if args.with_kolla and not args.mortar_first else None

    rc, subset_wall, subset = mortar_build(["--no-cache", *SUBSET], args.logs, "subset-cold")
    if rc:
        failed.append("mortar cold subset")
    rows.append(f"mortar cold, kolla subset     {subset_wall:7.1f} s  rc={rc}")
    if not args.skip_core:
        rc, core_wall, core = mortar_build(["--no-cache", "--profile", "core"], args.logs, "core-cold")
        rows.append(f"mortar cold, core profile     {core_wall:7.1f} s  rc={rc}")
        if rc:
            failed.append("mortar cold core")
    else:
        core = subset
    rc, noop_wall, noop = mortar_build(["--profile", "core"] if not args.skip_core else SUBSET,
                                       args.logs, "core-noop")
    statuses = sorted({i["status"] for i in noop["images"]})
    rows.append(f"mortar no-op rebuild          {noop_wall:7.1f} s  rc={rc} statuses={statuses}")
    if rc or statuses != ["cached"]:
        failed.append("mortar no-op rebuild (something was rebuilt or failed)")
    if args.with_kolla and args.mortar_first:
        kolla_results = kolla(args.logs)

    print("\n== wall times ==")
    print("\n".join(rows))
    print("\n== mortar image sizes ==")
    for image in core["images"]:
        print(f"{image['name']:16} {image['size'] / 1e6:8.1f} MB  {image['seconds']:6.1f} s  {image['status']}")
    subset_refs = [f"{NAMESPACE}/{i['name']}:{subset['tag']}" for i in subset["images"]
                   if i["name"] != "python-builder"]
    core_refs = [f"{NAMESPACE}/{i['name']}:{core['tag']}" for i in core["images"] if i["name"] != "python-builder"]
    base_ref = subset.get("base_image", "debian:trixie")
    subset_unique = unique_size(subset_refs, base_ref)
    print(f"unique on disk, kolla subset (runtime images, without the Debian rootfs): {subset_unique / 1e6:.1f} MB")
    if not args.skip_core:
        print(f"unique on disk, core set    (runtime images, without the Debian rootfs): "
              f"{unique_size(core_refs, base_ref) / 1e6:.1f} MB")
    keystone = next(i for i in subset["images"] if i["name"] == "keystone")

    print("\n== the same services on both sides ==")
    for service, (ours, theirs) in SERVICES.items():
        print(f"{service:20} mortar: {', '.join(ours):40} kolla: {', '.join(theirs)}")
    if kolla_results:
        cold, rerun = kolla_results["cold"], kolla_results["rerun"]
        if cold[0] or rerun[0]:
            failed.append("kolla build")
        print("\n== kolla 23, same subset, same run ==")
        print(f"kolla cold                    {cold[1]:7.1f} s  rc={cold[0]}")
        print(f"kolla rerun, nothing changed  {rerun[1]:7.1f} s  rc={rerun[0]}")
        for name, size in kolla_results["sizes"].items():
            print(f"kolla {name:16} {size / 1e6:8.1f} MB")
        print(f"kolla unique on disk (without the Debian rootfs): {kolla_results['unique'] / 1e6:.1f} MB")
        if failed:
            sys.exit("no ratio printed: these runs failed: " + ", ".join(failed))
        print(f"\n== ratios (mortar / kolla; {order}) ==")
        print(f"cold build of the subset      {subset_wall / cold[1]:.2f}  (goal <= 0.50)")
        print(f"keystone image                {keystone['size'] / kolla_results['sizes']['keystone-api']:.2f}")
        print(f"unique size of the subset     {subset_unique / kolla_results['unique']:.2f}  (goal <= 0.40)")
        print(f"no-op rebuild vs kolla rerun  {noop_wall / rerun[1]:.3f}")
    if failed:
        sys.exit("these runs failed: " + ", ".join(failed))
    print(f"\nkeystone runtime image: {keystone['size'] / 1e6:.1f} MB (goal <= 450 MB)")
    print(f"no-op rebuild of {'core' if not args.skip_core else 'the subset'}: {noop_wall:.1f} s (goal <= 3 s)")


if __name__ == "__main__":
    main()
