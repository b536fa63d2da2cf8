"""Admission with policy exceptions: the exceptions' own webhook (creator record, maximum
lifetime, unknown rules) and workloads judged with exceptions applied, expiry included."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
from typing import Any

import pytest

from modelward.admission.review import ReviewRequest
from modelward.admission.service import AdmissionService
from modelward.controller.observe import observe_object
from modelward.engine.exceptions import CREATOR_ANNOTATION, Creator
from modelward.engine.facts import NamespaceFacts
from modelward.state import ClusterState
from tests.unit.engine.builders import policy
from tests.unit.engine.test_exceptions import exception_obj, tagged_pod

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
ALICE = Creator("alice", ("security-approvers", "system:authenticated"))


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def _request(
    obj: dict[str, Any],
    *,
    old: dict[str, Any] | None = None,
    user: Creator = ALICE,
) -> ReviewRequest:
    return ReviewRequest(
        uid="u",
        kind=str(obj["kind"]),
        operation="UPDATE" if old is not None else "CREATE",
        namespace="serving-a",
        name=str(obj["metadata"]["name"]),
        sub_resource="",
        obj=obj,
        old_obj=old,
        dry_run=False,
        username=user.username,
        groups=user.groups,
    )


def _service(
    clock: Clock, *, sections: dict[str, Any] | None = None
) -> tuple[AdmissionService, ClusterState]:
    state = ClusterState()
    state.put_namespace(NamespaceFacts("serving-a"))
    state.ready = True
    p = policy(sections or {"images": {}})
    state.put_policy(
        (p.ref.kind, None, p.ref.name), policy=p, error=None, generation=1, resource_version=None
    )
    return AdmissionService(state=state, clock=clock), state


def _mutated(service: AdmissionService, request: ReviewRequest) -> dict[str, Any]:
    """The object after the mutating webhook's JSONPatch (add/remove on annotations)."""
    response = service.mutate(request).review["response"]
    obj = copy.deepcopy(dict(request.obj or {}))
    for op in json.loads(base64.b64decode(response.get("patch", "W10="))):
        meta = obj.setdefault("metadata", {})
        if op["path"] == "/metadata/annotations":
            meta["annotations"] = op["value"]
        elif op["op"] == "add":
            meta.setdefault("annotations", {})[CREATOR_ANNOTATION] = op["value"]
        else:
            del meta["annotations"][CREATOR_ANNOTATION]
    return obj


def _create(service: AdmissionService, obj: dict[str, Any], user: Creator = ALICE) -> Any:
    mutated = _mutated(service, _request(obj, user=user))
    return mutated, service.validate(_request(mutated, user=user))


def test_the_creator_is_recorded_from_user_info_and_a_forged_value_is_overwritten() -> None:
    service, _ = _service(Clock(NOW))
    forged = exception_obj(creator=Creator("ciso", ("security-approvers",)))
    mallory = Creator("mallory", ("developers",))
    mutated, outcome = _create(service, forged, user=mallory)
    assert outcome.label == "allowed"
    assert Creator.from_annotation(mutated["metadata"]["annotations"][CREATOR_ANNOTATION]) == (
        mallory
    )


def test_a_create_whose_creator_is_not_the_requester_is_refused() -> None:
    """If the mutating webhook did not run (or another changed the value), validation holds."""
    service, _ = _service(Clock(NOW))
    forged = exception_obj(creator=Creator("ciso", ("security-approvers",)))
    outcome = service.validate(_request(forged, user=Creator("mallory", ("developers",))))
    assert outcome.label == "denied"
    message = outcome.review["response"]["status"]["message"]
    assert CREATOR_ANNOTATION in message and "remove the annotation" in message


def test_an_update_cannot_change_or_drop_the_recorded_creator() -> None:
    service, _ = _service(Clock(NOW))
    admitted = exception_obj(creator=ALICE)
    mallory = Creator("mallory", ("developers",))
    changed = exception_obj(creator=Creator("mallory", ("security-approvers",)))
    assert service.validate(_request(changed, old=admitted, user=mallory)).label == "denied"
    dropped = exception_obj()
    assert service.validate(_request(dropped, old=admitted, user=mallory)).label == "denied"
    # The mutating webhook puts the old value back, so apply-style updates keep working.
    restored = _mutated(service, _request(dropped, old=admitted, user=mallory))
    assert restored["metadata"]["annotations"][CREATOR_ANNOTATION] == ALICE.annotation()
    assert service.validate(_request(restored, old=admitted, user=mallory)).label == "allowed"


def test_an_exception_past_the_configured_maximum_is_refused_on_create() -> None:
    service, _ = _service(Clock(NOW))
    long = exception_obj(expires="2026-06-01T00:00:00Z")
    _, outcome = _create(service, long)
    assert outcome.label == "denied"
    message = outcome.review["response"]["status"]["message"]
    assert "maximum exception lifetime (90 days from now" in message
    assert "create a new one" in message


def test_an_update_cannot_extend_past_the_maximum_from_creation() -> None:
    service, _ = _service(Clock(NOW))
    admitted = exception_obj(creator=ALICE, created="2026-01-01T00:00:00Z")
    extended = copy.deepcopy(admitted)
    extended["spec"]["expiresAt"] = "2026-04-15T00:00:00Z"  # < now + 90 d, > creation + 90 d
    outcome = service.validate(_request(extended, old=admitted))
    assert outcome.label == "denied"
    assert "from creation" in outcome.review["response"]["status"]["message"]


def test_unknown_rule_ids_are_refused_never_taken_broadly() -> None:
    service, _ = _service(Clock(NOW))
    _, outcome = _create(service, exception_obj(rules=["MW-IMG-001", "MW-IMG-999"]))
    assert outcome.label == "denied"
    assert "MW-IMG-999" in outcome.review["response"]["status"]["message"]


def test_an_unchanged_spec_passes_even_once_expired() -> None:
    """Labels or finalizers on an expired exception must not be refused for its old dates."""
    service, _ = _service(Clock(dt.datetime(2027, 1, 1, tzinfo=dt.UTC)))
    admitted = exception_obj(creator=ALICE, created="2026-02-20T00:00:00Z")
    relabelled = copy.deepcopy(admitted)
    relabelled["metadata"]["labels"] = {"team": "ml"}
    assert service.validate(_request(relabelled, old=admitted)).label == "allowed"


def _observe(state: ClusterState, obj: dict[str, Any]) -> None:
    body = copy.deepcopy(obj)
    body["metadata"].setdefault("resourceVersion", "1")
    observe_object(state, "ModelPolicyException", body)


@pytest.mark.parametrize("mode", ["Enforce", "Patch"])
def test_a_workload_is_admitted_while_its_exception_lasts_then_denied_naming_it(
    mode: str,
) -> None:
    clock = Clock(NOW)
    service, state = _service(clock, sections={"images": {}, "mode": mode})
    pod = tagged_pod()
    assert service.validate(_request(pod)).label == "denied"
    _observe(state, exception_obj(expires="2026-03-01T12:00:10Z"))
    admitted = service.validate(_request(pod))
    assert admitted.label == "warned"
    warnings = admitted.review["response"]["warnings"]
    assert any("waived by exception serving-a/vendor-image" in w for w in warnings)
    assert admitted.decision is not None and not admitted.decision.findings  # not counted
    clock.now = NOW + dt.timedelta(seconds=10)  # no edit, no restart: the clock alone
    denied = service.validate(_request(pod))
    assert denied.label == "denied"
    message = denied.review["response"]["status"]["message"]
    assert "exception serving-a/vendor-image matches but expired at 2026-03-01T12:00:10Z" in (
        message
    )
