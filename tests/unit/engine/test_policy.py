"""Policy parsing and matching: schema errors name the field, selection semantics hold."""

from __future__ import annotations

from typing import Any

import pytest

from modelward.engine import Mode, parse_policy
from modelward.engine.facts import NamespaceFacts
from modelward.errors import PolicyError
from tests.unit.engine.builders import compliant_pod, decide, policy, rule_ids


def _raw(spec: dict[str, Any], kind: str = "ClusterModelPolicy") -> dict[str, Any]:
    return {
        "apiVersion": "modelward.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x"},
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"match": {"namespaces": ["a"]}, "isolaton": {}}, "spec", "unknown field"),
        ({"match": {"namespaces": ["a"]}, "mode": "Block"}, "spec.mode", "Block"),
        (
            {"match": {"podSelector": {"matchLabels": {"a": "b"}}}},
            "spec.match",
            "select namespaces",
        ),
        (
            {"match": {"namespaces": ["a"]}, "images": {"requireDigest": "yes"}},
            "spec.images.requireDigest",
            "boolean",
        ),
        (
            {"match": {"namespaces": ["a"]}, "isolation": {"defaultRuntimeClassName": "gvisor"}},
            "spec.isolation.defaultRuntimeClassName",
            "runtimeClassNames",
        ),
        (
            {
                "match": {
                    "namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}
                }
            },
            "spec.match",
            "needs values",
        ),
    ],
)
def test_broken_policies_name_the_field(spec: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy(_raw(spec))
    assert err.value.field == field
    assert words in str(err.value)


def test_wrong_api_version_and_kind() -> None:
    with pytest.raises(PolicyError, match="apiVersion"):
        parse_policy({**_raw({"match": {"namespaces": ["a"]}}), "apiVersion": "modelward.io/v1"})
    with pytest.raises(PolicyError, match="not a modelward policy"):
        parse_policy({**_raw({}), "kind": "Pod"})


def test_section_mode_overrides_policy_mode() -> None:
    p = parse_policy(
        _raw(
            {
                "mode": "Audit",
                "match": {"namespaces": ["a"]},
                "images": {"mode": "Enforce"},
                "secrets": {},
            }
        )
    )
    assert p.images is not None and p.images.mode is Mode.ENFORCE
    assert p.secrets is not None and p.secrets.mode is Mode.AUDIT


def _ns(name: str, **labels: str) -> NamespaceFacts:
    return NamespaceFacts(name, labels)


def test_match_by_namespace_selector_and_glob() -> None:
    p = policy({"images": {}}, match={"namespaceSelector": {"matchLabels": {"tier": "serving"}}})
    assert p.applies_to(_ns("x", tier="serving"), {})
    assert not p.applies_to(_ns("x"), {})
    g = policy({"images": {}}, match={"namespaces": ["serving-*"]})
    assert g.applies_to(_ns("serving-a"), {}) and not g.applies_to(_ns("default"), {})


def test_name_label_is_always_selectable() -> None:
    p = policy(
        {"images": {}},
        match={
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team"]}
                ]
            }
        },
    )
    assert p.applies_to(_ns("team"), {})


def test_pod_selector_only_narrows() -> None:
    p = policy(
        {"images": {}},
        match={"namespaces": ["serving-*"], "podSelector": {"matchLabels": {"app": "model"}}},
    )
    assert p.applies_to(_ns("serving-a"), {"app": "model"})
    assert not p.applies_to(_ns("serving-a"), {"app": "other"})
    assert not p.applies_to(_ns("elsewhere"), {"app": "model"})


def test_exclude() -> None:
    p = policy({"images": {}}, exclude={"namespaces": ["serving-legacy"]})
    assert not p.applies_to(_ns("serving-legacy"), {})
    assert p.applies_to(_ns("serving-new"), {})


def test_namespaced_policy_applies_only_in_its_namespace() -> None:
    p = policy({"images": {}}, kind="ModelPolicy", namespace="serving-a")
    assert p.applies_to(_ns("serving-a"), {})
    assert not p.applies_to(_ns("serving-b"), {})


def test_namespaced_policy_cannot_weaken_a_cluster_policy() -> None:
    strict = policy({"images": {}}, mode="Enforce")
    lax = policy(
        {"images": {"requireDigest": False, "forbiddenTags": []}},
        mode="Audit",
        kind="ModelPolicy",
        namespace="serving-a",
    )
    pod = compliant_pod()
    pod["spec"]["containers"][0]["image"] = "registry.example.com/serving/server:1.0"
    d = decide(pod, strict, lax)
    assert [f.violation.rule_id for f in d.denials] == ["MW-IMG-001"]


def test_policy_outside_its_selection_finds_nothing() -> None:
    p = policy({"images": {}}, match={"namespaces": ["other"]})
    pod = compliant_pod()
    pod["spec"]["containers"][0]["image"] = "nginx"
    assert rule_ids(decide(pod, p)) == []
