"""The evidence pack gathered from a fixed cluster: every section says what the cluster holds."""

from __future__ import annotations

import datetime as dt

import jsonschema

from modelward.evidence.collect import collect
from modelward.evidence.model import AccessSection, check_digest, json_schema
from tests.unit.evidence.fixtures import NOW, FakeReader, populated

DAY = dt.timedelta(days=30)
MFA_CONFIG = {
    "apiVersion": "apiserver.config.k8s.io/v1",
    "kind": "AuthenticationConfiguration",
    "jwt": [
        {
            "issuer": {"url": "https://sso.example.com", "audiences": ["k8s"]},
            "claimValidationRules": [
                {"expression": "'mfa' in claims.amr", "message": "MFA is required"}
            ],
        }
    ],
}


def test_activities_are_enforced_audit_only_or_not_covered_by_ready_policies() -> None:
    pack = collect(populated(), now=NOW, since=DAY)
    status = {a["id"]: a["status"] for a in pack["activities"]}
    # hosting: isolation Enforce + images Patch; integrity only in Audit; transport's policy is
    # not Ready so it counts for nothing, but secrets (a ready ModelPolicy) enforces; no access.
    assert status == {
        "restrict-access": "not-covered",
        "deployment-controls": "enforced",
        "hosting-environment": "enforced",
        "model-integrity": "audit-only",
    }
    controls = next(a for a in pack["activities"] if a["id"] == "deployment-controls")
    assert {(u["name"], u["section"], u["ready"]) for u in controls["policies"]} == {
        ("broken-transport", "transport", False),
        ("team", "secrets", True),
    }


def test_policy_rows_carry_section_modes_and_what_they_select() -> None:
    pack = collect(populated(), now=NOW, since=DAY)
    hosting = next(p for p in pack["policies"] if p["name"] == "hosting")
    assert hosting["sections"] == {"isolation": "Enforce", "images": "Patch"}
    assert hosting["selects"] == "namespaces labelled tier=serving"
    team = next(p for p in pack["policies"] if p["name"] == "team")
    assert team["namespace"] == "serving" and team["selects"] == "namespace serving"
    broken = next(p for p in pack["policies"] if p["name"] == "broken-transport")
    assert not broken["ready"] and broken["reason"] == "key not found"


def test_violations_come_from_modelwards_own_reports_and_results_only() -> None:
    pack = collect(populated(), now=NOW, since=DAY)
    assert [(v["resource"], v["rule"], v["result"]) for v in pack["violations"]] == [
        ("Pod/legacy-0", "MW-IMG-001", "skip"),
        ("Pod/llm-0", "MW-ISO-001", "fail"),
    ]
    assert pack["violationsTotal"] == 2


def test_exceptions_are_active_or_expired_by_the_clock() -> None:
    pack = collect(populated(), now=NOW, since=DAY)
    states = {e["name"]: e["state"] for e in pack["exceptions"]}
    assert states == {"legacy": "active", "old": "expired"}
    later = collect(populated(), now=NOW + dt.timedelta(days=10), since=DAY)
    assert {e["state"] for e in later["exceptions"]} == {"expired"}
    legacy = next(e for e in pack["exceptions"] if e["name"] == "legacy")
    assert legacy["approvedBy"] == "ciso@example.com" and legacy["ticket"] == "SEC-42"
    assert legacy["workloads"] == "names legacy"
    assert legacy["policy"] == "ClusterModelPolicy hosting"


def test_models_and_counters_are_listed() -> None:
    pack = collect(populated(), now=NOW, since=DAY)
    assert [m["digest"] for m in pack["models"]] == ["sha256:" + "ab" * 32]
    hosting = next(c for c in pack["admissions"]["policyStatus"] if c["policy"] == "hosting")
    assert (hosting["denied"], hosting["patched"], hosting["current"]) == (4, 2, 1)
    assert pack["admissions"]["prometheus"] is None


def test_period_and_digest_seal_the_pack() -> None:
    pack = collect(populated(), now=NOW, since=DAY)
    assert pack["period"] == {"start": "2026-10-27T12:00:00Z", "end": "2026-11-26T12:00:00Z"}
    assert check_digest(pack) is None
    tampered = {**pack, "violationsTotal": 0}
    assert "mismatch" in (check_digest(tampered) or "")
    jsonschema.validate(pack, json_schema())


def test_an_empty_cluster_still_makes_a_valid_pack_that_says_so() -> None:
    pack = collect(FakeReader(), now=NOW, since=DAY)
    assert {a["status"] for a in pack["activities"]} == {"not-covered"}
    assert not pack["accessReview"]["available"]
    assert pack["authentication"]["mfa"] == "unknown"
    assert [a["item"] for a in pack["attestations"]] == [
        "Multi-factor authentication for people who can reach model deployments"
    ]
    jsonschema.validate(pack, json_schema())


def test_mfa_is_enforced_only_when_every_issuer_requires_it() -> None:
    reader = populated()
    pack = collect(reader, now=NOW, since=DAY, auth_config=MFA_CONFIG)
    assert pack["authentication"]["mfa"] == "enforced"
    assert pack["attestations"] == []
    details = [m["detail"] for m in pack["authentication"]["methods"]]
    assert any("structured authentication configuration" in d for d in details)
    assert any(d.startswith("user auditor") for d in details)
    second = {"issuer": {"url": "https://legacy.example.com"}, "claimValidationRules": []}
    weaker = {**MFA_CONFIG, "jwt": [*MFA_CONFIG["jwt"], second]}  # type: ignore[list-item]
    pack = collect(reader, now=NOW, since=DAY, auth_config=weaker)
    assert pack["authentication"]["mfa"] == "not-enforced"
    assert "https://legacy.example.com" in pack["attestations"][0]["reason"]


def test_access_review_rows_and_prometheus_counts_are_included_when_given() -> None:
    def access() -> AccessSection:
        return {
            "available": True,
            "reason": "",
            "violations": 1,
            "rows": [
                {
                    "namespace": "serving",
                    "subject": "User mallory",
                    "permission": "pods/exec create",
                    "via": "RoleBinding serving/debug -> ClusterRole edit",
                    "allowed": False,
                }
            ],
        }

    def prometheus(end: dt.datetime, period: dt.timedelta) -> object:
        assert end == NOW and period == DAY
        return {
            "url": "http://p",
            "range": "2592000s",
            "requests": [],
            "violations": [],
            "error": "",
        }

    pack = collect(populated(), now=NOW, since=DAY, access_review=access, prometheus=prometheus)  # type: ignore[arg-type]
    assert pack["accessReview"]["rows"][0]["subject"] == "User mallory"
    assert pack["admissions"]["prometheus"] is not None
    jsonschema.validate(pack, json_schema())
