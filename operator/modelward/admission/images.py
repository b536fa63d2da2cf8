"""Registry look-ups for a review, made on the event loop before the review is evaluated.

The engine stays pure: this module decides whether the request's images need looking up (some
policy selecting the workload has an images section that reads the image itself), gathers the
credentials the kubelet would use (the pod's ``imagePullSecrets``, then its ServiceAccount's,
then the operator's own configuration), and asks the ``ImageInspector`` for facts within its
deadline. Whatever happens, it returns facts (errors inside them), never raises, so a registry
outage is judged by ``onLookupFailure`` and never hangs admission.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from modelward.admission.models import AdmittedModels, ModelInventory
from modelward.admission.review import ReviewRequest
from modelward.engine import UnsupportedKind, is_exposure, workload_from_object
from modelward.engine.facts import ImageLookups
from modelward.engine.rules.images import image_references
from modelward.registry.auth import (
    Credentials,
    CredentialStore,
    DockerConfigError,
    parse_docker_config,
)
from modelward.registry.client import RegistryClient, RegistrySettings
from modelward.registry.lookups import ImageInspector, LookupSettings, requests_for
from modelward.settings import Settings
from modelward.state import ClusterState

log = logging.getLogger("modelward.admission.images")

#: Pull secrets read for one review at most (a pod naming more gets the first ones only).
MAX_PULL_SECRETS = 16


class PullSecretReader(Protocol):
    """Reads Secrets and ServiceAccounts (the controller's ``KubeApi``, or a test double).

    Called in a thread: the kubernetes client blocks."""

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def read_service_account(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class ReviewImageLookups:
    """Gathers ``ImageLookups`` for reviews whose policies need them."""

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        state: ClusterState,
        secrets: PullSecretReader | None,
        inventory: ModelInventory | None = None,
    ) -> ReviewImageLookups:
        client = RegistryClient(
            settings=RegistrySettings(
                platform=settings.registry_platform,
                ca_bundles=tuple(str(p) for p in settings.registry_ca_bundles),
            )
        )
        inspector = ImageInspector(
            client=client,
            settings=LookupSettings(deadline=settings.registry_lookup_deadline),
            cluster_reports=state.vulnerability_reports,
        )
        return cls(
            inspector=inspector,
            state=state,
            secrets=secrets if settings.registry_pull_secrets else None,
            operator_credentials=load_operator_credentials(settings.registry_config),
            models=AdmittedModels(state=state, inventory=inventory),
        )

    def __init__(
        self,
        *,
        inspector: ImageInspector,
        state: ClusterState,
        secrets: PullSecretReader | None = None,
        operator_credentials: CredentialStore | None = None,
        models: AdmittedModels | None = None,
    ) -> None:
        self.inspector = inspector
        #: Records OCI models verified at admission in the inventory (admission/models.py).
        self.models = models
        self.state = state
        self.secrets = secrets
        self.operator_credentials = operator_credentials or CredentialStore()

    async def for_review(self, request: ReviewRequest) -> ImageLookups | None:
        """Facts for the request's images, or None when no policy needs any."""
        obj = request.obj
        if request.operation not in ("CREATE", "UPDATE") or obj is None or is_exposure(obj):
            return None
        try:
            workload = workload_from_object(obj, namespace=request.namespace)
        except UnsupportedKind:
            return None
        namespace = self.state.namespace(workload.namespace)
        # On the event loop for every review: only the policies indexed for the namespace.
        policies = [
            p
            for p in self.state.policies_for(namespace)
            if p.applies_to(namespace, workload.labels)
        ]
        requests = requests_for(image_references(workload), policies)
        if not requests:
            return None
        credentials = await self._credentials(workload.namespace, workload.pod_spec)
        return await self.inspector.lookups(requests, credentials=credentials)

    async def _credentials(self, namespace: str, pod_spec: Mapping[str, Any]) -> CredentialStore:
        if self.secrets is None:
            return self.operator_credentials
        try:
            async with asyncio.timeout(self.inspector.settings.deadline / 2):
                pod = await asyncio.to_thread(
                    _pull_secret_credentials, self.secrets, namespace, pod_spec
                )
        except Exception as error:  # a missing RBAC grant, an API server hiccup
            log.warning("could not read pull secrets in %s: %s", namespace, error)
            pod = []
        return CredentialStore.chain(CredentialStore(tuple(pod)), self.operator_credentials)


def _names(raw: Any) -> list[str]:
    if not isinstance(raw, list):
        return []
    return [str(item["name"]) for item in raw if isinstance(item, Mapping) and item.get("name")][
        :MAX_PULL_SECRETS
    ]


def _pull_secret_credentials(
    reader: PullSecretReader, namespace: str, pod_spec: Mapping[str, Any]
) -> list[Mapping[str, Credentials]]:
    """The pod's pull secrets, then its ServiceAccount's, in the kubelet's order."""
    names = _names(pod_spec.get("imagePullSecrets"))
    account = str(pod_spec.get("serviceAccountName") or "default")
    service_account = reader.read_service_account(namespace, account) or {}
    names += [n for n in _names(service_account.get("imagePullSecrets")) if n not in names]
    sources: list[Mapping[str, Credentials]] = []
    for name in names[:MAX_PULL_SECRETS]:
        secret = reader.read_secret(namespace, name)
        if secret is None:
            continue
        data = secret.get("data") or {}
        raw = data.get(".dockerconfigjson") or data.get(".dockercfg")
        if not isinstance(raw, str):
            continue
        try:
            sources.append(
                parse_docker_config(base64.b64decode(raw), source=f"Secret {namespace}/{name}")
            )
        except (DockerConfigError, ValueError) as error:
            log.warning("%s", error)
    return sources


def load_operator_credentials(path: Path | None) -> CredentialStore:
    """The operator's own registry credentials (``--registry-config``); errors name the file."""
    if path is None:
        return CredentialStore()
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DockerConfigError(
            f"--registry-config {path}: cannot be read ({error.strerror}); fix the path"
        ) from None
    return CredentialStore((parse_docker_config(data, source=f"--registry-config {path}"),))
