"""Policy exceptions against the real kube-apiserver: refused by the CRD (CEL) and by
modelward's webhook, applied at admission and in the audit, expiring by themselves, and
governed: a tenant with ``edit`` cannot create one, and cannot forge who created one.

docs/security.md and docs/governance.md name these tests next to the claims they hold.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelward.engine.exceptions import CREATOR_ANNOTATION, Creator
from modelward_dev.controlplane import LocalControlPlane, ToolRunner
from modelward_dev.operator_process import OperatorProcess
from modelward_dev.tenant import Tenant
from tests.e2e.helpers import apply, apply_policy, cluster_policy, get_json, pod, wait_for, workload

CHART = Path(__file__).resolve().parents[2] / "charts" / "modelward"
TAGGED = "registry.example.com/serving/server:1.0"  # breaks MW-IMG-001 only
APPROVER_ROLE = "modelward-exception-approver"


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def exception(
    name: str,
    namespace: str,
    *,
    policy: str,
    lifetime: dt.timedelta = dt.timedelta(days=1),
    rules: list[str] | None = None,
    workloads: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "modelward.io/v1alpha1",
        "kind": "ModelPolicyException",
        "metadata": meta,
        "spec": {
            "policy": {"kind": "ClusterModelPolicy", "name": policy},
            "rules": rules or ["MW-IMG-001"],
            "workloads": workloads or {"names": ["llm"]},
            "justification": "the vendor publishes tags only; digests from v2 on",
            "approvedBy": "security-office@example.com",
            "ticket": "SEC-42",
            "approvedAt": stamp(now - dt.timedelta(minutes=1)),
            "expiresAt": stamp(now + lifetime),
        },
    }


def tagged_deployment(name: str, namespace: str, revision: str = "1") -> dict[str, Any]:
    spec = copy.deepcopy(pod(name, namespace)["spec"])
    spec["containers"][0]["image"] = TAGGED
    body = workload("Deployment", name, namespace, spec)
    body["spec"]["template"]["metadata"]["annotations"] = {"revision": revision}
    return body


def tagged_pod(name: str, namespace: str) -> dict[str, Any]:
    body = pod(name, namespace)
    body["spec"]["containers"][0]["image"] = TAGGED
    return body


def images_policy(kubectl: ToolRunner, namespace: str, **spec: Any) -> str:
    policy = cluster_policy(namespace, namespace, {"images": {}, **spec})
    apply_policy(kubectl, policy)
    return namespace


def exception_status(kubectl: ToolRunner, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = get_json(kubectl, "mpex", name, "-n", namespace).get("status") or {}
    return status


def metric(operator: OperatorProcess, name: str) -> float:
    with urllib.request.urlopen(f"{operator.metrics_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


# -- refused by the CRD schema (CEL), before any webhook ---------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"expiresAt": None}, "expiresAt: Required value"),
        ({"approvedAt": None}, "approvedAt: Required value"),
        ({"justification": None}, "justification: Required value"),
        ({"approvedBy": None}, "approvedBy: Required value"),
        (
            {"expiresAt": "2026-01-01T00:00:00Z", "approvedAt": "2026-02-01T00:00:00Z"},
            "expiresAt must be after approvedAt",
        ),
        (
            {"expiresAt": "2027-03-01T00:00:00Z", "approvedAt": "2026-01-01T00:00:00Z"},
            "expiresAt may be at most 365 days after approvedAt",
        ),
        ({"rules": ["*"]}, "spec.rules[0]"),
        ({"rules": ["MW-IMG-*"]}, "spec.rules[0]"),
        ({"rules": []}, "spec.rules"),
        ({"workloads": {}}, "workloads must give names or a selector"),
        ({"workloads": {"selector": {}}}, "an empty selector would select every workload"),
        ({"expiresAt": "next week"}, "spec.expiresAt"),
    ],
)
def test_the_crd_refuses_exceptions_without_expiry_or_past_the_hard_cap(
    kubectl: ToolRunner, crds: list[Path], namespace: str, change: dict[str, Any], message: str
) -> None:
    """No webhook involved (none is registered for this test's objects' validity): the API
    server itself refuses them, naming the rule."""
    body = exception("bad", namespace, policy="any")
    body["spec"].update(change)
    body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
    result = apply(kubectl, body)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "modelward refused" not in result.stderr  # the schema, not the webhook


# -- refused by modelward's webhook: the configured maximum, unknown rules -----------------


@pytest.mark.usefixtures("operator")
def test_the_webhook_refuses_past_the_configured_maximum_and_unknown_rules(
    kubectl: ToolRunner, namespace: str
) -> None:
    long = exception("long", namespace, policy="any", lifetime=dt.timedelta(days=100))
    result = apply(kubectl, long)
    assert result.returncode != 0
    assert "past the cluster's maximum exception lifetime (90 days from now" in result.stderr
    unknown = exception("unknown", namespace, policy="any", rules=["MW-IMG-001", "MW-IMG-999"])
    result = apply(kubectl, unknown)
    assert result.returncode != 0
    assert "MW-IMG-999, which no modelward rule has" in result.stderr
    fine = exception("fine", namespace, policy="any", lifetime=dt.timedelta(days=89))
    assert apply(kubectl, fine).returncode == 0


# -- applied, in admission and audit, then expiring by itself ------------------------------


def test_an_exception_applies_then_expires_by_itself(
    kubectl: ToolRunner, namespace: str, operator: OperatorProcess
) -> None:
    policy = images_policy(kubectl, namespace)
    denied = apply(kubectl, tagged_deployment("llm", namespace))
    assert denied.returncode != 0 and "[MW-IMG-001]" in denied.stderr
    expired_before = metric(operator, "modelward_policy_exceptions_expired_total")

    # 40 s: long enough for the admissions below and an audit scan (every 10 s here) on a
    # loaded machine; the test then waits for the expiry itself, never a fixed sleep.
    lifetime = dt.timedelta(seconds=40)
    body = exception("vendor-tag", namespace, policy=policy, lifetime=lifetime)
    assert apply(kubectl, body).returncode == 0
    expires = dt.datetime.fromisoformat(body["spec"]["expiresAt"].replace("Z", "+00:00"))
    wait_for(
        "the exception to be judged Active",
        lambda: exception_status(kubectl, namespace, "vendor-tag").get("state") == "Active",
    )
    created = get_json(kubectl, "mpex", "vendor-tag", "-n", namespace)
    creator = Creator.from_annotation(created["metadata"]["annotations"][CREATOR_ANNOTATION])
    assert creator is not None and creator.username == "admin"

    admitted = apply(kubectl, tagged_deployment("llm", namespace))
    assert admitted.returncode == 0, admitted.stderr
    assert "waived by exception " + f"{namespace}/vendor-tag" in admitted.stderr  # a warning
    # The pods the Deployment's ReplicaSet creates are covered by the Deployment's name.
    replica_pod = tagged_pod("llm-7c9d5f-abcde", namespace)
    replica_pod["metadata"]["labels"]["pod-template-hash"] = "7c9d5f"
    replica_pod["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "llm-7c9d5f",
            "uid": "00000000-0000-0000-0000-000000000001",
            "controller": True,
        }
    ]
    created_pod = kubectl("create", "-f", "-", input=yaml.safe_dump(replica_pod))
    assert created_pod.returncode == 0, created_pod.stderr
    # ... but not other workloads of the namespace.
    other = apply(kubectl, tagged_pod("other", namespace))
    assert other.returncode != 0 and "[MW-IMG-001]" in other.stderr

    # The audit reports the waived finding as skip, naming the exception.
    def skip_row() -> bool:
        result = kubectl("get", "policyreport", "modelward", "-n", namespace, "-o", "json")
        if result.returncode != 0:
            return False
        rows = json.loads(result.stdout).get("results") or []
        return any(
            r["result"] == "skip"
            and r["resources"][0]["name"] == "llm-7c9d5f-abcde"
            and r.get("properties", {}).get("exception") == f"{namespace}/vendor-tag"
            for r in rows
        )

    wait_for("a PolicyReport skip row naming the exception", skip_row, timeout=40)
    assert dt.datetime.now(dt.UTC) < expires, "the machine was too slow to test before expiry"

    # Expiry: nobody edits or restarts anything.
    wait_for(
        "the exception to be judged Expired",
        lambda: exception_status(kubectl, namespace, "vendor-tag").get("state") == "Expired",
        timeout=(expires - dt.datetime.now(dt.UTC)).total_seconds() + 20,
    )
    events = get_json(kubectl, "events", "-n", namespace)["items"]
    assert any(
        e["involvedObject"].get("name") == "vendor-tag" and e["reason"] == "ExceptionExpired"
        for e in events
    )
    assert metric(operator, "modelward_policy_exceptions_expired_total") >= expired_before + 1
    again = apply(kubectl, tagged_deployment("llm", namespace, revision="2"))
    assert again.returncode != 0
    assert f"exception {namespace}/vendor-tag matches but expired at" in again.stderr

    def fail_row() -> bool:
        result = kubectl("get", "policyreport", "modelward", "-n", namespace, "-o", "json")
        rows = json.loads(result.stdout).get("results") or [] if result.returncode == 0 else []
        return any(
            r["result"] == "fail" and r["resources"][0]["name"] == "llm-7c9d5f-abcde" for r in rows
        )

    wait_for("the audit to report the pod failing again", fail_row, timeout=40)


@pytest.mark.usefixtures("operator")
def test_an_exception_naming_an_unknown_policy_is_reported(
    kubectl: ToolRunner, namespace: str
) -> None:
    body = exception("misdirected", namespace, policy=f"{namespace}-nonexistent")
    assert apply(kubectl, body).returncode == 0

    def reported() -> bool:
        status = exception_status(kubectl, namespace, "misdirected")
        conditions = status.get("conditions") or [{}]
        return bool(conditions[0].get("reason") == "UnknownPolicy")

    wait_for("the UnknownPolicy condition", reported)
    events = get_json(kubectl, "events", "-n", namespace)["items"]
    assert any(
        e["involvedObject"].get("name") == "misdirected" and e["reason"] == "ExceptionMisdirected"
        for e in events
    )


# -- governance: who may create exceptions, and who created them --------------------------


def _approver_role(control_plane: LocalControlPlane) -> dict[str, Any]:
    """The chart's exception approver ClusterRole, as ``helm template`` renders it."""
    rendered = control_plane.helm(
        "template", "modelward", str(CHART), "--show-only", "templates/rbac.yaml", check=True
    )
    role = next(
        doc
        for doc in yaml.safe_load_all(rendered.stdout)
        if doc and doc["metadata"]["name"] == APPROVER_ROLE
    )
    return dict(role)


