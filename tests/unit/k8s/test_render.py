"""mortar k8s render: objects from the one catalogue, validated against Kubernetes' own schemas."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from mortar.agent.wire import CONFIG_MOUNT, Healthcheck
from mortar.k8s.probes import probes
from mortar.k8s.render import IMAGE, NODE_HASHES, WORKLOAD, Rendered, render, to_files
from mortar.k8s.topology import service_addresses
from mortar.site.config import Site, load_site
from mortar.site.inventory import parse_inventory

ONE_NODE = """\
[control]
node1 api_address=10.213.80.2
[network:children]
control
[compute]
node1
"""
THREE_NODES = """\
[control]
ctl1 api_address=10.0.0.11
ctl2 api_address=10.0.0.12
[network:children]
control
[compute]
cmp1 api_address=10.0.0.21
cmp2 api_address=10.0.0.22
"""
SCHEMAS_1_20 = "v1.20.0-local-strict"


def rendered_for(site: Site, inventory: str, version: str = "1.30", **kw) -> Rendered:
    return render(site, parse_inventory(inventory, "inv"), version, **kw)


def by_key(rendered: Rendered) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in rendered.objects}


def workload(rendered: Rendered, name: str) -> dict:
    return next(o for o in rendered.objects if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet")
                and o["metadata"]["name"] == name)


# ---- schemas -----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def schemas_1_20(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Kubernetes 1.20's strict JSON schemas (from kubernetes-validate 1.20.0 on PyPI, fetched
    once per machine into the cache)."""
    cache = Path(os.environ.get("MORTAR_CACHE_DIR", "/var/cache/mortar")) / "test-data" / "k8s-schemas-1.20"
    if not (cache / "_definitions.json").exists():
        download = tmp_path_factory.mktemp("kubernetes-validate")
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        "--disable-pip-version-check", "kubernetes-validate==1.20.0", "-d", str(download)],
                       check=True, capture_output=True)
        (sdist,) = download.glob("*.tar.gz")
        staging = tmp_path_factory.mktemp("schemas")
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if f"/{SCHEMAS_1_20}/" in m.name and m.isfile()]
            tar.extractall(staging, members=members, filter="data")
        (folder,) = {m.parent for m in staging.rglob("_definitions.json")}
        cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(cache, ignore_errors=True)
        shutil.copytree(folder, cache)
    return cache


def validate_1_20(schemas: Path, obj: dict) -> None:
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    group = obj["apiVersion"].split("/")[0].split(".")[0] if "/" in obj["apiVersion"] else ""
    version = obj["apiVersion"].split("/")[-1]
    name = f"{obj['kind'].lower()}-{group + '-' if group else ''}{version}.json"
    schema = json.loads((schemas / name).read_text())

    def retrieve(uri: str) -> Resource:
        return Resource.from_contents(json.loads((schemas / uri.split("#")[0]).read_text()),
                                      default_specification=DRAFT7)

    validator = jsonschema.Draft7Validator(schema, registry=Registry(retrieve=retrieve))
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    where = f"{obj['kind']} {obj['metadata']['name']}"
    assert not errors, f"{where}: {errors[0].message} at {list(errors[0].absolute_path)}"


@pytest.mark.parametrize("inventory", [ONE_NODE, THREE_NODES], ids=["one-node", "multi-node"])
def test_every_object_validates_strictly_for_1_30_and_later(site: Site, inventory: str) -> None:
    import kubernetes_validate

    rendered = rendered_for(site, inventory)
    for obj in rendered.objects:
        for version in ("1.30.0", kubernetes_validate.latest_version()):
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("inventory", [ONE_NODE, THREE_NODES], ids=["one-node", "multi-node"])
def test_every_object_validates_strictly_for_1_20(site: Site, inventory: str, schemas_1_20: Path) -> None:
    rendered = rendered_for(site, inventory, "1.20")
    assert any(o["apiVersion"] == "policy/v1beta1" for o in rendered.objects) == (inventory == THREE_NODES)
    for obj in rendered.objects:
        validate_1_20(schemas_1_20, obj)


