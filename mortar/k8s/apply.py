"""`mortar k8s plan | apply | destroy`: the rendered objects against a live cluster.

What runs is observed, never remembered: every object of the site carries the site's label,
so one listing per kind shows what the cluster has. An object is unchanged when everything
mortar renders is already in the live object (the cluster adds defaults and status around
it); only changed objects are applied, with server-side apply (field manager `mortar`).

apply goes through the catalogue's levels like the host deploy: a level's registrations with
the identity service, its Secrets, its provision and `before` Jobs (each run to completion, in
order), its workloads (waited for until ready; per-node agents replaced node by node, only
where that node's configuration or image changed), then its `after` Jobs. A Job that exists
has run (its name is the hash of its inputs); one that failed is made again. Objects of the
site that are no longer rendered are pruned at the end: finished Jobs of old hashes, Secrets
no workload names any more, workloads and Services of disabled services. Claims and volumes
(the data) go only with `destroy --volumes`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from mortar.agent.masking import redact
from mortar.errors import MortarError
from mortar.k8s.client import ApiError, Client
from mortar.k8s.render import JOB, MANAGED_BY, NODE_HASHES, SERVICE, SITE, WORKLOAD, Rendered

Echo = Callable[[str], None]
ROLLOUT_TIMEOUT = 900.0
POLL = 1.0
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
# Listed to see what the site has; claims and volumes are listed but never pruned.
LISTED = (("v1", "Secret"), ("v1", "Service"), ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"),
          ("apps/v1", "DaemonSet"), ("batch/v1", "Job"), ("v1", "PersistentVolume"),
          ("v1", "PersistentVolumeClaim"))
KEPT = {"PersistentVolume", "PersistentVolumeClaim", "Namespace"}
NOISE = ("managedFields", "resourceVersion", "uid", "generation", "creationTimestamp", "selfLink")


def key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def contained(want: Any, have: Any) -> bool:
    """Everything in WANT is in HAVE (mappings by key, lists item by item, scalars equal). An
    empty value (false, "", [], {}) matches an absent key: the server omits them."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(contained(v, have[k]) if k in have else v in (False, "", [], {}, None)
                                              for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and all(map(contained, want, have))
    return want == have


def masked(obj: dict[str, Any]) -> dict[str, Any]:
    """OBJ without server bookkeeping, a Secret's values as digests: fit to print."""
    shown = json.loads(json.dumps(obj))
    for name in NOISE:
        shown.get("metadata", {}).pop(name, None)
    shown.get("metadata", {}).get("annotations", {}).pop("kubectl.kubernetes.io/last-applied-configuration", None)
    shown.pop("status", None)
    if shown.get("kind") == "Secret":
        shown["data"] = {k: "sha256:" + hashlib.sha256(v.encode()).hexdigest()[:12]
                         for k, v in (shown.get("data") or {}).items()}
    return shown


@dataclass
class Change:
    action: str  # create | change | run | prune | roll
    kind: str
    name: str
    service: str = ""
    reasons: list[str] = field(default_factory=list)
    diff: str = ""

    def line(self) -> str:
        why = f": {'; '.join(self.reasons)}" if self.reasons else ""
        return f"{self.action:7} {self.kind} {self.name}{why}"


@dataclass
class Observed:
    objects: dict[tuple[str, str], dict[str, Any]]
    pods: list[dict[str, Any]]


def observe(client: Client, rendered: Rendered) -> Observed:
    selector = f"{MANAGED_BY}=mortar,{SITE}={rendered.site_id}"
    found: dict[tuple[str, str], dict[str, Any]] = {}
    namespace = client.get("v1", "Namespace", rendered.namespace)
    if namespace is not None:
        namespace.setdefault("kind", "Namespace")
        found[("Namespace", rendered.namespace)] = namespace
    for api_version, kind in (*LISTED, (rendered.pdb_version, "PodDisruptionBudget")):
        cluster_wide = kind == "PersistentVolume"
        if namespace is None and not cluster_wide:
            continue
        for obj in client.list(api_version, kind, "" if cluster_wide else rendered.namespace, selector):
            found[(kind, obj["metadata"]["name"])] = obj
    pods = client.list("v1", "Pod", rendered.namespace, selector) if namespace is not None else []
    return Observed(found, pods)


