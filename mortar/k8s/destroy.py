"""`mortar k8s destroy`: every object of the site goes; its data only when asked.

Per-node agents go first, dependents first: each undoes what it made on its node (the
catalogue's `teardown:` scripts: bridges, veth pairs) in a pod beside it while it still runs,
as the host deploy's destroy runs them inside the container, and then goes. Then the
workloads, Services, Jobs and Secrets that carry the site's label. With volumes: the claims,
mortar's local volumes, their folders on every node, and the namespace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mortar.agent.wire import ServiceState
from mortar.k8s.apply import LISTED, job_done
from mortar.k8s.client import Client
from mortar.k8s.render import MANAGED_BY, SITE, WORKLOAD, Rendered, short_hash
from mortar.k8s.topology import workload_name
from mortar.site.config import Site

Echo = Callable[[str], None]
TEARDOWN_TIMEOUT = 120.0


def _wait_pod(client: Client, namespace: str, name: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = client.get("v1", "Pod", name, namespace) or {}
        phase = pod.get("status", {}).get("phase", "")
        if phase in ("Succeeded", "Failed"):
            return phase
        time.sleep(1)
    return "did not finish"


def agents_last_first(rendered: Rendered) -> list[str]:
    """The per-node agents, dependents first: the reverse of the catalogue's service order, and
    of each service's own order of its containers."""
    assert rendered.desired is not None
    ranking: dict[str, int] = {}
    for service in rendered.desired.order:
        for state in rendered.desired.hosts.values():
            for container in state.services.get(service, ServiceState(service)).containers:
                ranking.setdefault(workload_name(container.name), len(ranking))
    agents = [n for n, w in rendered.workloads.items() if w.kind == "DaemonSet"]
    return sorted(agents, key=lambda n: ranking.get(n, -1), reverse=True)


def remove_agents(client: Client, rendered: Rendered, echo: Echo) -> None:
    """Each per-node agent, dependents first: its teardown script on each of its nodes while it
    still runs, then its DaemonSet and pods, so that nothing still running makes again what
    the teardown removed (a controller would plug its bridge back)."""
    running = {p["metadata"]["labels"].get(WORKLOAD) for p in client.list(
        "v1", "Pod", rendered.namespace, f"{SITE}={rendered.site_id}")}
    for name in agents_last_first(rendered):
        workload = rendered.workloads[name]
        ds = next(o for o in rendered.objects if o["kind"] == "DaemonSet" and o["metadata"]["name"] == name)
        for node, container in sorted(workload.renderings.items()):
            if name not in running or not container.teardown.strip():
                continue
            spec: dict[str, Any] = dict(ds["spec"]["template"]["spec"])
            main = dict(spec["containers"][0])
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                main.pop(probe, None)
            main["command"] = ["/bin/sh", "-ec", container.teardown]
            pod_name = f"{name}-teardown-{short_hash(node)}"
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": pod_name, "namespace": rendered.namespace,
                                "labels": {MANAGED_BY: "mortar", SITE: rendered.site_id}},
                   "spec": {**{k: v for k, v in spec.items() if k not in ("affinity", "initContainers")},
                            "containers": [main], "initContainers": spec.get("initContainers", []),
                            "restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": node}}}
            client.delete("v1", "Pod", pod_name, rendered.namespace)
            client.apply(pod)
            outcome = _wait_pod(client, rendered.namespace, pod_name, TEARDOWN_TIMEOUT)
            echo(f"teardown {name} on {node}: {outcome.lower()}")
            client.delete("v1", "Pod", pod_name, rendered.namespace)
        if client.delete("apps/v1", "DaemonSet", name, rendered.namespace):
            echo(f"deleted DaemonSet {name}")
        deadline = time.monotonic() + TEARDOWN_TIMEOUT
        while client.list("v1", "Pod", rendered.namespace, f"{WORKLOAD}={name}") and time.monotonic() < deadline:
            time.sleep(1)


def destroy(client: Client, site: Site, rendered: Rendered, volumes: bool, echo: Echo) -> None:
    namespace = rendered.namespace
    if client.get("v1", "Namespace", namespace) is not None:
        remove_agents(client, rendered, echo)
    selector = f"{MANAGED_BY}=mortar,{SITE}={site.site_id}"
    kept = () if volumes else ("PersistentVolumeClaim", "PersistentVolume")
    order = ["DaemonSet", "StatefulSet", "Deployment", "Job", "PodDisruptionBudget", "Service", "Secret",
             "PersistentVolumeClaim", "PersistentVolume"]
    kinds = {k: a for a, k in (*LISTED, (rendered.pdb_version, "PodDisruptionBudget"))}
    for kind in order:
        if kind in kept:
            continue
        cluster_wide = kind == "PersistentVolume"
        for obj in client.list(kinds[kind], kind, "" if cluster_wide else namespace, selector):
            if kind == "Job" and not job_done(obj):
                echo(f"stopping Job {obj['metadata']['name']}")
            client.delete(kinds[kind], kind, obj["metadata"]["name"], "" if cluster_wide else namespace)
            echo(f"deleted {kind} {obj['metadata']['name']}")
    if volumes:
        clear_volume_folders(client, site, rendered, echo)
        if client.delete("v1", "Namespace", namespace):
            echo(f"deleted Namespace {namespace}")
        deadline = time.monotonic() + 300
        while client.get("v1", "Namespace", namespace) is not None and time.monotonic() < deadline:
            time.sleep(1)
    else:
        echo("kept the claims and volumes (the data): destroy --volumes deletes them")
    # Pods go with their workloads: wait, so that a following apply starts clean.
    deadline = time.monotonic() + 300
    while client.list("v1", "Pod", namespace, selector) and time.monotonic() < deadline:
        time.sleep(1)


def clear_volume_folders(client: Client, site: Site, rendered: Rendered, echo: Echo) -> None:
    """Remove the site's folder under k8s_volume_dir on every node (local claims and per-node
    agents' volumes), by a pod on each node."""
    root = str(site.globals["k8s_volume_dir"]).rstrip("/")
    nodes = sorted({n for w in rendered.workloads.values() for n in w.nodes})
    for node in nodes:
        name = f"mortar-clear-volumes-{short_hash(node)}"
        image = next(iter(next(iter(rendered.workloads.values())).renderings.values())).image
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": rendered.namespace,
                            "labels": {MANAGED_BY: "mortar", SITE: rendered.site_id}},
               "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": node},
                        "containers": [{"name": "clear", "image": image,
                                        "imagePullPolicy": str(site.globals["k8s_image_pull_policy"]),
                                        "command": ["/bin/sh", "-c", f"rm -rf /volumes/{rendered.namespace}"],
                                        "volumeMounts": [{"name": "volumes", "mountPath": "/volumes"}]}],
                        "volumes": [{"name": "volumes", "hostPath": {"path": root, "type": "DirectoryOrCreate"}}]}}
        client.delete("v1", "Pod", name, rendered.namespace)
        client.apply(pod)
        echo(f"volume folders on {node}: {_wait_pod(client, rendered.namespace, name, 120).lower()}")
        client.delete("v1", "Pod", name, rendered.namespace)