def test_a_validation_failure_is_caught(schemas_1_20: Path, site: Site) -> None:
    import kubernetes_validate

    obj = workload(rendered_for(site, ONE_NODE), "keystone")
    obj["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, "1.30.0", strict=True)
    with pytest.raises(AssertionError, match="volumeMount"):
        validate_1_20(schemas_1_20, obj)


# ---- shapes --------------------------------------------------------------------------------------

def test_workload_kinds_follow_the_catalogue_data(site: Site) -> None:
    rendered = rendered_for(site, THREE_NODES)
    kinds = {o["metadata"]["name"]: o["kind"] for o in rendered.objects
             if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet")}
    # Host mounts: per-node agents; named volumes of data: StatefulSets; the rest Deployments
    # (keystone's volumes hold only keys from passwords.yml).
    assert {n for n, k in kinds.items() if k == "DaemonSet"} == {
        "openvswitch-db", "openvswitch-vswitchd", "ovn-controller", "nova-compute", "nova-libvirt",
        "neutron-ovn-metadata-agent"}
    assert {n for n, k in kinds.items() if k == "StatefulSet"} == {
        "mariadb", "rabbitmq", "glance-api", "horizon", "ovn-nb-db", "ovn-sb-db"}
    assert kinds["keystone"] == "Deployment"
    assert kinds["nova-conductor"] == kinds["neutron-server"] == kinds["memcached"] == "Deployment"
    # Replicas from the placement: two control hosts; budgets where there are two.
    assert workload(rendered, "nova-api")["spec"]["replicas"] == 2
    assert ("PodDisruptionBudget", "nova-api") in by_key(rendered)
    agent = workload(rendered, "nova-libvirt")
    assert agent["spec"]["updateStrategy"] == {"type": "OnDelete"}
    pod = agent["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["containers"][0]["securityContext"]["privileged"] is True
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "mortar.openstack.org/group-compute", "operator": "In",
                                            "values": ["true"]}]}]
    assert json.loads(agent["spec"]["template"]["metadata"]["annotations"][NODE_HASHES]).keys() == {"cmp1", "cmp2"}


def test_services_have_fixed_addresses_the_configuration_names(site: Site) -> None:
    rendered = rendered_for(site, ONE_NODE)
    objects = by_key(rendered)
    keystone_ip = objects[("Service", "keystone")]["spec"]["clusterIP"]
    assert ipaddress.ip_address(keystone_ip) in ipaddress.ip_network("10.96.0.0/12")
    assert rendered.desired.identity["auth_url"] == f"http://{keystone_ip}:5000/v3"
    # The consumer's file names the provider's Service address; the provider binds every address.
    nova = workload(rendered, "nova-api")
    secret = objects[("Secret", nova["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"])]
    conf = base64.b64decode(secret["data"]["nova.conf"]).decode()
    assert f"auth_url = http://{keystone_ip}:5000" in conf
    uwsgi = base64.b64decode(secret["data"]["nova-api-uwsgi.ini"]).decode()
    assert "http-socket = 0.0.0.0:8774" in uwsgi
    # A per-node agent binds and is reached at its node's address.
    assert rendered.desired.hosts["node1"].address == "10.213.80.2"


def test_service_addresses_are_stable_distinct_and_in_range() -> None:
    names = [f"c{i}" for i in range(40)]
    first = service_addresses(names, "10.213.82.0/24")
    assert first == service_addresses(list(reversed(names)), "10.213.82.0/24")
    assert len(set(first.values())) == 40
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network("10.213.82.0/24") and int(a.split(".")[-1]) >= 16
               for a in first.values())
    # Adding a name moves no other one that did not collide with it.
    more = service_addresses([*names, "another"], "10.213.82.0/24")
    assert sum(first[n] != more[n] for n in names) <= 1


def test_config_secrets_mount_where_mortar_start_reads(site: Site) -> None:
    rendered = rendered_for(site, ONE_NODE)
    keystone = workload(rendered, "keystone")
    pod = keystone["spec"]["template"]["spec"]
    assert pod["containers"][0]["volumeMounts"][0] == {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True}
    secret = by_key(rendered)[("Secret", pod["volumes"][0]["secret"]["secretName"])]
    assert secret["immutable"] is True and "spec.json" in secret["data"]
    assert "command" not in pod["containers"][0], "the image's own start program runs"


