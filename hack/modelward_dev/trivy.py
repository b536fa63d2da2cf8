"""The Trivy Operator's VulnerabilityReport, for tests: its CRD and reports as the operator
writes them (``aquasecurity.github.io/v1alpha1``).

The CRD here is written for modelward's tests from the published schema of the Trivy
Operator's ``vulnerabilityreports.aquasecurity.github.io`` (its required fields and the ones
modelward reads: ``report.artifact.digest``, ``report.vulnerabilities[].vulnerabilityID`` and
``.severity``, ``report.updateTimestamp``); everything else is preserved as unknown fields,
as in the original. Install the real Trivy Operator CRDs in a real cluster.
"""

from __future__ import annotations

from typing import Any

__all__ = ["vulnerability_report", "vulnerability_report_crd"]

GROUP = "aquasecurity.github.io"
SEVERITIES = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"]


def _string() -> dict[str, Any]:
    return {"type": "string"}


def vulnerability_report_crd() -> dict[str, Any]:
    vulnerability = {
        "type": "object",
        "required": ["vulnerabilityID", "severity", "resource"],
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {
            "vulnerabilityID": _string(),
            "severity": {"type": "string", "enum": SEVERITIES},
            "resource": _string(),
            "installedVersion": _string(),
            "fixedVersion": _string(),
            "title": _string(),
        },
    }
    report = {
        "type": "object",
        "required": ["artifact", "scanner", "summary", "updateTimestamp", "vulnerabilities"],
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {
            "artifact": {
                "type": "object",
                "properties": {
                    "digest": _string(),
                    "repository": _string(),
                    "tag": _string(),
                },
            },
            "registry": {"type": "object", "properties": {"server": _string()}},
            "scanner": {
                "type": "object",
                "required": ["name", "vendor", "version"],
                "properties": {"name": _string(), "vendor": _string(), "version": _string()},
            },
            "summary": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {
                    f"{s.lower()}Count": {"type": "integer", "minimum": 0} for s in SEVERITIES
                },
            },
            "updateTimestamp": {"type": "string", "format": "date-time"},
            "vulnerabilities": {"type": "array", "items": vulnerability},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"vulnerabilityreports.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": "VulnerabilityReport",
                "listKind": "VulnerabilityReportList",
                "plural": "vulnerabilityreports",
                "singular": "vulnerabilityreport",
                "shortNames": ["vuln", "vulns"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["report"],
                            "x-kubernetes-preserve-unknown-fields": True,
                            "properties": {"report": report},
                        }
                    },
                }
            ],
        },
    }


def vulnerability_report(
    name: str,
    namespace: str,
    *,
    server: str,
    repository: str,
    digest: str,
    findings: list[tuple[str, str]],
) -> dict[str, Any]:
    """A report as the Trivy Operator writes it for one container image."""
    counts = {f"{s.lower()}Count": 0 for s in SEVERITIES}
    for _, severity in findings:
        counts[f"{severity.lower()}Count"] += 1
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "VulnerabilityReport",
        "metadata": {"name": name, "namespace": namespace},
        "report": {
            "artifact": {"repository": repository, "digest": digest, "tag": "v1"},
            "registry": {"server": server},
            "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "0.58.0"},
            "summary": counts,
            "updateTimestamp": "2026-11-20T10:00:00Z",
            "os": {"family": "debian", "name": "12"},
            "vulnerabilities": [
                {
                    "vulnerabilityID": vid,
                    "severity": severity,
                    "resource": "openssl",
                    "installedVersion": "3.0.0",
                    "fixedVersion": "3.0.1",
                    "title": vid,
                    "publishedDate": "2026-01-01T00:00:00Z",
                    "lastModifiedDate": "2026-01-01T00:00:00Z",
                }
                for vid, severity in findings
            ],
        },
    }
