"""Admission through the real kube-apiserver: it calls modelward's webhooks over TLS, denies,
admits, patches and warns, and the answers read back from the API server show it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelward_dev.controlplane import ToolRunner
from modelward_dev.operator_process import OperatorProcess
from tests.e2e.helpers import (
    apply,
    apply_policy,
    cluster_policy,
    default_deny,
    get_json,
    pod,
    wait_for,
    workload,
)

pytestmark = pytest.mark.usefixtures("operator")

STRICT = {
    "images": {},
    "isolation": {"requireDefaultDenyNetworkPolicy": False},
    "transport": {},
    "secrets": {},
}


def bad_pod(name: str, namespace: str) -> dict[str, Any]:
    body = pod(name, namespace)
    body["spec"]["containers"][0]["image"] = "vllm/vllm-openai:latest"
    return body


def test_crds_are_established_with_printer_columns(kubectl: ToolRunner, crds: list[Any]) -> None:
    for name in ("clustermodelpolicies.modelward.io", "modelpolicies.modelward.io"):
        crd = get_json(kubectl, "crd", name)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True"
    result = kubectl("get", "cmp", check=True)  # the short name works
    assert "MODE" in result.stdout or "No resources" in result.stderr


def test_bad_pod_denied_good_pod_admitted(kubectl: ToolRunner, namespace: str) -> None:
    apply_policy(kubectl, cluster_policy(namespace, namespace, STRICT))
    denied = apply(kubectl, bad_pod("bad", namespace))
    assert denied.returncode != 0
    assert 'admission webhook "validate.modelward.io" denied the request' in denied.stderr
    assert "[MW-IMG-003]" in denied.stderr and 'container "server"' in denied.stderr
    assert "Fix: use a versioned tag" in denied.stderr
    admitted = apply(kubectl, pod("good", namespace))
    assert admitted.returncode == 0, admitted.stderr
    assert get_json(kubectl, "pod", "good", "-n", namespace)["metadata"]["name"] == "good"


def test_bad_deployment_refused_at_apply_and_by_server_dry_run(
    kubectl: ToolRunner, namespace: str
) -> None:
    apply_policy(kubectl, cluster_policy(namespace, namespace, STRICT))
    spec = bad_pod("x", namespace)["spec"]
    spec["containers"][0]["env"] = [
        {"name": "OPENAI_API_KEY", "value": "sk-proj-4f8Kq2LxR7vT1nZ9wE3yU6iO0pA5sD8fG"}
    ]
    deployment = workload("Deployment", "llm", namespace, spec)
    dry = apply(kubectl, deployment, extra=("--dry-run=server",))
    real = apply(kubectl, deployment)
    for result in (dry, real):
        assert result.returncode != 0
        assert "modelward denied Deployment" in result.stderr
        assert "[MW-SEC-001]" in result.stderr and "[MW-IMG-001]" in result.stderr
    # Same message, whether dry-run or not.
    assert dry.stderr.split("denied the request:")[1] == real.stderr.split("denied the request:")[1]
    assert kubectl("get", "deployment", "llm", "-n", namespace).returncode != 0


@pytest.mark.parametrize(
    "kind",
    [
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "ReplicationController",
        "Job",
        "CronJob",
    ],
)
def test_every_pod_controller_is_judged(kubectl: ToolRunner, namespace: str, kind: str) -> None:
    apply_policy(kubectl, cluster_policy(namespace, namespace, {"images": {}}))
    result = apply(kubectl, workload(kind, "w", namespace, bad_pod("x", namespace)["spec"]))
    assert result.returncode != 0 and f"modelward denied {kind}" in result.stderr
    ok = apply(kubectl, workload(kind, "ok", namespace, pod("x", namespace)["spec"]))
    assert ok.returncode == 0, ok.stderr


def test_patch_mode_fixes_are_stored_and_pass_pod_security_restricted(
    kubectl: ToolRunner, namespace: str
) -> None:
    # The API server's own PodSecurity admission enforces "restricted" in this namespace, after
    # the mutating webhooks: the bare pod is only admitted if modelward's patch made it comply.
    kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted", check=True
    )
    apply_policy(
        kubectl,
        cluster_policy(
            namespace,
            namespace,
            {"isolation": {"requireDefaultDenyNetworkPolicy": False, "gpu": {}}},
            mode="Patch",
        ),
    )
    bare = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bare", "namespace": namespace},
        "spec": {
            "containers": [
                {
                    "name": "server",
                    "image": "registry.example.com/s@sha256:" + "cd" * 32,
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                }
            ]
        },
    }
    result = apply(kubectl, bare)
    assert result.returncode == 0, result.stderr
    assert "modelward patched: [MW-ISO-011]" in result.stderr  # warnings tell the user what changed
    stored = get_json(kubectl, "pod", "bare", "-n", namespace)["spec"]
    assert stored["securityContext"]["runAsNonRoot"] is True
    assert stored["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = stored["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False and container["capabilities"]["drop"] == [
        "ALL"
    ]
    assert stored["automountServiceAccountToken"] is False
    assert stored["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in stored[
        "tolerations"
    ]


def test_patch_mode_denies_what_it_cannot_fix(kubectl: ToolRunner, namespace: str) -> None:
    apply_policy(
        kubectl,
        cluster_policy(
            namespace,
            namespace,
            {"isolation": {"requireDefaultDenyNetworkPolicy": False}},
            mode="Patch",
        ),
    )
    body = pod("priv", namespace)
    body["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    result = apply(kubectl, body)
    assert result.returncode != 0 and "[MW-ISO-006]" in result.stderr


def test_audit_mode_admits_with_warnings(kubectl: ToolRunner, namespace: str) -> None:
    apply_policy(kubectl, cluster_policy(namespace, namespace, {"images": {}}, mode="Audit"))
    result = apply(kubectl, bad_pod("audited", namespace))
    assert result.returncode == 0, result.stderr
    assert "Warning: modelward: [MW-IMG-003]" in result.stderr


def test_events_are_recorded_on_the_object_and_the_policy(
    kubectl: ToolRunner, namespace: str
) -> None:
    apply_policy(kubectl, cluster_policy(namespace, namespace, {"images": {}}))
    assert apply(kubectl, bad_pod("evented", namespace)).returncode != 0
    found: dict[str, Any] = {}

    def events_posted() -> bool:
        items = get_json(kubectl, "events", "-n", namespace)["items"]
        policy_items = get_json(kubectl, "events", "-n", "default")["items"]
        found["pod"] = [e for e in items if e["involvedObject"].get("name") == "evented"]
        found["policy"] = [e for e in policy_items if e["involvedObject"].get("name") == namespace]
        return bool(found["pod"] and found["policy"])

    wait_for("events", events_posted)
    event = found["pod"][0]
    assert event["reason"] == "PolicyViolation" and event["type"] == "Warning"
    assert "[MW-IMG-003]" in event["message"] and event["reportingComponent"] == "modelward"
    assert found["policy"][0]["involvedObject"]["kind"] == "ClusterModelPolicy"


def test_dry_run_records_no_event(kubectl: ToolRunner, namespace: str) -> None:
    apply_policy(kubectl, cluster_policy(namespace, namespace, {"images": {}}))
    assert apply(kubectl, bad_pod("dry", namespace), extra=("--dry-run=server",)).returncode != 0
    assert apply(kubectl, bad_pod("wet", namespace)).returncode != 0
    names: set[str] = set()

    def wet_event() -> bool:
        names.update(
            e["involvedObject"].get("name")
            for e in get_json(kubectl, "events", "-n", namespace)["items"]
        )
        return "wet" in names

    wait_for("the real request's event", wet_event)  # posted in order, so "dry" would be there
    assert "dry" not in names


def test_policy_status_and_metrics(
    kubectl: ToolRunner, namespace: str, operator: OperatorProcess
) -> None:
    obj = apply_policy(kubectl, cluster_policy(namespace, namespace, {"images": {}}))
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and "MW-IMG-001" in obj["status"]["rules"]
    assert apply(kubectl, bad_pod("counted", namespace)).returncode != 0
    wait_for(
        "the denial count in status",
        lambda: (
            (get_json(kubectl, "cmp", namespace).get("status") or {})
            .get("violations", {})
            .get("denied", 0)
            >= 1
        ),
    )
    import urllib.request

    with urllib.request.urlopen(operator.metrics_url + "/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert (
        f'modelward_violations_total{{mode="Enforce",namespace="{namespace}",policy="{namespace}",rule="MW-IMG-003"}}'
        in metrics
    )
    assert 'modelward_policies{kind="ClusterModelPolicy",ready="true"}' in metrics


def test_policy_that_cannot_be_applied_is_not_ready(kubectl: ToolRunner, namespace: str) -> None:
    broken = cluster_policy(namespace, namespace, {"images": {}})
    # Accepted by the schema (values is optional there) but meaningless: In needs values.
    broken["spec"]["match"]["namespaceSelector"] = {
        "matchExpressions": [{"key": "team", "operator": "In"}]
    }
    obj = apply_policy(kubectl, broken)
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "InvalidPolicy"
    assert "needs values" in ready["message"] and "spec.match" in ready["message"]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"mode": "Block", "match": {"namespaces": ["a"]}}, "Unsupported value"),
        ({"match": {"podSelector": {"matchLabels": {"a": "b"}}}}, "match must select namespaces"),
        (
            {"match": {"namespaces": ["a"]}, "isolation": {"defaultRuntimeClassName": "x"}},
            "defaultRuntimeClassName must be one of runtimeClassNames",
        ),
        ({"match": {"namespaces": ["a"]}, "imagez": {}}, "unknown field"),
    ],
)
def test_invalid_policies_are_rejected_by_the_crd_schema(
    kubectl: ToolRunner, namespace: str, spec: dict[str, Any], words: str
) -> None:
    policy = {
        "apiVersion": "modelward.io/v1alpha1",
        "kind": "ClusterModelPolicy",
        "metadata": {"name": f"{namespace}-bad"},
        "spec": spec,
    }
    result = apply(kubectl, policy)
    assert result.returncode != 0 and words in result.stderr, result.stderr


def test_ephemeral_container_that_breaks_a_rule_is_refused(
    kubectl: ToolRunner, namespace: str
) -> None:
    apply_policy(kubectl, cluster_policy(namespace, namespace, STRICT))
    assert apply(kubectl, pod("target", namespace)).returncode == 0
    debug = [
        {
            "op": "add",
            "path": "/spec/ephemeralContainers",
            "value": [
                {
                    "name": "debug",
                    "image": "busybox:latest",
                    "securityContext": {"privileged": True},
                }
            ],
        }
    ]
    result = kubectl(
        "patch",
        "pod",
        "target",
        "-n",
        namespace,
        "--subresource=ephemeralcontainers",
        "--type=json",
        "-p",
        json.dumps(debug),
    )
    assert result.returncode != 0
    assert 'ephemeral container "debug"' in result.stderr and "[MW-ISO-006]" in result.stderr


def test_ingress_to_model_pods_needs_tls_and_rate_limit(
    kubectl: ToolRunner, namespace: str
) -> None:
    apply_policy(kubectl, cluster_policy(namespace, namespace, {"transport": {}}))
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "model", "namespace": namespace},
        "spec": {"selector": {"app": "model"}, "ports": [{"port": 443}]},
    }
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "public", "namespace": namespace},
        "spec": {
            "rules": [
                {
                    "host": "m.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "model", "port": {"number": 443}}},
                            }
                        ]
                    },
                }
            ]
        },
    }
    result = apply(kubectl, service, ingress)
    assert (
        result.returncode != 0
        and "[MW-TLS-002]" in result.stderr
        and "[MW-TLS-003]" in result.stderr
    )
    ingress["metadata"]["annotations"] = {"nginx.ingress.kubernetes.io/limit-rps": "20"}
    ingress["spec"]["tls"] = [{"hosts": ["m.example.com"], "secretName": "m-tls"}]
    assert apply(kubectl, ingress).returncode == 0


def test_external_services_and_resource_backends_do_not_bypass_transport_rules(
    kubectl: ToolRunner, namespace: str
) -> None:
    apply_policy(kubectl, cluster_policy(namespace, namespace, {"transport": {}}))
    load_balancer = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "model-lb", "namespace": namespace},
        "spec": {"type": "LoadBalancer", "selector": {"app": "model"}, "ports": [{"port": 443}]},
    }
    result = apply(kubectl, load_balancer)
    assert result.returncode != 0 and "[MW-TLS-004]" in result.stderr, result.stderr
    load_balancer["spec"]["type"] = "ClusterIP"
    assert apply(kubectl, load_balancer).returncode == 0
    load_balancer["spec"]["type"] = "NodePort"  # an UPDATE is judged the same way
    result = apply(kubectl, load_balancer)
    assert result.returncode != 0 and "[MW-TLS-004]" in result.stderr, result.stderr
    resource_backend = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "by-resource", "namespace": namespace},
        "spec": {
            "defaultBackend": {
                "resource": {"apiGroup": "example.com", "kind": "ModelPool", "name": "pool"}
            }
        },
    }
    result = apply(kubectl, resource_backend)
    assert result.returncode != 0 and "[MW-TLS-002]" in result.stderr, result.stderr


def test_default_deny_network_policy_is_looked_up_from_the_watch_cache(
    kubectl: ToolRunner, namespace: str
) -> None:
    apply_policy(kubectl, cluster_policy(namespace, namespace, {"isolation": {}}))
    result = apply(kubectl, pod("p1", namespace), extra=("--dry-run=server",))
    assert result.returncode != 0 and "[MW-ISO-014]" in result.stderr
    assert apply(kubectl, default_deny(namespace)).returncode == 0
    wait_for(
        "the NetworkPolicy to reach the cache",
        lambda: apply(kubectl, pod("p1", namespace), extra=("--dry-run=server",)).returncode == 0,
    )
