"""MW-ISO-*: each rule fires on the pod that breaks it and stays silent on the compliant one."""

from __future__ import annotations

from typing import Any

import pytest

from modelward.engine import StaticFacts, evaluate_workload
from modelward.engine.patches import remedies_to_json_patch
from modelward.engine.workloads import workload_from_object
from tests.unit.engine.builders import (
    GOOD_IMAGE,
    apply_json_patch,
    compliant_pod,
    decide,
    facts,
    policy,
    rule_ids,
)

ISOLATION = policy({"isolation": {}})


def _with_container(**sc: Any) -> dict[str, Any]:
    pod = compliant_pod()
    pod["spec"]["containers"][0]["securityContext"].update(sc)
    return pod


def test_compliant_pod_passes() -> None:
    assert rule_ids(decide(compliant_pod(), ISOLATION)) == []


def test_forbidden_namespace() -> None:
    p = policy({"isolation": {"forbiddenNamespaces": ["default", "serving-a"]}})
    assert rule_ids(decide(compliant_pod(), p)) == ["MW-ISO-001"]


@pytest.mark.parametrize(
    ("pod", "rule"),
    [
        (
            compliant_pod(securityContext={"seccompProfile": {"type": "RuntimeDefault"}}),
            "MW-ISO-002",
        ),
        (
            compliant_pod(
                securityContext={
                    "runAsNonRoot": True,
                    "runAsUser": 0,
                    "seccompProfile": {"type": "RuntimeDefault"},
                }
            ),
            "MW-ISO-002",
        ),
        (_with_container(allowPrivilegeEscalation=True), "MW-ISO-003"),
        (_with_container(capabilities={"drop": ["NET_RAW"]}), "MW-ISO-004"),
        (_with_container(capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]}), "MW-ISO-004"),
        (_with_container(seccompProfile={"type": "Unconfined"}), "MW-ISO-005"),
        (_with_container(privileged=True), "MW-ISO-006"),
        (compliant_pod(hostNetwork=True), "MW-ISO-007"),
        (compliant_pod(hostPID=True), "MW-ISO-007"),
        (
            compliant_pod(
                volumes=[
                    {"name": "tls", "secret": {"secretName": "server-tls"}},
                    {"name": "h", "hostPath": {"path": "/"}},
                ]
            ),
            "MW-ISO-008",
        ),
        (_with_container(procMount="Unmasked"), "MW-ISO-015"),
        (_with_container(appArmorProfile={"type": "Unconfined"}), "MW-ISO-015"),
        (
            compliant_pod(
                volumes=[
                    {"name": "tls", "secret": {"secretName": "server-tls"}},
                    {"name": "n", "nfs": {"server": "x", "path": "/"}},
                ]
            ),
            "MW-ISO-016",
        ),
    ],
)
def test_pod_security_rules_fire(pod: dict[str, Any], rule: str) -> None:
    assert rule in rule_ids(decide(pod, ISOLATION))


def test_host_port() -> None:
    pod = compliant_pod()
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 80}]
    assert rule_ids(decide(pod, ISOLATION)) == ["MW-ISO-009"]


def test_init_and_ephemeral_containers_are_checked() -> None:
    pod = compliant_pod()
    pod["spec"]["initContainers"] = [
        {"name": "fetch", "image": "x", "securityContext": {"privileged": True}}
    ]
    pod["spec"]["ephemeralContainers"] = [{"name": "debug", "image": "busybox"}]
    found = decide(pod, ISOLATION).findings
    where = {(f.violation.rule_id, f.violation.container) for f in found}
    assert ("MW-ISO-006", 'init container "fetch"') in where
    assert ("MW-ISO-003", 'ephemeral container "debug"') in where


def test_baseline_level_skips_restricted_checks() -> None:
    p = policy({"isolation": {"podSecurity": "baseline"}})
    pod = compliant_pod(securityContext={})
    assert rule_ids(decide(pod, p)) == []
    assert rule_ids(decide(compliant_pod(hostIPC=True), p)) == ["MW-ISO-007"]


