"""Kubernetes Events for admission decisions, posted off the hot path.

``record`` is called synchronously by the admission service and only enqueues; a worker task
posts. Identical events within ``DEDUPE_SECONDS`` are posted once, and a full queue drops
(counted in ``modelward_events_dropped_total``) rather than slowing admission down.

The rate is bounded fairly (``EventBudgets``): one global token bucket caps what the process
posts, and every Event must also get a token from its object's own bucket and, for objects in
a namespace, from that namespace's bucket (a policy's Events from that policy's bucket).
A tenant who floods denials for one object, or for many objects of their namespace, uses up
their own budget, never everyone's: Events about other objects, namespaces and policies are
still posted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from modelward.controller.kube import KubeApi
from modelward.engine import Decision, Finding, PolicyRef, Subject
from modelward.observability.metrics import Metrics

log = logging.getLogger("modelward.events")

DEDUPE_SECONDS = 300.0
QUEUE_SIZE = 1000
MAX_RULES_IN_MESSAGE = 8

REASONS = {"denied": "PolicyViolation", "warned": "PolicyViolation", "patched": "PolicyPatched"}
API_VERSIONS = {
    "Pod": "v1",
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "ReplicaSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
    "Ingress": "networking.k8s.io/v1",
    "ReplicationController": "v1",
}


POLICY_KINDS = ("ClusterModelPolicy", "ModelPolicy")
#: Each object's budget: a few Events at once, then one every 5 s (dedupe drops repeats).
OBJECT_BURST = 5
OBJECT_RATE = 0.2
#: A namespace's (or a policy's) share of the global budget.
SHARE = 5
#: Buckets kept per class before the full (idle) ones are forgotten.
MAX_BUCKETS = 10_000


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def available(self) -> bool:
        self._refill()
        return self.tokens >= 1

    @property
    def full(self) -> bool:
        self._refill()
        return self.tokens >= self.capacity

    def take(self) -> bool:
        if self.available():
            self.tokens -= 1
            return True
        return False


class BucketMap:
    """Token buckets by key, created on first use; idle (full) ones are forgotten."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.buckets: dict[tuple[str, ...], TokenBucket] = {}

    def get(self, key: tuple[str, ...]) -> TokenBucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= MAX_BUCKETS:
                self.buckets = {k: b for k, b in self.buckets.items() if not b.full}
                while len(self.buckets) >= MAX_BUCKETS:  # all busy: forget the oldest
                    del self.buckets[next(iter(self.buckets))]
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket


