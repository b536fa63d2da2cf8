"""Integrity follows the storage behind a volume, not its name (issue 9 #4), finds model pods
by what they are (issue 9 #8), and names verifiers and key annotations collision-free
(issue 9 #9)."""

from __future__ import annotations

from typing import Any

import pytest

from modelward.engine.policy import VERIFIER_PREFIX
from modelward.engine.rules.integrity import (
    MODEL_VOLUME,
    UNVERIFIED_VOLUMES,
    key_annotation,
    keys_volume,
    storage_of,
)
from modelward.engine.workloads import workload_from_object
from tests.unit.engine.builders import DIGEST, compliant_pod, decide, policy, public_key_pem
from tests.unit.engine.rules.test_integrity import _patched

KEY = public_key_pem()
SECTION: dict[str, Any] = {
    "integrity": {
        "trustedSigners": [{"name": "release", "publicKey": KEY}],
        "verifier": {"image": f"registry.example.com/modelward@{DIGEST}"},
    }
}
PATCH = policy(SECTION, mode="Patch")
ENFORCE = policy(SECTION)


def verified_pod(**extra_volumes: dict[str, Any]) -> dict[str, Any]:
    """A model pod, already carrying the verifier (as Patch mode admitted it), plus volumes."""
    pod = compliant_pod()
    pod["metadata"]["annotations"] = {MODEL_VOLUME: "models"}
    pod["spec"]["volumes"].append(
        {"name": "models", "persistentVolumeClaim": {"claimName": "signed"}}
    )
    pod["spec"]["containers"][0]["volumeMounts"].append(
        {"name": "models", "mountPath": "/mnt/models", "readOnly": True}
    )
    for name, source in extra_volumes.items():
        pod["spec"]["volumes"].append({"name": name, **source})
    patched: dict[str, Any] = _patched(pod, PATCH)
    return patched


def mount(pod: dict[str, Any], volume: str, *, read_only: bool, where: str = "containers") -> None:
    pod["spec"].setdefault(where, [{"name": "x", "image": "x"}])
    pod["spec"][where][0].setdefault("volumeMounts", []).append(
        {"name": volume, "mountPath": f"/{volume}", "readOnly": read_only}
    )


def denied_ids(pod: dict[str, Any], *policies: Any) -> list[str]:
    return sorted(f.violation.rule_id for f in decide(pod, *policies).denials)


def test_the_verified_pod_passes() -> None:
    assert [f.violation.rule_id for f in decide(verified_pod(), PATCH).findings] == []


def test_the_model_claim_under_a_second_name_writable_is_caught() -> None:
    pod = verified_pod(alias={"persistentVolumeClaim": {"claimName": "signed"}})
    mount(pod, "alias", read_only=False)
    found = decide(pod, ENFORCE).denials
    assert [f.violation.rule_id for f in found] == ["MW-INT-002"]
    assert "alias" in found[0].violation.message and "signed" in found[0].violation.message
    fixed = _patched(pod, PATCH)
    assert fixed["spec"]["containers"][0]["volumeMounts"][-1]["readOnly"] is True


def test_a_parent_host_path_of_the_model_is_the_same_storage() -> None:
    model = storage_of({"name": "m", "hostPath": {"path": "/srv/models/llama/"}})
    parent = storage_of({"name": "p", "hostPath": {"path": "/srv"}})
    sibling = storage_of({"name": "s", "hostPath": {"path": "/srv/modelsx"}})
    assert model.overlaps(parent) and parent.overlaps(model)
    assert not model.overlaps(sibling)


def test_csi_volumes_are_compared_by_driver_and_attributes_not_name() -> None:
    a = storage_of({"name": "a", "csi": {"driver": "d", "volumeAttributes": {"x": "1"}}})
    b = storage_of(
        {"name": "b", "csi": {"driver": "d", "readOnly": False, "volumeAttributes": {"x": "1"}}}
    )
    c = storage_of({"name": "c", "csi": {"driver": "d", "volumeAttributes": {"x": "2"}}})
    assert a.overlaps(b) and not a.overlaps(c)


def test_a_later_init_container_writing_the_model_claim_under_another_name_is_caught() -> None:
    pod = verified_pod(alias={"persistentVolumeClaim": {"claimName": "signed"}})
    pod["spec"]["initContainers"].append(
        {"name": "late", "image": "x", "volumeMounts": [{"name": "alias", "mountPath": "/a"}]}
    )
    messages = [f.violation.message for f in decide(pod, ENFORCE).denials]
    assert any("late can change the model" in m for m in messages)


def test_serving_from_a_second_unverified_writable_claim_is_denied() -> None:
    pod = verified_pod(other={"persistentVolumeClaim": {"claimName": "unsigned"}})
    mount(pod, "other", read_only=False)
    found = decide(pod, PATCH).denials  # no safe fix: Patch mode denies too
    assert [f.violation.rule_id for f in found] == ["MW-INT-005"]
    assert "unsigned" in found[0].violation.message and UNVERIFIED_VOLUMES in found[0].violation.fix