@pytest.fixture
def tenant(
    control_plane: LocalControlPlane, kubectl: ToolRunner, namespace: str, operator: OperatorProcess
) -> Any:
    """A tenant with ``edit``, resolved after the chart's approver role exists in the cluster
    (so that an aggregation picking it up would show)."""
    assert apply(kubectl, _approver_role(control_plane)).returncode == 0
    with Tenant(control_plane=control_plane, namespace=namespace) as who:
        yield who


def test_a_tenant_with_edit_cannot_create_exceptions(tenant: Tenant, namespace: str) -> None:
    assert tenant.can("create", "deployments")
    assert not tenant.can("create", "modelpolicyexceptions.modelward.io")
    body = exception("self-service", namespace, policy="any")
    result = tenant.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
    assert result.returncode != 0 and "forbidden" in result.stderr.lower(), result.stderr


def test_a_tenant_cannot_forge_who_created_an_exception(
    tenant: Tenant, kubectl: ToolRunner, namespace: str
) -> None:
    """Granted the approver role, the tenant creates an exception claiming the security
    team's group: modelward records the tenant instead, a policy that only takes that group's
    exceptions ignores it, and the tenant cannot rewrite the record afterwards."""
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "tenant-approves", "namespace": namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": APPROVER_ROLE,
        },
        "subjects": [{"kind": "ServiceAccount", "name": tenant.name, "namespace": namespace}],
    }
    assert apply(kubectl, binding).returncode == 0
    wait_for(
        "the approver role", lambda: tenant.can("create", "modelpolicyexceptions.modelward.io")
    )
    policy = images_policy(kubectl, namespace, exceptions={"allowedGroups": ["system:masters"]})

    forged = Creator("security-lead", ("system:masters",)).annotation()
    body = exception("forged", namespace, policy=policy, annotations={CREATOR_ANNOTATION: forged})
    result = tenant.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
    assert result.returncode == 0, result.stderr
    stored = get_json(kubectl, "mpex", "forged", "-n", namespace)["metadata"]["annotations"]
    recorded = Creator.from_annotation(stored[CREATOR_ANNOTATION])
    assert recorded is not None and recorded.username == tenant.username
    assert "system:masters" not in recorded.groups

    # Rewriting the record afterwards, by patch: refused (the webhook keeps the first value).
    patch = json.dumps({"metadata": {"annotations": {CREATOR_ANNOTATION: forged}}})
    rewritten = tenant.kubectl("patch", "mpex", "forged", "--type=merge", "-p", patch)
    stored = get_json(kubectl, "mpex", "forged", "-n", namespace)["metadata"]["annotations"]
    assert stored[CREATOR_ANNOTATION] != forged, rewritten.stdout
    # The tenant's exception does not count for this policy, and the denial says why.
    wait_for(
        "the exception to reach modelward",
        lambda: bool(exception_status(kubectl, namespace, "forged").get("state")),
    )
    denied = tenant.kubectl(
        "apply", "-f", "-", input=yaml.safe_dump(tagged_deployment("llm", namespace))
    )
    assert denied.returncode != 0
    assert f"exception {namespace}/forged matches but does not count" in denied.stderr

    # The same exception created by an admin (group system:masters) counts.
    genuine = exception("genuine", namespace, policy=policy)
    assert apply(kubectl, genuine).returncode == 0
    wait_for(
        "the genuine exception to be judged",
        lambda: exception_status(kubectl, namespace, "genuine").get("state") == "Active",
    )
    admitted = tenant.kubectl(
        "apply", "-f", "-", input=yaml.safe_dump(tagged_deployment("llm", namespace))
    )
    assert admitted.returncode == 0, admitted.stderr
