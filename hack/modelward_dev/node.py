"""A real Kubernetes node for the local control plane: containerd + runc + bridge CNI + kubelet.

Pods really run: init containers, termination messages, logs, exec, probes, Pod Security
settings, RuntimeClasses, image volumes. The recipe and every obstacle it passes are recorded in
docs/development.md ("The test node"); in short:

* **Nothing on the host changes.** containerd and the kubelet run inside
  ``unshare --pid --fork --kill-child --mount --propagation private --mount-proc``. Inside, an
  overlay (lower = the host folder, upper = this node's work folder) covers each folder they
  write to whatever their configuration says (/etc, /opt, /run, /var/lib, /var/log), and the
  sysctls the kubelet and the bridge plugin set are files bind-mounted over /proc/sys entries.
  What stays on the host is named after the node and removed by ``stop()``: a cgroup folder in
  each hierarchy and the bridge.
* **Everything dies with the harness.** The PID namespace ends when ``unshare`` does (it is
  tied to this Python process); container shims, which re-parent to the namespace's PID 1, die
  with it. ``stop()`` needs no live kubelet: it kills the namespace, then removes the cgroups
  (deepest first, waiting for the host's slow reaping), the bridge and the Node object.
* **Every name is a parameter** (node name, ports, bridge, subnet, cgroup root), so parallel
  sessions run their own nodes.
* On this machine kind: cgroup v1 (``failCgroupV1: false``, cgroupfs driver), no
  CAP_SYS_RESOURCE (containerd's ``restrict_oom_score_adj``), and the API server dials the
  node by its Hostname address, so the node is named ``localhost`` with the kubelet on
  127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shlex
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelward_dev.binaries import NodeBinaries, find_node_binaries
from modelward_dev.controlplane import (
    LocalControlPlane,
    ManagedProcess,
    free_ports,
    register_cleanup,
    unregister_cleanup,
)
from modelward_dev.lifecycle import StartStop

__all__ = [
    "CGROUP_ROOT",
    "HOST_FOLDERS",
    "SYSCTLS",
    "LocalNode",
    "NodeError",
    "NodeSettings",
]

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: Host folders the kubelet, containerd, runc and the CNI plugins write into whatever their
#: configuration says (device-plugins, /var/log/containers, shim sockets, /run/nri, libmount's
#: /run/mount, libcni's cache...): each is covered by an overlay inside the node's namespace.
HOST_FOLDERS = ("/etc", "/opt", "/run", "/var/lib", "/var/log")
#: /proc/sys entries set by the kubelet (its "kernel defaults") and by the bridge plugin, with
#: the values they want: bind-mounted files, so the host's values never change.
SYSCTLS: Mapping[str, str] = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
    "net/ipv4/ip_forward": "1",
}


class NodeError(RuntimeError):
    """The node did not start or become Ready; the message quotes the logs."""


@dataclass(frozen=True)
class NodeSettings:
    """Every name, address and port of a node: parameters, so that nodes never collide."""

    #: The API server dials a node by its Hostname address and the kubelet refuses a loopback
    #: node IP: "localhost", with the kubelet on 127.0.0.1, is what lets logs/exec work.
    name: str = "localhost"
    #: Prefix of the cgroup folder created in every hierarchy, and of the bridge's name.
    cgroup_root: str = "/modelward-node"
    bridge: str = "mwbr0"
    subnet: str = "10.85.0.0/24"
    gateway: str = "10.85.0.1"
    kubelet_port: int = 0  # 0: a free port
    healthz_port: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    #: Extra RuntimeClass handlers (runc entries of containerd), e.g. ("runc-hardened",).
    runtime_handlers: tuple[str, ...] = ("runc-hardened",)
    max_pods: int = 60


class LocalNode(StartStop):
    """containerd + kubelet in private PID and mount namespaces, registered with the cluster.

    Attributes valid after ``start()``: ``work_dir``, ``settings`` (ports filled in),
    ``kubelet_log_path``, ``containerd_log_path``, ``containerd_socket``.
    """

    def __init__(
        self,
        *,
        control_plane: LocalControlPlane,
        registry_host: str,
        pause_image: str,
        settings: NodeSettings | None = None,
        binaries: NodeBinaries | None = None,
        work_dir: Path | None = None,
        keep_work_dir: bool = False,
        ready_timeout: float = 90.0,
    ) -> None:
        """Describe the node; nothing starts before ``start()``.

        Args:
            control_plane: a started control plane created with ``node_support=True``.
            registry_host: ``127.0.0.1:PORT`` of the plain-HTTP registry images come from.
            pause_image: the sandbox image (in that registry), e.g. ``127.0.0.1:P/pause:3.10``.
            settings: names, ports, subnet; defaults suit one node per host.
            binaries: the node's programs; found (or built) with ``find_node_binaries()``.
            work_dir: folder for configuration, state, overlays and logs; a temporary one if
                None (a given folder is never deleted).
            keep_work_dir: keep the temporary folder (logs) after ``stop()``.
            ready_timeout: seconds allowed for the Node to report Ready.
        """
        self.control_plane = control_plane
        self.registry_host = registry_host
        self.pause_image = pause_image
        self._settings = settings or NodeSettings()
        self._binaries = binaries
        self._given_work_dir = work_dir
        self._keep_work_dir = keep_work_dir or work_dir is not None
        self._ready_timeout = ready_timeout
        self._work_dir: Path | None = None
        self._process: ManagedProcess | None = None
        self._lock = threading.RLock()

    # -- lifecycle --

    def start(self) -> None:
        """Prepare cgroups and configuration, start the namespace, wait for the Node Ready.

        Raises:
            BinariesUnavailableError: a program is missing and cannot be built.
            NodeError: containerd or the kubelet exited or the Node was not Ready in time; the
                message quotes their logs (kept on failure).
        """
        with self._lock:
            if self._process is not None:
                raise RuntimeError("this node was already started")
            binaries = self._binaries or find_node_binaries()
            self._binaries = binaries
            if self._given_work_dir is not None:
                self._work_dir = self._given_work_dir.resolve()
                self._work_dir.mkdir(parents=True, exist_ok=True)
            else:
                self._work_dir = Path(tempfile.mkdtemp(prefix="modelward-node-"))
            if self._settings.kubelet_port == 0 or self._settings.healthz_port == 0:
                kubelet_port, healthz_port = free_ports(2)
                self._settings = _replace(
                    self._settings,
                    kubelet_port=self._settings.kubelet_port or kubelet_port,
                    healthz_port=self._settings.healthz_port or healthz_port,
                )
            register_cleanup(self.stop)
            try:
                self._remove_leftovers()
                self._create_cgroups()
                self._create_bridge()
                script = self._write_configuration(binaries)
                self._process = ManagedProcess(
                    name=f"node {self._settings.name}",
                    args=[
                        "unshare",
                        "--pid",
                        "--fork",
                        "--kill-child",
                        "--mount",
                        "--propagation",
                        "private",
                        "--mount-proc",
                        "bash",
                        str(script),
                    ],
                    log_path=self.work_dir / "logs" / "namespace.log",
                    cwd=self.work_dir,
                )
                self._process.start()
                self._wait_until_ready()
            except BaseException:
                self._keep_work_dir = True
                self.stop()
                raise

    def stop(self) -> None:
        """Kill the namespace (every container with it), remove cgroups, bridge, Node. Idempotent.

        Needs no live kubelet or containerd: a node killed half-way is cleaned the same way.
        """
        with self._lock:
            unregister_cleanup(self.stop)
            if self._process is not None:
                self._process.stop(grace=2.0)
            if self._work_dir is None:
                return
            self._remove_cgroups()
            self._delete_bridge()
            with contextlib.suppress(OSError, RuntimeError):
                self.control_plane.api_request(
                    "DELETE", f"/api/v1/nodes/{self._settings.name}", timeout=5.0
                )
            if not self._keep_work_dir:
                shutil.rmtree(self._work_dir, ignore_errors=True)

    # -- attributes --

    @property
    def settings(self) -> NodeSettings:
        return self._settings

    @property
    def name(self) -> str:
        return self._settings.name

    @property
    def work_dir(self) -> Path:
        if self._work_dir is None:
            raise RuntimeError("the node has not been started")
        return self._work_dir

    @property
    def kubelet_log_path(self) -> Path:
        return self.work_dir / "logs" / "kubelet.log"

    @property
    def containerd_log_path(self) -> Path:
        return self.work_dir / "logs" / "containerd.log"

    @property
    def containerd_socket(self) -> Path:
        return self.work_dir / "containerd" / "containerd.sock"

    def is_running(self) -> bool:
        return self._process is not None and self._process.running()

    def cgroup_folders(self) -> list[Path]:
        """This node's cgroup folder in every mounted hierarchy (v1 controllers and v2)."""
        relative = self._settings.cgroup_root.strip("/")
        return [h / relative for h in _cgroup_hierarchies()]

    def describe_failure(self) -> str:
        parts = []
        for path in (
            self.work_dir / "logs" / "namespace.log",
            self.containerd_log_path,
            self.kubelet_log_path,
        ):
            parts.append(f"{path}:\n" + _tail(path, 25))
        return "\n".join(parts)

    # -- startup internals --

    def _remove_leftovers(self) -> None:
        """What a killed run of the same node left: a stale Node (it still reads Ready), a
        cgroup folder, a bridge."""
        self.control_plane.api_request(
            "DELETE", f"/api/v1/nodes/{self._settings.name}", timeout=10.0
        )
        self._remove_cgroups()
        self._delete_bridge()

    def _create_cgroups(self) -> None:
        for folder in self.cgroup_folders():
            folder.mkdir(exist_ok=True)
            if folder.parent.name == "cpuset":
                # A new cpuset is empty: no task may join it before cpus and mems are set.
                for name in ("cpuset.cpus", "cpuset.mems"):
                    (folder / name).write_text((folder.parent / name).read_text())

    def _remove_cgroups(self) -> None:
        deadline = time.monotonic() + 30.0
        for top in self.cgroup_folders():
            if not top.exists():
                continue
            folders = sorted(
                (p for p in top.rglob("*") if p.is_dir()),
                key=lambda p: len(p.parts),
                reverse=True,
            )
            for folder in [*folders, top]:
                # Zombies of the namespace keep a v1 cgroup busy until the host reaps them.
                while True:
                    try:
                        folder.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError as error:
                        if time.monotonic() > deadline:
                            raise NodeError(
                                f"cannot remove cgroup {folder}: {error}; processes left: "
                                f"{_read(folder / 'cgroup.procs').split()}"
                            ) from error
                        time.sleep(0.1)

    def _create_bridge(self) -> None:
        """The pods' bridge, created here (not by the CNI plugin) so its name is ours to remove.

        The bridge plugin finds it, adds the gateway address if missing and attaches pods.

        Its MAC address is set explicitly: a bridge whose address the kernel chose takes the
        lowest MAC of its ports and changes whenever a pod's veth with a lower one comes or
        goes. Pods keep the gateway's old MAC in their ARP cache, and every packet between a
        pod and the host (API calls through the ``kubernetes`` Service stand-in, webhook
        calls, /metrics) is dropped for half a minute until the entry expires."""
        s = self._settings
        prefix = s.subnet.split("/")[1]
        _ip("link", "add", "name", s.bridge, "address", bridge_mac(s.bridge), "type", "bridge")
        _ip("addr", "add", f"{s.gateway}/{prefix}", "dev", s.bridge)
        _ip("link", "set", s.bridge, "up")

    def _delete_bridge(self) -> None:
        if Path(f"/sys/class/net/{self._settings.bridge}").exists():
            _ip("link", "del", self._settings.bridge)

    def _write_configuration(self, binaries: NodeBinaries) -> Path:
        s = self._settings
        work = self.work_dir
        cp = self.control_plane
        for folder in ("logs", "containerd", "cni/net.d", "kubelet", "pod-logs", "certs"):
            (work / folder).mkdir(parents=True, exist_ok=True)
        kubeconfig = cp.issue_client_kubeconfig(
            f"kubelet-{s.name}",
            common_name=f"system:node:{s.name}",
            organization="system:masters",
        )
        hosts = work / "containerd" / "certs.d" / self.registry_host
        hosts.mkdir(parents=True, exist_ok=True)
        (hosts / "hosts.toml").write_text(
            f'server = "http://{self.registry_host}"\n\n'
            f'[host."http://{self.registry_host}"]\n  capabilities = ["pull", "resolve"]\n'
        )
        (work / "containerd" / "config.toml").write_text(
            _containerd_config(
                work=work,
                pause_image=self.pause_image,
                runc=binaries.runc,
                cni_bin=binaries.cni_plugin_dir,
                handlers=s.runtime_handlers,
            )
        )
        (work / "cni" / "net.d" / "10-modelward.conflist").write_text(
            json.dumps(_cni_config(s, work), indent=2)
        )
        kubelet_config = work / "kubelet-config.yaml"
        kubelet_config.write_text(yaml.safe_dump(self._kubelet_config(), sort_keys=False))
        kubelet_args = [
            str(binaries.kubelet),
            f"--config={kubelet_config}",
            f"--kubeconfig={kubeconfig}",
            f"--hostname-override={s.name}",
            f"--root-dir={work / 'kubelet'}",
            f"--cert-dir={work / 'certs'}",
            "--v=1",
        ]
        if s.labels:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            kubelet_args.append(f"--node-labels={labels}")
        sysctls = work / "sysctl"
        sysctls.mkdir(exist_ok=True)
        mounts = []
        for folder in HOST_FOLDERS:
            name = folder.strip("/").replace("/", "-")
            upper, scratch = work / "overlay" / name / "upper", work / "overlay" / name / "work"
            upper.mkdir(parents=True, exist_ok=True)
            scratch.mkdir(parents=True, exist_ok=True)
            mounts.append(
                "mount -t overlay overlay -o "
                + shlex.quote(f"lowerdir={folder},upperdir={upper},workdir={scratch}")
                + f" {folder}"
            )
        for entry, value in SYSCTLS.items():
            file = sysctls / entry.replace("/", ".")
            file.write_text(value + "\n")
            mounts.append(f"mount --bind {shlex.quote(str(file))} /proc/sys/{entry}")
        socket_path = self.containerd_socket
        script = work / "node.sh"
        script.write_text(
            "#!/bin/bash\n"
            "# PID 1 of the node's namespace: when it exits, everything in the namespace dies.\n"
            "set -euo pipefail\n"
            + "\n".join(mounts)
            + "\n"
            + f"export PATH={shlex.quote(str(binaries.containerd.parent))}"
            + ":/usr/sbin:/usr/bin:/sbin:/bin\n"
            + f"rm -f {shlex.quote(str(socket_path))}\n"
            + f"{shlex.quote(str(binaries.containerd))} --config "
            + f"{shlex.quote(str(work / 'containerd' / 'config.toml'))} "
            + f">{shlex.quote(str(self.containerd_log_path))} 2>&1 &\n"
            + "for _ in $(seq 300); do\n"
            + f"  {shlex.quote(str(binaries.ctr))} --address {shlex.quote(str(socket_path))} "
            + "version >/dev/null 2>&1 && break\n"
            + "  sleep 0.1\n"
            + "done\n"
            + " ".join(shlex.quote(a) for a in kubelet_args)
            + f" >{shlex.quote(str(self.kubelet_log_path))} 2>&1 &\n"
            + "wait -n\n"
            + 'echo "containerd or kubelet exited: $?"\n'
            + "exit 1\n"
        )
        return script

    def _kubelet_config(self) -> dict[str, Any]:
        s = self._settings
        work = self.work_dir
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "127.0.0.1",
            "port": s.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": s.healthz_port,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.control_plane.client_ca_path)},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": s.cgroup_root,
            "failCgroupV1": False,
            "failSwapOn": False,
            "makeIPTablesUtilChains": False,
            "podLogsDir": str(work / "pod-logs"),
            "volumePluginDir": str(work / "volume-plugins"),
            "resolvConf": "",
            "clusterDomain": "cluster.local",
            "serializeImagePulls": False,
            "maxPods": s.max_pods,
            # A busy shared disk must not evict the tests' pods.
            "evictionHard": {
                "memory.available": "50Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "nodeStatusUpdateFrequency": "2s",
            "syncFrequency": "5s",
            "fileCheckFrequency": "5s",
            "shutdownGracePeriod": "0s",
            "protectKernelDefaults": False,
        }

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._ready_timeout
        last = "not registered yet"
        while True:
            if not self._process.running():
                raise NodeError(
                    f"the node's namespace exited during startup.\n{self.describe_failure()}"
                )
            response = self.control_plane.api_request(
                "GET", f"/api/v1/nodes/{self._settings.name}", timeout=5.0
            )
            if response.status == 200:
                conditions = response.json().get("status", {}).get("conditions") or []
                ready = [c for c in conditions if c.get("type") == "Ready"]
                if ready and ready[0].get("status") == "True":
                    return
                last = ready[0].get("message", "no Ready condition") if ready else "no conditions"
            if time.monotonic() > deadline:
                raise NodeError(
                    f"node {self._settings.name} was not Ready after {self._ready_timeout:.0f} s "
                    f"({last}).\n{self.describe_failure()}"
                )
            time.sleep(0.2)


