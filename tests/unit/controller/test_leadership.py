"""Verifier results are recorded by the leader only, and never twice across a restart."""

from __future__ import annotations

import datetime as dt
import json

from modelward.controller.events import EventRecorder
from modelward.controller.verifications import VerificationRecorder
from modelward.observability.metrics import Metrics

DIGEST = "sha256:" + "0f" * 32


def _pod(finished: str, policy: str = "ClusterModelPolicy p") -> dict[str, object]:
    message = json.dumps(
        {
            "v": 1,
            "result": "verified",
            "digest": DIGEST,
            "signer": "k",
            "files": 1,
            "scan": "clean",
            "reason": "ok",
            "duration_ms": 1,
            "policy": policy,
        }
    )
    return {
        "metadata": {"name": "p", "namespace": "n", "uid": "u"},
        "status": {
            "initContainerStatuses": [
                {
                    "name": "modelward-verify-1",
                    "state": {"terminated": {"message": message, "finishedAt": finished}},
                }
            ]
        },
    }


def _recorder(since: dt.datetime | None) -> VerificationRecorder:
    metrics = Metrics.create()
    events = EventRecorder(
        kube=None, metrics=metrics, component="m", instance="i", rate=10, burst=10
    )
    return VerificationRecorder(
        kube=None,
        metrics=metrics,
        events=events,
        known_policies=lambda: {"ClusterModelPolicy p"},
        leader_since=lambda: since,
    )


def test_followers_record_nothing() -> None:
    assert _recorder(None).new_records(_pod("2026-11-25T10:00:00Z")) == []


def test_results_from_before_leadership_are_not_recorded_again() -> None:
    since = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    recorder = _recorder(since)
    assert recorder.new_records(_pod("2026-11-25T10:00:00Z")) == []  # before: recorded already
    assert len(recorder.new_records(_pod("2026-11-25T11:59:00Z"))) == 1  # within the grace


async def test_unknown_policy_names_never_become_label_values() -> None:
    recorder = _recorder(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    await recorder.observe_pod(_pod("2026-11-25T10:00:00Z", policy="x" * 200))
    value = recorder.metrics.registry.get_sample_value(
        "modelward_model_verifications_total",
        {"result": "verified", "policy": "unknown", "namespace": "n"},
    )
    assert value == 1.0
