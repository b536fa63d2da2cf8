"""Watched objects into cluster state: one function for the start-up listing and for kopf's
watch events alike, and the status a policy should show."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from modelward.engine import NamespaceFacts, parse_policy
from modelward.engine.facts import ingress_opening, is_default_deny
from modelward.engine.rules import enabled_rule_ids
from modelward.errors import PolicyError
from modelward.state import ClusterState, PolicyEntry

PolicyKey = tuple[str, str | None, str]


def policy_key(kind: str, obj: Mapping[str, Any]) -> PolicyKey:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") if kind == "ModelPolicy" else None
    return (kind, namespace, str(meta.get("name")))


def observe_object(
    state: ClusterState, kind: str, obj: Mapping[str, Any], *, deleted: bool = False
) -> PolicyEntry | None:
    """Apply one object (or its deletion) to the state; returns a policy's new entry."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    namespace = str(meta.get("namespace") or "")
    version = meta.get("resourceVersion")
    if kind in ("ClusterModelPolicy", "ModelPolicy"):
        key = policy_key(kind, obj)
        if deleted:
            state.delete_policy(key)
            return None
        body = {**obj, "kind": kind, "apiVersion": obj.get("apiVersion", "modelward.io/v1alpha1")}
        try:
            policy, error = parse_policy(body), None
        except PolicyError as exc:
            policy, error = None, exc
        return state.put_policy(
            key,
            policy=policy,
            error=error,
            generation=int(meta.get("generation") or 0),
            resource_version=version,
        )
    if kind == "Namespace":
        if deleted:
            state.delete_namespace(name)
        else:
            state.put_namespace(
                NamespaceFacts(
                    name=name,
                    labels=dict(meta.get("labels") or {}),
                    annotations=dict(meta.get("annotations") or {}),
                ),
                version,
            )
    elif kind == "NetworkPolicy":
        state.put_network_policy(
            namespace,
            name,
            default_deny=not deleted and is_default_deny(obj),
            opens_ingress_to=None if deleted else ingress_opening(obj),
        )
    elif kind == "Service":
        selector = (obj.get("spec") or {}).get("selector")
        state.put_service(namespace, name, None if deleted else dict(selector or {}))
    return None


def desired_status(
    entry: PolicyEntry, *, counts: Mapping[str, int], previous: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The status a policy should carry; keeps lastTransitionTime when nothing changed."""
    if entry.error is None:
        ready, reason = "True", "Loaded"
        message = "the policy is enforced as written"
    else:
        ready, reason = "False", "InvalidPolicy"
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