@pytest.mark.parametrize(
    "source",
    [
        {"persistentVolumeClaim": {"claimName": "unsigned"}},
        {"image": {"reference": f"registry.example.com/models/other@{DIGEST}"}},
        {"hostPath": {"path": "/srv/other"}},
        {"csi": {"driver": "s3.csi.example.com"}},
        {"ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
        {"nfs": {"server": "nfs", "path": "/models"}},
    ],
    ids=["pvc", "image", "hostPath", "csi", "ephemeral", "nfs"],
)
def test_every_model_like_volume_must_be_the_verified_one(source: dict[str, Any]) -> None:
    pod = verified_pod(other=source)
    mount(pod, "other", read_only=True)
    assert denied_ids(pod, ENFORCE) == ["MW-INT-005"]


def test_a_declared_unverified_volume_must_be_read_only() -> None:
    pod = verified_pod(cache={"persistentVolumeClaim": {"claimName": "hf-cache"}})
    pod["metadata"]["annotations"][UNVERIFIED_VOLUMES] = "cache"
    mount(pod, "cache", read_only=True)
    assert denied_ids(pod, ENFORCE) == []
    pod["spec"]["containers"][0]["volumeMounts"][-1]["readOnly"] = False
    assert denied_ids(pod, ENFORCE) == ["MW-INT-005"]
    fixed = _patched(pod, PATCH)
    assert fixed["spec"]["containers"][0]["volumeMounts"][-1]["readOnly"] is True


def test_an_empty_dir_counts_only_when_an_init_container_fills_it() -> None:
    scratch = verified_pod(scratch={"emptyDir": {}})
    mount(scratch, "scratch", read_only=False)
    assert denied_ids(scratch, ENFORCE) == []
    filled = verified_pod(download={"emptyDir": {}})
    mount(filled, "download", read_only=True)
    filled["spec"]["initContainers"].insert(
        0,
        {"name": "fetch", "image": "x", "volumeMounts": [{"name": "download", "mountPath": "/d"}]},
    )
    assert denied_ids(filled, ENFORCE) == ["MW-INT-005"]


def test_native_sidecars_and_the_coverage_switch() -> None:
    pod = verified_pod(other={"persistentVolumeClaim": {"claimName": "unsigned"}})
    pod["spec"]["initContainers"].insert(
        0,
        {
            "name": "sidecar",
            "image": "x",
            "restartPolicy": "Always",
            "volumeMounts": [{"name": "other", "mountPath": "/o", "readOnly": True}],
        },
    )
    assert denied_ids(pod, ENFORCE) == ["MW-INT-005"]
    lenient = policy({"integrity": {**SECTION["integrity"], "requireVerifiedModelVolumes": False}})
    assert denied_ids(pod, lenient) == []  # same policy name: the same verifier, no coverage


MODEL_PODS = policy(
    {"integrity": {**SECTION["integrity"], "modelPods": "ModelVolumes"}},
    match={"namespaces": ["serving-*"]},
)


def test_model_pods_are_found_by_what_they_mount_not_by_their_labels() -> None:
    plain = compliant_pod()  # a secret volume only: not a model pod
    assert denied_ids(plain, MODEL_PODS) == []
    unlabelled = compliant_pod()
    unlabelled["metadata"]["labels"] = {}
    unlabelled["spec"]["volumes"].append(
        {"name": "weights", "persistentVolumeClaim": {"claimName": "llama"}}
    )
    mount(unlabelled, "weights", read_only=True)
    found = decide(unlabelled, MODEL_PODS).denials
    assert [f.violation.rule_id for f in found] == ["MW-INT-001"]


def test_verifier_and_key_annotation_names_are_long_and_valid() -> None:
    config = PATCH.integrity
    assert config is not None
    name = config.container_name
    assert name.startswith(VERIFIER_PREFIX)
    assert len(name.removeprefix(VERIFIER_PREFIX)) == 40  # 160 bits, was 32
    assert len(keys_volume(config)["name"]) <= 63
    longest = policy(
        {
            "integrity": {
                **SECTION["integrity"],
                "trustedSigners": [{"name": "s" * 40, "publicKey": KEY}],
            }
        }
    ).integrity
    assert longest is not None
    annotation = key_annotation(longest, longest.signers[0])
    prefix, _, key_name = annotation.partition("/")
    assert prefix == "keys.modelward.io" and len(key_name) <= 63
    assert len(key_name.split(".")[0]) == 20  # 80 bits of the verifier's identity, was 32


def test_policies_with_close_names_get_distinct_verifiers() -> None:
    names = {policy(SECTION, name=f"p{i}").integrity.container_name for i in range(200)}  # type: ignore[union-attr]
    assert len(names) == 200


def test_workload_view_is_unchanged_by_checks() -> None:
    pod = verified_pod(other={"persistentVolumeClaim": {"claimName": "unsigned"}})
    before = repr(pod)
    decide(pod, ENFORCE)
    workload_from_object(pod)
    assert repr(pod) == before
