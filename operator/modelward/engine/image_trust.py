"""Image trust as the engine sees it: who signed an image, what its vulnerability reports say,
and whether an OCI model's signature matched its layers.

They travel in :attr:`modelward.engine.facts.ImageFacts.trust`. The cryptography happens
before evaluation (``modelward.registry.trust`` calls
``modelward.integrity.image_signatures`` with each policy's trusted signers), so that the
engine stays pure and fast: what reaches it is *which configured signer* verified what, by a
stable :func:`signer_id` computed from the policy's own signer entry. A policy therefore only
ever trusts a signature made by one of its own signers, even when several policies with
different signers judge the same image.

The vulnerability report formats are parsed here (plain data, no cryptography): the cosign
vulnerability predicate (whose ``scanner.result`` is the scanner's own JSON; Trivy's and
Grype's are read) and the Trivy Operator ``VulnerabilityReport`` resource.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

#: Severities from least to most severe, as Trivy, Grype and the Trivy Operator name them.
SEVERITIES: Final = ("UNKNOWN", "NEGLIGIBLE", "LOW", "MEDIUM", "HIGH", "CRITICAL")
_RANK: Final = {s: i for i, s in enumerate(SEVERITIES)}
#: Where vulnerability reports come from.
SOURCE_ATTESTATION: Final = "CosignAttestation"
SOURCE_TRIVY_OPERATOR: Final = "TrivyOperator"
SOURCES: Final = (SOURCE_ATTESTATION, SOURCE_TRIVY_OPERATOR)
#: A report listing more findings than this is cut (the worst are kept) to bound memory.
MAX_FINDINGS: Final = 20_000


def severity_rank(severity: str) -> int:
    """Rank of a severity; anything unknown ranks as UNKNOWN (never as harmless-by-omission)."""
    return _RANK.get(severity.upper(), 0)


def signer_id(kind: str, pem: str) -> str:
    """A stable identity for a configured signer: what it trusts, not what it is called."""
    digest = hashlib.sha256(f"{kind}\n{pem.strip()}".encode()).hexdigest()
    return f"{kind}:sha256:{digest[:32]}"


@dataclass(frozen=True)
class Vulnerability:
    id: str
    severity: str
    package: str = ""


@dataclass(frozen=True)
class VulnerabilityReport:
    """One scan of one image digest.

    ``verified_by``: for an attestation, the signer ids whose signature over it verified (a
    report nobody trusted signed is ignored); empty for a Trivy Operator report, which is
    trusted through the cluster's RBAC (written by the operator's service account).
    """

    source: str
    findings: tuple[Vulnerability, ...]
    scanner: str = ""
    #: POSIX seconds when the scan finished, if the report says.
    scanned_at: float | None = None
    verified_by: frozenset[str] = frozenset()
    where: str = ""


@dataclass(frozen=True)
class ModelTrust:
    """What admission established about an OCI model artifact (image volume or modelcar).

    ``verified_by``: signer ids whose model signature verified and matched the layers (or
    could not be compared, see ``deferred``). ``problems``: why the signatures found did not
    verify (for the message). ``signatures``: how many model signatures were attached.
    """

    verified_by: frozenset[str] = frozenset()
    deferred: str | None = None
    problems: tuple[str, ...] = ()
    signatures: int = 0
    #: Of a verified signature: the OMS subject digest, the signer, the file count (for the
    #: DeployedModel inventory, under the name the in-pod verifier uses).
    model_digest: str = ""
    signer: str = ""
    files: int = 0


@dataclass(frozen=True)
class ImageTrust:
    """Trust evidence about one image digest, gathered before evaluation.

    ``error`` is set when the evidence could not be fetched (then nothing else is known).
    """

    digest: str
    signed_by: frozenset[str] = frozenset()
    signature_problems: tuple[str, ...] = ()
    signatures: int = 0
    reports: tuple[VulnerabilityReport, ...] = ()
    model: ModelTrust | None = None
    error: str | None = None


# --------------------------------------------------------------------------- report parsing


class ReportFormatError(ValueError):
    """A vulnerability report that cannot be read; the message names the field."""


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _bounded(findings: Iterable[Vulnerability]) -> tuple[Vulnerability, ...]:
    items = list(findings)
    if len(items) > MAX_FINDINGS:
        items.sort(key=lambda v: -severity_rank(v.severity))
        items = items[:MAX_FINDINGS]
    return tuple(items)


def _trivy_findings(result: Mapping[str, Any]) -> Iterable[Vulnerability]:
    """Trivy's JSON report: ``Results[].Vulnerabilities[]``."""
    for target in result.get("Results") or ():
        if not isinstance(target, Mapping):
            raise ReportFormatError("Results[] entries must be objects")
        for v in target.get("Vulnerabilities") or ():
            if not isinstance(v, Mapping) or not isinstance(v.get("VulnerabilityID"), str):
                raise ReportFormatError("Vulnerabilities[] entries need a VulnerabilityID")
            yield Vulnerability(
                id=v["VulnerabilityID"],
                severity=str(v.get("Severity") or "UNKNOWN").upper(),
                package=str(v.get("PkgName") or ""),
            )


