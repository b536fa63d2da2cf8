"""Access by job function against the real kube-apiserver.

- The access review (``modelward access-review``'s library) agrees with the API server's own
  authorizer: a SubjectAccessReview for every subject of the fixture and every sensitive
  request gives the same answer (users, groups, ServiceAccounts, a ServiceAccount spelled as a
  user, aggregated ClusterRoles, wildcards, ``*/subresource``, resourceNames, a
  ClusterRoleBinding, ``system:masters``).
- A tenant (a namespace admin: it may write Roles and RoleBindings) tries to give exec to a
  ServiceAccount no job function allows, to bind a wildcard ClusterRole it was delegated
  ``bind`` on, and to widen a role already bound; each is refused by the webhook.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelward.access import review_cluster
from modelward.engine.rbac import ALL_ATOMS, Atom, Principal
from modelward.engine.rules.access import row_atoms, row_subject
from modelward_dev.controlplane import LocalControlPlane, ToolRunner
from modelward_dev.operator_process import OperatorProcess
from modelward_dev.tenant import Tenant, resolve_cluster_role_rules
from tests.e2e.helpers import apply, apply_policy, cluster_policy

RBAC = "rbac.authorization.k8s.io/v1"
RBAC_PATH = "/apis/rbac.authorization.k8s.io/v1"
EXEC_RULE = {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}
CONFIGMAPS_RULE = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}


def cluster_role(name: str, rules: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    meta = {"name": name, "labels": extra.pop("labels", {})}
    return {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": meta, "rules": rules, **extra}


def role(name: str, namespace: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    meta = {"name": name, "namespace": namespace}
    return {"apiVersion": RBAC, "kind": "Role", "metadata": meta, "rules": rules}


def binding(
    name: str, role_kind: str, role_name: str, subjects: list[dict[str, Any]], namespace: str | None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": RBAC,
        "kind": "RoleBinding" if namespace else "ClusterRoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name},
        "subjects": subjects,
    }


def user(name: str) -> dict[str, Any]:
    return {"kind": "User", "name": name, "apiGroup": "rbac.authorization.k8s.io"}


def group(name: str) -> dict[str, Any]:
    return {"kind": "Group", "name": name, "apiGroup": "rbac.authorization.k8s.io"}


def service_account(name: str, namespace: str) -> dict[str, Any]:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def create_namespace(plane: LocalControlPlane, name: str) -> None:
    response = plane.api_request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    assert response.status == 201, response.message


def fill_aggregation(plane: LocalControlPlane, name: str) -> None:
    """Write an aggregated ClusterRole's rules as kube-controller-manager's aggregation
    controller does (the session's control plane runs none)."""
    roles = json.loads(plane.api_request("GET", f"{RBAC_PATH}/clusterroles").text)["items"]
    current = next(r for r in roles if r["metadata"]["name"] == name)
    current["rules"] = resolve_cluster_role_rules(roles, name)
    response = plane.api_request("PUT", f"{RBAC_PATH}/clusterroles/{name}", body=current)
    assert response.status == 200, response.message


def subject_access_review(
    plane: LocalControlPlane, principal: Principal, namespace: str, atom: Atom, name: str = ""
) -> bool:
    attributes = {
        "namespace": namespace,
        "verb": atom.verb,
        "group": atom.group,
        "resource": atom.resource,
        "subresource": atom.subresource,
        "name": name,
    }
    response = plane.api_request(
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        body={
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": principal.user,
                "groups": sorted(principal.groups),
                "resourceAttributes": attributes,
            },
        },
    )
    assert response.status == 201, response.message
    return bool(json.loads(response.text)["status"].get("allowed"))


