"""Pods admitted in Patch mode really start: Pod Security "restricted" settings, a
RuntimeClass mapped to a second runc handler, and a GPU pool's selector and toleration on a
node labelled and tainted as a GPU node. A pod that Patch mode makes unrunnable (an image
whose user is root, given ``runAsNonRoot: true``) fails at the kubelet with the reason, and
the patch warning names the fix beforehand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from modelward_dev.cluster import LocalCluster
from modelward_dev.controlplane import ToolRunner
from tests.e2e.node.conftest import (
    SCOPE_LABEL,
    Release,
    apply,
    apply_policy,
    get,
    pod_state,
    wait_for_phase,
    wait_until,
)

GPU = "modelward.example/gpu"
GPU_LABEL = "modelward.example/gpu.present"


@pytest.fixture
def namespace(
    cluster_kubectl: ToolRunner, cluster_namespace: str, modelward_release: Release
) -> str:
    # Enforced (failurePolicy Fail): a review that cannot reach modelward fails loudly
    # instead of admitting the pod unpatched.
    cluster_kubectl(
        "label",
        "namespace",
        cluster_namespace,
        f"{SCOPE_LABEL}=yes",
        "modelward.io/model-serving=true",
        check=True,
    )
    apply(
        cluster_kubectl,
        {
            "apiVersion": "node.k8s.io/v1",
            "kind": "RuntimeClass",
            "metadata": {"name": "hardened"},
            "handler": "runc-hardened",
        },
    )
    apply_policy(
        cluster_kubectl,
        {
            "apiVersion": "modelward.io/v1alpha1",
            "kind": "ClusterModelPolicy",
            "metadata": {"name": cluster_namespace},
            "spec": {
                "mode": "Patch",
                "match": {"namespaces": [cluster_namespace]},
                "isolation": {
                    "podSecurity": "restricted",
                    "runtimeClassNames": ["hardened"],
                    "defaultRuntimeClassName": "hardened",
                    "gpu": {
                        "resources": [GPU],
                        "nodeSelector": {GPU_LABEL: "true"},
                        "toleration": {"key": GPU, "operator": "Exists", "effect": "NoSchedule"},
                    },
                    "forbidServiceAccountTokenAutomount": True,
                    "requireDefaultDenyNetworkPolicy": False,
                },
            },
        },
    )
    return cluster_namespace


@pytest.fixture
def gpu_node(cluster: LocalCluster, cluster_kubectl: ToolRunner) -> Iterator[str]:
    """The node labelled, tainted and advertising one GPU (an extended resource) for the test."""
    node = cluster.node.name
    cluster_kubectl("label", "node", node, f"{GPU_LABEL}=true", "--overwrite", check=True)
    cluster_kubectl("taint", "node", node, f"{GPU}=present:NoSchedule", "--overwrite", check=True)
    patch = [{"op": "add", "path": f"/status/capacity/{GPU.replace('/', '~1')}", "value": "1"}]
    cluster_kubectl(
        "patch",
        "node",
        node,
        "--subresource=status",
        "--type=json",
        "-p",
        json.dumps(patch),
        check=True,
    )
    try:
        wait_until(
            "the node to advertise the GPU",
            lambda: get(cluster_kubectl, "node", node)["status"]["allocatable"].get(GPU) == "1",
        )
        yield node
    finally:
        cluster_kubectl("taint", "node", node, f"{GPU}=present:NoSchedule-")
        cluster_kubectl("label", "node", node, f"{GPU_LABEL}-")


def bare_pod(cluster: LocalCluster, name: str, namespace: str, **container: Any) -> dict[str, Any]:
    """A pod with no security settings: they come from Patch mode.

    The token automount too: the API server's ServiceAccount plugin projects the token
    (``kube-api-access-*``) before any webhook runs; Patch mode removes that volume and its
    mounts as well as setting ``automountServiceAccountToken: false``.
    """
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": cluster.image("busybox"),
                    "command": [
                        "sh",
                        "-c",
                        "grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status; id -u; "
                        "exec sleep 3600",
                    ],
                    **container,
                }
            ],
        },
    }


def test_a_patched_pod_runs_with_the_patched_settings(
    cluster: LocalCluster, cluster_kubectl: ToolRunner, namespace: str, gpu_node: str
) -> None:
    body = bare_pod(
        cluster,
        "patched",
        namespace,
        securityContext={"runAsUser": 1000},
        resources={"limits": {GPU: "1"}},
    )
    created = apply(cluster_kubectl, body)
    assert created.returncode == 0, created.stderr
    assert "modelward patched" in created.stderr  # the admission warnings kubectl prints
    pod = wait_for_phase(cluster_kubectl, "patched", namespace, "Running", timeout=90)
    spec = pod["spec"]
    assert spec["runtimeClassName"] == "hardened"
    assert spec["nodeSelector"] == {GPU_LABEL: "true"} and spec["nodeName"] == gpu_node
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    # The token the API server had projected is gone, not merely "not automounted".
    assert spec["automountServiceAccountToken"] is False
    assert not [v for v in spec.get("volumes", []) if v["name"].startswith("kube-api-access-")]
    logs = wait_until(
        "the container's report",
        lambda: (
            (out := cluster_kubectl("logs", "patched", "-n", namespace).stdout)
            and "NoNewPrivs" in out
            and out
        ),
    )
    # What the kernel says about the running process: the patches took effect.
    assert "Seccomp:\t2" in logs  # filter mode: RuntimeDefault
    assert "NoNewPrivs:\t1" in logs  # allowPrivilegeEscalation: false
    assert "CapEff:\t0000000000000000" in logs  # capabilities dropped: ALL
    assert logs.strip().splitlines()[-1] == "1000"


def test_a_root_image_made_non_root_by_patch_fails_with_the_reason(
    cluster: LocalCluster, cluster_kubectl: ToolRunner, namespace: str
) -> None:
    created = apply(cluster_kubectl, bare_pod(cluster, "root-image", namespace))
    assert created.returncode == 0, created.stderr
    # Told at admission: runAsNonRoot was set, and the image must run as a non-root user.
    assert "runAsNonRoot" in created.stderr and "non-root user" in created.stderr
    waiting = wait_until(
        "the kubelet to refuse the container",
        lambda: (
            (
                get(cluster_kubectl, "pod", "root-image", "-n", namespace)["status"].get(
                    "containerStatuses"
                )
                or [{}]
            )[0]
            .get("state", {})
            .get("waiting", {})
            .get("reason")
            == "CreateContainerConfigError"
            and get(cluster_kubectl, "pod", "root-image", "-n", namespace)["status"][
                "containerStatuses"
            ][0]["state"]["waiting"]
        ),
        explain=lambda: pod_state(cluster_kubectl, "root-image", namespace),
    )
    assert "runAsNonRoot and image will run as root" in waiting["message"]
