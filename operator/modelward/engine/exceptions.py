"""Policy exceptions: a sanctioned, named, expiring waiver of some rules of one policy.

A ``ModelPolicyException`` (namespaced) says: in this namespace, for these workloads, the
findings of these rule IDs of this policy are waived until ``expiresAt``, because of a written
justification, approved by someone, under a ticket. The engine receives exceptions as facts
(``Exceptions``, with the current time and the cluster's maximum lifetime) and ``waive`` marks
the findings they cover: a waived finding neither denies, nor patches, nor warns, and the
audit reports it as ``skip`` naming the exception.

Why the rules are strict:

- **No wildcards.** An exception lists exact rule IDs (the CRD's pattern refuses ``*``) and one
  policy by kind and name, so what it waives is always readable from the object itself; an
  unknown rule ID is refused at admission, never taken to mean "everything".
- **Expiry needs no one.** Whether an exception applies is decided against the clock at every
  evaluation; nothing has to edit or restart anything when it expires.
- **The lifetime is bounded from creation.** An exception is in force until ``expiresAt``, but
  never longer than the maximum lifetime after its ``metadata.creationTimestamp``, which the
  API server sets and nobody can edit. Moving ``expiresAt`` later cannot extend it past that:
  renewing means a new exception (a new approval).
- **Who created it may matter.** A policy may list the groups whose exceptions count
  (``spec.exceptions.allowedGroups``); the creator is what modelward's webhook recorded from the
  API server's ``userInfo`` on CREATE (``CREATOR_ANNOTATION``), protected from later edits.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from modelward.engine.decision import Decision, Finding
from modelward.engine.policy import Policy
from modelward.engine.selectors import LabelSelector, SelectorError
from modelward.engine.workloads import Workload

EXCEPTION_KIND = "ModelPolicyException"
EXCEPTION_PLURAL = "modelpolicyexceptions"
#: The creator as the API server authenticated it on CREATE: {"username": ..., "groups": [...]}.
CREATOR_ANNOTATION = "modelward.io/created-by"
#: Exact rule IDs only: no wildcard can slip through as "every rule".
RULE_ID_PATTERN = "^MW-[A-Z]{3}-[0-9]{3}$"
DEFAULT_MAX_LIFETIME = dt.timedelta(days=90)
#: The CRD's fixed cap (CEL): no setting can allow an exception for longer than this.
HARD_MAX_LIFETIME = dt.timedelta(days=365)
#: How far in the future ``approvedAt`` may lie (clock skew between approver and cluster).
APPROVAL_SKEW = dt.timedelta(minutes=5)
#: Labels the controllers put on what they create: a pod's owner ReplicaSet is named
#: ``<deployment>-<pod-template-hash>``, so its Deployment's name can be derived.
POD_TEMPLATE_HASH = "pod-template-hash"

_RULE_ID = re.compile(RULE_ID_PATTERN)


class ExceptionError(ValueError):
    """A ModelPolicyException that cannot be used; the message names the field and the fix."""


def parse_time(value: Any, field: str) -> dt.datetime:
    """An RFC 3339 timestamp as an aware UTC datetime; ``ExceptionError`` otherwise."""
    if not isinstance(value, str) or not value:
        raise ExceptionError(f"{field} is missing: give an RFC 3339 time (2026-01-31T00:00:00Z)")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise ExceptionError(
            f"{field} {value!r} is not an RFC 3339 time (e.g. 2026-01-31T00:00:00Z)"
        ) from exc
    if parsed.tzinfo is None:
        raise ExceptionError(f"{field} {value!r} has no time zone: end it with Z")
    return parsed.astimezone(dt.UTC)


def format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Creator:
    """Who created an exception, as the API server authenticated them."""

    username: str
    groups: tuple[str, ...] = ()

    def annotation(self) -> str:
        """The value of ``CREATOR_ANNOTATION`` (stable: the webhook compares it on UPDATE)."""
        return json.dumps(
            {"username": self.username, "groups": list(self.groups)},
            separators=(",", ":"),
        )

    @staticmethod
    def from_annotation(value: str | None) -> Creator | None:
        if not value:
            return None
        try:
            raw = json.loads(value)
        except json.JSONDecodeError:
            return None
        if not isinstance(raw, dict) or not isinstance(raw.get("username"), str):
            return None
        groups = raw.get("groups") or []
        if not isinstance(groups, list):
            return None
        return Creator(raw["username"], tuple(str(g) for g in groups))


@dataclass(frozen=True)
class PolicyException:
    """A compiled ModelPolicyException."""

    namespace: str
    name: str
    policy_kind: str
    policy_name: str
    rules: frozenset[str]
    names: tuple[str, ...]
    selector: LabelSelector | None
    justification: str
    approved_by: str
    ticket: str
    approved_at: dt.datetime
    expires_at: dt.datetime
    created_at: dt.datetime | None = None
    creator: Creator | None = None
    uid: str = ""

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def expiry(self, max_lifetime: dt.timedelta) -> dt.datetime:
        """When it stops applying: ``expiresAt``, or the maximum lifetime after creation."""
        if self.created_at is None:
            return self.expires_at
        return min(self.expires_at, self.created_at + max_lifetime)

    def waives_policy(self, policy: Policy) -> bool:
        ref = policy.ref
        if ref.kind != self.policy_kind or ref.name != self.policy_name:
            return False
        # A ModelPolicy is named in its own namespace: only that namespace's exceptions reach it.
        return ref.namespace is None or ref.namespace == self.namespace

    def selects(self, target: Target) -> bool:
        """Both given criteria must hold: names and selector each narrow, never widen."""
        if target.namespace != self.namespace:
            return False
        if self.names and not (set(self.names) & target.names):
            return False
        return self.selector is None or self.selector.matches(target.labels)

    def counts_for(self, policy: Policy) -> bool:
        """Whether the policy takes exceptions from this exception's creator."""
        allowed = policy.exception_groups
        if allowed is None:
            return True
        return self.creator is not None and bool(set(self.creator.groups) & set(allowed))


