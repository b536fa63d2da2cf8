"""`modelward check -o policyreport|sarif|junit`: the CI report formats, each checked against
its schema (PolicyReport: the CRD modelward ships; SARIF 2.1.0 and JUnit: the structure their
consumers require, as no package here ships their schemas) and against the JSON findings."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from modelward.api.schema import policy_report_crd
from modelward.check_reports import SEVERITY
from modelward.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "manifests" / "examples"
ARGS = ["check", "-f", str(EXAMPLES / "workloads"), "--policy", str(EXAMPLES / "policies")]


def _run(capsys: pytest.CaptureFixture[str], output: str) -> tuple[int, str]:
    code = main([*ARGS, "-o", output])
    return code, capsys.readouterr().out


@pytest.fixture
def findings(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out = _run(capsys, "json")
    assert code == 1
    doc: dict[str, Any] = json.loads(out)
    return doc


def test_policy_reports_validate_against_the_crd_and_count_every_finding(
    capsys: pytest.CaptureFixture[str], findings: dict[str, Any]
) -> None:
    code, out = _run(capsys, "policyreport")
    assert code == 1  # the format never changes the verdict
    reports = [d for d in yaml.safe_load_all(out) if d]
    schema = policy_report_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for report in reports:
        jsonschema.validate(report, schema)
        assert (
            report["kind"] == "PolicyReport" and report["apiVersion"] == "wgpolicyk8s.io/v1alpha2"
        )
        assert report["metadata"]["name"] == "modelward-check"  # never the audit's "modelward"
        counted = {k: sum(r["result"] == k for r in report["results"]) for k in report["summary"]}
        assert counted == report["summary"]
    results = [r for report in reports for r in report["results"]]
    fails = [r for r in results if r["result"] == "fail"]
    assert len(fails) == findings["denied"]
    assert len([r for r in results if r["result"] in ("fail", "warn")]) == len(findings["findings"])
    passed = {r["resources"][0]["name"] for r in results if r["result"] == "pass"}
    assert "llm-good" in passed and "llm-bad" not in passed
    assert {r["resources"][0]["namespace"] for r in fails} == {
        r["metadata"]["namespace"] for r in reports if r["summary"]["fail"]
    }


def test_severities_are_the_audits() -> None:
    from modelward.controller.audit import SEVERITY as AUDIT_SEVERITY

    assert SEVERITY == AUDIT_SEVERITY


def test_sarif_has_the_2_1_0_structure_and_locates_each_finding(
    capsys: pytest.CaptureFixture[str], findings: dict[str, Any]
) -> None:
    code, out = _run(capsys, "sarif")
    assert code == 1
    log = json.loads(out)
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "modelward" and driver["version"]
    rule_ids = [r["id"] for r in driver["rules"]]
    assert len(rule_ids) == len(set(rule_ids))
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"] and rule["id"].startswith("MW-")
        assert 0 < float(rule["properties"]["security-severity"]) <= 10
    assert len(run["results"]) == len(findings["findings"])
    levels = {"deny": "error", "patch": "warning", "warn": "warning"}
    for result, finding in zip(run["results"], findings["findings"], strict=True):
        assert result["ruleId"] == finding["rule"] == rule_ids[result["ruleIndex"]]
        assert result["level"] == levels[finding["action"]]
        assert finding["message"] in result["message"]["text"]
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        uri, line = physical["artifactLocation"]["uri"], physical["region"]["startLine"]
        path = Path(uri.removeprefix("file://"))
        assert path.is_file() and line >= 1
        # the region starts the YAML document of the object the finding is about
        document = path.read_text().splitlines()[line - 1 :]
        text = "\n".join(document).split("\n---", 1)[0]
        assert f"name: {finding['resource']['name']}" in text
        assert f"kind: {finding['resource']['kind']}" in text
        name = location["logicalLocations"][0]["fullyQualifiedName"]
        assert name.startswith(f"{finding['resource']['kind']}/{finding['resource']['namespace']}/")


def test_sarif_paths_given_relative_stay_relative_to_the_source_root(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    main(
        [
            "check",
            "-f",
            "manifests/examples/workloads",
            "--policy",
            "manifests/examples/policies",
            "-o",
            "sarif",
        ]
    )
    log = json.loads(capsys.readouterr().out)
    artifact = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact["uriBaseId"] == "%SRCROOT%"
    assert artifact["uri"].startswith("manifests/examples/workloads/")


def test_junit_has_one_case_per_object_and_fails_the_denied_ones(
    capsys: pytest.CaptureFixture[str], findings: dict[str, Any]
) -> None:
    code, out = _run(capsys, "junit")
    assert code == 1 and out.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(out)
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert int(suite.get("tests", "-1")) == len(cases) == findings["checked"]
    failed = [c for c in cases if c.find("failure") is not None]
    assert int(suite.get("failures", "-1")) == len(failed) == int(root.get("failures", "-1"))
    denied_objects = {
        (f["resource"]["kind"], f["resource"]["namespace"], f["resource"]["name"])
        for f in findings["findings"]
        if f["action"] == "deny"
    }
    assert len(failed) == len(denied_objects)
    for case in failed:
        failure = case.find("failure")
        assert failure is not None and failure.get("message") and failure.text
        assert all(rule.startswith("MW-") for rule in (failure.get("type") or "").split(","))
    assert all(case.get("classname") and case.get("name") for case in cases)
    assert any("llm-good" in (c.get("name") or "") and c.find("failure") is None for c in cases)


@pytest.mark.parametrize("output", ["policyreport", "sarif", "junit"])
def test_clean_manifests_give_passing_reports(
    capsys: pytest.CaptureFixture[str], output: str
) -> None:
    workloads = EXAMPLES / "workloads"
    code = main(
        [
            "check",
            "-f",
            str(workloads / "good-deployment.yaml"),
            "-f",
            str(workloads / "00-namespace.yaml"),
            "--policy",
            str(EXAMPLES / "policies"),
            "-o",
            output,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    if output == "sarif":
        assert json.loads(out)["runs"][0]["results"] == []
    elif output == "junit":
        assert ET.fromstring(out).get("failures") == "0"
    else:
        (report,) = [d for d in yaml.safe_load_all(out) if d]
        assert report["summary"]["fail"] == 0 and report["summary"]["pass"] >= 1


def test_sarif_from_stdin_has_logical_locations_only(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`<stdin>` is no URI: a result read from a pipe names the object, not a file."""
    import io

    workloads = EXAMPLES / "workloads"
    piped = b"---\n".join(
        (workloads / n).read_bytes() for n in ("00-namespace.yaml", "bad-deployment.yaml")
    )
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(piped)))
    code = main(["check", "-f", "-", "--policy", str(EXAMPLES / "policies"), "-o", "sarif"])
    results = json.loads(capsys.readouterr().out)["runs"][0]["results"]
    assert code == 1 and results
    for result in results:
        (location,) = result["locations"]
        assert "physicalLocation" not in location
        assert location["logicalLocations"][0]["fullyQualifiedName"].startswith(
            "Deployment/serving-demo/llm-bad"
        )
