"""MW-TLS-*: TLS evidence on pods, TLS and rate limits on Ingresses."""

from __future__ import annotations

from typing import Any

from modelward.engine import StaticFacts, evaluate_ingress
from modelward.engine.facts import NamespaceFacts
from tests.unit.engine.builders import compliant_pod, decide, policy, rule_ids

TRANSPORT = policy({"transport": {}})


def _plain_pod() -> dict[str, Any]:
    pod = compliant_pod()
    pod["spec"]["containers"][0]["volumeMounts"] = []
    return pod


def test_tls_secret_mount_is_evidence() -> None:
    assert rule_ids(decide(compliant_pod(), TRANSPORT)) == []
    assert rule_ids(decide(_plain_pod(), TRANSPORT)) == ["MW-TLS-001"]


def test_istio_and_linkerd_injection_are_evidence() -> None:
    assert rule_ids(decide(_plain_pod(), TRANSPORT, labels={"istio-injection": "enabled"})) == []
    assert (
        rule_ids(decide(_plain_pod(), TRANSPORT, annotations={"linkerd.io/inject": "enabled"}))
        == []
    )
    pod = _plain_pod()
    pod["metadata"]["annotations"] = {"sidecar.istio.io/inject": "true"}
    assert rule_ids(decide(pod, TRANSPORT)) == []


def test_pod_opt_out_of_namespace_injection_is_caught() -> None:
    pod = _plain_pod()
    pod["metadata"]["annotations"] = {"sidecar.istio.io/inject": "false"}
    assert rule_ids(decide(pod, TRANSPORT, labels={"istio-injection": "enabled"})) == ["MW-TLS-001"]


def test_only_configured_meshes_count() -> None:
    istio_only = policy({"transport": {"meshes": ["istio"]}})
    assert rule_ids(
        decide(_plain_pod(), istio_only, annotations={"linkerd.io/inject": "enabled"})
    ) == ["MW-TLS-001"]


def _ingress(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "i",
            "namespace": "serving-a",
            "annotations": spec.pop("annotations", {}),
        },
        "spec": {
            "rules": [
                {
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "model", "port": {"number": 443}}},
                            }
                        ]
                    }
                }
            ],
            **spec,
        },
    }


def _facts() -> StaticFacts:
    f = StaticFacts()
    f.namespaces["serving-a"] = NamespaceFacts("serving-a")
    f.services[("serving-a", "model")] = {"app": "model"}
    return f


def test_ingress_needs_tls_and_rate_limit() -> None:
    found = evaluate_ingress(_ingress(), _facts(), [TRANSPORT]).findings
    assert sorted(f.violation.rule_id for f in found) == ["MW-TLS-002", "MW-TLS-003"]
    ok = _ingress(
        tls=[{"hosts": ["m"], "secretName": "m-tls"}],
        annotations={"nginx.ingress.kubernetes.io/limit-rps": "10"},
    )
    assert evaluate_ingress(ok, _facts(), [TRANSPORT]).findings == ()


def test_ingress_to_pods_outside_the_policy_is_ignored() -> None:
    narrow = policy(
        {"transport": {}},
        match={"namespaces": ["serving-*"], "podSelector": {"matchLabels": {"app": "other"}}},
    )
    assert evaluate_ingress(_ingress(), _facts(), [narrow]).findings == ()
