"""mortar k8s on a real cluster: the one-node Kubernetes 1.20 test cluster (mortar testbed k8s).

One site, in order, through the CLI an operator uses: render (one file per object), label-nodes,
plan (every object accepted by the API server's dry-run, and nothing of it dropped: the 1.20
server keeps only the fields it knows), apply (every Job complete, every workload ready, the
registrations made, then verify, whose guest boots under the cluster's libvirt on the
cluster's Open vSwitch and answers SSH on its floating IP), a second apply that changes
nothing, a keystone.conf override that rolls only keystone's workload and runs only keystone's
Jobs, a new image identity for glance that runs exactly glance's Jobs again, and destroy
--volumes, after which nothing labelled as the site's is left.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml
from keystoneauth1 import exceptions as ksa_exceptions

from mortar.retry import retry
from tests.integration.conftest import MEASURED, NAMESPACE, TAG, built, engine_shared, k8s_evidence, mortar
from tests.integration.test_deploy import CORE

pytestmark = pytest.mark.integration

CLUSTER = "mortar-it"
# The provider network of the cluster's node (its br-ex), reached from this host through the node.
PROVIDER = "10.213.83.0/24"


@pytest.fixture(scope="module")
def cluster():
    from mortar.testbed.k8scluster import Cluster

    cluster = Cluster(CLUSTER)
    try:
        started = time.monotonic()
        cluster.up(lambda line: print(line, flush=True))
        MEASURED["test cluster up (programs built or cached)"] = f"{time.monotonic() - started:.1f} s"
        yield cluster
    finally:
        cluster.down(lambda _: None)


@pytest.fixture(scope="module")
def site(engine, cluster, tmp_path_factory):
    with engine_shared():
        built(engine, CORE, tmp_path_factory.mktemp("k8s-build"))
    root = tmp_path_factory.mktemp("k8s-site")
    data = {"config": root / "etc", "state": root / "state", "log": root / "log", "outputs": [], "cluster": cluster,
            "evidence": k8s_evidence(cluster, "mortar-it")}
    mortar(data, "init")
    (data["config"] / "globals.yml").write_text(yaml.safe_dump({
        "image_namespace": NAMESPACE, "image_tag": TAG, "k8s_namespace": "mortar-it",
        "k8s_service_cidr": "10.213.82.0/24", "k8s_volume_dir": str(root / "volumes"),
        "k8s_image_pull_policy": "Never",
        "neutron_external_interface": "mortar-ext", "neutron_external_veth_address": "10.213.83.1/24"}))
    (data["config"] / "inventory").write_text(
        f"[control]\n{cluster.node} api_address={cluster.node_address}\n[network:children]\ncontrol\n"
        f"[compute]\n{cluster.node}\n[storage]\n[monitoring]\n")
    mortar(data, "genpwd")
    refs = [f"{NAMESPACE}/{name}:{TAG}" for name in CORE]
    with engine_shared():
        cluster.load_images(engine, refs, lambda _: None)
    yield data
    mortar(data, "k8s", "destroy", "--yes-i-really-really-mean-it", "--volumes", check=False, env=kube(data))


def kube(site) -> dict[str, str]:
    return {"KUBECONFIG": str(site["cluster"].kubeconfig)}


def k8s(site, *args: str, check: bool = True):
    return mortar(site, "k8s", *args, check=check, env=kube(site))


def api(site):
    from mortar.k8s.client import Client

    return Client(site["cluster"].kubeconfig)


def labelled(site) -> list[tuple[str, str]]:
    from mortar.k8s.apply import LISTED

    client, site_id = api(site), (site["config"] / "site-id").read_text().strip()
    selector = f"mortar.openstack.org/site={site_id}"
    found = []
    for version, kind in (*LISTED, ("v1", "Pod"), ("policy/v1beta1", "PodDisruptionBudget")):
        namespace = "" if kind == "PersistentVolume" else "mortar-it"
        found += [(kind, o["metadata"]["name"]) for o in client.list(version, kind, namespace, selector)]
    return found


@pytest.fixture(scope="module")
def applied(site):
    out = k8s(site, "render", "--kube-version", "1.20", "--out", str(site["config"].parent / "manifests")).stdout
    site["render"] = out
    site["labels"] = k8s(site, "label-nodes").stdout
    site["plan"] = k8s(site, "plan").stdout
    started = time.monotonic()
    site["apply"] = k8s(site, "apply", "--no-verify").stdout
    MEASURED["k8s apply, full set, first time (no verify)"] = f"{time.monotonic() - started:.1f} s"
    k8s(site, "post-deploy")
    mortar(site, "guest-image", site_args=False)
    k8s(site, "init-runonce")
    return site


def test_render_writes_one_file_per_object(applied):
    manifests = applied["config"].parent / "manifests"
    files = sorted(p.name for p in manifests.glob("*.yaml"))
    assert "kustomization.yaml" in files and len(files) > 100, files
    kinds = {yaml.safe_load((manifests / f).read_text())["kind"] for f in files if f != "kustomization.yaml"}
    assert {"Deployment", "StatefulSet", "DaemonSet", "Job", "Secret", "Service", "PersistentVolume"} <= kinds


def test_the_server_accepts_every_object_and_drops_none_of_it(applied):
    """The 1.20 API server drops fields it does not know without a word: a dry-run that returns
    everything mortar sent shows each object is valid for this version."""
    from mortar.catalogue.loader import load_catalogue
    from mortar.k8s.apply import contained
    from mortar.k8s.render import render
    from mortar.site.config import load_site
    from mortar.site.inventory import load_inventory

    site = load_site(applied["config"], load_catalogue())
    rendered = render(site, load_inventory(applied["config"] / "inventory"), "1.20")
    client = api(applied)
    for obj in rendered.objects:
        returned = client.apply(obj, dry_run=True)
        assert contained(obj, returned), f"the API server dropped part of {obj['kind']} {obj['metadata']['name']}"


def test_apply_ran_every_job_and_every_pod_is_ready(applied):
    client = api(applied)
    jobs = client.list("batch/v1", "Job", "mortar-it")
    assert jobs and all(any(c["type"] == "Complete" and c["status"] == "True"
                            for c in j.get("status", {}).get("conditions", [])) for j in jobs)
    pods = [p for p in client.list("v1", "Pod", "mortar-it") if not p["metadata"].get("labels", {}).get("job-name")]
    assert len(pods) >= 20
    not_ready = [p["metadata"]["name"] for p in pods
                 if not any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]
    assert not not_ready, not_ready
    assert "plan" in applied and "to create" in applied["plan"], applied["plan"]


def test_verify_passes_through_the_cluster(applied):
    out = k8s(applied, "verify", "--keep-failed").stdout
    assert "0 failed" in out and "FAIL" not in out, out
    assert "guests reachable over SSH" in out and f"{applied['cluster'].node}: ACTIVE" in out, out


def test_a_second_apply_changes_nothing(applied):
    started = time.monotonic()
    out = k8s(applied, "apply").stdout
    MEASURED["k8s apply with nothing changed"] = f"{time.monotonic() - started:.1f} s"
    assert "Nothing to do" in out, out
    assert "No changes" in k8s(applied, "plan").stdout


def workloads(site) -> dict[str, str]:
    """Each workload's pod template, as a digest: it changes when the workload rolls."""
    client = api(site)
    found = {}
    for kind in ("Deployment", "StatefulSet", "DaemonSet"):
        for obj in client.list("apps/v1", kind, "mortar-it"):
            found[obj["metadata"]["name"]] = json.dumps(obj["spec"]["template"], sort_keys=True)
    return found


