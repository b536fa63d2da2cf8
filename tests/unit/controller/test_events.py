"""Events: one per object and per policy, deduplicated, rate limited, credited per policy."""

from __future__ import annotations

from modelward.controller.events import EventRecorder
from modelward.engine import Decision, Finding, Mode, PolicyRef, Subject, Violation
from modelward.observability.metrics import Metrics

ENFORCING = PolicyRef("ClusterModelPolicy", "strict")
AUDITING = PolicyRef("ModelPolicy", "team", "serving-a")
SUBJECT = Subject("Deployment", "serving-a", "llm")


def _decision() -> Decision:
    return Decision(
        (
            Finding(Violation("MW-IMG-001", "not pinned", "pin it", "c"), ENFORCING, Mode.ENFORCE),
            Finding(Violation("MW-IMG-002", "registry", "use ours", "c"), AUDITING, Mode.AUDIT),
        )
    )


def _recorder(rate: float = 100.0, burst: int = 100) -> EventRecorder:
    return EventRecorder(
        kube=None,
        metrics=Metrics.create(),
        component="modelward",
        instance="test",
        rate=rate,
        burst=burst,
    )


def test_events_for_object_and_each_policy_with_their_own_outcome() -> None:
    recorder = _recorder()
    recorder.record(SUBJECT, _decision(), outcome="denied")
    events = [recorder.queue.get_nowait()[1] for _ in range(recorder.queue.qsize())]
    by_kind = {e["involvedObject"]["kind"]: e for e in events}
    assert by_kind["Deployment"]["reason"] == "PolicyViolation"
    assert "[MW-IMG-001]" in by_kind["Deployment"]["message"]
    assert by_kind["ClusterModelPolicy"]["message"].startswith("Deployment serving-a/llm denied")
    assert by_kind["ModelPolicy"]["message"].startswith("Deployment serving-a/llm warned")
    assert by_kind["ModelPolicy"]["metadata"]["namespace"] == "serving-a"
    counts = recorder.take_counts()
    assert counts == {ENFORCING: {"denied": 1}, AUDITING: {"warned": 1}}
    assert recorder.take_counts() == {}


def test_identical_events_are_posted_once() -> None:
    recorder = _recorder()
    for _ in range(5):
        recorder.record(SUBJECT, _decision(), outcome="denied")
    assert recorder.queue.qsize() == 3
    assert recorder.take_counts()[ENFORCING] == {"denied": 5}


def test_rate_limit_drops_and_counts() -> None:
    recorder = _recorder(rate=0.0, burst=2)
    recorder.record(SUBJECT, _decision(), outcome="denied")
    assert recorder.queue.qsize() == 2
    dropped = recorder.metrics.registry.get_sample_value("modelward_events_dropped_total")
    assert dropped == 1.0
