"""modelward installed for real in a ``LocalCluster``: ``helm install`` of charts/modelward from
the image built from this checkout and pushed to the cluster's registry.

Used by the node tests (the ``modelward_release`` fixture) and by ``make demo``: modelward
runs as the chart's pods, and every admission review goes API server → the chart's Service
(its EndpointSlices) → a modelward pod.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelward_dev.cluster import LocalCluster

__all__ = ["InstallError", "Release", "install_modelward", "release_state", "uninstall_modelward"]

CHART = Path(__file__).resolve().parents[2] / "charts" / "modelward"
#: Labelled like the release's webhooks require; the readiness probe and `helm test` use it.
PROBE_NAMESPACE = "modelward-probe"


class InstallError(RuntimeError):
    """helm install failed, or the API server never reached modelward; names the pods' state."""


@dataclass(frozen=True)
class Release:
    """modelward as installed by helm in the cluster."""

    name: str
    namespace: str
    fullname: str
    image: str


def install_modelward(
    cluster: LocalCluster,
    *,
    release: str = "mw",
    namespace: str = "modelward-system",
    replicas: int = 2,
    namespace_selector: Mapping[str, Any] | None = None,
    probe_namespace_labels: Mapping[str, str] | None = None,
    timeout: float = 240.0,
) -> Release:
    """Install the chart and wait until both the replicas are Ready and the API server calls
    them: a server-side dry run of a probe pod is denied by modelward.

    ``namespace_selector`` is ANDed into every webhook's; ``probe_namespace_labels`` must make
    the probe's namespace match it.
    """
    image = cluster.image("modelward")
    repository, digest = image.split("@", 1)
    values = {
        "image": {"repository": repository, "digest": digest, "pullPolicy": "IfNotPresent"},
        "replicaCount": replicas,
        "operator": {"logFormat": "text", "auditIntervalSeconds": 0, "deadlineSeconds": 4},
        "webhook": {
            "timeoutSeconds": 10,
            "namespaceSelector": dict(namespace_selector or {"matchExpressions": []}),
        },
        "resources": {
            "requests": {"cpu": "50m", "memory": "96Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "terminationGracePeriodSeconds": 5,
        "preStopSleepSeconds": 1,
        "grafanaDashboard": {"enabled": False},
        # `helm test`'s dry-run probe goes where _wait_until_webhook_serves probes.
        "tests": {"probeNamespace": PROBE_NAMESPACE},
    }
    fullname = f"{release}-modelward"
    with tempfile.TemporaryDirectory(prefix="modelward-helm-") as folder:
        values_file = Path(folder) / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        installed = cluster.control_plane.helm(
            "install",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--create-namespace",
            "-f",
            str(values_file),
            "--wait",
            f"--timeout={int(timeout)}s",
            timeout=timeout + 60,
        )
    if installed.returncode != 0:
        raise InstallError(f"helm install failed: {installed.stderr}\n{release_state(cluster)}")
    _wait_until_webhook_serves(cluster, dict(probe_namespace_labels or {}), timeout=90.0)
    return Release(release, namespace, fullname, image)


def uninstall_modelward(cluster: LocalCluster, release: Release) -> None:
    """helm uninstall, then the webhook configurations the operator created."""
    cluster.control_plane.helm(
        "uninstall", release.name, "--namespace", release.namespace, "--wait", timeout=120
    )
    for resource in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
        cluster.control_plane.api_request(
            "DELETE", f"/apis/admissionregistration.k8s.io/v1/{resource}/{release.fullname}"
        )


def release_state(cluster: LocalCluster, namespace: str = "modelward-system") -> str:
    """The chart's pods and their last log lines, for failure messages."""
    kubectl = cluster.control_plane.kubectl
    pods = kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout
    logs = kubectl("logs", "-n", namespace, "-l", "app.kubernetes.io/name=modelward", "--tail=30")
    return f"pods:\n{pods}\nlogs:\n{logs.stdout}{logs.stderr}"


def _wait_until_webhook_serves(
    cluster: LocalCluster, labels: dict[str, str], *, timeout: float
) -> None:
    """Once the caBundle is in place and the API server reaches a pod through the Service's
    endpoints, a dry-run probe pod is denied by modelward."""
    namespace = PROBE_NAMESPACE
    plane = cluster.control_plane
    # The chart's enforced label too: the operator narrows the fail-open webhooks to what
    # policies select (webhook.scopeToPolicies), and no policy selects the probe namespace.
    labels = {**labels, "modelward.io/model-serving": "true"}
    plane.api_request(
        "POST", "/api/v1/namespaces", body={"metadata": {"name": namespace, "labels": labels}}
    )
    probe = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe", "labels": {"modelward.io/probe": "deny"}},
        "spec": {"containers": [{"name": "c", "image": "probe"}]},
    }
    deadline = time.monotonic() + timeout
    while True:
        response = plane.api_request(
            "POST", f"/api/v1/namespaces/{namespace}/pods?dryRun=All", body=probe
        )
        if "modelward probe" in response.message:
            return
        if time.monotonic() > deadline:
            raise InstallError(
                f"the API server did not call modelward's pods within {timeout:.0f} s "
                f"(last answer: HTTP {response.status}: {response.message})\n"
                f"{release_state(cluster)}"
            )
        time.sleep(0.25)
