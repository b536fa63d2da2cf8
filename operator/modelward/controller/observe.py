"""Watched objects into cluster state: one function for the start-up listing and for kopf's
watch events alike, and the status a policy should show."""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from modelward.engine import KeySource, NamespaceFacts, parse_policy
from modelward.engine.exceptions import ExceptionError, parse_exception
from modelward.engine.facts import (
    claim_facts,
    ingress_opening,
    is_default_deny,
    storage_class_facts,
)
from modelward.engine.image_trust import (
    ReportFormatError,
    VulnerabilityReport,
    report_from_trivy_operator,
    trivy_operator_digest,
)
from modelward.engine.rbac import parse_binding, parse_role
from modelward.engine.rules import enabled_rule_ids
from modelward.errors import PolicyError
from modelward.state import (
    CLAIMS,
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    EXCEPTIONS,
    NAMESPACES,
    NETWORK_POLICIES,
    POLICIES,
    ROLE_BINDINGS,
    ROLES,
    SERVICES,
    STORAGE_CLASSES,
    VULNERABILITY_REPORTS,
    ClusterState,
    ExceptionEntry,
    NetworkPolicyFacts,
    PolicyEntry,
    ReplaceResult,
)
from modelward.state import PolicyKey as PolicyKey

#: Watched kind -> the kind of fact it becomes in the state.
FACT_KIND = {
    "ClusterModelPolicy": POLICIES,
    "ModelPolicy": POLICIES,
    "Namespace": NAMESPACES,
    "NetworkPolicy": NETWORK_POLICIES,
    "Service": SERVICES,
    "ModelPolicyException": EXCEPTIONS,
    "Role": ROLES,
    "ClusterRole": CLUSTER_ROLES,
    "RoleBinding": ROLE_BINDINGS,
    "ClusterRoleBinding": CLUSTER_ROLE_BINDINGS,
    "StorageClass": STORAGE_CLASSES,
    "PersistentVolumeClaim": CLAIMS,
    "VulnerabilityReport": VULNERABILITY_REPORTS,
}
#: Kinds stored through ``ClusterState.put_fact`` as ``fact`` makes them.
GENERIC_KINDS = (
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "StorageClass",
    "PersistentVolumeClaim",
)


def policy_key(kind: str, obj: Mapping[str, Any]) -> PolicyKey:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") if kind == "ModelPolicy" else None
    return (kind, namespace, str(meta.get("name")))


def _compile_policy(
    state: ClusterState, kind: str, obj: Mapping[str, Any], *, keys: KeySource | None = None
) -> tuple[PolicyKey, PolicyEntry]:
    meta = obj.get("metadata") or {}
    body = {**obj, "kind": kind, "apiVersion": obj.get("apiVersion", "modelward.io/v1alpha1")}
    try:
        policy, error = parse_policy(body, keys=keys), None
    except PolicyError as exc:
        policy, error = None, exc
    key = policy_key(kind, obj)
    return key, state.policy_entry_for(
        key,
        policy=policy,
        error=error,
        generation=int(meta.get("generation") or 0),
        resource_version=meta.get("resourceVersion"),
    )


