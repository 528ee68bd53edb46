"""A one-node Kubernetes cluster on this machine, for mortar's Kubernetes path to be tested against.

The programs come from mortar.testbed.k8sbuild (Kubernetes 1.20 built from Debian's source).
The cluster lives in a network namespace of its own, reached from this machine through one
veth pair in a subnet of its own (LINK: this machine .1, the node .2); pods get addresses in
PODS, Services in SERVICES, and this machine routes both through the node, and PROVIDER (for
a site's floating IPs behind the node's br-ex) too. Every daemon runs
inside one private mount namespace with a /run of its own, where what the kubelet would write
on the host (pod logs, kernel settings it rewrites: vm.overcommit_memory, kernel.panic,
kernel.panic_on_oops) is bound to the cluster's own folder, so the node's agents (the switch's
and the hypervisor's sockets under /run) never meet this machine's own. Its containerd is one of its own
(own root, state and socket, the CRI plugin on, cgroupfs), separate from the Docker Engine's;
privileged pods run through the test bed's runc wrapper, which drops CAP_SYS_RESOURCE that
this machine does not grant.

State: STATE_ROOT/NAME (certificates, kubeconfigs, etcd's data, the kubelet's folder, logs)
and RUN_ROOT/NAME (process ids, sockets). `down` ends only the processes `up` started, by
their recorded ids, after the cluster's containerd has stopped every pod.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mortar import pki
from mortar.errors import MortarError
from mortar.files import private_directory, read_text, write_private
from mortar.testbed import k8sbuild
from mortar.testbed.image import runc_wrapper

Log = Callable[[str], None]

STATE_ROOT = Path("/var/lib/mortar-k8s")
RUN_ROOT = Path("/run/mortar-k8s")
LINK = ipaddress.ip_network("10.213.80.0/24")
PODS = ipaddress.ip_network("10.213.81.0/24")
SERVICES = ipaddress.ip_network("10.213.82.0/24")
# For a site's provider network behind the node's br-ex (neutron_external_veth_address 10.213.83.1/24):
# floating IPs there are reached from this machine through the node.
PROVIDER = ipaddress.ip_network("10.213.83.0/24")
API_PORT = 6443
# The order daemons start in (and stop in reverse); each waits for the one before it.
DAEMONS = ("containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
           "kube-proxy")
# Kernel settings the kubelet writes at start; global to the machine, so bound to files of the cluster.
KERNEL_SETTINGS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
READY_TIMEOUT = 180.0


@dataclass(frozen=True)
class Cluster:
    name: str = "mortar"

    # ---- where things are ---------------------------------------------------------------
    @property
    def state(self) -> Path:
        return STATE_ROOT / self.name

    @property
    def run(self) -> Path:
        return RUN_ROOT / self.name

    @property
    def netns(self) -> str:
        return f"mortar-k8s-{self.name}"

    @property
    def host_veth(self) -> str:
        return f"mk8s-{self.name}"[:15]

    @property
    def node(self) -> str:
        return f"{self.name}-node1"

    @property
    def host_address(self) -> str:
        return str(LINK[1])

    @property
    def node_address(self) -> str:
        return str(LINK[2])

    @property
    def server(self) -> str:
        return f"https://{self.node_address}:{API_PORT}"

    @property
    def kubeconfig(self) -> Path:
        """The cluster administrator's kubeconfig (mode 0600)."""
        return self.state / "admin.kubeconfig"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    def pid_file(self, daemon: str) -> Path:
        return self.run / f"{daemon}.pid"

    def log_file(self, daemon: str) -> Path:
        return self.state / "logs" / f"{daemon}.log"

    # ---- up -------------------------------------------------------------------------------
    def up(self, log: Log = print) -> None:
        """Build the programs when missing, then start whatever of the cluster is not running and
        wait until its node is Ready. Running daemons are kept."""
        if os.geteuid() != 0:
            raise MortarError("the test cluster needs root (network and mount namespaces, containerd)",
                              fix="run as root")
        k8sbuild.ensure_built(log)
        k8sbuild.apt_install(k8sbuild.RUN_PACKAGES, log)
        started = time.monotonic()
        private_directory(self.state)
        private_directory(self.run)
        (self.state / "logs").mkdir(exist_ok=True)
        self._network(log)
        self._certificates()
        self._files()
        holder = self._mount_namespace()
        for daemon in DAEMONS:
            if self._alive(daemon):
                continue
            self._start(daemon, holder)
            self._wait_started(daemon)
            log(f"{daemon}: running (pid {self._pid(daemon)})")
            if daemon == "containerd":
                self._import_pause()
        self._wait_node_ready()
        log(f"cluster {self.name!r} ready in {time.monotonic() - started:.0f}s: node {self.node} at "
            f"{self.node_address}, API {self.server}, kubeconfig {self.kubeconfig}")

    def _sh(self, argv: list[str], what: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(argv, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise MortarError(f"{what} failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
        return proc

    def in_netns(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--", *argv]

    def _network(self, log: Log) -> None:
        if not Path(f"/run/netns/{self.netns}").exists():
            self._sh(["ip", "netns", "add", self.netns], "ip netns add")
            log(f"network namespace {self.netns}")
        if self._sh(["ip", "link", "show", self.host_veth], "", check=False).returncode != 0:
            self._sh(["ip", "link", "add", self.host_veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns],
                     "ip link add (the cluster's veth pair)")
        self._sh(["ip", "addr", "replace", f"{self.host_address}/{LINK.prefixlen}", "dev", self.host_veth], "ip addr")
        self._sh(["ip", "link", "set", self.host_veth, "up"], "ip link set up")
        for argv in (["ip", "addr", "replace", f"{self.node_address}/{LINK.prefixlen}", "dev", "eth0"],
                     ["ip", "link", "set", "eth0", "up"], ["ip", "link", "set", "lo", "up"]):
            self._sh(self.in_netns(argv), " ".join(argv))
        # The node reaches this machine only: its default route points here, and this machine
        # forwards nothing out of LINK (no masquerading is set up).
        self._sh(self.in_netns(["ip", "route", "replace", "default", "via", self.host_address]), "ip route (node)")
        # The node routes between this machine and its pods, Services and provider network.
        self._sh(self.in_netns(["sysctl", "-qw", "net.ipv4.ip_forward=1"]), "sysctl ip_forward (node)")
        for network in (PODS, SERVICES, PROVIDER):
            self._sh(["ip", "route", "replace", str(network), "via", self.node_address], f"ip route {network}")

    def _certificates(self) -> None:
        pki_dir = private_directory(self.state / "pki")
        if (pki_dir / "ca.crt").exists():
            return
        ca = pki.make_ca(f"mortar test cluster {self.name}")
        first_service = str(SERVICES[1])
        issued = {
            "apiserver": pki.issue(ca, "kube-apiserver", server=True, names=(
                self.node_address, first_service, "127.0.0.1", "kubernetes", "kubernetes.default",
                "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")),
            "apiserver-kubelet-client": pki.issue(ca, "kube-apiserver-kubelet-client",
                                                  organizations=("system:masters",), client=True),
            "admin": pki.issue(ca, "mortar-admin", organizations=("system:masters",), client=True),
            "kube-controller-manager": pki.issue(ca, "system:kube-controller-manager", client=True),
            "kube-scheduler": pki.issue(ca, "system:kube-scheduler", client=True),
            "kubelet": pki.issue(ca, f"system:node:{self.node}", organizations=("system:nodes",), client=True),
            "kubelet-serving": pki.issue(ca, self.node, names=(self.node_address, self.node), server=True),
            "kube-proxy": pki.issue(ca, "system:kube-proxy", client=True),
        }
        for name, cert in issued.items():
            write_private(pki_dir / f"{name}.crt", cert.certificate)
            write_private(pki_dir / f"{name}.key", cert.key)
        accounts = pki.key_pair()
        write_private(pki_dir / "service-accounts.pub", accounts.certificate)
        write_private(pki_dir / "service-accounts.key", accounts.key)
        write_private(pki_dir / "ca.key", ca.key)
        write_private(pki_dir / "ca.crt", ca.certificate, mode=0o644)

    def _kubeconfig(self, user: str) -> str:
        pki_dir = self.state / "pki"
        return json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": self.name,
            "clusters": [{"name": self.name, "cluster": {"server": self.server,
                                                        "certificate-authority": str(pki_dir / "ca.crt")}}],
            "users": [{"name": user, "user": {"client-certificate": str(pki_dir / f"{user}.crt"),
                                              "client-key": str(pki_dir / f"{user}.key")}}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": user}}]}, indent=1)

    def _files(self) -> None:
        state, run = self.state, self.run
        for user in ("admin", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"):
            write_private(state / f"{user}.kubeconfig", self._kubeconfig(user))
        write_private(state / "runc", runc_wrapper(shutil.which("runc") or "/usr/sbin/runc"), mode=0o700)
        cni = state / "cni"
        cni.mkdir(exist_ok=True)
        write_private(cni / "10-mortar.conflist", json.dumps({
            "cniVersion": "0.4.0", "name": "mortar", "plugins": [
                {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": str(PODS)}]], "routes": [{"dst": "0.0.0.0/0"}],
                          "dataDir": str(state / "cni-ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}}]}, indent=1))
        write_private(state / "containerd.toml", f"""version = 2
root = "{state / 'containerd'}"
state = "{run / 'containerd'}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{run / 'containerd.sock.ttrpc'}"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{state / 'containerd-opt'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{k8sbuild.PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{state / 'runc'}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{k8sbuild.program('cni')}"
    conf_dir = "{cni}"
""")
        pki_dir = state / "pki"
        write_private(state / "kubelet.yaml", json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(pki_dir / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(pki_dir / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(pki_dir / "kubelet-serving.key"),
            "address": self.node_address, "healthzBindAddress": "127.0.0.1", "readOnlyPort": 0,
            "cgroupDriver": "cgroupfs", "cgroupsPerQOS": False, "enforceNodeAllocatable": [],
            "failSwapOn": False, "protectKernelDefaults": False, "serializeImagePulls": False,
            "resolvConf": "", "clusterDNS": [], "maxPods": 110,
            # This machine's disk is shared with everything else on it: evict only when nearly full.
            "evictionHard": {"memory.available": "200Mi", "nodefs.available": "2%", "imagefs.available": "2%"},
            "imageGCHighThresholdPercent": 99, "imageGCLowThresholdPercent": 98}, indent=1))

    def _mount_namespace(self) -> int:
        """The pid of the process holding the cluster's mount namespace, started when missing."""
        if self._alive("mounts"):
            return self._pid("mounts")
        scratch = self.state / "host"
        lines = ["set -e", "mount --make-rslave /"]
        created = []
        # Folders the kubelet writes whatever its flags say: bound to the cluster's own. A mount
        # point this machine lacks is made (an empty folder) and removed again by `down`.
        for folder, target in (("pods-logs", "/var/log/pods"), ("containers-logs", "/var/log/containers")):
            (scratch / folder).mkdir(parents=True, exist_ok=True)
            if not Path(target).exists():
                Path(target).mkdir(parents=True)
                created.append(target)
            lines.append(f"mount --bind {scratch / folder} {target}")
        if created:
            (self.state / "made-mount-points").write_text("".join(f"{t}\n" for t in created))
        (scratch / "sys").mkdir(parents=True, exist_ok=True)
        for setting in KERNEL_SETTINGS:
            copy = scratch / "sys" / setting.replace("/", ".")
            copy.write_text(Path("/proc/sys", setting).read_text())
            lines.append(f"mount --bind {copy} /proc/sys/{setting}")
        # A /run of its own: the node's agents use /run/openvswitch, /run/libvirt, ... as a host's,
        # which must not be this machine's (its own deployment may use them), and the kubelet must
        # not find the Docker Engine's socket there. The cluster's own run folder is kept.
        keep = scratch / "run-keep"
        keep.mkdir(parents=True, exist_ok=True)
        lines += [f"mount --bind {self.run} {keep}", "mount -t tmpfs -o mode=0755 mortar-k8s-run /run",
                  f"mkdir -p {self.run}", f"mount --move {keep} {self.run}"]
        lines.append(f"touch {self.run / 'mounts.ready'}")
        lines.append("exec sleep infinity")
        (self.run / "mounts.ready").unlink(missing_ok=True)
        with self.log_file("mounts").open("a") as out:
            proc = subprocess.Popen(["unshare", "--mount", "--propagation", "unchanged", "sh", "-c", "\n".join(lines)],
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self._record_pid("mounts", proc.pid)
        deadline = time.monotonic() + 10
        while not (self.run / "mounts.ready").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise self._failed("mounts", "(the cluster's mount namespace) did not come up")
            time.sleep(0.1)
        return proc.pid

    def _argv(self, daemon: str) -> list[str]:
        state, pki_dir, bin_ = self.state, self.state / "pki", k8sbuild.cache_dir() / "bin"
        if daemon == "containerd":
            return ["containerd", "--config", str(state / "containerd.toml")]
        if daemon == "etcd":
            return [str(bin_ / "etcd"), "--data-dir", str(state / "etcd"), "--name", self.node,
                    "--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
                    "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
                    "--initial-cluster", f"{self.node}=http://127.0.0.1:2380"]
        if daemon == "kube-apiserver":
            return [str(bin_ / daemon), "--etcd-servers=http://127.0.0.1:2379",
                    f"--bind-address={self.node_address}", f"--advertise-address={self.node_address}",
                    f"--secure-port={API_PORT}", "--insecure-port=0", f"--service-cluster-ip-range={SERVICES}",
                    f"--client-ca-file={pki_dir / 'ca.crt'}", f"--tls-cert-file={pki_dir / 'apiserver.crt'}",
                    f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
                    f"--kubelet-client-certificate={pki_dir / 'apiserver-kubelet-client.crt'}",
                    f"--kubelet-client-key={pki_dir / 'apiserver-kubelet-client.key'}",
                    f"--service-account-key-file={pki_dir / 'service-accounts.pub'}",
                    f"--service-account-signing-key-file={pki_dir / 'service-accounts.key'}",
                    "--service-account-issuer=https://kubernetes.default.svc",
                    "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
                    "--allow-privileged=true", "--service-node-port-range=30000-32767",
                    "--endpoint-reconciler-type=lease", "--profiling=false",
                    # The node by its address: names would be looked up in a DNS the cluster has not.
                    "--kubelet-preferred-address-types=InternalIP"]
        if daemon == "kube-controller-manager":
            return [str(bin_ / daemon), f"--kubeconfig={state / 'kube-controller-manager.kubeconfig'}",
                    f"--authentication-kubeconfig={state / 'kube-controller-manager.kubeconfig'}",
                    f"--authorization-kubeconfig={state / 'kube-controller-manager.kubeconfig'}",
                    "--bind-address=127.0.0.1", "--leader-elect=false", "--use-service-account-credentials=true",
                    f"--service-account-private-key-file={pki_dir / 'service-accounts.key'}",
                    f"--root-ca-file={pki_dir / 'ca.crt'}", f"--cluster-signing-cert-file={pki_dir / 'ca.crt'}",
                    f"--cluster-signing-key-file={pki_dir / 'ca.key'}", f"--service-cluster-ip-range={SERVICES}",
                    f"--flex-volume-plugin-dir={state / 'volume-plugins'}", "--profiling=false"]
        if daemon == "kube-scheduler":
            return [str(bin_ / daemon), f"--kubeconfig={state / 'kube-scheduler.kubeconfig'}",
                    f"--authentication-kubeconfig={state / 'kube-scheduler.kubeconfig'}",
                    f"--authorization-kubeconfig={state / 'kube-scheduler.kubeconfig'}",
                    "--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false"]
        if daemon == "kubelet":
            return [str(bin_ / daemon), f"--config={state / 'kubelet.yaml'}",
                    f"--kubeconfig={state / 'kubelet.kubeconfig'}", "--container-runtime=remote",
                    f"--container-runtime-endpoint=unix://{self.containerd_socket}",
                    f"--node-ip={self.node_address}", f"--hostname-override={self.node}",
                    f"--root-dir={state / 'kubelet'}", f"--volume-plugin-dir={state / 'volume-plugins'}",
                    "--register-node=true"]
        if daemon == "kube-proxy":
            return [str(bin_ / daemon), f"--kubeconfig={state / 'kube-proxy.kubeconfig'}",
                    f"--hostname-override={self.node}", f"--cluster-cidr={PODS}", "--proxy-mode=iptables",
                    f"--bind-address={self.node_address}", "--metrics-bind-address=127.0.0.1:10249",
                    "--healthz-bind-address=127.0.0.1:10256",
                    # 0: leave the machine-wide conntrack settings as they are.
                    "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0",
                    "--conntrack-tcp-timeout-close-wait=0"]
        raise AssertionError(daemon)

    def _start(self, daemon: str, holder: int) -> None:
        argv = ["nsenter", f"--mount=/proc/{holder}/ns/mnt", f"--net=/run/netns/{self.netns}", "--",
                *self._argv(daemon)]
        with self.log_file(daemon).open("a") as out:
            out.write(f"---- {time.strftime('%Y-%m-%dT%H:%M:%S')} start\n")
            out.flush()
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self._record_pid(daemon, proc.pid)

    def _record_pid(self, daemon: str, pid: int) -> None:
        # The process's start time goes beside its id: a pid file that outlived its process (a
        # machine restarted, or restored from a copy) may name a pid some other process now has.
        self.pid_file(daemon).write_text(f"{pid} {_start_time(pid)}\n")

    def _pid(self, daemon: str) -> int:
        try:
            return int(self.pid_file(daemon).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def _alive(self, daemon: str) -> bool:
        """Whether the process this cluster started as DAEMON still runs (not a zombie, and not
        another process that was given the same pid)."""
        try:
            pid, started = self.pid_file(daemon).read_text().split()
        except (OSError, ValueError):
            return False
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z" and _start_time(int(pid)) == started

    def _failed(self, daemon: str, why: str) -> MortarError:
        tail = "\n".join(read_text(self.log_file(daemon), what="log").splitlines()[-12:])
        return MortarError(f"{daemon} of the test cluster {why}:\n{tail}", fix=f"see {self.log_file(daemon)}")

    def _wait_started(self, daemon: str) -> None:
        checks: dict[str, Callable[[], bool]] = {
            "containerd": lambda: _socket_answers(self.containerd_socket),
            "etcd": lambda: self._port_open(2379),
            "kube-apiserver": lambda: self._get("/readyz") is not None,
        }
        check = checks.get(daemon, lambda: True)
        deadline = time.monotonic() + 120
        while not check():
            if not self._alive(daemon):
                raise self._failed(daemon, "exited while starting")
            if time.monotonic() > deadline:
                raise self._failed(daemon, "did not come up in 120 s")
            time.sleep(0.5)
        time.sleep(0.3)
        if not self._alive(daemon):
            raise self._failed(daemon, "exited while starting")

    def _port_open(self, port: int) -> bool:
        script = f"import socket; socket.create_connection(('127.0.0.1', {port}), 1).close()"
        return subprocess.run(self.in_netns(["python3", "-c", script]), capture_output=True).returncode == 0

    def _ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.state / "pki" / "ca.crt"))
        context.load_cert_chain(str(self.state / "pki" / "admin.crt"), str(self.state / "pki" / "admin.key"))
        return context

    def _get(self, path: str) -> dict | str | None:
        """GET PATH from the API server as the administrator; None when it does not answer 200."""
        try:
            with urllib.request.urlopen(self.server + path, context=self._ssl(), timeout=5) as answer:
                body = answer.read().decode()
        except (OSError, ValueError):
            return None
        try:
            return json.loads(body)
        except ValueError:
            return body

    def _import_pause(self) -> None:
        archive = k8sbuild.cache_dir() / "pause.tar"
        self._sh(["ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", "images", "import",
                  "--no-unpack=false", str(archive)], "importing the pause image")

    def _wait_node_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            node = self._get(f"/api/v1/nodes/{self.node}")
            if isinstance(node, dict):
                ready = [c for c in node.get("status", {}).get("conditions", []) if c.get("type") == "Ready"]
                if ready and ready[0].get("status") == "True":
                    return
                why = ready[0].get("message", "") if ready else "no Ready condition yet"
            else:
                why = "not registered yet"
            for daemon in DAEMONS:
                if not self._alive(daemon):
                    raise self._failed(daemon, "exited")
            if time.monotonic() > deadline:
                raise self._failed("kubelet", f"did not make node {self.node} Ready in {READY_TIMEOUT:.0f} s ({why})")
            time.sleep(1)

    # ---- images ---------------------------------------------------------------------------
    def load_images(self, engine, refs: list[str], log: Log = print) -> None:
        """Copy images from this machine's engine into the cluster's containerd (kept under the
        same names; pods ask for them with imagePullPolicy IfNotPresent)."""
        import tempfile

        missing = [ref for ref in refs if engine.image(ref) is None]
        if missing:
            raise MortarError(f"no image {missing[0]} in this machine's engine", fix="build it first (mortar build)")
        with tempfile.TemporaryDirectory(prefix="mortar-k8s-images-") as tmp:
            archive = Path(tmp) / "images.tar"
            proc = subprocess.run(["docker", "save", "-o", str(archive), *refs], capture_output=True, text=True)
            if proc.returncode != 0:
                raise MortarError(f"docker save failed: {proc.stderr.strip()[-300:]}")
            self._sh(["ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", "images", "import",
                      str(archive)], "importing images into the cluster")
        log(f"{len(refs)} image(s) loaded into cluster {self.name!r}")

    # ---- status and down --------------------------------------------------------------------
    def status(self) -> list[tuple[str, str]]:
        rows = [(daemon, f"running (pid {self._pid(daemon)})" if self._alive(daemon) else "stopped")
                for daemon in ("mounts", *DAEMONS)]
        node = self._get(f"/api/v1/nodes/{self.node}") if self._alive("kube-apiserver") else None
        if isinstance(node, dict):
            ready = [c for c in node.get("status", {}).get("conditions", []) if c.get("type") == "Ready"]
            rows.append((f"node {self.node}", "Ready" if ready and ready[0].get("status") == "True" else "NotReady"))
        return rows

    def down(self, log: Log = print) -> None:
        """Stop every pod, end the cluster's processes (by their recorded ids), remove its network
        and its state. The programs stay cached."""
        if self._alive("containerd"):
            self._remove_pods(log)
        for daemon in reversed(("mounts", *DAEMONS)):
            self._stop(daemon, log)
        for network in (PODS, SERVICES, PROVIDER):
            self._sh(["ip", "route", "del", str(network)], "", check=False)
        if self._sh(["ip", "link", "show", self.host_veth], "", check=False).returncode == 0:
            self._sh(["ip", "link", "del", self.host_veth], "ip link del")
        if Path(f"/run/netns/{self.netns}").exists():
            self._sh(["ip", "netns", "del", self.netns], "ip netns del")
        shutil.rmtree(self.run, ignore_errors=True)
        self._remove_cgroups()
        made = self.state / "made-mount-points"
        for target in (made.read_text().split() if made.exists() else []):
            try:
                Path(target).rmdir()
            except OSError:
                pass  # not empty: something else writes there now
        if self.state.exists():
            # The kubelet's folder may still hold mounts (secrets as tmpfs) made in the namespace that is gone.
            shutil.rmtree(self.state, ignore_errors=True)
        log(f"cluster {self.name!r} is down")

    @staticmethod
    def _remove_cgroups() -> None:
        """The cgroups the pods' containers were put in (containerd's k8s.io tree), once empty;
        one still in use (another cluster's) stays."""
        for controller in Path("/sys/fs/cgroup").iterdir():
            tree = controller / "k8s.io"
            if not tree.is_dir() or tree.is_symlink():
                continue
            for folder in sorted((p for p in tree.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                try:
                    folder.rmdir()
                except OSError:
                    pass
            try:
                tree.rmdir()
            except OSError:
                pass

    def _remove_pods(self, log: Log) -> None:
        ctr = ["ctr", "--address", str(self.containerd_socket), "-n", "k8s.io"]
        tasks = self._sh([*ctr, "tasks", "ls", "-q"], "ctr tasks ls", check=False).stdout.split()
        for task in tasks:
            self._sh([*ctr, "tasks", "kill", "-s", "SIGKILL", task], "", check=False)
        deadline = time.monotonic() + 30
        while tasks and time.monotonic() < deadline:
            listed = self._sh([*ctr, "tasks", "ls"], "", check=False).stdout
            if all("RUNNING" not in line for line in listed.splitlines()[1:]):
                break
            time.sleep(0.5)
        for task in tasks:
            self._sh([*ctr, "tasks", "delete", "-f", task], "", check=False)
        for container in self._sh([*ctr, "containers", "ls", "-q"], "", check=False).stdout.split():
            self._sh([*ctr, "containers", "delete", container], "", check=False)
        if tasks:
            log(f"stopped {len(tasks)} container(s) of the cluster's pods")

    def _stop(self, daemon: str, log: Log) -> None:
        pid = self._pid(daemon)
        if pid and self._alive(daemon):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while self._alive(daemon) and time.monotonic() < deadline:
                time.sleep(0.2)
            if self._alive(daemon):
                os.kill(pid, signal.SIGKILL)
            log(f"{daemon}: stopped")
        self.pid_file(daemon).unlink(missing_ok=True)


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), "" when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _socket_answers(path: Path) -> bool:
    """Whether a process listens on the unix socket PATH (a file left by a dead one does not count)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True