def node_rolls(rendered: Rendered, observed: Observed, name: str) -> list[tuple[str, str]]:
    """(node, pod) of a per-node agent's pods whose node's configuration or image is not the desired one."""
    ds = next(o for o in rendered.objects if key(o) == ("DaemonSet", name))
    wanted = json.loads(ds["spec"]["template"]["metadata"]["annotations"][NODE_HASHES])
    stale = []
    for pod in observed.pods:
        if pod["metadata"].get("labels", {}).get(WORKLOAD) != name or pod["metadata"].get("deletionTimestamp"):
            continue
        node = pod["spec"].get("nodeName", "")
        have = json.loads(pod["metadata"].get("annotations", {}).get(NODE_HASHES, "{}")).get(node)
        if have != wanted.get(node):
            stale.append((node, pod["metadata"]["name"]))
    return stale


def job_done(job: dict[str, Any]) -> str:
    """'' while a Job runs, else 'Complete' or 'Failed'."""
    for condition in job.get("status", {}).get("conditions", []) or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return str(condition["type"])
    return ""


def plan(client: Client, rendered: Rendered, dry_run: bool = True) -> list[Change]:
    """What apply would do, each object checked by the API server (server-side dry-run) when it
    would be created or changed."""
    observed = observe(client, rendered)
    changes: list[Change] = []
    # The server checks namespaced objects only in a namespace that exists: before the site's is
    # made, they are checked in the one every cluster has.
    fresh = ("Namespace", rendered.namespace) not in observed.objects
    for obj in rendered.objects:
        live = observed.objects.get(key(obj))
        service = obj["metadata"].get("labels", {}).get(SERVICE, "")
        if live is not None and obj["kind"] == "Job":
            done = job_done(live)
            if done == "Failed":
                changes.append(Change("run", "Job", obj["metadata"]["name"], service, ["it failed: made again"]))
            elif not done:
                changes.append(Change("run", "Job", obj["metadata"]["name"], service, ["still running: waited for"]))
            continue
        if live is not None and contained(obj, live):
            continue
        checked = obj
        if dry_run:
            sent = obj
            if fresh and "namespace" in obj["metadata"]:
                sent = {**obj, "metadata": {**obj["metadata"], "namespace": "default"}}
            checked = client.apply(sent, dry_run=True)
        if live is None:
            action = "run" if obj["kind"] == "Job" else "create"
            changes.append(Change(action, obj["kind"], obj["metadata"]["name"], service,
                                  ["its inputs are new"] if action == "run" else []))
            continue
        diff = "\n".join(difflib.unified_diff(
            yaml.safe_dump(masked(live), sort_keys=True).splitlines(),
            yaml.safe_dump(masked(checked), sort_keys=True).splitlines(), "live", "rendered", lineterm="", n=1))
        changes.append(Change("change", obj["kind"], obj["metadata"]["name"], service, [], diff))
    for name, workload in rendered.workloads.items():
        if workload.kind == "DaemonSet" and ("DaemonSet", name) in observed.objects:
            for node, pod in node_rolls(rendered, observed, name):
                changes.append(Change("roll", "Pod", pod, workload.service, [f"the agent on {node} changed"]))
    wanted = {key(o) for o in rendered.objects}
    for (kind, name), live in sorted(observed.objects.items()):
        if (kind, name) in wanted or kind in KEPT:
            continue
        if kind == "Job" and not job_done(live):
            continue  # an older run still going: pruned once finished
        changes.append(Change("prune", kind, name, live["metadata"].get("labels", {}).get(SERVICE, ""),
                              ["no longer rendered"]))
    return changes


def print_plan(changes: list[Change], echo: Echo) -> None:
    if not changes:
        echo("No changes: every object is as rendered.")
        return
    counts: dict[str, int] = {}
    for change in changes:
        counts[change.action] = counts.get(change.action, 0) + 1
        echo(f"  {change.service or '-':10} {change.line()}")
        for line in change.diff.splitlines()[:40]:
            echo(f"      {line}")
    echo(", ".join(f"{n} to {a}" for a, n in counts.items()))


@dataclass
class Registrations:
    """The identity service's side of the apply: which services' registrations are missing or
    differ (none while the identity service does not answer yet), and registering them."""

    pending: Callable[[], dict[str, list[str]]]
    register: Callable[[list[str]], None]


