"""kopf handlers: thin translations of watch events into ``observe_object`` calls.

Handlers are registered on a registry built here (no import-time registration), and business
logic never sees kopf's keyword arguments.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import kopf

from modelward.api.schema import GROUP, VERSION
from modelward.controller.keys import KeyReader
from modelward.controller.observe import observe_object, policy_key
from modelward.controller.resync import StateResync
from modelward.controller.scope import WebhookScope
from modelward.controller.status import PolicyStatusWriter
from modelward.state import ClusterState

WATCHED: tuple[tuple[str, str, str, str], ...] = (
    # (kind, group, version, plural)
    ("ClusterModelPolicy", GROUP, VERSION, "clustermodelpolicies"),
    ("ModelPolicy", GROUP, VERSION, "modelpolicies"),
    ("Namespace", "", "v1", "namespaces"),
    ("NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies"),
    ("Service", "", "v1", "services"),
    ("ModelPolicyException", GROUP, VERSION, "modelpolicyexceptions"),
    ("Role", "rbac.authorization.k8s.io", "v1", "roles"),
    ("ClusterRole", "rbac.authorization.k8s.io", "v1", "clusterroles"),
    ("RoleBinding", "rbac.authorization.k8s.io", "v1", "rolebindings"),
    ("ClusterRoleBinding", "rbac.authorization.k8s.io", "v1", "clusterrolebindings"),
    ("StorageClass", "storage.k8s.io", "v1", "storageclasses"),
    ("PersistentVolumeClaim", "", "v1", "persistentvolumeclaims"),
    # The Trivy Operator's reports (MW-IMG-021/022). Optional: without its CRD, kopf logs that
    # the resource is unknown and the gate reads cosign attestations only. Not re-listed at
    # start-up (readiness must not wait for an optional CRD); kopf's own list fills it.
    ("VulnerabilityReport", "aquasecurity.github.io", "v1alpha1", "vulnerabilityreports"),
)


def in_cluster_server(info: kopf.ConnectionInfo, environ: Mapping[str, str]) -> kopf.ConnectionInfo:
    """The API server address the kubelet gave the pod, as client-go's in-cluster config uses.

    kopf's service-account login always dials ``kubernetes.default.svc``, which needs cluster
    DNS; ``KUBERNETES_SERVICE_HOST``/``_PORT`` work without it (and are what the kubernetes
    client, used by the rest of modelward, dials), so watches and admission state never
    disagree about which server they talk to.
    """
    host = environ.get("KUBERNETES_SERVICE_HOST")
    port = environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        return info
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return dataclasses.replace(info, server=f"https://{host}:{port}")


def build_registry(
    *,
    state: ClusterState,
    status: PolicyStatusWriter,
    keys: KeyReader,
    resync: StateResync | None = None,
    scope: WebhookScope | None = None,
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        in_cluster = kopf.login_with_service_account(**kwargs)
        if in_cluster is not None:
            return in_cluster_server(in_cluster, os.environ)
        return kopf.login_with_kubeconfig(**kwargs)

    def watch(kind: str, group: str, version: str, plural: str) -> None:
        async def on_event(*, event: kopf.RawEvent, **_: Any) -> None:
            obj = event.get("object") or {}
            deleted = event.get("type") == "DELETED"
            material = None
            if kind == "ClusterModelPolicy":
                key = policy_key(kind, obj)
                if deleted:
                    keys.referencing.pop(key, None)
                else:
                    material = await asyncio.to_thread(keys.fetch, obj)
                    keys.remember(key, obj, material)
            if event.get("type") is None and resync is not None:
                # kopf (re-)listed this kind: the list never says what was deleted meanwhile.
                resync.request(kind)
            entry = observe_object(state, kind, obj, deleted=deleted, keys=material)
            if scope is not None and kind == "Namespace":
                scope.request()
            if kind in ("ClusterModelPolicy", "ModelPolicy") and (entry is not None or deleted):
                if scope is not None:
                    # Ready is reported once the webhooks call modelward wherever it selects.
                    await scope.settle()
                await status.sync(policy_key(kind, obj), None if deleted else obj.get("status"))

        kopf.on.event(group, version, plural, id=f"watch-{plural}", registry=registry)(on_event)

    for kind, group, version, plural in WATCHED:
        watch(kind, group, version, plural)

    # Pods are not watched through kopf: it would keep a memory and a worker per pod in the
    # cluster. controller/pods.py watches them, keeping nothing per pod.

    return registry


def operator_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # our Events are our own; kopf's log events are noise
    settings.scanning.disabled = True  # no CRD/namespace scanning: fewer RBAC verbs
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    return settings
