"""The fail-open webhooks follow the policies: what is skipped, what is never touched."""

from __future__ import annotations

import asyncio
import copy
import itertools
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from modelward.controller.scope import (
    FAIL_OPEN_SUFFIX,
    MAX_CONDITIONS,
    MAX_EXCLUDED,
    SCOPE_CONDITION,
    WIDE,
    Scope,
    WebhookScope,
    narrowed_conditions,
    scope_patch,
    skipped_names,
    unselected_namespaces,
)
from modelward.engine.facts import NamespaceFacts
from modelward.engine.selectors import LabelSelector
from modelward.errors import PolicyError
from modelward.state import ClusterState, PolicyEntry
from tests.unit.engine.builders import policy

ISOLATION: dict[str, Any] = {"isolation": {}}
NAME_LABEL = "kubernetes.io/metadata.name"
ENFORCED = {"key": "modelward.io/model-serving", "operator": "NotIn", "values": ["true"]}
CHART_SELECTOR: dict[str, Any] = {
    "matchExpressions": [
        {"key": NAME_LABEL, "operator": "NotIn", "values": ["kube-system", "modelward"]},
        ENFORCED,
    ]
}


def entries(*policies: Any, error: bool = False) -> dict[Any, PolicyEntry]:
    out = {
        (p.ref.kind, p.ref.namespace, p.ref.name): PolicyEntry(p, None, 1, "1") for p in policies
    }
    if error:
        out[("ClusterModelPolicy", None, "broken")] = PolicyEntry(
            None, PolicyError("bad", policy="broken", field="spec.match", fix="fix"), 1, "2"
        )
    return out


