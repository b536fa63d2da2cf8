"""Exceptions in the background audit (``skip`` rows naming them) and the monitor that writes
their status, posts their expiry Event once and counts it."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from typing import Any

from modelward.controller.audit import audit_pods
from modelward.controller.exceptions import ExceptionMonitor
from modelward.controller.observe import observe_object
from modelward.engine import NamespaceFacts
from modelward.engine.exceptions import Exceptions, parse_exception
from modelward.observability.metrics import Metrics
from modelward.state import ClusterState
from tests.unit.engine.builders import policy
from tests.unit.engine.test_exceptions import TAGGED, exception_obj, tagged_pod

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
IMAGES = policy({"images": {}}, name="p")


def _state() -> ClusterState:
    state = ClusterState()
    state.put_namespace(NamespaceFacts("serving-a"))
    state.put_policy(
        ("ClusterModelPolicy", None, "p"),
        policy=IMAGES,
        error=None,
        generation=1,
        resource_version="1",
    )
    state.ready = True
    return state


def _listed(pod: dict[str, Any]) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    del pod["kind"]
    pod["metadata"]["uid"] = pod["metadata"]["name"]
    return pod


def test_waived_findings_are_skip_rows_naming_the_exception_and_not_violations() -> None:
    exception = parse_exception(exception_obj())
    other = tagged_pod(name="other")
    result = audit_pods(
        iter([_listed(tagged_pod()), _listed(other)]),
        state=_state(),
        policies=(IMAGES,),
        excluded=frozenset(),
        previous=set(),
        now=0,
        exceptions=Exceptions((exception,), now=NOW),
    )
    report = result.reports["serving-a"]
    skipped = [r for r in report.results if r["result"] == "skip"]
    assert len(skipped) == 1
    row = skipped[0]
    assert row["rule"] == "MW-IMG-001" and row["resources"][0]["name"] == "model"
    assert row["properties"] == {"exception": "serving-a/vendor-image"}
    assert (
        "waived by exception serving-a/vendor-image (approved by ciso@example.com"
        in (row["message"])
    )
    assert report.summary == {"skip": 1, "fail": 1}  # "other" still fails, no pass row for model
    assert result.violations == {("p", "MW-IMG-001", "serving-a"): 1}
    assert result.failing_pods[("ClusterModelPolicy", None, "p")] == {"other"}


def test_an_expired_exception_s_pods_fail_again_in_the_audit() -> None:
    exception = parse_exception(exception_obj())
    result = audit_pods(
        iter([_listed(tagged_pod())]),
        state=_state(),
        policies=(IMAGES,),
        excluded=frozenset(),
        previous=set(),
        now=0,
        exceptions=Exceptions((exception,), now=dt.datetime(2026, 4, 1, tzinfo=dt.UTC)),
    )
    (row,) = result.reports["serving-a"].results
    assert row["result"] == "fail" and TAGGED in row["message"]


class FakeKube:
    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.version = 100
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}

    def patch_exception_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """As the API server would: the watch then delivers the object with its status."""
        self.patches.append((namespace, name, dict(status)))
        self.version += 1
        obj = copy.deepcopy(self.objects[(namespace, name)])
        obj["status"] = dict(status)
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.objects[(namespace, name)] = obj
        observe_object(self.state, "ModelPolicyException", obj)


class FakeEvents:
    def __init__(self) -> None:
        self.posted: list[tuple[str, str, str]] = []

    def post(
        self,
        namespace: str,
        involved: Mapping[str, Any],
        reason: str,
        kind: str,
        message: str,
        *,
        action: str = "Admission",
    ) -> None:
        self.posted.append((str(involved["name"]), reason, message))


def _monitor(
    state: ClusterState, clock: list[dt.datetime]
) -> tuple[ExceptionMonitor, FakeKube, FakeEvents, Metrics]:
    kube, events, metrics = FakeKube(state), FakeEvents(), Metrics.create()
    monitor = ExceptionMonitor(
        state=state,
        kube=kube,
        events=events,
        metrics=metrics,
        max_lifetime=dt.timedelta(days=90),
        clock=lambda: clock[0],
    )
    return monitor, kube, events, metrics


def _add(state: ClusterState, kube: FakeKube, obj: dict[str, Any]) -> None:
    obj = copy.deepcopy(obj)
    obj["metadata"]["resourceVersion"] = "10"
    kube.objects[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
    observe_object(state, "ModelPolicyException", obj)


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_expiry_is_written_announced_and_counted_once() -> None:
    state, clock = _state(), [NOW]
    monitor, kube, events, metrics = _monitor(state, clock)
    _add(state, kube, exception_obj(expires="2026-03-01T12:00:05Z"))
    await monitor.check()
    assert kube.patches[-1][:2] == ("serving-a", "vendor-image")
    status = kube.patches[-1][2]
    assert status["state"] == "Active" and status["conditions"][0]["reason"] == "Active"
    assert status["effectiveExpiresAt"] == "2026-03-01T12:00:05Z"
    assert events.posted == []
    assert _value(metrics, "modelward_policy_exceptions", state="Active") == 1
    await monitor.check()
    assert len(kube.patches) == 1  # nothing changed, nothing written

    clock[0] = NOW + dt.timedelta(seconds=5)
    await monitor.check()
    assert kube.patches[-1][2]["state"] == "Expired"
    assert [(n, r) for n, r, _ in events.posted] == [("vendor-image", "ExceptionExpired")]
    assert _value(metrics, "modelward_policy_exceptions_expired_total") == 1
    assert _value(metrics, "modelward_policy_exceptions", state="Expired") == 1

    # A new leader (a fresh monitor) sees the status already says Expired: no repeat.
    again, kube2, events2, metrics2 = _monitor(state, clock)
    await again.check()
    assert events2.posted == [] and kube2.patches == []
    assert _value(metrics2, "modelward_policy_exceptions_expired_total") == 0


async def test_unknown_policy_and_rules_the_policy_does_not_enable_are_reported() -> None:
    state, clock = _state(), [NOW]
    monitor, kube, events, _ = _monitor(state, clock)
    _add(
        state,
        kube,
        exception_obj(name="nowhere", policy_ref={"kind": "ClusterModelPolicy", "name": "gone"}),
    )
    _add(state, kube, exception_obj(name="offside", rules=["MW-ISO-002"]))
    await monitor.check()
    statuses = {name: status for _, name, status in kube.patches}
    assert statuses["nowhere"]["conditions"][0]["reason"] == "UnknownPolicy"
    assert statuses["nowhere"]["conditions"][0]["status"] == "False"
    assert (
        "ClusterModelPolicy gone does not exist" in statuses["nowhere"]["conditions"][0]["message"]
    )
    assert statuses["offside"]["conditions"][0]["reason"] == "RulesNotInPolicy"
    assert "does not enable MW-ISO-002" in statuses["offside"]["conditions"][0]["message"]
    assert sorted((n, r) for n, r, _ in events.posted) == [
        ("nowhere", "ExceptionMisdirected"),
        ("offside", "ExceptionMisdirected"),
    ]
    await monitor.check()
    assert len(events.posted) == 2