class Applier:
    def __init__(self, client: Client, rendered: Rendered, echo: Echo, secrets: list[str],
                 registrations: Registrations | None = None) -> None:
        self.client, self.rendered, self.echo, self.secrets = client, rendered, echo, secrets
        self.registrations = registrations
        self.ns = rendered.namespace

    def run(self) -> list[Change]:
        started = time.monotonic()
        changes = plan(self.client, self.rendered, dry_run=False)
        pending = self.registrations.pending() if self.registrations is not None else {}
        changes += [Change("register", "registration", name, name, reasons) for name, reasons in pending.items()]
        if not changes:
            self.echo(f"Nothing to do: every object and registration is as rendered "
                      f"({time.monotonic() - started:.1f}s).")
            return changes
        todo = {(c.kind, c.name) for c in changes if c.action in ("create", "change", "run")}
        rolls = [c.name for c in changes if c.action == "roll"]
        self.echo(f"{len(todo)} object(s) to create or change, {sum(c.action == 'run' for c in changes)} job(s) "
                  f"to run, {len(rolls)} agent pod(s) to replace, {sum(c.action == 'prune' for c in changes)} "
                  "to prune")
        first = [o for o in self.rendered.objects if o["kind"] in ("Namespace", "PersistentVolume")]
        for obj in first:
            if key(obj) in todo:
                self.client.apply(obj)
        for index, level in enumerate(self.rendered.levels):
            services = [s for s in level if any(k in todo for k in map(key, self.rendered.of_service(s)))
                        or any(c.service == s for c in changes if c.action in ("roll", "register"))]
            if not services:
                continue
            level_started = time.monotonic()
            due = [s for s in services if s in pending]
            if self.registrations is not None and due:
                # A service's users and endpoints exist before its pods start with them.
                self.registrations.register(due)
            objects = [o for o in self.rendered.objects if o["metadata"].get("labels", {}).get(SERVICE) in services
                       and o["kind"] not in ("Namespace", "PersistentVolume")]
            for obj in (o for o in objects if o["kind"] in ("Secret", "PersistentVolumeClaim") and key(o) in todo):
                self.client.apply(obj)
            self.jobs(objects, ("provision", "before"), todo)
            workloads = [o for o in objects if o["kind"] not in ("Secret", "PersistentVolumeClaim", "Job")]
            for obj in workloads:
                if key(obj) in todo:
                    self.client.apply(obj)
                    self.echo(f"[{', '.join(services)}] {'created' if self._new(obj, changes) else 'changed'} "
                              f"{obj['kind']} {obj['metadata']['name']}")
            self.roll_agents([o["metadata"]["name"] for o in workloads if o["kind"] == "DaemonSet"],
                             time.monotonic() + ROLLOUT_TIMEOUT)
            for obj in workloads:
                if obj["kind"] in WORKLOAD_KINDS:
                    self.wait_ready(obj)
            self.jobs(objects, ("after",), todo)
            self.echo(f"level {index + 1} ({', '.join(services)}): done in {time.monotonic() - level_started:.1f}s")
        self.prune()
        self.echo(f"applied in {time.monotonic() - started:.1f}s")
        return changes

    @staticmethod
    def _new(obj: dict[str, Any], changes: list[Change]) -> bool:
        return any(c.action == "create" and (c.kind, c.name) == key(obj) for c in changes)

    # ---- jobs --------------------------------------------------------------------------------
    def jobs(self, objects: list[dict[str, Any]], phases: tuple[str, ...], todo: set[tuple[str, str]]) -> None:
        for phase in phases:
            for obj in objects:
                if obj["kind"] != "Job" or self.rendered.jobs[obj["metadata"]["name"]][1] != phase:
                    continue
                if key(obj) not in todo:
                    continue
                self.run_job(obj)

    def run_job(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        label = obj["metadata"]["labels"][JOB]
        live = self.client.get("batch/v1", "Job", name, self.ns)
        if live is not None and job_done(live) == "Failed":
            self.client.delete("batch/v1", "Job", name, self.ns)
            self._gone("batch/v1", "Job", name)
            live = None
        if live is None:
            self.client.apply(obj)
        started = time.monotonic()
        self.echo(f"job {label}: running ({name})")
        deadline = started + float(obj["spec"]["activeDeadlineSeconds"]) + 120
        while True:
            live = self.client.get("batch/v1", "Job", name, self.ns) or {}
            done = job_done(live)
            if done == "Complete":
                self.echo(f"job {label}: complete ({time.monotonic() - started:.1f}s)")
                return
            if done == "Failed" or time.monotonic() > deadline:
                raise MortarError(f"job {label} ({name}) {'failed' if done else 'did not finish'}:\n"
                                  + self.pod_story(f"job-name={name}"),
                                  fix=f"fix the cause and run `mortar k8s apply` again (the failed Job is made "
                                      f"again); see `kubectl -n {self.ns} logs job/{name}`")
            time.sleep(POLL)

    def _gone(self, api_version: str, kind: str, name: str) -> None:
        deadline = time.monotonic() + 60
        while self.client.get(api_version, kind, name, self.ns) is not None and time.monotonic() < deadline:
            time.sleep(0.5)

    def pod_story(self, selector: str) -> str:
        """The state and last log lines of the pods SELECTOR names, secrets masked."""
        lines = []
        for pod in self.client.list("v1", "Pod", self.ns, selector)[-2:]:
            name = pod["metadata"]["name"]
            for status in (pod.get("status", {}).get("containerStatuses") or []):
                state = status.get("state", {})
                why: dict[str, Any] = next(iter(state.values()), {}) if state else {}
                lines.append(f"  pod {name}: {next(iter(state), '?')} {why.get('reason', '')} "
                             f"{why.get('message', '')}".rstrip())
            tail = redact(self.client.logs(self.ns, name, tail=15), self.secrets).strip()
            lines += [f"    | {line}" for line in tail.splitlines()]
        return "\n".join(lines) or "  (no pod yet)"

    # ---- workloads -----------------------------------------------------------------------------
    def wait_ready(self, obj: dict[str, Any]) -> None:
        kind, name = key(obj)
        started = time.monotonic()
        deadline = started + ROLLOUT_TIMEOUT
        last = ""
        while True:
            live = self.client.get(obj["apiVersion"], kind, name, self.ns) or {}
            state, ready = self.readiness(kind, live)
            if ready:
                if last:
                    self.echo(f"{kind} {name}: ready ({time.monotonic() - started:.1f}s)")
                return
            if state != last:
                self.echo(f"{kind} {name}: {state}")
                last = state
            if time.monotonic() > deadline:
                raise self.not_ready(name, f"{kind} {name} is not ready after {ROLLOUT_TIMEOUT:.0f} s ({state})")
            time.sleep(POLL)

    @staticmethod
    def readiness(kind: str, live: dict[str, Any]) -> tuple[str, bool]:
        spec, status = live.get("spec", {}), live.get("status", {}) or {}
        current = status.get("observedGeneration", 0) >= live.get("metadata", {}).get("generation", 1)
        if kind == "DaemonSet":
            want, ready = status.get("desiredNumberScheduled", 0), status.get("numberReady", 0)
            return f"{ready}/{want} node(s) ready", current and want > 0 and ready == want
        want = spec.get("replicas", 1)
        ready = status.get("readyReplicas", 0)
        updated = status.get("updatedReplicas", 0)
        done = current and ready == want and updated == want
        if kind == "StatefulSet":
            done = done and status.get("currentRevision") == status.get("updateRevision")
        return f"{ready}/{want} ready, {updated}/{want} updated", done

    def roll_agents(self, names: list[str], deadline: float) -> None:
        """Replace the agent pods whose node's files or image changed, one node at a time: every
        stale agent of these on a node together (they may need each other, as the compute service
        needs its hypervisor), then wait until each of them serves again on that node."""
        if not names:
            return
        observed = observe(self.client, self.rendered)
        stale: dict[str, list[tuple[str, str]]] = {}
        for name in names:
            for node, pod in node_rolls(self.rendered, observed, name):
                stale.setdefault(node, []).append((name, pod))
        for node, pods in sorted(stale.items()):
            self.echo(f"{node}: replacing {', '.join(n for n, _ in pods)}")
            for _, pod in pods:
                self.client.delete("v1", "Pod", pod, self.ns)
            for name, pod in pods:
                while self.client.get("v1", "Pod", pod, self.ns) is not None or not self._agent_ready(name, node):
                    if time.monotonic() > deadline:
                        raise self.not_ready(name, f"the new pod of {name} on {node} is not ready")
                    time.sleep(POLL)

    def not_ready(self, workload: str, what: str) -> MortarError:
        return MortarError(f"{what}:\n" + self.pod_story(f"{WORKLOAD}={workload}"),
                           fix=f"see `kubectl -n {self.ns} describe pods -l {WORKLOAD}={workload}`, fix the cause "
                               "and run `mortar k8s apply` again")

    def _agent_ready(self, name: str, node: str) -> bool:
        for pod in self.client.list("v1", "Pod", self.ns, f"{WORKLOAD}={name}"):
            if pod["spec"].get("nodeName") != node or pod["metadata"].get("deletionTimestamp"):
                continue
            conditions = pod.get("status", {}).get("conditions") or []
            return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        return False

    # ---- prune -----------------------------------------------------------------------------------
    def prune(self) -> None:
        for change in plan(self.client, self.rendered, dry_run=False):
            if change.action != "prune":
                continue
            api = next(a for a, k in (*LISTED, (self.rendered.pdb_version, "PodDisruptionBudget")) if k == change.kind)
            try:
                self.client.delete(api, change.kind, change.name, self.ns)
            except ApiError as exc:
                self.echo(f"note: could not prune {change.kind} {change.name}: {exc}")
                continue
            self.echo(f"pruned {change.kind} {change.name}")
