"""modelward installed with ``helm install`` from the image built from this checkout: it runs
as the chart's two pods, the API server calls them through the chart's Service (resolved to
its EndpointSlices: no kube-proxy runs, the ClusterIP routes nowhere), the certificate they
serve is the operator-managed one, and the two replicas elect one leader."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import time

from cryptography import x509

from modelward_dev.cluster import LocalCluster
from modelward_dev.controlplane import ToolRunner
from modelward_dev.install import CHART
from tests.e2e.node.conftest import FULLNAME, Release, get, wait_until

SELECTOR = "app.kubernetes.io/name=modelward"
#: A namespaceSelector no namespace matches: a release whose webhooks intercept nothing.
NOWHERE = {"matchExpressions": [{"key": "modelward-e2e.io/none", "operator": "Exists"}]}


def _pods(kubectl: ToolRunner, release: Release) -> list[dict[str, object]]:
    items: list[dict[str, object]] = get(kubectl, "pods", "-n", release.namespace, "-l", SELECTOR)[
        "items"
    ]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]  # type: ignore[union-attr]


def test_modelward_runs_as_the_charts_pods_from_its_own_image(
    cluster: LocalCluster, cluster_kubectl: ToolRunner, modelward_release: Release
) -> None:
    pods = _pods(cluster_kubectl, modelward_release)
    assert len(pods) == 2
    digest = modelward_release.image.split("@", 1)[1]
    for pod in pods:
        status = pod["status"]
        container = status["containerStatuses"][0]  # type: ignore[index]
        assert container["ready"] is True
        assert container["imageID"].endswith(digest)  # what the kubelet really ran
        assert pod["spec"]["containers"][0]["image"] == modelward_release.image  # type: ignore[index]
    # The image's user, not root: the chart's runAsNonRoot would refuse a root image anyway.
    uid = cluster_kubectl(
        "exec",
        "-n",
        modelward_release.namespace,
        pods[0]["metadata"]["name"],  # type: ignore[index]
        "--",
        "python",
        "-c",
        "import os; print(os.getuid())",
        check=True,
    )
    assert uid.stdout.strip() == "65532"


def test_the_api_server_reaches_the_pods_through_the_service_endpointslices(
    cluster: LocalCluster, cluster_kubectl: ToolRunner, modelward_release: Release
) -> None:
    pod_ips = {p["status"]["podIP"] for p in _pods(cluster_kubectl, modelward_release)}  # type: ignore[index]
    slices = get(
        cluster_kubectl,
        "endpointslices",
        "-n",
        modelward_release.namespace,
        "-l",
        f"kubernetes.io/service-name={FULLNAME}",
    )["items"]
    ready = {
        a
        for s in slices
        for e in s["endpoints"]
        if e["conditions"].get("ready")
        for a in e["addresses"]
    }
    assert ready == pod_ips
    # The ClusterIP routes nowhere here (no kube-proxy): reviews can only travel to endpoints.
    cluster_ip = get(cluster_kubectl, "service", FULLNAME, "-n", modelward_release.namespace)[
        "spec"
    ]["clusterIP"]
    route = subprocess.run(
        ["ip", "route", "get", cluster_ip], capture_output=True, text=True, check=True
    ).stdout
    assert cluster.node.settings.bridge not in route, route
    # And reviews do arrive: the probe is denied by modelward itself.
    response = cluster.control_plane.api_request(
        "POST",
        "/api/v1/namespaces/modelward-probe/pods?dryRun=All",
        body={
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "probe", "labels": {"modelward.io/probe": "deny"}},
            "spec": {"containers": [{"name": "c", "image": "probe"}]},
        },
    )
    assert response.status == 400 or response.status == 403, response.text
    assert "modelward probe" in response.message


def test_the_served_certificate_is_the_operator_managed_one(
    cluster: LocalCluster, cluster_kubectl: ToolRunner, modelward_release: Release
) -> None:
    secret = get(cluster_kubectl, "secret", f"{FULLNAME}-tls", "-n", modelward_release.namespace)
    ca_pem = base64.b64decode(secret["data"]["ca.crt"])
    served_pem = base64.b64decode(secret["data"]["tls.crt"])
    for resource in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        configuration = get(cluster_kubectl, resource, FULLNAME)
        for hook in configuration["webhooks"]:
            assert base64.b64decode(hook["clientConfig"]["caBundle"]) == ca_pem
    expected = x509.load_pem_x509_certificate(served_pem)
    context = ssl.create_default_context(cadata=ca_pem.decode())
    context.check_hostname = False  # dialled by IP; the API server checks the Service name
    for pod in _pods(cluster_kubectl, modelward_release):
        with (
            socket.create_connection((pod["status"]["podIP"], 8443), timeout=5) as raw,  # type: ignore[index]
            context.wrap_socket(raw) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        served = x509.load_der_x509_certificate(der)
        assert served == expected
        names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert f"{FULLNAME}.{modelward_release.namespace}.svc" in names.get_values_for_type(
            x509.DNSName
        )


def test_the_two_replicas_elect_one_leader_and_the_other_takes_over(
    cluster: LocalCluster, cluster_kubectl: ToolRunner, modelward_release: Release
) -> None:
    lease_name = f"{FULLNAME}-leader"

    def holder() -> str:
        lease = get(cluster_kubectl, "lease", lease_name, "-n", modelward_release.namespace)
        value: str = lease["spec"].get("holderIdentity") or ""
        return value

    names = {p["metadata"]["name"] for p in _pods(cluster_kubectl, modelward_release)}  # type: ignore[index]
    first = wait_until("a leader", holder, timeout=60)
    leader_pod = next((n for n in names if first.startswith(f"{n}-")), None)
    assert leader_pod is not None, f"lease holder {first!r} is none of the pods {names}"

    cluster_kubectl(
        "delete",
        "pod",
        leader_pod,
        "-n",
        modelward_release.namespace,
        "--wait=false",
        check=True,
    )
    started = time.monotonic()
    second = wait_until(
        "another replica to take the lease over",
        lambda: (h := holder()) and not h.startswith(f"{leader_pod}-") and h,
        timeout=120,
    )
    assert not second.startswith(f"{leader_pod}-")
    assert time.monotonic() - started < 120
    # The Deployment replaces the deleted pod: two Ready replicas again.
    rollout = cluster_kubectl(
        "rollout",
        "status",
        f"deployment/{FULLNAME}",
        "-n",
        modelward_release.namespace,
        "--timeout=120s",
        timeout=130,
    )
    assert rollout.returncode == 0, rollout.stderr


def test_helm_test_hook_passes_on_the_node(
    cluster: LocalCluster, cluster_kubectl: ToolRunner, modelward_release: Release
) -> None:
    """`helm test`: the chart's test pod (modelward's image, restricted) reaches every ready
    replica over TLS verified with the published caBundle, and a dry-run probe pod comes back
    denied by modelward; the hook's grants are gone afterwards (hook-succeeded)."""
    result = cluster.control_plane.helm(
        "test",
        modelward_release.name,
        "-n",
        modelward_release.namespace,
        "--logs",
        "--timeout=180s",
        timeout=240,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "over verified TLS" in result.stdout
    assert "denied by modelward" in result.stdout
    left = cluster_kubectl(
        "get", "roles,rolebindings,serviceaccounts", "-n", modelward_release.namespace, "-o", "name"
    )
    assert f"{FULLNAME}-test" not in left.stdout


def test_post_delete_cleanup_job_runs_on_uninstall(
    cluster: LocalCluster, cluster_kubectl: ToolRunner, modelward_release: Release
) -> None:
    """A second, inert release with cleanup.onUninstall: once its replica created the
    certificate Secret and the leader Lease, `helm uninstall --wait` runs the post-delete Job
    on the node, which deletes both. (PolicyReports and DeployedModels belong to the session's
    release here, so this release is told to leave them.)"""
    repository, digest = modelward_release.image.split("@", 1)
    namespace, fullname = "mw-cleanup", "mwc-modelward"
    args = (
        "--namespace", namespace, "--create-namespace",
        "--set", f"image.repository={repository}", "--set", f"image.digest={digest}",
        "--set", "replicaCount=1", "--set", "crds.install=false", "--set", "tests.enabled=false",
        "--set", "grafanaDashboard.enabled=false", "--set", "operator.auditIntervalSeconds=0",
        "--set", "webhook.failOpenElsewhere=false", "--set", "preStopSleepSeconds=1",
        "--set", "terminationGracePeriodSeconds=5",
        "--set", "cleanup.onUninstall=true", "--set", "cleanup.policyReports=false",
        "--set", "cleanup.deployedModels=false",
        "--set-json", f"webhook.namespaceSelector={json.dumps(NOWHERE)}",
    )  # fmt: skip
    plane = cluster.control_plane
    installed = plane.helm(
        "install", "mwc", str(CHART), *args, "--wait", "--timeout=240s", timeout=300
    )
    try:
        assert installed.returncode == 0, installed.stderr
        wait_until(
            "the certificate Secret and the leader Lease",
            lambda: (
                cluster_kubectl(
                    "get", f"secret/{fullname}-tls", f"lease/{fullname}-leader", "-n", namespace
                ).returncode
                == 0
            ),
            90,
        )
        removed = plane.helm(
            "uninstall", "mwc", "-n", namespace, "--wait", "--timeout=180s", timeout=240
        )
        assert removed.returncode == 0, removed.stderr
        left = cluster_kubectl("get", "secrets,leases,jobs", "-n", namespace, "-o", "name").stdout
        assert (
            f"secret/{fullname}-tls" not in left
            and f"lease.coordination.k8s.io/{fullname}-leader" not in left
        ), left
        assert f"job.batch/{fullname}-cleanup" not in left, "the Job stays only when it failed"
    finally:
        plane.helm("uninstall", "mwc", "-n", namespace, "--no-hooks", timeout=120)
        for resource in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
            plane.api_request(
                "DELETE", f"/apis/admissionregistration.k8s.io/v1/{resource}/{fullname}"
            )
