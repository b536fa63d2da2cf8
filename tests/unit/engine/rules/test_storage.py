"""MW-STO-001/002: volumes of governed pods use allowed (encrypted) StorageClasses."""

from __future__ import annotations

from typing import Any

import pytest

from modelward.engine import evaluate_workload
from modelward.engine.workloads import workload_from_object
from modelward.errors import PolicyError
from tests.unit.engine.builders import compliant_pod, facts, policy, rule_ids

BY_PARAMETERS = {"storage": {"requiredParameters": {"encrypted": "true", "kmsKeyId": "*"}}}
BY_NAME = {"storage": {"allowedStorageClasses": ["vault-*"]}}


def storage_class(
    name: str, default: bool = False, created: str = "2026-01-01T00:00:00Z", **params: str
) -> dict[str, Any]:
    annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {
        "kind": "StorageClass",
        "metadata": {"name": name, "annotations": annotations, "creationTimestamp": created},
        "parameters": params,
    }


def claim(name: str, class_name: str | None, namespace: str = "serving-a") -> dict[str, Any]:
    spec: dict[str, Any] = {} if class_name is None else {"storageClassName": class_name}
    return {
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


ENCRYPTED = storage_class("encrypted", encrypted="true", kmsKeyId="arn:key")
PLAIN = storage_class("plain")


def judge(
    volume: dict[str, Any], sections: dict[str, Any], *objects: dict[str, Any], **pod_meta: Any
) -> list[str]:
    pod = compliant_pod()
    pod["spec"]["volumes"].append(volume)
    pod["metadata"].update(pod_meta)
    known = facts()
    for obj in objects:
        known.add_object(obj)
    decision = evaluate_workload(workload_from_object(pod), known, [policy(sections)])
    return rule_ids(decision)


def pvc_volume(claim_name: str) -> dict[str, Any]:
    return {"name": "model", "persistentVolumeClaim": {"claimName": claim_name}}


def ephemeral_volume(class_name: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}},
    }
    if class_name is not None:
        spec["storageClassName"] = class_name
    return {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": spec}}}


def test_claim_on_an_encrypted_class_is_allowed() -> None:
    assert judge(pvc_volume("m"), BY_PARAMETERS, ENCRYPTED, claim("m", "encrypted")) == []


def test_claim_on_an_unencrypted_class_is_denied() -> None:
    assert judge(pvc_volume("m"), BY_PARAMETERS, ENCRYPTED, PLAIN, claim("m", "plain")) == [
        "MW-STO-001"
    ]


def test_required_wildcard_parameter_must_be_non_empty() -> None:
    empty_key = storage_class("half", encrypted="true", kmsKeyId="")
    assert judge(pvc_volume("m"), BY_PARAMETERS, empty_key, claim("m", "half")) == ["MW-STO-001"]


def test_unknown_claim_is_denied() -> None:
    assert judge(pvc_volume("later"), BY_PARAMETERS, ENCRYPTED) == ["MW-STO-001"]


def test_claim_in_another_namespace_does_not_count() -> None:
    assert judge(
        pvc_volume("m"), BY_PARAMETERS, ENCRYPTED, claim("m", "encrypted", "elsewhere")
    ) == ["MW-STO-001"]


def test_claim_without_class_uses_the_newest_default() -> None:
    old_default = storage_class("old", default=True, created="2025-01-01T00:00:00Z")
    new_default = storage_class(
        "new", default=True, created="2026-02-01T00:00:00Z", encrypted="true", kmsKeyId="k"
    )
    assert judge(pvc_volume("m"), BY_PARAMETERS, old_default, new_default, claim("m", None)) == []
    plain_default = storage_class("plain", default=True)
    assert judge(pvc_volume("m"), BY_PARAMETERS, plain_default, claim("m", None)) == ["MW-STO-001"]


def test_claim_without_class_and_no_default_is_denied() -> None:
    assert judge(pvc_volume("m"), BY_PARAMETERS, ENCRYPTED, claim("m", None)) == ["MW-STO-001"]


def test_claim_with_explicitly_no_class_is_denied() -> None:
    assert judge(pvc_volume("m"), BY_NAME, claim("m", "")) == ["MW-STO-001"]


def test_allowed_by_name_needs_no_parameters_or_even_the_class() -> None:
    assert judge(pvc_volume("m"), BY_NAME, claim("m", "vault-gold")) == []
    assert judge(pvc_volume("m"), BY_NAME, PLAIN, claim("m", "plain")) == ["MW-STO-001"]


def test_generic_ephemeral_volume_on_an_unencrypted_class_is_denied() -> None:
    assert judge(ephemeral_volume("plain"), BY_PARAMETERS, PLAIN) == ["MW-STO-002"]
    assert judge(ephemeral_volume("encrypted"), BY_PARAMETERS, ENCRYPTED) == []
    assert judge(ephemeral_volume(None), BY_PARAMETERS, PLAIN) == ["MW-STO-002"]


def test_model_volumes_scope_judges_only_the_declared_model_volume() -> None:
    sections = {"storage": {**BY_PARAMETERS["storage"], "volumes": "ModelVolumes"}}
    annotated = {"annotations": {"modelward.io/model-volume": "model"}}
    assert judge(ephemeral_volume("plain"), sections, PLAIN, **annotated) == []
    assert judge(pvc_volume("m"), sections, PLAIN, claim("m", "plain"), **annotated) == [
        "MW-STO-001"
    ]


def test_storage_section_that_allows_nothing_is_refused() -> None:
    with pytest.raises(PolicyError, match="allows no StorageClass"):
        policy({"storage": {}})


def test_stateful_set_claim_templates_are_judged_on_the_stateful_set() -> None:
    pod = compliant_pod()
    template = {"metadata": {"labels": {"app": "m"}}, "spec": pod["spec"]}

    def stateful_set(class_name: str) -> dict[str, Any]:
        claim_template = {
            "metadata": {"name": "model"},
            "spec": {"storageClassName": class_name, "accessModes": ["ReadWriteOnce"]},
        }
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "llm", "namespace": "serving-a"},
            "spec": {"template": template, "volumeClaimTemplates": [claim_template]},
        }

    known = facts()
    for obj in (ENCRYPTED, PLAIN):
        known.add_object(obj)
    judged = [
        rule_ids(
            evaluate_workload(workload_from_object(stateful_set(c)), known, [policy(BY_PARAMETERS)])
        )
        for c in ("plain", "encrypted")
    ]
    assert judged == [["MW-STO-001"], []]
