"""The chart's transient hooks: `helm test` and the opt-in post-delete cleanup.

Their pods run modelward's own image under Pod Security "restricted", outside the chart's
NetworkPolicy and Service selectors; their RBAC is narrow, by name where Kubernetes allows it,
and deleted with the hook.
"""

from __future__ import annotations

from typing import Any

from tests.chart.conftest import HelmChart, Rendered

HOOK_MODULE = ["python", "-m", "modelward.chart_hooks"]


def _of(r: Rendered, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in r.hooks if o["kind"] == kind and name in (None, o["metadata"]["name"])]


def _rules(r: Rendered) -> set[tuple[str, str, str, str, tuple[str, ...]]]:
    return {
        (
            role["metadata"].get("namespace", "*"),
            group,
            resource,
            verb,
            tuple(rule.get("resourceNames", ())),
        )
        for kind in ("Role", "ClusterRole")
        for role in _of(r, kind)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _restricted(spec: dict[str, Any]) -> None:
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = spec["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    assert container["command"] == HOOK_MODULE
    assert container["resources"]["limits"]["memory"]


def _not_selected_by_the_chart(labels: dict[str, str]) -> None:
    # the NetworkPolicy and the Service select name + instance: a hook pod has no name label
    assert "app.kubernetes.io/name" not in labels


def test_helm_test_pod_and_its_narrow_rbac(chart: HelmChart) -> None:
    r = chart.template({"tests": {"probeNamespace": "probe"}})
    (pod,) = _of(r, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    _restricted(pod["spec"])
    _not_selected_by_the_chart(pod["metadata"]["labels"])
    args = pod["spec"]["containers"][0]["args"]
    assert args[0] == "selftest"
    assert {"--probe-namespace=probe", "--webhook-configuration=modelward"} <= set(args)
    assert _rules(r) == {
        (
            "*",
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            "get",
            ("modelward",),
        ),
        ("modelward-system", "discovery.k8s.io", "endpointslices", "list", ()),
        ("probe", "", "pods", "create", ()),
    }
    for obj in r.hooks:
        policy = obj["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
        # the grants go once the test ran; the pod stays for `helm test --logs`
        assert ("hook-succeeded" in policy) == (obj["kind"] != "Pod"), obj["kind"]
    assert not chart.template({"tests": {"enabled": False}}).hooks


def test_cleanup_is_opt_in(chart: HelmChart) -> None:
    assert not _of(chart.template(), "Job")


def test_cleanup_job_and_rbac(chart: HelmChart) -> None:
    r = chart.template({"cleanup": {"onUninstall": True}, "tests": {"enabled": False}})
    (job,) = _of(r, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-delete"
    _restricted(job["spec"]["template"]["spec"])
    _not_selected_by_the_chart(job["spec"]["template"]["metadata"]["labels"])
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == [
        "cleanup",
        "--namespace=modelward-system",
        "--secret=modelward-tls",
        "--lease=modelward-leader",
        "--policy-reports",
        "--deployed-models",
    ]
    assert _rules(r) == {
        ("modelward-system", "", "secrets", "delete", ("modelward-tls",)),
        ("modelward-system", "coordination.k8s.io", "leases", "delete", ("modelward-leader",)),
        ("*", "wgpolicyk8s.io", "policyreports", "list", ()),
        ("*", "wgpolicyk8s.io", "policyreports", "delete", ()),
        ("*", "modelward.io", "deployedmodels", "list", ()),
        ("*", "modelward.io", "deployedmodels", "delete", ()),
    }


def test_cleanup_never_touches_a_secret_that_is_not_the_operators(chart: HelmChart) -> None:
    """Mode files: the Secret is the user's; certManager: cert-manager's. Both stay."""
    r = chart.template(
        {
            "cleanup": {"onUninstall": True, "policyReports": False, "deployedModels": False},
            "tests": {"enabled": False},
            "certificates": {"mode": "certManager"},
        }
    )
    (job,) = _of(r, "Job")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not any(a.startswith("--secret") for a in args)
    assert _rules(r) == {
        ("modelward-system", "coordination.k8s.io", "leases", "delete", ("modelward-leader",)),
    }
