"""`mortar k8s render`: the site's desired state as Kubernetes objects, from the one catalogue.

The same compute_desired() the host executors use, with the cluster's topology (Service
addresses, pods that bind every address, per-node agents on their node's network), turned
into objects by rules that name no service:

- a container with host `mounts` is a per-node agent: a DaemonSet on the nodes of its group,
  in the node's network, updated OnDelete (mortar replaces its pods node by node, only where
  that node's configuration or image changed, so guests and their network are not cut by a
  rollout); its named volumes are folders of the node;
- any other container with named volumes of data is a StatefulSet with a claim per volume
  (made ahead of it, as its Jobs mount them too); a secret volume (keys from passwords.yml)
  is an empty folder each pod's start program fills from its configuration; the rest
  are Deployments; replicas follow the inventory's placement, with a PodDisruptionBudget from
  two replicas on;
- a container with ports gets a Service with the fixed address its consumers' configuration
  names (and a StatefulSet a headless Service for its pods' names);
- each container's rendered files are one immutable Secret named after the container's
  configuration hash, mounted where mortar-start reads them: a changed file is a new Secret
  name, so exactly that workload rolls (a per-node agent gets one Secret per node, and an init
  container puts its node's files in place);
- each one-shot job is a Job named after the hash of what decides it (its rendered container
  with its files and command, its image's identity, and for `run: always` jobs every
  configuration of its service): a new image or new configuration is a new Job, an unchanged
  one is not run again, and no Job is ever changed in place;
- probes come from the healthchecks (mortar.k8s.probes); resource requests from what the
  all-in-one measured (resources.yaml); nothing secret is in a ConfigMap (there are none)
  or in an environment variable.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mortar.agent.wire import CONFIG_MOUNT, Container, Job
from mortar.deploy.desired import DesiredState, Planner, compute_desired
from mortar.errors import MortarError
from mortar.k8s.probes import probes
from mortar.k8s.topology import ClusterTopology, claimed_volumes, workload_name
from mortar.site.config import Site
from mortar.site.inventory import Inventory

MANAGED_BY = "app.kubernetes.io/managed-by"
PREFIX = "mortar.openstack.org"
SITE = f"{PREFIX}/site"
SERVICE = f"{PREFIX}/service"
WORKLOAD = f"{PREFIX}/workload"
JOB = f"{PREFIX}/job"
PHASE = f"{PREFIX}/phase"
NODE_HASHES = f"{PREFIX}/node-config"  # per-node agents: node -> its configuration and image
IMAGE = f"{PREFIX}/image"
CONFIG = f"{PREFIX}/config"
NODE_FILES = "/var/lib/mortar/nodes"
RESOURCES = Path(__file__).resolve().parent / "resources.yaml"
# Kubernetes versions mortar renders for, and what differs between them.
KUBE_VERSIONS = ("1.20", "1.30")
DEFAULT_KUBE_VERSION = "1.30"


def group_label(site: Site, group: str) -> tuple[str, str]:
    """The node label (key, value) that marks the nodes of an inventory group."""
    for entry in site.globals["k8s_group_labels"]:
        name, _, label = str(entry).partition("=")
        key, _, value = label.partition("=")
        if name == group:
            return key, value
    return f"{PREFIX}/group-{group}", "true"


def short_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def dns_name(text: str) -> str:
    return text.replace("_", "-").replace(".", "-").lower()


@dataclass
class Workload:
    """One container of the catalogue as it runs on the cluster."""

    name: str  # Kubernetes name (the container's, with '-')
    service: str
    kind: str  # Deployment | StatefulSet | DaemonSet
    renderings: dict[str, Container]  # node -> the container rendered for it (one entry for pod workloads)
    nodes: list[str]  # where it runs
    group: str


@dataclass
class Rendered:
    """The objects of a site, and what the apply needs to order and wait for them."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    levels: list[list[str]] = field(default_factory=list)  # services, level by level
    namespace: str = ""
    site_id: str = ""
    pdb_version: str = "policy/v1"
    desired: DesiredState | None = None
    workloads: dict[str, Workload] = field(default_factory=dict)
    jobs: dict[str, tuple[str, str]] = field(default_factory=dict)  # Job name -> (service, phase)

    def of_service(self, service: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["metadata"].get("labels", {}).get(SERVICE) == service]


def resources() -> dict[str, dict[str, str]]:
    data = yaml.safe_load(RESOURCES.read_text()) or {}
    return {str(k): dict(v) for k, v in data.get("containers", {}).items()} | {"": dict(data.get("default", {}))}


