"""Verifier results from pod status: believed only from the injected verifier, parsed strictly,
recorded once per cluster (across restarts and leaders), merged into a bounded inventory."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterator, Mapping
from typing import Any, cast

import pytest

from modelward.controller.events import EventRecorder
from modelward.controller.kube import (
    MAX_POLICIES,
    MAX_RECORDED,
    KubeApi,
    merge_deployed_model,
)
from modelward.controller.verifications import (
    VerificationRecorder,
    inventory_update,
    owning_workload,
)
from modelward.engine import StaticFacts
from modelward.engine.facts import NamespaceFacts
from modelward.observability.metrics import Metrics
from tests.unit.engine.rules.test_integrity import PATCH
from tests.unit.engine.test_verifiers import _injected

DIGEST = "sha256:" + "0f" * 32
SIGNER = "key:sha256:" + "ab" * 32
assert PATCH.integrity is not None
VERIFIER = PATCH.integrity.container_name
POLICY = str(PATCH.ref)


def _message(**fields: Any) -> str:
    doc = {
        "v": 1,
        "result": "verified",
        "digest": DIGEST,
        "signer": SIGNER,
        "files": 3,
        "scan": "clean",
        "reason": "signature verified",
        "duration_ms": 42,
        "policy": POLICY,
    }
    doc.update(fields)
    return json.dumps(doc)


def _status(
    message: str,
    *,
    container: str = VERIFIER,
    exit_code: int = 0,
    finished: str = "2026-11-25T10:00:01Z",
    restarts: int = 0,
    waiting: str | None = None,
) -> dict[str, Any]:
    terminated = {"exitCode": exit_code, "message": message, "finishedAt": finished}
    status: dict[str, Any] = {"name": container, "restartCount": restarts}
    if waiting:
        status["state"] = {"waiting": {"reason": waiting}}
        status["lastState"] = {"terminated": terminated}
    else:
        status["state"] = {"terminated": terminated}
    return status


def _pod(*statuses: dict[str, Any], uid: str = "u1", injected: bool = True) -> dict[str, Any]:
    """A pod of Deployment llm as the webhook injected it, with verifier statuses."""
    pod = _injected()
    if not injected:  # a pod author's own "verifier": same name, their image and command
        verifier = next(c for c in pod["spec"]["initContainers"] if c["name"] == VERIFIER)
        verifier["image"] = "attacker.example.com/fake:1"
    pod["metadata"].update(
        name="llm-7d9f-abcde",
        uid=uid,
        labels={**pod["metadata"]["labels"], "pod-template-hash": "7d9f"},
        ownerReferences=[{"kind": "ReplicaSet", "name": "llm-7d9f", "controller": True}],
    )
    pod["status"] = {
        "initContainerStatuses": [
            {"name": "istio-init", "state": {"terminated": {"message": "x", "exitCode": 0}}},
            *statuses,
        ]
    }
    return pod


class FakeKube(KubeApi):
    """The real ``upsert_deployed_model`` over an in-memory object store."""

    def __init__(self, pods: list[dict[str, Any]] | None = None) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods = pods or []
        self.down = False
        self.writes = 0

    def _read_custom(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> dict[str, Any] | None:
        found = self.objects.get((namespace, name))
        return copy.deepcopy(found) if found else None

    def _create_or_replace(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        body: Mapping[str, Any],
        current: Mapping[str, Any] | None,
    ) -> None:
        if self.down:
            raise ConnectionError("API server unreachable")
        self.writes += 1
        stored = copy.deepcopy(dict(body))
        stored["metadata"]["resourceVersion"] = str(self.writes)
        self.objects[(namespace, body["metadata"]["name"])] = stored

    def iter_pods(self, page_size: int = 500) -> Iterator[dict[str, Any]]:
        yield from copy.deepcopy(self.pods)

    def model(self, digest: str = DIGEST) -> dict[str, Any]:
        return self.objects[("serving-a", digest.replace(":", "-"))]["spec"]


class Leader:
    def __init__(self, leading: bool = True, handover: dt.datetime | None = None) -> None:
        self.leading = leading
        self.handover = handover


def _recorder(kube: FakeKube | None = None, leader: Leader | None = None) -> VerificationRecorder:
    metrics = Metrics.create()
    events = EventRecorder(
        kube=None, metrics=metrics, component="modelward", instance="t", rate=100, burst=100
    )
    facts = StaticFacts()
    facts.namespaces["serving-a"] = NamespaceFacts("serving-a", {}, {})
    state = leader or Leader()
    return VerificationRecorder(
        kube=cast(KubeApi, kube) if kube is not None else None,
        metrics=metrics,
        events=events,
        facts=facts,
        policies=lambda: (PATCH,),
        is_leader=lambda: state.leading,
        handover=lambda: state.handover,
    )


def _events(recorder: VerificationRecorder) -> list[dict[str, Any]]:
    found = []
    while not recorder.events.queue.empty():
        found.append(recorder.events.queue.get_nowait()[1])
    return found


def _count(recorder: VerificationRecorder, result: str) -> float | None:
    return recorder.metrics.registry.get_sample_value(
        "modelward_model_verifications_total",
        {"result": result, "policy": POLICY, "namespace": "serving-a"},
    )


def test_owning_workload() -> None:
    assert owning_workload(_pod()) == ("Deployment", "llm")
    assert owning_workload({"metadata": {"name": "bare"}}) == ("Pod", "bare")
    job = {
        "metadata": {
            "name": "j",
            "ownerReferences": [{"kind": "Job", "name": "nightly-29012345", "controller": True}],
        }
    }
    assert owning_workload(job) == ("CronJob", "nightly")


async def test_the_injected_verifier_is_recorded_once_with_event_metric_and_inventory() -> None:
    kube = FakeKube()
    recorder = _recorder(kube)
    pod = _pod(_status(_message()))
    assert len(await recorder.observe_pod(pod)) == 1
    assert await recorder.observe_pod(pod) == []  # the same pod event again
    (event,) = _events(recorder)
    assert event["reason"] == "ModelVerified" and event["type"] == "Normal"
    assert DIGEST in event["message"] and SIGNER in event["message"]
    assert _count(recorder, "verified") == 1.0
    spec = kube.model()
    assert spec["signer"] == SIGNER and spec["lastResult"] == "verified"
    assert spec["policies"] == [POLICY] and spec["verifications"] == 1
    assert spec["recorded"] == [f"u1/{VERIFIER}/verified"]
    assert spec["workloads"] == [{"kind": "Deployment", "name": "llm"}]


async def test_a_forged_verifier_on_a_pod_no_policy_selects_is_never_recorded() -> None:
    """Issue 9 #3: a look-alike container with a forged message is warned about, not believed."""
    kube = FakeKube()
    recorder = _recorder(kube)
    pod = _pod(_status(_message()))
    pod["metadata"]["namespace"] = "unselected"  # no integrity policy selects it
    assert await recorder.observe_pod(pod) == []
    assert await recorder.observe_pod(pod) == []  # warned once per pod and container
    (event,) = _events(recorder)
    assert event["reason"] == "UnrecognisedVerifier" and event["type"] == "Warning"
    assert "no integrity policy that selects this pod" in event["message"]
    assert kube.objects == {} and _count(recorder, "verified") is None


