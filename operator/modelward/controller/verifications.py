"""Verifier results from pod status into Events, metrics and the DeployedModel inventory.

The injected verifier writes its result as the termination message; the kubelet copies it to
``status.initContainerStatuses[].state.terminated.message``. Each (pod, container, restart)
result is recorded once. The message is parsed strictly: anything malformed is recorded as an
``error`` result with the reason, never trusted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from modelward.controller.events import EventRecorder
from modelward.controller.kube import KubeApi
from modelward.integrity.errors import IntegrityError
from modelward.integrity.result import VerifierResult, parse_termination_message
from modelward.observability.metrics import Metrics

log = logging.getLogger("modelward.verifications")

VERIFIER_PREFIX = "modelward-verify-"
SEEN_LIMIT = 50_000
POD_TEMPLATE_HASH = "pod-template-hash"


@dataclass(frozen=True)
class VerificationRecord:
    namespace: str
    pod: str
    pod_uid: str
    container: str
    result: VerifierResult
    workload: tuple[str, str]
    finished_at: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.pod_uid, self.container, self.finished_at)


def owning_workload(pod: Mapping[str, Any]) -> tuple[str, str]:
    """(kind, name) of the workload a pod belongs to; a ReplicaSet stands for its Deployment."""
    meta = pod.get("metadata") or {}
    owners = [o for o in meta.get("ownerReferences") or [] if o.get("controller")]
    if not owners:
        return ("Pod", str(meta.get("name", "")))
    kind, name = str(owners[0].get("kind")), str(owners[0].get("name"))
    template_hash = (meta.get("labels") or {}).get(POD_TEMPLATE_HASH)
    if kind == "ReplicaSet" and template_hash and name.endswith(f"-{template_hash}"):
        return ("Deployment", name.removesuffix(f"-{template_hash}"))
    if kind == "Job" and re.search(r"-\d{8,}$", name):
        return ("CronJob", re.sub(r"-\d{8,}$", "", name))
    return (kind, name)


def verifier_messages(pod: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(container, finishedAt, message) of every verifier that has terminated."""
    for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
        name = str(status.get("name", ""))
        if not name.startswith(VERIFIER_PREFIX):
            continue
        for state in (status.get("state"), status.get("lastState")):
            terminated = (state or {}).get("terminated")
            if terminated:
                yield (
                    name,
                    str(terminated.get("finishedAt", "")),
                    str(terminated.get("message") or ""),
                )
                break


RECORD_GRACE = dt.timedelta(minutes=2)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _finished(value: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class VerificationRecorder:
    """Records verifier results, once per cluster: only while ``is_leader()`` holds, and only
    results that finished after this replica became the leader (less a grace period), so that
    a restart or a new leader does not record the same verification again."""

    def __init__(
        self,
        *,
        kube: KubeApi | None,
        metrics: Metrics,
        events: EventRecorder,
        known_policies: Callable[[], set[str]] = set,
        leader_since: Callable[[], dt.datetime | None] = lambda: EPOCH,
    ) -> None:
        self.kube = kube
        self.metrics = metrics
        self.events = events
        self.known_policies = known_policies
        self.leader_since = leader_since
        self.seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    def new_records(self, pod: Mapping[str, Any]) -> list[VerificationRecord]:
        since = self.leader_since()
        if since is None:
            return []  # another replica records
        meta = pod.get("metadata") or {}
        records = []
        for container, finished_at, message in verifier_messages(pod):
            finished = _finished(finished_at)
            if finished is not None and finished < since - RECORD_GRACE:
                continue  # recorded before this replica led (or before a restart)
            try:
                result = parse_termination_message(message)
            except IntegrityError as exc:
                result = VerifierResult(
                    result="error", scan="error", reason=f"unreadable verifier result: {exc}"
                )
            record = VerificationRecord(
                namespace=str(meta.get("namespace", "")),
                pod=str(meta.get("name", "")),
                pod_uid=str(meta.get("uid", "")),
                container=container,
                result=result,
                workload=owning_workload(pod),
                finished_at=finished_at,
            )
            if record.key in self.seen:
                continue
            self.seen[record.key] = None
            while len(self.seen) > SEEN_LIMIT:
                self.seen.popitem(last=False)
            records.append(record)
        return records

    async def observe_pod(self, pod: Mapping[str, Any]) -> list[VerificationRecord]:
        records = self.new_records(pod)
        for record in records:
            await self.record(record)
        return records

    async def record(self, record: VerificationRecord) -> None:
        r = record.result
        # The message comes from the pod: only a policy modelward knows becomes a label value.
        policy = r.policy if r.policy in self.known_policies() else "unknown"
        self.metrics.model_verifications.labels(r.result, policy, record.namespace).inc()
        self.metrics.model_verification_duration.observe(r.duration_ms / 1000)
        admitted = r.admitted
        reason = "ModelVerified" if admitted else "ModelRejected"
        what = f"model {r.digest or '(no digest)'}"
        if r.signer:
            what += f" signed by {r.signer}"
        message = (
            f"{what}: {r.result}, scan {r.scan}, {r.files} files, {r.duration_ms} ms "
            f"(policy {policy}): {r.reason}"
        )
        involved = {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": record.namespace,
            "name": record.pod,
            "uid": record.pod_uid,
        }
        self.events.post(
            record.namespace,
            involved,
            reason,
            "Normal" if admitted else "Warning",
            message,
            action="Verify",
        )
        if r.digest and self.kube is not None:
            try:
                await asyncio.to_thread(
                    self.kube.upsert_deployed_model, record.namespace, inventory_update(record)
                )
            except Exception as exc:
                log.warning("could not record %s in the inventory: %s", r.digest, exc)


def inventory_update(record: VerificationRecord) -> dict[str, Any]:
    """The fields of a DeployedModel that one verification contributes."""
    r = record.result
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "digest": r.digest,
        "signer": r.signer or "",
        "files": r.files,
        "scan": r.scan,
        "lastResult": r.result,
        "lastSeen": now,
        "policy": r.policy or "",
        "workload": {"kind": record.workload[0], "name": record.workload[1]},
    }
