"""The chart's webhook configurations against ``modelward.api.webhooks``, the single source.

The rules, paths and side-effect class must be exactly those of ``webhook_rules()`` and
``webhook_configurations()`` (which the test harness registers), so a kind added there and
forgotten in the chart fails here. The namespace selectors are evaluated on sample namespaces
to show the split: fail closed where the enforced label is, fail open elsewhere, never in the
system namespaces or the release namespace.
"""

from __future__ import annotations

from typing import Any

import pytest

from modelward.api.webhooks import (
    ALWAYS_EXCLUDED_NAMESPACES,
    EXCEPTION_WEBHOOK_SUFFIX,
    MUTATE_PATH,
    VALIDATE_PATH,
    cluster_rbac_rules,
    rbac_object_selector,
    webhook_configurations,
    webhook_rules,
)
from modelward.engine.selectors import LabelSelector
from tests.chart.conftest import HelmChart, Rendered

KINDS = {
    "ValidatingWebhookConfiguration": ("validate", VALIDATE_PATH, True),
    "MutatingWebhookConfiguration": ("mutate", MUTATE_PATH, False),
}
ENFORCED = "modelward.io/model-serving"


def reference_configurations() -> dict[str, dict[str, Any]]:
    validating, mutating = webhook_configurations(
        name="reference",
        client_config_for={"validate": {"url": "https://x"}, "mutate": {"url": "https://x"}},
        excluded_namespaces=(),
    )
    return {"ValidatingWebhookConfiguration": validating, "MutatingWebhookConfiguration": mutating}


def reference_webhooks() -> dict[str, dict[str, Any]]:
    """The harness's workload webhooks, built by the single source, keyed by kind."""
    return {kind: c["webhooks"][0] for kind, c in reference_configurations().items()}


def is_exception_hook(hook: dict[str, Any]) -> bool:
    return str(hook["name"]).split(".")[0].endswith(EXCEPTION_WEBHOOK_SUFFIX)


def workload_hooks(configuration: dict[str, Any]) -> dict[str, Any]:
    """The configuration without its exception webhook (those tests are below)."""
    return {
        **configuration,
        "webhooks": [h for h in configuration["webhooks"] if not is_exception_hook(h)],
    }


def namespace_labels(name: str, **labels: str) -> dict[str, str]:
    """A namespace's labels as the API server sets them (the name label is automatic)."""
    return {"kubernetes.io/metadata.name": name, **labels}


def namespaced_hooks(configuration: dict[str, Any]) -> list[dict[str, Any]]:
    """The webhooks that see namespaced objects (``validate-rbac`` sees only cluster-scoped
    ones, to which the API server never applies a namespace selector)."""
    return [
        hook
        for hook in configuration["webhooks"]
        if all(rule["scope"] == "Namespaced" for rule in hook["rules"])
    ]


def matching(configuration: dict[str, Any], labels: dict[str, str]) -> list[str]:
    return [
        hook["name"]
        for hook in namespaced_hooks(configuration)
        if LabelSelector.parse(hook["namespaceSelector"]).matches(labels)
    ]


@pytest.fixture(scope="module")
def rendered(chart: HelmChart) -> Rendered:
    return chart.template()


def test_rules_paths_and_fields_come_from_the_single_source(rendered: Rendered) -> None:
    reference = reference_webhooks()
    for kind, (short, path, exposures) in KINDS.items():
        configuration = rendered.one(kind, "modelward")
        hooks = namespaced_hooks(configuration)
        assert [h["name"] for h in hooks] == [
            f"{short}.modelward.io",
            f"{short}-failopen.modelward.io",
            f"{short}-exceptions.modelward.io",
        ]
        hooks = [h for h in hooks if not is_exception_hook(h)]
        for hook in hooks:
            assert hook["rules"] == webhook_rules(include_exposures=exposures), hook["name"]
            assert hook["clientConfig"]["service"] == {
                "name": "modelward",
                "namespace": "modelward-system",
                "path": path,
                "port": 443,
            }
            for field in ("admissionReviewVersions", "sideEffects", "matchPolicy", "rules"):
                assert hook[field] == reference[kind][field], (hook["name"], field)
            assert hook.get("reinvocationPolicy") == reference[kind].get("reinvocationPolicy")
            assert 1 <= hook["timeoutSeconds"] <= 10


