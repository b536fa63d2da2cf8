"""RBAC writes through the admission service: the cache race between a role and its binding."""

from __future__ import annotations

from typing import Any

from modelward.admission.review import ReviewRequest
from modelward.admission.service import AdmissionService
from modelward.engine.facts import NamespaceFacts
from modelward.state import ClusterState
from tests.unit.engine.builders import policy

ACCESS = {"access": {"jobFunctions": [{"name": "sre", "groups": ["sre"]}]}}
RBAC = "rbac.authorization.k8s.io/v1"


def _service() -> AdmissionService:
    state = ClusterState()
    state.put_namespace(NamespaceFacts("serving-a"))
    state.ready = True
    p = policy(ACCESS)
    state.put_policy(
        (p.ref.kind, None, p.ref.name), policy=p, error=None, generation=1, resource_version=None
    )
    return AdmissionService(state=state)


def _request(
    obj: dict[str, Any], *, namespace: str = "serving-a", dry_run: bool = False
) -> ReviewRequest:
    return ReviewRequest(
        uid="u",
        kind=str(obj["kind"]),
        operation="CREATE",
        namespace=namespace,
        name=str(obj["metadata"]["name"]),
        sub_resource="",
        obj=obj,
        old_obj=None,
        dry_run=dry_run,
    )


def _role(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": "helper"}, "rules": rules}


def _binding(subject: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": RBAC,
        "kind": "RoleBinding",
        "metadata": {"name": "b"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "helper"},
        "subjects": [subject],
    }


EXEC = {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}
INTRUDER = {"kind": "ServiceAccount", "name": "intruder", "namespace": "serving-a"}


def test_a_binding_to_a_role_not_seen_yet_is_refused() -> None:
    outcome = _service().validate(_request(_binding(INTRUDER)))
    assert outcome.label == "denied"
    assert "has not seen" in outcome.review["response"]["status"]["message"]


def test_a_role_admitted_a_moment_ago_is_judged_with_its_binding() -> None:
    """kubectl apply of a Role with exec and its binding in one go: the binding arrives before
    the Role's watch event; the admitted Role is already in the cache."""
    service = _service()
    assert service.validate(_request(_role([EXEC]))).label == "allowed"
    outcome = service.validate(_request(_binding(INTRUDER)))
    assert outcome.label == "denied"
    message = outcome.review["response"]["status"]["message"]
    assert "[MW-ACC-001]" in message and "pods/exec" in message and "not seen" not in message


def test_a_binding_admitted_a_moment_ago_is_seen_by_the_role_change() -> None:
    service = _service()
    assert service.validate(_request(_role([]))).label == "allowed"
    assert service.validate(_request(_binding(INTRUDER))).label == "allowed"
    outcome = service.validate(_request(_role([EXEC])))
    assert outcome.label == "denied"
    assert "[MW-ACC-002]" in outcome.review["response"]["status"]["message"]


def test_a_dry_run_is_not_remembered() -> None:
    service = _service()
    assert service.validate(_request(_role([EXEC]), dry_run=True)).label == "allowed"
    assert not service.state.rbac_snapshot().roles