class Renderer:
    def __init__(self, site: Site, inventory: Inventory, kube_version: str = DEFAULT_KUBE_VERSION,
                 image_ids: dict[str, str] | None = None) -> None:
        if kube_version not in KUBE_VERSIONS:
            raise MortarError(f"mortar renders for Kubernetes {', '.join(KUBE_VERSIONS)}, not {kube_version}",
                              key="--kube-version", fix=f"choose one of {', '.join(KUBE_VERSIONS)} (API versions "
                                                        "differ from 1.21 on: take 1.30 for any later cluster)")
        self.site, self.inventory, self.kube_version = site, inventory, kube_version
        self.image_ids = dict(image_ids or {})
        self.namespace = str(site.globals["k8s_namespace"])
        self.pdb_version = "policy/v1beta1" if kube_version == "1.20" else "policy/v1"
        self.topology = ClusterTopology(site, inventory)
        self.planner = Planner(site, inventory, topology=self.topology)
        self.requests = resources()

    # ---- common pieces -------------------------------------------------------------------
    def labels(self, service: str, **extra: str) -> dict[str, str]:
        return {MANAGED_BY: "mortar", SITE: self.site.site_id, SERVICE: service, **extra}

    def meta(self, name: str, service: str, labels: dict[str, str] | None = None,
             namespaced: bool = True) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "labels": self.labels(service, **(labels or {}))}
        if namespaced:
            meta["namespace"] = self.namespace
        return meta

    def image_id(self, ref: str) -> str:
        return self.image_ids.get(ref, ref)

    def affinity(self, group: str) -> dict[str, Any]:
        terms = []
        for name in (g.strip() for g in group.split(",")):
            key, value = group_label(self.site, name)
            terms.append({"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]})
        return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}

    def secret(self, name: str, service: str, files: dict[str, str], labels: dict[str, str]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Secret", "metadata": self.meta(name, service, labels),
                "type": "Opaque", "immutable": True,
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(files.items())}}

    def pod_files(self, container: Container) -> tuple[dict[str, str], str]:
        """The files a pod of CONTAINER starts from (its secret volumes' files among them: see
        mortar.deploy.desired.with_secret_files), and the short hash that names them."""
        return container.rendered_files(), container.config_hash[:10]

    def container_spec(self, workload: Workload, container: Container, per_node: bool) -> tuple[dict, list[dict]]:
        """The pod's container for CONTAINER and the pod volumes it needs (its config volume aside)."""
        mounts: list[dict[str, Any]] = [{"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True}]
        volumes: list[dict[str, Any]] = []
        for entry in container.volumes:
            source, target, *mode = entry.split(":")
            mounts.append({"name": dns_name(source), "mountPath": target, "readOnly": bool(mode and mode[0] == "ro")})
            if per_node:
                volumes.append(self.node_folder(dns_name(source), source))
        for i, mount in enumerate(container.mounts):
            name = f"host-{i}"
            seen: dict[str, Any] = {"name": name, "mountPath": mount.target, "readOnly": mount.read_only}
            if mount.propagation in ("rshared", "shared"):
                seen["mountPropagation"] = "Bidirectional"
            elif mount.propagation in ("rslave", "slave"):
                seen["mountPropagation"] = "HostToContainer"
            mounts.append(seen)
            volumes.append({"name": name, "hostPath": {"path": mount.source, "type": "DirectoryOrCreate"}})
        for i, path in enumerate(container.tmpfs):
            mounts.append({"name": f"tmpfs-{i}", "mountPath": path})
            volumes.append({"name": f"tmpfs-{i}", "emptyDir": {"medium": "Memory"}})
        security: dict[str, Any] = {}
        # Kubernetes grants no single device or unmasked /proc without a plugin: such containers
        # run privileged (the engine path gives them exactly what they declare).
        if container.devices or "systempaths=unconfined" in container.security_opt:
            security["privileged"] = True
        caps = {k: v for k, v in (("add", container.cap_add), ("drop", container.cap_drop)) if v}
        if caps:
            security["capabilities"] = caps
        request = self.requests.get(container.name, self.requests[""])
        spec: dict[str, Any] = {
            "name": workload.name, "image": container.image,
            "imagePullPolicy": str(self.site.globals["k8s_image_pull_policy"]),
            "volumeMounts": mounts, "resources": {"requests": request},
            **probes(container.healthcheck, int(self.site.globals["healthcheck_timeout"]))}
        if container.ports and not per_node:
            spec["ports"] = [{"name": f"p{p}", "containerPort": p, "protocol": "TCP"} for p in container.ports]
        if security:
            spec["securityContext"] = security
        return spec, volumes

    def node_folder(self, name: str, volume: str) -> dict[str, Any]:
        root = str(self.site.globals["k8s_volume_dir"]).rstrip("/")
        return {"name": name, "hostPath": {"path": f"{root}/{self.namespace}/{volume}", "type": "DirectoryOrCreate"}}

    def pod_spec(self, workload: Workload, container: Container, config_volume: dict[str, Any],
                 per_node: bool) -> dict[str, Any]:
        main, volumes = self.container_spec(workload, container, per_node)
        spec: dict[str, Any] = {
            "affinity": self.affinity(workload.group), "enableServiceLinks": False,
            "automountServiceAccountToken": False, "terminationGracePeriodSeconds": container.stop_timeout,
            "containers": [main], "volumes": [config_volume, *volumes]}
        if per_node:
            spec.update(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet")
        elif workload.kind == "Deployment":
            spec["hostname"] = workload.name
        if container.pid_mode == "host":
            spec["hostPID"] = True
        if container.ipc_mode == "host":
            spec["hostIPC"] = True
        if container.sysctls:
            spec["securityContext"] = {"sysctls": [{"name": k, "value": v} for k, v in container.sysctls.items()]}
        return spec

    # ---- workloads -------------------------------------------------------------------------
    def workloads(self, desired: DesiredState) -> dict[str, Workload]:
        found: dict[str, Workload] = {}
        for host, state in desired.hosts.items():
            for container in state.containers():
                spec = self.site.services[container.service]
                name = workload_name(container.name)
                if name not in found:
                    per_node = container.name in self.topology.per_node
                    kind = ("DaemonSet" if per_node else "StatefulSet" if container.name in self.topology.stateful
                            else "Deployment")
                    found[name] = Workload(name, container.service, kind, {}, [],
                                           self.planner.group_of(spec, spec.containers[container.name]))
                workload = found[name]
                workload.nodes.append(host)
                if workload.kind == "DaemonSet" or not workload.renderings:
                    workload.renderings[host] = container
                elif container.config_hash != next(iter(workload.renderings.values())).config_hash:
                    raise MortarError(
                        f"{container.name} renders differently on {host} than on {next(iter(workload.renderings))}, "
                        f"but runs as one {workload.kind} on Kubernetes", key=f"config/{container.service}/{host}",
                        file=str(self.site.config_dir / "config"),
                        fix=f"give overrides of {container.service} for every host alike "
                            f"(config/{container.service}/FILE, not config/{container.service}/HOST/FILE)")
        return found

    def pod_workload(self, workload: Workload) -> list[dict[str, Any]]:
        container = next(iter(workload.renderings.values()))
        files, files_hash = self.pod_files(container)
        secret_name = f"{workload.name}-{files_hash}"
        objects = [self.secret(secret_name, workload.service, files, {WORKLOAD: workload.name})]
        claimed = claimed_volumes(self.site.services[container.service], container.volumes)
        config = {"name": "config", "secret": {"secretName": secret_name, "defaultMode": 0o400}}
        template = {"metadata": {"labels": self.labels(workload.service, **{WORKLOAD: workload.name}),
                                 "annotations": {IMAGE: self.image_id(container.image),
                                                 CONFIG: container.config_hash}},
                    "spec": self.pod_spec(workload, container, config, per_node=False)}
        spec: dict[str, Any] = {"replicas": len(workload.nodes),
                                "selector": {"matchLabels": {WORKLOAD: workload.name}}, "template": template}
        if workload.kind == "StatefulSet":
            spec.update(serviceName=f"{workload.name}-pods", podManagementPolicy="Parallel",
                        volumeClaimTemplates=[self.claim(v.split(":", 1)[0]) for v in claimed])
            objects.append({"apiVersion": "v1", "kind": "Service",
                            "metadata": self.meta(f"{workload.name}-pods", workload.service,
                                                  {WORKLOAD: workload.name}),
                            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                                     "selector": {WORKLOAD: workload.name},
                                     "ports": [{"name": f"p{p}", "port": p, "protocol": "TCP"}
                                               for p in container.ports] or [{"name": "none", "port": 1,
                                                                              "protocol": "TCP"}]}})
            for volume in (v.split(":", 1)[0] for v in claimed):
                for replica in range(len(workload.nodes)):
                    # The claims the StatefulSet would make, made first: its Jobs (keys, static
                    # files) mount them before its pods run; the StatefulSet adopts them.
                    claim = self.claim(volume)
                    claim.update(apiVersion="v1", kind="PersistentVolumeClaim")
                    claim["metadata"] = self.meta(f"{dns_name(volume)}-{workload.name}-{replica}", workload.service,
                                                  {WORKLOAD: workload.name})
                    objects.append(claim)
                    if not self.site.globals["k8s_storage_class"]:
                        objects.append(self.local_volume(volume, workload, replica))
        objects.append({"apiVersion": "apps/v1", "kind": workload.kind,
                        "metadata": self.meta(workload.name, workload.service,
                                              {WORKLOAD: workload.name}), "spec": spec})
        if container.ports:
            objects.append({"apiVersion": "v1", "kind": "Service",
                            "metadata": self.meta(workload.name, workload.service,
                                                  {WORKLOAD: workload.name}),
                            "spec": {"clusterIP": self.topology.services[container.name],
                                     "selector": {WORKLOAD: workload.name},
                                     "ports": [{"name": f"p{p}", "port": p, "targetPort": p, "protocol": "TCP"}
                                               for p in container.ports]}})
        if len(workload.nodes) >= 2:
            objects.append({"apiVersion": self.pdb_version, "kind": "PodDisruptionBudget",
                            "metadata": self.meta(workload.name, workload.service,
                                                  {WORKLOAD: workload.name}),
                            "spec": {"minAvailable": 1, "selector": {"matchLabels": {WORKLOAD: workload.name}}}})
        return objects

    def claim(self, volume: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                                "resources": {"requests": {"storage": str(self.site.globals["k8s_volume_size"])}},
                                "storageClassName": str(self.site.globals["k8s_storage_class"])}
        return {"metadata": {"name": dns_name(volume), "labels": {MANAGED_BY: "mortar", SITE: self.site.site_id}},
                "spec": spec}

    def local_volume(self, volume: str, workload: Workload, replica: int) -> dict[str, Any]:
        """A PersistentVolume for one claim of a StatefulSet: a folder on the node placement gives
        that replica, bound to exactly that claim, kept when the claim goes (Retain)."""
        claim = f"{dns_name(volume)}-{workload.name}-{replica}"
        node = workload.nodes[replica]
        root = str(self.site.globals["k8s_volume_dir"]).rstrip("/")
        return {"apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": self.meta(f"{self.namespace}-{claim}", workload.service,
                                      {WORKLOAD: workload.name}, namespaced=False),
                "spec": {"capacity": {"storage": str(self.site.globals["k8s_volume_size"])},
                         "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
                         "storageClassName": "", "volumeMode": "Filesystem",
                         "claimRef": {"namespace": self.namespace, "name": claim},
                         "hostPath": {"path": f"{root}/{self.namespace}/{claim}", "type": "DirectoryOrCreate"},
                         "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                             {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}}

    def node_agent(self, workload: Workload) -> list[dict[str, Any]]:
        """A DaemonSet whose pods take their node's files: every node's Secret is projected into
        the pod under NODE_FILES/NODE, and an init container copies its own node's into place."""
        objects = []
        sources = []
        hashes = {}
        first = next(iter(workload.renderings.values()))
        for node, container in sorted(workload.renderings.items()):
            files, files_hash = self.pod_files(container)
            name = f"{workload.name}-{dns_name(node)}-{files_hash}"
            objects.append(self.secret(name, workload.service, files, {WORKLOAD: workload.name}))
            sources.append({"secret": {"name": name, "items": [
                {"key": f, "path": f"{node}/{f}"} for f in sorted(files)]}})
            hashes[node] = short_hash(container.config_hash, self.image_id(container.image))
        config = {"name": "config", "emptyDir": {"medium": "Memory"}}
        spec = self.pod_spec(workload, first, config, per_node=True)
        spec["volumes"].append({"name": "node-files", "projected": {"sources": sources, "defaultMode": 0o400}})
        spec["initContainers"] = [{
            "name": "node-files", "image": first.image,
            "imagePullPolicy": str(self.site.globals["k8s_image_pull_policy"]),
            "command": ["/bin/sh", "-ec", f'cp -L "{NODE_FILES}/$NODE"/* {CONFIG_MOUNT}/'],
            "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            "volumeMounts": [{"name": "node-files", "mountPath": NODE_FILES, "readOnly": True},
                             {"name": "config", "mountPath": CONFIG_MOUNT}],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]
        spec["containers"][0]["volumeMounts"][0]["readOnly"] = True
        template = {"metadata": {"labels": self.labels(workload.service, **{WORKLOAD: workload.name}),
                                 "annotations": {NODE_HASHES: json.dumps(hashes, sort_keys=True)}},
                    "spec": spec}
        objects.append({"apiVersion": "apps/v1", "kind": "DaemonSet",
                        "metadata": self.meta(workload.name, workload.service,
                                              {WORKLOAD: workload.name}),
                        "spec": {"selector": {"matchLabels": {WORKLOAD: workload.name}},
                                 "updateStrategy": {"type": "OnDelete"}, "template": template}})
        return objects

    # ---- jobs ------------------------------------------------------------------------------
    def job(self, job: Job, host: str, desired: DesiredState, workloads: dict[str, Workload]) -> list[dict[str, Any]]:
        """A Job beside its container: that container's volumes (a per-node agent's node folders, on
        its node and network; a StatefulSet's first claims), its own rendered files."""
        assert job.spec is not None
        container = job.spec
        inputs: list[Any] = [job.inputs, self.image_id(container.image)]
        if job.run == "always":
            inputs.append(sorted(c.config_hash for s in desired.hosts.values() for c in s.containers()
                                 if c.service == job.service))
        files, files_hash = self.pod_files(container)
        if files_hash != container.config_hash[:10]:
            inputs.append(files_hash)  # its secret volumes' files
        name = f"{dns_name(job.name)}-{short_hash(*inputs)}"
        labels = {JOB: dns_name(job.name), PHASE: job.phase}
        objects = [self.secret(name, job.service, files, labels)]
        beside = workloads.get(workload_name(job.container))
        per_node = beside is not None and beside.kind == "DaemonSet"
        main, volumes = self.container_spec(Workload(name, job.service, "Job", {host: container}, [host], ""),
                                            container, per_node=per_node)
        for key in ("ports", "readinessProbe", "livenessProbe", "startupProbe"):
            main.pop(key, None)
        if beside is not None and beside.kind == "StatefulSet":
            volumes += [{"name": dns_name(entry.split(":", 1)[0]), "persistentVolumeClaim": {
                "claimName": f"{dns_name(entry.split(':', 1)[0])}-{beside.name}-0"}}
                for entry in claimed_volumes(self.site.services[job.service], container.volumes)]
        pod: dict[str, Any] = {
            "restartPolicy": "Never", "enableServiceLinks": False, "automountServiceAccountToken": False,
            "containers": [main],
            "volumes": [{"name": "config", "secret": {"secretName": name, "defaultMode": 0o400}}, *volumes]}
        if per_node:
            pod.update(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet",
                       nodeSelector={"kubernetes.io/hostname": host})
        elif job.container in self.topology.services:
            # The container it runs beside answers under its host name too (a broker's node name).
            pod["hostAliases"] = [{"ip": self.topology.services[job.container],
                                   "hostnames": [self.topology.hostname(host, job.container)]}]
        objects.append({"apiVersion": "batch/v1", "kind": "Job",
                        "metadata": self.meta(name, job.service, labels),
                        "spec": {"backoffLimit": 1000 if job.retry_delay > 0 else 0,
                                 "activeDeadlineSeconds": job.timeout,
                                 "template": {"metadata": {"labels": self.labels(job.service, **labels)},
                                              "spec": pod}}})
        return objects

    # ---- the whole site ----------------------------------------------------------------------
    def render(self) -> Rendered:
        desired = compute_desired(self.site, self.inventory, topology=self.topology)
        workloads = self.workloads(desired)
        rendered = Rendered(levels=desired.levels, namespace=self.namespace, site_id=self.site.site_id,
                            pdb_version=self.pdb_version,
                            desired=desired, workloads=workloads)
        rendered.objects.append({"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": self.namespace,
                                              "labels": {MANAGED_BY: "mortar", SITE: self.site.site_id}}})
        for workload in workloads.values():
            rendered.objects += (self.node_agent(workload) if workload.kind == "DaemonSet"
                                 else self.pod_workload(workload))
        for host, state in desired.hosts.items():
            for job in state.jobs():
                if job.phase == "check":
                    continue  # upgrade's preflight only
                objects = self.job(job, host, desired, workloads)
                rendered.jobs[objects[-1]["metadata"]["name"]] = (job.service, job.phase)
                rendered.objects += objects
        return rendered


def render(site: Site, inventory: Inventory, kube_version: str = DEFAULT_KUBE_VERSION,
           image_ids: dict[str, str] | None = None) -> Rendered:
    return Renderer(site, inventory, kube_version, image_ids).render()


def to_files(rendered: Rendered, out: Path) -> list[Path]:
    """One YAML file per object (KIND-NAME.yaml, cluster-wide ones too) and a kustomization.yaml
    listing them in apply order."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for obj in rendered.objects:
        path = out / f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(obj, sort_keys=False))
        path.chmod(0o600)
        written.append(path)
    kustomization = out / "kustomization.yaml"
    kustomization.write_text(yaml.safe_dump({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                                             "resources": [p.name for p in written]}, sort_keys=False))
    return [*written, kustomization]