def _replace(settings: NodeSettings, **changes: Any) -> NodeSettings:
    import dataclasses

    return dataclasses.replace(settings, **changes)


def _cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers, name=systemd, the v2 "unified")."""
    hierarchies = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] in ("cgroup", "cgroup2"):
            hierarchies.append(Path(fields[1]))
    return sorted(set(hierarchies))


def bridge_mac(bridge: str) -> str:
    """A fixed, locally administered unicast MAC address derived from the bridge's name."""
    digest = hashlib.sha256(bridge.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def _ip(*args: str) -> None:
    import subprocess

    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NodeError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _tail(path: Path, lines: int) -> str:
    text = _read(path)
    return "\n".join(f"    {line}" for line in text.splitlines()[-lines:]) or "    (empty)"


def _containerd_config(
    *, work: Path, pause_image: str, runc: Path, cni_bin: Path, handlers: Sequence[str]
) -> str:
    state = work / "containerd"
    runtimes = ""
    for handler in ("runc", *handlers):
        runtimes += (
            f"[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'{handler}']\n"
            "  runtime_type = 'io.containerd.runc.v2'\n"
            f"[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'{handler}'.options]\n"
            f"  BinaryName = '{runc}'\n"
            "  SystemdCgroup = false\n"
        )
    return f"""version = 3
root = '{state / "root"}'
state = '{state / "state"}'
temp = '{state / "tmp"}'
imports = []
disabled_plugins = [
  'io.containerd.nri.v1.nri',
  'io.containerd.tracing.processor.v1.otlp',
  'io.containerd.internal.v1.tracing',
]

[grpc]
  address = '{state / "containerd.sock"}'

[ttrpc]
  address = '{state / "containerd.sock.ttrpc"}'

[debug]
  address = ''

[plugins.'io.containerd.internal.v1.opt']
  path = '{state / "opt"}'

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = '{pause_image}'
[plugins.'io.containerd.cri.v1.images'.registry]
  config_path = '{state / "certs.d"}'

[plugins.'io.containerd.cri.v1.runtime']
  # No CAP_SYS_RESOURCE here: clamp the negative oom_score_adj the kubelet asks for.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []
[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = 'runc'
{runtimes}
[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ['{cni_bin}']
  conf_dir = '{work / "cni" / "net.d"}'

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'

[plugins.'io.containerd.image-verifier.v1.bindir']
  bin_dir = '{state / "image-verifier"}'
"""


def _cni_config(settings: NodeSettings, work: Path) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "modelward",
        "plugins": [
            {
                "type": "bridge",
                "bridge": settings.bridge,
                "isGateway": True,
                # Pods reach the host (and the API server's stand-in Service address) through
                # the gateway; no masquerading, so no iptables rule on the host.
                "isDefaultGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": settings.subnet, "gateway": settings.gateway}]],
                    "dataDir": str(work / "cni" / "ipam"),
                },
            },
            {"type": "loopback"},
        ],
    }