def fact(kind: str, obj: Mapping[str, Any]) -> tuple[Any, Any]:
    """The state's key and value for a Namespace, NetworkPolicy, Service, RBAC object,
    StorageClass or PersistentVolumeClaim."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    namespace = str(meta.get("namespace") or "")
    if kind == "Namespace":
        return name, NamespaceFacts(
            name=name,
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
        )
    if kind == "NetworkPolicy":
        return (namespace, name), NetworkPolicyFacts(
            default_deny=is_default_deny(obj), opens_ingress_to=ingress_opening(obj)
        )
    if kind == "Service":
        return (namespace, name), dict((obj.get("spec") or {}).get("selector") or {})
    if kind == "ModelPolicyException":
        return (namespace, name), exception_entry(obj)
    if kind in ("Role", "ClusterRole"):
        body = {**obj, "kind": kind}
        role = parse_role(body)
        return role.key, role
    if kind in ("RoleBinding", "ClusterRoleBinding"):
        binding = parse_binding({**obj, "kind": kind})
        return binding.key, binding
    if kind == "StorageClass":
        return name, storage_class_facts(obj)
    if kind == "PersistentVolumeClaim":
        return (namespace, name), claim_facts(obj)
    if kind == "VulnerabilityReport":
        return (namespace, name), _vulnerability_report(obj)
    raise ValueError(f"{kind} is not a kind the cluster state holds")


def exception_entry(obj: Mapping[str, Any]) -> ExceptionEntry:
    """A watched exception compiled; one that cannot be keeps its error and waives nothing."""
    body = {**obj, "kind": "ModelPolicyException"}
    generation = int((obj.get("metadata") or {}).get("generation") or 0)
    status = obj.get("status") if isinstance(obj.get("status"), Mapping) else None
    try:
        return ExceptionEntry(parse_exception(body), None, generation, status)
    except ExceptionError as exc:
        return ExceptionEntry(None, str(exc), generation, status)


def observe_object(
    state: ClusterState,
    kind: str,
    obj: Mapping[str, Any],
    *,
    deleted: bool = False,
    keys: KeySource | None = None,
) -> PolicyEntry | None:
    """Apply one object (or its deletion) to the state; returns a policy's new entry.

    ``keys``: the key material a ClusterModelPolicy references, read beforehand from
    modelward's namespace (``controller.keys.KeyReader``).
    """
    meta = obj.get("metadata") or {}
    version = meta.get("resourceVersion")
    if kind in ("ClusterModelPolicy", "ModelPolicy"):
        if deleted:
            state.delete_policy(policy_key(kind, obj), version)
            return None
        key = policy_key(kind, obj)
        if not state.accepts(POLICIES, key, version):
            return None
        key, entry = _compile_policy(state, kind, obj, keys=keys)
        return state.put_policy(
            key,
            policy=entry.policy,
            error=entry.error,
            generation=entry.generation,
            resource_version=version,
        )
    if kind not in FACT_KIND:
        return None
    fact_key, value = fact(kind, obj)
    if kind in GENERIC_KINDS:
        if deleted:
            state.delete_fact(FACT_KIND[kind], fact_key, version)
        else:
            state.put_fact(FACT_KIND[kind], fact_key, value, version)
    elif kind == "Namespace":
        if deleted:
            state.delete_namespace(str(fact_key), version)
        else:
            state.put_namespace(value, version)
    elif kind == "NetworkPolicy":
        namespace, name = fact_key
        if deleted:
            state.delete_network_policy(namespace, name, version)
        else:
            state.put_network_policy(
                namespace,
                name,
                default_deny=value.default_deny,
                opens_ingress_to=value.opens_ingress_to,
                resource_version=version,
            )
    elif kind == "Service":
        namespace, name = fact_key
        state.put_service(namespace, name, None if deleted else value, version)
    elif kind == "ModelPolicyException":
        namespace, name = fact_key
        if deleted:
            state.delete_exception(namespace, name, version)
        else:
            state.put_exception(namespace, name, value, version)
    elif kind == "VulnerabilityReport":
        namespace, name = fact_key
        state.put_vulnerability_report(namespace, name, None if deleted else value, version)
    return None


def _vulnerability_report(obj: Mapping[str, Any]) -> tuple[str, VulnerabilityReport] | None:
    """(digest, findings) of a Trivy Operator report; None for one without a digest or that
    cannot be read (it then counts as no report: never as a clean one)."""
    digest = trivy_operator_digest(obj)
    if digest is None:
        return None
    try:
        return digest, report_from_trivy_operator(obj)
    except ReportFormatError:
        return None


def resync_kind(
    state: ClusterState,
    kind: str,
    objects: Iterable[Mapping[str, Any]],
    *,
    list_version: str | None,
    keys: Mapping[PolicyKey, KeySource] | None = None,
) -> tuple[ReplaceResult, list[tuple[PolicyKey, Mapping[str, Any]]]]:
    """Replace what the state holds for ``kind`` by a full list taken at ``list_version``.

    ModelPolicy and ClusterModelPolicy share one fact kind, so a policy list replaces only the
    entries of its own kind. Returns what changed, and the policies (key, object) written, whose
    status the caller syncs. Objects whose version the state already holds are not recompiled.
    ``keys``: per cluster policy, the key material it references (``KeyReader.fetch``).
    """
    fact_kind = FACT_KIND[kind]
    listed: dict[Hashable, tuple[Any, str | None]] = {}
    compiled: dict[PolicyKey, Mapping[str, Any]] = {}
    for obj in objects:
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if fact_kind != POLICIES:
            fact_key, value = fact(kind, obj)
            listed[fact_key] = (value, version)
            continue
        key = policy_key(kind, obj)
        current = state.policy(key)
        if current is not None and not state.accepts(POLICIES, key, version):
            listed[key] = (current, current.resource_version)
            continue
        key, entry = _compile_policy(state, kind, obj, keys=(keys or {}).get(key))
        listed[key] = (entry, version)
        compiled[key] = obj
    if fact_kind == POLICIES:
        # The other policy kind is not part of this list: keep its entries as they are.
        for key, entry in state.policies.items():
            if key[0] != kind:
                listed[key] = (entry, entry.resource_version)
    result = state.replace(fact_kind, listed, list_version=list_version)
    written = [(k, compiled[k]) for k in result.written if k in compiled]
    return result, written


def desired_status(
    entry: PolicyEntry, *, counts: Mapping[str, int], previous: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The status a policy should carry; keeps lastTransitionTime when nothing changed."""
    if entry.error is None:
        ready, reason = "True", "Loaded"
        message = "the policy is enforced as written"
    else:
        ready, reason = "False", entry.error.reason
        message = str(entry.error)
        if entry.policy is not None:
            message += f" (still enforcing the last valid generation {entry.policy.generation})"
    old: Mapping[str, Any] = next(
        (c for c in (previous or {}).get("conditions") or [] if c.get("type") == "Ready"), {}
    )
    changed = old.get("status") != ready or old.get("reason") != reason
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {
        "type": "Ready",
        "status": ready,
        "reason": reason,
        "message": message[:1000],
        "observedGeneration": entry.generation,
        "lastTransitionTime": now if changed else old.get("lastTransitionTime", now),
    }
    status: dict[str, Any] = {
        "observedGeneration": entry.generation,
        "conditions": [condition],
        "rules": list(enabled_rule_ids(entry.policy)) if entry.policy else [],
    }
    if counts:
        status["violations"] = dict(counts)
    return status


def status_differs(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Whether a status patch is needed (ignoring timestamps), so updates do not loop."""

    def strip(status: Mapping[str, Any]) -> Any:
        conditions = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in status.get("conditions") or []
        ]
        return (
            status.get("observedGeneration"),
            conditions,
            status.get("rules"),
            status.get("violations"),
        )

    return bool(strip(current or {}) != strip(desired))
