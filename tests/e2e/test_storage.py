"""Encrypted model storage against the real kube-apiserver: StorageClasses and claims the
operator watches, pods a tenant (``edit`` rights) creates to keep a model on a plain disk."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from modelward_dev.controlplane import LocalControlPlane, ToolRunner
from modelward_dev.operator_process import OperatorProcess
from modelward_dev.tenant import Tenant
from tests.e2e.helpers import apply, apply_policy, cluster_policy, pod, wait_for


@pytest.fixture
def classes(control_plane: LocalControlPlane) -> Iterator[dict[str, str]]:
    """An encrypted and a plain StorageClass (cluster-scoped, so named per test)."""
    suffix = secrets.token_hex(3)
    names = {"encrypted": f"mw-encrypted-{suffix}", "plain": f"mw-plain-{suffix}"}
    parameters = {"encrypted": {"encrypted": "true", "kmsKeyId": "arn:aws:kms:key/1"}, "plain": {}}
    for key, name in names.items():
        body = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": name},
            "provisioner": "example.com/none",
            "parameters": parameters[key],
        }
        response = control_plane.api_request(
            "POST", "/apis/storage.k8s.io/v1/storageclasses", body=body
        )
        assert response.status == 201, response.message
    try:
        yield names
    finally:
        for name in names.values():
            control_plane.api_request("DELETE", f"/apis/storage.k8s.io/v1/storageclasses/{name}")


@pytest.fixture
def tenant(
    control_plane: LocalControlPlane, namespace: str, operator: OperatorProcess
) -> Iterator[Tenant]:
    with Tenant(control_plane=control_plane, namespace=namespace) as identity:
        yield identity


def claim(name: str, namespace: str, class_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": class_name,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


def pod_with(name: str, namespace: str, volume: dict[str, Any]) -> dict[str, Any]:
    body = pod(name, namespace)
    body["spec"]["volumes"].append(volume)
    return body


def storage_policy(kubectl: ToolRunner, namespace: str) -> None:
    section = {"storage": {"requiredParameters": {"encrypted": "true", "kmsKeyId": "*"}}}
    apply_policy(kubectl, cluster_policy(f"storage-{namespace}"[:63], namespace, section))


def test_tenant_pod_on_an_unencrypted_claim_is_refused(
    kubectl: ToolRunner, tenant: Tenant, namespace: str, classes: dict[str, str]
) -> None:
    storage_policy(kubectl, namespace)
    # A pod created before its claim cannot be shown to be encrypted.
    early = pod_with(
        "early", namespace, {"name": "m", "persistentVolumeClaim": {"claimName": "plain"}}
    )
    refused = apply(tenant.kubectl, early, extra=("--dry-run=server",))
    assert refused.returncode != 0 and "has not seen" in refused.stderr, refused.stderr

    assert apply(tenant.kubectl, claim("plain", namespace, classes["plain"])).returncode == 0
    assert apply(tenant.kubectl, claim("safe", namespace, classes["encrypted"])).returncode == 0

    def judged_on_its_class() -> bool:
        result = apply(tenant.kubectl, early, extra=("--dry-run=server",))
        return result.returncode != 0 and "lacks the required parameters" in result.stderr

    wait_for("the operator to see the plain claim", judged_on_its_class)
    result = apply(tenant.kubectl, early)
    assert result.returncode != 0 and "[MW-STO-001]" in result.stderr, result.stderr
    assert classes["plain"] in result.stderr

    def admitted() -> bool:
        body = pod_with(
            "ok", namespace, {"name": "m", "persistentVolumeClaim": {"claimName": "safe"}}
        )
        return apply(tenant.kubectl, body).returncode == 0

    wait_for("a pod on the encrypted claim to be admitted", admitted)


def test_tenant_generic_ephemeral_volume_on_an_unencrypted_class_is_refused(
    kubectl: ToolRunner, tenant: Tenant, namespace: str, classes: dict[str, str]
) -> None:
    storage_policy(kubectl, namespace)

    def ephemeral(class_name: str) -> dict[str, Any]:
        spec = {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": class_name,
            "resources": {"requests": {"storage": "1Gi"}},
        }
        return {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": spec}}}

    def refused_plain() -> bool:
        result = apply(tenant.kubectl, pod_with("plain", namespace, ephemeral(classes["plain"])))
        return result.returncode != 0 and "[MW-STO-002]" in result.stderr

    wait_for("the operator to see the plain class", refused_plain)
    encrypted = pod_with("enc", namespace, ephemeral(classes["encrypted"]))
    result = apply(tenant.kubectl, encrypted)
    assert result.returncode == 0, result.stderr
