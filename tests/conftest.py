"""Fixtures shared by every test: a real local control plane and the operator running against it.

The control plane (etcd + kube-apiserver, see ``hack/modelward_dev``) starts once per session,
on first use, so ``pytest tests/unit`` never starts or builds anything. Missing binaries are
built by ``hack/build-control-plane.sh``; if that is impossible the fixture fails with the
reason, it never skips: a skipped end-to-end suite looks too much like a passing one.

Set ``MODELWARD_KEEP_WORKDIRS=1`` to keep the control plane's and the operator's folders
(certificates, kube-apiserver/etcd/operator logs) after the session, to debug a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from modelward_dev.binaries import find_binaries, find_node_binaries
from modelward_dev.cluster import LocalCluster
from modelward_dev.controlplane import LocalControlPlane, ToolRunner
from modelward_dev.operator_process import OperatorProcess

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

E2E_DIR = Path(__file__).parent / "e2e"
CRD_DIR = Path(__file__).parent.parent / "manifests" / "crds"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark everything under tests/e2e as ``e2e``, so ``-m "not e2e"`` runs the fast tests."""
    for item in items:
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.e2e)


def _keep_workdirs() -> bool:
    return os.environ.get("MODELWARD_KEEP_WORKDIRS", "") not in ("", "0")


def _uncaptured(config: pytest.Config) -> AbstractContextManager[Any]:
    """Let output through pytest's capture: a 20-minute build must not look like a hang."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        return contextlib.nullcontext()
    context: AbstractContextManager[Any] = capture.global_and_fixture_disabled()
    return context


@pytest.fixture(scope="session")
def control_plane(pytestconfig: pytest.Config) -> Iterator[LocalControlPlane]:
    """etcd + kube-apiserver for the whole session, with an admin kubeconfig."""
    with _uncaptured(pytestconfig):
        binaries = find_binaries()
    plane = LocalControlPlane(binaries=binaries, keep_work_dir=_keep_workdirs())
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kube_client(control_plane: LocalControlPlane) -> Iterator[ApiClient]:
    """A ``kubernetes.client.ApiClient`` authenticated as the cluster admin."""
    from kubernetes import config

    client: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(control_plane.kubeconfig_path)
    )
    with client:  # closes its connection pool and thread pool at the end of the session
        yield client


@pytest.fixture
def namespace(request: pytest.FixtureRequest, kube_client: ApiClient) -> Iterator[str]:
    """A fresh namespace named after the test; deleted afterwards (best effort).

    Without a controller-manager a deleted namespace stays Terminating forever; that is
    harmless, since every test gets a new name.
    """
    from kubernetes.client import CoreV1Api, V1Namespace, V1ObjectMeta
    from kubernetes.client.exceptions import ApiException

    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{secrets.token_hex(3)}"
    core = CoreV1Api(kube_client)
    core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        with contextlib.suppress(ApiException, OSError):
            core.delete_namespace(name)


@pytest.fixture(scope="session")
def kubectl(control_plane: LocalControlPlane) -> ToolRunner:
    """Runs kubectl with the admin kubeconfig: ``kubectl("get", "pods", "-n", ns, input=None,
    timeout=60.0, check=False)`` returns the CompletedProcess (text); ``check=True`` raises
    ``CommandError`` quoting stderr."""
    return control_plane.kubectl


def install_crds(plane: LocalControlPlane) -> list[Path]:
    """Apply modelward's CRDs (manifests/crds/) and wait until Established; the files applied."""
    files = sorted(CRD_DIR.glob("*.yaml"))
    if files:
        plane.kubectl("apply", "--server-side", "-f", str(CRD_DIR), check=True)
        plane.kubectl(
            "wait", "--for=condition=Established", "-f", str(CRD_DIR), "--timeout=60s", check=True
        )
    return files


@contextlib.contextmanager
def own_control_plane(*, crds: bool = True) -> Iterator[LocalControlPlane]:
    """A control plane of a test module's own, CRDs installed unless ``crds`` is false: for
    tests that restart the API server, run operators that would disturb the session's, or
    install and upgrade the CRDs themselves (the chart's lifecycle)."""
    plane = LocalControlPlane(binaries=find_binaries(), keep_work_dir=_keep_workdirs())
    plane.start()
    try:
        if crds:
            install_crds(plane)
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def crds(control_plane: LocalControlPlane) -> list[Path]:
    """modelward's CRDs (manifests/crds/) installed and Established; the files applied."""
    return install_crds(control_plane)


@pytest.fixture(scope="session")
def operator(control_plane: LocalControlPlane, crds: list[Path]) -> Iterator[OperatorProcess]:
    """``modelward run`` as a local process, its webhooks registered and proven in use.

    The CRDs are installed first: the operator watches its policies from the start.
    """
    process = OperatorProcess(
        control_plane=control_plane,
        keep_work_dir=_keep_workdirs(),
        extra_args=("--audit-interval", "10"),  # the audit e2e test waits for a scan
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


# --- a cluster whose pods really run (tests/e2e/node) -------------------------------------------


@pytest.fixture(scope="session")
def cluster(pytestconfig: pytest.Config) -> Iterator[LocalCluster]:
    """A second, separate cluster with a real node: control plane, scheduler,
    controller-manager, a local registry and containerd + kubelet (``modelward_dev.cluster``).

    Separate from ``control_plane`` because it behaves differently: pods run, Deployments
    create pods, the ServiceAccount plugin is on. Started on first use only; missing binaries
    are built (``hack/build-node.sh``); if the node cannot start the fixture fails with the
    reason, never skips.
    """
    with _uncaptured(pytestconfig):
        find_binaries()
        find_node_binaries()
    running = LocalCluster(keep_work_dir=_keep_workdirs())
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def cluster_kubectl(cluster: LocalCluster) -> ToolRunner:
    """kubectl as the admin of ``cluster`` (same signature as ``kubectl``)."""
    return cluster.control_plane.kubectl


@pytest.fixture
def cluster_namespace(request: pytest.FixtureRequest, cluster: LocalCluster) -> Iterator[str]:
    """A fresh namespace in ``cluster``, ready for pods (its default ServiceAccount exists);
    deleted afterwards (the namespace controller really deletes it and its pods)."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"n-{slug}-{secrets.token_hex(3)}"
    created = cluster.control_plane.api_request(
        "POST", "/api/v1/namespaces", body={"metadata": {"name": name}}
    )
    assert created.status == 201, created.message
    cluster.wait_for_service_account(name)
    try:
        yield name
    finally:
        cluster.control_plane.api_request("DELETE", f"/api/v1/namespaces/{name}")
