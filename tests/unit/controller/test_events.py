"""Events: one per object and per policy, deduplicated, rate limited, credited per policy."""

from __future__ import annotations

from typing import Any

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


def test_the_event_text_is_built_only_when_an_event_is_posted(monkeypatch: Any) -> None:
    built: list[str] = []
    short = Finding.short

    def counting(self: Finding) -> str:
        built.append(self.violation.rule_id)
        return short(self)

    monkeypatch.setattr(Finding, "short", counting)
    recorder = _recorder()
    recorder.record(SUBJECT, _decision(), outcome="denied")
    first = len(built)
    assert first == 2
    for _ in range(5):
        recorder.record(SUBJECT, _decision(), outcome="denied")
    assert len(built) == first  # deduplicated before any text was made
    changed = Decision(
        (Finding(Violation("MW-IMG-001", "other", "pin it", "c"), ENFORCING, Mode.ENFORCE),)
    )
    recorder.record(SUBJECT, changed, outcome="denied")
    assert len(built) == first + 1  # a different decision is a different Event


def test_rate_limit_drops_and_counts() -> None:
    recorder = _recorder(rate=0.0, burst=2)
    recorder.record(SUBJECT, _decision(), outcome="denied")
    assert recorder.queue.qsize() == 2
    dropped = recorder.metrics.registry.get_sample_value("modelward_events_dropped_total")
    assert dropped == 1.0


def _flood(recorder: EventRecorder, subject: Subject, count: int, policy: PolicyRef) -> None:
    """``count`` denials with distinct messages (so deduplication cannot absorb them)."""
    for index in range(count):
        finding = Finding(
            Violation("MW-IMG-001", f"not pinned {index}", "pin it", "c"), policy, Mode.ENFORCE
        )
        recorder.record(subject, Decision((finding,)), outcome="denied")


def _posted_about(recorder: EventRecorder) -> list[tuple[str, str, str]]:
    events = [recorder.queue.get_nowait()[1] for _ in range(recorder.queue.qsize())]
    return [
        (e["metadata"]["namespace"], e["involvedObject"]["kind"], e["involvedObject"]["name"])
        for e in events
    ]


def test_a_flood_about_one_object_does_not_starve_events_about_another() -> None:
    recorder = _recorder(rate=0.0, burst=50)  # no refill: the budgets are what they are
    _flood(recorder, Subject("Pod", "attacker", "noisy"), 80, ENFORCING)
    _flood(recorder, Subject("Pod", "victim", "quiet"), 1, AUDITING)
    posted = _posted_about(recorder)
    assert ("victim", "Pod", "quiet") in posted
    assert ("serving-a", "ModelPolicy", "team") in posted  # the other policy's Event too
    assert posted.count(("attacker", "Pod", "noisy")) <= 5


def test_a_flood_from_many_objects_of_one_namespace_stays_in_that_namespace() -> None:
    recorder = _recorder(rate=0.0, burst=50)
    for index in range(80):
        _flood(recorder, Subject("Pod", "attacker", f"pod-{index}"), 1, ENFORCING)
    _flood(recorder, Subject("Deployment", "victim", "llm"), 1, ENFORCING)
    posted = _posted_about(recorder)
    assert ("victim", "Deployment", "llm") in posted
    assert sum(1 for ns, kind, _ in posted if ns == "attacker") <= 10


def test_the_global_cap_still_holds_across_namespaces() -> None:
    recorder = _recorder(rate=0.0, burst=20)
    for index in range(100):
        _flood(
            recorder,
            Subject("Pod", f"ns-{index}", "p"),
            1,
            PolicyRef("ClusterModelPolicy", f"p{index}"),
        )
    assert recorder.queue.qsize() == 20
    dropped = recorder.metrics.registry.get_sample_value("modelward_events_dropped_total")
    assert dropped == 180.0


def test_idle_buckets_are_forgotten() -> None:
    from modelward.controller import events

    budgets = events.EventBudgets(rate=1000.0, burst=1000)
    for index in range(events.MAX_BUCKETS + 10):
        budgets.objects.get(("ns", "Pod", str(index)))
    assert len(budgets.objects.buckets) <= events.MAX_BUCKETS
