"""``modelward check -o policyreport|sarif|junit``: the findings in the formats CI reads.

- **PolicyReport** (wgpolicyk8s.io/v1alpha2), one per namespace, as the audit writes them in
  the cluster (Kyverno's Policy Reporter reads both), named ``modelward-check`` so that
  applying it never overwrites the audit's ``modelward`` report;
- **SARIF 2.1.0**, for code-scanning dashboards (GitHub, GitLab): one rule per rule ID, one
  result per finding, located at the manifest file and the line its document starts on;
- **JUnit XML**, for test-report widgets: one test case per object judged, failing when
  something in it is denied (warnings and patches in its ``system-out``).

Every format lists what ``-o json`` lists; none changes the exit code (1 when denied).
"""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from modelward import __version__, safeyaml
from modelward.api.schema import POLICY_REPORT_GROUP, POLICY_REPORT_VERSION
from modelward.check import STDIN_LABEL, CheckOutcome, CheckResult, Located, resource_of
from modelward.engine.rules import RULES

REPORT_NAME = "modelward-check"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
#: The audit's severities (``controller.audit.SEVERITY``; a test keeps them equal): the
#: check layer must not import the controller, which brings the Kubernetes client along.
SEVERITY = {
    "isolation": "high",
    "integrity": "critical",
    "secrets": "high",
    "transport": "medium",
    "images": "medium",
}
SARIF_LEVEL = {"deny": "error", "patch": "warning", "warn": "warning"}
FORMATS = ("policyreport", "sarif", "junit")


def _family(rule_id: str) -> str:
    return RULES[rule_id].family if rule_id in RULES else "other"


def _message(result: CheckResult) -> str:
    v = result.finding.violation
    where = f"{v.container}: " if v.container else ""
    return f"{where}{v.message}. Fix: {v.fix}"


def _findings_by_source(outcome: CheckOutcome) -> dict[str, list[CheckResult]]:
    found: dict[str, list[CheckResult]] = defaultdict(list)
    for result in outcome.results:
        found[result.source].append(result)
    return found


# --------------------------------------------------------------------------- PolicyReport


def _report_resource(located: Located) -> dict[str, str]:
    obj = located.obj
    resource = resource_of(obj)
    return {
        "apiVersion": str(obj.get("apiVersion") or ""),
        "kind": resource["kind"],
        "namespace": resource["namespace"],
        "name": resource["name"],
    }


def render_policy_reports(outcome: CheckOutcome, *, now: dt.datetime | None = None) -> str:
    """One ``PolicyReport`` per namespace, multi-document YAML (``kubectl apply -f``-able)."""
    stamp = {"seconds": int((now or dt.datetime.now(dt.UTC)).timestamp()), "nanos": 0}
    findings = _findings_by_source(outcome)
    per_namespace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for located in outcome.judged:
        resource = _report_resource(located)
        results = findings.get(located.source, [])
        base = {"source": "modelward", "scored": True, "timestamp": stamp}
        if not results:
            per_namespace[resource["namespace"]].append(
                {
                    **base,
                    "policy": "modelward check",
                    "rule": "all",
                    "result": "pass",
                    "message": "nothing in the policies given denies, patches or warns",
                    "resources": [resource],
                }
            )
        for r in results:
            family = _family(r.finding.violation.rule_id)
            per_namespace[resource["namespace"]].append(
                {
                    **base,
                    "policy": r.finding.policy.label,
                    "rule": r.finding.violation.rule_id,
                    "category": family,
                    "severity": SEVERITY.get(family, "medium"),
                    "result": "fail" if r.action == "deny" else "warn",
                    "message": _message(r)[:1024],
                    "properties": {"action": r.action, "manifest": r.source},
                    "resources": [resource],
                }
            )
    documents = []
    for namespace in sorted(per_namespace):
        entries = per_namespace[namespace]
        counts = Counter(str(entry["result"]) for entry in entries)
        documents.append(
            {
                "apiVersion": f"{POLICY_REPORT_GROUP}/{POLICY_REPORT_VERSION}",
                "kind": "PolicyReport",
                "metadata": {
                    "name": REPORT_NAME,
                    "namespace": namespace,
                    "labels": {"app.kubernetes.io/managed-by": "modelward"},
                },
                "results": entries,
                "summary": {k: counts.get(k, 0) for k in ("pass", "fail", "warn", "error", "skip")},
            }
        )
    return yaml.safe_dump_all(documents, sort_keys=False, allow_unicode=True).rstrip("\n")


# --------------------------------------------------------------------------- SARIF


def _document_lines(path: str) -> list[int]:
    """The 1-based line each YAML document of ``path`` starts on (events only: no alias is
    expanded, so this is linear in the file's size); ``[]`` when it cannot be read."""
    try:
        with open(path, "rb") as f:
            text = f.read(safeyaml.MAX_YAML_BYTES + 1).decode("utf-8")
        return [
            event.start_mark.line + 1
            for event in yaml.parse(text, Loader=yaml.SafeLoader)
            if isinstance(event, yaml.DocumentStartEvent) and event.start_mark is not None
        ]
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []


def _split_source(source: str) -> tuple[str, int]:
    """``"k8s/a.yaml#2 items[0]"`` → ``("k8s/a.yaml", 2)``."""
    file, _, rest = source.rpartition("#")
    number = rest.split(" ", 1)[0]
    return (file, int(number)) if file and number.isdigit() else (source, 1)


