"""Fixtures for tests on the real node: pod helpers and modelward installed from its own image.

``modelward_release`` installs charts/modelward with ``helm install`` into the ``cluster``
fixture's cluster (``modelward_dev.install``), from the image built from this checkout: modelward
runs as the chart's two pods, and every admission review of these tests goes API server → chart
Service (its endpoints) → a modelward pod.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from modelward_dev.cluster import LocalCluster
from modelward_dev.controlplane import ToolRunner
from modelward_dev.install import Release, install_modelward, uninstall_modelward

RELEASE = "mw"
RELEASE_NAMESPACE = "modelward-system"
FULLNAME = "mw-modelward"
#: Namespaces of these tests carry this label; the release's webhooks intercept only them, so
#: the cluster's own work (controllers, the chart's pods) never waits on modelward.
SCOPE_LABEL = "modelward-e2e.io/node"

RESTRICTED_CONTAINER: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def get(kubectl: ToolRunner, *args: str) -> dict[str, Any]:
    result = kubectl("get", *args, "-o", "json", check=True)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def apply(kubectl: ToolRunner, *objects: dict[str, Any]) -> Any:
    return kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))


def wait_until(what: str, check: Any, timeout: float = 60.0, *, explain: Any = None) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` (and the state
    ``explain()`` describes) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(0.25)


def busybox_pod(
    cluster: LocalCluster, name: str, namespace: str, command: str, **spec: Any
) -> dict[str, Any]:
    """A Pod Security "restricted" pod running ``sh -c command`` from the busybox image."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "main",
                    "image": cluster.image("busybox"),
                    "command": ["sh", "-c", command],
                    "securityContext": RESTRICTED_CONTAINER,
                }
            ],
            **spec,
        },
    }


def pod_state(kubectl: ToolRunner, name: str, namespace: str) -> str:
    """A one-line summary of a pod's phase and container states, for failure messages."""
    result = kubectl("get", "pod", name, "-n", namespace, "-o", "json")
    if result.returncode != 0:
        return result.stderr.strip()
    status = json.loads(result.stdout).get("status", {})
    lines = [f"phase={status.get('phase')}"]
    for key in ("initContainerStatuses", "containerStatuses"):
        for c in status.get(key) or []:
            lines.append(f"{c['name']}: {json.dumps(c.get('state'))}")
    return "\n".join(lines)


def wait_for_phase(
    kubectl: ToolRunner, name: str, namespace: str, phase: str, timeout: float = 60.0
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        pod = get(kubectl, "pod", name, "-n", namespace)
        return pod if pod.get("status", {}).get("phase") == phase else None

    result: dict[str, Any] = wait_until(
        f"pod {namespace}/{name} to be {phase}",
        reached,
        timeout,
        explain=lambda: pod_state(kubectl, name, namespace),
    )
    return result


@pytest.fixture(scope="session")
def modelward_release(cluster: LocalCluster) -> Iterator[Release]:
    """``helm install`` of charts/modelward from the image built from this checkout
    (``modelward_dev.install``); both replicas Ready and called by the API server."""
    release = install_modelward(
        cluster,
        release=RELEASE,
        namespace=RELEASE_NAMESPACE,
        namespace_selector={"matchExpressions": [{"key": SCOPE_LABEL, "operator": "Exists"}]},
        probe_namespace_labels={SCOPE_LABEL: "probe"},
    )
    assert release.fullname == FULLNAME
    try:
        yield release
    finally:
        uninstall_modelward(cluster, release)


def _release_state(kubectl: ToolRunner) -> str:
    pods = kubectl("get", "pods", "-n", RELEASE_NAMESPACE, "-o", "wide").stdout
    logs = kubectl(
        "logs", "-n", RELEASE_NAMESPACE, "-l", "app.kubernetes.io/name=modelward", "--tail=30"
    )
    return f"pods:\n{pods}\nlogs:\n{logs.stdout}{logs.stderr}"


def apply_policy(kubectl: ToolRunner, policy: dict[str, Any], timeout: float = 60.0) -> None:
    """Apply a policy; wait until modelward reports it Ready for this generation and both
    replicas apply it: every replica loads policies from its own watch, and the one that
    writes the status may not be the one the API server calls next."""
    result = apply(kubectl, policy)
    assert result.returncode == 0, result.stderr
    name = policy["metadata"]["name"]

    def ready() -> bool:
        obj = get(kubectl, "clustermodelpolicy", name)
        status = obj.get("status") or {}
        return status.get("observedGeneration") == obj["metadata"]["generation"] and any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )

    wait_until(
        f"policy {name} to be Ready",
        ready,
        timeout,
        explain=lambda: (
            json.dumps(get(kubectl, "clustermodelpolicy", name).get("status"))
            + "\n"
            + _release_state(kubectl)
        ),
    )
