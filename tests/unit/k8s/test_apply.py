"""mortar k8s plan and apply against an in-memory API (the real cluster's test is in tests/integration)."""

from __future__ import annotations

import copy
import json

from mortar.k8s.apply import Applier, contained, masked, plan
from mortar.k8s.render import NODE_HASHES, SERVICE, WORKLOAD, Rendered, render
from mortar.site.config import Site
from mortar.site.inventory import parse_inventory
from tests.unit.k8s.test_render import ONE_NODE


class FakeApi:
    """What mortar asks of the API server: objects by (kind, name); workloads turn ready at once,
    Jobs complete, a DaemonSet's pods appear with its template's annotations."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict] = {}
        self.applied: list[tuple[str, str]] = []
        self.deleted: list[tuple[str, str]] = []
        self.failing_jobs: set[str] = set()
        self.pods_made = 0

    def version(self) -> str:
        return "1.30"

    def apply(self, obj: dict, dry_run: bool = False) -> dict:
        live = copy.deepcopy(obj)
        live["metadata"]["resourceVersion"] = "1"
        live["metadata"].setdefault("generation", 1)
        if dry_run:
            return live
        self.applied.append((obj["kind"], obj["metadata"]["name"]))
        kind = obj["kind"]
        if kind == "Job":
            failed = obj["metadata"]["name"] in self.failing_jobs
            live["status"] = {"conditions": [{"type": "Failed" if failed else "Complete", "status": "True"}]}
        elif kind in ("Deployment", "StatefulSet"):
            n = obj["spec"].get("replicas", 1)
            live["status"] = {"observedGeneration": 1, "readyReplicas": n, "updatedReplicas": n,
                              "currentRevision": "a", "updateRevision": "a"}
        elif kind == "DaemonSet":
            live["status"] = {"observedGeneration": 1, "desiredNumberScheduled": 1, "numberReady": 1}
            self._agent_pod(obj, "node1")
        self.objects[(kind, obj["metadata"]["name"])] = live
        return live

    def _agent_pod(self, ds: dict, node: str) -> None:
        """The DaemonSet's pod on NODE, when it has none (a new one gets a new name, as in a cluster)."""
        workload = ds["metadata"]["name"]
        if any(k == "Pod" and o["metadata"]["labels"].get(WORKLOAD) == workload for (k, _), o in self.objects.items()):
            return
        self.pods_made += 1
        name = f"{workload}-{node}-{self.pods_made}"
        template = ds["spec"]["template"]
        self.objects[("Pod", name)] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": dict(template["metadata"]["labels"]),
                         "annotations": dict(template["metadata"].get("annotations", {}))},
            "spec": {"nodeName": node}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict | None:
        return copy.deepcopy(self.objects.get((kind, name)))

    def list(self, api_version: str, kind: str, namespace: str = "", selector: str = "") -> list[dict]:
        wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
        return [copy.deepcopy(o) for (k, _), o in self.objects.items() if k == kind
                and all(o["metadata"].get("labels", {}).get(key) == value for key, value in wanted.items())]

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "") -> bool:
        self.deleted.append((kind, name))
        gone = self.objects.pop((kind, name), None)
        if kind == "Pod" and gone is not None:  # the DaemonSet makes it again from its current template
            ds = self.objects[("DaemonSet", gone["metadata"]["labels"][WORKLOAD])]
            self._agent_pod(ds, gone["spec"]["nodeName"])
        return gone is not None

    def logs(self, namespace: str, pod: str, tail: int = 40) -> str:
        return "password=s3cr3t-value failed\n"


def rendered(site: Site) -> Rendered:
    return render(site, parse_inventory(ONE_NODE, "inv"))


def apply_all(api: FakeApi, r: Rendered) -> list:
    said: list[str] = []
    changes = Applier(api, r, said.append, ["s3cr3t-value"]).run()  # type: ignore[arg-type]
    return changes


def test_contained_ignores_what_the_server_adds() -> None:
    want = {"spec": {"ports": [{"port": 80}], "x": "a"}}
    assert contained(want, {"spec": {"ports": [{"port": 80, "protocol": "TCP"}], "x": "a", "y": 1}, "status": {}})
    assert not contained(want, {"spec": {"ports": [{"port": 81}], "x": "a"}})
    assert not contained(want, {"spec": {"ports": [{"port": 80}, {"port": 81}], "x": "a"}})
    assert not contained({"a": {"b": 1}}, {"a": 1})
    # The server leaves out what is empty.
    assert contained({"readOnly": False, "storageClassName": "", "x": 1}, {"x": 1})
    assert not contained({"readOnly": True, "x": 1}, {"x": 1})


