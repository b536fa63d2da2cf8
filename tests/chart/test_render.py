"""``helm lint --strict`` and ``helm template`` for the default values and a matrix of others.

Each case also checks what its values are for, so a template that ignores a value fails here
rather than in a cluster.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from tests.chart.conftest import HelmChart, Rendered

CA_BUNDLE = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
DIGEST = "sha256:" + "0123456789abcdef" * 4

ALWAYS_RENDERED = {
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Deployment",
    "Service",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}


def webhooks(rendered: Rendered) -> list[dict[str, Any]]:
    return [
        hook
        for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
        for hook in rendered.one(kind)["webhooks"]
    ]


def container(rendered: Rendered) -> dict[str, Any]:
    containers: list[dict[str, Any]] = rendered.one("Deployment")["spec"]["template"]["spec"][
        "containers"
    ]
    assert len(containers) == 1
    return containers[0]


def check_defaults(r: Rendered) -> None:
    assert r.kinds() >= ALWAYS_RENDERED
    deployment = r.one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert r.one("PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert r.one("NetworkPolicy")["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ServiceMonitor" not in r.kinds() and "PrometheusRule" not in r.kinds()
    assert (
        r.one("ConfigMap", "modelward-dashboard")["metadata"]["labels"]["grafana_dashboard"] == "1"
    )
    args = container(r)["args"]
    assert "--manage-certificates" in args
    assert "--webhook-configuration=modelward" in args and "--service-name=modelward" in args
    assert container(r)["image"] == "ghcr.io/modelward/modelward:0.1.0"
    enforced = [h for h in webhooks(r) if "failopen" not in h["name"] and "rbac" not in h["name"]]
    assert {h["failurePolicy"] for h in enforced} == {"Fail"}
    assert {h["failurePolicy"] for h in webhooks(r) if "failopen" in h["name"]} == {"Ignore"}
    # mode operator: the operator writes the caBundle; the chart renders none before it exists.
    assert all("caBundle" not in h["clientConfig"] for h in webhooks(r))
    assert r.one("Role", "modelward")["rules"][0]["resourceNames"] == ["modelward-tls"]
    assert r.one("Role", "modelward-leader")["rules"][0]["resourceNames"] == ["modelward-leader"]
    assert "--leader-lease=modelward-leader" in args
    assert {"--max-connections=256", "--idle-timeout=5", "--review-workers=4"} <= set(args)
    assert not any(a.startswith("--client-ca-file") for a in args)
    assert "Certificate" not in r.kinds()
    assert "kubectl label namespace" in r.notes and "Break-glass" in r.notes


def check_cert_manager(r: Rendered) -> None:
    certificates = {c["metadata"]["name"]: c for c in r.all("Certificate")}
    assert set(certificates) == {"modelward-ca", "modelward-serving"}
    serving = certificates["modelward-serving"]["spec"]
    assert serving["secretName"] == "modelward-tls"
    assert "modelward.modelward-system.svc" in serving["dnsNames"]
    assert {i["metadata"]["name"] for i in r.all("Issuer")} == {
        "modelward-selfsigned",
        "modelward-ca",
    }
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        annotations = r.one(kind)["metadata"]["annotations"]
        assert annotations["cert-manager.io/inject-ca-from"] == "modelward-system/modelward-serving"
    args = container(r)["args"]
    assert "--manage-certificates" not in args
    assert "--tls-cert-file=/etc/modelward/tls/tls.crt" in args
    volumes = r.one("Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "tls",
        "secret": {"secretName": "modelward-tls", "defaultMode": 0o440},
    } in volumes
    # No certificate Secret access in this mode; the webhook configurations are patched only
    # to narrow the fail-open webhooks (webhook.scopeToPolicies), and only this release's.
    assert [role["metadata"]["name"] for role in r.all("Role")] == ["modelward-leader"]
    rules = r.one("ClusterRole", "modelward")["rules"]
    webhook_rules = [rule for rule in rules if "admissionregistration.k8s.io" in rule["apiGroups"]]
    assert [(rule["resourceNames"], rule["verbs"]) for rule in webhook_rules] == [
        (["modelward"], ["get", "patch"])
    ]
    assert "--scope-webhook-configuration=modelward" in args


def check_issuer_ref(r: Rendered) -> None:
    assert [c["metadata"]["name"] for c in r.all("Certificate")] == ["modelward-serving"]
    assert "Issuer" not in r.kinds()
    issuer = r.one("Certificate")["spec"]["issuerRef"]
    assert issuer == {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}


def check_files(r: Rendered) -> None:
    assert {h["clientConfig"]["caBundle"] for h in webhooks(r)} == {CA_BUNDLE.decode()}
    volumes = r.one("Deployment")["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["secret"]["secretName"] == "my-webhook-tls"
    assert [role["metadata"]["name"] for role in r.all("Role")] == ["modelward-leader"]
    assert "Certificate" not in r.kinds()


def check_single_replica(r: Rendered) -> None:
    assert r.one("Deployment")["spec"]["replicas"] == 1
    # A PDB with minAvailable 1 over one replica would block every node drain.
    assert "PodDisruptionBudget" not in r.kinds()
    assert "WARNING: replicaCount is 1" in r.notes


def check_service_monitor(r: Rendered) -> None:
    monitor = r.one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == "metrics" and endpoint["interval"] == "15s"
    assert endpoint["honorLabels"] is True  # keeps the workload's namespace label
    service_ports = {p["name"] for p in r.one("Service")["spec"]["ports"]}
    assert "metrics" in service_ports
    assert monitor["spec"]["selector"]["matchLabels"] == r.one("Service")["spec"]["selector"]


def workload_webhooks(r: Rendered) -> list[dict[str, Any]]:
    """Every webhook but the exception ones (which always fail closed)."""
    return [h for h in webhooks(r) if "-exceptions." not in h["name"]]


def check_ignore(r: Rendered) -> None:
    assert {h["failurePolicy"] for h in workload_webhooks(r)} == {"Ignore"}
    assert len(workload_webhooks(r)) == 5  # validate, mutate, their fail-open twins, validate-rbac
    assert {h["failurePolicy"] for h in webhooks(r) if h not in workload_webhooks(r)} == {"Fail"}


def check_fail_open_off(r: Rendered) -> None:
    assert [h["name"] for h in workload_webhooks(r)] == [
        "validate.modelward.io",
        "validate-rbac.modelward.io",
        "mutate.modelward.io",
    ]
    # Nothing to narrow: the operator leaves the webhooks alone.
    assert not any(a.startswith("--scope-webhook-configuration") for a in container(r)["args"])


def check_scope_off(r: Rendered) -> None:
    # The operator still runs the scope, to restore (and keep) the chart's: the break-glass.
    args = container(r)["args"]
    assert "--scope-webhook-configuration=modelward" in args
    assert "--no-scope-to-policies" in args


def check_rules_and_names(r: Rendered) -> None:
    rule = r.one("PrometheusRule", "ml-modelward")
    exprs = [x["expr"] for g in rule["spec"]["groups"] for x in g["rules"]]
    assert all('job="ml-modelward"' in e for e in exprs if "modelward_" in e or "up{" in e)
    assert rule["metadata"]["labels"]["release"] == "prom"
    # every object but the CRDs (named by their group, one set per cluster) is release-named
    assert all(
        o["metadata"]["name"].startswith("ml-modelward")
        for o in r.objects
        if o["kind"] != "CustomResourceDefinition"
    )
    hooks = webhooks(r)
    assert {h["clientConfig"]["service"]["namespace"] for h in hooks} == {"ml-platform"}


def check_lean(r: Rendered) -> None:
    assert "NetworkPolicy" not in r.kinds() and "ConfigMap" not in r.kinds()
    assert container(r)["image"] == f"registry.example.com/modelward@{DIGEST}"
    assert "--no-events" in container(r)["args"]


def check_egress_off(r: Rendered) -> None:
    policy = r.one("NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"] and "egress" not in policy["spec"]
    ingress = policy["spec"]["ingress"]
    assert ingress[0]["from"] == [{"ipBlock": {"cidr": "10.0.0.0/8"}}]


def check_client_auth_and_control_plane(r: Rendered) -> None:
    """Only the control plane reaches the webhook port, and only with the client certificate."""
    ingress = r.one("NetworkPolicy")["spec"]["ingress"]
    webhook_rule = next(i for i in ingress if i["ports"][0]["port"] == "webhook")
    assert webhook_rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}},
        {"ipBlock": {"cidr": "10.0.0.0/24"}},
        {"ipBlock": {"cidr": "192.168.10.0/28"}},
    ]
    main = container(r)
    assert "--client-ca-file=/etc/modelward/client-ca/ca.pem" in main["args"]
    mount = next(m for m in main["volumeMounts"] if m["name"] == "client-ca")
    assert mount["mountPath"] == "/etc/modelward/client-ca" and mount["readOnly"] is True
    spec = r.one("Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in spec["volumes"] if v["name"] == "client-ca")
    assert volume["secret"]["secretName"] == "apiserver-webhook-ca"


CASES: dict[str, tuple[dict[str, Any], Callable[[Rendered], None], dict[str, str]]] = {
    "defaults": ({}, check_defaults, {}),
    "cert-manager": ({"certificates": {"mode": "certManager"}}, check_cert_manager, {}),
    "cert-manager-issuer": (
        {
            "certificates": {
                "mode": "certManager",
                "certManager": {
                    "issuerRef": {
                        "name": "corp-ca",
                        "kind": "ClusterIssuer",
                        "group": "cert-manager.io",
                    }
                },
            }
        },
        check_issuer_ref,
        {},
    ),
    "files": (
        {
            "certificates": {
                "mode": "files",
                "secretName": "my-webhook-tls",
                "files": {"caBundle": CA_BUNDLE.decode()},
            }
        },
        check_files,
        {},
    ),
    "ha-off": ({"replicaCount": 1}, check_single_replica, {}),
    "service-monitor": (
        {
            "serviceMonitor": {
                "enabled": True,
                "interval": "15s",
                "labels": {"release": "kube-prometheus-stack"},
            }
        },
        check_service_monitor,
        {},
    ),
    "failure-policy-ignore": ({"webhook": {"failurePolicy": "Ignore"}}, check_ignore, {}),
    "fail-open-off": ({"webhook": {"failOpenElsewhere": False}}, check_fail_open_off, {}),
    "scope-off": ({"webhook": {"scopeToPolicies": False}}, check_scope_off, {}),
    "alerts-and-release-name": (
        {"prometheusRule": {"enabled": True, "labels": {"release": "prom"}}},
        check_rules_and_names,
        {"release": "ml", "namespace": "ml-platform"},
    ),
    "lean": (
        {
            "networkPolicy": {"enabled": False},
            "grafanaDashboard": {"enabled": False},
            "image": {"repository": "registry.example.com/modelward", "digest": DIGEST},
            "operator": {"events": False},
        },
        check_lean,
        {},
    ),
    "client-auth-control-plane": (
        {
            "webhook": {
                "clientAuth": {
                    "enabled": True,
                    "caSecret": "apiserver-webhook-ca",
                    "caKey": "ca.pem",
                }
            },
            "networkPolicy": {
                "controlPlaneCIDRs": ["10.0.0.0/24", "192.168.10.0/28"],
                "webhookFrom": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                        }
                    }
                ],
            },
        },
        check_client_auth_and_control_plane,
        {},
    ),
    "egress-off": (
        {
            "networkPolicy": {
                "egress": {"enabled": False},
                "webhookFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
            }
        },
        check_egress_off,
        {},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_lint_and_template(chart: HelmChart, case: str) -> None:
    values, check, where = CASES[case]
    lint = chart.lint(values)
    assert lint.returncode == 0, f"helm lint --strict failed:\n{lint.stdout}\n{lint.stderr}"
    assert "[WARNING]" not in lint.stdout and "[ERROR]" not in lint.stdout, lint.stdout
    check(chart.template(values, **where))


def test_every_object_is_namespaced_in_the_release_namespace(chart: HelmChart) -> None:
    """helm does not add namespaces to rendered objects; a missing one lands in "default"."""
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "CustomResourceDefinition",
        "FlowSchema",
    }
    values = {
        "flowSchema": {"enabled": True},
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "tests": {"probeNamespace": "probe"},
    }
    for obj in chart.template(values, namespace="elsewhere").objects:
        if obj["kind"] in ("Role", "RoleBinding") and obj["metadata"]["name"] == ("modelward-test"):
            # `helm test`'s dry-run grant lives in the probe namespace, by design
            assert obj["metadata"]["namespace"] == "probe"
        elif obj["kind"] in cluster_scoped:
            assert "namespace" not in obj["metadata"], obj["kind"]
        else:
            assert obj["metadata"]["namespace"] == "elsewhere", obj["kind"]


def test_objects_carry_the_standard_labels(chart: HelmChart) -> None:
    for obj in chart.template({"certificates": {"mode": "certManager"}}).objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "modelward", obj["kind"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", obj["kind"]
