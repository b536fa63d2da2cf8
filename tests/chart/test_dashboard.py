"""The Grafana dashboard ConfigMap and docs/metrics.md, checked offline.

The dashboard must load in Grafana's sidecar (label, valid JSON), show what on-call and
auditors look at (decisions, latency, violations by rule and namespace, verification results,
policy health), and query only series modelward exposes, in valid PromQL (parsed by
``promtool check rules``). tests/e2e/test_prometheus.py runs the same queries against a real
Prometheus scraping a real modelward.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelward_dev.prometheus import dashboard_queries, grafana_expr
from tests.chart.conftest import CHART_DIR, DOCS_DIR, HelmChart, exposed_metric_names

DASHBOARD_FILE = CHART_DIR / "dashboards" / "modelward.json"

#: Panel titles that must exist, and a metric each must query: the issue's list.
REQUIRED_PANELS = {
    "Decisions": "modelward_admission_requests_total",
    "Admission latency": "modelward_admission_duration_seconds_bucket",
    "Violations by rule": "modelward_violations_total",
    "Violations by namespace": "modelward_violations_total",
    "Model verifications": "modelward_model_verifications_total",
    "Model verification duration": "modelward_model_verification_duration_seconds_bucket",
    "Policies by readiness": "modelward_policies",
    "Current violations of existing pods (audit)": "modelward_audit_violations",
}


@pytest.fixture(scope="module")
def dashboard(chart: HelmChart) -> dict[str, Any]:
    config_map = chart.template().one("ConfigMap", "modelward-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (key, text), *rest = config_map["data"].items()
    assert rest == [] and key.endswith(".json")
    data: dict[str, Any] = json.loads(text)
    assert data == json.loads(DASHBOARD_FILE.read_text()), "the ConfigMap must carry the file"
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_dashboard_identity_and_datasource(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "modelward-overview" and dashboard["title"] == "modelward"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        assert panel.get("description"), f"panel {panel['title']} has no description"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


def test_required_panels(dashboard: dict[str, Any]) -> None:
    by_title = {p["title"]: p for p in panels(dashboard)}
    for title, metric in REQUIRED_PANELS.items():
        assert title in by_title, f"no panel {title!r}"
        assert any(metric in t["expr"] for t in by_title[title]["targets"]), title


def test_queries_use_exposed_metrics(dashboard: dict[str, Any]) -> None:
    exposed = set(exposed_metric_names()) | {"up"}
    for title, ref, expr in dashboard_queries(dashboard):
        used = set(re.findall(r"\b(modelward_[a-z_]+)\b", expr))
        assert used <= exposed, f"{title}/{ref} uses {sorted(used - exposed)}"


def test_queries_are_valid_promql(
    dashboard: dict[str, Any], promtool: Path, tmp_path: Path
) -> None:
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 15
    rules = [
        {"record": f"dashboard:query_{index}", "expr": expr}
        for index, (_, _, expr) in enumerate(queries)
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_variables_are_all_defined() -> None:
    assert grafana_expr(
        'rate(x{job=~"$job"}[$__rate_interval])', {"job": ".*", "__rate_interval": "1m"}
    ) == ('rate(x{job=~".*"}[1m])')
    with pytest.raises(ValueError, match="undefined Grafana variables"):
        grafana_expr("rate(x[$interval])", {"job": ".*"})


def test_every_metric_is_documented() -> None:
    """docs/metrics.md has a section per exposed metric naming its type and every label."""
    from modelward.observability.metrics import Metrics

    doc = (DOCS_DIR / "metrics.md").read_text()
    suffix = {"counter": "_total", "histogram": "", "gauge": ""}
    for family in Metrics.create().registry.collect():
        name = family.name + suffix[family.type]
        match = re.search(rf"^### `{name}`\n(.*?)(?=^### |\Z)", doc, re.M | re.S)
        assert match, f"docs/metrics.md has no '### `{name}`' section"
        section = match.group(1)
        assert family.type in section, f"{name}: type {family.type} not stated"
        collector = next(
            c for c in vars(Metrics.create()).values() if getattr(c, "_name", None) == family.name
        )
        for label in getattr(collector, "_labelnames", ()):
            assert f"`{label}`" in section, f"{name}: label {label} not documented"
        assert "ardinality" in section, f"{name}: no cardinality bound"