def test_runtime_class() -> None:
    p = policy(
        {"isolation": {"runtimeClassNames": ["gvisor"], "defaultRuntimeClassName": "gvisor"}}
    )
    assert rule_ids(decide(compliant_pod(runtimeClassName="gvisor"), p)) == []
    unset = decide(compliant_pod(), p).findings
    assert [f.violation.rule_id for f in unset] == ["MW-ISO-010"] and unset[0].violation.patchable
    wrong = decide(compliant_pod(runtimeClassName="runc"), p).findings
    assert not wrong[0].violation.patchable  # an explicit choice is denied, not overwritten


GPU = policy({"isolation": {"gpu": {}}})


def _gpu_pod(**spec: Any) -> dict[str, Any]:
    pod = compliant_pod(**spec)
    pod["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    return pod


def test_gpu_pod_must_be_on_the_pool() -> None:
    assert rule_ids(decide(_gpu_pod(), GPU)) == ["MW-ISO-011", "MW-ISO-011"]
    pinned = _gpu_pod(
        nodeSelector={"nvidia.com/gpu.present": "true"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )
    assert rule_ids(decide(pinned, GPU)) == []


def test_gpu_pool_by_required_affinity() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}
                        ]
                    }
                ]
            }
        }
    }
    pod = _gpu_pod(affinity=affinity, tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}])
    assert rule_ids(decide(pod, GPU)) == []


def test_gpu_patch_adds_selector_and_toleration_with_escaped_pointer() -> None:
    p = policy({"isolation": {"gpu": {}}}, mode="Patch")
    obj = _gpu_pod()
    d = decide(obj, p)
    ops = remedies_to_json_patch(
        workload_from_object(obj), [r for f in d.fixes for r in f.violation.remedies]
    )
    assert {
        "op": "add",
        "path": "/spec/nodeSelector",
        "value": {"nvidia.com/gpu.present": "true"},
    } in ops
    patched = apply_json_patch(obj, ops)
    assert rule_ids(decide(patched, p)) == []


def test_non_gpu_pod_may_not_tolerate_gpu_taint() -> None:
    pod = compliant_pod(tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}])
    assert rule_ids(decide(pod, GPU)) == ["MW-ISO-012"]
    wildcard = compliant_pod(tolerations=[{"operator": "Exists"}])
    assert rule_ids(decide(wildcard, GPU)) == ["MW-ISO-012"]
    other = compliant_pod(tolerations=[{"key": "dedicated", "operator": "Equal", "value": "x"}])
    assert rule_ids(decide(other, GPU)) == []


def test_token_automount() -> None:
    assert rule_ids(decide(compliant_pod(automountServiceAccountToken=True), ISOLATION)) == [
        "MW-ISO-013"
    ]
    pod = compliant_pod()
    del pod["spec"]["automountServiceAccountToken"]
    (finding,) = decide(pod, ISOLATION).findings
    assert finding.violation.patchable


def test_default_deny_network_policy() -> None:
    assert rule_ids(decide(compliant_pod(), ISOLATION, default_deny=False)) == ["MW-ISO-014"]
    relaxed = policy({"isolation": {"requireDefaultDenyNetworkPolicy": False}})
    assert rule_ids(decide(compliant_pod(), relaxed, default_deny=False)) == []


def test_patch_mode_fixes_unset_fields_and_the_result_complies() -> None:
    p = policy({"isolation": {}}, mode="Patch")
    bare = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "serving-a"},
        "spec": {
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            }
        },
    }
    d = decide(bare, p)
    assert d.allowed and d.fixes
    ops = remedies_to_json_patch(
        workload_from_object(bare), [r for f in d.fixes for r in f.violation.remedies]
    )
    assert all(op["path"].startswith("/spec/template/spec/") for op in ops)
    assert rule_ids(decide(apply_json_patch(bare, ops), p)) == []


def test_patching_run_as_non_root_says_the_image_must_run_as_a_non_root_user() -> None:
    """runAsNonRoot: true makes an image whose user is root unrunnable (the kubelet refuses
    it); the Patch-mode warning says so at admission (tests/e2e/node/test_patched_pods.py
    shows the kubelet's refusal)."""
    pod = compliant_pod()
    pod["spec"]["securityContext"].pop("runAsNonRoot", None)
    for container in pod["spec"]["containers"]:
        container["securityContext"].pop("runAsNonRoot", None)
    d = decide(pod, policy({"isolation": {}}, mode="Patch"))
    [fix] = [f for f in d.fixes if f.violation.rule_id == "MW-ISO-002"]
    assert "runAsNonRoot: true" in fix.patched()
    assert "must then run as a non-root user" in fix.patched()
    assert "the kubelet refuses to start it" in fix.patched()


