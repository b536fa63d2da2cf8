"""RBAC resolution as the authorizer does it: wildcards, subresources, names, aggregation."""

from __future__ import annotations

from typing import Any

import pytest

from modelward.engine.rbac import (
    SENSITIVE,
    Atom,
    Principal,
    RbacSnapshot,
    Rule,
    parse_binding,
    parse_role,
    parse_subject,
)

EXEC = Atom("create", "", "pods", "exec")
GET_SECRET = Atom("get", "", "secrets")
CREATE_DEPLOYMENT = Atom("create", "apps", "deployments")


def rule(
    verbs: list[str], resources: list[str], groups: list[str] | None = None, **extra: Any
) -> Rule:
    return Rule.parse(
        {"verbs": verbs, "resources": resources, "apiGroups": groups or [""], **extra}
    )


@pytest.mark.parametrize(
    ("raw", "atom", "expected"),
    [
        (rule(["create"], ["pods/exec"]), EXEC, True),
        (rule(["*"], ["pods/exec"]), EXEC, True),
        (rule(["create"], ["*"]), EXEC, True),
        (rule(["create"], ["*/exec"]), EXEC, True),
        (rule(["create"], ["pods/*"]), EXEC, False),  # not a wildcard in RBAC
        (rule(["create"], ["pods"]), EXEC, False),  # the pod is not its exec subresource
        (rule(["create"], ["pods/exec"], ["apps"]), EXEC, False),
        (rule(["create"], ["pods/exec"], ["*"]), EXEC, True),
        (rule(["get"], ["pods/exec"]), EXEC, False),
        (rule(["get"], ["*/exec"]), GET_SECRET, False),  # */x never matches a whole resource
        (rule(["create"], ["deployments"], ["apps"]), CREATE_DEPLOYMENT, True),
        (rule(["create"], ["deployments"]), CREATE_DEPLOYMENT, False),
    ],
)
def test_rule_matching_is_the_authorizers(raw: Rule, atom: Atom, expected: bool) -> None:
    assert raw.allows(atom) is expected


def test_resource_names_restrict_to_named_requests() -> None:
    named = rule(["get"], ["secrets"], resourceNames=["model-key"])
    assert not named.allows(GET_SECRET)  # a request without a name (list, or create)
    assert named.allows(GET_SECRET, "model-key")
    assert not named.allows(GET_SECRET, "other")


def test_roles_are_compacted_to_sensitive_rules() -> None:
    role = parse_role(
        {
            "kind": "Role",
            "metadata": {"name": "r", "namespace": "serving-a"},
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]},
                {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]},
            ],
        }
    )
    assert [sorted(r.resources) for r in role.rules] == [["pods/exec"]]


def test_service_account_spelled_as_user_is_the_service_account() -> None:
    as_user = parse_subject({"kind": "User", "name": "system:serviceaccount:a:ci"}, "x")
    as_sa = parse_subject({"kind": "ServiceAccount", "name": "ci", "namespace": "a"}, "x")
    assert as_user == as_sa
    defaulted = parse_subject({"kind": "ServiceAccount", "name": "ci"}, "serving-a")
    assert defaulted is not None and defaulted.namespace == "serving-a"


def _cluster_role(
    name: str, rules: list[dict[str, Any]], labels: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    meta = {"name": name, "labels": labels or {}}
    return {"kind": "ClusterRole", "metadata": meta, "rules": rules, **extra}


def _binding(
    kind: str,
    name: str,
    role_kind: str,
    role: str,
    subjects: list[dict[str, Any]],
    namespace: str = "",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "kind": kind,
        "metadata": meta,
        "roleRef": {"kind": role_kind, "name": role},
        "subjects": subjects,
    }


EXEC_RULE = {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}


def test_aggregated_cluster_roles_grant_their_sources_rules_recursively() -> None:
    snapshot = RbacSnapshot.from_objects(
        [
            _cluster_role(
                "top",
                [],
                aggregationRule={"clusterRoleSelectors": [{"matchLabels": {"to-top": "true"}}]},
            ),
            _cluster_role(
                "middle",
                [],
                labels={"to-top": "true"},
                aggregationRule={"clusterRoleSelectors": [{"matchLabels": {"to-middle": "true"}}]},
            ),
            _cluster_role("leaf", [EXEC_RULE], labels={"to-middle": "true"}),
        ]
    )
    assert EXEC in {g.atom for g in snapshot.grants(("ClusterRole", "", "top"))}
    assert snapshot.aggregating(("ClusterRole", "", "leaf")) == {
        ("ClusterRole", "", "leaf"),
        ("ClusterRole", "", "middle"),
        ("ClusterRole", "", "top"),
    }


def test_aggregated_role_matching_itself_terminates() -> None:
    loop = _cluster_role(
        "loop",
        [EXEC_RULE],
        labels={"x": "1"},
        aggregationRule={"clusterRoleSelectors": [{"matchLabels": {"x": "1"}}]},
    )
    snapshot = RbacSnapshot.from_objects([loop])
    assert snapshot.rules_of(("ClusterRole", "", "loop"))


def test_cluster_role_binding_counts_in_every_namespace_role_binding_in_its_own() -> None:
    alice = {"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}
    snapshot = RbacSnapshot.from_objects(
        [
            _cluster_role("exec", [EXEC_RULE]),
            _binding("ClusterRoleBinding", "everywhere", "ClusterRole", "exec", [alice]),
            _binding(
                "RoleBinding",
                "here",
                "ClusterRole",
                "exec",
                [{"kind": "Group", "name": "sre"}],
                "serving-a",
            ),
        ]
    )
    alice_p = Principal("alice")
    sre = Principal("bob", frozenset({"sre"}))
    assert snapshot.principal_can(alice_p, "anywhere", EXEC)
    assert snapshot.principal_can(sre, "serving-a", EXEC)
    assert not snapshot.principal_can(sre, "serving-b", EXEC)
    assert snapshot.principal_can(Principal("root", frozenset({"system:masters"})), "x", EXEC)


def test_a_role_binding_grants_its_own_namespaces_role_only() -> None:
    role = {"kind": "Role", "metadata": {"name": "r", "namespace": "a"}, "rules": [EXEC_RULE]}
    binding = parse_binding(
        _binding("RoleBinding", "b", "Role", "r", [{"kind": "User", "name": "u"}], "b")
    )
    snapshot = RbacSnapshot([parse_role(role)], [binding])
    assert not snapshot.principal_can(Principal("u"), "b", EXEC)


def test_every_sensitive_permission_has_requests() -> None:
    assert all(SENSITIVE.values())
    assert Atom("get", "", "pods", "exec") in SENSITIVE["pods/exec"]  # WebSocket upgrades
