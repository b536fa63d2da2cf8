"""The chart's PrometheusRule: valid for promtool, unit-tested, actionable, documented.

``promtool check rules`` parses every expression and template; ``promtool test rules`` runs
tests/chart/alerts.test.yaml, in which every alert fires on the series that should trigger it
and stays silent otherwise. The static checks below make sure no alert escapes those tests,
each has a summary, a description and a runbook section, and each uses only metrics that
modelward exposes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import DOCS_DIR, HelmChart, exposed_metric_names

TESTS_FILE = Path(__file__).with_name("alerts.test.yaml")


@pytest.fixture(scope="module")
def rule_groups(chart: HelmChart) -> list[dict[str, Any]]:
    rendered = chart.template({"prometheusRule": {"enabled": True}})
    groups: list[dict[str, Any]] = rendered.one("PrometheusRule")["spec"]["groups"]
    return groups


def alerts(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def write_rules(groups: list[dict[str, Any]], folder: Path) -> Path:
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000))
    return path


def test_promtool_check_rules(
    rule_groups: list[dict[str, Any]], promtool: Path, tmp_path: Path
) -> None:
    rules = write_rules(rule_groups, tmp_path)
    result = subprocess.run(
        [str(promtool), "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts(rule_groups))} rules found" in result.stdout


def test_promtool_unit_tests(
    rule_groups: list[dict[str, Any]], promtool: Path, tmp_path: Path
) -> None:
    write_rules(rule_groups, tmp_path)
    shutil.copy(TESTS_FILE, tmp_path / TESTS_FILE.name)
    result = subprocess.run(
        [str(promtool), "test", "rules", TESTS_FILE.name],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_silent(rule_groups: list[dict[str, Any]]) -> None:
    cases = yaml.safe_load(TESTS_FILE.read_text())["tests"]
    fired: set[str] = set()
    silent: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test") or []:
            (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    names = set(alerts(rule_groups))
    assert names - fired == set(), "alerts never shown to fire"
    assert names - silent == set(), "alerts never shown to stay silent"
    assert (fired | silent) - names == set(), "tests of alerts that do not exist"


def test_every_alert_is_actionable_and_has_a_runbook(rule_groups: list[dict[str, Any]]) -> None:
    runbooks = (DOCS_DIR / "runbooks.md").read_text()
    headings = {m.group(1) for m in re.finditer(r"^## (\w+)\s*$", runbooks, re.M)}
    for name, rule in alerts(rule_groups).items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert len(annotations["summary"]) < 100, name
        assert len(annotations["description"]) > 80, name
        assert annotations["runbook_url"].endswith(f"runbooks.md#{name.lower()}"), name
        assert name in headings, f"docs/runbooks.md has no '## {name}' section"


def test_alerts_use_only_exposed_metrics(rule_groups: list[dict[str, Any]]) -> None:
    exposed = exposed_metric_names()
    for name, rule in alerts(rule_groups).items():
        used = set(re.findall(r"\b(modelward_[a-z_]+)\b", rule["expr"]))
        assert used or "up{" in rule["expr"], name
        assert used <= set(exposed), f"{name} uses {sorted(used - set(exposed))}"


def test_thresholds_and_selector_come_from_values(chart: HelmChart) -> None:
    rendered = chart.template(
        {
            "prometheusRule": {
                "enabled": True,
                "selector": 'namespace="security",service="mw"',
                "additionalAlertLabels": {"team": "platform"},
                "thresholds": {"latencyP99WarningSeconds": 0.5, "certificateExpiryWarningDays": 14},
            }
        }
    )
    rules = alerts(rendered.one("PrometheusRule")["spec"]["groups"])
    assert rules["ModelwardAdmissionLatencyHigh"]["expr"].endswith("> 0.5")
    assert "< 14 * 86400" in rules["ModelwardCertificateExpiringSoon"]["expr"]
    for rule in rules.values():
        assert 'namespace="security",service="mw"' in rule["expr"]
        assert "job=" not in rule["expr"]
        assert rule["labels"]["team"] == "platform"