def test_cluster_rbac_objects_have_one_validating_webhook_that_skips_bootstrap_roles(
    rendered: Rendered,
) -> None:
    """ClusterRoles and ClusterRoleBindings (access rules) are judged by ``validate-rbac``,
    exactly as the single source builds it; the API server's bootstrap roles are left alone."""
    validating, _ = webhook_configurations(
        name="reference",
        client_config_for={"validate": {"url": "https://x"}, "mutate": {"url": "https://x"}},
        excluded_namespaces=(),
    )
    reference = next(h for h in validating["webhooks"] if h["name"] == "validate-rbac.modelward.io")
    hooks = {h["name"]: h for h in rendered.one("ValidatingWebhookConfiguration")["webhooks"]}
    hook = hooks["validate-rbac.modelward.io"]
    assert hook["rules"] == reference["rules"] == cluster_rbac_rules()
    assert hook["objectSelector"] == reference["objectSelector"] == rbac_object_selector()
    # Fail open: an unavailable modelward never blocks its own upgrade (its ClusterRole).
    assert hook["failurePolicy"] == reference["failurePolicy"] == "Ignore"
    assert hook["sideEffects"] == "NoneOnDryRun"
    assert hook["clientConfig"]["service"]["path"] == VALIDATE_PATH
    names = [h["name"] for h in rendered.one("MutatingWebhookConfiguration")["webhooks"]]
    assert "validate-rbac.modelward.io" not in names


def test_nodes_leases_csrs_and_deletes_are_never_intercepted(rendered: Rendered) -> None:
    """The deadlock guard: nothing a restarting cluster needs can wait on modelward. The one
    cluster-scoped rule (ClusterRoles and their bindings) skips the bootstrap roles the API
    server writes at start-up."""
    for kind in KINDS:
        for hook in rendered.one(kind)["webhooks"]:
            for rule in hook["rules"]:
                if rule["scope"] != "Namespaced":
                    assert rule["resources"] == ["clusterroles", "clusterrolebindings"]
                    assert hook["objectSelector"] == rbac_object_selector()
                assert set(rule["operations"]) <= {"CREATE", "UPDATE"}
                assert "*" not in rule["resources"] and "*" not in rule["apiGroups"]
                for forbidden in ("nodes", "leases", "certificatesigningrequests", "namespaces"):
                    assert not any(r.split("/")[0] == forbidden for r in rule["resources"])


@pytest.mark.parametrize("release_namespace", ["modelward-system", "security"])
@pytest.mark.parametrize("excluded", [[], ["kube-public", "legacy"]])
def test_system_and_release_namespaces_are_always_excluded(
    chart: HelmChart, release_namespace: str, excluded: list[str]
) -> None:
    """Whatever excludedNamespaces says, the chart keeps its guard namespaces out."""
    rendered = chart.template(
        {"webhook": {"excludedNamespaces": excluded}}, namespace=release_namespace
    )
    guard = {*ALWAYS_EXCLUDED_NAMESPACES, release_namespace, *excluded}
    for kind in KINDS:
        configuration = rendered.one(kind)
        for hook in configuration["webhooks"]:
            expressions = hook["namespaceSelector"]["matchExpressions"]
            names = next(e for e in expressions if e["key"] == "kubernetes.io/metadata.name")
            assert names["operator"] == "NotIn"
            assert set(names["values"]) == guard
        for name in guard:
            # Even a namespace carrying the enforced label is left alone.
            assert matching(configuration, namespace_labels(name, **{ENFORCED: "true"})) == []


