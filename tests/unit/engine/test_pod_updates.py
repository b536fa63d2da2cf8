"""Pod UPDATEs (issue 9 #1): what an update introduces is fixed only where the update can carry
the fix, denied otherwise (Patch mode included), and the model declaration, keys and verifier
stay as admitted (MW-INT-006)."""

from __future__ import annotations

import copy
from typing import Any

from modelward.engine import evaluate_pod_update
from modelward.engine.rules.integrity import KEY_ANNOTATION_PREFIX, MODEL_PATH
from modelward.engine.workloads import workload_from_object
from tests.unit.engine.builders import DIGEST, facts, policy, public_key_pem
from tests.unit.engine.rules.test_integrity_coverage import SECTION, verified_pod

ISOLATION_AND_INTEGRITY = {**SECTION, "isolation": {"requireDefaultDenyNetworkPolicy": False}}
PATCH = policy(ISOLATION_AND_INTEGRITY, mode="Patch")
AUDIT = policy(ISOLATION_AND_INTEGRITY, mode="Audit")
ATTACKER_KEY = public_key_pem()


def update(old: dict[str, Any], new: dict[str, Any], *policies: Any) -> Any:
    return evaluate_pod_update(
        workload_from_object(old), workload_from_object(new), facts(), policies or (PATCH,)
    )


def denied(decision: Any) -> list[str]:
    return sorted(f.violation.rule_id for f in decision.denials)


def admitted() -> dict[str, Any]:
    pod = verified_pod()
    pod["spec"]["schedulingGates"] = [{"name": "example.com/hold"}]
    return pod


def test_swapping_the_trusted_key_annotation_is_denied_in_patch_mode() -> None:
    old = admitted()
    new = copy.deepcopy(old)
    key = next(k for k in new["metadata"]["annotations"] if k.startswith(KEY_ANNOTATION_PREFIX))
    new["metadata"]["annotations"][key] = ATTACKER_KEY
    d = update(old, new)
    assert denied(d) == ["MW-INT-004", "MW-INT-006"] and not d.fixes
    assert any(key in f.violation.message for f in d.denials)


def test_changing_the_verifier_image_is_denied_in_patch_mode() -> None:
    old = admitted()
    new = copy.deepcopy(old)
    new["spec"]["initContainers"][-1]["image"] = f"evil.example.com/verify@{DIGEST}"
    assert denied(update(old, new)) == ["MW-INT-004", "MW-INT-006"]


def test_changing_the_model_declaration_is_denied() -> None:
    old = admitted()
    new = copy.deepcopy(old)
    new["metadata"]["annotations"][MODEL_PATH] = "elsewhere"
    assert "MW-INT-006" in denied(update(old, new))


def test_immutability_holds_even_when_the_pod_already_differed_from_the_policy() -> None:
    """After a key rotation the pod's verifier differs from the policy already; a further
    change is not "new" by message, but it is still a change of what was admitted."""
    old = admitted()
    key = next(k for k in old["metadata"]["annotations"] if k.startswith(KEY_ANNOTATION_PREFIX))
    old["metadata"]["annotations"][key] = public_key_pem()  # the previous release key
    new = copy.deepcopy(old)
    new["metadata"]["annotations"][key] = ATTACKER_KEY
    assert denied(update(old, new)) == ["MW-INT-006"]


def test_an_integrity_policy_that_stops_selecting_the_pod_still_holds_it() -> None:
    narrowed = policy(
        ISOLATION_AND_INTEGRITY,
        mode="Patch",
        match={"namespaces": ["serving-*"], "podSelector": {"matchLabels": {"app": "model"}}},
    )
    old = admitted()
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"app": "renamed"}
    new["spec"]["initContainers"][-1]["image"] = f"evil.example.com/verify@{DIGEST}"
    assert denied(update(old, new, narrowed)) == ["MW-INT-006"]


def _debug_container(**security: Any) -> dict[str, Any]:
    return {
        "name": "debug",
        "image": f"registry.example.com/serving/debug@{DIGEST}",
        "volumeMounts": [{"name": "models", "mountPath": "/m"}],
        "securityContext": {"allowPrivilegeEscalation": False, **security},
    }


def test_a_new_ephemeral_container_is_fixed_in_place_in_patch_mode() -> None:
    old = admitted()
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = [_debug_container()]
    d = update(old, new)
    assert d.allowed
    fixed = sorted(f.violation.rule_id for f in d.fixes)
    assert fixed == ["MW-INT-002", "MW-ISO-004"]
    paths = {r.path[:2] for f in d.fixes for r in f.violation.remedies}
    assert paths == {("ephemeralContainers", 0)}


def test_a_fix_the_update_cannot_carry_is_denied_in_patch_mode() -> None:
    old = admitted()
    new = copy.deepcopy(old)
    # runAsUser 0 on the new container: MW-ISO-002's fix is on the pod's securityContext,
    # which a Pod UPDATE cannot change.
    new["spec"]["ephemeralContainers"] = [
        _debug_container(capabilities={"drop": ["ALL"]}, runAsNonRoot=False)
    ]
    d = update(old, new)
    assert "MW-ISO-002" in denied(d)


def test_audit_mode_warns_and_never_blocks_an_update() -> None:
    old = admitted()
    new = copy.deepcopy(old)
    new["spec"]["initContainers"][-1]["image"] = f"evil.example.com/verify@{DIGEST}"
    d = update(old, new, AUDIT)
    assert d.allowed and "MW-INT-006" in [f.violation.rule_id for f in d.warnings]


def test_an_update_that_changes_nothing_protected_passes() -> None:
    old = admitted()
    new = copy.deepcopy(old)
    new["metadata"]["labels"]["team"] = "a"
    new["spec"]["schedulingGates"] = []
    assert update(old, new).findings == ()
