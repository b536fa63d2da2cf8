"""Verifier results from pod status: parsed strictly, recorded once, merged into the inventory."""

from __future__ import annotations

import json
from typing import Any

from modelward.controller.events import EventRecorder
from modelward.controller.kube import merge_deployed_model
from modelward.controller.verifications import (
    VerificationRecorder,
    inventory_update,
    owning_workload,
)
from modelward.observability.metrics import Metrics

DIGEST = "sha256:" + "0f" * 32
MESSAGE = json.dumps(
    {
        "v": 1,
        "result": "verified",
        "digest": DIGEST,
        "signer": "key:ab12",
        "files": 3,
        "scan": "clean",
        "reason": "signature verified",
        "duration_ms": 42,
        "policy": "p",
    }
)


def _pod(message: str, finished: str = "2026-11-25T10:00:01Z") -> dict[str, Any]:
    return {
        "metadata": {
            "name": "llm-7d9f-abcde",
            "namespace": "serving",
            "uid": "u1",
            "labels": {"pod-template-hash": "7d9f"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "llm-7d9f", "controller": True}],
        },
        "status": {
            "initContainerStatuses": [
                {"name": "istio-init", "state": {"terminated": {"message": "x"}}},
                {
                    "name": "modelward-verify-1234abcd",
                    "state": {"terminated": {"message": message, "finishedAt": finished}},
                },
            ]
        },
    }


def _recorder() -> VerificationRecorder:
    metrics = Metrics.create()
    events = EventRecorder(
        kube=None, metrics=metrics, component="modelward", instance="t", rate=100, burst=100
    )
    return VerificationRecorder(
        kube=None, metrics=metrics, events=events, known_policies=lambda: {"p"}
    )


def test_owning_workload() -> None:
    assert owning_workload(_pod(MESSAGE)) == ("Deployment", "llm")
    assert owning_workload({"metadata": {"name": "bare"}}) == ("Pod", "bare")
    job = {
        "metadata": {
            "name": "j",
            "ownerReferences": [{"kind": "Job", "name": "nightly-29012345", "controller": True}],
        }
    }
    assert owning_workload(job) == ("CronJob", "nightly")


async def test_each_result_is_recorded_once_with_event_and_metric() -> None:
    recorder = _recorder()
    assert len(await recorder.observe_pod(_pod(MESSAGE))) == 1
    assert await recorder.observe_pod(_pod(MESSAGE)) == []  # the same pod event again
    assert (
        len(await recorder.observe_pod(_pod(MESSAGE, finished="2026-11-25T11:00:00Z"))) == 1
    )  # a restart
    registry = recorder.metrics.registry
    value = registry.get_sample_value(
        "modelward_model_verifications_total",
        {"result": "verified", "policy": "p", "namespace": "serving"},
    )
    assert value == 2.0
    _, event = recorder.events.queue.get_nowait()
    assert (
        event["reason"] == "ModelVerified"
        and DIGEST in event["message"]
        and event["action"] == "Verify"
    )


async def test_malformed_messages_are_recorded_as_errors_never_trusted() -> None:
    recorder = _recorder()
    (record,) = await recorder.observe_pod(
        _pod('{"v": 1, "result": "verified", "digest": "sha256:zz"}')
    )
    assert record.result.result == "error" and "unreadable verifier result" in record.result.reason
    _, event = recorder.events.queue.get_nowait()
    assert event["reason"] == "ModelRejected" and event["type"] == "Warning"


async def test_inventory_merge_counts_and_keeps_first_seen() -> None:
    recorder = _recorder()
    (record,) = recorder.new_records(_pod(MESSAGE))
    update = inventory_update(record)
    first = merge_deployed_model(None, update, name="sha256-x", namespace="serving")
    assert first["spec"]["verifications"] == 1 and first["spec"]["workloads"] == [
        {"kind": "Deployment", "name": "llm"}
    ]
    first["metadata"]["resourceVersion"] = "7"
    later = {
        **update,
        "lastSeen": "2099-01-01T00:00:00Z",
        "workload": {"kind": "Deployment", "name": "other"},
    }
    second = merge_deployed_model(first, later, name="sha256-x", namespace="serving")
    assert second["spec"]["verifications"] == 2
    assert second["spec"]["firstSeen"] == first["spec"]["firstSeen"] != second["spec"]["lastSeen"]
    assert len(second["spec"]["workloads"]) == 2 and second["metadata"]["resourceVersion"] == "7"
