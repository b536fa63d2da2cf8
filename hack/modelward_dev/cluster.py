"""A small real cluster: control plane, scheduler, controller-manager, a registry and a node.

``LocalCluster`` is what tests use when pods must really run (the session fixture ``cluster``)
and what ``make demo`` shows. It composes:

* ``LocalControlPlane(node_support=True)``: etcd + kube-apiserver configured for a kubelet;
* ``LocalRegistry``: the images' source, holding the pause, busybox and modelward images built
  from files by ``modelward_dev.images`` (pushed on first use, each once per cluster);
* kube-scheduler and kube-controller-manager (Deployments, ReplicaSets, Jobs, EndpointSlices,
  ServiceAccounts, namespace deletion and node lifecycle behave as in a cluster);
* ``LocalNode``: containerd + kubelet;
* a stand-in for the ``kubernetes`` Service: no kube-proxy runs, so the Service's ClusterIP is
  an address on a link of its own, where a forwarder passes connections to the API server on
  127.0.0.1. Pods' in-cluster configuration (``KUBERNETES_SERVICE_HOST``) then works unchanged.
  Other ClusterIPs do not route; the API server reaches webhook Services at their endpoints
  (``--enable-aggregator-routing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelward_dev.binaries import K8S_VERSION, NodeBinaries, find_node_binaries
from modelward_dev.controlplane import (
    LocalControlPlane,
    ManagedProcess,
    register_cleanup,
    unregister_cleanup,
)
from modelward_dev.images import BuiltImage, busybox_image, modelward_image, pause_image
from modelward_dev.lifecycle import StartStop
from modelward_dev.node import LocalNode, NodeError, NodeSettings, _ip
from modelward_dev.registry import LocalRegistry

__all__ = ["ClusterError", "ClusterSettings", "LocalCluster", "TcpForwarder"]

PAUSE_TAG = "3.10.2"


class ClusterError(RuntimeError):
    """A part of the cluster did not start; the message quotes its log."""


@dataclass(frozen=True)
class ClusterSettings:
    """Names and ranges of one cluster: parameters, so that parallel sessions never collide."""

    node: NodeSettings = field(default_factory=NodeSettings)
    service_cluster_ip_range: str = "10.0.0.0/24"
    #: The link holding the ``kubernetes`` Service's ClusterIP (for the forwarder).
    service_link: str = "mwsvc0"


class TcpForwarder:
    """Accepts TCP connections on one address and pipes each to another (a thread, asyncio)."""

    def __init__(self, *, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.listen = listen
        self.target = target
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kubernetes-service", daemon=True)
        self._thread.start()
        self._ready.wait(10.0)
        if self._error is not None:
            raise ClusterError(f"cannot listen on {self.listen}: {self._error}")

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            server = loop.run_until_complete(
                asyncio.start_server(self._handle, self.listen[0], self.listen[1])
            )
        except OSError as error:
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            with contextlib.suppress(OSError):
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


class LocalCluster(StartStop):
    """Control plane + registry + controllers + one node; images pushed on demand.

    Attributes valid after ``start()``: ``control_plane``, ``registry``, ``node``,
    ``work_dir``. ``image(name)`` returns the pushed reference (by digest) of ``pause``,
    ``busybox`` or ``modelward``.
    """

    def __init__(
        self,
        *,
        settings: ClusterSettings | None = None,
        node_binaries: NodeBinaries | None = None,
        keep_work_dir: bool = False,
        project: Path | None = None,
    ) -> None:
        self.settings = settings or ClusterSettings()
        self._node_binaries = node_binaries
        self._keep_work_dir = keep_work_dir
        self._project = project
        self._work_dir: Path | None = None
        self._control_plane: LocalControlPlane | None = None
        self._registry: LocalRegistry | None = None
        self._node: LocalNode | None = None
        self._controllers: list[ManagedProcess] = []
        self._forwarder: TcpForwarder | None = None
        self._images: dict[str, str] = {}
        self._built: dict[str, BuiltImage] = {}
        self._lock = threading.RLock()

    # -- lifecycle --

    def start(self) -> None:
        """Start everything; returns when the node is Ready and the controllers run.

        Raises:
            BinariesUnavailableError, ControlPlaneError, RegistryError, NodeError,
            ClusterError: a part could not start (each message says which and why).
        """
        with self._lock:
            node_binaries = self._node_binaries or find_node_binaries()
            self._work_dir = Path(tempfile.mkdtemp(prefix="modelward-cluster-"))
            register_cleanup(self.stop)
            try:
                self._registry = LocalRegistry(keep_work_dir=self._keep_work_dir)
                self._registry.start()
                pause = self.image("pause")
                self._control_plane = LocalControlPlane(
                    node_support=True,
                    keep_work_dir=self._keep_work_dir,
                    service_cluster_ip_range=self.settings.service_cluster_ip_range,
                )
                self._control_plane.start()
                self._start_kubernetes_service()
                self._start_controllers(node_binaries)
                self._node = LocalNode(
                    control_plane=self._control_plane,
                    registry_host=self._registry.host,
                    pause_image=pause,
                    settings=self.settings.node,
                    binaries=node_binaries,
                    keep_work_dir=self._keep_work_dir,
                )
                self._node.start()
                self._wait_until_schedulable()
            except BaseException:
                self._keep_work_dir = True
                self.stop()
                raise

    def stop(self) -> None:
        """Stop node, controllers, forwarder, control plane, registry (that order). Idempotent."""
        with self._lock:
            unregister_cleanup(self.stop)
            if self._node is not None:
                self._node.stop()
            for process in reversed(self._controllers):
                process.stop(grace=5.0)
            if self._forwarder is not None:
                self._forwarder.stop()
            with contextlib.suppress(NodeError):
                if Path(f"/sys/class/net/{self.settings.service_link}").exists():
                    _ip("link", "del", self.settings.service_link)
            if self._control_plane is not None:
                self._control_plane.stop()
            if self._registry is not None:
                self._registry.stop()
            if self._work_dir is not None and not self._keep_work_dir:
                shutil.rmtree(self._work_dir, ignore_errors=True)

    # -- attributes --

    @property
    def control_plane(self) -> LocalControlPlane:
        if self._control_plane is None:
            raise RuntimeError("the cluster has not been started")
        return self._control_plane

    @property
    def registry(self) -> LocalRegistry:
        if self._registry is None:
            raise RuntimeError("the cluster has not been started")
        return self._registry

    @property
    def node(self) -> LocalNode:
        if self._node is None:
            raise RuntimeError("the cluster has not been started")
        return self._node

    @property
    def work_dir(self) -> Path:
        if self._work_dir is None:
            raise RuntimeError("the cluster has not been started")
        return self._work_dir

    @property
    def controllers(self) -> tuple[ManagedProcess, ...]:
        return tuple(self._controllers)

    def image(self, name: str) -> str:
        """``127.0.0.1:PORT/<name>@sha256:...`` of ``pause``, ``busybox`` or ``modelward``,
        built from files and pushed on first use."""
        with self._lock:
            if name not in self._images:
                project = self._project
                builders: dict[str, tuple[Callable[[], BuiltImage], str]] = {
                    "pause": (lambda: pause_image(K8S_VERSION), PAUSE_TAG),
                    "busybox": (busybox_image, "latest"),
                    "modelward": (
                        (lambda: modelward_image(project)) if project else modelward_image,
                        "dev",
                    ),
                }
                if name not in builders:
                    raise ValueError(f"unknown image {name!r}: use one of {sorted(builders)}")
                build, tag = builders[name]
                built = build()
                digest = built.push(self.registry.client(), name, tag)
                self._built[name] = built
                ref = f"{self.registry.host}/{name}"
                # The pause image is pinned by tag: containerd's sandbox_image setting.
                self._images[name] = f"{ref}:{tag}" if name == "pause" else f"{ref}@{digest}"
            return self._images[name]

    def built_image(self, name: str) -> BuiltImage:
        self.image(name)
        return self._built[name]

    # -- helpers for tests and the demo --

    def wait_for_service_account(self, namespace: str, timeout: float = 30.0) -> None:
        """Wait until the controller-manager created the namespace's ``default`` ServiceAccount
        (the ServiceAccount admission plugin refuses pods before that)."""
        deadline = time.monotonic() + timeout
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/default"
        while self.control_plane.api_request("GET", path).status != 200:
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"no ServiceAccount default in {namespace} after {timeout:.0f} s: is "
                    f"kube-controller-manager running? {self._controllers[-1].describe_failure()}"
                )
            time.sleep(0.1)

    # -- internals --

    def _start_kubernetes_service(self) -> None:
        cp = self.control_plane
        link = self.settings.service_link
        with contextlib.suppress(NodeError):
            _ip("link", "del", link)  # left over by a killed run
        # A port-less bridge is a dummy interface (no "dummy" module on this machine kind).
        _ip("link", "add", "name", link, "type", "bridge")
        _ip("addr", "add", f"{cp.kubernetes_service_ip}/32", "dev", link)
        _ip("link", "set", link, "up")
        port = int(cp.server_url.rsplit(":", 1)[1])
        self._forwarder = TcpForwarder(
            listen=(cp.kubernetes_service_ip, 443), target=("127.0.0.1", port)
        )
        self._forwarder.start()

    def _start_controllers(self, binaries: NodeBinaries) -> None:
        cp = self.control_plane
        logs = self.work_dir / "logs"
        common = ["--leader-elect=false", "--secure-port=0", "--v=1"]
        scheduler_config = cp.issue_client_kubeconfig(
            "kube-scheduler", common_name="system:kube-scheduler", organization="system:masters"
        )
        manager_config = cp.issue_client_kubeconfig(
            "kube-controller-manager",
            common_name="system:kube-controller-manager",
            organization="system:masters",
        )
        processes = [
            ManagedProcess(
                name="kube-scheduler",
                args=[
                    str(binaries.kube_scheduler),
                    f"--kubeconfig={scheduler_config}",
                    f"--authentication-kubeconfig={scheduler_config}",
                    f"--authorization-kubeconfig={scheduler_config}",
                    *common,
                ],
                log_path=logs / "kube-scheduler.log",
            ),
            ManagedProcess(
                name="kube-controller-manager",
                args=[
                    str(binaries.kube_controller_manager),
                    f"--kubeconfig={manager_config}",
                    f"--authentication-kubeconfig={manager_config}",
                    f"--authorization-kubeconfig={manager_config}",
                    f"--service-account-private-key-file={cp.service_account_key_path}",
                    f"--root-ca-file={cp.ca_path}",
                    f"--service-cluster-ip-range={self.settings.service_cluster_ip_range}",
                    "--use-service-account-credentials=false",
                    # Fast node lifecycle for tests: a stopped kubelet is noticed in seconds.
                    "--node-monitor-grace-period=20s",
                    *common,
                ],
                log_path=logs / "kube-controller-manager.log",
            ),
        ]
        for process in processes:
            process.start()
            self._controllers.append(process)
        self.wait_for_service_account("default", timeout=60.0)

    def _wait_until_schedulable(self, timeout: float = 60.0) -> None:
        """The node-lifecycle controller removes the not-ready taint a moment after Ready."""
        deadline = time.monotonic() + timeout
        path = f"/api/v1/nodes/{self.node.name}"
        taints: list[Any] = []
        while True:
            node = self.control_plane.api_request("GET", path).json()
            taints = [
                t
                for t in node.get("spec", {}).get("taints") or []
                if t.get("key", "").startswith("node.kubernetes.io/")
            ]
            if not taints:
                return
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"node {self.node.name} still has taints {json.dumps(taints)} after "
                    f"{timeout:.0f} s.\n{self._controllers[-1].describe_failure()}"
                )
            time.sleep(0.2)

    def events(self, namespace: str) -> list[Mapping[str, Any]]:
        """The namespace's Events (for messages and assertions)."""
        response = self.control_plane.api_request("GET", f"/api/v1/namespaces/{namespace}/events")
        items: list[Mapping[str, Any]] = response.json().get("items") or []
        return items
