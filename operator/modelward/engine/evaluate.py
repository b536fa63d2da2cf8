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
from modelward.engine.rules.transport import check_exposure, check_transport, exposure_backends
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


def evaluate_exposure(
    obj: Mapping[str, Any], facts: ClusterFacts, policies: Iterable[Policy]
) -> Decision:
    """An Ingress, a Service or a Gateway API route, judged by the policies that may govern
    the pods it sends traffic to (``transport.is_exposure`` says which objects these are).

    What is behind a backend is known only by a Service's selector, a subset of the pods'
    labels: a policy applies when some pod carrying those labels could match it, and an
    unknown backend (a Service not seen yet, a ``resource`` or non-Service backend) is judged
    on namespace selection alone, so no backend escapes by being unverifiable.
    """
    meta = obj.get("metadata") or {}
    own_namespace = str(meta.get("namespace") or "default")
    findings: list[Finding] = []
    seen: set[tuple[object, ...]] = set()
    for backend in exposure_backends(obj, facts, own_namespace):
        namespace = facts.namespace(backend.namespace)
        for policy in policies:
            transport = policy.transport
            if transport is None or not policy.may_apply_to_pods_labelled(
                namespace, backend.labels
            ):
                continue
            for v in check_exposure(obj, backend, transport):
                key = (policy.ref, v.rule_id)
                if key not in seen:
                    seen.add(key)
                    findings.append(Finding(v, policy.ref, transport.mode))
    return Decision(tuple(findings))
