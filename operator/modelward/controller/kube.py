"""The few Kubernetes API calls modelward makes itself (kopf does the watching).

Synchronous ``kubernetes`` client calls, run in threads by the async callers; every call has a
timeout so that nothing on the operator's loop can hang on the API server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from modelward.api.schema import GROUP, VERSION

TIMEOUT = 10.0

POLICY_PLURALS = {"ClusterModelPolicy": "clustermodelpolicies", "ModelPolicy": "modelpolicies"}


#: Written by ``kubectl apply``: a whole copy of the object, read by nothing in modelward.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def compact(item: dict[str, Any]) -> dict[str, Any]:
    """A listed object without what no fact is built from: ``managedFields`` and kubectl's
    last-applied copy, often most of the bytes of a namespace or Service. Keeping them for
    a whole start-up listing cost ~40 MiB at 4,000 namespaces and Services."""
    metadata = item.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)
        annotations = metadata.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(LAST_APPLIED, None)
    return item


class KubeApi:
    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        if api_client is None:
            if os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            else:
                config.load_kube_config()  # type: ignore[no-untyped-call]
            api_client = client.ApiClient()
        self.api = api_client
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.networking = client.NetworkingV1Api(api_client)
        self.admissionregistration = client.AdmissionregistrationV1Api(api_client)
        self.rbac = client.RbacAuthorizationV1Api(api_client)
        self.storage = client.StorageV1Api(api_client)

    def _json(self, method: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Call a list/get method and return the raw JSON (no model objects)."""
        response = method(*args, _preload_content=False, _request_timeout=TIMEOUT, **kwargs)
        data: dict[str, Any] = json.loads(response.data)
        return data

    def list_policies(self, kind: str) -> list[dict[str, Any]]:
        items = self._json(
            self.custom.list_cluster_custom_object, GROUP, VERSION, POLICY_PLURALS[kind]
        )["items"]
        for item in items:
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", f"{GROUP}/{VERSION}")
        return list(items)

    def list_namespaces(self) -> list[dict[str, Any]]:
        return list(self._json(self.core.list_namespace)["items"])

    def list_network_policies(self) -> list[dict[str, Any]]:
        return list(self._json(self.networking.list_network_policy_for_all_namespaces)["items"])

    def list_services(self) -> list[dict[str, Any]]:
        return list(self._json(self.core.list_service_for_all_namespaces)["items"])

    def list_kind(self, kind: str, page_size: int = 500) -> tuple[list[dict[str, Any]], str | None]:
        """Every object of a watched kind, page by page, and the list's resourceVersion.

        The pages of one list are one consistent snapshot (the continue token pins the
        version of the first page), which is what lets the state replace a kind as a whole.
        """
        methods: dict[str, tuple[Any, ...]] = {
            "ClusterModelPolicy": (
                self.custom.list_cluster_custom_object,
                GROUP,
                VERSION,
                POLICY_PLURALS["ClusterModelPolicy"],
            ),
            "ModelPolicy": (
                self.custom.list_cluster_custom_object,
                GROUP,
                VERSION,
                POLICY_PLURALS["ModelPolicy"],
            ),
            "Namespace": (self.core.list_namespace,),
            "NetworkPolicy": (self.networking.list_network_policy_for_all_namespaces,),
            "Service": (self.core.list_service_for_all_namespaces,),
            "ModelPolicyException": (
                self.custom.list_cluster_custom_object,
                GROUP,
                VERSION,
                "modelpolicyexceptions",
            ),
            "Role": (self.rbac.list_role_for_all_namespaces,),
            "ClusterRole": (self.rbac.list_cluster_role,),
            "RoleBinding": (self.rbac.list_role_binding_for_all_namespaces,),
            "ClusterRoleBinding": (self.rbac.list_cluster_role_binding,),
            "StorageClass": (self.storage.list_storage_class,),
            "PersistentVolumeClaim": (self.core.list_persistent_volume_claim_for_all_namespaces,),
        }
        if kind not in methods:
            raise ValueError(f"{kind} is not a kind modelward lists")
        method, *args = methods[kind]
        items: list[dict[str, Any]] = []
        token: str | None = None
        version: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": page_size}
            if token:
                kwargs["_continue"] = token
            data = self._json(method, *args, **kwargs)
            metadata = data.get("metadata") or {}
            version = version or metadata.get("resourceVersion")
            items.extend(compact(item) for item in data.get("items") or [])
            del data  # one page of whole objects at a time, never the whole list
            token = metadata.get("continue")
            if not token:
                return items, version

    def list_pods_page(self, *, token: str | None, limit: int) -> dict[str, Any]:
        """One page of every namespace's pods, as raw JSON (``controller/pods.py``)."""
        kwargs: dict[str, Any] = {"limit": limit}
        if token:
            kwargs["_continue"] = token
        return self._json(self.core.list_pod_for_all_namespaces, **kwargs)

    def watch_pods(
        self, *, resource_version: str, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        """Pod watch events from ``resource_version``, parsed one line at a time."""
        response: Any = self.core.list_pod_for_all_namespaces(
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout_seconds,
            _preload_content=False,
            _request_timeout=(TIMEOUT, timeout_seconds + 30),
        )
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if line:
                    event: dict[str, Any] = json.loads(line)
                    yield event
        finally:
            response.release_conn()

    def iter_pods(self, page_size: int = 500) -> Iterator[dict[str, Any]]:
        """Every pod, one page at a time (the audit holds one page in memory, not the cluster)."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": page_size}
            if token:
                kwargs["_continue"] = token
            data = self._json(self.core.list_pod_for_all_namespaces, **kwargs)
            yield from data.get("items") or []
            token = (data.get("metadata") or {}).get("continue")
            if not token:
                return

    def _json_or_none(self, method: Any, *args: Any) -> dict[str, Any] | None:
        try:
            return self._json(method, *args)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _read_custom(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> dict[str, Any] | None:
        return self._json_or_none(
            self.custom.get_namespaced_custom_object, group, version, namespace, plural, name
        )

    def _create_or_replace(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        body: Mapping[str, Any],
        current: Mapping[str, Any] | None,
    ) -> None:
        """Create ``body``, or replace ``current`` with it (conditional on its resourceVersion)."""
        args = (group, version, namespace, plural)
        if current is None:
            self.custom.create_namespaced_custom_object(*args, dict(body), _request_timeout=TIMEOUT)
            return
        metadata = {**body["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}
        self.custom.replace_namespaced_custom_object(
            *args, metadata["name"], {**body, "metadata": metadata}, _request_timeout=TIMEOUT
        )

    def put_namespaced_object(
        self, group: str, version: str, plural: str, namespace: str, body: Mapping[str, Any]
    ) -> None:
        """Create a custom object, or replace it if it exists (a report we own)."""
        current = self._read_custom(group, version, namespace, plural, body["metadata"]["name"])
        self._create_or_replace(group, version, namespace, plural, body, current)

    def patch_policy_status(
        self, kind: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> None:
        body = {"status": dict(status)}
        plural = POLICY_PLURALS[kind]
        if namespace:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, body, _request_timeout=TIMEOUT
            )
        else:
            self.custom.patch_cluster_custom_object_status(
                GROUP, VERSION, plural, name, body, _request_timeout=TIMEOUT
            )

    def patch_exception_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            "modelpolicyexceptions",
            name,
            {"status": dict(status)},
            _request_timeout=TIMEOUT,
        )

    def list_deployed_models(self, namespace: str | None = None) -> list[dict[str, Any]]:
        if namespace:
            data = self._json(
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                "deployedmodels",
            )
        else:
            data = self._json(
                self.custom.list_cluster_custom_object, GROUP, VERSION, "deployedmodels"
            )
        return list(data["items"])

    def upsert_deployed_model(self, namespace: str, update: Mapping[str, Any]) -> bool:
        """Create or merge the DeployedModel for ``update["digest"]`` (optimistic retries).

        False when the object already lists ``update["record"]``: that verifier result was
        recorded before (by this replica, an earlier leader, or a catch-up), so nothing is
        written and the caller posts no Event either."""
        digest = str(update["digest"])
        name = digest.replace(":", "-")
        for _ in range(5):
            current = self._read_custom(GROUP, VERSION, namespace, "deployedmodels", name)
            if already_recorded(current, str(update.get("record") or "")):
                return False
            body = merge_deployed_model(current, update, name=name, namespace=namespace)
            try:
                self._create_or_replace(GROUP, VERSION, namespace, "deployedmodels", body, current)
                return True
            except ApiException as exc:
                if exc.status != 409:
                    raise
        raise RuntimeError(f"DeployedModel {namespace}/{name}: too many conflicting writers")

    def create_event(self, namespace: str, event: Mapping[str, Any]) -> None:
        body: Any = dict(event)
        self.core.create_namespaced_event(namespace, body, _request_timeout=TIMEOUT)

    # -- the serving certificate (controller/certificates.py) --

    def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._json_or_none(self.core.read_namespaced_config_map, name, namespace)

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._json_or_none(self.core.read_namespaced_secret, name, namespace)

    def read_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        """For its imagePullSecrets (registry look-ups, admission/images.py)."""
        return self._json_or_none(self.core.read_namespaced_service_account, name, namespace)

    def create_secret(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._json(self.core.create_namespaced_secret, namespace, dict(body))

    def replace_secret(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._json(self.core.replace_namespaced_secret, name, namespace, dict(body))

    def watch_secret(
        self, namespace: str, name: str, *, timeout_seconds: int
    ) -> Iterator[tuple[str, str | None]]:
        """(event type, resourceVersion) of one Secret, by name (RBAC: resourceNames)."""
        stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
            self.core.list_namespaced_secret,
            namespace,
            field_selector=f"metadata.name={name}",
            timeout_seconds=timeout_seconds,
            _request_timeout=timeout_seconds + 30,
        )
        for event in stream:
            obj = event.get("object")
            metadata = getattr(obj, "metadata", None)
            yield str(event.get("type")), getattr(metadata, "resource_version", None)

    def read_webhook_configuration(self, kind: str, name: str) -> dict[str, Any] | None:
        api = self.admissionregistration
        read = {
            "ValidatingWebhookConfiguration": api.read_validating_webhook_configuration,
            "MutatingWebhookConfiguration": api.read_mutating_webhook_configuration,
        }[kind]
        return self._json_or_none(read, name)

    def patch_webhook_configuration(
        self, kind: str, name: str, patch: Sequence[Mapping[str, Any]]
    ) -> None:
        api = self.admissionregistration
        method = {
            "ValidatingWebhookConfiguration": api.patch_validating_webhook_configuration,
            "MutatingWebhookConfiguration": api.patch_mutating_webhook_configuration,
        }[kind]
        method(
            name,
            [dict(op) for op in patch],
            _content_type="application/json-patch+json",
            _request_timeout=TIMEOUT,
        )


def iter_all(kube: KubeApi) -> Iterator[tuple[str, dict[str, Any]]]:
    """Everything the state needs at start-up, as (kind, object)."""
    for kind in POLICY_PLURALS:
        for item in kube.list_policies(kind):
            yield kind, item
    for item in kube.list_namespaces():
        yield "Namespace", item
    for item in kube.list_network_policies():
        yield "NetworkPolicy", item
    for item in kube.list_services():
        yield "Service", item


MAX_WORKLOADS = 64
#: Policies that verified a model: the most recent ones, each once.
MAX_POLICIES = 16
#: Verifier results (pod UID/container/result) already counted: enough to cover every pod of
#: a large Deployment, so that a new leader's catch-up does not count a result twice.
MAX_RECORDED = 512


def already_recorded(current: Mapping[str, Any] | None, record: str) -> bool:
    """True when the DeployedModel ``current`` already counted the verifier result ``record``."""
    recorded = ((current or {}).get("spec") or {}).get("recorded") or []
    return bool(record) and record in recorded


def _bounded_append(items: list[Any], item: Any, limit: int) -> list[Any]:
    """``items`` with ``item`` moved to (or added at) the end, keeping the ``limit`` newest."""
    kept = [i for i in items if i != item]
    kept.append(item)
    return kept[-limit:]


def merge_deployed_model(
    current: Mapping[str, Any] | None, update: Mapping[str, Any], *, name: str, namespace: str
) -> dict[str, Any]:
    """The DeployedModel after one more verification: counts, first/last seen, workloads.

    Only an admitted verification names the signer (``update["signer"]`` is empty otherwise):
    a rejection never replaces the signer of record. Lists stay bounded whatever the input.
    """
    spec: dict[str, Any] = dict((current or {}).get("spec") or {})
    spec.update(
        digest=update["digest"],
        files=update["files"],
        scan=update["scan"],
        lastResult=update["lastResult"],
        lastSeen=update["lastSeen"],
    )
    if update.get("signer"):
        spec["signer"] = update["signer"]
    spec.setdefault("firstSeen", update["lastSeen"])
    spec["verifications"] = int(spec.get("verifications") or 0) + 1
    policies = [p for p in spec.get("policies") or [] if isinstance(p, str)]
    if update.get("policy"):
        policies = _bounded_append(policies, update["policy"], MAX_POLICIES)
    spec["policies"] = policies[-MAX_POLICIES:]
    if update.get("record"):
        recorded = [r for r in spec.get("recorded") or [] if isinstance(r, str)]
        spec["recorded"] = _bounded_append(recorded, update["record"], MAX_RECORDED)
    workloads = spec.setdefault("workloads", [])
    if update["workload"] not in workloads and len(workloads) < MAX_WORKLOADS:
        workloads.append(update["workload"])
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/managed-by": "modelward"},
    }
    if current is not None:
        metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DeployedModel",
        "metadata": metadata,
        "spec": spec,
    }