def test_patch_mode_denies_explicit_insecure_values() -> None:
    p = policy({"isolation": {}}, mode="Patch")
    d = decide(_with_container(privileged=True, allowPrivilegeEscalation=True), p)
    assert sorted(f.violation.rule_id for f in d.denials) == ["MW-ISO-003", "MW-ISO-006"]


def _network_policy(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": "serving-a"},
        "spec": {"podSelector": {}, **spec},
    }


DEFAULT_DENY = _network_policy("deny", policyTypes=["Ingress"])


def _with_network_policies(*objects: dict[str, Any]) -> StaticFacts:
    f = facts()
    for obj in (DEFAULT_DENY, *objects):
        f.add_object(obj)
    return f


def _judge(pod: dict[str, Any], f: StaticFacts) -> list[str]:
    return rule_ids(evaluate_workload(workload_from_object(pod), f, [ISOLATION]))


@pytest.mark.parametrize(
    "spec",
    [
        {"ingress": [{}]},  # one rule, no `from`: every source
        {"ingress": [{"from": []}]},
        {"ingress": [{"ports": [{"port": 8443}]}]},  # the model's port, to anyone
        {"ingress": [{"from": [{"namespaceSelector": {}}]}]},  # every pod of every namespace
        {"ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {}}]}]},
        {"ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]},
        {"ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "x"}}}]}, {}]},
        {"podSelector": {"matchLabels": {"app": "model"}}, "ingress": [{}]},
        {
            "podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{}],
        },
    ],
)
def test_allow_all_network_policy_undoes_default_deny(spec: dict[str, Any]) -> None:
    opener = _network_policy("allow-all", **spec)
    assert _judge(compliant_pod(), _with_network_policies(opener)) == ["MW-ISO-014"]
    (finding,) = evaluate_workload(
        workload_from_object(compliant_pod()), _with_network_policies(opener), [ISOLATION]
    ).findings
    assert '"allow-all"' in finding.violation.message


@pytest.mark.parametrize(
    "spec",
    [
        {"ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "gw"}}}]}]},
        {"ingress": [{"from": [{"podSelector": {}}]}]},  # this namespace only
        {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]},
        {"ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}]},
        {"podSelector": {"matchLabels": {"app": "other"}}, "ingress": [{}]},  # other pods
        {"policyTypes": ["Egress"], "ingress": [{}], "egress": [{}]},  # ingress not governed
    ],
)
def test_narrow_network_policies_keep_default_deny(spec: dict[str, Any]) -> None:
    opener = _network_policy("narrow", **spec)
    assert _judge(compliant_pod(), _with_network_policies(opener)) == []


def test_deployment_is_judged_by_its_template_labels() -> None:
    opener = _network_policy("open", podSelector={"matchLabels": {"app": "model"}}, ingress=[{}])
    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "serving-a", "labels": {"app": "other"}},
        "spec": {
            "template": {"metadata": {"labels": {"app": "model"}}, "spec": compliant_pod()["spec"]}
        },
    }
    assert _judge(deployment, _with_network_policies(opener)) == ["MW-ISO-014"]


@pytest.mark.parametrize("gpu", [False, True])
def test_node_name_skips_the_gpu_taint(gpu: bool) -> None:
    spec = {
        "nodeName": "gpu-node-1",
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    pod = _gpu_pod(**spec) if gpu else compliant_pod(nodeName="gpu-node-1")
    found = decide(pod, GPU).findings
    assert [f.violation.rule_id for f in found] == ["MW-ISO-012"]
    assert "nodeName" in found[0].violation.message and not found[0].violation.patchable
    assert rule_ids(decide(pod, ISOLATION)) == []  # no GPU pool, no taint to skip


def test_node_name_in_a_template_is_refused_too() -> None:
    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "serving-a"},
        "spec": {"template": {"spec": compliant_pod(nodeName="gpu-node-1")["spec"]}},
    }
    assert rule_ids(decide(deployment, GPU)) == ["MW-ISO-012"]


def test_a_stored_pod_was_bound_by_the_scheduler() -> None:
    pod = compliant_pod(nodeName="node-1")
    pod["metadata"]["resourceVersion"] = "4711"  # the audit's copy, or an UPDATE's
    assert rule_ids(decide(pod, GPU)) == []


TOKENS = policy({"isolation": {"allowedServiceAccountTokenAudiences": ["vault"]}})


def _projected(*tokens: dict[str, Any]) -> dict[str, Any]:
    pod = compliant_pod()
    sources = [{"serviceAccountToken": t} for t in tokens]
    pod["spec"]["volumes"].append({"name": "token", "projected": {"sources": sources}})
    return pod


@pytest.mark.parametrize(
    "token",
    [
        {"path": "token"},  # no audience: the API server's
        {"path": "token", "audience": "https://kubernetes.default.svc.cluster.local"},
        {"path": "token", "audience": "api"},
        {},
    ],
)
def test_projected_api_token_is_a_mounted_token(token: dict[str, Any]) -> None:
    found = decide(_projected(token), TOKENS).findings
    assert [f.violation.rule_id for f in found] == ["MW-ISO-013"]
    assert 'volume "token"' in found[0].violation.message and not found[0].violation.patchable


def test_projected_token_for_an_allowed_audience_is_fine() -> None:
    assert rule_ids(decide(_projected({"path": "t", "audience": "vault"}), TOKENS)) == []
    assert rule_ids(decide(_projected({"path": "t", "audience": "vault"}), ISOLATION)) == [
        "MW-ISO-013"
    ]  # the default list is empty
    relaxed = policy({"isolation": {"forbidServiceAccountTokenAutomount": False}})
    assert rule_ids(decide(_projected({"path": "t"}), relaxed)) == []


def _as_the_api_server_injects_it(pod: dict[str, Any], name: str = "kube-api-access-x7k2p") -> None:
    """What the ServiceAccount admission plugin adds before any webhook sees the pod."""
    pod["spec"].pop("automountServiceAccountToken", None)
    pod["spec"]["volumes"].insert(
        0,
        {
            "name": name,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {
                                        "apiVersion": "v1",
                                        "fieldPath": "metadata.namespace",
                                    },
                                }
                            ]
                        }
                    },
                ],
            },
        },
    )
    for container in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]:
        container.setdefault("volumeMounts", []).append(
            {
                "name": name,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "readOnly": True,
            }
        )


