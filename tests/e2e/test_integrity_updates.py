"""Integrity against a tenant, through the real kube-apiserver (issue 9 #1, #4, #6, #8, #9;
issue 10 #10).

Each attack is run the way a workload author would: on a pod held back by a scheduling gate
(so its verifier has not run yet), with kubectl against the chart's two webhooks, the policy
in Patch mode (the mode that used to let fixable findings through on UPDATE).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelward_dev.controlplane import ToolRunner
from modelward_dev.operator_process import OperatorProcess
from tests.e2e.helpers import apply, apply_policy, cluster_policy, get_json, wait_for
from tests.e2e.test_integrity import VERIFIER_IMAGE, model_pod
from tests.unit.engine.builders import DIGEST, public_key_pem

pytestmark = [pytest.mark.usefixtures("operator"), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RELEASE_KEY = public_key_pem()
ATTACKER_KEY = public_key_pem()


def integrity(*signers: dict[str, Any], **options: Any) -> dict[str, Any]:
    return {
        "integrity": {
            "trustedSigners": list(signers) or [{"name": "release", "publicKey": RELEASE_KEY}],
            "verifier": {"image": VERIFIER_IMAGE},
            **options,
        }
    }


def patch_policy(kubectl: ToolRunner, namespace: str) -> dict[str, Any]:
    """Integrity and isolation in Patch mode for ``namespace``."""
    body = {**integrity(), "isolation": {"requireDefaultDenyNetworkPolicy": False}}
    return apply_policy(kubectl, cluster_policy(namespace, namespace, body, "Patch"))


def gated_model_pod(kubectl: ToolRunner, name: str, namespace: str) -> dict[str, Any]:
    """A model pod admitted (and patched) by the Patch policy, held by a scheduling gate."""
    body = model_pod(name, namespace)
    body["spec"]["schedulingGates"] = [{"name": "example.com/hold"}]
    result = apply(kubectl, body)
    assert result.returncode == 0, result.stderr
    return get_json(kubectl, "pod", name, "-n", namespace)


def test_patch_mode_denies_swapping_the_trusted_key_on_a_gated_pod(
    kubectl: ToolRunner, namespace: str
) -> None:
    patch_policy(kubectl, namespace)
    stored = gated_model_pod(kubectl, "held", namespace)
    key = next(k for k in stored["metadata"]["annotations"] if k.startswith("keys.modelward.io/"))
    result = kubectl(
        "annotate", "--overwrite", "pod/held", "-n", namespace, f"{key}={ATTACKER_KEY}"
    )
    assert result.returncode != 0 and "[MW-INT-006]" in result.stderr, result.stderr
    after = get_json(kubectl, "pod", "held", "-n", namespace)
    assert after["metadata"]["annotations"][key] == RELEASE_KEY


def test_patch_mode_denies_replacing_the_verifier_image(
    kubectl: ToolRunner, namespace: str
) -> None:
    patch_policy(kubectl, namespace)
    stored = gated_model_pod(kubectl, "held", namespace)
    verifier = stored["spec"]["initContainers"][-1]["name"]
    assert (
        verifier.startswith("modelward-verify-") and len(verifier) == len("modelward-verify-") + 40
    )
    evil = f"registry.example.com/serving/fake-verifier@{DIGEST}"
    result = kubectl("set", "image", "pod/held", f"{verifier}={evil}", "-n", namespace)
    assert result.returncode != 0 and "[MW-INT-006]" in result.stderr, result.stderr
    after = get_json(kubectl, "pod", "held", "-n", namespace)
    assert after["spec"]["initContainers"][-1]["image"] == VERIFIER_IMAGE


def test_patch_mode_fixes_an_ephemeral_container_that_mounts_the_model_writable(
    kubectl: ToolRunner, namespace: str
) -> None:
    patch_policy(kubectl, namespace)
    gated_model_pod(kubectl, "held", namespace)
    debug = [
        {
            "op": "add",
            "path": "/spec/ephemeralContainers",
            "value": [
                {
                    "name": "debug",
                    "image": f"registry.example.com/serving/debug@{DIGEST}",
                    "volumeMounts": [{"name": "models", "mountPath": "/m"}],
                    "securityContext": {"allowPrivilegeEscalation": False},
                }
            ],
        }
    ]
    result = kubectl(
        "patch",
        "pod",
        "held",
        "-n",
        namespace,
        "--subresource=ephemeralcontainers",
        "--type=json",
        "-p",
        json.dumps(debug),
    )
    assert result.returncode == 0, result.stderr
    container = get_json(kubectl, "pod", "held", "-n", namespace)["spec"]["ephemeralContainers"][0]
    assert container["volumeMounts"][0]["readOnly"] is True
    assert "ALL" in container["securityContext"]["capabilities"]["drop"]


def test_a_second_writable_claim_or_an_alias_of_the_model_claim_is_caught(
    kubectl: ToolRunner, namespace: str
) -> None:
    apply_policy(kubectl, cluster_policy(namespace, namespace, integrity(), "Enforce"))
    second = model_pod("second", namespace)
    second["spec"]["volumes"].append(
        {"name": "weights", "persistentVolumeClaim": {"claimName": "unsigned"}}
    )
    second["spec"]["containers"][0]["volumeMounts"].append({"name": "weights", "mountPath": "/w"})
    result = apply(kubectl, second)
    assert result.returncode != 0 and "[MW-INT-005]" in result.stderr, result.stderr
    alias = model_pod("alias", namespace)
    alias["spec"]["volumes"].append(
        {"name": "same", "persistentVolumeClaim": {"claimName": "models"}}
    )
    alias["spec"]["containers"][0]["volumeMounts"].append({"name": "same", "mountPath": "/s"})
    result = apply(kubectl, alias)
    assert result.returncode != 0 and 'volume "same"' in result.stderr, result.stderr
    assert "[MW-INT-002]" in result.stderr


def _ready_condition(kubectl: ToolRunner, name: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def observed() -> bool:
        obj = get_json(kubectl, "cmp", name)
        conditions = (obj.get("status") or {}).get("conditions") or []
        if (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]:
            found.update(next(c for c in conditions if c["type"] == "Ready"))
            return True
        return False

    wait_for(f"policy {name} to be observed", observed)
    return found


def test_a_cluster_policy_key_comes_from_modelwards_namespace_only(
    kubectl: ToolRunner, namespace: str, operator: OperatorProcess
) -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"keys-{namespace}"[:63], "namespace": "PLACEHOLDER"},
        "data": {"release.pem": RELEASE_KEY},
    }
    own = {**config_map, "metadata": {**config_map["metadata"], "namespace": operator.namespace}}
    tenant = {
        **config_map,
        "metadata": {**config_map["metadata"], "namespace": namespace},
        "data": {"release.pem": ATTACKER_KEY},
    }
    assert apply(kubectl, own, tenant).returncode == 0
    name = config_map["metadata"]["name"]

    # The tenant's namespace is refused, with the reason in Ready.
    untrusted = cluster_policy(
        namespace,
        namespace,
        integrity(
            {
                "name": "release",
                "configMapKeyRef": {"name": name, "key": "release.pem", "namespace": namespace},
            }
        ),
        "Patch",
    )
    assert apply(kubectl, untrusted).returncode == 0
    condition = _ready_condition(kubectl, namespace)
    assert condition["status"] == "False" and condition["reason"] == "UntrustedKeySource"

    # Without a namespace, the CRD refuses it (it would have meant the pod's namespace).
    no_namespace = json.loads(json.dumps(untrusted))
    del no_namespace["spec"]["integrity"]["trustedSigners"][0]["configMapKeyRef"]["namespace"]
    result = apply(kubectl, no_namespace)
    assert result.returncode != 0 and "namespace" in result.stderr, result.stderr

    # modelward's namespace: read by the operator and injected like an inline key.
    trusted = json.loads(json.dumps(untrusted))
    trusted["spec"]["integrity"]["trustedSigners"][0]["configMapKeyRef"]["namespace"] = (
        operator.namespace
    )
    apply_policy(kubectl, trusted)
    assert _ready_condition(kubectl, namespace)["status"] == "True"
    assert apply(kubectl, model_pod("served", namespace)).returncode == 0
    stored = get_json(kubectl, "pod", "served", "-n", namespace)
    values = stored["metadata"]["annotations"].values()
    assert RELEASE_KEY in values and ATTACKER_KEY not in values
    keys = next(v for v in stored["spec"]["volumes"] if v["name"].endswith("-keys"))
    assert [next(iter(s)) for s in keys["projected"]["sources"]] == ["downwardAPI"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            lambda s: s["integrity"]["trustedSigners"][0].update(publicKey="not a key"),
            "must be PEM",
        ),
        (
            lambda s: s.update(exclude={"podSelector": {"matchLabels": {"app": "debug"}}}),
            "exclude.podSelector is not allowed",
        ),
        (lambda s: s["integrity"].update(scanProfiles=["pytorch"]), "Unsupported value"),
        (lambda s: s["integrity"].update(allowedGlobals=["--no-scan"]), "should match"),
    ],
    ids=["not-pem", "exclude-pod-selector", "unknown-profile", "global-as-option"],
)
def test_the_crd_refuses_what_cannot_be_trusted(
    kubectl: ToolRunner, namespace: str, change: Any, words: str
) -> None:
    sections = integrity()
    change(sections)
    result = apply(kubectl, cluster_policy(namespace, namespace, sections))
    assert result.returncode != 0 and words in result.stderr, result.stderr


def test_a_pem_shaped_public_key_that_is_not_a_key_leaves_the_policy_not_ready(
    kubectl: ToolRunner, namespace: str
) -> None:
    fake = "-----BEGIN PUBLIC KEY-----\nAAAAAAAAAAAA\n-----END PUBLIC KEY-----\n"
    body = cluster_policy(
        namespace, namespace, integrity({"name": "release", "publicKey": fake}), "Patch"
    )
    assert apply(kubectl, body).returncode == 0
    condition = _ready_condition(kubectl, namespace)
    assert condition["status"] == "False" and condition["reason"] == "InvalidKey"
    assert "not a PEM public key" in condition["message"]


def test_the_shipped_integrity_example_cannot_be_escaped_by_leaving_out_a_label(
    kubectl: ToolRunner, namespace: str
) -> None:
    example = yaml.safe_load((ROOT / "manifests/examples/policies/integrity.yaml").read_text())
    kubectl("label", "namespace", namespace, "modelward.io/model-serving=true", check=True)
    apply_policy(kubectl, example)
    try:
        body = model_pod("unlabelled", namespace)
        body["metadata"]["labels"] = {}
        del body["metadata"]["annotations"]  # and no declaration: it mounts a PVC all the same
        result = apply(kubectl, body)
        assert result.returncode != 0 and "[MW-INT-001]" in result.stderr, result.stderr
        declared = model_pod("declared", namespace)
        declared["metadata"]["labels"] = {}
        assert apply(kubectl, declared).returncode == 0
        stored = get_json(kubectl, "pod", "declared", "-n", namespace)
        assert stored["spec"]["initContainers"][-1]["name"].startswith("modelward-verify-")
    finally:
        kubectl("delete", "cmp", example["metadata"]["name"], "--wait=false")
