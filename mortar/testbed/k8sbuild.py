"""The programs of the local Kubernetes test cluster, built once per machine from Debian's source.

Nothing on PyPI or npm ships a kube-apiserver or a kubelet, but Debian bookworm's `kubernetes`
source package (upstream 1.20.2 with its whole vendor tree and Debian's security patches)
builds offline with bookworm's Go 1.19: in GOPATH mode (module mode with -mod=vendor asks to
update go.mod under Go 1.19), without cgo, after generating the OpenAPI definitions the
tarball lacks (kube-apiserver imports them). etcd and the CNI plugins are Debian's packages,
unpacked rather than installed (etcd-server's package would start an etcd of its own). The
pause container is the tree's own `pause.c`, linked statically and packed into an image
archive here, so no registry is needed.

Everything lands in one cache folder outside the repo (default /var/cache/mortar/kubernetes-1.20),
stamped when complete; a half-made cache (no stamp) is made again. Build files are removed
once the programs are in place.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from mortar.builder.baseimage import host_archive_uris
from mortar.errors import MortarError
from mortar.paths import cache_root

Log = Callable[[str], None]

VERSION = "1.20.2"
SUITE = "bookworm"
# What the cluster runs, built from the tree (each a `cmd/NAME`).
PROGRAMS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
# Installed on this machine to build and run (containerd and runc come with the engine).
BUILD_PACKAGES = ("golang-1.19-go", "dpkg-dev", "gcc", "libc6-dev")
RUN_PACKAGES = ("containerd", "runc", "iptables", "conntrack")
# Unpacked into the cache: etcd (etcd-server) and the CNI plugins.
UNPACKED = {"etcd-server": ["usr/bin/etcd"],
            "containernetworking-plugins": ["usr/lib/cni/bridge", "usr/lib/cni/host-local", "usr/lib/cni/loopback",
                                            "usr/lib/cni/portmap"]}
PAUSE_IMAGE = "mortar.local/pause:3.4"
GO = "/usr/lib/go-1.19/bin/go"

# The build, run by bash in the source tree's GOPATH. PROGRAMS and VERSION come in as arguments.
BUILD_SCRIPT = r"""
set -euo pipefail
version=$1; shift
export GO111MODULE=off CGO_ENABLED=0 GOFLAGS=-trimpath
cd "$GOPATH/src/k8s.io/kubernetes"
pkg=k8s.io/kubernetes
ldflags="-s -w"
for v in "$pkg/vendor/k8s.io/component-base/version" "$pkg/vendor/k8s.io/client-go/pkg/version"; do
  ldflags="$ldflags -X $v.gitVersion=v$version -X $v.gitMajor=${version%%.*}"
  minor=${version#*.}; ldflags="$ldflags -X $v.gitMinor=${minor%%.*} -X $v.gitTreeState=clean"
done
if [ ! -s pkg/generated/openapi/zz_generated.openapi.go ]; then
  echo "step: generating the OpenAPI definitions"
  "$GO" build -o "$GOPATH/bin/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
  # Every package that asks for OpenAPI generation, named as the Makefile names them (staging
  # as vendor), without the examples the Makefile leaves out too.
  inputs=$(find -H . \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune -o -type f -name '*.go' -print \
    | sed 's|^\./staging/src|vendor|; s|^\./||' | xargs grep -l '^// *+k8s:openapi-gen=' \
    | grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' \
    | xargs -n1 dirname | LC_ALL=C sort -u | sed "s|^|$pkg/|" | paste -sd, -)
  "$GOPATH/bin/openapi-gen" --logtostderr -i "$inputs" -p "$pkg/pkg/generated/openapi" -O zz_generated.openapi \
    -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt -r "$GOPATH/openapi-violations.report"
fi
for program in "$@"; do
  echo "step: building $program"
  "$GO" build -ldflags "$ldflags" -o "$OUT/$program" "./cmd/$program"
done
echo "step: building pause"
gcc -Os -static -o "$OUT/pause" build/pause/linux/pause.c
"""


def cache_dir() -> Path:
    return cache_root() / "kubernetes-1.20"


def recipe_digest() -> str:
    """What decides the cached programs: a change here makes them again."""
    return hashlib.sha256(json.dumps([VERSION, SUITE, PROGRAMS, UNPACKED, BUILD_SCRIPT, PAUSE_IMAGE]).encode()
                          ).hexdigest()[:12]


def stamp_path() -> Path:
    return cache_dir() / f".complete-{recipe_digest()}"


def built() -> bool:
    return stamp_path().is_file()


def program(name: str) -> Path:
    """The path of a cached program (PROGRAMS, pause, etcd) or CNI plugin folder (`cni`)."""
    if name == "cni":
        return cache_dir() / "cni"
    return cache_dir() / "bin" / name


def _run(argv: list[str], what: str, log_file: Path | None = None, cwd: Path | None = None,
         env: dict[str, str] | None = None) -> str:
    if log_file is not None:
        with log_file.open("a") as out:
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        if proc.returncode != 0:
            tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
            raise MortarError(f"{what} failed (exit {proc.returncode}):\n{tail}", fix=f"see {log_file}")
        return ""
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env)
    if done.returncode != 0:
        raise MortarError(f"{what} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-400:]}")
    return done.stdout


def apt_install(packages: tuple[str, ...], log: Log) -> None:
    """Install the Debian packages this machine lacks (apt-get update once, when needed)."""
    missing = [p for p in packages
               if subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True
                                 ).stdout.strip() != "install ok installed"]
    if not missing:
        return
    log(f"installing {', '.join(missing)} (apt)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if subprocess.run(argv, capture_output=True, env=env).returncode != 0:
        _run(["apt-get", "update", "-q"], "apt-get update", env=env)
        _run(argv, f"apt-get install {' '.join(missing)}", env=env)


class PrivateApt:
    """apt with a sources list of its own (the host's archive, with deb-src lines), so that
    nothing in /etc/apt changes."""

    def __init__(self, root: Path) -> None:
        main, _ = host_archive_uris()
        if not main:
            raise MortarError("this machine's apt sources name no Debian archive",
                              file="/etc/apt/sources.list.d/debian.sources",
                              fix="configure apt with a Debian archive (deb.debian.org or a mirror)")
        self.root = root
        (root / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (root / "sources.list").write_text(f"deb {main} {SUITE} main\ndeb-src {main} {SUITE} main\n")
        self.options = ["-o", f"Dir::Etc::sourcelist={root / 'sources.list'}", "-o", "Dir::Etc::sourceparts=/dev/null",
                        "-o", f"Dir::State::Lists={root / 'lists'}", "-o", "APT::Sandbox::User=root"]
        self.updated = False

    def get(self, verb: list[str], what: str, cwd: Path, log_file: Path) -> None:
        if not self.updated:
            _run(["apt-get", *self.options, "update", "-q"], "apt-get update (private sources)", log_file)
            self.updated = True
        _run(["apt-get", *self.options, *verb], what, log_file, cwd=cwd)


def ensure_built(log: Log = print) -> Path:
    """The cache folder with every program of the cluster, built when missing; one build at a time."""
    cache = cache_dir()
    if built():
        return cache
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if built():
            return cache
        _build(cache, log)
    return cache


def _build(cache: Path, log: Log) -> None:
    started = time.monotonic()
    for old in cache.glob(".complete-*"):
        old.unlink()
    work = cache / "build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log_file = cache / "build.log"
    log_file.write_text("")
    log(f"building Kubernetes {VERSION} from Debian's source into {cache} (about 20 minutes on 2 cores, "
        f"once per machine; log: {log_file})")
    apt_install(BUILD_PACKAGES + RUN_PACKAGES, log)
    apt = PrivateApt(work / "apt")
    source = work / "source"
    source.mkdir()
    log("fetching the kubernetes source package (with Debian's patches)")
    apt.get(["source", "kubernetes"], "apt-get source kubernetes", source, log_file)
    trees = [p for p in source.iterdir() if p.is_dir() and p.name.startswith("kubernetes-")]
    if len(trees) != 1:
        raise MortarError(f"the kubernetes source package unpacked into {len(trees)} folders", fix=f"see {log_file}")
    gopath = work / "go"
    (gopath / "src" / "k8s.io").mkdir(parents=True)
    trees[0].rename(gopath / "src" / "k8s.io" / "kubernetes")
    out = cache / "bin"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    env = dict(os.environ, GOPATH=str(gopath), GOCACHE=str(work / "gocache"), GO=GO, OUT=str(out),
               HOME=str(work), PATH=f"{Path(GO).parent}:{os.environ.get('PATH', '')}")
    with log_file.open("a") as output:
        proc = subprocess.Popen(["bash", "-c", BUILD_SCRIPT, "build", VERSION, *PROGRAMS], cwd=work, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        step_started = time.monotonic()
        for line in proc.stdout:
            output.write(line)
            if line.startswith("step: "):
                log(f"{line[6:].strip()} ({time.monotonic() - started:.0f}s so far)")
                step_started = time.monotonic()
        code = proc.wait()
    if code != 0:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
        raise MortarError(f"building Kubernetes failed (exit {code}) after {time.monotonic() - step_started:.0f}s "
                          f"of its last step:\n{tail}", fix=f"see {log_file}; run the command again to retry")
    log("unpacking etcd and the CNI plugins (Debian packages)")
    debs = work / "debs"
    debs.mkdir()
    apt.get(["download", *UNPACKED], "apt-get download " + " ".join(UNPACKED), debs, log_file)
    unpacked = work / "unpacked"
    for deb in debs.glob("*.deb"):
        _run(["dpkg-deb", "-x", str(deb), str(unpacked)], f"dpkg-deb -x {deb.name}", log_file)
    (cache / "cni").mkdir(exist_ok=True)
    for paths in UNPACKED.values():
        for path in paths:
            target = out / Path(path).name if path.startswith("usr/bin/") else cache / "cni" / Path(path).name
            shutil.copy2(unpacked / path, target)
    write_pause_archive(out / "pause", cache / "pause.tar")
    shutil.rmtree(work, ignore_errors=True)
    stamp_path().write_text(f"built in {time.monotonic() - started:.0f}s\n")
    log(f"Kubernetes {VERSION} programs ready in {cache / 'bin'} ({time.monotonic() - started:.0f}s)")


def write_pause_archive(binary: Path, archive: Path) -> None:
    """An image archive (the engine's `save` format, which containerd imports) holding only
    the static pause program: the sandbox image every pod starts with."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("pause")
        info.size, info.mode, info.mtime = binary.stat().st_size, 0o755, 0
        with binary.open("rb") as program_file:
            tar.addfile(info, program_file)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}, sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [PAUSE_IMAGE], "Layers": ["layer/layer.tar"]}]).encode()
    entries: list[tuple[str, bytes]] = [(config_name, config), ("layer/layer.tar", layer_bytes),
                                        ("manifest.json", manifest)]
    with tarfile.open(archive, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