@dataclass(frozen=True)
class Target:
    """What an exception can select: the object's namespace, the names it answers to (its
    own, its controller's) and its (pod template's) labels."""

    namespace: str
    names: frozenset[str]
    labels: Mapping[str, str]


def workload_target(workload: Workload) -> Target:
    """A workload's names: its own, its controllers' and, for a pod of a Deployment's
    ReplicaSet, the Deployment's (the ReplicaSet is ``<deployment>-<pod-template-hash>``)."""
    names = {workload.name, *workload.owners}
    template_hash = workload.labels.get(POD_TEMPLATE_HASH)
    if template_hash:
        suffix = f"-{template_hash}"
        owned = (workload.name, *workload.owners)
        names |= {n[: -len(suffix)] for n in owned if n.endswith(suffix)}
    return Target(workload.namespace, frozenset(names), workload.labels)


def object_target(obj: Mapping[str, Any], namespace: str) -> Target:
    """An exposure (Service, Ingress, route): its own name and labels."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    return Target(
        str(meta.get("namespace") or namespace),
        frozenset({str(meta.get("name") or "")}),
        {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {},
    )


def _strings(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ExceptionError(f"{field} must be a list of non-empty strings")
    return tuple(value)


def parse_exception(obj: Mapping[str, Any]) -> PolicyException:
    """Compile a ModelPolicyException; ``ExceptionError`` names the field and the fix.

    The CRD schema refuses most of these already; parsing repeats the checks so that
    ``modelward check`` fails on the same files offline.
    """
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "default")
    label = f"{EXCEPTION_KIND} {namespace}/{name or '<unnamed>'}"
    spec = obj.get("spec")
    if obj.get("kind") != EXCEPTION_KIND or not isinstance(spec, Mapping):
        raise ExceptionError(f"{label}: not a {EXCEPTION_KIND} with a spec")
    policy = spec.get("policy")
    if not isinstance(policy, Mapping) or policy.get("kind") not in (
        "ClusterModelPolicy",
        "ModelPolicy",
    ):
        raise ExceptionError(
            f"{label}: spec.policy must name one policy: {{kind: ClusterModelPolicy or "
            "ModelPolicy, name: ...}"
        )
    if not isinstance(policy.get("name"), str) or not policy["name"]:
        raise ExceptionError(f"{label}: spec.policy.name is missing")
    rules = _strings(spec.get("rules"), f"{label}: spec.rules")
    if not rules:
        raise ExceptionError(f"{label}: spec.rules must list the rule IDs waived (no wildcard)")
    bad = [r for r in rules if not _RULE_ID.match(r)]
    if bad:
        raise ExceptionError(
            f"{label}: spec.rules {bad} are not rule IDs (MW-XXX-000); wildcards are not "
            "allowed: list every rule waived"
        )
    workloads = spec.get("workloads")
    if not isinstance(workloads, Mapping):
        raise ExceptionError(f"{label}: spec.workloads must give names or a selector")
    names = _strings(workloads.get("names"), f"{label}: spec.workloads.names")
    raw_selector = workloads.get("selector")
    selector = None
    if raw_selector is not None:
        try:
            selector = LabelSelector.parse(raw_selector)
        except SelectorError as exc:
            raise ExceptionError(f"{label}: spec.workloads.selector: {exc}") from exc
        if not selector.requirements:
            raise ExceptionError(
                f"{label}: spec.workloads.selector is empty and would select every workload: "
                "give labels, or names"
            )
    if not names and selector is None:
        raise ExceptionError(f"{label}: spec.workloads must give names or a selector")
    for field in ("justification", "approvedBy"):
        if not isinstance(spec.get(field), str) or not spec[field].strip():
            raise ExceptionError(f"{label}: spec.{field} is required")
    approved_at = parse_time(spec.get("approvedAt"), f"{label}: spec.approvedAt")
    expires_at = parse_time(spec.get("expiresAt"), f"{label}: spec.expiresAt")
    if expires_at <= approved_at:
        raise ExceptionError(f"{label}: spec.expiresAt must be after spec.approvedAt")
    if expires_at - approved_at > HARD_MAX_LIFETIME:
        raise ExceptionError(
            f"{label}: spec.expiresAt is more than {HARD_MAX_LIFETIME.days} days after "
            "spec.approvedAt"
        )
    created = meta.get("creationTimestamp")
    annotations = meta.get("annotations") or {}
    return PolicyException(
        namespace=namespace,
        name=name,
        policy_kind=str(policy["kind"]),
        policy_name=str(policy["name"]),
        rules=frozenset(rules),
        names=names,
        selector=selector,
        justification=str(spec["justification"]),
        approved_by=str(spec["approvedBy"]),
        ticket=str(spec.get("ticket") or ""),
        approved_at=approved_at,
        expires_at=expires_at,
        created_at=parse_time(created, "metadata.creationTimestamp") if created else None,
        creator=Creator.from_annotation(
            annotations.get(CREATOR_ANNOTATION) if isinstance(annotations, Mapping) else None
        ),
        uid=str(meta.get("uid") or ""),
    )


@dataclass(frozen=True)
class Exceptions:
    """The exceptions known now, as the engine receives them: with the time to judge them at
    and the cluster's maximum lifetime."""

    items: tuple[PolicyException, ...]
    now: dt.datetime
    max_lifetime: dt.timedelta = DEFAULT_MAX_LIFETIME

    def active(self, exception: PolicyException) -> bool:
        return self.now < exception.expiry(self.max_lifetime)

    def waive(self, decision: Decision, target: Target, policies: Iterable[Policy]) -> Decision:
        """The decision with the findings a matching, unexpired exception covers marked waived,
        and the others told about matching exceptions that expired or do not count."""
        candidates = [e for e in self.items if e.selects(target)]
        if not candidates or not decision.findings:
            return decision
        by_ref = {p.ref: p for p in policies}
        findings: list[Finding] = []
        for finding in decision.findings:
            policy = by_ref.get(finding.policy)
            matching = [
                e
                for e in candidates
                if policy is not None
                and e.waives_policy(policy)
                and finding.violation.rule_id in e.rules
            ]
            waiver = next(
                (e for e in matching if self.active(e) and policy and e.counts_for(policy)), None
            )
            if waiver is not None:
                expiry = format_time(waiver.expiry(self.max_lifetime))
                findings.append(
                    replace(
                        finding,
                        waived_by=waiver.ref,
                        exception_notes=(
                            f"waived by exception {waiver.ref} (approved by "
                            f"{waiver.approved_by}, expires {expiry})",
                        ),
                    )
                )
                continue
            notes = []
            for e in matching:
                if not self.active(e):
                    notes.append(
                        f"exception {e.ref} matches but expired at "
                        f"{format_time(e.expiry(self.max_lifetime))}: renew it with a new, "
                        "approved exception"
                    )
                else:
                    notes.append(
                        f"exception {e.ref} matches but does not count: its creator is in none "
                        f"of the policy's spec.exceptions.allowedGroups"
                    )
            findings.append(replace(finding, exception_notes=tuple(notes)) if notes else finding)
        return Decision(tuple(findings))