def jobs(site) -> set[str]:
    return {j["metadata"]["name"] for j in api(site).list("batch/v1", "Job", "mortar-it")}


def identity(site):
    """A session on the site's keystone (through its Service address), as clouds.yaml says."""
    import openstack

    config = yaml.safe_load((site["config"] / "clouds.yaml").read_text())["clouds"]["mortar"]
    return openstack.connect(load_yaml_config=False, load_envvars=False, **config["auth"],
                             region_name=config["region_name"], identity_api_version="3")


UNREACHABLE = (ksa_exceptions.ConnectionError, ksa_exceptions.DiscoveryFailure)


def test_one_keystone_override_rolls_only_keystone(applied):
    """The roll replaces keystone's pod; its keys come from passwords.yml, so a token the old pod
    issued is still valid on the new one."""
    issued = identity(applied).session.get_token()
    before, jobs_before = workloads(applied), jobs(applied)
    override = applied["config"] / "config" / "keystone"
    override.mkdir(parents=True, exist_ok=True)
    (override / "keystone.conf").write_text("[token]\nexpiration = 7200\n")
    started = time.monotonic()
    out = k8s(applied, "apply", "--no-verify").stdout
    MEASURED["k8s apply of one keystone.conf option (keystone's Jobs and roll)"] = \
        f"{time.monotonic() - started:.1f} s"
    after = workloads(applied)
    assert {n for n in after if after[n] != before.get(n)} == {"keystone"}, out
    ran = jobs(applied) - jobs_before
    assert ran and all(j.startswith("keystone-") for j in ran), ran
    auth_url = yaml.safe_load((applied["config"] / "clouds.yaml").read_text())["clouds"]["mortar"]["auth"]["auth_url"]
    # The Service reaches the new pod once kube-proxy has its endpoint (a second or so after the roll).
    answer = retry(lambda: identity(applied).session.get(auth_url.rstrip("/") + "/auth/tokens",
                                                         headers={"X-Subject-Token": issued}, raise_exc=False),
                   timeout=60, delay=2, temporary=lambda exc: isinstance(exc, UNREACHABLE),
                   what="the identity service after the roll")
    assert answer.status_code == 200, f"a token issued before the roll: {answer.status_code} {answer.text[:200]}"
    # With the identity service answering, nothing is left to do.
    assert "Nothing to do" in k8s(applied, "apply", "--no-verify").stdout