def test_probes_from_the_healthchecks() -> None:
    http = probes(Healthcheck(test="healthcheck_port 5000 --host 0.0.0.0 --owner uwsgi --http /v3 --status 200"))
    assert http["readinessProbe"]["httpGet"] == {"path": "/v3", "port": 5000}
    assert http["livenessProbe"]["httpGet"] == {"path": "/v3", "port": 5000} and "startupProbe" in http
    # Readiness gates the Service and the apply: asked every 10 s however long the health interval.
    assert (http["readinessProbe"]["periodSeconds"], http["livenessProbe"]["periodSeconds"]) == (10, 30)
    tcp = probes(Healthcheck(test="healthcheck_port 11211 --send 'version\\r\\n' --expect VERSION"))
    assert tcp["readinessProbe"]["tcpSocket"] == {"port": 11211}
    curl = probes(Healthcheck(test="healthcheck_curl http://127.0.0.1:9090/-/ready"))
    assert curl["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": 9090, "scheme": "HTTP"}
    # A broker outage must not restart every pod: readiness only.
    established = probes(Healthcheck(test="healthcheck_established nova-conductor 5672"))
    assert established == {"readinessProbe": {
        "exec": {"command": ["/bin/sh", "-c", "healthcheck_established nova-conductor 5672"]},
        "periodSeconds": 10, "timeoutSeconds": 10, "failureThreshold": 3}}
    assert probes(None) == {}


def test_no_secret_outside_a_secret_and_no_config_map(site: Site) -> None:
    rendered = rendered_for(site, THREE_NODES)
    assert "ConfigMap" not in {o["kind"] for o in rendered.objects}
    secrets = [s for s in rendered.desired.secrets if len(s) >= 8]
    assert secrets
    for obj in rendered.objects:
        if obj["kind"] == "Secret":
            continue
        text = yaml.safe_dump(obj)
        assert not [s for s in secrets if s in text], f"{obj['kind']} {obj['metadata']['name']} holds a secret"


# ---- names by hash ----------------------------------------------------------------------------------

def names(rendered: Rendered, kind: str) -> set[str]:
    return {o["metadata"]["name"] for o in rendered.objects if o["kind"] == kind}


def test_names_by_hash_change_exactly_when_their_inputs_change(site_dir: Path, services) -> None:
    before = rendered_for(load_site(site_dir, services), ONE_NODE)
    again = rendered_for(load_site(site_dir, services), ONE_NODE)
    assert before.objects == again.objects
    (site_dir / "config" / "keystone").mkdir(parents=True, exist_ok=True)
    (site_dir / "config" / "keystone" / "keystone.conf").write_text("[token]\nexpiration = 7200\n")
    after = rendered_for(load_site(site_dir, services), ONE_NODE)
    changed_secrets = names(after, "Secret") - names(before, "Secret")
    assert changed_secrets and all(n.startswith("keystone-") for n in changed_secrets), changed_secrets
    changed = {name for name in ("keystone", "nova-api", "glance-api", "mariadb", "nova-compute")
               if workload(before, name) != workload(after, name)}
    assert changed == {"keystone"}
    new_jobs = names(after, "Job") - names(before, "Job")
    assert new_jobs and all(n.startswith("keystone-") for n in new_jobs), new_jobs
    assert {n.rsplit("-", 1)[0] for n in names(before, "Job") - names(after, "Job")} == {
        n.rsplit("-", 1)[0] for n in new_jobs}


def test_a_new_image_identity_reruns_exactly_its_jobs_and_rolls_its_workloads(site: Site) -> None:
    before = rendered_for(site, ONE_NODE)
    ref = site.image_ref("glance-api")
    after = rendered_for(site, ONE_NODE, image_ids={ref: "sha256:" + "1" * 64})
    new_jobs = names(after, "Job") - names(before, "Job")
    assert {n.rsplit("-", 1)[0] for n in new_jobs} == {"glance-db-expand", "glance-db-migrate", "glance-db-contract"}
    glance = workload(after, "glance-api")
    assert glance["spec"]["template"]["metadata"]["annotations"][IMAGE] == "sha256:" + "1" * 64
    assert [n for n in ("keystone", "nova-api", "horizon") if workload(before, n) != workload(after, n)] == []


def test_run_always_jobs_follow_their_service(site_dir: Path, services) -> None:
    before = rendered_for(load_site(site_dir, services), ONE_NODE)
    (site_dir / "config" / "nova").mkdir(parents=True, exist_ok=True)
    (site_dir / "config" / "nova" / "nova.conf").write_text("[DEFAULT]\nreboot_timeout = 0\n")
    after = rendered_for(load_site(site_dir, services), ONE_NODE)
    discover = [n for n in names(after, "Job") - names(before, "Job") if n.startswith("nova-discover-hosts-")]
    assert discover


def test_files_one_per_object_and_a_kustomization(site: Site, tmp_path: Path) -> None:
    rendered = rendered_for(site, ONE_NODE)
    written = to_files(rendered, tmp_path / "out")
    assert len(written) == len(rendered.objects) + 1
    listed = yaml.safe_load((tmp_path / "out" / "kustomization.yaml").read_text())["resources"]
    assert listed == [p.name for p in written[:-1]]
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in written[:-1])