class EventBudgets:
    """Global cap, plus per-object and per-namespace budgets, so that no one starves the rest."""

    def __init__(self, rate: float, burst: int) -> None:
        self.total = TokenBucket(rate, burst)
        self.objects = BucketMap(min(OBJECT_RATE, rate), min(OBJECT_BURST, burst))
        self.namespaces = BucketMap(rate / SHARE, max(OBJECT_BURST, burst // SHARE))
        self.policies = BucketMap(rate / SHARE, max(OBJECT_BURST, burst // SHARE))

    def take(self, namespace: str, involved: Mapping[str, Any]) -> bool:
        """One token from every budget the Event counts against, or none at all."""
        kind = str(involved.get("kind"))
        key = (namespace, kind, str(involved.get("name")))
        buckets = [self.total]
        if kind in POLICY_KINDS:
            buckets.append(self.policies.get(key))
        else:
            buckets += [self.objects.get(key), self.namespaces.get((namespace,))]
        if not all(bucket.available() for bucket in buckets):
            return False
        for bucket in buckets:
            bucket.take()
        return True


def _outcome(findings: list[Finding]) -> str:
    if any(f.blocks for f in findings):
        return "denied"
    return "patched" if any(f.patches for f in findings) else "warned"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Implements the admission service's ``DecisionRecorder``."""

    def __init__(
        self,
        *,
        kube: KubeApi | None,
        metrics: Metrics,
        component: str,
        instance: str,
        rate: float,
        burst: int,
    ) -> None:
        self.kube = kube
        self.metrics = metrics
        self.component = component
        self.instance = instance
        self.budgets = EventBudgets(rate, burst)
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(QUEUE_SIZE)
        self.recent: dict[tuple[Hashable, ...], float] = {}
        self.counts: dict[PolicyRef, Counter[str]] = {}
        self.dirty: set[PolicyRef] = set()

    # -- called on the admission path ------------------------------------------------------------

    def record(self, subject: Subject, decision: Decision, *, outcome: str) -> None:
        by_policy: dict[PolicyRef, list[Finding]] = {}
        for finding in decision.findings:
            by_policy.setdefault(finding.policy, []).append(finding)
        # Each policy is credited with what its own findings did: an Audit policy's findings
        # are warnings even when another policy denied the object.
        policy_outcomes = {policy: _outcome(findings) for policy, findings in by_policy.items()}
        for policy, policy_outcome in policy_outcomes.items():
            self.counts.setdefault(policy, Counter())[policy_outcome] += 1
            self.dirty.add(policy)
        involved = {
            "apiVersion": API_VERSIONS.get(subject.kind, "v1"),
            "kind": subject.kind,
            "namespace": subject.namespace,
            "name": subject.name,
            **({"uid": subject.uid} if subject.uid else {}),
        }
        reason = REASONS.get(outcome, "PolicyViolation")
        kind = "Normal" if outcome == "patched" else "Warning"
        shown = decision.findings[:MAX_RULES_IN_MESSAGE]

        def text() -> str:
            summary = "; ".join(f.short() for f in shown)
            if len(decision.findings) > MAX_RULES_IN_MESSAGE:
                summary += f"; and {len(decision.findings) - MAX_RULES_IN_MESSAGE} more"
            return f"{outcome}: {summary}"

        # The same decision about the same object within the dedupe window posts nothing: its
        # identity (what ``text`` is made of) is the key, so the text is built only when posted.
        identity = (
            outcome,
            len(decision.findings),
            *(
                (f.policy, f.mode, f.violation.rule_id, f.violation.container, f.violation.message)
                for f in shown
            ),
        )
        self.post(subject.namespace, involved, reason, kind, text, identity=identity)
        for policy, findings in by_policy.items():
            unique = sorted({f.violation.rule_id for f in findings})
            policy_outcome = policy_outcomes[policy]
            policy_obj = {
                "apiVersion": "modelward.io/v1alpha1",
                "kind": policy.kind,
                "name": policy.name,
                **({"namespace": policy.namespace} if policy.namespace else {}),
            }
            message = f"{subject} {policy_outcome}: {', '.join(unique)}"
            self.post(
                policy.namespace or "default",
                policy_obj,
                REASONS[policy_outcome],
                "Normal" if policy_outcome == "patched" else "Warning",
                message,
            )

    def post(
        self,
        namespace: str,
        involved: Mapping[str, Any],
        reason: str,
        kind: str,
        message: str | Callable[[], str],
        *,
        action: str = "Admission",
        identity: Hashable = None,
    ) -> None:
        """Queue an Event: deduplicated, rate limited, posted by ``run``.

        ``message`` may be a function, called only when the Event is posted; then
        ``identity`` stands for it in the dedupe key (two messages with the same identity
        must be the same text).
        """
        if callable(message):
            if identity is None:
                raise TypeError("a lazy message needs an identity for deduplication")
            distinct: Hashable = identity
        else:
            distinct = message
        key = (namespace, str(involved.get("kind")), str(involved.get("name")), reason, distinct)
        now = time.monotonic()
        if now - self.recent.get(key, -DEDUPE_SECONDS) < DEDUPE_SECONDS:
            return
        if self.queue.full() or not self.budgets.take(namespace, involved):
            self.metrics.events_dropped.inc()
            return
        self.recent[key] = now
        if callable(message):
            message = message()
        if len(self.recent) > 10_000:
            cutoff = now - DEDUPE_SECONDS
            self.recent = {k: t for k, t in self.recent.items() if t > cutoff}
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{involved.get('name')}.{secrets.token_hex(8)}"[-253:].lstrip(".-"),
                "namespace": namespace,
            },
            "involvedObject": dict(involved),
            "reason": reason,
            "message": message[:1024],
            "type": kind,
            "firstTimestamp": _now(),
            "lastTimestamp": _now(),
            "count": 1,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
            "action": action,
        }
        self.queue.put_nowait((namespace, event))

    # -- the worker ----------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            namespace, event = await self.queue.get()
            if self.kube is None:
                continue
            try:
                await asyncio.to_thread(self.kube.create_event, namespace, event)
                self.metrics.events_posted.labels(event["reason"]).inc()
            except Exception as exc:
                self.metrics.event_errors.inc()
                log.warning("could not post event %s in %s: %s", event["reason"], namespace, exc)

    def take_counts(self) -> dict[PolicyRef, dict[str, int]]:
        """Counts of the policies that changed since the last call."""
        changed = {p: dict(self.counts[p]) for p in self.dirty}
        self.dirty.clear()
        return changed