def test_a_new_image_identity_reruns_exactly_its_jobs(applied, docker, engine):
    """A new glance-api image under the same tag: glance's Jobs run again, glance rolls, nothing else."""
    import io

    ref = f"{NAMESPACE}/glance-api:{TAG}"
    image = docker.images.get(ref)
    # The same image with one more label: a new identity, the same program.
    dockerfile = f"FROM {image.id}\nLABEL org.mortar.test.rebuilt=1\n".encode()
    with engine_shared():
        docker.images.build(fileobj=io.BytesIO(dockerfile), tag=ref, network_mode="host", rm=True)
        applied["cluster"].load_images(engine, [ref], lambda _: None)
    try:
        before, jobs_before = workloads(applied), jobs(applied)
        out = k8s(applied, "apply", "--no-verify").stdout
        after = workloads(applied)
        assert {n for n in after if after[n] != before.get(n)} == {"glance-api"}, out
        ran = {j.rsplit("-", 1)[0] for j in jobs(applied) - jobs_before}
        assert ran == {"glance-db-expand", "glance-db-migrate", "glance-db-contract"}, ran
    finally:
        with engine_shared():
            image.tag(f"{NAMESPACE}/glance-api", TAG)


def test_destroy_leaves_nothing_labelled(applied):
    out = k8s(applied, "destroy", "--yes-i-really-really-mean-it").stdout
    assert "kept the claims and volumes" in out, out
    left = labelled(applied)
    assert left and {kind for kind, _ in left} <= {"PersistentVolumeClaim", "PersistentVolume"}, left
    k8s(applied, "destroy", "--yes-i-really-really-mean-it", "--volumes")
    assert labelled(applied) == []
    # Nothing of the site is left on the node: its network bridges went with the switch's teardown.
    node = applied["cluster"]
    links = subprocess.run(node.in_netns(["ip", "-o", "link", "show"]), capture_output=True, text=True).stdout
    assert "eth0" in links and "br-int" not in links and "br-ex" not in links and "mortar-ext" not in links, links
