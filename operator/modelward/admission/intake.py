"""What a review must satisfy before it is evaluated: the engine can judge it, and it is small
enough that judging it cannot starve the other reviews.

Both checks are cheap (a few lookups and one pass over the container lists) and run on the
event loop before a review takes an evaluation slot. A request that fails them is denied with a
message naming the problem and the fix; it is never admitted unjudged.

Not judged here, and so still admitted without evaluation (as the service decides): DELETE and
CONNECT, subresource requests (``scale``, ``status``: the object sent is not the workload), and
kinds the engine does not handle (the webhook configurations never send them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelward.admission.review import ReviewRequest
from modelward.engine.rules.transport import EXPOSURE_KINDS
from modelward.engine.workloads import CONTAINER_LISTS, TEMPLATE_POINTERS

#: Exposures (Services, Ingresses, Gateway API routes) are judged on their spec; the rest on
#: the pod template the workload abstraction points at.
EXPOSURE_KIND_NAMES = frozenset(kind for _, kind in EXPOSURE_KINDS)
JUDGED_KINDS = frozenset({*TEMPLATE_POINTERS, *EXPOSURE_KIND_NAMES})
#: Subresources whose request object is the pod itself (judged on what it adds).
POD_SUBRESOURCES = frozenset({"ephemeralcontainers"})
MiB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class ReviewLimits:
    """Bounds per review. The defaults sit well above real pods and below what makes one
    review cost others: the API server refuses request bodies above 3 MiB and etcd stores at
    most 1.5 MiB per object, so a larger object is only ever a dry run."""

    #: Bytes of the AdmissionReview per object it carries (an UPDATE carries two).
    max_object_bytes: int = 3 * MiB
    #: Containers, init containers and ephemeral containers together.
    max_containers: int = 100
    #: ``env`` and ``envFrom`` entries over all containers.
    max_env: int = 2000
    max_volumes: int = 500


@dataclass(frozen=True)
class Refusal:
    """Why a review is answered without evaluation; ``label`` is its metric decision."""

    label: str
    code: int
    message: str


def _unjudgeable(request: ReviewRequest, reason: str, fix: str) -> Refusal:
    return Refusal(
        "unjudgeable",
        400,
        f"modelward cannot judge {request.kind} {request.namespace}/{request.name}: {reason}, "
        f"so it is refused. Fix: {fix}.",
    )


def _too_large(request: ReviewRequest, what: str, count: int, limit: int, fix: str) -> Refusal:
    return Refusal(
        "too_large",
        413,
        f"modelward refused {request.kind} {request.namespace}/{request.name}: it has {count} "
        f"{what}, more than the {limit} modelward judges per object. Fix: {fix}.",
    )


def _is_judged(request: ReviewRequest) -> bool:
    if request.operation not in ("CREATE", "UPDATE") or request.kind not in JUDGED_KINDS:
        return False
    return not request.sub_resource or (
        request.kind == "Pod" and request.sub_resource in POD_SUBRESOURCES
    )


def _pod_spec(request: ReviewRequest, obj: Mapping[str, Any]) -> Mapping[str, Any] | Refusal:
    node: Any = obj
    path = ""
    for token in TEMPLATE_POINTERS[request.kind]:
        node = node.get(token)
        path += f".{token}"
        if not isinstance(node, Mapping):
            return _unjudgeable(
                request, f"{path[1:]} is not an object", f"send a {request.kind} with {path[1:]}"
            )
    spec = node.get("spec")
    where = f"{path[1:]}.spec" if path else "spec"
    if not isinstance(spec, Mapping):
        return _unjudgeable(request, f"{where} is not an object", f"send a pod spec in {where}")
    return spec


def check_review(
    request: ReviewRequest, *, body_bytes: int, limits: ReviewLimits
) -> Refusal | None:
    """A ``Refusal`` for a request the engine must judge but cannot, or that is too large."""
    if not _is_judged(request):
        return None
    objects = 1 + (request.old_obj is not None)
    if body_bytes > limits.max_object_bytes * objects:
        return _too_large(
            request,
            f"bytes in its AdmissionReview ({objects} object{'s' if objects > 1 else ''})",
            body_bytes,
            limits.max_object_bytes * objects,
            "shrink the object (large data belongs in a ConfigMap or volume)",
        )
    obj = request.obj
    if not obj:
        return _unjudgeable(request, "the request carries no object", "send request.object")
    if obj.get("kind") != request.kind:
        return _unjudgeable(
            request,
            f"request.kind is {request.kind!r} but the object's kind is {obj.get('kind')!r}",
            "send the object the request names",
        )
    if request.kind in EXPOSURE_KIND_NAMES:
        if not isinstance(obj.get("spec"), Mapping):
            return _unjudgeable(
                request, "spec is not an object", f"send a {request.kind} with a spec"
            )
        return None
    spec = _pod_spec(request, obj)
    if isinstance(spec, Refusal):
        return spec
    return _count(request, spec, limits)


def _count(request: ReviewRequest, spec: Mapping[str, Any], limits: ReviewLimits) -> Refusal | None:
    lists = [spec.get(name) for name in CONTAINER_LISTS]
    for name, value in zip(CONTAINER_LISTS, lists, strict=True):
        if value is not None and not isinstance(value, list):
            return _unjudgeable(request, f"{name} is not a list", f"send {name} as a list")
    containers = sum(len(value) for value in lists if value)
    if containers > limits.max_containers:
        return _too_large(
            request,
            "containers (init and ephemeral included)",
            containers,
            limits.max_containers,
            "split the workload into several pods",
        )
    env = 0
    for value in lists:
        for container in value or ():
            if isinstance(container, Mapping):
                for field in ("env", "envFrom"):
                    entries = container.get(field)
                    env += len(entries) if isinstance(entries, list) else 0
    if env > limits.max_env:
        return _too_large(
            request,
            "environment entries (env and envFrom over all containers)",
            env,
            limits.max_env,
            "move configuration into a ConfigMap mounted as a file",
        )
    volumes = spec.get("volumes")
    if isinstance(volumes, list) and len(volumes) > limits.max_volumes:
        return _too_large(
            request, "volumes", len(volumes), limits.max_volumes, "mount fewer, larger volumes"
        )
    return None