async def test_a_look_alike_of_a_selecting_policys_verifier_is_not_believed() -> None:
    kube = FakeKube()
    recorder = _recorder(kube)
    assert await recorder.observe_pod(_pod(_status(_message()), injected=False)) == []
    (event,) = _events(recorder)
    assert event["reason"] == "UnrecognisedVerifier" and "attacker.example.com" in event["message"]
    assert kube.objects == {}


@pytest.mark.parametrize(
    ("status", "why"),
    [
        ({"exit_code": 1}, "ended with exit code 1"),
        ({"exit_code": 137}, "ended with exit code 137"),
        ({"restarts": 2}, "was restarted 2 time(s)"),
        ({"waiting": "CrashLoopBackOff", "restarts": 1}, "is in CrashLoopBackOff"),
    ],
)
async def test_a_failed_or_crash_looping_verifier_is_a_rejection_never_a_signer(
    status: dict[str, Any], why: str
) -> None:
    kube = FakeKube()
    recorder = _recorder(kube)
    (record,) = await recorder.observe_pod(_pod(_status(_message(), **status)))
    assert record.result.result == "rejected" and record.result.signer is None
    assert why in record.result.reason
    (event,) = _events(recorder)
    assert event["reason"] == "ModelRejected" and SIGNER not in event["message"]
    spec = kube.model()
    assert spec["lastResult"] == "rejected" and "signer" not in spec


