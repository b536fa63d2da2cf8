"""Which verifier containers the operator may believe: exactly what a selecting policy injects."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelward.engine.exact import differs
from modelward.engine.facts import NamespaceFacts
from modelward.engine.verifiers import pod_verifiers
from modelward.engine.workloads import workload_from_object
from tests.unit.engine.builders import decide, policy, rule_ids
from tests.unit.engine.rules.test_integrity import (
    ENFORCE,
    KEYS,
    PATCH,
    SECTION,
    _patched,
    model_pod,
)

NAMESPACE = NamespaceFacts("serving-a", {}, {})


def _injected() -> dict[str, Any]:
    """A pod as the mutating webhook leaves it, with the API server's defaults added."""
    pod = _patched(model_pod(), PATCH)
    for container in pod["spec"]["initContainers"]:
        container["terminationMessagePath"] = "/dev/termination-log"
        container["imagePullPolicy"] = "IfNotPresent"
    keys = next(v for v in pod["spec"]["volumes"] if v["name"].endswith("-keys"))
    for item in keys["projected"]["sources"][0]["downwardAPI"]["items"]:
        item["fieldRef"]["apiVersion"] = "v1"
    return pod


def _verifiers(pod: dict[str, Any], *policies: Any) -> Any:
    return pod_verifiers(workload_from_object(pod), NAMESPACE, policies or (PATCH,))


def _another_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _name() -> str:
    assert PATCH.integrity is not None
    return PATCH.integrity.container_name


def test_the_injected_verifier_is_recognised_with_its_policy() -> None:
    found = _verifiers(_injected())
    assert list(found.injected) == [_name()] and found.mismatches == {}
    verifier = found.injected[_name()]
    assert verifier.policy == PATCH.ref and verifier.policy_label == str(PATCH.ref)


def _verifier(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["initContainers"] if c["name"] == _name())


def _command(pod: dict[str, Any]) -> None:
    _verifier(pod)["command"] = ["/bin/sh", "-c", "echo forged > /dev/termination-log"]


def _env(pod: dict[str, Any]) -> None:
    _verifier(pod)["env"] = [{"name": "MODELWARD_SKIP", "value": "1"}]


def _image(pod: dict[str, Any]) -> None:
    _verifier(pod)["image"] = "attacker.example.com/verify:latest"


def _argument(pod: dict[str, Any]) -> None:
    _verifier(pod)["args"][-1] = "/tmp/forged"


def _message_path(pod: dict[str, Any]) -> None:
    _verifier(pod)["terminationMessagePath"] = "/modelward/model/forged.json"


def _extra_mount(pod: dict[str, Any]) -> None:
    _verifier(pod)["volumeMounts"].append({"name": "tls", "mountPath": "/modelward/keys/x"})


def _key_annotation(pod: dict[str, Any]) -> None:
    for key in pod["metadata"]["annotations"]:
        if key.startswith("keys.modelward.io/"):
            pod["metadata"]["annotations"][key] = "attacker key"


def _keys_volume(pod: dict[str, Any]) -> None:
    keys = next(v for v in pod["spec"]["volumes"] if v["name"].endswith("-keys"))
    keys["projected"]["sources"].append({"configMap": {"name": "attacker-ca"}})


def _later_writer(pod: dict[str, Any]) -> None:
    pod["spec"]["initContainers"].append(
        {"name": "rewrite", "image": "x", "volumeMounts": [{"name": "models", "mountPath": "/m"}]}
    )


def _writing_sidecar(pod: dict[str, Any]) -> None:
    pod["spec"]["initContainers"].insert(
        0,
        {
            "name": "sidecar",
            "image": "x",
            "restartPolicy": "Always",
            "volumeMounts": [{"name": "models", "mountPath": "/m"}],
        },
    )


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (_command, "command is set"),
        (_env, "env is set"),
        (_image, "image is 'attacker.example.com"),
        (_argument, "is '/tmp/forged', the policy injects"),
        (_message_path, "terminationMessagePath is set"),
        (_extra_mount, "volumeMounts is"),
        (_key_annotation, "does not hold the policy's key 'release'"),
        (_keys_volume, "not the 1 items injected"),
        (_later_writer, "init container rewrite can change the model"),
        (_writing_sidecar, "init container sidecar can change the model"),
    ],
)
def test_any_difference_from_the_injected_verifier_is_a_mismatch(tamper: Any, problem: str) -> None:
    """The attacks a pod author has: keep the verifier's name, change what it runs or checks."""
    pod = _injected()
    tamper(pod)
    found = _verifiers(pod)
    assert found.injected == {}
    assert problem in found.mismatches[_name()]


def test_a_pod_no_integrity_policy_selects_has_no_verifier_to_believe() -> None:
    pod = _injected()
    pod["metadata"]["namespace"] = "elsewhere"
    other = NamespaceFacts("elsewhere", {}, {})
    found = pod_verifiers(workload_from_object(pod), other, (PATCH,))
    assert found.injected == {} and found.mismatches == {}


def test_a_policy_changed_since_injection_no_longer_vouches_for_the_old_verifier() -> None:
    rotated = copy.deepcopy(SECTION)
    rotated["integrity"]["trustedSigners"][0]["publicKey"] = _another_key()
    found = _verifiers(_injected(), policy(rotated, mode="Patch", keys=KEYS))
    assert found.injected == {} and "release" in found.mismatches[_name()]


def test_two_policies_each_vouch_only_for_their_own_verifier() -> None:
    other = policy(SECTION, mode="Patch", name="q", keys=KEYS)
    pod = _patched(model_pod(), PATCH, other)
    assert sorted(_verifiers(pod, PATCH, other).injected) == sorted(
        [p.integrity.container_name for p in (PATCH, other) if p.integrity is not None]
    )


def test_differs_allows_only_the_api_servers_defaults() -> None:
    expected = {"a": [1, {"b": "c"}]}
    assert differs({"a": [1, {"b": "c", "apiVersion": "v1"}]}, expected, where="x") is None
    assert differs({"a": [1, {"b": "c", "apiVersion": "v2"}]}, expected, where="x")
    assert differs({"a": [1, {"b": "c"}], "imagePullPolicy": "Always"}, expected, where="x") is None
    assert differs({"a": [True, {"b": "c"}]}, expected, where="x")  # a bool is not 1
    assert differs({"a": [1]}, expected, where="x") == "x.a is [1], not the 2 items injected"


@pytest.mark.parametrize("tamper", [_command, _env, _message_path])
def test_the_webhook_refuses_a_verifier_with_anything_added(tamper: Any) -> None:
    """The same exactness at admission: a verifier whose image and arguments are right but
    whose ``command`` (or env, or message path) is the author's would never verify anything."""
    pod = _injected()
    tamper(pod)
    assert "MW-INT-004" in rule_ids(decide(pod, ENFORCE))
    repaired = _patched(pod, PATCH)
    assert rule_ids(decide(repaired, PATCH)) == []
    assert _verifiers(repaired).injected