@pytest.fixture
def fixture_rbac(
    control_plane: LocalControlPlane, kubectl: ToolRunner, crds: list[Path]
) -> Iterator[dict[str, Any]]:
    """A protected namespace and an RBAC fixture covering every resolution case."""
    suffix = secrets.token_hex(3)
    protected, elsewhere = f"acc-review-{suffix}", f"acc-tools-{suffix}"
    for name in (protected, elsewhere):
        create_namespace(control_plane, name)
    agg_label = f"mw-test.example.com/agg-{suffix}"
    names = {k: f"mw-{k}-{suffix}" for k in ("agg", "part", "wild", "sub", "crb")}
    objects = [
        cluster_role(
            names["agg"],
            [],
            aggregationRule={"clusterRoleSelectors": [{"matchLabels": {agg_label: "true"}}]},
        ),
        cluster_role(names["part"], [EXEC_RULE], labels={agg_label: "true"}),
        cluster_role(
            names["wild"], [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list"]}]
        ),
        cluster_role(
            names["sub"],
            [{"apiGroups": [""], "resources": ["*/attach", "*/portforward"], "verbs": ["create"]}],
        ),
        role(
            "named",
            protected,
            [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "verbs": ["get"],
                    "resourceNames": ["model-key"],
                },
                {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create", "patch"]},
                {"apiGroups": [""], "resources": ["pods/ephemeralcontainers"], "verbs": ["patch"]},
            ],
        ),
        binding("rb-agg", "ClusterRole", names["agg"], [user(f"alice-{suffix}")], protected),
        binding("rb-wild", "ClusterRole", names["wild"], [group(f"ml-{suffix}")], protected),
        binding(
            names["crb"], "ClusterRole", names["sub"], [service_account("bot", elsewhere)], None
        ),
        binding(
            "rb-named",
            "Role",
            "named",
            [service_account("ci", protected), user(f"system:serviceaccount:{protected}:legacy")],
            protected,
        ),
        binding("rb-elsewhere", "ClusterRole", names["wild"], [user(f"carol-{suffix}")], elsewhere),
    ]
    result = apply(kubectl, *objects)
    assert result.returncode == 0, result.stderr
    fill_aggregation(control_plane, names["agg"])
    policy = cluster_policy(
        f"access-review-{suffix}",
        protected,
        {
            "access": {
                "jobFunctions": [
                    {"name": "ml", "groups": [f"ml-{suffix}"], "permissions": ["secrets"]}
                ]
            }
        },
    )
    assert apply(kubectl, policy).returncode == 0
    principals = {
        "alice": Principal(f"alice-{suffix}", frozenset({"system:authenticated"})),
        "bob": Principal(f"bob-{suffix}", frozenset({f"ml-{suffix}", "system:authenticated"})),
        "bot": Principal.service_account(elsewhere, "bot"),
        "ci": Principal.service_account(protected, "ci"),
        "legacy": Principal.service_account(protected, "legacy"),
        "carol": Principal(f"carol-{suffix}", frozenset({"system:authenticated"})),
        "nobody": Principal(f"nobody-{suffix}", frozenset({"system:authenticated"})),
        "root": Principal(f"root-{suffix}", frozenset({"system:masters", "system:authenticated"})),
    }
    try:
        yield {"namespace": protected, "principals": principals, "policy": policy}
    finally:
        kubectl("delete", "clustermodelpolicy", policy["metadata"]["name"], "--ignore-not-found")
        for kind, key in (
            ("clusterrolebinding", "crb"),
            *(("clusterrole", k) for k in ("agg", "part", "wild", "sub")),
        ):
            kubectl("delete", kind, names[key], "--ignore-not-found")


def test_access_review_agrees_with_subject_access_review(
    control_plane: LocalControlPlane, fixture_rbac: dict[str, Any]
) -> None:
    namespace = fixture_rbac["namespace"]
    review = review_cluster(namespace=namespace, kubeconfig=str(control_plane.kubeconfig_path))
    rows = [r for r in review.rows if r.namespace == namespace]
    assert rows, "the protected namespace has holdings"

    def from_review(principal: Principal, atom: Atom, name: str = "") -> bool:
        return any(
            principal.is_subject(row_subject(r))
            and atom in row_atoms(r)
            and (not r.resource_names or name in r.resource_names)
            for r in rows
        )

    disagreements = []
    checked = 0
    for label, principal in fixture_rbac["principals"].items():
        for atom in ALL_ATOMS:
            for name in ("", "model-key"):
                expected = subject_access_review(control_plane, principal, namespace, atom, name)
                checked += 1
                if from_review(principal, atom, name) != expected:
                    disagreements.append((label, str(atom), name, expected))
    assert not disagreements, disagreements
    assert checked == len(fixture_rbac["principals"]) * len(ALL_ATOMS) * 2

    # The fixture exercised what it claims: every case grants something.
    principals = fixture_rbac["principals"]
    exec_ = Atom("create", "", "pods", "exec")
    assert from_review(principals["alice"], exec_)  # through the aggregated ClusterRole
    assert from_review(principals["bob"], Atom("get", "", "secrets"))  # wildcard
    assert from_review(principals["bot"], Atom("create", "", "pods", "attach"))  # */attach, CRB
    assert from_review(principals["legacy"], Atom("get", "", "secrets"), "model-key")
    assert not from_review(principals["legacy"], Atom("get", "", "secrets"))
    assert not from_review(principals["carol"], Atom("get", "", "secrets"))  # other namespace
    assert from_review(principals["root"], exec_)
    # And the review marks what the policy does not allow.
    by_subject = {(r.subject, r.permission): r for r in rows}
    suffix = namespace.rsplit("-", 1)[1]
    assert by_subject[(f"ml-{suffix}", "secrets")].violates == ()
    assert by_subject[(f"ml-{suffix}", "pods/exec")].violates  # get on */* includes pods/exec
    assert by_subject[(f"alice-{suffix}", "pods/exec")].violates
    assert by_subject[("system:masters", "pods/exec")].built_in


def test_access_review_command_exits_1_on_violations_and_renders_every_format(
    control_plane: LocalControlPlane, fixture_rbac: dict[str, Any]
) -> None:
    namespace = fixture_rbac["namespace"]
    base = [sys.executable, "-m", "modelward", "access-review", "-n", namespace]
    base += ["--kubeconfig", str(control_plane.kubeconfig_path)]
    outputs = {}
    for output in ("table", "json", "csv"):
        result = subprocess.run([*base, "-o", output], capture_output=True, text=True, timeout=120)
        assert result.returncode == 1, result.stderr
        outputs[output] = result.stdout
    document = json.loads(outputs["json"])
    assert document["kind"] == "AccessReview" and document["violations"] > 0
    assert "VIOLATION" in outputs["table"]
    assert outputs["csv"].splitlines()[0].startswith("namespace,subject_kind,subject")
    missing = subprocess.run(
        [*base[:-2], "--kubeconfig", "/nonexistent/kubeconfig"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "kubeconfig" in missing.stderr


# -- a tenant attacks ---------------------------------------------------------------------------


@pytest.fixture
def admin_tenant(
    control_plane: LocalControlPlane, namespace: str, operator: OperatorProcess
) -> Iterator[Tenant]:
    """A namespace admin (may write Roles and RoleBindings), delegated ``bind`` on one
    wildcard ClusterRole (as platforms delegate a role catalogue)."""
    wildcard = f"mw-god-{namespace}"[:63]
    body = cluster_role(wildcard, [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}])
    response = control_plane.api_request("POST", f"{RBAC_PATH}/clusterroles", body=body)
    assert response.status == 201, response.message
    bind = {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["clusterroles"],
        "verbs": ["bind"],
        "resourceNames": [wildcard],
    }
    try:
        with Tenant(
            control_plane=control_plane,
            namespace=namespace,
            cluster_role="admin",
            extra_rules=[bind],
        ) as identity:
            yield identity
    finally:
        control_plane.api_request("DELETE", f"{RBAC_PATH}/clusterroles/{wildcard}")


def _access_policy(kubectl: ToolRunner, namespace: str) -> None:
    jobs = [{"name": "sre", "groups": ["sre-oncall"], "permissions": ["pods/exec", "secrets"]}]
    apply_policy(
        kubectl,
        cluster_policy(f"access-{namespace}"[:63], namespace, {"access": {"jobFunctions": jobs}}),
    )


def test_tenant_cannot_bind_exec_to_a_disallowed_service_account(
    kubectl: ToolRunner, admin_tenant: Tenant, namespace: str
) -> None:
    _access_policy(kubectl, namespace)
    # The Role and its binding in one apply: the binding is judged with the Role it names.
    refused = apply(
        admin_tenant.kubectl,
        role("exec", namespace, [EXEC_RULE]),
        binding(
            "exec-intruder", "Role", "exec", [service_account("intruder", namespace)], namespace
        ),
    )
    assert refused.returncode != 0 and "[MW-ACC-001]" in refused.stderr, refused.stderr
    assert (
        f"ServiceAccount {namespace}/intruder" in refused.stderr and "pods/exec" in refused.stderr
    )
    allowed = apply(
        admin_tenant.kubectl,
        binding("exec-sre", "Role", "exec", [group("sre-oncall")], namespace),
    )
    assert allowed.returncode == 0, allowed.stderr


def test_tenant_cannot_bind_a_wildcard_cluster_role(
    kubectl: ToolRunner, admin_tenant: Tenant, namespace: str
) -> None:
    _access_policy(kubectl, namespace)
    wildcard = f"mw-god-{namespace}"[:63]
    refused = apply(
        admin_tenant.kubectl,
        binding(
            "god", "ClusterRole", wildcard, [service_account("intruder", namespace)], namespace
        ),
    )
    assert refused.returncode != 0, refused.stderr
    assert "[MW-ACC-001]" in refused.stderr, refused.stderr
    assert (
        "the sensitive permissions persistentvolumeclaims, pods/attach, pods/ephemeralcontainers, "
        "pods/exec, pods/portforward, secrets, workloads" in refused.stderr
    ), refused.stderr


def test_tenant_cannot_widen_a_role_already_bound_to_a_disallowed_subject(
    kubectl: ToolRunner, admin_tenant: Tenant, namespace: str
) -> None:
    _access_policy(kubectl, namespace)
    helper = role("helper", namespace, [CONFIGMAPS_RULE])
    bound = binding("helper", "Role", "helper", [service_account("intruder", namespace)], namespace)
    assert apply(admin_tenant.kubectl, helper, bound).returncode == 0
    widened = role("helper", namespace, [CONFIGMAPS_RULE, EXEC_RULE])
    refused = apply(admin_tenant.kubectl, widened)
    assert refused.returncode != 0 and "[MW-ACC-002]" in refused.stderr, refused.stderr
    assert "intruder" in refused.stderr
