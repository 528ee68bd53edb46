"""Build a selection of the image tree on the Docker Engine.

facts (which identities the engine already has) -> desired (rendered images and their
identities) -> actions (build only what is missing), parents before children, independent
branches in parallel.
"""

from __future__ import annotations

import io
import ipaddress
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mortar import __version__
from mortar.builder import graph
from mortar.builder.identity import IDENTITY_LABEL, IMAGE_LABEL, image_identity, read_context
from mortar.builder.lock import Lock, load_lock
from mortar.builder.status import StatusBoard
from mortar.builder.templates import IMAGES_DIR, Renderer
from mortar.engine.protocol import Engine, ImageInfo, RunSpec
from mortar.errors import EngineError, MortarError
from mortar.paths import log_root

SUITES = {"trixie": "3.13", "bookworm": "3.11"}

DEFAULT_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
COPY_RE = re.compile(r"^\s*(?:COPY|ADD)\s+(?!--from)(.+)$", re.I | re.M)


@dataclass
class BuildOptions:
    namespace: str = "mortar"
    release: str = "2026.2"
    tag: str = ""  # the release when empty
    base: str = "trixie"
    base_image: str | None = None
    threads: int = 2
    no_cache: bool = False
    template_override: Path | None = None
    plugins: dict[str, list[str]] = field(default_factory=dict)
    ca_bundle: Path | None = None
    logs_dir: Path = field(default_factory=lambda: log_root() / "build")
    manifests_dir: Path | None = None
    push: bool = False
    registry: str | None = None
    registry_insecure: bool = False
    registry_auth: dict[str, str] | None = None
    images_dir: Path = IMAGES_DIR

    def __post_init__(self) -> None:
        self.tag = self.tag or self.release

    @property
    def lock_file(self) -> Path:
        return self.images_dir / "locks" / f"{self.release}.lock"

    @property
    def base_ref(self) -> str:
        return self.base_image or f"debian:{self.base}"

    def ref(self, name: str) -> str:
        return f"{self.namespace}/{name}:{self.tag}"


@dataclass
class ImageResult:
    name: str
    tag: str
    status: str = "queued"
    image_id: str | None = None
    size: int | None = None
    seconds: float = 0.0
    identity: str = ""
    log: Path | None = None
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "tag": self.tag, "image_id": self.image_id, "size": self.size,
                "seconds": round(self.seconds, 2), "status": self.status, "identity": self.identity}


class ImageTree:
    """The rendered tree: specs, build contexts and identities (no engine calls but one)."""

    def __init__(self, options: BuildOptions, lock: Lock | None = None) -> None:
        self.options = options
        if options.base not in SUITES:
            raise MortarError(f"unknown base '{options.base}'", key="--base",
                              fix=f"choose one of {', '.join(SUITES)}")
        self.lock = lock if lock is not None else load_lock(options.lock_file, release=options.release)
        names = graph.discover_images(options.images_dir)
        for image in options.plugins:
            if image not in names:
                raise MortarError(f"no image named '{image}'", key="--plugin",
                                  fix="see `mortar build --list-images`")
        self.ca_bytes = self._read_ca(options.ca_bundle)
        variables = {
            "namespace": options.namespace, "tag": options.tag, "base_image": options.base_ref,
            "base_suite": options.base, "python_version": SUITES[options.base],
            "ca_bundle": self.ca_bytes is not None,
            "parent": options.ref,
        }
        self.renderer = Renderer(variables, options.template_override, options.images_dir)
        ref_to_name = {options.ref(name): name for name in names}
        self.specs: dict[str, graph.ImageSpec] = {}
        for name in names:
            self.renderer.variables["plugins"] = options.plugins.get(name, [])
            text = self.renderer.render(name)
            parents, external = graph.parse_parents(text, ref_to_name)
            self.specs[name] = graph.ImageSpec(name, text, parents, external, options.images_dir / name)
        graph.topological_order(self.specs, names)
        self.identities: dict[str, str] = {}
        self.contexts: dict[str, dict[str, bytes]] = {}

    @staticmethod
    def _read_ca(path: Path | None) -> bytes | None:
        if path is None:
            return DEFAULT_CA_BUNDLE.read_bytes() if DEFAULT_CA_BUNDLE.exists() else None
        try:
            return path.read_bytes()
        except OSError as exc:
            raise MortarError(f"cannot read CA bundle: {exc.strerror}", key="--ca-bundle", file=str(path),
                              fix="pass a PEM file") from exc

    def generated_files(self, name: str) -> dict[str, bytes]:
        pins = self.lock.entries_for(name)
        files = {"requirements.txt": "".join(f"{pin}\n" for pin in pins).encode(),
                 "constraints.txt": "".join(f"{pin}\n" for pin in self.lock.all_pins()).encode(),
                 "build-constraints.txt": "".join(f"{c}\n" for c in self.lock.build_constraints).encode(),
                 "plugins.txt": "".join(f"{req}\n" for req in self.options.plugins.get(name, [])).encode()}
        if self.ca_bytes is not None:
            files["build-ca.crt"] = self.ca_bytes
        return files

    def context(self, name: str) -> dict[str, bytes]:
        if name not in self.contexts:
            spec = self.specs[name]
            files = read_context(spec.context_dir)
            used: set[str] = set()
            for match in COPY_RE.finditer(spec.dockerfile):
                tokens = [t for t in match.group(1).split() if not t.startswith("--")]
                used.update(t.rstrip("/") for t in tokens[:-1])
            for fname, data in self.generated_files(name).items():
                if fname in used:
                    files[fname] = data
            self.contexts[name] = files
        return self.contexts[name]

    def compute_identities(self, base_image_id: str) -> dict[str, str]:
        for name in graph.topological_order(self.specs, list(self.specs)):
            spec = self.specs[name]
            # Parent references are names, not tags: retagging must not change identities.
            text = spec.dockerfile
            for parent in spec.parents:
                text = text.replace(self.options.ref(parent), f"<image:{parent}>")
            parents = [self.identities[p] for p in spec.parents]
            if spec.external:
                text = text.replace(self.options.base_ref, "<base-image>")
                parents.append(base_image_id)
            self.identities[name] = image_identity(text, self.context(name), parents)
        return self.identities