def test_patch_mode_removes_the_token_volume_the_api_server_injected() -> None:
    """Found on a real node: setting the field alone left the injected token mounted, and the
    projected-token check then denied every pod Patch mode was meant to fix."""
    patch = policy({"isolation": {"requireDefaultDenyNetworkPolicy": False}}, mode="Patch")
    pod = compliant_pod(
        initContainers=[
            {
                "name": "setup",
                "image": GOOD_IMAGE,
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ]
    )
    _as_the_api_server_injects_it(pod)
    decision = decide(pod, patch)
    assert rule_ids(decision) == ["MW-ISO-013", "MW-ISO-013"] and decision.allowed
    ops = remedies_to_json_patch(
        workload_from_object(pod), [r for f in decision.fixes for r in f.violation.remedies]
    )
    patched = apply_json_patch(pod, ops)
    assert patched["spec"]["automountServiceAccountToken"] is False
    assert [v["name"] for v in patched["spec"]["volumes"]] == ["tls"]
    for container in [*patched["spec"]["initContainers"], *patched["spec"]["containers"]]:
        assert all(m["name"] != "kube-api-access-x7k2p" for m in container["volumeMounts"])
    assert rule_ids(decide(patched, patch)) == []


def test_a_pod_that_asks_for_the_token_or_projects_one_by_hand_is_not_patched() -> None:
    patch = policy({"isolation": {"requireDefaultDenyNetworkPolicy": False}}, mode="Patch")
    asked = compliant_pod()
    _as_the_api_server_injects_it(asked)
    asked["spec"]["automountServiceAccountToken"] = True
    assert all(not f.violation.patchable for f in decide(asked, patch).findings)
    by_hand = compliant_pod()
    _as_the_api_server_injects_it(by_hand, name="my-token")
    found = [
        f for f in decide(by_hand, patch).findings if 'volume "my-token"' in f.violation.message
    ]
    assert found and not found[0].violation.patchable
