"""The test harness itself: is the local control plane a believable Kubernetes API server?

Every other end-to-end test trusts that admission, RBAC and dry-run behave as in a cluster;
these tests check that trust once, against the real kube-apiserver.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from kubernetes.client import (
    ApiClient,
    CoreV1Api,
    V1Container,
    V1ObjectMeta,
    V1Pod,
    V1PodSpec,
    VersionApi,
)
from kubernetes.client.exceptions import ApiException

from modelward_dev.binaries import K8S_VERSION
from modelward_dev.controlplane import ControlPlaneError, LocalControlPlane, ToolRunner

K8S_MINOR = ".".join(K8S_VERSION.split(".")[:2])


def _pod(name: str, namespace: str) -> V1Pod:
    return V1Pod(
        metadata=V1ObjectMeta(name=name, namespace=namespace),
        spec=V1PodSpec(containers=[V1Container(name="main", image="registry.invalid/app:1")]),
    )


def test_version_is_the_built_kubernetes(
    control_plane: LocalControlPlane, kube_client: ApiClient
) -> None:
    raw = control_plane.api_request("GET", "/version")
    assert raw.status == 200
    info = VersionApi(kube_client).get_code()
    assert info.git_version.startswith(f"v{K8S_MINOR}."), info.git_version
    assert (info.major, info.minor) == tuple(K8S_MINOR.split("."))


def test_default_namespace_exists(kube_client: ApiClient) -> None:
    default = CoreV1Api(kube_client).read_namespace("default")
    assert default.status is not None
    assert default.status.phase == "Active"


def test_admin_is_cluster_admin(kubectl: ToolRunner) -> None:
    result = kubectl("auth", "can-i", "*", "*", "--all-namespaces")
    assert result.stdout.strip() == "yes", result.stderr


def test_rbac_forbids_a_user_without_bindings(kubectl: ToolRunner, namespace: str) -> None:
    can_i = kubectl("auth", "can-i", "create", "pods", "-n", namespace, "--as=mallory")
    assert can_i.stdout.strip() == "no"
    listing = kubectl("get", "pods", "-n", namespace, "--as=mallory")
    assert listing.returncode != 0
    assert "forbidden" in listing.stderr.lower()
    assert 'User "mallory"' in listing.stderr


def test_rbac_binding_grants_access(kubectl: ToolRunner, namespace: str) -> None:
    # Not the built-in "view" ClusterRole: it is aggregated, and without a controller-manager
    # nothing fills in its rules.
    kubectl(
        "create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods",
        "-n", namespace, check=True,
    )  # fmt: skip
    kubectl(
        "create", "rolebinding", "mallory-reads-pods", "--role=pod-reader", "--user=mallory",
        "-n", namespace, check=True,
    )  # fmt: skip

    def can_i(verb: str) -> str:
        result = kubectl("auth", "can-i", verb, "pods", "-n", namespace, "--as=mallory")
        return result.stdout.strip()

    # The RBAC authorizer reads bindings from an informer cache, as in any cluster: a new
    # binding takes effect a moment after it is stored.
    deadline = time.monotonic() + 15
    while can_i("list") != "yes":
        assert time.monotonic() < deadline, "the RoleBinding never took effect"
        time.sleep(0.1)
    assert can_i("create") == "no"


def test_server_side_dry_run_stores_nothing(kube_client: ApiClient, namespace: str) -> None:
    core = CoreV1Api(kube_client)
    dry = core.create_namespaced_pod(namespace, _pod("dry", namespace), dry_run="All")
    assert dry.metadata is not None
    assert dry.metadata.name == "dry"
    assert dry.metadata.uid  # the server really processed it (defaulting, admission)
    assert core.list_namespaced_pod(namespace).items == []


def test_pods_are_admitted_but_never_scheduled(kube_client: ApiClient, namespace: str) -> None:
    core = CoreV1Api(kube_client)
    core.create_namespaced_pod(namespace, _pod("real", namespace))
    pod = core.read_namespaced_pod("real", namespace)
    assert pod.status is not None and pod.spec is not None
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None
    # ServiceAccount admission is off (no controller creates the default ServiceAccount).
    assert core.list_namespaced_service_account(namespace).items == []


def test_kubectl_uses_the_written_kubeconfig(
    control_plane: LocalControlPlane, kubectl: ToolRunner, namespace: str, tmp_path: Path
) -> None:
    version = json.loads(kubectl("version", "-o", "json", check=True).stdout)
    assert version["serverVersion"]["gitVersion"].startswith(f"v{K8S_MINOR}.")

    manifest = tmp_path / "configmap.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: Enforce\n"
    )
    applied = kubectl("apply", "-n", namespace, "-f", str(manifest), check=True)
    assert "configmap/settings created" in applied.stdout
    got = json.loads(kubectl("get", "configmap", "settings", "-n", namespace, "-o", "json").stdout)
    assert got["data"] == {"mode": "Enforce"}

    dry = kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=manifest.read_text()
    )
    assert "(server dry run)" in dry.stdout


def test_kubeconfig_works_on_its_own(control_plane: LocalControlPlane, tmp_path: Path) -> None:
    """What a developer does by hand: ``export KUBECONFIG=...; kubectl ...``."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    env["KUBECONFIG"] = str(control_plane.kubeconfig_path)
    result = subprocess.run(
        [str(control_plane.binaries.kubectl), "get", "namespace", "default", "-o", "name"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.stdout.strip() == "namespace/default", result.stderr
    # Private, as helm expects (it warns about a group-readable kubeconfig).
    assert control_plane.kubeconfig_path.stat().st_mode & 0o077 == 0


def test_missing_namespace_is_a_clean_404(kube_client: ApiClient) -> None:
    with pytest.raises(ApiException) as error:
        CoreV1Api(kube_client).read_namespace("does-not-exist")
    assert error.value.status == 404


@pytest.mark.slow
def test_stop_leaves_no_process_and_no_folder(control_plane: LocalControlPlane) -> None:
    plane = LocalControlPlane(binaries=control_plane.binaries)
    with plane:
        assert plane.is_ready()
        pids = [process.pid for process in plane.processes]
        assert len(pids) == 2
        work_dir = plane.work_dir
    for pid in pids:
        assert not _alive(pid), f"process {pid} survived stop()"
    assert not work_dir.exists()
    plane.stop()  # idempotent


@pytest.mark.slow
def test_startup_failure_names_the_log_and_quotes_it(control_plane: LocalControlPlane) -> None:
    plane = LocalControlPlane(
        binaries=control_plane.binaries, extra_apiserver_args=["--no-such-flag=1"]
    )
    with pytest.raises(ControlPlaneError) as error:
        plane.start()
    message = str(error.value)
    assert str(plane.apiserver_log_path) in message
    assert "unknown flag: --no-such-flag" in message
    assert plane.apiserver_log_path.exists()  # kept for the developer
    assert not plane.is_running()
    shutil.rmtree(plane.work_dir)


@pytest.mark.slow
def test_reusable_control_plane_survives_and_is_reused(
    control_plane: LocalControlPlane, tmp_path: Path
) -> None:
    state_dir = tmp_path / "demo-cluster"
    try:
        first = LocalControlPlane.reuse_or_start(state_dir, binaries=control_plane.binaries)
        assert (state_dir / "state.json").exists()
        again = LocalControlPlane.reuse_or_start(state_dir, binaries=control_plane.binaries)
        assert again.server_url == first.server_url
        assert again.kubectl("get", "ns", "default").returncode == 0
    finally:
        assert LocalControlPlane.stop_reusable(state_dir)
    assert not first.is_running()
    assert not (state_dir / "state.json").exists()
    assert not LocalControlPlane.stop_reusable(state_dir)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")
