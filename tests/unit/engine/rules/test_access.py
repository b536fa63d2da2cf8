"""MW-ACC-001/002: bindings and role changes judged against the policy's job functions."""

from __future__ import annotations

from typing import Any

from modelward.engine.decision import Mode
from modelward.engine.facts import NamespaceFacts
from modelward.engine.rbac import RbacSnapshot
from modelward.engine.rules.access import access_review, evaluate_binding, evaluate_role
from tests.unit.engine.builders import policy

EXEC_RULE = {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}
SECRETS_RULE = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}
WILDCARD_RULE = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
CONFIGMAPS_RULE = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}

ACCESS = {
    "access": {
        "jobFunctions": [
            {"name": "sre", "groups": ["sre"], "permissions": ["pods/exec", "secrets"]},
            {
                "name": "deployer",
                "serviceAccounts": ["deployer", "ci/*"],
                "permissions": ["workloads"],
            },
        ]
    }
}
NAMESPACES = (NamespaceFacts("serving-a"), NamespaceFacts("serving-b"), NamespaceFacts("other"))


def role(
    name: str, rules: list[dict[str, Any]], namespace: str = "serving-a", **extra: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": rules,
        **extra,
    }


def cluster_role(
    name: str, rules: list[dict[str, Any]], labels: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": labels or {}},
        "rules": rules,
        **extra,
    }


def binding(
    name: str,
    role_kind: str,
    role_name: str,
    *subjects: dict[str, Any],
    namespace: str | None = "serving-a",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding" if namespace else "ClusterRoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name},
        "subjects": list(subjects),
    }


def sa(name: str, namespace: str = "serving-a") -> dict[str, Any]:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def group(name: str) -> dict[str, Any]:
    return {"kind": "Group", "name": name, "apiGroup": "rbac.authorization.k8s.io"}


def judge_binding(
    obj: dict[str, Any],
    *objects: dict[str, Any],
    old: dict[str, Any] | None = None,
    mode: str = "Enforce",
) -> list[str]:
    decision = evaluate_binding(
        obj,
        old,
        snapshot=RbacSnapshot.from_objects(objects),
        namespaces=NAMESPACES,
        policies=[policy(ACCESS, mode=mode)],
    )
    return [f.violation.message for f in decision.findings]


def test_binding_exec_to_a_disallowed_service_account_is_denied() -> None:
    messages = judge_binding(
        binding("b", "Role", "exec", sa("intruder")), role("exec", [EXEC_RULE])
    )
    assert len(messages) == 1
    assert "ServiceAccount serving-a/intruder" in messages[0] and "pods/exec" in messages[0]


def test_binding_exec_to_an_allowed_group_is_admitted() -> None:
    assert (
        judge_binding(binding("b", "Role", "exec", group("sre")), role("exec", [EXEC_RULE])) == []
    )