def test_a_first_apply_creates_runs_and_waits_then_a_second_changes_nothing(site: Site) -> None:
    api, r = FakeApi(), rendered(site)
    changes = apply_all(api, r)
    assert {c.action for c in changes} == {"create", "run"}
    jobs = [name for kind, name in api.applied if kind == "Job"]
    assert len(jobs) == len(r.jobs)
    # Within a service, its jobs ran in the catalogue's order, around its workload.
    keystone = [name.rsplit("-", 1)[0] for name in jobs if name.startswith("keystone-")]
    assert keystone == ["keystone-database", "keystone-db-expand", "keystone-db-migrate",
                        "keystone-bootstrap", "keystone-db-contract"]
    order = api.applied

    def first(kind: str, prefix: str) -> int:
        return next(i for i, (k, n) in enumerate(order) if k == kind and n.startswith(prefix))

    assert first("Job", "keystone-db-migrate-") < first("Deployment", "keystone") \
        < first("Job", "keystone-db-contract-")
    # The database before the identity service: the catalogue's levels.
    assert first("StatefulSet", "mariadb") < first("Job", "keystone-database-") < first("Deployment", "keystone")
    api.applied.clear()
    assert apply_all(api, rendered(site)) == [] and api.applied == []
    assert plan(api, rendered(site)) == []  # type: ignore[arg-type]


def test_a_changed_file_rolls_only_its_workload_and_prunes_the_old_secret(site_dir, services) -> None:
    from mortar.site.config import load_site

    api = FakeApi()
    apply_all(api, rendered(load_site(site_dir, services)))
    old_secrets = {n for k, n in api.objects if k == "Secret" and n.startswith("keystone-")}
    (site_dir / "config" / "keystone").mkdir(parents=True, exist_ok=True)
    (site_dir / "config" / "keystone" / "keystone.conf").write_text("[token]\nexpiration = 7200\n")
    api.applied.clear()
    changes = apply_all(api, rendered(load_site(site_dir, services)))
    changed = {(c.action, c.kind, c.name.rsplit("-", 1)[0] if c.kind in ("Job", "Secret") else c.name)
               for c in changes}
    assert ("change", "Deployment", "keystone") in changed
    assert {c.kind for c in changes if c.action == "change"} == {"Deployment"}
    assert {c.name for c in changes if c.action == "change"} == {"keystone"}
    assert all(c.name.startswith("keystone-") for c in changes if c.action in ("create", "run"))
    pruned = {name for kind, name in api.deleted if kind == "Secret"}
    assert pruned and pruned <= old_secrets
    assert apply_all(api, rendered(load_site(site_dir, services))) == []


def test_a_failed_job_stops_the_apply_with_its_masked_log_and_runs_again(site: Site) -> None:
    import pytest

    from mortar.errors import MortarError

    api, r = FakeApi(), rendered(site)
    failing = next(n for n in r.jobs if n.startswith("keystone-db-expand-"))
    api.failing_jobs.add(failing)
    with pytest.raises(MortarError) as raised:
        apply_all(api, r)
    assert "job keystone-db-expand" in str(raised.value) and "s3cr3t-value" not in str(raised.value)
    assert "keystone" not in {n for k, n in api.objects if k == "Deployment"}, "no pod starts on a failed job"
    api.failing_jobs.clear()
    apply_all(api, rendered(site))
    assert ("Job", failing) in api.deleted, "the failed Job is made again"
    assert ("Deployment", "keystone") in api.objects


def test_an_agent_is_replaced_only_on_the_node_whose_files_changed(site_dir, services) -> None:
    from mortar.site.config import load_site

    api = FakeApi()
    apply_all(api, rendered(load_site(site_dir, services)))
    pods = {o["metadata"]["labels"][WORKLOAD]: n for (k, n), o in api.objects.items() if k == "Pod"}
    pod = api.objects[("Pod", pods["nova-libvirt"])]
    hashes = json.loads(pod["metadata"]["annotations"][NODE_HASHES])
    (site_dir / "config" / "nova").mkdir(parents=True, exist_ok=True)
    (site_dir / "config" / "nova" / "nova.conf").write_text("[DEFAULT]\nreboot_timeout = 0\n")
    api.deleted.clear()
    changes = apply_all(api, rendered(load_site(site_dir, services)))
    assert ("Pod", pods["nova-compute"]) in api.deleted, "nova.conf changed: its agent is replaced"
    assert ("Pod", pods["nova-libvirt"]) not in api.deleted, "the hypervisor (and its guests) keeps running"
    assert json.loads(api.objects[("Pod", pods["nova-libvirt"])]["metadata"]["annotations"][NODE_HASHES]) == hashes
    assert any(c.action == "roll" and c.name == pods["nova-compute"] for c in changes)
    assert apply_all(api, rendered(load_site(site_dir, services))) == []


def test_plan_masks_secret_values() -> None:
    shown = masked({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "uid": "u"},
                    "data": {"a": "czNjcjN0"}})
    assert shown["data"]["a"].startswith("sha256:") and "uid" not in shown["metadata"]


def test_objects_carry_their_service(site: Site) -> None:
    r = rendered(site)
    assert all(o["metadata"]["labels"].get(SERVICE) for o in r.objects if o["kind"] != "Namespace")
