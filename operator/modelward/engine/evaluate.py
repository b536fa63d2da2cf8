"""Evaluation: every policy that matches an object, every rule section it enables.

All matching ClusterModelPolicies and ModelPolicies apply and their findings are united, so a
namespaced policy can add requirements but never remove a cluster policy's.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from modelward.engine.decision import Decision, Finding, Mode, Remedy, Violation
from modelward.engine.exceptions import Exceptions, object_target, workload_target
from modelward.engine.facts import ClusterFacts, ImageLookups, NamespaceFacts
from modelward.engine.policy import Policy
from modelward.engine.rules.image_trust import check_image_trust
from modelward.engine.rules.images import check_images
from modelward.engine.rules.integrity import check_integrity, check_integrity_update
from modelward.engine.rules.isolation import check_isolation
from modelward.engine.rules.secrets import check_secrets
from modelward.engine.rules.storage import check_storage
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


def _finding(v: Violation, policy: Policy, mode: Mode) -> Finding:
    return Finding(v, policy.ref, Mode.AUDIT if v.advisory else mode)


def evaluate_workload(
    workload: Workload,
    facts: ClusterFacts,
    policies: Iterable[Policy],
    *,
    exceptions: Exceptions | None = None,
    images: ImageLookups | None = None,
) -> Decision:
    """The decision for a pod or pod-creating workload under every policy that selects it;
    findings a matching, unexpired ``exceptions`` entry covers are marked waived.

    ``images`` holds what registry look-ups learned about the workload's images (gathered
    before evaluation, ``modelward.registry.lookups``); without it, the image rules that need
    a look-up are not evaluated, and the image trust rules (MW-IMG-020..023) report
    every image they cover as unverifiable.
    """
    policies = tuple(policies)
    namespace = facts.namespace(workload.namespace)
    families = FAMILIES
    if images is not None:
        with_images = functools.partial(check_images, images=images)
        families = tuple((a, with_images if a == "images" else c) for a, c in FAMILIES)
    findings: list[Finding] = []
    for policy in policies:
        if not policy.applies_to(namespace, workload.labels):
            continue
        for attribute, check in families:
            config = getattr(policy, attribute)
            if config is None:
                continue
            mode: Mode = config.mode
            findings.extend(_finding(v, policy, mode) for v in check(workload, namespace, config))
        section = policy.images
        if section is not None:
            findings.extend(
                _finding(v, policy, section.mode)
                for v in check_image_trust(workload, section, images)
            )
        if policy.storage is not None:
            # Storage reads cluster-wide facts (claims, StorageClasses), not the namespace's.
            findings.extend(
                Finding(v, policy.ref, policy.storage.mode)
                for v in check_storage(workload, facts, policy.storage)
            )
    decision = Decision(tuple(findings))
    if exceptions is None:
        return decision
    return exceptions.waive(decision, workload_target(workload), policies)


def _added_ephemeral_containers(old: Workload, new: Workload) -> set[int]:
    """Indexes (in the new pod) of the ephemeral containers this update adds."""
    before = {c.name for c in old.containers() if c.is_ephemeral}
    return {c.index for c in new.containers() if c.is_ephemeral and c.name not in before}


def _applies_on_update(remedy: Remedy, added: set[int]) -> bool:
    """Whether the API server would keep this fix on a Pod UPDATE.

    A pod's spec is immutable but for a few fields; the one place a fix can go is the spec of
    an ephemeral container the update itself adds (``pods/ephemeralcontainers``).
    """
    path = remedy.path
    return (
        remedy.scope == "spec"
        and not remedy.append
        and len(path) >= 3
        and path[0] == "ephemeralContainers"
        and isinstance(path[1], int)
        and path[1] in added
    )


def evaluate_pod_update(
    old: Workload,
    new: Workload,
    facts: ClusterFacts,
    policies: Iterable[Policy],
    *,
    exceptions: Exceptions | None = None,
    images: ImageLookups | None = None,
) -> Decision:
    """The decision for a Pod UPDATE (pods, pods/ephemeralcontainers), judged on what it adds.

    Violations the pod already had cannot be fixed by an update and do not block it. A
    violation the update introduces keeps its fix only if the fix can be applied to this
    update (see ``_applies_on_update``); otherwise it has none, so Patch mode denies it as
    Enforce does. Integrity policies that select the old or the new pod also hold its model
    declaration, keys and verifier to what was admitted (MW-INT-006).
    """
    policies = tuple(policies)
    introduced = evaluate_workload(new, facts, policies, images=images).only_new(
        evaluate_workload(old, facts, policies, images=images)
    )
    added = _added_ephemeral_containers(old, new)
    findings: list[Finding] = []
    for finding in introduced.findings:
        remedies = finding.violation.remedies
        if remedies and not all(_applies_on_update(r, added) for r in remedies):
            finding = dataclasses.replace(
                finding, violation=dataclasses.replace(finding.violation, remedies=())
            )
        findings.append(finding)
    namespace = facts.namespace(new.namespace)
    for policy in policies:
        config = policy.integrity
        if config is None or not (
            policy.applies_to(namespace, old.labels) or policy.applies_to(namespace, new.labels)
        ):
            continue
        findings.extend(
            Finding(v, policy.ref, config.mode) for v in check_integrity_update(old, new)
        )
    decision = Decision(tuple(findings))
    if exceptions is None:
        return decision
    return exceptions.waive(decision, workload_target(new), policies)


def evaluate_exposure(
    obj: Mapping[str, Any],
    facts: ClusterFacts,
    policies: Iterable[Policy],
    *,
    exceptions: Exceptions | None = None,
) -> Decision:
    """An Ingress, a Service or a Gateway API route, judged by the policies that may govern
    the pods it sends traffic to (``transport.is_exposure`` says which objects these are).

    What is behind a backend is known only by a Service's selector, a subset of the pods'
    labels: a policy applies when some pod carrying those labels could match it, and an
    unknown backend (a Service not seen yet, a ``resource`` or non-Service backend) is judged
    on namespace selection alone, so no backend escapes by being unverifiable.
    """
    policies = tuple(policies)
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
    decision = Decision(tuple(findings))
    if exceptions is None:
        return decision
    return exceptions.waive(decision, object_target(obj, own_namespace), policies)