def test_job_function_permissions_are_per_function() -> None:
    # The deployer may write workloads, not exec.
    assert judge_binding(binding("b", "Role", "exec", sa("deployer")), role("exec", [EXEC_RULE]))
    writes = {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create"]}
    assert judge_binding(binding("b", "Role", "w", sa("deployer")), role("w", [writes])) == []
    assert judge_binding(binding("b", "Role", "w", sa("x", "ci")), role("w", [writes])) == []


def test_a_role_without_sensitive_permissions_binds_anyone() -> None:
    assert judge_binding(binding("b", "Role", "cm", sa("x")), role("cm", [CONFIGMAPS_RULE])) == []


def test_wildcard_cluster_role_binding_breaks_every_selected_namespace_and_permission() -> None:
    messages = judge_binding(
        binding("all", "ClusterRole", "god", sa("x", "tools"), namespace=None),
        cluster_role("god", [WILDCARD_RULE]),
    )
    assert len(messages) == 1  # one readable finding per subject and binding
    assert (
        "the sensitive permissions persistentvolumeclaims, pods/attach, pods/ephemeralcontainers, "
        "pods/exec, pods/portforward, secrets, workloads (through ClusterRole god) in "
        "namespaces serving-a, serving-b," in messages[0]
    )


def test_aggregated_cluster_role_is_resolved_at_binding_time() -> None:
    messages = judge_binding(
        binding("b", "ClusterRole", "agg", sa("x")),
        cluster_role(
            "agg", [], aggregationRule={"clusterRoleSelectors": [{"matchLabels": {"agg": "true"}}]}
        ),
        cluster_role("part", [SECRETS_RULE], labels={"agg": "true"}),
    )
    assert len(messages) == 1 and "secrets" in messages[0]


def test_update_is_judged_on_the_subjects_it_adds() -> None:
    exec_role = role("exec", [EXEC_RULE])
    old = binding("b", "Role", "exec", sa("legacy"))
    same = judge_binding(binding("b", "Role", "exec", sa("legacy")), exec_role, old=old)
    assert same == []
    added = judge_binding(binding("b", "Role", "exec", sa("legacy"), sa("new")), exec_role, old=old)
    assert len(added) == 1 and "serving-a/new" in added[0]


def test_built_in_subjects_are_never_violations() -> None:
    messages = judge_binding(
        binding("b", "Role", "exec", group("system:masters"), sa("ctrl", "kube-system")),
        role("exec", [EXEC_RULE]),
    )
    assert messages == []


def test_broad_system_groups_are_not_built_in() -> None:
    assert judge_binding(
        binding("b", "Role", "exec", group("system:authenticated")), role("exec", [EXEC_RULE])
    )


def test_unselected_namespace_is_not_judged() -> None:
    obj = binding("b", "Role", "exec", sa("x", "other"), namespace="other")
    assert judge_binding(obj, role("exec", [EXEC_RULE], namespace="other")) == []


def test_audit_mode_findings_do_not_block() -> None:
    decision = evaluate_binding(
        binding("b", "Role", "exec", sa("x")),
        None,
        snapshot=RbacSnapshot.from_objects([role("exec", [EXEC_RULE])]),
        namespaces=NAMESPACES,
        policies=[policy(ACCESS, mode="Audit")],
    )
    assert decision.findings and not decision.denials
    assert {f.mode for f in decision.findings} == {Mode.AUDIT}


def judge_role(
    obj: dict[str, Any], *objects: dict[str, Any], old: dict[str, Any] | None = None
) -> list[str]:
    decision = evaluate_role(
        obj,
        old,
        snapshot=RbacSnapshot.from_objects(objects),
        namespaces=NAMESPACES,
        policies=[policy(ACCESS)],
    )
    return [f.violation.message for f in decision.findings]


def test_widening_a_bound_role_is_denied() -> None:
    before = role("helper", [CONFIGMAPS_RULE])
    bound = binding("b", "Role", "helper", sa("intruder"))
    after = role("helper", [CONFIGMAPS_RULE, EXEC_RULE])
    messages = judge_role(after, before, bound, old=before)
    assert len(messages) == 1 and "pods/exec" in messages[0] and "intruder" in messages[0]


def test_joining_a_bound_aggregated_role_is_denied() -> None:
    agg = cluster_role(
        "agg", [], aggregationRule={"clusterRoleSelectors": [{"matchLabels": {"agg": "true"}}]}
    )
    bound = binding("b", "ClusterRole", "agg", sa("intruder"))
    joining = cluster_role("joins", [EXEC_RULE], labels={"agg": "true"})
    messages = judge_role(joining, agg, bound)
    assert len(messages) == 1 and "through RoleBinding serving-a/b" in messages[0]


def test_role_change_for_allowed_subjects_only_is_admitted() -> None:
    before = role("helper", [CONFIGMAPS_RULE])
    bound = binding("b", "Role", "helper", group("sre"))
    assert judge_role(role("helper", [EXEC_RULE]), before, bound, old=before) == []


def test_access_review_lists_holders_and_marks_violations() -> None:
    snapshot = RbacSnapshot.from_objects(
        [
            role("exec", [EXEC_RULE]),
            role(
                "named",
                [
                    {
                        "apiGroups": [""],
                        "resources": ["secrets"],
                        "verbs": ["get"],
                        "resourceNames": ["k"],
                    }
                ],
            ),
            binding("ok", "Role", "exec", group("sre")),
            binding("bad", "Role", "exec", sa("intruder")),
            binding("named", "Role", "named", sa("reader")),
        ]
    )
    rows = access_review(snapshot, NAMESPACES, [policy(ACCESS)])
    by_subject = {(r.subject, r.permission): r for r in rows}
    assert by_subject[("sre", "pods/exec")].violates == ()
    assert by_subject[("sre", "pods/exec")].job_function == "sre"
    assert by_subject[("intruder", "pods/exec")].violates == ("ClusterModelPolicy p",)
    assert by_subject[("intruder", "pods/exec")].verbs == ("create",)
    assert by_subject[("reader", "secrets")].resource_names == ("k",)
    assert {r.namespace for r in rows} == {"serving-a"}
