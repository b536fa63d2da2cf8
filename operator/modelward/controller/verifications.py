"""Verifier results from pod status into Events, metrics and the DeployedModel inventory.

The injected verifier writes its result as the termination message; the kubelet copies it to
``status.initContainerStatuses[].state.terminated.message``. What is believed, and when:

* Only the result of a container that is exactly the verifier an integrity policy selecting
  the pod injects (``engine.verifiers``) is recorded; a look-alike gets at most a rate-limited
  ``UnrecognisedVerifier`` warning and never an Event, metric or inventory entry of a verifier.
* The message is parsed strictly (``integrity.result``); anything malformed is an ``error``.
* A "verified" message is believed only from a verifier that exited 0 on its only run: a
  non-zero exit, a restart or a CrashLoopBackOff turns it into a rejection with no signer.
* Each result (pod UID, container, digest, result) is recorded once per cluster: only the
  leader records, and the DeployedModel lists the results it counted (``spec.recorded``), so a
  restart, a new leader or a catch-up never counts one twice. Results without a digest (the
  verifier failed before hashing) have no inventory entry: those that finished before the
  current leader took over are left to the previous one (``handover``).
* On becoming the leader, :meth:`VerificationRecorder.catch_up` lists the pods once, so that
  results that arrived while no replica led are recorded too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from modelward.controller.events import EventRecorder
from modelward.controller.kube import KubeApi
from modelward.engine import ClusterFacts, Policy, workload_from_object
from modelward.engine.rules.integrity import MODEL_VOLUME
from modelward.engine.verifiers import InjectedVerifier, PodVerifiers, pod_verifiers
from modelward.integrity.errors import IntegrityError
from modelward.integrity.result import VerifierResult, parse_termination_message
from modelward.observability.metrics import Metrics

log = logging.getLogger("modelward.verifications")

#: Only a hint for warnings about look-alikes: trust never depends on a container's name.
VERIFIER_PREFIX = "modelward-verify-"
SEEN_LIMIT = 50_000
CATCH_UP_PAUSE = 5.0
POD_TEMPLATE_HASH = "pod-template-hash"


@dataclass(frozen=True)
class VerifierStatus:
    """One terminated init container, as the kubelet reported it in pod status."""

    name: str
    message: str
    finished_at: str
    exit_code: int | None
    restarts: int
    waiting: str

    def failure(self) -> str | None:
        """Why a run of this container cannot vouch for a model, or None if it can."""
        if self.exit_code != 0:
            code = "no exit code" if self.exit_code is None else f"exit code {self.exit_code}"
            return f"ended with {code}"
        if self.waiting == "CrashLoopBackOff":
            return "is in CrashLoopBackOff"
        if self.restarts:
            return f"was restarted {self.restarts} time(s)"
        return None


@dataclass(frozen=True)
class VerificationRecord:
    namespace: str
    pod: str
    pod_uid: str
    container: str
    result: VerifierResult
    workload: tuple[str, str]
    finished_at: str
    #: The policy that injected the verifier (from the cluster, never from the message).
    policy: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.pod_uid, self.container, self.result.digest or "", self.result.result)

    @property
    def inventory_key(self) -> str:
        """How the DeployedModel of this digest remembers that it counted this result."""
        return f"{self.pod_uid}/{self.container}/{self.result.result}"


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


def terminated_init_containers(pod: Mapping[str, Any]) -> Iterator[VerifierStatus]:
    """Every init container that has terminated at least once (its latest termination)."""
    for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if not isinstance(status, Mapping):
            continue
        state = status.get("state") or {}
        terminated = state.get("terminated") or (status.get("lastState") or {}).get("terminated")
        if not isinstance(terminated, Mapping):
            continue
        exit_code = terminated.get("exitCode")
        restarts = status.get("restartCount")
        yield VerifierStatus(
            name=str(status.get("name", "")),
            message=str(terminated.get("message") or ""),
            finished_at=str(terminated.get("finishedAt") or ""),
            exit_code=exit_code if type(exit_code) is int else None,
            restarts=restarts if type(restarts) is int and restarts > 0 else 0,
            waiting=str((state.get("waiting") or {}).get("reason") or ""),
        )


def judge(status: VerifierStatus, verifier: InjectedVerifier) -> VerifierResult:
    """What a run of the injected ``verifier`` established, believing only what it may."""
    try:
        result = parse_termination_message(status.message)
    except IntegrityError as exc:
        return VerifierResult(
            result="error", scan="error", reason=f"unreadable verifier result: {exc}"
        )
    if result.policy != verifier.policy_label:
        return VerifierResult(
            result="error",
            scan="error",
            reason=(
                f"the result names policy {result.policy!r}, but {verifier.policy} injected "
                "this verifier"
            ),
            digest=result.digest,
        )
    failure = status.failure()
    if failure and result.admitted:
        return replace(
            result,
            result="rejected",
            signer=None,
            reason=f"the verifier {failure}, so its result is not trusted ({result.reason})",
        )
    return result


def _finished(value: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


class VerificationRecorder:
    """Records verifier results once per cluster, while ``is_leader()`` holds."""

    def __init__(
        self,
        *,
        kube: KubeApi | None,
        metrics: Metrics,
        events: EventRecorder,
        facts: ClusterFacts,
        policies: Callable[[], Iterable[Policy]],
        is_leader: Callable[[], bool] = lambda: True,
        handover: Callable[[], dt.datetime | None] = lambda: None,
    ) -> None:
        self.kube = kube
        self.metrics = metrics
        self.events = events
        self.facts = facts
        self.policies = policies
        self.is_leader = is_leader
        #: When the current leader took over: digest-less results older than that were the
        #: previous leader's to record (None: record them all).
        self.handover = handover
        self.seen: OrderedDict[tuple[str, str, str, str], None] = OrderedDict()
        self.warned: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._catch_up = asyncio.Event()

    # -- which results are new ---------------------------------------------------------------

    def verifiers(self, pod: Mapping[str, Any]) -> PodVerifiers:
        namespace = str((pod.get("metadata") or {}).get("namespace") or "")
        workload = workload_from_object({**pod, "kind": "Pod"}, namespace=namespace)
        return pod_verifiers(workload, self.facts.namespace(workload.namespace), self.policies())

    def new_records(self, pod: Mapping[str, Any]) -> list[VerificationRecord]:
        """The results in ``pod`` this replica has not handled yet (marked as handled)."""
        if not self.is_leader():
            return []
        statuses = list(terminated_init_containers(pod))
        if not statuses:
            return []
        verifiers = self.verifiers(pod)
        meta = pod.get("metadata") or {}
        handover = self.handover()
        records = []
        for status in statuses:
            verifier = verifiers.injected.get(status.name)
            if verifier is None:
                self._warn_unrecognised(pod, status.name, verifiers)
                continue
            record = VerificationRecord(
                namespace=str(meta.get("namespace", "")),
                pod=str(meta.get("name", "")),
                pod_uid=str(meta.get("uid", "")),
                container=status.name,
                result=judge(status, verifier),
                workload=owning_workload(pod),
                finished_at=status.finished_at,
                policy=str(verifier.policy),
            )
            if record.key in self.seen:
                continue
            self._remember(record.key)
            finished = _finished(status.finished_at)
            if (
                record.result.digest is None
                and handover is not None
                and finished is not None
                and finished < handover
            ):
                continue  # no inventory entry to tell; the previous leader's to record
            records.append(record)
        return records

    def _remember(self, key: tuple[str, str, str, str]) -> None:
        self.seen[key] = None
        while len(self.seen) > SEEN_LIMIT:
            self.seen.popitem(last=False)

    def _warn_unrecognised(
        self, pod: Mapping[str, Any], container: str, verifiers: PodVerifiers
    ) -> None:
        why = verifiers.mismatches.get(container)
        if why is None:
            if not container.startswith(VERIFIER_PREFIX):
                return  # an ordinary init container
            why = "no integrity policy that selects this pod injects a verifier of that name"
        meta = pod.get("metadata") or {}
        key = (str(meta.get("uid", "")), container)
        if key in self.warned:
            return
        self.warned[key] = None
        while len(self.warned) > SEEN_LIMIT:
            self.warned.popitem(last=False)
        namespace = str(meta.get("namespace", ""))
        log.warning(
            "unrecognised verifier %s in pod %s/%s: %s", container, namespace, meta.get("name"), why
        )
        self.events.post(
            namespace,
            _pod_reference(pod),
            "UnrecognisedVerifier",
            "Warning",
            f"init container {container} is not a verifier modelward injected, so its result "
            f"is not recorded: {why}",
            action="Verify",
        )

    # -- recording ---------------------------------------------------------------------------

    async def observe_pod(self, pod: Mapping[str, Any]) -> list[VerificationRecord]:
        """Record the new results in ``pod``; the ones actually recorded are returned."""
        recorded = []
        for record in self.new_records(pod):
            if await self.record(record):
                recorded.append(record)
        return recorded

    async def record(self, record: VerificationRecord) -> bool:
        """Inventory first (it is where "already counted" is decided), then Event and metric."""
        r = record.result
        if r.digest and self.kube is not None:
            try:
                added = await asyncio.to_thread(
                    self.kube.upsert_deployed_model, record.namespace, inventory_update(record)
                )
            except Exception as exc:
                log.warning("could not record %s in the inventory: %s", r.digest, exc)
                self.seen.pop(record.key, None)
                self.request_catch_up()  # try again (run() paces the attempts)
                return False
            if not added:
                return False
        self.metrics.model_verifications.labels(r.result, record.policy, record.namespace).inc()
        self.metrics.model_verification_duration.observe(r.duration_ms / 1000)
        admitted = r.admitted
        what = f"model {r.digest or '(no digest)'}"
        if r.signer:
            what += f" signed by {r.signer}"
        message = (
            f"{what}: {r.result}, scan {r.scan}, {r.files} files, {r.duration_ms} ms "
            f"(policy {record.policy}): {r.reason}"
        )
        self.events.post(
            record.namespace,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": record.namespace,
                "name": record.pod,
                "uid": record.pod_uid,
            },
            "ModelVerified" if admitted else "ModelRejected",
            "Normal" if admitted else "Warning",
            message,
            action="Verify",
        )
        return True

    # -- catching up after a leaderless gap --------------------------------------------------

    def request_catch_up(self) -> None:
        """Called when this replica becomes the leader (from the Leadership's loop)."""
        self._catch_up.set()

    def _pods_with_results(self) -> list[dict[str, Any]]:
        assert self.kube is not None
        return [
            pod
            for pod in self.kube.iter_pods()
            if MODEL_VOLUME in ((pod.get("metadata") or {}).get("annotations") or {})
            and any(True for _ in terminated_init_containers(pod))
        ]

    async def catch_up(self) -> int:
        """Record every result in the cluster not recorded yet; how many were."""
        if self.kube is None:
            return 0
        pods = await asyncio.to_thread(self._pods_with_results)
        count = 0
        for pod in pods:
            if not self.is_leader():
                break
            count += len(await self.observe_pod(pod))
        log.info("caught up on verifier results: %d recorded from %d pods", count, len(pods))
        return count

    async def run(self, *, pause: float = CATCH_UP_PAUSE) -> None:
        """Catch up each time this replica becomes the leader, or a record could not be
        written; at most once per ``pause`` seconds, retrying while the API fails."""
        while True:
            await self._catch_up.wait()
            self._catch_up.clear()
            if self.is_leader():
                try:
                    await self.catch_up()
                except Exception as exc:
                    log.warning("could not catch up on verifier results (retrying): %s", exc)
                    self._catch_up.set()
            await asyncio.sleep(pause)


def _pod_reference(pod: Mapping[str, Any]) -> dict[str, Any]:
    meta = pod.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": str(meta.get("namespace", "")),
        "name": str(meta.get("name", "")),
        "uid": str(meta.get("uid", "")),
    }


def inventory_update(record: VerificationRecord) -> dict[str, Any]:
    """The fields of a DeployedModel that one verification contributes.

    The signer is the signer of record only for an admitted model; a rejection leaves it.
    """
    r = record.result
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "digest": r.digest,
        "signer": (r.signer or "") if r.admitted else "",
        "files": r.files,
        "scan": r.scan,
        "lastResult": r.result,
        "lastSeen": now,
        "policy": record.policy,
        "record": record.inventory_key,
        "workload": {"kind": record.workload[0], "name": record.workload[1]},
    }
