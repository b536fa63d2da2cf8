"""A ClusterModelPolicy's referenced keys come from modelward's namespace only, and a policy
whose key is refused says why in its Ready condition (issue 9 #6, issue 10 #10)."""

from __future__ import annotations

import base64
from typing import Any

from modelward.controller.keys import KeyReader
from modelward.controller.observe import desired_status, observe_object
from modelward.state import ClusterState
from tests.unit.engine.builders import DIGEST, public_key_pem

OWN = "modelward-system"


class FakeKube:
    def __init__(self, objects: dict[tuple[str, str, str], dict[str, Any]]) -> None:
        self.objects = objects
        self.reads: list[tuple[str, str, str]] = []

    def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(("ConfigMap", namespace, name))
        return self.objects.get(("ConfigMap", namespace, name))

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(("Secret", namespace, name))
        return self.objects.get(("Secret", namespace, name))


def cluster_policy(*signers: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "modelward.io/v1alpha1",
        "kind": "ClusterModelPolicy",
        "metadata": {"name": "integrity", "generation": 1, "resourceVersion": "1"},
        "spec": {
            "mode": "Patch",
            "match": {"namespaces": ["serving-*"]},
            "integrity": {
                "trustedSigners": list(signers),
                "verifier": {"image": f"registry.example.com/modelward@{DIGEST}"},
            },
        },
    }


def ready(state: ClusterState) -> dict[str, Any]:
    entry = state.policies[("ClusterModelPolicy", None, "integrity")]
    condition: dict[str, Any] = desired_status(entry, counts={}, previous=None)["conditions"][0]
    return condition


def test_keys_are_read_from_modelwards_namespace_never_the_tenants() -> None:
    pem = public_key_pem()
    kube = FakeKube(
        {
            ("Secret", OWN, "release"): {"data": {"k": base64.b64encode(pem.encode()).decode()}},
            ("ConfigMap", "serving-a", "keys"): {"data": {"k": public_key_pem()}},
        }
    )
    reader = KeyReader(kube=kube, namespace=OWN)  # type: ignore[arg-type]
    trusted = cluster_policy(
        {"name": "r", "secretKeyRef": {"name": "release", "key": "k", "namespace": OWN}}
    )
    state = ClusterState()
    observe_object(state, "ClusterModelPolicy", trusted, keys=reader.fetch(trusted))
    assert ready(state)["status"] == "True"
    policy = state.active_policies[0]
    assert policy.integrity is not None and policy.integrity.signers[0].pem == pem

    tenant = cluster_policy(
        {"name": "t", "configMapKeyRef": {"name": "keys", "key": "k", "namespace": "serving-a"}}
    )
    tenant["metadata"]["resourceVersion"] = "2"
    kube.reads.clear()
    state = ClusterState()
    observe_object(state, "ClusterModelPolicy", tenant, keys=reader.fetch(tenant))
    assert kube.reads == []  # the tenant's namespace is never read
    condition = ready(state)
    assert condition["status"] == "False" and condition["reason"] == "UntrustedKeySource"
    assert OWN in condition["message"]


def test_an_inline_public_key_that_is_not_a_key_makes_the_policy_not_ready() -> None:
    state = ClusterState()
    body = cluster_policy(
        {"name": "r", "publicKey": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}
    )
    observe_object(state, "ClusterModelPolicy", body)
    condition = ready(state)
    assert condition["status"] == "False" and condition["reason"] == "InvalidKey"
    assert "not a PEM public key" in condition["message"] and state.active_policies == ()
