"""Admission decisions: which objects are judged, how, and what the answer says.

- DELETE and CONNECT are never judged; neither is an UPDATE that leaves the pod template alone
  (scaling, to zero included; status, labels on the workload itself).
- Workloads are judged on the whole new template, so ``kubectl apply`` of a bad Deployment is
  refused at once. A Pod UPDATE (a new image, an annotation, an ephemeral container) is judged
  on what it adds (``evaluate_pod_update``): violations the running pod already had cannot be
  fixed by an update and do not block it; those it introduces are fixed only where the update
  can carry the fix (a new ephemeral container's spec) and denied otherwise, in Patch mode
  too; the model declaration, keys and verifier stay as admitted (MW-INT-006).
  Services, Ingresses and routes (exposures) are judged the same way on UPDATE.
- Validation denies Enforce findings and Patch findings that have no safe fix; mutation applies
  the safe fixes of Patch findings on CREATE, on workload UPDATEs and to the ephemeral
  containers a Pod UPDATE adds; Audit findings become admission warnings. Both webhooks
  answer the same engine, so a fix that another mutating webhook undoes is still caught by
  validation.
- Policy exceptions reach the engine as facts with the service's clock: a finding a matching,
  unexpired exception covers is admitted with a warning naming it, and neither denied, patched
  nor recorded; ModelPolicyExceptions themselves go to ``admission/exceptions.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from modelward.admission.exceptions import mutate_exception, validate_exception
from modelward.admission.review import AdmissionReviewWire, ReviewRequest, review_response
from modelward.engine import (
    Decision,
    Finding,
    Policy,
    Subject,
    UnsupportedKind,
    evaluate_exposure,
    evaluate_pod_update,
    evaluate_workload,
    is_exposure,
    workload_from_object,
)
from modelward.engine.exceptions import DEFAULT_MAX_LIFETIME, EXCEPTION_KIND, Exceptions
from modelward.engine.facts import ImageLookups
from modelward.engine.patches import remedies_to_json_patch
from modelward.engine.rbac import RbacParseError, parse_binding, parse_role
from modelward.engine.rules import RULES
from modelward.engine.rules.access import (
    BINDING_KINDS,
    evaluate_binding,
    evaluate_role,
    is_rbac_object,
)
from modelward.state import ClusterState

PROBE_LABEL = "modelward.io/probe"
MAX_LISTED = 10


class DecisionRecorder(Protocol):
    """Where decisions go after the answer: Events, policy status counters."""

    def record(self, subject: Subject, decision: Decision, *, outcome: str) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """An answer and the label it is counted under (allowed, denied, patched, warned)."""

    review: AdmissionReviewWire
    label: str
    decision: Decision | None = None


def _template(obj: Mapping[str, Any] | None, request: ReviewRequest) -> Any:
    if obj is None:
        return None
    try:
        w = workload_from_object(obj, namespace=request.namespace)
    except UnsupportedKind:
        return None
    return (w.pod_spec, w.labels, w.annotations)


def _without_fixes(decision: Decision) -> Decision:
    """The same findings with no remedies: in Patch mode they are denied, not patched."""
    return Decision(
        tuple(
            dataclasses.replace(f, violation=dataclasses.replace(f.violation, remedies=()))
            for f in decision.findings
        )
    )


def _with_namespace(obj: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """The object's metadata with the request's namespace (a create request may omit it)."""
    return {**(obj.get("metadata") or {}), "namespace": namespace}


def subject_of(request: ReviewRequest) -> Subject:
    meta = (request.obj or {}).get("metadata") or {}
    name = request.name or meta.get("name") or meta.get("generateName") or "unnamed"
    # Events about a cluster-scoped object (a ClusterRoleBinding) go to "default", as
    # Kubernetes' own do.
    namespace = request.namespace or "default"
    return Subject(request.kind, namespace, str(name), meta.get("uid"))


def _denial_message(request: ReviewRequest, denials: tuple[Finding, ...]) -> str:
    name = request.name or ((request.obj or {}).get("metadata") or {}).get("generateName", "")
    head = (
        f"modelward denied {request.kind} {request.namespace}/{name}: "
        f"{len(denials)} violation{'s' if len(denials) != 1 else ''}"
    )
    lines = [f"- {f.describe()}" for f in denials[:MAX_LISTED]]
    if len(denials) > MAX_LISTED:
        lines.append(f"- ... and {len(denials) - MAX_LISTED} more")
    return "\n".join([head, *lines])


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AdmissionService:
    def __init__(
        self,
        *,
        state: ClusterState,
        recorder: DecisionRecorder | None = None,
        max_exception_lifetime: dt.timedelta = DEFAULT_MAX_LIFETIME,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        """``clock`` is when exceptions are judged (injectable for tests)."""
        self.state = state
        self.recorder = recorder
        self.max_exception_lifetime = max_exception_lifetime
        self.clock = clock

    def _exceptions(self) -> Exceptions:
        return Exceptions(
            self.state.exceptions, now=self.clock(), max_lifetime=self.max_exception_lifetime
        )

    def _probe(self, request: ReviewRequest) -> AdmissionReviewWire | None:
        labels = ((request.obj or {}).get("metadata") or {}).get("labels") or {}
        if labels.get(PROBE_LABEL) == "deny":
            return review_response(
                request.uid,
                allowed=False,
                code=403,
                message="modelward probe: the webhook is serving (objects labelled "
                f"{PROBE_LABEL}=deny are always denied)",
            )
        return None

    def _decide(
        self, request: ReviewRequest, images: ImageLookups | None = None
    ) -> Decision | None:
        """The decision for a request, or None when there is nothing to judge; ``images``
        are the registry facts gathered before (``admission/images.py``)."""
        if request.operation not in ("CREATE", "UPDATE") or request.obj is None:
            return None
        policies = self.state.active_policies
        if not policies:
            return None
        if is_exposure(request.obj):
            return self._decide_exposure(request, request.obj, policies)
        if is_rbac_object(request.obj):
            return self._decide_rbac(request, request.obj, policies)
        try:
            workload = workload_from_object(request.obj, namespace=request.namespace)
        except UnsupportedKind:
            return None
        # Only the policies that may select a pod in this namespace (indexed by namespace).
        policies = self.state.policies_for(self.state.namespace(workload.namespace))
        if not policies:
            return None
        if request.operation == "UPDATE":
            if _template(request.old_obj, request) == (
                workload.pod_spec,
                workload.labels,
                workload.annotations,
            ):
                return None
            if workload.kind == "Pod":
                if request.old_obj is None:
                    # The API server always sends oldObject on UPDATE; without it nothing can
                    # be fixed in place, so nothing is offered as a fix.
                    return _without_fixes(
                        evaluate_workload(
                            workload,
                            self.state,
                            policies,
                            exceptions=self._exceptions(),
                            images=images,
                        )
                    )
                old = workload_from_object(request.old_obj, namespace=request.namespace)
                return evaluate_pod_update(
                    old,
                    workload,
                    self.state,
                    policies,
                    exceptions=self._exceptions(),
                    images=images,
                )
        return evaluate_workload(
            workload, self.state, policies, exceptions=self._exceptions(), images=images
        )

    def _decide_exposure(
        self, request: ReviewRequest, obj: Mapping[str, Any], policies: tuple[Policy, ...]
    ) -> Decision:
        """An exposure is judged whole on CREATE, and on UPDATE by what the update adds: an
        exposure admitted before a policy existed must still take its controllers' updates
        (a cloud controller removing its load-balancer finalizer on deletion, say)."""

        exceptions = self._exceptions()

        def judge(o: Mapping[str, Any]) -> Decision:
            body = {**o, "metadata": _with_namespace(o, request.namespace)}
            return evaluate_exposure(body, self.state, policies, exceptions=exceptions)

        decision = judge(obj)
        if request.operation == "UPDATE" and request.old_obj is not None:
            return decision.only_new(judge(request.old_obj))
        return decision

    def _remember_rbac(self, request: ReviewRequest) -> None:
        """Put an admitted RBAC object into the cache at once (see ``put_admitted_rbac``)."""
        obj = request.obj
        if request.dry_run or obj is None or not is_rbac_object(obj):
            return
        body = {**obj, "metadata": _with_namespace(obj, request.namespace)}
        try:
            fact = parse_binding(body) if obj.get("kind") in BINDING_KINDS else parse_role(body)
        except RbacParseError:
            return  # the watch brings what the API server stored
        if fact.kind in ("ClusterRole", "ClusterRoleBinding"):
            fact = dataclasses.replace(fact, namespace="")
        self.state.put_admitted_rbac(fact)

    def _decide_rbac(
        self, request: ReviewRequest, obj: Mapping[str, Any], policies: tuple[Policy, ...]
    ) -> Decision:
        """Access rules (MW-ACC-*): a binding is judged on the subjects and permissions it
        adds, a role change on what it adds to the subjects already bound to it."""

        def body(o: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
            if o is None:
                return None
            if request.namespace and obj.get("kind") in ("Role", "RoleBinding"):
                return {**o, "metadata": _with_namespace(o, request.namespace)}
            return o

        judge = evaluate_binding if obj.get("kind") in BINDING_KINDS else evaluate_role
        names = sorted(self.state.namespaces)
        return judge(
            body(obj) or {},
            body(request.old_obj) if request.operation == "UPDATE" else None,
            snapshot=self.state.rbac_snapshot(),
            namespaces=[self.state.namespace(n) for n in names],
            policies=policies,
        )

    def _record(self, request: ReviewRequest, decision: Decision, outcome: str) -> None:
        if self.recorder is not None and not request.dry_run and decision.findings:
            self.recorder.record(subject_of(request), decision, outcome=outcome)

    def _validate_exception(self, request: ReviewRequest) -> Outcome:
        review = validate_exception(
            request,
            now=self.clock(),
            max_lifetime=self.max_exception_lifetime,
            known_rules=RULES,
        )
        return Outcome(review, "allowed" if review["response"]["allowed"] else "denied")

    def validate(self, request: ReviewRequest, *, images: ImageLookups | None = None) -> Outcome:
        probe = self._probe(request)
        if probe is not None:
            return Outcome(probe, "denied")
        if request.kind == EXCEPTION_KIND:
            return self._validate_exception(request)
        judged = self._decide(request, images)
        if judged is None:
            return Outcome(review_response(request.uid, allowed=True), "allowed")
        # Waived findings are told (a warning naming the exception), never counted or denied.
        waived = [
            f"modelward: [{f.violation.rule_id}] {f.exception_notes[0]} (policy {f.policy.label})"
            for f in judged.waived
        ]
        decision = judged.without_waived()
        warnings = [f"modelward: {f.short()}" for f in decision.warnings] + waived
        if decision.denials:
            self._record(request, decision, "denied")
            review = review_response(
                request.uid,
                allowed=False,
                code=403,
                message=_denial_message(request, decision.denials),
                warnings=warnings,
            )
            return Outcome(review, "denied", decision)
        self._record(request, decision, "warned" if warnings else "allowed")
        self._remember_rbac(request)
        return Outcome(
            review_response(request.uid, allowed=True, warnings=warnings),
            "warned" if warnings else "allowed",
            decision,
        )

    def mutate(self, request: ReviewRequest, *, images: ImageLookups | None = None) -> Outcome:
        if request.kind == EXCEPTION_KIND:
            review = mutate_exception(request)
            return Outcome(review, "patched" if "patch" in review["response"] else "allowed")
        decision = self._decide(request, images)
        if decision is None or not decision.fixes or request.obj is None:
            return Outcome(review_response(request.uid, allowed=True), "allowed")
        if decision.denials:
            # Validation will refuse the object with the whole list; patching it first would
            # only add noise (or make the API server reject a half-fixed object).
            return Outcome(review_response(request.uid, allowed=True), "allowed")
        workload = workload_from_object(request.obj, namespace=request.namespace)
        patch = remedies_to_json_patch(
            workload, (r for f in decision.fixes for r in f.violation.remedies)
        )
        if not patch:
            return Outcome(review_response(request.uid, allowed=True), "allowed")
        fixed = Decision(decision.fixes)
        self._record(request, fixed, "patched")
        warnings = [f"modelward patched: {f.patched()}" for f in decision.fixes]
        return Outcome(
            review_response(request.uid, allowed=True, patch=patch, warnings=warnings),
            "patched",
            fixed,
        )
