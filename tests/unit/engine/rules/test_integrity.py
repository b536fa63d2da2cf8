"""MW-INT-*: model declaration, read-only mounts, OCI digests, verifier injection."""

from __future__ import annotations

import copy
from typing import Any

from modelward.engine import StaticKeySource
from modelward.engine.patches import remedies_to_json_patch
from modelward.engine.rules.integrity import MODEL_VOLUME
from modelward.engine.workloads import workload_from_object
from tests.unit.engine.builders import (
    DIGEST,
    apply_json_patch,
    ca_certificate_pem,
    compliant_pod,
    decide,
    policy,
    public_key_pem,
    rule_ids,
)

KEY = public_key_pem()
CA = ca_certificate_pem()
#: What the operator read from its own namespace for the cluster policy's reference.
KEYS = StaticKeySource("modelward-system", {("ConfigMap", "modelward-system", "ca", "ca.pem"): CA})
SECTION = {
    "integrity": {
        "trustedSigners": [
            {"name": "release", "publicKey": KEY},
            {
                "name": "team-ca",
                "type": "caCertificate",
                "configMapKeyRef": {"name": "ca", "key": "ca.pem", "namespace": "modelward-system"},
            },
        ],
        "verifier": {"image": f"registry.example.com/modelward@{DIGEST}"},
    }
}
ENFORCE = policy(SECTION, keys=KEYS)
PATCH = policy(SECTION, mode="Patch", keys=KEYS)


def model_pod(**annotations: str) -> dict[str, Any]:
    pod = compliant_pod()
    pod["metadata"]["annotations"] = {MODEL_VOLUME: "models", **annotations}
    pod["spec"]["volumes"].append(
        {"name": "models", "persistentVolumeClaim": {"claimName": "llama"}}
    )
    pod["spec"]["containers"][0]["volumeMounts"].append(
        {"name": "models", "mountPath": "/mnt/models", "readOnly": True}
    )
    return pod


def _patched(obj: dict[str, Any], *policies: Any) -> dict[str, Any]:
    d = decide(obj, *policies)
    ops = remedies_to_json_patch(
        workload_from_object(obj), [r for f in d.fixes for r in f.violation.remedies]
    )
    return apply_json_patch(obj, ops)


def test_pod_without_model_declaration_is_denied() -> None:
    found = decide(compliant_pod(), PATCH)
    assert [f.violation.rule_id for f in found.denials] == ["MW-INT-001"]
    assert "modelward.io/model-volume" in found.denials[0].violation.fix


def test_declaring_a_missing_volume_or_escaping_path_is_denied() -> None:
    pod = model_pod()
    pod["metadata"]["annotations"][MODEL_VOLUME] = "nope"
    assert "no such volume" in decide(pod, PATCH).denials[0].violation.message
    escaping = model_pod(**{"modelward.io/model-path": "../../etc"})
    assert "without '..'" in decide(escaping, PATCH).denials[0].violation.message


def test_enforce_denies_a_pod_without_verifier() -> None:
    d = decide(model_pod(), ENFORCE)
    assert [f.violation.rule_id for f in d.denials] == ["MW-INT-004"]


def test_patch_injects_a_restricted_verifier_and_is_idempotent() -> None:
    pod = model_pod(
        **{"modelward.io/model-path": "llama", "modelward.io/model-signature": "sig/model.sig"}
    )
    patched = _patched(pod, PATCH)
    init = patched["spec"]["initContainers"][-1]
    assert init["name"].startswith("modelward-verify-")
    assert init["args"][:5] == [
        "verify-pod",
        "--model-path",
        "/modelward/model/llama",
        "--signature",
        "/modelward/model/llama/sig/model.sig",
    ]
    assert (
        "--public-key" in init["args"] and "--ca-cert" in init["args"] and "--scan" in init["args"]
    )
    assert all(m["readOnly"] for m in init["volumeMounts"])
    sc = init["securityContext"]
    assert (
        sc["runAsNonRoot"]
        and sc["allowPrivilegeEscalation"] is False
        and sc["readOnlyRootFilesystem"]
    )
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {
        "type": "RuntimeDefault"
    }
    keys = next(v for v in patched["spec"]["volumes"] if v["name"].endswith("-keys"))
    kinds = [next(iter(src)) for src in keys["projected"]["sources"]]
    assert kinds == ["downwardAPI"]  # the cluster policy's referenced CA travels inline too
    assert {KEY, CA} <= set(patched["metadata"]["annotations"].values())
    # Re-admission of the patched pod, also with the defaults the API server adds, finds nothing.
    assert rule_ids(decide(patched, PATCH)) == []
    stored = copy.deepcopy(patched)
    stored["spec"]["initContainers"][-1].update(
        imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log"
    )
    assert rule_ids(decide(stored, PATCH)) == []