def test_fail_closed_only_where_the_enforced_label_is(rendered: Rendered) -> None:
    for kind, (short, _, _) in KINDS.items():
        configuration = workload_hooks(rendered.one(kind))
        policies = {h["name"]: h["failurePolicy"] for h in namespaced_hooks(configuration)}
        assert policies == {
            f"{short}.modelward.io": "Fail",
            f"{short}-failopen.modelward.io": "Ignore",
        }
        # Exactly one webhook per configuration sees each ordinary namespace: the enforced one
        # for labelled namespaces, the fail-open one for the rest (no gap, no double call).
        assert matching(configuration, namespace_labels("serving", **{ENFORCED: "true"})) == [
            f"{short}.modelward.io"
        ]
        for labels in (
            namespace_labels("team-a"),
            namespace_labels("team-b", **{ENFORCED: "false"}),
            namespace_labels("default"),
        ):
            assert matching(configuration, labels) == [f"{short}-failopen.modelward.io"]


def test_custom_enforced_label_and_scope(chart: HelmChart) -> None:
    rendered = chart.template(
        {
            "webhook": {
                "enforcedNamespaceLabel": {"key": "tier", "values": ["prod", "staging"]},
                "namespaceSelector": {
                    "matchExpressions": [{"key": "team", "operator": "In", "values": ["ml"]}]
                },
            }
        }
    )
    configuration = workload_hooks(rendered.one("ValidatingWebhookConfiguration"))
    assert matching(configuration, namespace_labels("a", tier="staging", team="ml")) == [
        "validate.modelward.io"
    ]
    assert matching(configuration, namespace_labels("b", tier="dev", team="ml")) == [
        "validate-failopen.modelward.io"
    ]
    # Outside the scope nothing is intercepted at all.
    assert matching(configuration, namespace_labels("c", tier="prod", team="web")) == []


def test_timeout_is_configurable_and_above_the_internal_deadline(chart: HelmChart) -> None:
    rendered = chart.template(
        {"webhook": {"timeoutSeconds": 3}, "operator": {"deadlineSeconds": 2}}
    )
    for kind in KINDS:
        assert {h["timeoutSeconds"] for h in rendered.one(kind)["webhooks"]} == {3}
    args = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--deadline=2" in args
    refused = chart.attempt({"webhook": {"timeoutSeconds": 2}, "operator": {"deadlineSeconds": 2}})
    assert refused.returncode != 0
    assert "operator.deadlineSeconds (2) must be below webhook.timeoutSeconds (2)" in refused.stderr


def test_exception_webhooks_fail_closed_in_every_intercepted_namespace(
    rendered: Rendered,
) -> None:
    """ModelPolicyExceptions go to their own webhook, Fail everywhere modelward intercepts:
    an outage must not let an exception in unchecked (a forged creator, an over-long life)."""
    reference = reference_configurations()
    for kind, (short, path, _) in KINDS.items():
        configuration = rendered.one(kind)
        hook = next(h for h in configuration["webhooks"] if is_exception_hook(h))
        expected = next(h for h in reference[kind]["webhooks"] if is_exception_hook(h))
        assert hook["name"] == expected["name"] == f"{short}-exceptions.modelward.io"
        assert hook["failurePolicy"] == expected["failurePolicy"] == "Fail"
        assert (
            hook["rules"]
            == expected["rules"]
            == webhook_rules(include_exposures=False, exceptions=True)
        )
        assert hook["clientConfig"]["service"]["path"] == path
        for labels in (
            namespace_labels("serving", **{ENFORCED: "true"}),
            namespace_labels("team-a"),
        ):
            assert f"{short}-exceptions.modelward.io" in matching(configuration, labels)
        for name in ALWAYS_EXCLUDED_NAMESPACES:
            assert matching(configuration, namespace_labels(name)) == []
