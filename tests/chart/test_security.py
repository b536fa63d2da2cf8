"""The chart's pods meet Pod Security "restricted" and its RBAC grants only what is used.

Pod Security is checked twice: field by field, and by modelward's own engine (the policy a user
would apply to model-serving namespaces), so the operator passes the rules it enforces. RBAC is
checked for wildcards, for write verbs outside a short allow-list, and for documentation: every
(resource, verb) the chart grants has a row in docs/helm.md saying why.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelward.check import check, load_policies
from tests.chart.conftest import DOCS_DIR, HelmChart, Rendered

RESTRICTED_POLICY = {
    "apiVersion": "modelward.io/v1alpha1",
    "kind": "ClusterModelPolicy",
    "metadata": {"name": "restricted"},
    "spec": {
        "mode": "Enforce",
        "match": {"namespaces": ["modelward-system"]},
        "isolation": {
            "podSecurity": "restricted",
            # The operator talks to the API server: it needs its token.
            "forbidServiceAccountTokenAutomount": False,
            "requireDefaultDenyNetworkPolicy": False,
        },
    },
}

#: The only writes the operator makes, as (apiGroup, resource, verb).
ALLOWED_WRITES = {
    ("", "events", "create"),
    ("modelward.io", "clustermodelpolicies/status", "patch"),
    ("modelward.io", "modelpolicies/status", "patch"),
    ("modelward.io", "modelpolicyexceptions/status", "patch"),
    ("modelward.io", "deployedmodels", "create"),
    ("modelward.io", "deployedmodels", "update"),
    ("wgpolicyk8s.io", "policyreports", "create"),
    ("wgpolicyk8s.io", "policyreports", "update"),
    ("", "secrets", "create"),
    ("", "secrets", "update"),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations", "patch"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "patch"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"),
}
READ_VERBS = {"get", "list", "watch"}


@pytest.fixture(scope="module", params=["operator", "certManager"])
def rendered(request: pytest.FixtureRequest, chart: HelmChart) -> Rendered:
    return chart.template({"certificates": {"mode": request.param}})


def pod_spec(rendered: Rendered) -> dict[str, Any]:
    spec: dict[str, Any] = rendered.one("Deployment")["spec"]["template"]["spec"]
    return spec


def test_pod_security_restricted_field_by_field(rendered: Rendered) -> None:
    spec = pod_spec(rendered)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    allowed_volumes = {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
    for volume in spec["volumes"]:
        assert set(volume) - {"name"} <= allowed_volumes, volume
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert "add" not in context["capabilities"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] != 0
        assert context["readOnlyRootFilesystem"] is True
        assert not context.get("privileged")
        assert not any(p.get("hostPort") for p in container["ports"])
        assert container["resources"]["requests"] and container["resources"]["limits"]


def test_modelwards_own_engine_admits_the_chart_under_restricted(
    rendered: Rendered, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(RESTRICTED_POLICY))
    deployment = tmp_path / "deployment.yaml"
    deployment.write_text(yaml.safe_dump(rendered.one("Deployment")))
    results, judged = check([str(deployment)], load_policies([str(policy)]))
    assert judged == 1
    assert [r.as_json() for r in results] == []


def test_the_engine_check_above_can_fail(rendered: Rendered, tmp_path: Path) -> None:
    """The same check on a weakened copy finds the weakness (the check is not a tautology)."""
    weakened = rendered.one("Deployment")
    context = weakened["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    context["allowPrivilegeEscalation"] = True
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(RESTRICTED_POLICY))
    deployment = tmp_path / "deployment.yaml"
    deployment.write_text(yaml.safe_dump(weakened))
    results, _ = check([str(deployment)], load_policies([str(policy)]))
    assert [r.finding.violation.rule_id for r in results] == ["MW-ISO-003"]


def test_probes_prestop_and_spread(rendered: Rendered) -> None:
    spec = pod_spec(rendered)
    container = spec["containers"][0]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"webhook": 8443, "metrics": 8080}
    # No shell in the image: the preStop delay must be the native sleep action.
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    anti = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    strategy = rendered.one("Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 1, "maxUnavailable": 0}


APPROVER_ROLE = "modelward-exception-approver"


def grants(rendered: Rendered) -> list[tuple[str, str, str, str, tuple[str, ...]]]:
    """(role kind, apiGroup, resource, verb, resourceNames) for every rule the chart grants to
    modelward itself: roles the chart binds (roles it ships for people to bind, such as the
    evidence reader, are checked by their own tests)."""
    bound = {
        (b["roleRef"]["kind"], b["roleRef"]["name"])
        for b in rendered.all("ClusterRoleBinding") + rendered.all("RoleBinding")
    }
    found = []
    for kind in ("ClusterRole", "Role"):
        for role in rendered.all(kind):
            if (kind, role["metadata"]["name"]) not in bound:
                continue
            for rule in role["rules"]:
                names = tuple(rule.get("resourceNames") or ())
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            found.append((kind, group, resource, verb, names))
    return found


TRUSTED_KEY_CONFIG_MAPS = ("release-keys",)
TRUSTED_KEY_SECRETS = ("partner-ca",)


@pytest.fixture(
    params=[
        {},
        {
            "rbac": {
                "trustedKeyConfigMaps": list(TRUSTED_KEY_CONFIG_MAPS),
                "trustedKeySecrets": list(TRUSTED_KEY_SECRETS),
            }
        },
    ],
    ids=["defaults", "trusted-keys"],
)
def rbac_rendered(chart: HelmChart, request: pytest.FixtureRequest) -> Rendered:
    return chart.template(request.param)


def test_trusted_keys_are_readable_by_name_in_the_release_namespace_only(
    chart: HelmChart,
) -> None:
    """A ClusterModelPolicy's referenced keys are read from modelward's namespace: the chart
    grants ``get`` on exactly the named objects there, nothing by default."""
    default = grants(chart.template())
    assert not [g for g in default if g[2] == "configmaps"]
    rendered = chart.template(
        {"rbac": {"trustedKeyConfigMaps": ["release-keys"], "trustedKeySecrets": ["partner-ca"]}}
    )
    table = grants(rendered)
    assert ("Role", "", "configmaps", "get", ("release-keys",)) in table
    assert ("Role", "", "secrets", "get", ("partner-ca",)) in table
    role = next(
        r for r in rendered.all("Role") if any("configmaps" in x["resources"] for x in r["rules"])
    )
    assert role["metadata"]["namespace"] == "modelward-system"


def test_rbac_is_least_privilege(rbac_rendered: Rendered) -> None:
    rendered = rbac_rendered
    table = grants(rendered)
    assert table, "no RBAC rendered"
    for kind, group, resource, verb, names in table:
        assert "*" not in (group, resource, verb), (kind, group, resource, verb)
        assert verb not in {"escalate", "bind", "impersonate", "delete", "deletecollection"}
        if verb not in READ_VERBS:
            assert (group, resource, verb) in ALLOWED_WRITES, (kind, group, resource, verb)
        if resource == "leases":
            # The leader Lease only, in the release namespace.
            assert kind == "Role" and (verb == "create" or names == ("modelward-leader",))
        if resource == "secrets":
            # Secrets only in the release namespace, and only the certificate one by name
            # (create cannot be restricted by name: the object does not exist yet).
            assert kind == "Role", "no cluster-wide access to Secrets"
            assert (
                verb == "create"
                or names == ("modelward-tls",)
                or (verb, names)
                == (
                    "get",
                    TRUSTED_KEY_SECRETS,
                )
            )
        if resource == "configmaps":
            # Only the named trusted-key ConfigMaps, in the release namespace, read-only.
            assert kind == "Role" and verb == "get" and names == TRUSTED_KEY_CONFIG_MAPS
        if group == "admissionregistration.k8s.io":
            assert kind == "ClusterRole" and names == ("modelward",)
    bindings = rendered.all("ClusterRoleBinding") + rendered.all("RoleBinding")
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "modelward", "namespace": "modelward-system"}
        ]


def test_every_granted_verb_is_documented(rendered: Rendered) -> None:
    """docs/helm.md has a row per resource naming each verb the chart grants on it."""
    doc = (DOCS_DIR / "helm.md").read_text()
    rows = [line for line in doc.splitlines() if line.startswith("|")]
    for _, _, resource, verb, _ in grants(rendered):
        matching = [row for row in rows if f"`{resource}`" in row]
        assert matching, f"docs/helm.md has no RBAC row for `{resource}`"
        assert any(re.search(rf"\b{verb}\b", row) for row in matching), (
            f"docs/helm.md does not explain verb {verb} on {resource}"
        )


def test_the_evidence_reader_role_grants_exactly_what_evidence_reads(chart: HelmChart) -> None:
    from modelward.evidence.kube import READS

    role = chart.template().one("ClusterRole", "modelward-evidence-reader")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == {(g, r, v) for g, r in READS for v in ("get", "list")}


def test_exception_approver_role_is_granted_to_nobody_by_default(chart: HelmChart) -> None:
    """Creating a ModelPolicyException waives policy: the chart ships the role for it, but
    aggregates it into no built-in role (``edit`` must not include it) and binds it to nobody."""
    rendered = chart.template()
    role = rendered.one("ClusterRole", APPROVER_ROLE)
    labels = role["metadata"].get("labels") or {}
    assert not [k for k in labels if "aggregate-to" in k], labels
    assert "aggregationRule" not in role
    assert role["rules"] == [
        {
            "apiGroups": ["modelward.io"],
            "resources": ["modelpolicyexceptions"],
            "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
        }
    ]
    bindings = rendered.all("ClusterRoleBinding") + rendered.all("RoleBinding")
    assert not [b for b in bindings if b["roleRef"]["name"] == APPROVER_ROLE]
    # The operator itself only reads exceptions and writes their status.
    table = grants(rendered)
    assert {(g[2], g[3]) for g in table if g[2].startswith("modelpolicyexceptions")} == {
        ("modelpolicyexceptions", "list"),
        ("modelpolicyexceptions", "watch"),
        ("modelpolicyexceptions/status", "patch"),
    }
    off = chart.template({"rbac": {"exceptionApproverRole": False}})
    assert not [r for r in off.all("ClusterRole") if r["metadata"]["name"] == APPROVER_ROLE]


def test_exception_max_lifetime_reaches_the_operator(chart: HelmChart) -> None:
    rendered = chart.template({"exceptions": {"maxLifetimeDays": 30}})
    args = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--exception-max-lifetime=2592000" in args
    assert chart.attempt({"exceptions": {"maxLifetimeDays": 400}}).returncode != 0
