"""Admission of Services, Ingresses and routes: judged by the transport policies of the pods
they expose, on CREATE and on UPDATE."""

from __future__ import annotations

from typing import Any

from modelward.admission.review import ReviewRequest
from modelward.admission.service import AdmissionService
from modelward.engine.facts import NamespaceFacts
from modelward.state import ClusterState
from tests.unit.engine.builders import policy


def _service_state() -> AdmissionService:
    state = ClusterState()
    state.put_namespace(NamespaceFacts("serving-a"))
    state.ready = True
    p = policy({"transport": {}})
    state.put_policy(
        (p.ref.kind, None, p.ref.name), policy=p, error=None, generation=1, resource_version=None
    )
    return AdmissionService(state=state)


def _request(obj: dict[str, Any], *, old: dict[str, Any] | None = None) -> ReviewRequest:
    return ReviewRequest(
        uid="u",
        kind=str(obj["kind"]),
        operation="UPDATE" if old is not None else "CREATE",
        namespace="serving-a",
        name=str(obj["metadata"]["name"]),
        sub_resource="",
        obj=obj,
        old_obj=old,
        dry_run=False,
    )


def _service(kind: str = "ClusterIP", api_version: str = "v1") -> dict[str, Any]:
    # No metadata.namespace, as in a create request: the request's namespace decides.
    return {
        "apiVersion": api_version,
        "kind": "Service",
        "metadata": {"name": "model"},
        "spec": {"type": kind, "selector": {"app": "model"}, "ports": [{"port": 443}]},
    }


def test_a_load_balancer_to_model_pods_is_denied_on_create_and_update() -> None:
    service = _service_state()
    created = service.validate(_request(_service("LoadBalancer")))
    assert created.label == "denied"
    assert "[MW-TLS-004]" in created.review["response"]["status"]["message"]
    updated = service.validate(_request(_service("NodePort"), old=_service()))
    assert updated.label == "denied"
    assert service.validate(_request(_service())).label == "allowed"


def test_an_exposure_admitted_before_the_policy_still_takes_updates() -> None:
    # A load balancer from before the policy: its controller's finalizer update (and removal,
    # on deletion) must not be refused; a change that adds a violation still is.
    old = _service("LoadBalancer")
    with_finalizer = _service("LoadBalancer")
    with_finalizer["metadata"]["finalizers"] = ["service.kubernetes.io/load-balancer-cleanup"]
    service = _service_state()
    assert service.validate(_request(with_finalizer, old=old)).label == "allowed"
    external_ips = _service("LoadBalancer")
    external_ips["spec"]["externalIPs"] = ["203.0.113.7"]
    assert service.validate(_request(external_ips, old=old)).label == "denied"


def test_other_groups_kinds_named_service_are_not_exposures() -> None:
    knative = _service("LoadBalancer", api_version="serving.knative.dev/v1")
    assert _service_state().validate(_request(knative)).label == "allowed"