def context_tar(dockerfile: str, files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in sorted({**files, "Dockerfile": dockerfile.encode()}.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if data.startswith(b"#!") else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


MANIFEST_SCRIPT = r"""
dpkg-query -W -f='deb\t${Package}\t${Version}\n' 2>/dev/null
if [ -x /var/lib/openstack/bin/python3 ]; then
  /var/lib/openstack/bin/python3 -c 'import importlib.metadata as m
for d in m.distributions(): print("py\t%s\t%s" % (d.metadata["Name"], d.version))'
fi
"""


class Builder:
    def __init__(self, engine: Engine, tree: ImageTree, board_stream=None) -> None:
        self.engine = engine
        self.tree = tree
        self.options = tree.options
        self.board_stream = board_stream
        self.results: dict[str, ImageResult] = {}
        self._lock = threading.Lock()

    # facts
    def existing_identities(self) -> dict[str, ImageInfo]:
        found: dict[str, ImageInfo] = {}
        for image in self.engine.images({IDENTITY_LABEL: None}):
            identity = image.labels.get(IDENTITY_LABEL)
            if identity:
                found[identity] = image
        return found

    def run(self, names: list[str]) -> dict[str, ImageResult]:
        order = graph.with_ancestors(self.tree.specs, names)
        existing = {} if self.options.no_cache else self.existing_identities()
        self.options.logs_dir.mkdir(parents=True, exist_ok=True)
        board = StatusBoard(order, **({"stream": self.board_stream} if self.board_stream else {}))
        for name in order:
            self.results[name] = ImageResult(name, self.options.tag, identity=self.tree.identities[name],
                                             log=self.options.logs_dir / f"{name}.log")
        board.start()
        try:
            self._schedule(order, existing, board)
        finally:
            board.stop()
        return self.results

    def _schedule(self, order: list[str], existing: dict[str, ImageInfo], board: StatusBoard) -> None:
        pending = list(order)
        running: dict[Future, str] = {}
        with ThreadPoolExecutor(max_workers=max(1, self.options.threads)) as pool:
            while pending or running:
                for name in list(pending):
                    parents = self.tree.specs[name].parents
                    if any(self.results[p].status in ("failed", "skipped") for p in parents):
                        pending.remove(name)
                        self.results[name].status = "skipped"
                        board.set(name, "skipped", "a parent failed")
                        continue
                    if all(self.results[p].status in ("done", "cached") for p in parents):
                        identity = self.tree.identities[name]
                        if identity in existing:
                            pending.remove(name)
                            self._use_existing(name, existing[identity])
                            board.set(name, "cached", (self.results[name].image_id or "")[7:19])
                            continue
                        if len(running) < self.options.threads:
                            pending.remove(name)
                            board.set(name, "building")
                            running[pool.submit(self._build_one, name)] = name
                if not running:
                    # Parents come first in `order`, so one pass settles every image.
                    assert not pending, f"unschedulable images: {pending}"
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    result = self.results[name]
                    exc = future.exception()
                    if exc is not None:
                        result.status = "failed"
                        result.error = str(exc)
                    board.set(name, result.status, _short(result))

    def _use_existing(self, name: str, image: ImageInfo) -> None:
        result = self.results[name]
        ref = self.options.ref(name)
        if ref not in image.tags:
            self.engine.tag(image.id, ref)
        result.status = "cached"
        result.image_id = image.id
        result.size = image.size

    def _build_one(self, name: str) -> None:
        result = self.results[name]
        spec = self.tree.specs[name]
        started = time.monotonic()
        labels = {IDENTITY_LABEL: result.identity, IMAGE_LABEL: name, "org.mortar.version": __version__}
        assert result.log is not None
        with open(result.log, "w") as log:
            log.write(f"# mortar build {name} identity {result.identity}\n")
            log.write(spec.dockerfile + "\n# ---- build output ----\n")

            def output(text: str) -> None:
                log.write(text)
                log.flush()

            try:
                image_id = self.engine.build(context_tar(spec.dockerfile, self.tree.context(name)),
                                             self.options.ref(name), labels, self.options.no_cache, output)
            except EngineError as exc:
                log.write(f"\n{exc}\n")
                result.status = "failed"
                result.seconds = time.monotonic() - started
                raise
        image = self.engine.image(image_id)
        result.image_id = image_id
        result.size = image.size if image else None
        result.seconds = time.monotonic() - started
        result.status = "done"

    # manifests
    def write_manifests(self, directory: Path, cache_dir: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        cache_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name, result in self.results.items():
            if result.status not in ("done", "cached"):
                continue
            cached = cache_dir / f"{result.identity}.json"
            if not cached.exists():
                cached.write_text(json.dumps(self.manifest(name, result), indent=1, sort_keys=True) + "\n")
            target = directory / f"{name}.json"
            target.write_bytes(cached.read_bytes())
            written.append(target)
        return written

    def manifest(self, name: str, result: ImageResult) -> dict[str, Any]:
        assert result.image_id
        code, output = self.engine.run(RunSpec(
            name=f"mortar_manifest_{name}", image=result.image_id, command=["sh", "-c", MANIFEST_SCRIPT],
            entrypoint=[], network="none", labels={"org.mortar.purpose": "manifest"}), timeout=300)
        if code != 0:
            raise EngineError(f"listing the packages of {name} failed (exit {code}): {output[-300:]}")
        debian: dict[str, str] = {}
        python: dict[str, str] = {}
        for line in output.splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                (debian if parts[0] == "deb" else python)[parts[1]] = parts[2]
        return {"image": name, "tag": result.tag, "identity": result.identity, "image_id": result.image_id,
                "debian_packages": dict(sorted(debian.items())),
                "python_packages": dict(sorted(python.items(), key=lambda kv: kv[0].lower()))}

    # push
    def push(self, names: list[str], board: StatusBoard) -> dict[str, str]:
        """Push in parallel; returns the digest the registry gave each pushed reference. Through the
        engine when it trusts the registry (mortar's speaks TLS with the site CA), else with skopeo."""
        registry = self.options.registry
        assert registry
        via_engine = not self.options.registry_insecure or daemon_trusts(self.engine, registry)
        if not via_engine and shutil.which("skopeo") is None:
            raise EngineError(f"the engine does not trust the plain-HTTP registry {registry} and skopeo is missing",
                              fix="apt-get install skopeo (scripts/bootstrap.sh does), or add the registry to "
                                  "insecure-registries in /etc/docker/daemon.json")
        todo = [n for n in names if self.results[n].status in ("done", "cached")]
        digests: dict[str, str] = {}
        lock = threading.Lock()

        def one(name: str) -> None:
            pushed = self._push_one(name, registry, via_engine, board)
            if pushed:
                with lock:
                    digests.update(pushed)

        with ThreadPoolExecutor(max_workers=max(1, min(4, len(todo)))) as pool:
            list(pool.map(one, todo))
        return digests

    def _push_one(self, name: str, registry: str, via_engine: bool, board: StatusBoard) -> dict[str, str]:
        result = self.results[name]
        ref = f"{registry}/{self.options.namespace}/{name}:{self.options.tag}"
        board.set(name, "pushing")
        try:
            if via_engine:
                assert result.image_id
                self.engine.tag(result.image_id, ref)
                digest = self.engine.push(ref, self.options.registry_auth)
            else:
                with tempfile.TemporaryDirectory() as scratch:
                    digest_file = Path(scratch) / "digest"
                    command = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--digestfile",
                               str(digest_file), f"docker-daemon:{self.options.ref(name)}", f"docker://{ref}"]
                    done = subprocess.run(command, capture_output=True, text=True)
                    if done.returncode != 0:
                        raise EngineError(f"push of {ref} failed: "
                                          f"{(done.stderr.strip().splitlines() or ['skopeo failed'])[-1]}")
                    digest = digest_file.read_text().strip() if digest_file.exists() else ""
        except EngineError as exc:
            result.status = "failed"
            result.error = str(exc)
            board.set(name, "failed", str(exc)[:80])
            return {}
        board.set(name, "pushed", f"{ref}" + (f" {digest[:19]}" if digest else ""))
        return {ref: digest} if digest else {}


def daemon_trusts(engine: Engine, registry: str) -> bool:
    """Whether the engine will talk plain HTTP to this registry (listed, or in an insecure CIDR)."""
    config = engine.info().get("RegistryConfig") or {}
    index = (config.get("IndexConfigs") or {}).get(registry)
    if index is not None and not index.get("Secure", True):
        return True
    host = registry.rsplit(":", 1)[0].strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(cidr, strict=False)
               for cidr in config.get("InsecureRegistryCIDRs") or [])


def _short(result: ImageResult) -> str:
    if result.status == "failed":
        return (result.error.splitlines() or [""])[-1][:100]
    if result.size:
        return f"{result.size / 1e6:.0f} MB"
    return ""


def log_tail(path: Path | None, lines: int = 15) -> list[str]:
    if path is None or not path.exists():
        return []
    return path.read_text(errors="replace").splitlines()[-lines:]
