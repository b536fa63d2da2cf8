"""MW-TLS-*: TLS evidence on pods, as each mesh really decides it; TLS and rate limits on every
way in from outside (Ingresses, external Services, Gateway API routes)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelward.engine import StaticFacts, evaluate_exposure, is_exposure
from modelward.engine.facts import NamespaceFacts
from tests.unit.engine.builders import TLS_SECRET, compliant_pod, decide, policy, rule_ids

TRANSPORT = policy({"transport": {}})


def _plain_pod(
    *, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """A pod with a port and no certificate: only a mesh can make it pass."""
    pod = compliant_pod()
    pod["spec"]["containers"][0]["volumeMounts"] = []
    pod["spec"]["volumes"] = []
    pod["metadata"]["labels"] = {"app": "model", **(labels or {})}
    pod["metadata"]["annotations"] = dict(annotations or {})
    return pod


def _tls(
    pod: dict[str, Any],
    *,
    ns_labels: dict[str, str] | None = None,
    ns_annotations: dict[str, str] | None = None,
    rules: dict[str, Any] | None = None,
) -> list[str]:
    p = policy({"transport": rules or {}})
    return rule_ids(decide(pod, p, labels=ns_labels, annotations=ns_annotations))


# -- Istio sidecar -----------------------------------------------------------------------------


def test_namespace_injection_and_pod_label_are_evidence() -> None:
    assert _tls(_plain_pod(), ns_labels={"istio-injection": "enabled"}) == []
    assert _tls(_plain_pod(labels={"sidecar.istio.io/inject": "true"})) == []
    assert _tls(_plain_pod(), ns_labels={"istio.io/rev": "canary"}) == []
    assert _tls(_plain_pod(labels={"istio.io/rev": "canary"})) == []


def test_the_pod_label_wins_over_the_annotation_as_in_istio() -> None:
    # Istio reads the label and ignores the deprecated annotation when both are set.
    opted_out = _plain_pod(
        labels={"sidecar.istio.io/inject": "false"},
        annotations={"sidecar.istio.io/inject": "true"},
    )
    assert _tls(opted_out, ns_labels={"istio-injection": "enabled"}) == ["MW-TLS-001"]
    assert _tls(opted_out) == ["MW-TLS-001"]
    opted_in = _plain_pod(
        labels={"sidecar.istio.io/inject": "true"},
        annotations={"sidecar.istio.io/inject": "false"},
    )
    assert _tls(opted_in, ns_labels={"istio-injection": "enabled"}) == []


def test_an_annotation_alone_does_not_reach_the_injector() -> None:
    # Istio's object-level webhooks select on pod labels only: in a namespace without an
    # injection label, the annotation is never seen.
    pod = _plain_pod(annotations={"sidecar.istio.io/inject": "true"})
    assert _tls(pod) == ["MW-TLS-001"]


def test_pod_opt_out_of_namespace_injection_is_caught() -> None:
    for where in ("labels", "annotations"):
        pod = _plain_pod(**{where: {"sidecar.istio.io/inject": "false"}})
        assert _tls(pod, ns_labels={"istio-injection": "enabled"}) == ["MW-TLS-001"], where
    # Values Istio versions read differently are no evidence either.
    pod = _plain_pod(labels={"sidecar.istio.io/inject": "no"})
    assert _tls(pod, ns_labels={"istio-injection": "enabled"}) == ["MW-TLS-001"]


def test_namespace_injection_disabled_beats_the_pod_and_the_revision() -> None:
    disabled = {"istio-injection": "disabled"}
    assert _tls(_plain_pod(labels={"sidecar.istio.io/inject": "true"}), ns_labels=disabled) == [
        "MW-TLS-001"
    ]
    assert _tls(_plain_pod(), ns_labels={**disabled, "istio.io/rev": "canary"}) == ["MW-TLS-001"]
    assert _tls(_plain_pod(labels={"istio.io/rev": "canary"}), ns_labels=disabled) == ["MW-TLS-001"]


def test_host_network_pods_are_never_meshed() -> None:
    pod = _plain_pod()
    pod["spec"]["hostNetwork"] = True
    assert _tls(pod, ns_labels={"istio-injection": "enabled"}) == ["MW-TLS-001"]
    assert _tls(pod, ns_labels={"istio.io/dataplane-mode": "ambient"}) == ["MW-TLS-001"]
    assert _tls(pod, ns_annotations={"linkerd.io/inject": "enabled"}) == ["MW-TLS-001"]


def test_ports_excluded_from_the_sidecar_are_plain_text() -> None:
    enabled = {"istio-injection": "enabled"}
    excluded = {"traffic.sidecar.istio.io/excludeInboundPorts": "8443"}
    assert _tls(_plain_pod(annotations=excluded), ns_labels=enabled) == ["MW-TLS-001"]
    other = {"traffic.sidecar.istio.io/excludeInboundPorts": "9090,15020"}
    assert _tls(_plain_pod(annotations=other), ns_labels=enabled) == []
    nothing = {"traffic.sidecar.istio.io/includeInboundPorts": ""}
    assert _tls(_plain_pod(annotations=nothing), ns_labels=enabled) == ["MW-TLS-001"]
    garbled = {"traffic.sidecar.istio.io/excludeInboundPorts": "80,oops"}
    assert _tls(_plain_pod(annotations=garbled), ns_labels=enabled) == ["MW-TLS-001"]
    undeclared = _plain_pod(annotations=other)
    del undeclared["spec"]["containers"][0]["ports"]
    assert _tls(undeclared, ns_labels=enabled) == ["MW-TLS-001"]


# -- Istio ambient -----------------------------------------------------------------------------


def test_ambient_enrolment_is_evidence() -> None:
    assert _tls(_plain_pod(), ns_labels={"istio.io/dataplane-mode": "ambient"}) == []
    assert _tls(_plain_pod(labels={"istio.io/dataplane-mode": "ambient"})) == []


def test_ambient_opt_out_is_no_evidence() -> None:
    ambient = {"istio.io/dataplane-mode": "ambient"}
    none = _plain_pod(labels={"istio.io/dataplane-mode": "none"})
    assert _tls(none, ns_labels=ambient) == ["MW-TLS-001"]
    assert _tls(_plain_pod(), ns_labels={"istio.io/dataplane-mode": "none"}) == ["MW-TLS-001"]
    bypass = _plain_pod(annotations={"ambient.istio.io/bypass-inbound-capture": "true"})
    assert _tls(bypass, ns_labels=ambient) == ["MW-TLS-001"]


# -- Linkerd -----------------------------------------------------------------------------------


def test_linkerd_pod_or_namespace_annotation_is_evidence() -> None:
    assert _tls(_plain_pod(), ns_annotations={"linkerd.io/inject": "enabled"}) == []
    assert _tls(_plain_pod(annotations={"linkerd.io/inject": "ingress"})) == []


def test_the_linkerd_pod_annotation_replaces_the_namespace_one() -> None:
    enabled = {"linkerd.io/inject": "enabled"}
    for value in ("disabled", "yes", "Enabled"):
        pod = _plain_pod(annotations={"linkerd.io/inject": value})
        assert _tls(pod, ns_annotations=enabled) == ["MW-TLS-001"], value


def test_linkerd_webhook_opt_outs_are_no_evidence() -> None:
    enabled = {"linkerd.io/inject": "enabled"}
    pod = _plain_pod(labels={"linkerd.io/control-plane-component": "fake"})
    assert _tls(pod, ns_annotations=enabled) == ["MW-TLS-001"]
    assert _tls(
        _plain_pod(),
        ns_annotations=enabled,
        ns_labels={"config.linkerd.io/admission-webhooks": "disabled"},
    ) == ["MW-TLS-001"]
    skipped = _plain_pod(annotations={"config.linkerd.io/skip-inbound-ports": "8000-9000"})
    assert _tls(skipped, ns_annotations=enabled) == ["MW-TLS-001"]
    ns_skip = {**enabled, "config.linkerd.io/skip-inbound-ports": "8443"}
    assert _tls(_plain_pod(), ns_annotations=ns_skip) == ["MW-TLS-001"]


def test_only_configured_meshes_count() -> None:
    pod = _plain_pod(annotations={"linkerd.io/inject": "enabled"})
    assert _tls(pod, rules={"meshes": ["istio"]}) == ["MW-TLS-001"]


# -- mounted certificates ----------------------------------------------------------------------


def _with_volume(volume: dict[str, Any], **mount: Any) -> dict[str, Any]:
    pod = _plain_pod()
    pod["spec"]["volumes"] = [{"name": "cert", **volume}]
    pod["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "cert", "mountPath": "/tls", "readOnly": True, **mount}
    ]
    return pod


def test_a_secret_that_must_hold_a_certificate_and_key_is_evidence() -> None:
    assert _tls(compliant_pod()) == []
    assert _tls(_with_volume({"secret": copy.deepcopy(TLS_SECRET)})) == []
    projected = {"projected": {"sources": [{"secret": {**TLS_SECRET, "name": "serving-cert"}}]}}
    del projected["projected"]["sources"][0]["secret"]["secretName"]
    assert _tls(_with_volume(projected)) == []


def test_a_secret_named_like_tls_is_no_evidence() -> None:
    # modelward cannot read the Secret: without items naming tls.crt and tls.key, any Secret
    # (an API key called "x-tls") would pass.
    assert _tls(_with_volume({"secret": {"secretName": "server-tls"}})) == ["MW-TLS-001"]
    only_cert = {"secretName": "server-tls", "items": [{"key": "tls.crt", "path": "c"}]}
    assert _tls(_with_volume({"secret": only_cert})) == ["MW-TLS-001"]


def test_an_optional_secret_or_a_sub_path_mount_is_no_evidence() -> None:
    optional = {**copy.deepcopy(TLS_SECRET), "optional": True}
    assert _tls(_with_volume({"secret": optional})) == ["MW-TLS-001"]
    sub_path = _with_volume({"secret": copy.deepcopy(TLS_SECRET)}, subPath="tls.crt")
    assert _tls(sub_path) == ["MW-TLS-001"]


def test_tls_secret_names_narrow_but_never_prove() -> None:
    pod = _with_volume({"secret": copy.deepcopy(TLS_SECRET)})
    assert _tls(pod, rules={"tlsSecretNames": ["*-tls"]}) == []
    assert _tls(pod, rules={"tlsSecretNames": ["cert-manager-*"]}) == ["MW-TLS-001"]


def test_cert_manager_csi_volume_is_evidence() -> None:
    csi = {
        "csi": {
            "driver": "csi.cert-manager.io",
            "readOnly": True,
            "volumeAttributes": {"csi.cert-manager.io/issuer-name": "ca"},
        }
    }
    assert _tls(_with_volume(csi)) == []
    other_driver = copy.deepcopy(csi)
    other_driver["csi"]["driver"] = "secrets-store.csi.k8s.io"
    assert _tls(_with_volume(other_driver)) == ["MW-TLS-001"]


# -- exposures ---------------------------------------------------------------------------------

NS = "serving-a"


def _facts() -> StaticFacts:
    f = StaticFacts()
    f.namespaces[NS] = NamespaceFacts(NS)
    f.namespaces["gateways"] = NamespaceFacts("gateways")
    f.services[(NS, "model")] = {"app": "model"}
    return f


def _exposure_rules(obj: dict[str, Any], *policies: Any) -> list[str]:
    found = evaluate_exposure(obj, _facts(), policies or [TRANSPORT]).findings
    return sorted(f.violation.rule_id for f in found)


def _path(backend: dict[str, Any]) -> dict[str, Any]:
    return {"path": "/", "pathType": "Prefix", "backend": backend}


def _ingress(*, rules: Any = None, **spec: Any) -> dict[str, Any]:
    service = {"service": {"name": "model", "port": {"number": 443}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "i", "namespace": NS, "annotations": spec.pop("annotations", {})},
        "spec": {
            "rules": rules
            if rules is not None
            else [{"host": "m.example.com", "http": {"paths": [_path(service)]}}],
            **spec,
        },
    }


RATE_LIMITED = {"nginx.ingress.kubernetes.io/limit-rps": "10"}
TLS_FOR_M = [{"hosts": ["m.example.com"], "secretName": "m-tls"}]


def test_ingress_needs_tls_and_rate_limit() -> None:
    assert _exposure_rules(_ingress()) == ["MW-TLS-002", "MW-TLS-003"]
    assert _exposure_rules(_ingress(tls=TLS_FOR_M, annotations=RATE_LIMITED)) == []


def test_ingress_tls_must_cover_every_routed_host() -> None:
    service = {"service": {"name": "model", "port": {"number": 443}}}
    two_hosts = [
        {"host": "m.example.com", "http": {"paths": [_path(service)]}},
        {"host": "plain.example.com", "http": {"paths": [_path(service)]}},
    ]
    ingress = _ingress(rules=two_hosts, tls=TLS_FOR_M, annotations=RATE_LIMITED)
    assert _exposure_rules(ingress) == ["MW-TLS-002"]
    wildcard = [{"hosts": ["*.example.com"], "secretName": "w"}]
    assert _exposure_rules(_ingress(rules=two_hosts, tls=wildcard, annotations=RATE_LIMITED)) == []


def test_ingress_resource_backends_do_not_escape() -> None:
    resource = {"resource": {"apiGroup": "example.com", "kind": "ModelPool", "name": "pool"}}
    default_only = _ingress(rules=[], defaultBackend=resource)
    assert _exposure_rules(default_only) == ["MW-TLS-002", "MW-TLS-003"]
    in_a_rule = _ingress(rules=[{"host": "m.example.com", "http": {"paths": [_path(resource)]}}])
    assert _exposure_rules(in_a_rule) == ["MW-TLS-002", "MW-TLS-003"]


def test_ingress_to_pods_outside_the_policy_is_ignored() -> None:
    narrow = policy(
        {"transport": {}},
        match={"namespaces": ["serving-*"], "podSelector": {"matchLabels": {"app": "other"}}},
    )
    assert _exposure_rules(_ingress(), narrow) == []


def test_a_selector_that_omits_the_policy_label_does_not_escape() -> None:
    # The Service selects app=model; its pods may also carry component=model, which the
    # policy selects: the Service's selector is a floor of the pods' labels, not all of them.
    narrow = policy(
        {"transport": {}},
        match={"namespaces": ["serving-*"], "podSelector": {"matchLabels": {"component": "model"}}},
    )
    assert _exposure_rules(_ingress(), narrow) == ["MW-TLS-002", "MW-TLS-003"]
    # exclude.podSelector exists only in namespaced policies (a cluster policy refuses it).
    excluded = policy(
        {"transport": {}},
        kind="ModelPolicy",
        namespace=NS,
        exclude={"podSelector": {"matchLabels": {"app": "model"}}},
    )
    assert _exposure_rules(_ingress(), excluded) == []


def _service(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "model-lb", "namespace": NS},
        "spec": {"selector": {"app": "model"}, "ports": [{"port": 443}], **spec},
    }


@pytest.mark.parametrize(
    "spec",
    [{"type": "LoadBalancer"}, {"type": "NodePort"}, {"externalIPs": ["203.0.113.7"]}],
    ids=["LoadBalancer", "NodePort", "externalIPs"],
)
def test_an_external_service_to_model_pods_is_denied(spec: dict[str, Any]) -> None:
    assert _exposure_rules(_service(**spec)) == ["MW-TLS-004"]


def test_cluster_services_and_allowed_external_ones_pass() -> None:
    assert _exposure_rules(_service()) == []
    assert _exposure_rules(_service(type="ClusterIP")) == []
    allowing = policy({"transport": {"allowExternalServices": True}})
    assert _exposure_rules(_service(type="LoadBalancer"), allowing) == []
    elsewhere = policy({"transport": {}}, match={"namespaces": ["other-*"]})
    assert _exposure_rules(_service(type="LoadBalancer"), elsewhere) == []


def test_an_external_service_without_selector_is_judged_on_the_namespace() -> None:
    service = _service(type="LoadBalancer")
    del service["spec"]["selector"]  # hand-made EndpointSlices may point anywhere
    assert _exposure_rules(service) == ["MW-TLS-004"]


def _route(kind: str = "HTTPRoute", *, parents: Any = None, backends: Any = None) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": "r", "namespace": NS},
        "spec": {
            "parentRefs": parents
            if parents is not None
            else [{"name": "public", "namespace": "gateways"}],
            "rules": [{"backendRefs": backends or [{"name": "model", "port": 443}]}],
        },
    }


GATEWAYS = policy({"transport": {"allowedGateways": ["gateways/public"]}})


@pytest.mark.parametrize("kind", ["HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"])
def test_a_route_to_model_pods_must_use_an_allowed_gateway(kind: str) -> None:
    assert _exposure_rules(_route(kind)) == ["MW-TLS-005"]
    assert _exposure_rules(_route(kind), GATEWAYS) == []
    sneaky = _route(kind, parents=[{"name": "public", "namespace": "gateways"}, {"name": "mine"}])
    assert _exposure_rules(sneaky, GATEWAYS) == ["MW-TLS-005"]


def test_allowed_listeners_are_matched_exactly() -> None:
    listener = policy({"transport": {"allowedGateways": ["gateways/public/https"]}})
    https = [{"name": "public", "namespace": "gateways", "sectionName": "https"}]
    assert _exposure_rules(_route(parents=https), listener) == []
    any_listener = [{"name": "public", "namespace": "gateways"}]
    assert _exposure_rules(_route(parents=any_listener), listener) == ["MW-TLS-005"]
    http = [{"name": "public", "namespace": "gateways", "sectionName": "http"}]
    assert _exposure_rules(_route(parents=http), listener) == ["MW-TLS-005"]


def test_mesh_routes_are_not_exposures() -> None:
    gamma = [{"group": "", "kind": "Service", "name": "model"}]
    assert _exposure_rules(_route(parents=gamma)) == []


def test_routes_to_unknown_backends_and_mirrors_do_not_escape() -> None:
    pool = [{"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "p"}]
    assert _exposure_rules(_route(backends=pool)) == ["MW-TLS-005"]
    other = policy({"transport": {}}, match={"namespaces": ["tenant-*"]})
    f = _facts()
    f.namespaces["tenant-x"] = NamespaceFacts("tenant-x")
    cross = _route(backends=[{"name": "model", "namespace": NS}])
    cross["metadata"]["namespace"] = "tenant-x"
    # Judged by the policies of the backend's namespace, not the route's.
    assert evaluate_exposure(cross, f, [other]).findings == ()
    assert [x.violation.rule_id for x in evaluate_exposure(cross, f, [TRANSPORT]).findings] == [
        "MW-TLS-005"
    ]
    mirror = _route(backends=[{"name": "unrelated"}])
    mirror["spec"]["rules"][0]["filters"] = [
        {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "model"}}}
    ]
    narrow = policy(
        {"transport": {}},
        match={"namespaces": ["serving-*"], "podSelector": {"matchLabels": {"app": "model"}}},
    )
    f.services[(NS, "unrelated")] = {"app": "unrelated"}
    assert [x.violation.rule_id for x in evaluate_exposure(mirror, f, [narrow]).findings] == [
        "MW-TLS-005"
    ]


def test_exposures_are_recognised_by_group_and_kind() -> None:
    assert is_exposure(_service()) and is_exposure(_ingress()) and is_exposure(_route())
    knative = {"apiVersion": "serving.knative.dev/v1", "kind": "Service"}
    assert not is_exposure(knative)
    assert not is_exposure({"apiVersion": "example.com/v1", "kind": "HTTPRoute"})
