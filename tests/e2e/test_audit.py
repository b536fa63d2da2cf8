"""The background audit finds pods created before a policy existed."""

from __future__ import annotations

from typing import Any

import pytest

from modelward_dev.controlplane import ToolRunner
from tests.e2e.helpers import apply, apply_policy, cluster_policy, get_json, pod, wait_for

pytestmark = pytest.mark.usefixtures("operator")


def test_pods_created_before_a_policy_are_reported(kubectl: ToolRunner, namespace: str) -> None:
    old = pod("old", namespace)
    old["spec"]["containers"][0]["image"] = "nginx:latest"
    assert apply(kubectl, old, pod("fine", namespace)).returncode == 0  # no policy yet
    apply_policy(kubectl, cluster_policy(namespace, namespace, {"images": {}}))
    report: dict[str, Any] = {}

    def reported() -> bool:
        result = kubectl("get", "policyreport", "modelward", "-n", namespace, "-o", "json")
        if result.returncode != 0:
            return False
        import json

        report.update(json.loads(result.stdout))
        return bool(report.get("summary", {}).get("fail"))

    wait_for("the audit's PolicyReport", reported, timeout=60)
    failures = {
        (r["rule"], r["resources"][0]["name"]) for r in report["results"] if r["result"] == "fail"
    }
    assert ("MW-IMG-003", "old") in failures and not any(name == "fine" for _, name in failures)
    assert any(
        r["result"] == "pass" and r["resources"][0]["name"] == "fine" for r in report["results"]
    )
    wait_for(
        "status.violations.current",
        lambda: (
            (get_json(kubectl, "cmp", namespace).get("status") or {})
            .get("violations", {})
            .get("current")
            == 1
        ),
    )
    events = get_json(kubectl, "events", "-n", namespace)["items"]
    assert any(
        e["involvedObject"].get("name") == "old" and e.get("action") == "Audit" for e in events
    )
