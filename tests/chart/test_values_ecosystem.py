"""Values platform engineers expect from an admission controller's chart (issue 15): each one
reaches the objects it is for, and a wrong value is refused by the schema."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART_DIR, HelmChart, Rendered
from tests.chart.test_render import container, webhooks


def _pod_spec(r: Rendered) -> dict[str, Any]:
    spec: dict[str, Any] = r.one("Deployment")["spec"]["template"]["spec"]
    return spec


def test_common_labels_on_every_object_and_the_pods(chart: HelmChart) -> None:
    r = chart.template({"commonLabels": {"team": "ml", "cost-center": "42"}})
    for obj in r.objects + r.hooks:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("team") == "ml", f"{obj['kind']} {obj['metadata']['name']}"
    pod_labels = r.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["cost-center"] == "42"
    # the selector is immutable: common labels must never enter it
    assert "team" not in r.one("Deployment")["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize(
    ("repository", "expected"),
    [
        ("ghcr.io/modelward/modelward", "mirror.example:5000/modelward/modelward"),
        ("localhost/modelward", "mirror.example:5000/modelward"),
        ("modelward/modelward", "mirror.example:5000/modelward/modelward"),
    ],
)
def test_global_image_registry_replaces_the_registry_host(
    chart: HelmChart, repository: str, expected: str
) -> None:
    r = chart.template(
        {"global": {"imageRegistry": "mirror.example:5000"}, "image": {"repository": repository}}
    )
    assert container(r)["image"] == f"{expected}:0.1.0"


def test_global_keys_of_other_charts_are_accepted_and_bad_registry_refused(
    chart: HelmChart,
) -> None:
    assert chart.attempt({"global": {"storageClass": "fast"}}).returncode == 0
    bad = chart.attempt({"global": {"imageRegistry": "https://mirror/"}})
    assert bad.returncode != 0 and "imageRegistry" in bad.stderr


def test_ports_and_host_network(chart: HelmChart) -> None:
    r = chart.template(
        {
            "hostNetwork": True,
            "operator": {"webhookPort": 9443, "metricsPort": 9090},
            "service": {"port": 8443},
        }
    )
    spec = _pod_spec(r)
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    c = container(r)
    assert {"--webhook-port=9443", "--metrics-port=9090"} <= set(c["args"])
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"webhook": 9443, "metrics": 9090}
    ports = {p["name"]: p for p in r.one("Service")["spec"]["ports"]}
    assert ports["https"]["port"] == 8443 and ports["https"]["targetPort"] == "webhook"
    assert {h["clientConfig"]["service"]["port"] for h in webhooks(r)} == {8443}
    # the probes follow the named port
    assert c["readinessProbe"]["httpGet"]["port"] == "metrics"
    default = _pod_spec(chart.template())
    assert "hostNetwork" not in default


def test_tls_min_version(chart: HelmChart) -> None:
    assert "--tls-min-version=1.2" in container(chart.template())["args"]
    assert (
        "--tls-min-version=1.3"
        in container(chart.template({"operator": {"tlsMinVersion": "1.3"}}))["args"]
    )
    refused = chart.attempt({"operator": {"tlsMinVersion": "1.1"}})
    assert refused.returncode != 0 and "tlsMinVersion" in refused.stderr


def test_match_conditions_on_every_webhook(chart: HelmChart) -> None:
    conditions = [
        {
            "name": "not-argo",
            "expression": "request.userInfo.username != 'system:serviceaccount:argocd:x'",
        }
    ]
    r = chart.template({"webhook": {"matchConditions": conditions}})
    assert all(h["matchConditions"] == conditions for h in webhooks(r))
    assert all("matchConditions" not in h for h in webhooks(chart.template()))
    refused = chart.attempt({"webhook": {"matchConditions": [{"name": "x"}]}})
    assert refused.returncode != 0 and "expression" in refused.stderr


def test_service_monitor_namespace_and_relabelings(chart: HelmChart) -> None:
    relabel = [{"action": "replace", "targetLabel": "cluster", "replacement": "prod"}]
    drop = [{"action": "drop", "sourceLabels": ["__name__"], "regex": "python_.*"}]
    r = chart.template(
        {
            "serviceMonitor": {
                "enabled": True,
                "namespace": "monitoring",
                "relabelings": relabel,
                "metricRelabelings": drop,
            }
        }
    )
    monitor = r.one("ServiceMonitor")
    assert monitor["metadata"]["namespace"] == "monitoring"
    # it still scrapes the release namespace, from wherever it lives
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["modelward-system"]
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["relabelings"] == relabel and endpoint["metricRelabelings"] == drop
    tls = chart.attempt({"serviceMonitor": {"tlsConfig": {"insecureSkipVerify": True}}})
    assert tls.returncode != 0, "metrics are plain HTTP: a tlsConfig must be refused"


def test_extra_volumes_and_mounts(chart: HelmChart) -> None:
    r = chart.template(
        {
            "extraVolumes": [{"name": "corp-ca", "configMap": {"name": "corp-ca"}}],
            "extraVolumeMounts": [
                {"name": "corp-ca", "mountPath": "/etc/ssl/corp", "readOnly": True}
            ],
        }
    )
    assert {"name": "corp-ca", "configMap": {"name": "corp-ca"}} in _pod_spec(r)["volumes"]
    mounts = {m["name"]: m for m in container(r)["volumeMounts"]}
    assert mounts["corp-ca"]["mountPath"] == "/etc/ssl/corp"
    assert {"tls", "tmp"} <= set(mounts)


def test_service_annotations_and_labels(chart: HelmChart) -> None:
    r = chart.template(
        {"service": {"annotations": {"mesh.example/skip": "true"}, "labels": {"tier": "cp"}}}
    )
    service = r.one("Service")
    assert service["metadata"]["annotations"] == {"mesh.example/skip": "true"}
    assert service["metadata"]["labels"]["tier"] == "cp"


def test_flow_schema_matches_only_modelwards_service_account(chart: HelmChart) -> None:
    assert "FlowSchema" not in chart.template().kinds()
    r = chart.template({"flowSchema": {"enabled": True, "priorityLevel": "workload-high"}})
    schema = r.one("FlowSchema")
    assert schema["apiVersion"] == "flowcontrol.apiserver.k8s.io/v1"
    assert schema["spec"]["priorityLevelConfiguration"]["name"] == "workload-high"
    assert schema["spec"]["matchingPrecedence"] < 9000  # before the built-in service-accounts
    subjects = [s for rule in schema["spec"]["rules"] for s in rule["subjects"]]
    assert subjects == [
        {
            "kind": "ServiceAccount",
            "serviceAccount": {"name": "modelward", "namespace": "modelward-system"},
        }
    ]


def test_artifact_hub_metadata() -> None:
    meta = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert meta["icon"].startswith("https://") and meta["sources"] and meta["maintainers"]
    annotations = meta["annotations"]
    for key in ("artifacthub.io/license", "artifacthub.io/images", "artifacthub.io/crds"):
        assert key in annotations, key
    images = yaml.safe_load(annotations["artifacthub.io/images"])
    assert images[0]["image"].endswith(f":{meta['appVersion']}")
    crds = {c["name"] for c in yaml.safe_load(annotations["artifacthub.io/crds"])}
    from modelward.api.schema import custom_resource_definitions

    ours = {
        c["metadata"]["name"]
        for c in custom_resource_definitions()
        if c["spec"]["group"] == "modelward.io"
    }
    assert crds and crds <= ours, "artifacthub.io/crds names a CRD the schema does not have"
    assert (CHART_DIR / "README.md").is_file()


def test_registry_lookup_deadline_follows_the_review_deadline(chart: HelmChart) -> None:
    """Unset, the look-ups get 60% of the review's deadline, so a shorter webhook timeout never
    leaves the operator with settings it refuses at start-up; set, it must stay below."""
    args = container(chart.template())["args"]
    assert "--registry-lookup-deadline=1.50" in args and "--deadline=2.5" in args
    args = container(
        chart.template({"webhook": {"timeoutSeconds": 2}, "operator": {"deadlineSeconds": 1}})
    )["args"]
    assert "--registry-lookup-deadline=0.60" in args
    args = container(chart.template({"registryLookups": {"deadlineSeconds": 2}}))["args"]
    assert "--registry-lookup-deadline=2" in args
    refused = chart.attempt({"registryLookups": {"deadlineSeconds": 3}})
    assert refused.returncode != 0
    assert "registryLookups.deadlineSeconds (3) must be below operator.deadlineSeconds" in (
        refused.stderr
    )
