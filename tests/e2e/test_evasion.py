"""Attempts to get around the policies.

docs/security.md lists each, with the test that holds it.
"""

from __future__ import annotations

from typing import Any

import pytest

from modelward_dev.controlplane import ToolRunner
from tests.e2e.helpers import apply, apply_policy, cluster_policy, pod, workload

pytestmark = pytest.mark.usefixtures("operator")

ISOLATION = {"isolation": {"requireDefaultDenyNetworkPolicy": False}, "images": {}}


def test_init_container_cannot_smuggle_privileges(kubectl: ToolRunner, namespace: str) -> None:
    apply_policy(kubectl, cluster_policy(namespace, namespace, ISOLATION))
    body = pod("sneaky", namespace)
    body["spec"]["initContainers"] = [
        {
            "name": "setup",
            "image": body["spec"]["containers"][0]["image"],
            "securityContext": {"privileged": True},
        }
    ]
    result = apply(kubectl, body)
    assert result.returncode != 0 and 'init container "setup"' in result.stderr


def test_pod_labels_cannot_opt_out_of_a_namespace_policy(
    kubectl: ToolRunner, namespace: str
) -> None:
    apply_policy(kubectl, cluster_policy(namespace, namespace, ISOLATION))
    body = pod("relabelled", namespace)
    body["metadata"]["labels"] = {"app": "not-a-model", "modelward.io/exempt": "true"}
    body["spec"]["hostNetwork"] = True
    result = apply(kubectl, body)
    assert result.returncode != 0 and "[MW-ISO-007]" in result.stderr


def test_update_cannot_introduce_a_violation(kubectl: ToolRunner, namespace: str) -> None:
    apply_policy(kubectl, cluster_policy(namespace, namespace, ISOLATION))
    deployment = workload("Deployment", "web", namespace, pod("x", namespace)["spec"])
    assert apply(kubectl, deployment).returncode == 0
    result = kubectl("set", "image", "deployment/web", "server=nginx:latest", "-n", namespace)
    assert result.returncode != 0 and "[MW-IMG-003]" in result.stderr
    assert apply(kubectl, pod("running", namespace)).returncode == 0
    result = kubectl("set", "image", "pod/running", "server=nginx:latest", "-n", namespace)
    assert result.returncode != 0 and "[MW-IMG-001]" in result.stderr


def test_scaling_and_deleting_are_never_blocked(kubectl: ToolRunner, namespace: str) -> None:
    deployment = workload("Deployment", "legacy", namespace, pod("x", namespace)["spec"])
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:latest"
    assert apply(kubectl, deployment).returncode == 0  # created before the policy existed
    apply_policy(kubectl, cluster_policy(namespace, namespace, ISOLATION))
    assert kubectl("scale", "deployment/legacy", "--replicas=0", "-n", namespace).returncode == 0
    assert kubectl("delete", "deployment/legacy", "-n", namespace, "--wait=false").returncode == 0


def test_a_namespaced_policy_cannot_relax_a_cluster_policy(
    kubectl: ToolRunner, namespace: str
) -> None:
    apply_policy(kubectl, cluster_policy(namespace, namespace, {"images": {}}))
    relaxed: dict[str, Any] = {
        "apiVersion": "modelward.io/v1alpha1",
        "kind": "ModelPolicy",
        "metadata": {"name": "relaxed", "namespace": namespace},
        "spec": {"mode": "Audit", "images": {"requireDigest": False, "forbiddenTags": []}},
    }
    apply_policy(kubectl, relaxed)
    body = pod("tagged", namespace)
    body["spec"]["containers"][0]["image"] = "registry.example.com/serving/server:1.0"
    result = apply(kubectl, body)
    assert result.returncode != 0 and "[MW-IMG-001]" in result.stderr