MODELS = {"namespaceSelector": {"matchLabels": {"tier": "models"}}}
NO_SKIP = {"namespaceSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}}


def ns(name: str, **labels: str) -> NamespaceFacts:
    return NamespaceFacts(name=name, labels=labels)


NAMESPACES = {
    n.name: n
    for n in (
        ns("serving-a"),
        ns("team-x", tier="models"),
        ns("team-y", tier="models", skip="yes"),
        ns("other"),
        ns("tenant", **{"modelward.io/model-serving": "true"}),
        ns("own"),
    )
}


def test_only_namespaces_no_policy_may_govern_are_skipped() -> None:
    policies = entries(
        policy(ISOLATION, name="by-name"),  # serving-*
        policy(
            ISOLATION,
            name="by-label",
            match=MODELS,
            exclude={"namespaceSelector": {"matchLabels": {"skip": "yes"}}},
        ),
        policy(
            ISOLATION,
            name="narrowed",
            kind="ModelPolicy",
            namespace="other",
            exclude={"podSelector": {"matchLabels": {"app": "x"}}},
        ),
        policy(ISOLATION, name="local", kind="ModelPolicy", namespace="own"),
    )
    scope = unselected_namespaces(policies, NAMESPACES.values(), ready=True)
    # A pod selector narrows pods, never a whole namespace: "other" is still reviewed.
    assert scope.validate == {"team-y", "tenant"}


def test_mutation_is_skipped_where_no_patch_mode_section_selects() -> None:
    policies = entries(
        policy(ISOLATION, name="enforce", match={"namespaces": ["*"]}),
        policy({"secrets": {"mode": "Patch"}}, name="section", match={"namespaces": ["team-x"]}),
        policy(ISOLATION, mode="Patch", name="patch", kind="ModelPolicy", namespace="own"),
    )
    scope = unselected_namespaces(policies, NAMESPACES.values(), ready=True)
    assert scope.validate == frozenset()
    assert scope.mutate == set(NAMESPACES) - {"team-x", "own"}


def test_nothing_is_skipped_before_the_state_is_loaded_or_with_a_policy_that_failed() -> None:
    policies = entries(policy(ISOLATION))
    assert unselected_namespaces(policies, NAMESPACES.values(), ready=False) == WIDE
    broken = entries(policy(ISOLATION), error=True)
    assert unselected_namespaces(broken, NAMESPACES.values(), ready=True) == WIDE


def test_no_policies_skips_every_known_namespace() -> None:
    scope = unselected_namespaces({}, NAMESPACES.values(), ready=True)
    assert scope.validate == scope.mutate == set(NAMESPACES)


def listed(conditions: list[dict[str, Any]]) -> list[str] | None:
    """The names the operator's condition skips, read back from its CEL; None without it."""
    ours = [c for c in conditions if c["name"] == SCOPE_CONDITION]
    if not ours:
        return None
    expression = ours[0]["expression"]
    assert expression.startswith("!(request.namespace in [") and expression.endswith("])")
    inner = expression[len("!(request.namespace in [") : -2]
    return [name.strip('"') for name in inner.split(", ")] if inner else []


def called(hook: dict[str, Any], namespace: NamespaceFacts) -> bool:
    """Whether the API server calls ``hook`` for ``namespace`` (selector, then condition)."""
    selector = LabelSelector.parse(hook.get("namespaceSelector") or {})
    names = listed(hook.get("matchConditions") or []) or []
    return selector.matches(namespace.selector_labels()) and namespace.name not in names


USER_CONDITION = {"name": "not-leases", "expression": "request.resource.resource != 'leases'"}


def test_the_condition_keeps_the_users_and_lists_only_names_the_selector_would_call() -> None:
    selector = {"matchLabels": {"team": "ml"}, **copy.deepcopy(CHART_SELECTOR)}
    namespaces = {
        "a": ns("a", team="ml"),
        "b": ns("b", team="web"),  # the chart's selector never calls it anyway
        "kube-system": ns("kube-system", team="ml"),
        "tenant": ns("tenant", team="ml", **{"modelward.io/model-serving": "true"}),
    }
    hook = {"namespaceSelector": selector, "matchConditions": [USER_CONDITION]}
    conditions = narrowed_conditions(hook, frozenset(namespaces), namespaces)
    assert conditions[0] == USER_CONDITION and listed(conditions) == ["a"]
    # Narrowing again replaces the condition; nothing to skip or None removes it.
    again = narrowed_conditions(
        {**hook, "matchConditions": conditions}, frozenset({"b"}), namespaces
    )
    assert again == [USER_CONDITION]
    assert narrowed_conditions({**hook, "matchConditions": conditions}, None, namespaces) == [
        USER_CONDITION
    ]


def test_no_room_for_the_condition_skips_nothing() -> None:
    full = [{"name": f"c{i}", "expression": "true"} for i in range(MAX_CONDITIONS)]
    hook = {"namespaceSelector": {}, "matchConditions": full}
    assert narrowed_conditions(hook, frozenset(NAMESPACES), NAMESPACES) == full


def test_an_unknown_namespace_is_always_called() -> None:
    """A namespace created after the last pass (or while the operator was down) is reviewed."""
    hook = {"namespaceSelector": CHART_SELECTOR}
    hook["matchConditions"] = narrowed_conditions(hook, frozenset(NAMESPACES), NAMESPACES)
    assert called(hook, ns("brand-new"))
    assert not called(hook, NAMESPACES["other"])


def test_the_list_is_capped_and_the_rest_stay_called() -> None:
    many = {f"n{i:05d}": ns(f"n{i:05d}") for i in range(MAX_EXCLUDED + 10)}
    assert len(skipped_names({}, frozenset(many), many)) == MAX_EXCLUDED


def test_a_namespace_a_policy_may_govern_is_never_skipped() -> None:
    """For every combination of policies, a namespace some policy may govern stays called
    wherever the chart's selector called it: the configurations never select nothing that a
    policy selects, for validation and for mutation alike."""
    candidates = [
        policy(ISOLATION, name="a"),
        policy(ISOLATION, mode="Patch", name="b", match=MODELS),
        policy(ISOLATION, name="c", match={"namespaces": ["oth*"]}, exclude={"namespaces": ["x"]}),
        policy(ISOLATION, mode="Audit", name="d", kind="ModelPolicy", namespace="own"),
        policy(ISOLATION, name="e", match=NO_SKIP),
    ]
    chart = LabelSelector.parse(CHART_SELECTOR)
    for size in range(len(candidates) + 1):
        for chosen in itertools.combinations(candidates, size):
            scope = unselected_namespaces(entries(*chosen), NAMESPACES.values(), ready=True)
            for which in ("validate", "mutate"):
                hook: dict[str, Any] = {"namespaceSelector": CHART_SELECTOR}
                hook["matchConditions"] = narrowed_conditions(
                    hook, scope.for_webhook(which), NAMESPACES
                )
                for namespace in NAMESPACES.values():
                    governing = [
                        p
                        for p in chosen
                        if p.may_apply_to_pods_labelled(namespace, {})
                        and (which == "validate" or p.mode.value == "Patch")
                    ]
                    if governing and chart.matches(namespace.selector_labels()):
                        assert called(hook, namespace), (
                            which,
                            namespace.name,
                            [p.ref.name for p in chosen],
                        )


def configuration(kind: str = "ValidatingWebhookConfiguration") -> dict[str, Any]:
    short = "validate" if kind.startswith("Validating") else "mutate"
    conditions = [{"name": "not-leases", "expression": "request.resource.resource != 'leases'"}]
    return {
        "kind": kind,
        "metadata": {"name": "mw", "resourceVersion": "7"},
        "webhooks": [
            {"name": f"{short}.modelward.io", "namespaceSelector": {"matchLabels": {"x": "y"}}},
            {
                "name": f"{short}{FAIL_OPEN_SUFFIX}",
                "namespaceSelector": copy.deepcopy(CHART_SELECTOR),
                "matchConditions": conditions,
            },
        ],
    }


def apply_ops(document: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    result = copy.deepcopy(document)
    for op in ops:
        if op["op"] == "test":
            assert result["metadata"]["resourceVersion"] == op["value"]
            continue
        _, _, index, field = op["path"].split("/")
        if op["op"] == "remove":
            del result["webhooks"][int(index)][field]
        else:
            result["webhooks"][int(index)][field] = op["value"]
    return result


def test_only_the_fail_open_conditions_change_and_the_users_stay_first() -> None:
    current = configuration()
    ops = scope_patch(current, frozenset({"other"}), NAMESPACES)
    assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
    assert [op["path"] for op in ops[1:]] == ["/webhooks/1/matchConditions"]
    patched = apply_ops(current, ops)
    assert patched["webhooks"][0] == current["webhooks"][0]
    hook = patched["webhooks"][1]
    assert hook["namespaceSelector"] == current["webhooks"][1]["namespaceSelector"]
    assert hook["matchConditions"][0] == current["webhooks"][1]["matchConditions"][0]
    assert listed(hook["matchConditions"]) == ["other"]
    assert scope_patch(patched, frozenset({"other"}), NAMESPACES) == []
    # Widening restores exactly what the chart rendered.
    assert apply_ops(patched, scope_patch(patched, None, NAMESPACES)) == current


def test_a_condition_the_operator_added_alone_is_removed_whole() -> None:
    current = configuration()
    del current["webhooks"][1]["matchConditions"]
    patched = apply_ops(current, scope_patch(current, frozenset({"other"}), NAMESPACES))
    assert listed(patched["webhooks"][1]["matchConditions"]) == ["other"]
    ops = scope_patch(patched, None, NAMESPACES)
    assert ops[1] == {"op": "remove", "path": "/webhooks/1/matchConditions"}
    assert apply_ops(patched, ops) == current


class FakeKube:
    def __init__(self, conflicts: int = 0) -> None:
        self.objects = {
            kind: configuration(kind)
            for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
        }
        self.conflicts = conflicts
        self.patches = 0

    def read_webhook_configuration(self, kind: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get(kind)
        return copy.deepcopy(found) if found is not None and name == "mw" else None

    def patch_webhook_configuration(
        self, kind: str, name: str, patch: list[dict[str, Any]]
    ) -> None:
        if self.conflicts:
            self.conflicts -= 1
            self.objects[kind]["metadata"]["resourceVersion"] += "1"  # someone else wrote
            raise ApiException(status=422)
        self.objects[kind] = apply_ops(self.objects[kind], patch)
        self.patches += 1


def loaded_state(*policies: Any) -> ClusterState:
    state = ClusterState()
    for namespace in NAMESPACES.values():
        state.put_namespace(namespace, "1")
    for p in policies:
        state.put_policy(
            (p.ref.kind, p.ref.namespace, p.ref.name),
            policy=p,
            error=None,
            generation=1,
            resource_version="1",
        )
    state.ready = True
    return state


def skipped(kube: FakeKube, kind: str) -> list[str]:
    return listed(kube.objects[kind]["webhooks"][1].get("matchConditions") or []) or []


def test_a_pass_narrows_both_configurations_and_retries_a_concurrent_change() -> None:
    state = loaded_state(policy(ISOLATION, match={"namespaces": ["serving-*", "own"]}))
    kube = FakeKube(conflicts=2)
    seen: list[Scope] = []
    scope = WebhookScope(state=state, kube=kube, configuration="mw", on_pass=seen.append)
    assert scope.sync_once() is True
    assert skipped(kube, "ValidatingWebhookConfiguration") == ["other", "team-x", "team-y"]
    assert skipped(kube, "MutatingWebhookConfiguration") == [
        "other",
        "own",
        "serving-a",
        "team-x",
        "team-y",
    ]
    assert len(seen) == 1 and kube.patches == 2
    assert scope.sync_once() is True and kube.patches == 2  # in step: nothing written


def test_the_break_glass_restores_the_charts_scope() -> None:
    kube = FakeKube()
    state = loaded_state()
    WebhookScope(state=state, kube=kube, configuration="mw").sync_once()
    assert skipped(kube, "ValidatingWebhookConfiguration")
    WebhookScope(state=state, kube=kube, configuration="mw", narrow=False).sync_once()
    for kind in kube.objects:
        assert kube.objects[kind] == {
            **configuration(kind),
            "metadata": kube.objects[kind]["metadata"],
        }


def test_a_missing_configuration_is_reported_for_a_quick_retry() -> None:
    scope = WebhookScope(state=loaded_state(), kube=FakeKube(), configuration="absent")
    assert scope.sync_once() is False


async def test_settle_waits_for_a_pass_that_sees_the_new_policy() -> None:
    state = loaded_state()
    kube = FakeKube()
    scope = WebhookScope(state=state, kube=kube, configuration="mw", recheck_interval=60)
    runner = asyncio.create_task(scope.run())
    try:
        await scope.settle()
        assert "team-x" in skipped(kube, "ValidatingWebhookConfiguration")
        p = policy(ISOLATION, match={"namespaces": ["team-x"]})
        state.put_policy(
            (p.ref.kind, None, p.ref.name), policy=p, error=None, generation=1, resource_version="2"
        )
        await scope.settle()  # the policy's Ready is written only after this
        assert "team-x" not in skipped(kube, "ValidatingWebhookConfiguration")
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
