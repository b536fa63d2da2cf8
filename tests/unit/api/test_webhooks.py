"""The single source of webhook rules against what the engine can judge."""

from __future__ import annotations

from modelward.api.webhooks import webhook_rules
from modelward.engine.rules.transport import EXPOSURE_KINDS
from modelward.engine.workloads import TEMPLATE_POINTERS

#: kind -> (API group, resource) of every kind the engine can judge.
RESOURCES = {
    "Pod": ("", "pods"),
    "Deployment": ("apps", "deployments"),
    "StatefulSet": ("apps", "statefulsets"),
    "DaemonSet": ("apps", "daemonsets"),
    "ReplicaSet": ("apps", "replicasets"),
    "ReplicationController": ("", "replicationcontrollers"),
    "Job": ("batch", "jobs"),
    "CronJob": ("batch", "cronjobs"),
    "Service": ("", "services"),
    "Ingress": ("networking.k8s.io", "ingresses"),
    "HTTPRoute": ("gateway.networking.k8s.io", "httproutes"),
    "GRPCRoute": ("gateway.networking.k8s.io", "grpcroutes"),
    "TLSRoute": ("gateway.networking.k8s.io", "tlsroutes"),
    "TCPRoute": ("gateway.networking.k8s.io", "tcproutes"),
    "UDPRoute": ("gateway.networking.k8s.io", "udproutes"),
}


def _intercepted(*, include_exposures: bool) -> set[tuple[str, str]]:
    return {
        (rule["apiGroups"][0], resource)
        for rule in webhook_rules(include_exposures=include_exposures)
        for resource in rule["resources"]
    }


def test_every_kind_that_creates_pods_is_intercepted_by_both_webhooks() -> None:
    # A kind the engine maps to a pod template but the webhooks do not name is a way around
    # every rule (ReplicationControllers were, once).
    assert set(TEMPLATE_POINTERS) <= set(RESOURCES), "add the new kind's resource here"
    for include_exposures in (True, False):
        intercepted = _intercepted(include_exposures=include_exposures)
        missing = {k for k in TEMPLATE_POINTERS if RESOURCES[k] not in intercepted}
        assert not missing, f"not intercepted: {sorted(missing)}"


def test_every_exposure_is_validated_and_never_mutated() -> None:
    kinds = {kind for _, kind in EXPOSURE_KINDS}
    assert kinds <= set(RESOURCES), "add the new kind's resource here"
    for kind in kinds:
        group, resource = RESOURCES[kind]
        assert (group, resource) in _intercepted(include_exposures=True), kind
        assert (group, resource) not in _intercepted(include_exposures=False), kind
    assert {(g, k) for k, (g, _) in RESOURCES.items() if k in kinds} == set(EXPOSURE_KINDS)