def no_exceptions(now: dt.datetime | None = None) -> Exceptions:
    return Exceptions((), now or dt.datetime.now(dt.UTC))


@dataclass(frozen=True)
class ExceptionRecord:
    """An exception as reports (``modelward evidence``) show it."""

    namespace: str
    name: str
    policy: str
    rules: tuple[str, ...]
    workloads: str
    justification: str
    approved_by: str
    ticket: str
    approved_at: str
    expires_at: str
    created_by: str | None
    state: str  # "active" or "expired"


def exceptions_from_objects(
    objects: Iterable[Mapping[str, Any]],
) -> tuple[list[PolicyException], list[str]]:
    """Compile listed ModelPolicyException objects (a list response's items carry no kind);
    returns the exceptions and, for those that cannot be compiled, why (never dropped
    silently: a report shows them)."""
    found: list[PolicyException] = []
    problems: list[str] = []
    for obj in objects:
        try:
            found.append(parse_exception({**obj, "kind": EXCEPTION_KIND}))
        except ExceptionError as exc:
            problems.append(str(exc))
    return found, problems


def exception_records(
    exceptions: Iterable[PolicyException],
    *,
    now: dt.datetime,
    max_lifetime: dt.timedelta = DEFAULT_MAX_LIFETIME,
) -> list[ExceptionRecord]:
    """Every exception with its state at ``now`` and who approved and created it, sorted by
    namespace and name: the read API for evidence reports."""
    records = []
    for e in sorted(exceptions, key=lambda e: (e.namespace, e.name)):
        expiry = e.expiry(max_lifetime)
        what = []
        if e.names:
            what.append("names " + ", ".join(e.names))
        if e.selector is not None:
            what.append(f"selector {e.selector}")
        records.append(
            ExceptionRecord(
                namespace=e.namespace,
                name=e.name,
                policy=f"{e.policy_kind} {e.policy_name}",
                rules=tuple(sorted(e.rules)),
                workloads="; ".join(what),
                justification=e.justification,
                approved_by=e.approved_by,
                ticket=e.ticket,
                approved_at=format_time(e.approved_at),
                expires_at=format_time(expiry),
                created_by=e.creator.username if e.creator else None,
                state="active" if now < expiry else "expired",
            )
        )
    return records