async def test_a_rejection_does_not_replace_the_signer_of_record() -> None:
    kube = FakeKube()
    recorder = _recorder(kube)
    await recorder.observe_pod(_pod(_status(_message()), uid="good"))
    await recorder.observe_pod(_pod(_status(_message(), exit_code=1), uid="bad"))
    spec = kube.model()
    assert spec["signer"] == SIGNER and spec["lastResult"] == "rejected"
    assert spec["verifications"] == 2


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (_message(policy="ClusterModelPolicy other"), "names policy 'ClusterModelPolicy other'"),
        ('{"v": 1, "result": "verified", "digest": "sha256:zz"}', "unreadable verifier result"),
        (_message(signer="release key"), "unreadable verifier result"),
        (_message(extra="x"), "unknown field"),
    ],
)
async def test_messages_that_do_not_hold_up_are_errors(message: str, reason: str) -> None:
    recorder = _recorder()
    (record,) = await recorder.observe_pod(_pod(_status(message)))
    assert record.result.result == "error" and reason in record.result.reason
    (event,) = _events(recorder)
    assert event["reason"] == "ModelRejected" and event["type"] == "Warning"


async def test_followers_record_nothing() -> None:
    leader = Leader(leading=False)
    recorder = _recorder(FakeKube(), leader)
    assert await recorder.observe_pod(_pod(_status(_message()))) == []
    assert _events(recorder) == []


async def test_a_result_is_counted_once_across_restarts_and_leaders() -> None:
    """The DeployedModel remembers which results it counted: a second replica (a restart, a
    new leader, a catch-up) finds the result there and records nothing."""
    kube = FakeKube()
    pod = _pod(_status(_message()))
    assert len(await _recorder(kube).observe_pod(pod)) == 1
    again = _recorder(kube)
    assert await again.observe_pod(pod) == []
    assert _events(again) == [] and _count(again, "verified") is None
    assert kube.model()["verifications"] == 1 and kube.writes == 1


async def test_catch_up_records_what_arrived_without_a_leader_once() -> None:
    """Issue 10 #5: results that finished while no replica led are found on taking over."""
    pods = [_pod(_status(_message()), uid=f"u{i}") for i in range(3)]
    pods.append({"metadata": {"name": "plain", "namespace": "serving-a"}})
    kube = FakeKube(pods)
    leader = Leader(leading=False)
    recorder = _recorder(kube, leader)
    for pod in pods[:3]:  # the watch delivered them while this replica followed
        assert await recorder.observe_pod(pod) == []
    leader.leading = True
    assert await recorder.catch_up() == 3
    assert kube.model()["verifications"] == 3
    assert await recorder.catch_up() == 0
    assert await _recorder(kube).catch_up() == 0  # the next leader: nothing twice
    assert kube.model()["verifications"] == 3


async def test_a_failed_inventory_write_is_retried_by_a_catch_up() -> None:
    kube = FakeKube()
    recorder = _recorder(kube)
    pod = _pod(_status(_message()))
    kube.pods = [pod]
    kube.down = True
    assert await recorder.observe_pod(pod) == []
    assert _events(recorder) == [] and recorder._catch_up.is_set()
    kube.down = False
    assert await recorder.catch_up() == 1
    assert kube.model()["verifications"] == 1


async def test_results_without_digest_before_the_handover_were_the_previous_leaders() -> None:
    handover = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    recorder = _recorder(FakeKube(), Leader(handover=handover))
    error = _message(result="error", digest=None, signer=None, scan="skipped")
    assert await recorder.observe_pod(_pod(_status(error, finished="2026-11-25T11:59:59Z"))) == []
    late = _pod(_status(error, finished="2026-11-25T12:00:01Z"), uid="u2")
    assert len(await recorder.observe_pod(late)) == 1


def test_inventory_lists_stay_bounded_and_deduplicated() -> None:
    """Issue 9 #3: the policies (and counted results) of a DeployedModel cannot grow without
    bound, whatever the number of policies or pods."""
    recorder = _recorder()
    (record,) = recorder.new_records(_pod(_status(_message())))
    model = None
    for i in range(MAX_RECORDED + 40):
        update = {
            **inventory_update(record),
            "policy": f"ClusterModelPolicy p{i % (MAX_POLICIES + 5)}",
            "record": f"uid{i}/c/verified",
        }
        model = merge_deployed_model(model, update, name="m", namespace="serving-a")
        model["metadata"]["resourceVersion"] = str(i)
    assert model is not None
    spec = model["spec"]
    assert len(spec["policies"]) == MAX_POLICIES == len(set(spec["policies"]))
    assert spec["policies"][-1] == f"ClusterModelPolicy p{(MAX_RECORDED + 39) % (MAX_POLICIES + 5)}"
    assert len(spec["recorded"]) == MAX_RECORDED and spec["recorded"][-1].startswith("uid551/")
    assert spec["verifications"] == MAX_RECORDED + 40
    overgrown = {**model, "spec": {**spec, "policies": [f"x{i}" for i in range(1000)]}}
    merged = merge_deployed_model(overgrown, update, name="m", namespace="serving-a")
    assert len(merged["spec"]["policies"]) == MAX_POLICIES
