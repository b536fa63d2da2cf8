"""The image trust rules on facts (MW-IMG-020..023), and the report formats they read."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelward.engine.decision import Mode
from modelward.engine.evaluate import evaluate_workload
from modelward.engine.facts import ImageFacts, ImageLookups
from modelward.engine.image_trust import (
    SOURCE_ATTESTATION,
    SOURCE_TRIVY_OPERATOR,
    ImageTrust,
    ModelTrust,
    ReportFormatError,
    Vulnerability,
    VulnerabilityReport,
    report_from_cosign_predicate,
    report_from_trivy_operator,
    signer_id,
)
from modelward.engine.workloads import workload_from_object
from modelward.errors import PolicyError
from tests.unit.engine.builders import GOOD_IMAGE, compliant_pod, facts, policy

NOW = 1_800_000_000.0
DIGEST = GOOD_IMAGE.split("@")[1]


def _public_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


KEY_A, KEY_B = _public_key(), _public_key()
ID_A, ID_B = signer_id("publicKey", KEY_A), signer_id("publicKey", KEY_B)


def _signed_by(key: str) -> dict[str, Any]:
    return {"signatures": {"trustedSigners": [{"name": "s", "publicKey": key}]}}


def _decide(trust: ImageTrust | None, *sections: dict[str, Any], pod: Any = None) -> list[Any]:
    policies = [policy({"images": s}, name=f"p{i}") for i, s in enumerate(sections)]
    body = pod or compliant_pod()
    references = [c["image"] for c in body["spec"]["containers"]] + [
        v["image"]["reference"] for v in body["spec"]["volumes"] if "image" in v
    ]
    lookups = ImageLookups(
        {r: ImageFacts(r, digest=DIGEST, manifest_digest=DIGEST, trust=trust) for r in references},
        NOW,
    )
    decision = evaluate_workload(workload_from_object(body), facts(), policies, images=lookups)
    return list(decision.findings)


def test_each_policy_accepts_only_its_own_signers() -> None:
    trust = ImageTrust(DIGEST, signed_by=frozenset({ID_A}), signatures=1)
    assert _decide(trust, _signed_by(KEY_A)) == []
    findings = _decide(trust, _signed_by(KEY_A), _signed_by(KEY_B))
    assert [(f.violation.rule_id, f.policy.name) for f in findings] == [("MW-IMG-020", "p1")]


def test_an_unsigned_image_names_the_image_digest_and_fix() -> None:
    (finding,) = _decide(ImageTrust(DIGEST), _signed_by(KEY_A))
    text = finding.describe()
    assert "MW-IMG-020" in text and GOOD_IMAGE in text and "has no signature" in text
    assert "cosign sign --key" in text and finding.blocks


def test_trust_evidence_that_could_not_be_read_is_never_compliant() -> None:
    trust = ImageTrust(DIGEST, error="its signatures could not be read: HTTP 500")
    (finding,) = _decide(trust, _signed_by(KEY_A))
    assert "could not be verified" in finding.violation.message and finding.blocks
    warned = _decide(trust, {**_signed_by(KEY_A), "onLookupFailure": "Warn"})
    assert [f.mode for f in warned] == [Mode.AUDIT]


def _report(*findings: tuple[str, str], source: str = SOURCE_TRIVY_OPERATOR) -> Any:
    return VulnerabilityReport(
        source=source,
        findings=tuple(Vulnerability(i, s) for i, s in findings),
        verified_by=frozenset({ID_A}) if source == SOURCE_ATTESTATION else frozenset(),
    )


def _gate(**vulnerabilities: Any) -> dict[str, Any]:
    return {"vulnerabilities": vulnerabilities}


def test_severity_gate_ignore_list_and_expiry() -> None:
    trust = ImageTrust(DIGEST, reports=(_report(("CVE-1", "CRITICAL"), ("CVE-2", "LOW")),))
    (finding,) = _decide(trust, _gate())
    assert finding.violation.rule_id == "MW-IMG-021" and "CVE-1 (CRITICAL" in finding.describe()
    assert "CVE-2" not in finding.describe()
    future = [{"id": "CVE-1", "expires": "2099-01-01T00:00:00Z"}]
    assert _decide(trust, _gate(ignore=future)) == []
    past = [{"id": "CVE-1", "expires": "2020-01-01T00:00:00Z"}]
    (expired,) = _decide(trust, _gate(ignore=past))
    assert "ignore entry expired 2020-01-01T00:00:00Z" in expired.violation.message
    (strict,) = _decide(trust, _gate(maxSeverity="NONE", ignore=future))
    assert "CVE-2 (LOW" in strict.violation.message and "CVE-1" not in strict.violation.message


def test_the_expiry_is_judged_against_the_time_facts_were_gathered() -> None:
    trust = ImageTrust(DIGEST, reports=(_report(("CVE-1", "CRITICAL")),))
    just_after = [{"id": "CVE-1", "expires": "2027-01-15T08:00:01Z"}]  # NOW is 08:00:00
    assert _decide(trust, _gate(ignore=just_after)) == []
    just_before = [{"id": "CVE-1", "expires": "2027-01-15T08:00:00Z"}]
    assert len(_decide(trust, _gate(ignore=just_before))) == 1


def test_missing_reports_per_on_missing_report_and_untrusted_attestations() -> None:
    empty = ImageTrust(DIGEST)
    (denied,) = _decide(empty, _gate())
    assert denied.violation.rule_id == "MW-IMG-022" and denied.blocks
    (warned,) = _decide(empty, _gate(onMissingReport="Warn"))
    assert warned.mode is Mode.AUDIT
    assert _decide(empty, _gate(onMissingReport="Allow")) == []
    # A clean attestation signed by a key the policy does not trust is no report.
    clean = ImageTrust(DIGEST, reports=(_report(source=SOURCE_ATTESTATION),))
    untrusted = _gate(attestors=[{"name": "b", "publicKey": KEY_B}])
    assert [f.violation.rule_id for f in _decide(clean, untrusted)] == ["MW-IMG-022"]
    trusted = _gate(attestors=[{"name": "a", "publicKey": KEY_A}])
    assert _decide(clean, trusted) == []
    # A source the policy does not read is no report either.
    assert (
        len(
            _decide(
                clean,
                {
                    **trusted,
                    "vulnerabilities": {**trusted["vulnerabilities"], "sources": ["TrivyOperator"]},
                },
            )
        )
        == 1
    )


def _model_pod(reference: str) -> dict[str, Any]:
    body = compliant_pod()
    body["spec"]["volumes"].append({"name": "model", "image": {"reference": reference}})
    return body


MODELS = {"models": {"trustedSigners": [{"name": "m", "publicKey": KEY_A}]}}


@pytest.mark.parametrize(
    ("model", "says"),
    [
        (ModelTrust(), "has no model signature"),
        (
            ModelTrust(problems=("the model artifact is not what was signed",), signatures=1),
            "not what was signed",
        ),
        (ModelTrust(verified_by=frozenset({ID_B}), signatures=1), "does not verify"),
    ],
)
def test_oci_models_must_verify_with_the_policy_signers(model: ModelTrust, says: str) -> None:
    trust = ImageTrust(DIGEST, model=model)
    findings = _decide(trust, MODELS, pod=_model_pod(f"registry.example.com/m@{DIGEST}"))
    assert [f.violation.rule_id for f in findings] == ["MW-IMG-023"]
    assert says in findings[0].violation.message
    assert findings[0].violation.container == 'image volume "model"'


def test_a_verified_model_passes_even_when_its_files_are_left_to_the_pod() -> None:
    model = ModelTrust(verified_by=frozenset({ID_A}), deferred="layer is packed", signatures=1)
    pod = _model_pod(f"registry.example.com/m@{DIGEST}")
    assert _decide(ImageTrust(DIGEST, model=model), MODELS, pod=pod) == []


def test_a_model_by_tag_is_refused() -> None:
    model = ModelTrust(verified_by=frozenset({ID_A}), signatures=1)
    findings = _decide(
        ImageTrust(DIGEST, model=model), MODELS, pod=_model_pod("r.example.com/m:v1")
    )
    assert any("not referenced by digest" in f.violation.message for f in findings)


def test_model_policy_signers_must_be_inline() -> None:
    with pytest.raises(PolicyError, match=r"does not read"):
        policy(
            {
                "images": {
                    "signatures": {
                        "trustedSigners": [
                            {"name": "s", "configMapKeyRef": {"name": "k", "key": "pem"}}
                        ]
                    }
                }
            },
            kind="ModelPolicy",
            namespace="serving-a",
        )


def test_report_formats() -> None:
    trivy = {
        "scanner": {
            "uri": "trivy",
            "result": {
                "SchemaVersion": 2,
                "Results": [
                    {
                        "Vulnerabilities": [
                            {"VulnerabilityID": "CVE-9", "Severity": "high", "PkgName": "zlib"}
                        ]
                    }
                ],
            },
        }
    }
    report = report_from_cosign_predicate(trivy, verified_by=frozenset())
    assert report.findings == (Vulnerability("CVE-9", "HIGH", "zlib"),)
    grype = {
        "scanner": {
            "result": {
                "matches": [
                    {
                        "vulnerability": {"id": "GHSA-1", "severity": "Critical"},
                        "artifact": {"name": "x"},
                    }
                ]
            }
        }
    }
    assert (
        report_from_cosign_predicate(grype, verified_by=frozenset()).findings[0].severity
        == "CRITICAL"
    )
    with pytest.raises(ReportFormatError):
        report_from_cosign_predicate(
            {"scanner": {"result": {"something": []}}}, verified_by=frozenset()
        )
    with pytest.raises(ReportFormatError):
        report_from_trivy_operator({"report": {"vulnerabilities": [{"severity": "HIGH"}]}})
    parsed = report_from_trivy_operator(
        {
            "metadata": {"namespace": "ns", "name": "r"},
            "report": {
                "artifact": {"digest": DIGEST},
                "updateTimestamp": "2026-11-20T10:00:00Z",
                "vulnerabilities": [
                    {"vulnerabilityID": "CVE-3", "severity": "MEDIUM", "resource": "x"}
                ],
            },
        }
    )
    assert parsed.findings == (Vulnerability("CVE-3", "MEDIUM", "x"),)
    assert parsed.scanned_at == 1795168800.0
