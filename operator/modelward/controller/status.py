"""Policy status: Ready (or why not), observedGeneration, enabled rules, decision counts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from modelward.controller.events import EventRecorder
from modelward.controller.kube import KubeApi
from modelward.controller.observe import PolicyKey, desired_status, status_differs
from modelward.observability.metrics import Metrics
from modelward.state import ClusterState

log = logging.getLogger("modelward.status")


class PolicyStatusWriter:
    def __init__(
        self, *, state: ClusterState, kube: KubeApi, recorder: EventRecorder, metrics: Metrics
    ) -> None:
        self.state = state
        self.kube = kube
        self.recorder = recorder
        self.metrics = metrics
        self.written: dict[PolicyKey, dict[str, Any]] = {}
        self.counts: dict[PolicyKey, dict[str, int]] = {}

    def refresh_gauge(self) -> None:
        self.metrics.policies.clear()
        for (kind, _, _), entry in self.state.policies.items():
            ready = "true" if entry.error is None else "false"
            self.metrics.policies.labels(kind, ready).inc()

    async def sync(self, key: PolicyKey, current: Mapping[str, Any] | None) -> None:
        """Patch the policy's status if it differs from what it should be."""
        entry = self.state.policies.get(key)
        if entry is None:
            self.written.pop(key, None)
            self.refresh_gauge()
            return
        previous = current if current is not None else self.written.get(key)
        desired = desired_status(entry, counts=self.counts.get(key, {}), previous=previous)
        self.refresh_gauge()
        if not status_differs(previous, desired):
            return
        kind, namespace, name = key
        try:
            await asyncio.to_thread(self.kube.patch_policy_status, kind, namespace, name, desired)
            self.written[key] = desired
        except Exception as exc:
            log.warning("could not update the status of %s %s: %s", kind, name, exc)

    async def set_current(self, key: PolicyKey, count: int) -> None:
        """Pods that break the policy now (from the background audit)."""
        counts = self.counts.setdefault(key, {})
        if counts.get("current") != count:
            counts["current"] = count
            await self.sync(key, None)

    async def run(self, interval: float = 5.0) -> None:
        """Fold the recorder's decision counts into the policies' status, periodically."""
        while True:
            await asyncio.sleep(interval)
            for ref, counts in self.recorder.take_counts().items():
                key: PolicyKey = (ref.kind, ref.namespace, ref.name)
                self.counts.setdefault(key, {}).update(counts)
                await self.sync(key, None)
