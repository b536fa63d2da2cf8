"""Admission of ModelPolicyExceptions themselves: what the CRD schema cannot check.

The CRD's CEL rules hold what is fixed (required fields, exact rule IDs, ``expiresAt`` after
``approvedAt``, at most 365 days). CEL in a CRD has no clock and no access to settings, so the
cluster's configured maximum lifetime (the chart's ``exceptions.maxLifetime``) is checked here,
against the time of the request, together with what only modelward knows (its rule IDs), and
who created the exception is recorded here:

- ``/mutate`` writes ``CREATOR_ANNOTATION`` on CREATE from the API server's ``userInfo`` (a
  value the requester sent is overwritten), and on UPDATE puts back the value the object had
  (so ``kubectl apply`` and server-side apply keep it without knowing about it);
- ``/validate`` refuses a CREATE whose annotation is not that user, and an UPDATE that changes
  it: a later mutating webhook, or a requester when the mutating webhook did not run, cannot
  forge who created an exception.

The engine does not rely on this webhook for the lifetime: it also bounds every exception by
the maximum lifetime after its ``creationTimestamp`` (``PolicyException.expiry``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from modelward.admission.review import AdmissionReviewWire, ReviewRequest, review_response
from modelward.engine.exceptions import (
    CREATOR_ANNOTATION,
    EXCEPTION_KIND,
    Creator,
    ExceptionError,
    lifetime_problem,
    parse_exception,
    parse_time,
    unknown_rules,
)
from modelward.engine.workloads import escape_pointer_token


def _annotation(obj: Mapping[str, Any] | None) -> str | None:
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    value = annotations.get(CREATOR_ANNOTATION) if isinstance(annotations, Mapping) else None
    return str(value) if value is not None else None


def expected_creator(request: ReviewRequest) -> str | None:
    """The annotation the object must carry after this request: the requester on CREATE,
    the old value (possibly none) on UPDATE."""
    if request.operation == "CREATE":
        return Creator(request.username, tuple(request.groups)).annotation()
    return _annotation(request.old_obj)


def creator_patch(request: ReviewRequest) -> list[dict[str, Any]]:
    """JSONPatch operations making the object's creator annotation what it must be."""
    if request.obj is None or request.operation not in ("CREATE", "UPDATE"):
        return []
    want = expected_creator(request)
    have = _annotation(request.obj)
    if want == have:
        return []
    path = "/metadata/annotations/" + escape_pointer_token(CREATOR_ANNOTATION)
    annotations = (request.obj.get("metadata") or {}).get("annotations")
    if want is None:
        return [{"op": "remove", "path": path}]
    if not isinstance(annotations, Mapping):
        return [{"op": "add", "path": "/metadata/annotations", "value": {CREATOR_ANNOTATION: want}}]
    return [{"op": "add", "path": path, "value": want}]


def _deny(request: ReviewRequest, message: str, code: int = 400) -> AdmissionReviewWire:
    return review_response(
        request.uid,
        allowed=False,
        code=code,
        message=f"modelward refused {EXCEPTION_KIND} {request.namespace}/{request.name}: {message}",
    )


def _spec(obj: Mapping[str, Any] | None) -> Any:
    return (obj or {}).get("spec")


def validate_exception(
    request: ReviewRequest,
    *,
    now: dt.datetime,
    max_lifetime: dt.timedelta,
    known_rules: Iterable[str],
) -> AdmissionReviewWire:
    """Allow or refuse a ModelPolicyException CREATE or UPDATE (see the module doc)."""
    if request.operation not in ("CREATE", "UPDATE") or request.obj is None:
        return review_response(request.uid, allowed=True)
    if _annotation(request.obj) != expected_creator(request):
        what = "created it" if request.operation == "CREATE" else "originally created it"
        return _deny(
            request,
            f"annotation {CREATOR_ANNOTATION} must record who {what}, as the API server "
            "authenticated them; modelward writes it. Fix: remove the annotation from your "
            "manifest (if this persists, modelward's mutating webhook is not running)",
            code=403,
        )
    if request.operation == "UPDATE" and _spec(request.obj) == _spec(request.old_obj):
        return review_response(request.uid, allowed=True)  # labels, finalizers: spec admitted
    meta = request.obj.get("metadata") or {}
    body = {
        **request.obj,
        "kind": EXCEPTION_KIND,
        "metadata": {**meta, "namespace": request.namespace or meta.get("namespace")},
    }
    try:
        exception = parse_exception(body)
        created = meta.get("creationTimestamp") if request.operation == "UPDATE" else None
        created_at = parse_time(created, "metadata.creationTimestamp") if created else None
    except ExceptionError as exc:
        return _deny(request, str(exc))
    unknown = unknown_rules(exception, known_rules)
    if unknown:
        return _deny(
            request,
            f"spec.rules names {', '.join(unknown)}, which no modelward rule has; an unknown "
            "ID is never taken to mean more. Fix: use the IDs in docs/rules.md",
        )
    problem = lifetime_problem(exception, now=now, max_lifetime=max_lifetime, created_at=created_at)
    if problem is not None:
        return _deny(request, problem)
    return review_response(request.uid, allowed=True)


def mutate_exception(request: ReviewRequest) -> AdmissionReviewWire:
    """Record (CREATE) or keep (UPDATE) the creator annotation."""
    patch = creator_patch(request)
    if not patch:
        return review_response(request.uid, allowed=True)
    return review_response(request.uid, allowed=True, patch=patch)