def _grype_findings(result: Mapping[str, Any]) -> Iterable[Vulnerability]:
    """Grype's JSON report: ``matches[].vulnerability``."""
    for match in result.get("matches") or ():
        vuln = match.get("vulnerability") if isinstance(match, Mapping) else None
        if not isinstance(vuln, Mapping) or not isinstance(vuln.get("id"), str):
            raise ReportFormatError("matches[].vulnerability needs an id")
        artifact = match.get("artifact") or {}
        yield Vulnerability(
            id=vuln["id"],
            severity=str(vuln.get("severity") or "UNKNOWN").upper(),
            package=str(artifact.get("name") or "") if isinstance(artifact, Mapping) else "",
        )


def report_from_cosign_predicate(
    predicate: Mapping[str, Any], *, verified_by: frozenset[str], where: str = ""
) -> VulnerabilityReport:
    """A ``cosign attest --type vuln`` predicate (``https://cosign.sigstore.dev/attestation/vuln/v1``).

    ``scanner.result`` holds the scanner's own output; Trivy's (``Results``) and Grype's
    (``matches``) are understood. Any other shape is an error, not an empty report: a report
    that cannot be read must not pass for a clean one.
    """
    scanner = predicate.get("scanner")
    if not isinstance(scanner, Mapping):
        raise ReportFormatError("predicate.scanner is missing")
    result = scanner.get("result")
    if not isinstance(result, Mapping):
        raise ReportFormatError("predicate.scanner.result is not an object")
    if "Results" in result or "SchemaVersion" in result:
        findings = _bounded(_trivy_findings(result))
    elif "matches" in result:
        findings = _bounded(_grype_findings(result))
    else:
        raise ReportFormatError(
            "predicate.scanner.result is neither Trivy's (Results) nor Grype's (matches) JSON"
        )
    metadata = predicate.get("metadata")
    finished = metadata.get("scanFinishedOn") if isinstance(metadata, Mapping) else None
    return VulnerabilityReport(
        source=SOURCE_ATTESTATION,
        findings=findings,
        scanner=str(scanner.get("uri") or ""),
        scanned_at=_timestamp(finished),
        verified_by=verified_by,
        where=where,
    )


def trivy_operator_digest(obj: Mapping[str, Any]) -> str | None:
    """The image digest a Trivy Operator ``VulnerabilityReport`` is about, if it names one."""
    report = obj.get("report")
    artifact = report.get("artifact") if isinstance(report, Mapping) else None
    digest = artifact.get("digest") if isinstance(artifact, Mapping) else None
    return digest if isinstance(digest, str) and digest.startswith("sha256:") else None


def report_from_trivy_operator(obj: Mapping[str, Any]) -> VulnerabilityReport:
    """A Trivy Operator ``VulnerabilityReport`` (``aquasecurity.github.io/v1alpha1``)."""
    report = obj.get("report")
    if not isinstance(report, Mapping):
        raise ReportFormatError("report is missing")
    findings = []
    for v in report.get("vulnerabilities") or ():
        if not isinstance(v, Mapping) or not isinstance(v.get("vulnerabilityID"), str):
            raise ReportFormatError("report.vulnerabilities[] entries need a vulnerabilityID")
        findings.append(
            Vulnerability(
                id=v["vulnerabilityID"],
                severity=str(v.get("severity") or "UNKNOWN").upper(),
                package=str(v.get("resource") or ""),
            )
        )
    meta = obj.get("metadata") or {}
    scanner = report.get("scanner") or {}
    return VulnerabilityReport(
        source=SOURCE_TRIVY_OPERATOR,
        findings=_bounded(findings),
        scanner=str(scanner.get("name") or "Trivy") if isinstance(scanner, Mapping) else "Trivy",
        scanned_at=_timestamp(report.get("updateTimestamp")),
        where=f"VulnerabilityReport {meta.get('namespace', '')}/{meta.get('name', '')}",
    )
