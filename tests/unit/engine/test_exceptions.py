"""Policy exceptions in the engine: what they waive, for whom, until when, what they never do."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from modelward.engine import StaticFacts, evaluate_pod_update, evaluate_workload
from modelward.engine.exceptions import (
    CREATOR_ANNOTATION,
    Creator,
    ExceptionError,
    Exceptions,
    PolicyException,
    exception_records,
    exceptions_from_objects,
    lifetime_problem,
    parse_exception,
    unknown_rules,
    workload_target,
)
from modelward.engine.rules import RULES
from modelward.engine.workloads import workload_from_object
from tests.unit.engine.builders import compliant_pod, policy

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
TAGGED = "registry.example.com/serving/server:1.0"  # breaks MW-IMG-001 only


def exception_obj(
    *,
    name: str = "vendor-image",
    namespace: str = "serving-a",
    rules: list[str] | None = None,
    workloads: dict[str, Any] | None = None,
    policy_ref: dict[str, str] | None = None,
    approved: str = "2026-02-20T00:00:00Z",
    expires: str = "2026-03-20T00:00:00Z",
    created: str | None = None,
    creator: Creator | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if created:
        meta["creationTimestamp"] = created
    if creator:
        meta["annotations"] = {CREATOR_ANNOTATION: creator.annotation()}
    return {
        "apiVersion": "modelward.io/v1alpha1",
        "kind": "ModelPolicyException",
        "metadata": meta,
        "spec": {
            "policy": policy_ref or {"kind": "ClusterModelPolicy", "name": "p"},
            "rules": rules if rules is not None else ["MW-IMG-001"],
            "workloads": workloads if workloads is not None else {"names": ["model"]},
            "justification": "the vendor publishes tags only; digest pinning from v2",
            "approvedBy": "ciso@example.com",
            "ticket": "SEC-42",
            "approvedAt": approved,
            "expiresAt": expires,
        },
    }


def tagged_pod(**meta: Any) -> dict[str, Any]:
    pod = compliant_pod()
    pod["spec"]["containers"][0]["image"] = TAGGED
    pod["metadata"].update(meta)
    return pod


def judge(
    obj: dict[str, Any],
    *exceptions: dict[str, Any],
    now: dt.datetime = NOW,
    max_lifetime: dt.timedelta = dt.timedelta(days=90),
    **policy_args: Any,
) -> Any:
    policies = [policy({"images": {}}, **policy_args)]
    return evaluate_workload(
        workload_from_object(obj),
        StaticFacts(),
        policies,
        exceptions=Exceptions(
            tuple(parse_exception(e) for e in exceptions), now=now, max_lifetime=max_lifetime
        ),
    )


def test_without_an_exception_the_tagged_image_is_denied() -> None:
    decision = judge(tagged_pod())
    assert [f.violation.rule_id for f in decision.denials] == ["MW-IMG-001"]


def test_a_matching_unexpired_exception_waives_the_finding_and_names_itself() -> None:
    decision = judge(tagged_pod(), exception_obj())
    assert decision.allowed and not decision.warnings and not decision.fixes
    (waived,) = decision.waived
    assert waived.waived_by == "serving-a/vendor-image"
    assert "approved by ciso@example.com" in waived.exception_notes[0]
    assert "expires 2026-03-20T00:00:00Z" in waived.exception_notes[0]


def test_only_the_listed_rules_are_waived() -> None:
    pod = tagged_pod()
    pod["spec"]["containers"][0]["image"] = "registry.example.com/serving/server:latest"
    decision = judge(pod, exception_obj())
    assert [f.violation.rule_id for f in decision.denials] == ["MW-IMG-003"]
    assert [f.violation.rule_id for f in decision.waived] == ["MW-IMG-001"]


def test_an_expired_exception_waives_nothing_and_the_denial_says_so() -> None:
    decision = judge(tagged_pod(), exception_obj(), now=dt.datetime(2026, 3, 20, tzinfo=dt.UTC))
    (denial,) = decision.denials
    assert denial.waived_by is None
    message = denial.describe()
    assert "exception serving-a/vendor-image matches but expired at 2026-03-20T00:00:00Z" in message
    assert "renew it" in message


def test_the_maximum_lifetime_counts_from_creation_whatever_expires_at_says() -> None:
    """expiresAt edited later (or set long where the webhook did not check) cannot extend it."""
    exception = exception_obj(
        approved="2026-01-01T00:00:00Z",
        expires="2026-12-01T00:00:00Z",
        created="2026-01-01T00:00:00Z",
    )
    inside = judge(tagged_pod(), exception, now=dt.datetime(2026, 3, 31, tzinfo=dt.UTC))
    assert inside.allowed
    after = judge(tagged_pod(), exception, now=dt.datetime(2026, 4, 1, tzinfo=dt.UTC))
    assert not after.allowed
    assert "expired at 2026-04-01T00:00:00Z" in after.denials[0].describe()


def test_another_namespace_s_exception_never_applies() -> None:
    assert not judge(tagged_pod(), exception_obj(namespace="serving-b")).allowed


def test_a_deployment_s_exception_covers_its_replicasets_and_their_pods() -> None:
    exception = exception_obj(workloads={"names": ["llm"]})
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "llm", "namespace": "serving-a"},
        "spec": {"template": copy.deepcopy({k: tagged_pod()[k] for k in ("metadata", "spec")})},
    }
    assert judge(deployment, exception).allowed
    replica_set = copy.deepcopy(deployment)
    replica_set.update(kind="ReplicaSet")
    replica_set["metadata"] = {
        "name": "llm-5d8f7c",
        "namespace": "serving-a",
        "ownerReferences": [{"kind": "Deployment", "name": "llm", "controller": True}],
    }
    assert judge(replica_set, exception).allowed
    pod = tagged_pod(
        name="llm-5d8f7c-x2x9q",
        ownerReferences=[{"kind": "ReplicaSet", "name": "llm-5d8f7c", "controller": True}],
    )
    pod["metadata"]["labels"]["pod-template-hash"] = "5d8f7c"
    assert "llm" in workload_target(workload_from_object(pod)).names
    assert judge(pod, exception).allowed
    # A pod merely named like the Deployment's prefix is not covered by the hash rule.
    stranger = tagged_pod(name="llm-other")
    assert not judge(stranger, exception).allowed


def test_names_and_selector_together_both_must_hold() -> None:
    both = exception_obj(workloads={"names": ["model"], "selector": {"matchLabels": {"t": "x"}}})
    assert not judge(tagged_pod(), both).allowed
    labelled = tagged_pod()
    labelled["metadata"]["labels"]["t"] = "x"
    assert judge(labelled, both).allowed
    by_label = exception_obj(workloads={"selector": {"matchLabels": {"t": "x"}}})
    assert judge(labelled, by_label).allowed
    assert not judge(tagged_pod(), by_label).allowed


def test_an_exception_names_one_policy_exactly() -> None:
    other = exception_obj(policy_ref={"kind": "ClusterModelPolicy", "name": "other"})
    assert not judge(tagged_pod(), other).allowed
    namespaced = exception_obj(policy_ref={"kind": "ModelPolicy", "name": "p"})
    assert not judge(tagged_pod(), namespaced).allowed  # the policy is a ClusterModelPolicy


def test_a_model_policy_is_waived_only_by_its_own_namespace_s_exceptions() -> None:
    ref = {"kind": "ModelPolicy", "name": "p"}
    own = exception_obj(policy_ref=ref)
    assert judge(tagged_pod(), own, kind="ModelPolicy", namespace="serving-a").allowed


def test_patch_mode_does_not_patch_what_an_exception_waives() -> None:
    pod = tagged_pod()
    del pod["spec"]["securityContext"]["runAsNonRoot"]
    decision = evaluate_workload(
        workload_from_object(pod),
        StaticFacts(),
        [policy({"isolation": {}}, mode="Patch")],
        exceptions=Exceptions((parse_exception(exception_obj(rules=["MW-ISO-002"])),), now=NOW),
    )
    assert [f.violation.rule_id for f in decision.waived] == ["MW-ISO-002"]
    assert not [f for f in decision.fixes if f.violation.rule_id == "MW-ISO-002"]


def test_audit_mode_warnings_leave_out_waived_findings() -> None:
    decision = judge(tagged_pod(), exception_obj(), mode="Audit")
    assert not decision.warnings and len(decision.waived) == 1


def _groups_policy(groups: list[str]) -> Any:
    spec = {"images": {}, "exceptions": {"allowedGroups": groups}}
    return policy(spec)


@pytest.mark.parametrize(
    ("creator", "counts"),
    [
        (Creator("alice", ("security-approvers", "system:authenticated")), True),
        (Creator("mallory", ("developers",)), False),
        (None, False),
    ],
)
def test_allowed_groups_decide_whose_exceptions_count(
    creator: Creator | None, counts: bool
) -> None:
    exception = parse_exception(exception_obj(creator=creator))
    decision = evaluate_workload(
        workload_from_object(tagged_pod()),
        StaticFacts(),
        [_groups_policy(["security-approvers"])],
        exceptions=Exceptions((exception,), now=NOW),
    )
    assert decision.allowed is counts
    if not counts:
        assert "does not count" in decision.denials[0].describe()


def test_a_forged_creator_annotation_is_just_a_value_the_webhook_checks() -> None:
    """The engine reads the annotation; the webhook (tests/unit/admission) makes it true."""
    broken = exception_obj()
    broken["metadata"]["annotations"] = {CREATOR_ANNOTATION: "not json"}
    assert parse_exception(broken).creator is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"rules": ["MW-IMG-*"]}, "wildcards are not allowed"),
        ({"rules": ["*"]}, "wildcards are not allowed"),
        ({"rules": []}, "spec.rules must list"),
        ({"workloads": {}}, "names or a selector"),
        ({"workloads": {"selector": {}}}, "would select every workload"),
        ({"approvedBy": " "}, "approvedBy is required"),
        ({"expiresAt": None}, "expiresAt is missing"),
        ({"expiresAt": "tomorrow"}, "not an RFC 3339 time"),
        ({"expiresAt": "2026-02-19T00:00:00Z"}, "must be after spec.approvedAt"),
        ({"expiresAt": "2027-02-21T00:00:00Z"}, "more than 365 days"),
        ({"policy": {"kind": "Role", "name": "p"}}, "must name one policy"),
    ],
)
def test_unusable_exceptions_are_refused_with_the_field(
    change: dict[str, Any], problem: str
) -> None:
    obj = exception_obj()
    obj["spec"].update(change)
    obj["spec"] = {k: v for k, v in obj["spec"].items() if v is not None}
    with pytest.raises(ExceptionError, match=problem):
        parse_exception(obj)


def test_unknown_but_well_formed_rule_ids_are_found() -> None:
    exception = parse_exception(exception_obj(rules=["MW-IMG-001", "MW-IMG-999"]))
    assert unknown_rules(exception, RULES) == ("MW-IMG-999",)


def test_lifetime_problem_counts_from_now_on_create_and_from_creation_on_update() -> None:
    exception = parse_exception(exception_obj(expires="2026-06-01T00:00:00Z"))
    ninety = dt.timedelta(days=90)
    created_problem = lifetime_problem(exception, now=NOW, max_lifetime=ninety, created_at=None)
    assert created_problem is not None and "2026-05-30T12:00:00Z" in created_problem
    assert (
        lifetime_problem(exception, now=NOW, max_lifetime=dt.timedelta(days=100), created_at=None)
        is None
    )
    # On UPDATE the bound is from creation: created long ago, the same date is refused.
    old = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert lifetime_problem(exception, now=NOW, max_lifetime=dt.timedelta(days=100), created_at=old)
    future = parse_exception(exception_obj(approved="2026-03-02T00:00:00Z"))
    problem = lifetime_problem(future, now=NOW, max_lifetime=ninety, created_at=None)
    assert problem is not None and "in the future" in problem


def test_records_say_who_approved_and_which_are_active() -> None:
    active = parse_exception(exception_obj(creator=Creator("alice", ("approvers",))))
    expired = parse_exception(
        exception_obj(name="old", approved="2026-01-01T00:00:00Z", expires="2026-02-01T00:00:00Z")
    )
    records = exception_records([active, expired], now=NOW)
    assert [(r.name, r.state, r.approved_by, r.created_by) for r in records] == [
        ("old", "expired", "ciso@example.com", None),
        ("vendor-image", "active", "ciso@example.com", "alice"),
    ]
    assert records[1].rules == ("MW-IMG-001",) and records[1].ticket == "SEC-42"
    assert records[1].workloads == "names model"


def test_policy_exception_expiry_without_creation_time_is_expires_at() -> None:
    exception: PolicyException = parse_exception(exception_obj())
    assert exception.expiry(dt.timedelta(days=1)) == exception.expires_at


def test_listed_objects_compile_and_broken_ones_are_reported_not_dropped() -> None:
    good = exception_obj()
    del good["kind"]  # as in a list response
    broken = exception_obj(name="broken", rules=["*"])
    found, problems = exceptions_from_objects([good, broken])
    assert [e.name for e in found] == ["vendor-image"]
    assert len(problems) == 1 and "serving-a/broken" in problems[0]


def test_a_pod_update_is_waived_like_a_create() -> None:
    """``kubectl set image`` on a running pod: the new image's finding is introduced by the
    update, and the exception covers it as it would on CREATE."""
    old = workload_from_object(compliant_pod())
    new = workload_from_object(tagged_pod())
    policies = [policy({"images": {}})]
    exceptions = Exceptions((parse_exception(exception_obj()),), now=NOW)
    assert not evaluate_pod_update(old, new, StaticFacts(), policies).allowed
    decision = evaluate_pod_update(old, new, StaticFacts(), policies, exceptions=exceptions)
    assert decision.allowed and [f.waived_by for f in decision.waived] == ["serving-a/vendor-image"]
