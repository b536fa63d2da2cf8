"""AdmissionReview v1 wire format: parsing requests and building responses.

This is the one place where errors become AdmissionReview statuses.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import orjson

from modelward.errors import ReviewError

MAX_WARNINGS = 10
MAX_WARNING_LENGTH = 240  # the API server truncates longer warnings
MAX_MESSAGE_LENGTH = 4000


class GroupVersionKind(TypedDict):
    group: str
    version: str
    kind: str


class AdmissionRequestWire(TypedDict):
    uid: str
    kind: GroupVersionKind
    operation: str
    namespace: NotRequired[str]
    name: NotRequired[str]
    subResource: NotRequired[str]
    object: NotRequired[dict[str, Any] | None]
    oldObject: NotRequired[dict[str, Any] | None]
    dryRun: NotRequired[bool]
    userInfo: NotRequired[dict[str, Any]]


class StatusWire(TypedDict, total=False):
    code: int
    message: str
    reason: str


class AdmissionResponseWire(TypedDict):
    uid: str
    allowed: bool
    status: NotRequired[StatusWire]
    patchType: NotRequired[str]
    patch: NotRequired[str]
    warnings: NotRequired[list[str]]


class AdmissionReviewWire(TypedDict):
    apiVersion: str
    kind: str
    response: AdmissionResponseWire


@dataclass(frozen=True)
class ReviewRequest:
    """The parts of an AdmissionRequest modelward reads."""

    uid: str
    kind: str
    operation: str
    namespace: str
    name: str
    sub_resource: str
    obj: Mapping[str, Any] | None
    old_obj: Mapping[str, Any] | None
    dry_run: bool
    #: Who sent the request, as the API server authenticated them (``request.userInfo``).
    username: str = ""
    groups: tuple[str, ...] = ()


def parse_review(body: bytes) -> ReviewRequest:
    """Parse an AdmissionReview v1 request; ``ReviewError`` names what is wrong."""
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc) or "recursion" in str(exc):
            # orjson refuses past 1024 levels; no Kubernetes object nests this deep.
            raise ReviewError(
                "the body nests JSON too deeply to parse",
                fix="send an AdmissionReview whose object nests fewer than a few hundred levels",
            ) from exc
        raise ReviewError(
            f"the body is not JSON: {exc}", fix="send an admission.k8s.io/v1 AdmissionReview"
        ) from exc
    if not isinstance(review, dict):
        raise ReviewError("the body is not a JSON object", fix="send an AdmissionReview object")
    if review.get("apiVersion") != "admission.k8s.io/v1" or review.get("kind") != "AdmissionReview":
        raise ReviewError(
            f"expected admission.k8s.io/v1 AdmissionReview, got "
            f"{review.get('apiVersion')!r} {review.get('kind')!r}",
            fix="set admissionReviewVersions: [v1] in the webhook configuration",
        )
    request = review.get("request")
    if not isinstance(request, dict):
        raise ReviewError(
            "the AdmissionReview has no request", fix="send request.uid and request.object"
        )
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ReviewError("request.uid is missing", fix="send the request's uid")
    kind = request.get("kind")
    operation = request.get("operation")
    if not isinstance(kind, dict) or not isinstance(kind.get("kind"), str):
        raise ReviewError("request.kind is missing", fix="send request.kind {group, version, kind}")
    if operation not in ("CREATE", "UPDATE", "DELETE", "CONNECT"):
        raise ReviewError(
            f"request.operation {operation!r} is not an admission operation",
            fix="use CREATE, UPDATE, DELETE or CONNECT",
        )
    obj = request.get("object")
    old = request.get("oldObject")
    if obj is not None and not isinstance(obj, dict):
        raise ReviewError("request.object is not an object", fix="send the object as JSON")
    if old is not None and not isinstance(old, dict):
        raise ReviewError("request.oldObject is not an object", fix="send the object as JSON")
    user = request.get("userInfo")
    if not isinstance(user, dict):
        user = {}
    groups = user.get("groups")
    if not isinstance(groups, list):
        groups = []
    return ReviewRequest(
        uid=uid,
        kind=kind["kind"],
        operation=operation,
        namespace=str(request.get("namespace") or ""),
        name=str(request.get("name") or ""),
        sub_resource=str(request.get("subResource") or ""),
        obj=obj,
        old_obj=old,
        dry_run=bool(request.get("dryRun", False)),
        username=str(user.get("username") or ""),
        groups=tuple(str(g) for g in groups if isinstance(g, str)),
    )


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: AdmissionReview status reasons (metav1.StatusReason) for the codes modelward answers with.
REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    408: "Timeout",
    413: "RequestEntityTooLarge",
    429: "TooManyRequests",
    500: "InternalError",
    504: "Timeout",
}


def review_response(
    uid: str,
    *,
    allowed: bool,
    message: str | None = None,
    code: int | None = None,
    patch: Sequence[Mapping[str, Any]] | None = None,
    warnings: Sequence[str] = (),
) -> AdmissionReviewWire:
    response: AdmissionResponseWire = {"uid": uid, "allowed": allowed}
    if message is not None or code is not None:
        status: StatusWire = {"code": code or (200 if allowed else 403)}
        if message:
            status["message"] = _truncate(message, MAX_MESSAGE_LENGTH)
        if not allowed:
            status["reason"] = REASONS.get(code or 403, "BadRequest")
        response["status"] = status
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(list(patch))).decode()
    if warnings:
        shown = [_truncate(w, MAX_WARNING_LENGTH) for w in warnings[:MAX_WARNINGS]]
        if len(warnings) > MAX_WARNINGS:
            shown.append(f"modelward: {len(warnings) - MAX_WARNINGS} more warnings not shown")
        response["warnings"] = shown
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
