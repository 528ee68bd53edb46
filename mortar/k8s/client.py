"""The Kubernetes API, as mortar uses it: a kubeconfig's credentials, discovery, server-side
apply (field manager `mortar`) with or without dry-run, get, list by label, delete, pod logs.

Plain HTTPS through `requests`; no client library ties mortar to one Kubernetes version.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mortar.errors import MortarError
from mortar.files import read_text

FIELD_MANAGER = "mortar"


class ApiError(MortarError):
    """The API server refused a request (its status and message)."""

    def __init__(self, status: int, message: str, what: str, reason: str = "") -> None:
        super().__init__(f"{what}: {message} (HTTP {status})")
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class Resource:
    path: str  # /api/v1 or /apis/GROUP/VERSION
    plural: str
    namespaced: bool


def default_kubeconfig() -> Path:
    return Path(os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or Path.home() / ".kube" / "config")


class Client:
    def __init__(self, kubeconfig: Path | None = None, timeout: float = 30) -> None:
        import requests

        path = kubeconfig or default_kubeconfig()
        config = yaml.safe_load(read_text(path, what="kubeconfig")) or {}
        try:
            context_name = config["current-context"]
            context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
            cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
            user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        except (KeyError, StopIteration, TypeError):
            raise MortarError("no usable current context (cluster, user)", file=str(path),
                              fix="point --kubeconfig (or KUBECONFIG) at a cluster administrator's kubeconfig"
                              ) from None
        self.server = str(cluster["server"]).rstrip("/")
        self._scratch = tempfile.TemporaryDirectory(prefix="mortar-kubeconfig-")
        self.session = requests.Session()
        # Given with every request: requests otherwise prefers $REQUESTS_CA_BUNDLE to a session's CA.
        self.verify: str | bool = self._file(cluster, "certificate-authority", "ca.crt") or True
        cert, key = self._file(user, "client-certificate", "client.crt"), self._file(user, "client-key", "client.key")
        if cert and key:
            self.session.cert = (cert, key)
        if user.get("token"):
            self.session.headers["Authorization"] = f"Bearer {user['token']}"
        self.timeout = timeout
        self._resources: dict[tuple[str, str], Resource] = {}

    def _file(self, section: dict[str, Any], key: str, name: str) -> str | None:
        """A credential as a file: the kubeconfig's path, or its inline data written privately."""
        if section.get(key):
            return str(section[key])
        data = section.get(f"{key}-data")
        if not data:
            return None
        path = Path(self._scratch.name) / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(base64.b64decode(data))
        return str(path)

    # ---- requests --------------------------------------------------------------------------
    def request(self, method: str, path: str, what: str, body: Any = None, content_type: str = "application/json",
                params: dict[str, str] | None = None, ok404: bool = False) -> Any:
        import requests

        data = None
        if body is not None:
            data = yaml.safe_dump(body) if content_type.endswith("yaml") else json.dumps(body)
        try:
            answer = self.session.request(method, self.server + path, data=data, params=params, verify=self.verify,
                                          headers={"Content-Type": content_type}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise MortarError(f"{what}: the API server {self.server} does not answer ({type(exc).__name__})",
                              fix="check the cluster (mortar testbed k8s status, or kubectl get nodes)") from None
        if answer.status_code == 404 and ok404:
            return None
        if answer.status_code >= 400:
            try:
                status = answer.json()
                message, reason = status.get("message", answer.text), status.get("reason", "")
            except ValueError:
                message, reason = answer.text.strip()[:300], ""
            raise ApiError(answer.status_code, message, what, reason)
        if "json" in answer.headers.get("Content-Type", ""):
            return answer.json()
        return answer.text

    def resource(self, api_version: str, kind: str) -> Resource:
        key = (api_version, kind)
        if key not in self._resources:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            listing = self.request("GET", path, f"discovery of {api_version}", ok404=True)
            if listing is None:
                raise MortarError(f"the cluster does not serve {api_version}", key="--kube-version",
                                  fix="render for the cluster's Kubernetes version (--kube-version)")
            for entry in listing.get("resources", []):
                if "/" not in entry["name"]:
                    self._resources[(api_version, entry["kind"])] = Resource(path, entry["name"], entry["namespaced"])
            if key not in self._resources:
                raise MortarError(f"the cluster serves no {kind} in {api_version}", key="--kube-version",
                                  fix="render for the cluster's Kubernetes version (--kube-version)")
        return self._resources[key]

    def url(self, api_version: str, kind: str, name: str = "", namespace: str = "") -> str:
        res = self.resource(api_version, kind)
        where = f"/namespaces/{namespace}" if res.namespaced and namespace else ""
        return f"{res.path}{where}/{res.plural}" + (f"/{name}" if name else "")

    # ---- objects ---------------------------------------------------------------------------
    def apply(self, obj: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        meta = obj["metadata"]
        params = {"fieldManager": FIELD_MANAGER, "force": "true"}
        if dry_run:
            params["dryRun"] = "All"
        return self.request("PATCH", self.url(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace", "")),
                            f"apply {obj['kind']} {meta['name']}", obj, "application/apply-patch+yaml", params)

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        return self.request("GET", self.url(api_version, kind, name, namespace), f"get {kind} {name}", ok404=True)

    def list(self, api_version: str, kind: str, namespace: str = "", selector: str = "") -> list[dict[str, Any]]:
        params = {"labelSelector": selector} if selector else None
        found = self.request("GET", self.url(api_version, kind, namespace=namespace), f"list {kind}", params=params,
                             ok404=True)
        items = (found or {}).get("items", [])
        for item in items:  # a list's items carry neither
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "") -> bool:
        found = self.request("DELETE", self.url(api_version, kind, name, namespace), f"delete {kind} {name}",
                             {"propagationPolicy": "Background"}, ok404=True)
        return found is not None

    def logs(self, namespace: str, pod: str, tail: int = 40) -> str:
        text = self.request("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log", f"logs of pod {pod}",
                            params={"tailLines": str(tail)}, ok404=True)
        return text if isinstance(text, str) else ""

    def version(self) -> str:
        info = self.request("GET", "/version", "the API server's version")
        return f"{info.get('major', '?')}.{str(info.get('minor', '?')).rstrip('+')}"
