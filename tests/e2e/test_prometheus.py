"""A real Prometheus scrapes the running operator; the dashboard and the alerts evaluate on it.

Debian's prometheus is started on a free loopback port, scraping the session operator's
/metrics every second (job "modelward", honor_labels and a ``namespace`` target label, as the
chart's ServiceMonitor produces) and loading the chart's rendered alert rules. Admissions are
then driven through the API server (a denied pod, an admitted one, a denied Deployment). Every
panel query of the Grafana dashboard and every alert expression must evaluate without error,
the main panels (decisions, latency, violations) must return data that shows those
admissions, every rule must be healthy in Prometheus' own rule manager, and the alerts that
describe an outage must stay silent on this healthy operator.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelward_dev.binaries import find_binaries
from modelward_dev.controlplane import ToolRunner
from modelward_dev.operator_process import OperatorProcess
from modelward_dev.prometheus import PrometheusProcess, ScrapeTarget, dashboard_queries
from tests.e2e.helpers import apply, apply_policy, cluster_policy, pod, wait_for, workload

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "modelward"
STRICT = {
    "images": {},
    "isolation": {"requireDefaultDenyNetworkPolicy": False},
    "transport": {},
    "secrets": {},
}
#: Panels that must show the admissions this test drives.
MAIN_PANELS = (
    "Decisions",
    "Admission latency",
    "Violations by rule",
    "Violations by namespace",
    "Admission reviews",
    "p99 latency",
)
#: Alerts that describe a broken operator: silent while it is healthy.
OUTAGE_ALERTS = (
    "ModelwardWebhookDown",
    "ModelwardNotReady",
    "ModelwardCertificateExpiringSoon",
    "ModelwardCertificateExpiryCritical",
)


@pytest.fixture(scope="module")
def chart_objects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The chart's PrometheusRule and dashboard, rendered as release "modelward"."""
    result = subprocess.run(
        [
            str(find_binaries().helm),
            "template",
            "modelward",
            str(CHART),
            "--namespace",
            "modelward-system",
            "--set",
            "prometheusRule.enabled=true",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    objects = {o["kind"]: o for o in yaml.safe_load_all(result.stdout) if o}
    folder = tmp_path_factory.mktemp("prometheus-rules")
    rules = folder / "modelward-alerts.yaml"
    rules.write_text(yaml.safe_dump({"groups": objects["PrometheusRule"]["spec"]["groups"]}))
    dashboard = json.loads(next(iter(objects["ConfigMap"]["data"].values())))
    return {
        "rules_file": rules,
        "groups": objects["PrometheusRule"]["spec"]["groups"],
        "dashboard": dashboard,
    }


@pytest.fixture
def prometheus(
    operator: OperatorProcess, chart_objects: dict[str, Any]
) -> Iterator[PrometheusProcess]:
    target = ScrapeTarget(
        job="modelward",
        address=operator.metrics_url.removeprefix("http://"),
        labels={"namespace": operator.namespace},  # what a ServiceMonitor target carries
    )
    with PrometheusProcess(targets=[target], rule_files=[chart_objects["rules_file"]]) as server:
        server.wait_for_targets_up()
        yield server


def drive_admissions(kubectl: ToolRunner, namespace: str, attempt: int) -> None:
    """A denied pod, an admitted pod and a denied Deployment in ``namespace``."""
    bad = pod(f"bad-{attempt}", namespace)
    bad["spec"]["containers"][0]["image"] = "vllm/vllm-openai:latest"
    assert apply(kubectl, bad).returncode != 0
    good = apply(kubectl, pod(f"good-{attempt}", namespace))
    assert good.returncode == 0, good.stderr
    bad_deployment = workload("Deployment", f"bad-{attempt}", namespace, bad["spec"])
    assert apply(kubectl, bad_deployment).returncode != 0


def values(result: list[dict[str, Any]]) -> list[float]:
    return [float(sample["value"][1]) for sample in result]


def test_dashboard_and_alerts_evaluate_on_a_real_prometheus(
    prometheus: PrometheusProcess,
    chart_objects: dict[str, Any],
    kubectl: ToolRunner,
    namespace: str,
) -> None:
    apply_policy(kubectl, cluster_policy(namespace, namespace, STRICT))
    # A counter series is born with its first increment, and rate() cannot see an increase
    # before the first sample: one round creates the series, Prometheus scrapes them, a
    # second round increases them.
    drive_admissions(kubectl, namespace, 1)
    violations = f'modelward_violations_total{{namespace="{namespace}"}}'
    wait_for("the first violations in Prometheus", lambda: bool(prometheus.query(violations)))
    drive_admissions(kubectl, namespace, 2)
    wait_for(
        "the increase of the violations in Prometheus",
        lambda: any(v > 0 for v in values(prometheus.query(f"sum(increase({violations}[1m]))"))),
        timeout=30,
    )

    results: dict[str, list[dict[str, Any]]] = {}
    for title, _ref, expr in dashboard_queries(chart_objects["dashboard"]):
        results.setdefault(title, []).extend(prometheus.query(expr))  # raises on any error
    for title in MAIN_PANELS:
        assert results[title], f"panel {title!r} returned no data"

    decisions = {s["metric"]["decision"]: float(s["value"][1]) for s in results["Decisions"]}
    assert decisions.get("denied", 0) > 0 and decisions.get("allowed", 0) > 0, decisions
    by_namespace = {
        s["metric"].get("namespace"): float(s["value"][1])
        for s in results["Violations by namespace"]
    }
    assert by_namespace.get(namespace, 0) > 0, by_namespace
    rules = {s["metric"]["rule"] for s in results["Violations by rule"]}
    assert "MW-IMG-003" in rules, rules  # the :latest tag
    latencies = [v for v in values(results["Admission latency"]) if not math.isnan(v)]
    assert latencies and all(0 < v < 5 for v in latencies), latencies

    for group in chart_objects["groups"]:
        for rule in group["rules"]:
            prometheus.query(rule["expr"])  # raises on any error

    # Prometheus' rule manager evaluated every alert, without error.
    def all_rules_evaluated() -> bool:
        loaded = [r for g in prometheus.rules() for r in g["rules"]]
        return len(loaded) == sum(len(g["rules"]) for g in chart_objects["groups"]) and all(
            r["health"] == "ok" for r in loaded
        )

    prometheus.wait_until("every alert rule evaluated and healthy", all_rules_evaluated, 30)
    states = {r["name"]: r["state"] for g in prometheus.rules() for r in g["rules"]}
    for name in OUTAGE_ALERTS:
        assert states[name] == "inactive", (name, states[name])


def test_evidence_pack_counts_admissions_over_the_period_from_prometheus(
    prometheus: PrometheusProcess,
    control_plane: Any,
    kubectl: ToolRunner,
    namespace: str,
) -> None:
    """``modelward evidence --prometheus-url`` reads the admissions the period saw."""
    apply_policy(kubectl, cluster_policy(namespace, namespace, STRICT))
    drive_admissions(kubectl, namespace, 1)
    violations = f'modelward_violations_total{{namespace="{namespace}"}}'
    wait_for("the first violations in Prometheus", lambda: bool(prometheus.query(violations)))
    drive_admissions(kubectl, namespace, 2)
    wait_for(
        "the increase of the violations in Prometheus",
        lambda: any(v > 0 for v in values(prometheus.query(f"sum(increase({violations}[1m]))"))),
        timeout=30,
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelward",
            "evidence",
            "-o",
            "json",
            "--since",
            "10m",
            "--kubeconfig",
            str(control_plane.kubeconfig_path),
            "--prometheus-url",
            prometheus.url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)["admissions"]["prometheus"]
    assert counts["error"] == "" and counts["range"] == "600s", counts
    denied = [s for s in counts["requests"] if s["labels"].get("decision") == "denied"]
    assert denied and sum(s["count"] for s in denied) > 0, counts
    assert any(s["labels"].get("rule") == "MW-IMG-003" for s in counts["violations"]), counts
