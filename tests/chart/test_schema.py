"""values.schema.json (and the templates' cross-field checks) refuse bad values, saying where.

Helm validates values against the schema on template, install, upgrade and lint, so a typo or
an impossible setting fails before anything reaches the cluster. Each case names the path of
the bad value and what is allowed, which is what a user needs to fix it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.chart.conftest import CHART_DIR, HelmChart

BAD_VALUES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "unknown failurePolicy": (
        {"webhook": {"failurePolicy": "Sometimes"}},
        ["/webhook/failurePolicy", "'Fail', 'Ignore'"],
    ),
    "typo at the top level": ({"replicas": 3}, ["additional properties 'replicas' not allowed"]),
    "typo in a section": (
        {"webhook": {"timeout": 5}},
        ["/webhook", "additional properties 'timeout' not allowed"],
    ),
    "timeout above the API server's maximum": (
        {"webhook": {"timeoutSeconds": 60}},
        ["/webhook/timeoutSeconds", "maximum: got 60, want 30"],
    ),
    "unknown certificate mode": (
        {"certificates": {"mode": "vault"}},
        ["/certificates/mode", "'operator', 'certManager', 'files'"],
    ),
    "files mode without its Secret and CA": (
        {"certificates": {"mode": "files"}},
        ["/certificates/secretName", "/certificates/files/caBundle"],
    ),
    "digest that is not one": (
        {"image": {"digest": "latest"}},
        ["/image/digest", "does not match pattern"],
    ),
    "zero replicas": ({"replicaCount": 0}, ["/replicaCount", "minimum: got 0, want 1"]),
    "replicas as text": ({"replicaCount": "two"}, ["/replicaCount", "want integer"]),
    "enforced label without values": (
        {"webhook": {"enforcedNamespaceLabel": {"key": "tier", "values": []}}},
        ["/webhook/enforcedNamespaceLabel/values", "minItems"],
    ),
    "selector operator that does not exist": (
        {
            "webhook": {
                "namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Like"}]}
            }
        },
        ["/webhook/namespaceSelector/matchExpressions/0/operator"],
    ),
    "invalid label key": (
        {"webhook": {"enforcedNamespaceLabel": {"key": "bad key!", "values": ["x"]}}},
        ["/webhook/enforcedNamespaceLabel/key", "does not match pattern"],
    ),
    "log level": ({"operator": {"logLevel": "verbose"}}, ["/operator/logLevel"]),
    "audit interval too short": (
        {"operator": {"auditIntervalSeconds": 5}},
        ["/operator/auditIntervalSeconds", "value must be 0", "minimum: got 5, want 10"],
    ),
}
#: Cross-field checks done by the templates (``fail``): template, install and upgrade refuse
#: them; ``helm lint`` only logs a template's ``fail`` by design, so it is not asked here.
BAD_COMBINATIONS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "a PDB that would block every drain": (
        {"replicaCount": 2, "podDisruptionBudget": {"minAvailable": 2}},
        ["podDisruptionBudget.minAvailable (2) must be below replicaCount (2)"],
    ),
    "deadline not below the webhook timeout": (
        {"operator": {"deadlineSeconds": 5}},
        ["operator.deadlineSeconds (5) must be below webhook.timeoutSeconds (5)"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_bad_values_are_refused_with_a_clear_message(chart: HelmChart, case: str) -> None:
    values, expected = BAD_VALUES[case]
    result = chart.attempt(values)
    assert result.returncode != 0, f"helm accepted {values}"
    for text in expected:
        assert text in result.stderr, f"{text!r} not in:\n{result.stderr}"
    lint = chart.lint(values)
    assert lint.returncode != 0, f"helm lint accepted {values}"


@pytest.mark.parametrize("case", list(BAD_COMBINATIONS))
def test_bad_combinations_are_refused_with_a_clear_message(chart: HelmChart, case: str) -> None:
    values, expected = BAD_COMBINATIONS[case]
    result = chart.attempt(values)
    assert result.returncode != 0, f"helm accepted {values}"
    for text in expected:
        assert text in result.stderr, f"{text!r} not in:\n{result.stderr}"


def test_schema_declares_and_describes_every_value() -> None:
    """Every key of values.yaml is declared in the schema, and every value the schema declares
    has a description (helm's error names the path; the description says what belongs there)."""
    import yaml

    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())

    def walk_values(value: Any, node: dict[str, Any], path: str) -> None:
        if not isinstance(value, dict) or "properties" not in node:
            return
        for key, child in value.items():
            assert key in node["properties"], f"{path}{key} is not in values.schema.json"
            walk_values(child, node["properties"][key], f"{path}{key}.")

    undescribed: list[str] = []

    def walk_schema(node: dict[str, Any], path: str) -> None:
        for key, child in (node.get("properties") or {}).items():
            if not child.get("description"):
                undescribed.append(f"{path}{key}")
            walk_schema(child, f"{path}{key}.")

    walk_values(defaults, schema, "")
    walk_schema(schema, "")
    assert undescribed == []
