"""What an interrupted test run left behind, and the image tags scripts/test.sh built.

    python -m tests.integration.cleanup leftovers   # before a run: sites, beds and the cluster of the tests
    python -m tests.integration.cleanup NAMESPACE   # after it: the image tags under NAMESPACE/

Only what the tests make is touched: sites whose containers run images of a `mortar-test*`
namespace (their containers and volumes, by the site's label), the test beds named in
tests/integration, test_ha's marked lines of /etc/hosts and the Kubernetes test cluster. An
image another tag still names stays.
"""

from __future__ import annotations

import os
import sys

from mortar.engine import connect

TEST_NAMESPACE_PREFIX = "mortar-test"
SITE = "org.mortar.site"
# The provider network of the all-in-one test sites (tests/integration/test_deploy.py, test_upgrade.py).
PROVIDER_INTERFACE = "mortar-ext"
PROVIDER_VETH_ADDRESS = "10.213.78.1/24"


def leftovers() -> int:
    import docker

    from mortar.testbed.k8scluster import Cluster
    from mortar.testbed.nodes import Testbed
    from tests.integration import test_ha, test_k8s, test_multihost, test_testbed

    client = docker.from_env()
    sites = {c.labels[SITE] for c in client.containers.list(all=True, filters={"label": SITE})
             if (c.attrs["Config"].get("Image") or "").startswith(TEST_NAMESPACE_PREFIX)}
    for site in sorted(sites):
        containers = client.containers.list(all=True, filters={"label": f"{SITE}={site}"})
        for container in containers:
            container.remove(force=True)
        volumes = client.volumes.list(filters={"label": f"{SITE}={site}"})
        for volume in volumes:
            volume.remove(force=True)
        print(f"removed a test site left running: {site} ({len(containers)} containers, {len(volumes)} volumes)")
    if sites:
        _remove_provider_veth()
    for bed in (test_testbed.BED, test_multihost.BED, test_ha.BED):
        Testbed(bed).down(log=lambda _: None)
    test_ha.forget_names()  # the lines test_ha adds to this machine's /etc/hosts
    # The test beds' registries (their sites' CA and password went with the run).
    from mortar.registry.server import name_for

    for address in (test_multihost.REGISTRY, test_ha.REGISTRY):
        name = name_for(address)
        for container in client.containers.list(all=True, filters={"name": name}):
            if container.name == name:
                container.remove(force=True)
                print(f"removed a test registry left running: {name}")
        for volume in client.volumes.list(filters={"name": name}):
            if volume.name == name:
                volume.remove(force=True)
    Cluster(test_k8s.CLUSTER).down(lambda _: None)
    return 0


def _remove_provider_veth() -> None:
    """The provider veth of the all-in-one test sites (its teardown did not run): only when its
    host end holds the tests' address."""
    import subprocess

    shown = subprocess.run(["ip", "-o", "addr", "show", "dev", f"{PROVIDER_INTERFACE}-host"],
                           capture_output=True, text=True).stdout
    if f" inet {PROVIDER_VETH_ADDRESS} " in shown:
        subprocess.run(["ip", "link", "del", PROVIDER_INTERFACE], check=True)
        print(f"removed the test sites' provider veth {PROVIDER_INTERFACE}")


def untag(namespace: str) -> int:
    if os.environ.get("MORTAR_KEEP_TEST_IMAGES") == "1":
        print(f"kept the image tags of {namespace}/ (MORTAR_KEEP_TEST_IMAGES=1)")
        return 0
    engine = connect()
    removed = kept = 0
    for image in engine.images():
        for ref in image.tags:
            if ref.startswith(f"{namespace}/"):
                try:
                    engine.untag(ref)
                    removed += 1
                except Exception as exc:  # a container still runs it: reported, not fatal
                    print(f"kept {ref}: {exc}")
                    kept += 1
    print(f"removed {removed} image tag(s) of {namespace}/" + (f", kept {kept}" if kept else ""))
    return 0


if __name__ == "__main__":
    sys.exit(leftovers() if sys.argv[1] == "leftovers" else untag(sys.argv[1]))
