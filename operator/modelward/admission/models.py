"""OCI models verified at admission, recorded in the DeployedModel inventory.

The in-pod verifier records each model it verified (``controller/verifications.py``); a model
verified at admission (MW-IMG-023, an image volume or modelcar by digest) is recorded the same
way, under the same name (its OpenSSF Model Signing subject digest), so the inventory lists
it before any pod ran, and the pod's own verification later adds to the same object.

Recorded only for reviews that were admitted, not dry runs, and for models whose signature a
signer of a selecting policy verified. The record key names the workload and the digest, so
a re-applied workload, another replica or a retry never counts it twice
(``KubeApi.upsert_deployed_model``). Writes happen after the answer, in a thread; a failure
is logged, never turned into a denial.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from modelward.admission.review import ReviewRequest
from modelward.engine import UnsupportedKind, workload_from_object
from modelward.engine.facts import ImageLookups
from modelward.engine.rules.image_trust import trust_images
from modelward.state import ClusterState

log = logging.getLogger("modelward.admission.models")


class ModelInventory(Protocol):
    """Writes DeployedModels (the controller's ``KubeApi``); called in a thread."""

    def upsert_deployed_model(self, namespace: str, update: Mapping[str, Any]) -> bool: ...


def inventory_updates(
    request: ReviewRequest, images: ImageLookups, state: ClusterState
) -> list[dict[str, Any]]:
    """The DeployedModel updates an admitted request contributes (pure, but for the state)."""
    obj = request.obj
    if obj is None or request.dry_run or request.operation not in ("CREATE", "UPDATE"):
        return []
    try:
        workload = workload_from_object(obj, namespace=request.namespace)
    except UnsupportedKind:
        return []
    namespace = state.namespace(workload.namespace)
    now = dt.datetime.fromtimestamp(images.now or 0, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    updates: dict[str, dict[str, Any]] = {}
    for policy in state.active_policies:
        section = policy.images
        models = section.models if section is not None else None
        if section is None or models is None or not models.verify_at_admission:
            continue
        if not policy.applies_to(namespace, workload.labels):
            continue
        for image in trust_images(workload, section):
            facts = images.get(image.reference) if image.is_model else None
            model = facts.trust.model if facts is not None and facts.trust is not None else None
            if model is None or not model.model_digest:
                continue
            if not model.verified_by & models.signer_ids:
                continue
            record = f"admission/{workload.kind}/{workload.name}/{model.model_digest}"
            updates.setdefault(
                model.model_digest,
                {
                    "digest": model.model_digest,
                    "signer": model.signer,
                    "files": model.files,
                    "scan": "skipped",
                    "lastResult": "verified",
                    "lastSeen": now,
                    "policy": str(policy.ref),
                    "record": record,
                    "workload": {"kind": workload.kind, "name": workload.name},
                },
            )
    return list(updates.values())


class AdmittedModels:
    """Records the models an admitted review verified, after the answer was sent."""

    def __init__(self, *, state: ClusterState, inventory: ModelInventory | None) -> None:
        self.state = state
        self.inventory = inventory
        self._tasks: set[asyncio.Task[None]] = set()

    def admitted(self, request: ReviewRequest, images: ImageLookups | None) -> None:
        """Schedule the inventory writes for an admitted request (non-blocking)."""
        if self.inventory is None or images is None:
            return
        updates = inventory_updates(request, images, self.state)
        if not updates:
            return
        task = asyncio.ensure_future(self._write(str(request.namespace or ""), updates))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, namespace: str, updates: list[dict[str, Any]]) -> None:
        assert self.inventory is not None
        for update in updates:
            try:
                await asyncio.to_thread(self.inventory.upsert_deployed_model, namespace, update)
            except Exception as error:  # the API server is down, RBAC is missing
                log.warning("could not record model %s: %s", update["digest"], error)