def test_a_host_specific_override_is_refused_with_the_fix(site_dir: Path, services) -> None:
    from mortar.errors import MortarError

    (site_dir / "config" / "nova" / "ctl2").mkdir(parents=True, exist_ok=True)
    (site_dir / "config" / "nova" / "ctl2" / "nova.conf").write_text("[DEFAULT]\ndebug = true\n")
    with pytest.raises(MortarError) as raised:
        rendered_for(load_site(site_dir, services), THREE_NODES)
    assert "runs as one Deployment" in str(raised.value) and "config/nova/FILE" in raised.value.fix


def test_jobs_beside_a_stateful_container_mount_its_first_claim_and_know_its_name(site: Site) -> None:
    rendered = rendered_for(site, ONE_NODE)
    job = next(o for o in rendered.objects
               if o["kind"] == "Job" and o["metadata"]["name"].startswith("horizon-static-"))
    pod = job["spec"]["template"]["spec"]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["horizon-static-horizon-0"]
    flags = next(o for o in rendered.objects if o["kind"] == "Job"
                 and o["metadata"]["name"].startswith("rabbitmq-feature-flags-"))
    aliases = flags["spec"]["template"]["spec"]["hostAliases"]
    assert aliases == [{"ip": by_key(rendered)[("Service", "rabbitmq")]["spec"]["clusterIP"],
                        "hostnames": ["rabbitmq-0"]}]
    assert workload(rendered, "rabbitmq")["metadata"]["labels"][WORKLOAD] == "rabbitmq"


# ---- secret volumes -----------------------------------------------------------------------------

def test_keys_come_from_passwords_yml_the_same_on_every_replica(site_dir: Path, services) -> None:
    """keystone's key volumes are secret volumes: its pods copy the keys of passwords.yml into
    a folder of their own as they start, so two replicas sign and read the same tokens, and
    no claim holds them."""
    site = load_site(site_dir, services)
    rendered = rendered_for(site, THREE_NODES)
    keystone = workload(rendered, "keystone")
    assert keystone["kind"] == "Deployment" and keystone["spec"]["replicas"] == 2
    assert not [o for o in rendered.objects if o["kind"] == "PersistentVolumeClaim" and "keys" in o["metadata"]["name"]]
    pod = keystone["spec"]["template"]["spec"]
    assert not [v for v in pod["volumes"] if v["name"] != "config"]
    config = next(v for v in pod["volumes"] if v["name"] == "config")["secret"]["secretName"]
    data = {k: base64.b64decode(v).decode() for k, v in by_key(rendered)[("Secret", config)]["data"].items()}
    assert data["keystone_fernet_keys.1"] == site.passwords["keystone_fernet_key_1"]
    assert data["keystone_credential_keys.0"] == site.passwords["keystone_credential_key_0"]
    spec = json.loads(data["spec.json"])
    assert {"source": "keystone_fernet_keys.0", "dest": "/etc/keystone/fernet-keys/0", "owner": "keystone:keystone",
            "mode": "0600"} in spec["files"]
    # The Jobs beside keystone start from the same keys and need no claim either.
    job = next(o for o in rendered.objects
               if o["kind"] == "Job" and o["metadata"]["name"].startswith("keystone-bootstrap-"))
    assert not [v for v in job["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]


def test_a_changed_key_rolls_keystone_and_nothing_else(site_dir: Path, services) -> None:
    from mortar.files import load_yaml
    from mortar.site.config import genpwd

    before = rendered_for(load_site(site_dir, services), ONE_NODE)
    passwords = site_dir / "passwords.yml"
    data = load_yaml(passwords, what="passwords.yml")
    data["keystone_fernet_key_1"] = ""
    passwords.write_text(yaml.safe_dump(data))
    passwords.chmod(0o600)
    genpwd(passwords, {"keystone_fernet_key_1": "fernet"})
    after = rendered_for(load_site(site_dir, services), ONE_NODE)
    changed = {n for n in ("keystone", "nova-api", "glance-api", "mariadb", "horizon")
               if workload(before, n) != workload(after, n)}
    assert changed == {"keystone"}
    assert {n.rsplit("-", 1)[0] for n in names(after, "Secret") - names(before, "Secret")} <= {
        "keystone", "keystone-db-expand", "keystone-db-migrate", "keystone-bootstrap",
        "keystone-db-contract"}
