"""The cluster side of ``modelward evidence``: read-only calls with the ``kubernetes`` client."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

TIMEOUT = 30

#: What ``modelward evidence`` reads, as (apiGroup, resource): the chart's
#: ``<release>-evidence-reader`` ClusterRole grants get and list on exactly these.
READS: tuple[tuple[str, str], ...] = (
    ("modelward.io", "clustermodelpolicies"),
    ("modelward.io", "modelpolicies"),
    ("modelward.io", "modelpolicyexceptions"),
    ("modelward.io", "deployedmodels"),
    ("wgpolicyk8s.io", "policyreports"),
    ("", "pods"),
    ("", "namespaces"),
    ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "rolebindings"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
)


def _raw(method: Any, *args: Any, **kwargs: Any) -> Any:
    """The raw JSON answer (no model objects: they drop unknown fields)."""
    response = method(*args, _preload_content=False, _request_timeout=TIMEOUT, **kwargs)
    return json.loads(response.data)


class KubeReader:
    """``collect.ClusterReader`` over an ``ApiClient``.

    A resource the cluster does not serve (a CRD not installed: no exceptions CRD, no
    PolicyReports) reads as empty; any other refusal propagates, so the pack never silently
    omits what the caller was not allowed to read.
    """

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    def server(self) -> str:
        return str(self.api.configuration.host)

    def version(self) -> str:
        info = _raw(client.VersionApi(self.api).get_code)
        return str(info.get("gitVersion", "unknown"))

    def list_objects(self, group: str, version: str, plural: str) -> list[dict[str, Any]]:
        try:
            listing = _raw(
                client.CustomObjectsApi(self.api).list_cluster_custom_object,
                group,
                version,
                plural,
            )
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise
        return list(listing.get("items") or [])

    def kube_apiserver_pods(self) -> list[dict[str, Any]]:
        """kubeadm-style static kube-apiserver pods, whose flags say how users authenticate;
        a cluster whose control plane is not visible (managed offerings) has none."""
        try:
            pods = _raw(
                client.CoreV1Api(self.api).list_namespaced_pod,
                "kube-system",
                label_selector="component=kube-apiserver",
            )
        except ApiException as exc:
            if exc.status in (403, 404):
                return []
            raise
        return list(pods.get("items") or [])

    def whoami(self) -> dict[str, Any] | None:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        try:
            answer = _raw(client.AuthenticationV1Api(self.api).create_self_subject_review, body)
        except ApiException as exc:
            if exc.status in (403, 404):
                return None
            raise
        return answer if isinstance(answer, dict) else None
