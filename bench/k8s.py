#!/usr/bin/env python3
"""Kubernetes benchmark: the same core set on the all-in-one Docker deploy and on the test
cluster, in one run.

Prints: the all-in-one deploy from built images to a verified cloud (deploy, post-deploy,
init-runonce, verify); on the one-node Kubernetes 1.20 test cluster (`mortar testbed k8s`),
the images copied in, then `mortar k8s apply` of the same set to every pod ready and every
Job complete, and its verify; the ratio of the two; a no-op `mortar k8s apply` (goal: 5 s);
and a one-option keystone.conf change rolled out (only keystone's workload rolls). Uses its
own sites and state; removes both deployments and the cluster at the end (the cluster's
programs stay cached). Needs the core images (`mortar build --profile core`). Compare
ratios from one run: these machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy import DATA_PLANE, ROOT, mortar  # noqa: E402

sys.path.insert(0, str(ROOT))

CORE = ["mariadb-server", "memcached", "rabbitmq", "ovn-northd", "ovn-nb-db", "ovn-sb-db", "keystone", "glance-api",
        "placement-api", "nova-api", "nova-conductor", "nova-scheduler", "nova-compute", "nova-libvirt", "openvswitch",
        "ovn-controller", "neutron-server", "neutron-ovn-metadata-agent", "horizon"]
CLUSTER = "bench"


def timed(what: str, work) -> tuple[float, object]:
    started = time.monotonic()
    result = work()
    return time.monotonic() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namespace", default="mortar", help="image namespace (mortar build --namespace)")
    parser.add_argument("--tag", default="", help="image tag (default: the release)")
    args = parser.parse_args()

    from mortar.engine import connect
    from mortar.releases import releases
    from mortar.testbed.k8scluster import PROVIDER, Cluster

    tag = args.tag or releases().default
    work = Path(tempfile.mkdtemp(prefix="mortar-bench-k8s-"))
    rows: list[tuple[str, float]] = []

    # The all-in-one, on this machine's engine.
    aio, aio_state = work / "aio-etc", work / "aio-state"
    mortar(aio, aio_state, "init")
    (aio / "globals.yml").write_text(yaml.safe_dump({"image_namespace": args.namespace, "image_tag": tag,
                                                     **DATA_PLANE}))
    mortar(aio, aio_state, "genpwd")
    try:
        deploy, _ = mortar(aio, aio_state, "deploy")
        mortar(aio, aio_state, "post-deploy")
        mortar(aio, aio_state, "guest-image", site_args=False)
        runonce, _ = mortar(aio, aio_state, "init-runonce")
        verify, out = mortar(aio, aio_state, "verify")
        if "0 failed" not in out:
            sys.exit(f"all-in-one verify failed:\n{out}")
        rows += [("all-in-one: deploy", deploy), ("all-in-one: deploy to verified", deploy + runonce + verify)]
    finally:
        mortar(aio, aio_state, "destroy", "--yes-i-really-really-mean-it")

    # The same set on the test cluster.
    cluster = Cluster(CLUSTER)
    up, _ = timed("up", lambda: cluster.up(lambda _: None))
    rows.append(("k8s: test cluster up (programs cached)", up))
    site, state = work / "k8s-etc", work / "k8s-state"
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
    mortar(site, state, "init")
    (site / "globals.yml").write_text(yaml.safe_dump({
        "image_namespace": args.namespace, "image_tag": tag, "k8s_service_cidr": "10.213.82.0/24",
        "k8s_volume_dir": str(work / "volumes"), "k8s_image_pull_policy": "Never",
        "neutron_external_interface": "mortar-ext",
        "neutron_external_veth_address": f"{PROVIDER[1]}/{PROVIDER.prefixlen}"}))
    (site / "inventory").write_text(f"[control]\n{cluster.node} api_address={cluster.node_address}\n"
                                    f"[network:children]\ncontrol\n[compute]\n{cluster.node}\n[storage]\n[monitoring]\n")
    mortar(site, state, "genpwd")
    try:
        load, _ = timed("load", lambda: cluster.load_images(connect(), [f"{args.namespace}/{n}:{tag}" for n in CORE],
                                                           lambda _: None))
        rows.append(("k8s: images copied into the cluster", load))
        mortar(site, state, "k8s", "label-nodes")
        plan, _ = mortar(site, state, "k8s", "plan")
        rows.append(("k8s: plan (server-side dry-run of every object)", plan))
        apply, _ = mortar(site, state, "k8s", "apply", "--no-verify")
        mortar(site, state, "k8s", "post-deploy")
        runonce, _ = mortar(site, state, "k8s", "init-runonce")
        verify, out = mortar(site, state, "k8s", "verify")
        if "0 failed" not in out:
            sys.exit(f"verify through the cluster failed:\n{out}")
        rows += [("k8s: apply (every pod ready, every Job complete)", apply),
                 ("k8s: apply to verified", apply + runonce + verify)]
        noop, out = mortar(site, state, "k8s", "apply", "--no-verify")
        if "Nothing to do" not in out:
            sys.exit(f"a second apply changed something:\n{out}")
        rows.append(("k8s: no-op apply (goal 5 s)", noop))
        (site / "config" / "keystone").mkdir(parents=True, exist_ok=True)
        (site / "config" / "keystone" / "keystone.conf").write_text("[token]\nexpiration = 7200\n")
        roll, out = mortar(site, state, "k8s", "apply", "--no-verify")
        rows.append(("k8s: one keystone.conf option rolled out", roll))
        changed = [line for line in out.splitlines() if line.startswith("[") and "changed" in line]
    finally:
        mortar(site, state, "k8s", "destroy", "--yes-i-really-really-mean-it", "--volumes")
        cluster.down(lambda _: None)

    width = max(len(name) for name, _ in rows)
    print(f"{'what':<{width}}  seconds")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.1f}")
    ratio = dict(rows)["k8s: apply to verified"] / dict(rows)["all-in-one: deploy to verified"]
    print(f"k8s apply to verified / all-in-one deploy to verified: {ratio:.2f}x")
    print("rolled by the keystone.conf change: " + "; ".join(changed))


if __name__ == "__main__":
    main()
