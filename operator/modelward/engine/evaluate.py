"""Evaluation: every policy that matches an object, every rule section it enables.

All matching ClusterModelPolicies and ModelPolicies apply and their findings are united, so a
namespaced policy can add requirements but never remove a cluster policy's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from modelward.engine.decision import Decision, Finding, Mode, Violation
from modelward.engine.facts import ClusterFacts, NamespaceFacts
from modelward.engine.policy import Policy
from modelward.engine.rules.images import check_images
from modelward.engine.rules.integrity import check_integrity
from modelward.engine.rules.isolation import check_isolation
from modelward.engine.rules.secrets import check_secrets
from modelward.engine.rules.transport import check_ingress, check_transport, ingress_backends
from modelward.engine.workloads import Workload

Checker = Callable[[Workload, NamespaceFacts, Any], Iterator[Violation]]

#: (policy attribute, checker) for every rule family that inspects pods.
FAMILIES: tuple[tuple[str, Checker], ...] = (
    ("isolation", check_isolation),
    ("images", check_images),
    ("transport", check_transport),
    ("secrets", check_secrets),
    ("integrity", check_integrity),
)


def evaluate_workload(
    workload: Workload, facts: ClusterFacts, policies: Iterable[Policy]
) -> Decision:
    """The decision for a pod or pod-creating workload under every policy that selects it."""
    namespace = facts.namespace(workload.namespace)
    findings: list[Finding] = []
    for policy in policies:
        if not policy.applies_to(namespace, workload.labels):
            continue
        for attribute, check in FAMILIES:
            config = getattr(policy, attribute)
            if config is None:
                continue
            mode: Mode = config.mode
            findings.extend(
                Finding(v, policy.ref, mode) for v in check(workload, namespace, config)
            )
    return Decision(tuple(findings))


def evaluate_ingress(
    ingress: Mapping[str, Any], facts: ClusterFacts, policies: Iterable[Policy]
) -> Decision:
    """An Ingress is judged by the policies that select the pods behind its Services.

    A Service's selector stands in for the labels of the pods it routes to; an unknown Service
    (not created yet) is judged on namespace selection alone.
    """
    meta = ingress.get("metadata") or {}
    namespace = facts.namespace(str(meta.get("namespace") or "default"))
    findings: list[Finding] = []
    seen: set[tuple[object, ...]] = set()
    for service in ingress_backends(ingress):
        labels = facts.service_selector(namespace.name, service) or {}
        for policy in policies:
            if policy.transport is None or not policy.applies_to(namespace, labels):
                continue
            for v in check_ingress(ingress, service, policy.transport.ingress):
                key = (policy.ref, v.rule_id)
                if key not in seen:
                    seen.add(key)
                    findings.append(Finding(v, policy.ref, policy.transport.mode))
    return Decision(tuple(findings))