def _artifact(file: str) -> dict[str, str]:
    path = Path(file)
    if path.is_absolute():
        return {"uri": path.as_uri()}
    return {"uri": path.as_posix(), "uriBaseId": "%SRCROOT%"}


def _locations(results: Sequence[CheckResult]) -> Iterator[tuple[CheckResult, dict[str, Any]]]:
    """Each result's location: the manifest file and the line its document starts on, and the
    object (and container) as a logical location. Standard input has no file to point at: its
    results carry the logical location alone."""
    lines: dict[str, list[int]] = {}
    for r in results:
        file, document = _split_source(r.source)
        res = r.resource
        container = r.finding.violation.container
        location: dict[str, Any] = {
            "logicalLocations": [
                {
                    "fullyQualifiedName": f"{res['kind']}/{res['namespace']}/{res['name']}"
                    + (f"/{container}" if container else ""),
                    "kind": "object",
                }
            ]
        }
        if file != STDIN_LABEL:
            if file not in lines:
                lines[file] = _document_lines(file)
            starts = lines[file]
            line = starts[document - 1] if 0 < document <= len(starts) else 1
            location["physicalLocation"] = {
                "artifactLocation": _artifact(file),
                "region": {"startLine": line},
            }
        yield r, location


def render_sarif(outcome: CheckOutcome) -> str:
    """A SARIF 2.1.0 log with one run of the ``modelward`` driver."""
    rule_ids = sorted({r.finding.violation.rule_id for r in outcome.results})
    index = {rule_id: i for i, rule_id in enumerate(rule_ids)}
    rules = []
    for rule_id in rule_ids:
        info = RULES.get(rule_id)
        title = info.title if info else rule_id
        rules.append(
            {
                "id": rule_id,
                "name": rule_id.replace("-", ""),
                "shortDescription": {"text": title},
                "fullDescription": {"text": f"{title} (modelward rule {rule_id})"},
                "help": {"text": f"{title}. What it checks and its fix: docs/rules.md, {rule_id}."},
                "properties": {
                    "category": _family(rule_id),
                    "security-severity": {"critical": "9.0", "high": "7.5"}.get(
                        SEVERITY.get(_family(rule_id), "medium"), "5.0"
                    ),
                    "tags": ["security", "kubernetes", _family(rule_id)],
                },
            }
        )
    results = [
        {
            "ruleId": r.finding.violation.rule_id,
            "ruleIndex": index[r.finding.violation.rule_id],
            "level": SARIF_LEVEL[r.action],
            "message": {
                "text": f"{r.resource['kind']} {r.resource['namespace']}/"
                f"{r.resource['name']}: {_message(r)} (policy {r.finding.policy})"
            },
            "locations": [location],
            "properties": {
                "action": r.action,
                "mode": r.finding.mode.value,
                "policy": str(r.finding.policy),
            },
        }
        for r, location in _locations(outcome.results)
    ]
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "modelward",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": rules,
                    }
                },
                "results": results,
                "columnKind": "unicodeCodePoints",
            }
        ],
    }
    return json.dumps(log, indent=2)


# --------------------------------------------------------------------------- JUnit


def render_junit(outcome: CheckOutcome, *, now: dt.datetime | None = None) -> str:
    """JUnit XML: one ``testsuite`` named ``modelward check``, a ``testcase`` per object."""
    findings = _findings_by_source(outcome)
    failures = sum(
        any(r.action == "deny" for r in findings.get(located.source, []))
        for located in outcome.judged
    )
    attrs = {
        "name": "modelward check",
        "tests": str(len(outcome.judged)),
        "failures": str(failures),
        "errors": "0",
        "skipped": "0",
    }
    suites = ET.Element("testsuites", attrs)
    suite = ET.SubElement(
        suites,
        "testsuite",
        {
            **attrs,
            "timestamp": (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S"),
            "hostname": "modelward",
        },
    )
    for located in outcome.judged:
        res = resource_of(located.obj)
        results = findings.get(located.source, [])
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": f"{res['namespace']}.{res['kind']}",
                "name": f"{res['kind']} {res['namespace']}/{res['name']} ({located.source})",
                "file": _split_source(located.source)[0],
            },
        )
        denied = [r for r in results if r.action == "deny"]
        if denied:
            failure = ET.SubElement(
                case,
                "failure",
                {
                    "type": ",".join(sorted({r.finding.violation.rule_id for r in denied})),
                    "message": f"{len(denied)} denied: {_message(denied[0])}"[:1024],
                },
            )
            failure.text = "\n".join(r.finding.describe() for r in denied)
        others = [r for r in results if r.action != "deny"]
        if others:
            out = ET.SubElement(case, "system-out")
            out.text = "\n".join(f"{r.action.upper()} {r.finding.describe()}" for r in others)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode")


def render(outcome: CheckOutcome, output: str) -> str:
    """The report for ``-o policyreport|sarif|junit``."""
    if output == "policyreport":
        return render_policy_reports(outcome)
    if output == "sarif":
        return render_sarif(outcome)
    if output == "junit":
        return render_junit(outcome)
    raise ValueError(f"not a report format: {output!r}")
