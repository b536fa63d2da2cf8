"""The tenant's rules: the built-in ``edit`` aggregation, resolved as the controller does."""

from __future__ import annotations

from typing import Any

import pytest

from modelward_dev.controlplane import ControlPlaneError
from modelward_dev.tenant import resolve_cluster_role_rules


def role(
    name: str,
    labels: dict[str, str] | None = None,
    rules: list[Any] | None = None,
    selectors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": name, "labels": labels or {}}, "rules": rules}
    if selectors is not None:
        body["aggregationRule"] = {"clusterRoleSelectors": selectors}
    return body


PODS = {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}
SECRETS = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
NODES = {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}


def test_aggregation_is_resolved_recursively_and_only_from_matching_roles() -> None:
    roles = [
        role("edit", selectors=[{"matchLabels": {"aggregate-to-edit": "true"}}]),
        role(
            "to-edit",
            {"aggregate-to-edit": "true"},
            [PODS],
            selectors=[{"matchExpressions": [{"key": "nested", "operator": "Exists"}]}],
        ),
        role("nested", {"nested": "x"}, [SECRETS, PODS]),
        role("unrelated", {"aggregate-to-admin": "true"}, [NODES]),
    ]
    assert resolve_cluster_role_rules(roles, "edit") == [PODS, SECRETS]


def test_a_role_without_aggregation_keeps_its_own_rules() -> None:
    assert resolve_cluster_role_rules([role("plain", rules=[NODES])], "plain") == [NODES]


def test_a_missing_role_is_an_error_that_names_it() -> None:
    with pytest.raises(ControlPlaneError, match="'edit'"):
        resolve_cluster_role_rules([], "edit")