def test_verifier_goes_after_existing_init_containers_in_templates() -> None:
    pod = model_pod()
    pod["spec"]["initContainers"] = [
        {
            "name": "storage-initializer",
            "image": "x",
            "volumeMounts": [{"name": "models", "mountPath": "/mnt/models"}],
        }
    ]
    template = {
        "metadata": {"annotations": dict(pod["metadata"]["annotations"])},
        "spec": pod["spec"],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "serving-a"},
        "spec": {"template": template},
    }
    patched = _patched(deployment, PATCH)
    names = [c["name"] for c in patched["spec"]["template"]["spec"]["initContainers"]]
    assert names[0] == "storage-initializer" and names[1].startswith("modelward-verify-")


def test_a_tampered_verifier_is_replaced() -> None:
    patched = _patched(model_pod(), PATCH)
    patched["spec"]["initContainers"][-1]["args"] = ["verify-pod", "--no-scan"]
    d = decide(patched, PATCH)
    assert [f.violation.rule_id for f in d.fixes] == ["MW-INT-004"]
    assert rule_ids(decide(_patched(patched, PATCH), PATCH)) == []


def test_writable_model_mount_is_denied_or_patched() -> None:
    pod = model_pod()
    pod["spec"]["containers"][0]["volumeMounts"][-1]["readOnly"] = False
    assert "MW-INT-002" in [f.violation.rule_id for f in decide(pod, ENFORCE).denials]
    fixed = _patched(pod, PATCH)
    assert fixed["spec"]["containers"][0]["volumeMounts"][-1]["readOnly"] is True


def test_oci_model_image_needs_a_digest() -> None:
    pod = compliant_pod()
    pod["metadata"]["annotations"] = {MODEL_VOLUME: "model"}
    pod["spec"]["volumes"].append(
        {"name": "model", "image": {"reference": "registry.example.com/models/llama:v1"}}
    )
    assert "MW-INT-003" in [f.violation.rule_id for f in decide(pod, PATCH).denials]
    pod["spec"]["volumes"][-1]["image"]["reference"] = f"registry.example.com/models/llama@{DIGEST}"
    assert "MW-INT-003" not in rule_ids(decide(pod, PATCH))


def test_two_policies_inject_two_verifiers() -> None:
    other = policy(SECTION, mode="Patch", name="second", keys=KEYS)
    patched = _patched(model_pod(), PATCH, other)
    verifiers = [
        c for c in patched["spec"]["initContainers"] if c["name"].startswith("modelward-verify-")
    ]
    assert len(verifiers) == 2 and verifiers[0]["name"] != verifiers[1]["name"]
    assert rule_ids(decide(patched, PATCH, other)) == []


def test_signature_not_required_still_checks_read_only() -> None:
    p = policy({"integrity": {"requireSignature": False}})
    assert rule_ids(decide(compliant_pod(), p)) == []


def test_api_server_defaults_inside_the_keys_volume_do_not_trigger_a_patch() -> None:
    patched = _patched(model_pod(), PATCH)
    keys = next(v for v in patched["spec"]["volumes"] if v["name"].endswith("-keys"))
    for item in keys["projected"]["sources"][0]["downwardAPI"]["items"]:
        item["fieldRef"]["apiVersion"] = "v1"  # what the API server stores
    assert rule_ids(decide(patched, PATCH)) == []


def test_the_verifier_gets_the_policys_scan_profiles_and_allowed_globals() -> None:
    """The verifier in the pod scans with the policy's choice, parsed by verify-pod itself."""
    import argparse

    from modelward.integrity.commands import register_commands

    section = copy.deepcopy(SECTION)
    section["integrity"]["scanProfiles"] = ["sklearn", "xgboost"]
    section["integrity"]["allowedGlobals"] = ["mypkg.config.ModelConfig", "otherpkg.*"]
    patched = _patched(model_pod(), policy(section, mode="Patch", keys=KEYS))
    args = patched["spec"]["initContainers"][-1]["args"]
    assert "--profile=sklearn" in args and "--allow-global=otherpkg.*" in args
    parser = argparse.ArgumentParser()
    register_commands(parser.add_subparsers(dest="command"))
    parsed = parser.parse_args(args)
    assert parsed.profile == ["sklearn", "xgboost"]
    assert parsed.allow_global == ["mypkg.config.ModelConfig", "otherpkg.*"]
    # without them the verifier's arguments are what they were
    plain = _patched(model_pod(), PATCH)["spec"]["initContainers"][-1]["args"]
    assert not [a for a in plain if a.startswith(("--profile", "--allow-global"))]


def test_scan_profiles_and_allowed_globals_are_validated() -> None:
    import pytest

    from modelward.errors import PolicyError

    for field, value in (
        ("scanProfiles", ["pytorch"]),
        ("allowedGlobals", ["--no-scan"]),
        ("allowedGlobals", ["os.system; rm"]),
    ):
        section = copy.deepcopy(SECTION)
        section["integrity"][field] = value
        with pytest.raises(PolicyError):
            policy(section, keys=KEYS)
