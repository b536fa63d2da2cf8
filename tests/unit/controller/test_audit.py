"""The background audit: existing pods judged by the engine, published as PolicyReports."""

from __future__ import annotations

from typing import Any

from modelward.controller.audit import MAX_RESULTS, NamespaceReport, audit_pods, policy_report
from modelward.engine import NamespaceFacts
from modelward.state import ClusterState
from tests.unit.engine.builders import compliant_pod, policy

IMAGES = policy({"images": {}}, name="images")
AUDIT = policy({"secrets": {}}, name="secrets", mode="Audit")


def _state() -> ClusterState:
    state = ClusterState()
    state.put_namespace(NamespaceFacts("serving-a"))
    state.ready = True
    return state


def _pod(name: str, image: str | None = None, uid: str | None = None) -> dict[str, Any]:
    pod = compliant_pod()
    pod["metadata"].update(name=name, uid=uid or name)
    del pod["kind"]  # as in a list response
    if image:
        pod["spec"]["containers"][0]["image"] = image
    return pod


def test_failures_passes_and_new_failures() -> None:
    pods = [_pod("good"), _pod("bad", "nginx:latest")]
    bad_env = _pod("leaky")
    bad_env["spec"]["containers"][0]["env"] = [
        {"name": "SYSTEM_PROMPT", "value": "You are a bot. Be nice."}
    ]
    pods.append(bad_env)
    other = _pod("elsewhere", "nginx:latest")
    other["metadata"]["namespace"] = "kube-system"
    pods.append(other)
    result = audit_pods(
        iter(pods),
        state=_state(),
        policies=(IMAGES, AUDIT),
        excluded=frozenset({"kube-system"}),
        previous={("leaky", "secrets")},
        now=0,
    )
    assert result.pods == 3 and set(result.reports) == {"serving-a"}
    report = result.reports["serving-a"]
    assert report.summary["fail"] == 2  # MW-IMG-001 and MW-IMG-003 on "bad"
    assert report.summary["warn"] == 1  # the Audit-mode system prompt
    # good under both policies, bad under secrets, leaky under images
    assert report.summary["pass"] == 4
    assert result.violations[("images", "MW-IMG-003", "serving-a")] == 1
    assert result.failing_pods[("ClusterModelPolicy", None, "images")] == {"bad"}
    # "leaky" already failed the secrets policy in the previous scan: no new Event for it.
    assert [(p["metadata"]["name"], pol.ref.name) for p, pol, _ in result.new_failures] == [
        ("bad", "images")
    ]


def test_report_shape_and_truncation() -> None:
    report = NamespaceReport()
    for i in range(MAX_RESULTS + 5):
        report.add({"result": "fail", "policy": "p", "rule": f"r{i}"})
    body = policy_report("serving-a", report)
    assert body["apiVersion"] == "wgpolicyk8s.io/v1alpha2" and body["kind"] == "PolicyReport"
    assert len(body["results"]) == MAX_RESULTS and body["summary"]["fail"] == MAX_RESULTS + 5
    assert body["metadata"]["annotations"] == {"modelward.io/truncated-results": "5"}
