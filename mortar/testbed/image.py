"""The node image: a Debian host in a container (sshd, docker.io, python3) for the test bed.

The tag is a hash of every file that goes into the image, so the image is rebuilt only when
this module changes them and reused otherwise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from mortar.engine.protocol import Engine
from mortar.errors import EngineError

REPOSITORY = "mortar-testbed/node"
BASE_IMAGE = "debian:trixie"
BASE_SUITE = "trixie"
IMAGE_LABEL = "org.mortar.testbed.node-image"

# docker.io has only the daemon since trixie; the client is docker-cli.
PACKAGES = ("openssh-server", "docker.io", "docker-cli", "python3", "python3-docker", "python3-yaml", "iproute2",
            "procps", "iputils-ping", "ca-certificates", "sudo", "rsync", "tini")

# PID 1 (under tini) of every node: undo what docker does to a container that a host would not have,
# then serve SSH. Runs again on every start, so a stopped and restarted node comes back clean.
ENTRYPOINT = r"""#!/bin/sh
set -eu

# A dockerd started in the node manages cgroups and sysfs; docker mounts both read-only.
mount -o remount,rw /sys
if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
    mount -o remount,rw /sys/fs/cgroup
else
    for dir in /sys/fs/cgroup/*; do
        if [ ! -L "$dir" ] && mountpoint -q "$dir"; then
            mount -o remount,bind,rw "$dir"
        fi
    done
fi

# A host has the tun device (the switch's internal ports and guests' taps use it); docker
# gives a container only a minimal /dev.
if [ ! -c /dev/net/tun ]; then
    mkdir -p /dev/net
    mknod -m 0666 /dev/net/tun c 10 200
fi

# /run survives a container restart: stale pid files and sockets would stop dockerd/containerd.
rm -rf /run/docker /run/docker.pid /run/docker.sock /run/containerd /run/nologin
mkdir -p /run/sshd
chmod 0755 /run/sshd

# Nodes reach only each other and the host (the subnet's gateway address), never beyond.
ip route del default 2>/dev/null || true
ip -6 route del default 2>/dev/null || true

# Host keys are made per node on first start, not baked into the shared image.
if [ ! -s /etc/ssh/ssh_host_ed25519_key ]; then
    ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
fi

exec /usr/sbin/sshd -D -e
"""

# Installed as /usr/sbin/runc (the real one diverted to runc.real), so any dockerd in the node uses
# it whatever its daemon.json says. The node lacks CAP_SYS_RESOURCE (the host VM does not grant it),
# so an inner `--privileged` container or `exec --privileged` would fail in runc ("unable to apply
# caps"), and an rlimit above the node's hard limit cannot be raised: drop the one, clamp the other.
# The Kubernetes test cluster's containerd runs its privileged pods through the same wrapper.
RUNC_WRAPPER = r"""#!/usr/bin/python3 -IS
import json
import os
import resource
import sys

REAL = "@REAL@"
GLOBAL_WITH_VALUE = {"--root", "--log", "--log-format", "--criu", "--rootless"}


def command_and_options(argv):
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in GLOBAL_WITH_VALUE:
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return arg, argv[i + 1:]
    return None, []


def option(args, *names):
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def fix_process(process):
    caps = process.get("capabilities") or {}
    for key, values in caps.items():
        if isinstance(values, list):
            caps[key] = [cap for cap in values if cap != "CAP_SYS_RESOURCE"]
    for limit in process.get("rlimits") or []:
        name = limit.get("type", "").replace("RLIMIT_", "")
        try:
            _, hard = resource.getrlimit(getattr(resource, "RLIMIT_" + name))
        except (AttributeError, ValueError):
            continue
        if hard != resource.RLIM_INFINITY:
            limit["hard"] = min(limit.get("hard", hard), hard)
            limit["soft"] = min(limit.get("soft", hard), limit["hard"])


def rewrite(path, process_key):
    with open(path) as f:
        spec = json.load(f)
    fix_process(spec.get(process_key) or {} if process_key else spec)
    tmp = path + ".mortar"
    with open(tmp, "w") as f:
        json.dump(spec, f)
    os.replace(tmp, path)


command, args = command_and_options(sys.argv)
if command in ("create", "run"):
    bundle = option(args, "--bundle", "-b") or "."
    rewrite(os.path.join(bundle, "config.json"), "process")
elif command == "exec":
    process = option(args, "--process", "-p")
    if process:
        rewrite(process, None)
os.execv(REAL, [REAL] + sys.argv[1:])
"""



def runc_wrapper(real: str) -> str:
    """The wrapper's program, calling the real runc at REAL."""
    return RUNC_WRAPPER.replace("@REAL@", real)


SSHD_CONFIG = """\
# mortar test bed node: root logs in with the bed's key only.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
HostKey /etc/ssh/ssh_host_ed25519_key
UseDNS no
# Ansible opens many sessions at once over one multiplexed connection.
MaxSessions 64
MaxStartups 64:30:128
"""

DOCKERFILE = f"""\
FROM {BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d \\
 && apt-get update -q \\
 && apt-get install -y -q --no-install-recommends {' '.join(PACKAGES)} \\
 && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d /etc/ssh/ssh_host_*_key* \\
 && dpkg-divert --local --rename --divert /usr/sbin/runc.real --add /usr/sbin/runc \\
 && sed -i -E 's/^session\\s+required\\s+pam_loginuid.so/session optional pam_loginuid.so/' /etc/pam.d/sshd \\
 && install -d -m 0700 /root/.ssh
COPY sshd.conf /etc/ssh/sshd_config.d/10-mortar-testbed.conf
COPY runc /usr/sbin/runc
COPY entrypoint /usr/local/sbin/mortar-node-init
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/sbin/mortar-node-init"]
"""


def context_files() -> dict[str, bytes]:
    """Every file of the build context except the Dockerfile."""
    return {"entrypoint": ENTRYPOINT.encode(), "runc": runc_wrapper("/usr/sbin/runc.real").encode(),
            "sshd.conf": SSHD_CONFIG.encode()}


def content_hash(dockerfile: str = DOCKERFILE, files: dict[str, bytes] | None = None) -> str:
    """A short hash of the Dockerfile and the context files: the image tag."""
    digest = hashlib.sha256()
    for name, data in sorted({"Dockerfile": dockerfile.encode(), **(files or context_files())}.items()):
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:16]


def image_ref() -> str:
    return f"{REPOSITORY}:{content_hash()}"


def ensure_node_image(engine: Engine, log: Callable[[str], None] = print) -> str:
    """The node image's reference: the local one when present, else built now (about a minute)."""
    from mortar.builder.baseimage import ensure_base_image
    from mortar.builder.builder import context_tar

    ref = image_ref()
    if engine.image(ref) is not None:
        return ref
    ensure_base_image(engine, BASE_IMAGE, BASE_SUITE, True, log=log)
    log(f"building {ref} from {BASE_IMAGE}")
    tail: list[str] = []

    def output(text: str) -> None:
        tail[:] = (tail + text.splitlines())[-15:]

    try:
        engine.build(context_tar(DOCKERFILE, context_files()), ref, {IMAGE_LABEL: content_hash()}, False, output)
    except EngineError as exc:
        raise EngineError(f"building the test bed node image failed: {exc}\n" + "\n".join(tail)) from None
    return ref