def lifetime_problem(
    exception: PolicyException,
    *,
    now: dt.datetime,
    max_lifetime: dt.timedelta,
    created_at: dt.datetime | None,
) -> str | None:
    """Why an exception being created or changed breaks the cluster's maximum lifetime (the
    chart's ``exceptions.maxLifetime``), or None. ``created_at`` is None on CREATE (it is
    created now)."""
    start = created_at or now
    limit = start + max_lifetime
    if exception.expires_at > limit:
        return (
            f"spec.expiresAt {format_time(exception.expires_at)} is past the cluster's maximum "
            f"exception lifetime ({_days(max_lifetime)} from {'creation' if created_at else 'now'}"
            f", {format_time(limit)}). Fix: set expiresAt at or before {format_time(limit)}; to "
            "extend an exception, create a new one with a new approval"
        )
    if exception.approved_at > now + APPROVAL_SKEW:
        return (
            f"spec.approvedAt {format_time(exception.approved_at)} is in the future. Fix: give "
            "the time the exception was approved"
        )
    return None


def _days(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400} days"
    return f"{seconds} s"


def unknown_rules(exception: PolicyException, known: Iterable[str]) -> tuple[str, ...]:
    """The exception's rule IDs no rule has: refused, never taken as broader than written."""
    return tuple(sorted(exception.rules - set(known)))
