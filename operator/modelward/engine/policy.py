"""Policies compiled from their custom resources into frozen values the rules read.

``parse_policy`` validates against the same OpenAPI schema the API server enforces (plus the
CEL rules, re-checked here, and unknown fields, which the API server would silently prune) so
that a policy file checked offline fails exactly where it would fail in a cluster, and a policy
the cluster accepted but that cannot be applied gets a precise ``PolicyError`` for its status.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import jsonschema

from modelward.api.schema import API_VERSION, openapi_schema
from modelward.engine.decision import Mode, PolicyRef
from modelward.engine.facts import NamespaceFacts
from modelward.engine.selectors import LabelSelector, SelectorError, matches_any_glob
from modelward.errors import PolicyError

POLICY_KINDS = ("ClusterModelPolicy", "ModelPolicy")


@dataclass(frozen=True)
class Selection:
    """match or exclude: every criterion given must hold (an empty selection holds always)."""

    namespaces: tuple[str, ...] | None = None
    namespace_selector: LabelSelector | None = None
    pod_selector: LabelSelector | None = None

    @property
    def empty(self) -> bool:
        return (
            self.namespaces is None
            and self.namespace_selector is None
            and (self.pod_selector is None)
        )

    def matches(self, namespace: NamespaceFacts, pod_labels: Mapping[str, str]) -> bool:
        if self.namespaces is not None and not matches_any_glob(namespace.name, self.namespaces):
            return False
        if self.namespace_selector is not None and not self.namespace_selector.matches(
            namespace.selector_labels()
        ):
            return False
        return self.pod_selector is None or self.pod_selector.matches(pod_labels)


@dataclass(frozen=True)
class GpuPool:
    resources: tuple[str, ...]
    node_selector: Mapping[str, str]
    toleration: Mapping[str, str]


@dataclass(frozen=True)
class IsolationConfig:
    mode: Mode
    forbidden_namespaces: tuple[str, ...]
    pod_security: str
    runtime_class_names: tuple[str, ...]
    default_runtime_class_name: str | None
    gpu: GpuPool | None
    forbid_token_automount: bool
    require_default_deny: bool
    #: Projected service account token audiences that are not the API server's.
    allowed_token_audiences: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImagesConfig:
    mode: Mode
    require_digest: bool
    allowed_registries: tuple[str, ...]
    forbidden_tags: tuple[str, ...]


@dataclass(frozen=True)
class IngressConfig:
    require_tls: bool
    rate_limit_annotations: tuple[str, ...]


@dataclass(frozen=True)
class TransportConfig:
    mode: Mode
    require_tls: bool
    meshes: tuple[str, ...]
    tls_secret_names: tuple[str, ...]
    ingress: IngressConfig


@dataclass(frozen=True)
class SecretsConfig:
    mode: Mode
    forbid_credentials: bool
    forbid_system_prompts: bool
    allowed_env_names: tuple[str, ...]


@dataclass(frozen=True)
class TrustedSigner:
    """A public key or CA certificate, inline (``pem``) or in a ConfigMap/Secret key."""

    name: str
    kind: str  # "publicKey" or "caCertificate"
    pem: str | None = None
    config_map: tuple[str, str] | None = None  # (name, key)
    secret: tuple[str, str] | None = None


@dataclass(frozen=True)
class IntegrityConfig:
    mode: Mode
    require_signature: bool
    require_read_only: bool
    signers: tuple[TrustedSigner, ...]
    scan: bool
    allow_shards: bool
    allowed_ignore_paths: tuple[str, ...]
    verifier_image: str | None
    #: Which policy injects this verifier: one verifier container per policy, by name.
    policy_label: str = ""
    container_name: str = "modelward-verify"


@dataclass(frozen=True)
class Policy:
    """A compiled ClusterModelPolicy or ModelPolicy."""

    ref: PolicyRef
    mode: Mode
    match: Selection
    exclude: Selection
    generation: int = 0
    description: str = ""
    isolation: IsolationConfig | None = None
    images: ImagesConfig | None = None
    transport: TransportConfig | None = None
    secrets: SecretsConfig | None = None
    integrity: IntegrityConfig | None = None

    def applies_to(self, namespace: NamespaceFacts, pod_labels: Mapping[str, str]) -> bool:
        """Namespaced policies apply only inside their own namespace."""
        if self.ref.namespace is not None and namespace.name != self.ref.namespace:
            return False
        if not self.match.matches(namespace, pod_labels):
            return False
        return self.exclude.empty or not self.exclude.matches(namespace, pod_labels)


@cache
def _strict_schema(kind: str) -> dict[str, Any]:
    """The CRD schema with unknown fields forbidden (the API server would prune them)."""
    schema = copy.deepcopy(openapi_schema(kind))

    def close(node: dict[str, Any]) -> None:
        props = node.get("properties")
        if isinstance(props, dict):
            if "additionalProperties" not in node and node is not schema:
                node["additionalProperties"] = False
            for child in props.values():
                close(child)
        items = node.get("items")
        if isinstance(items, dict):
            close(items)

    close(schema["properties"]["spec"])
    return schema


def _validate_schema(obj: Mapping[str, Any], kind: str, name: str) -> None:
    validator = jsonschema.Draft202012Validator(_strict_schema(kind))
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        field_path = ".".join(str(p) for p in first.absolute_path) or "(root)"
        message = first.message
        if first.validator == "additionalProperties":
            message = f"unknown field: {first.message}"
        raise PolicyError(
            message,
            policy=f"{kind} {name}",
            field=field_path,
            fix="see docs/policies.md for the fields each section accepts",
        )


def _selection(raw: Mapping[str, Any] | None, where: str, policy: str) -> Selection:
    if not raw:
        return Selection()
    try:
        ns_sel = raw.get("namespaceSelector")
        pod_sel = raw.get("podSelector")
        return Selection(
            namespaces=tuple(raw["namespaces"]) if raw.get("namespaces") is not None else None,
            namespace_selector=LabelSelector.parse(ns_sel) if ns_sel is not None else None,
            pod_selector=LabelSelector.parse(pod_sel) if pod_sel is not None else None,
        )
    except SelectorError as exc:
        raise PolicyError(
            str(exc),
            policy=policy,
            field=where,
            fix="use In/NotIn with values, Exists/DoesNotExist without",
        ) from exc


def _mode(raw: Any, default: Mode) -> Mode:
    return Mode(raw) if raw else default


def _isolation(raw: Mapping[str, Any], mode: Mode) -> IsolationConfig:
    gpu_raw = raw.get("gpu")
    gpu = None
    if gpu_raw is not None:
        toleration = dict(gpu_raw.get("toleration") or {"key": "nvidia.com/gpu"})
        toleration.setdefault("operator", "Exists")
        toleration.setdefault("effect", "NoSchedule")
        gpu = GpuPool(
            resources=tuple(gpu_raw.get("resources") or ("nvidia.com/gpu",)),
            node_selector=dict(gpu_raw.get("nodeSelector") or {"nvidia.com/gpu.present": "true"}),
            toleration=toleration,
        )
    return IsolationConfig(
        mode=_mode(raw.get("mode"), mode),
        forbidden_namespaces=tuple(raw.get("forbiddenNamespaces", ["default"])),
        pod_security=str(raw.get("podSecurity", "restricted")),
        runtime_class_names=tuple(raw.get("runtimeClassNames") or ()),
        default_runtime_class_name=raw.get("defaultRuntimeClassName"),
        gpu=gpu,
        forbid_token_automount=bool(raw.get("forbidServiceAccountTokenAutomount", True)),
        require_default_deny=bool(raw.get("requireDefaultDenyNetworkPolicy", True)),
        allowed_token_audiences=tuple(raw.get("allowedServiceAccountTokenAudiences") or ()),
    )


def _images(raw: Mapping[str, Any], mode: Mode) -> ImagesConfig:
    return ImagesConfig(
        mode=_mode(raw.get("mode"), mode),
        require_digest=bool(raw.get("requireDigest", True)),
        allowed_registries=tuple(raw.get("allowedRegistries") or ()),
        forbidden_tags=tuple(raw.get("forbiddenTags", ["latest"])),
    )


DEFAULT_RATE_LIMIT_ANNOTATIONS = (
    "nginx.ingress.kubernetes.io/limit-rps",
    "nginx.ingress.kubernetes.io/limit-rpm",
    "nginx.ingress.kubernetes.io/limit-connections",
    "traefik.ingress.kubernetes.io/router.middlewares",
    "haproxy.org/rate-limit-requests",
)


def _transport(raw: Mapping[str, Any], mode: Mode) -> TransportConfig:
    ingress = raw.get("ingress") or {}
    return TransportConfig(
        mode=_mode(raw.get("mode"), mode),
        require_tls=bool(raw.get("requireTLS", True)),
        meshes=tuple(raw.get("meshes", ["istio", "linkerd"])),
        tls_secret_names=tuple(raw.get("tlsSecretNames", ["*-tls", "*-tls-*", "tls-*"])),
        ingress=IngressConfig(
            require_tls=bool(ingress.get("requireTLS", True)),
            rate_limit_annotations=tuple(
                ingress.get("rateLimitAnnotations", DEFAULT_RATE_LIMIT_ANNOTATIONS)
            ),
        ),
    )


def _secrets(raw: Mapping[str, Any], mode: Mode) -> SecretsConfig:
    return SecretsConfig(
        mode=_mode(raw.get("mode"), mode),
        forbid_credentials=bool(raw.get("forbidLiteralCredentials", True)),
        forbid_system_prompts=bool(raw.get("forbidLiteralSystemPrompts", True)),
        allowed_env_names=tuple(raw.get("allowedEnvNames") or ()),
    )


def _signer(raw: Mapping[str, Any]) -> TrustedSigner:
    def ref(value: Any) -> tuple[str, str] | None:
        return (str(value["name"]), str(value["key"])) if isinstance(value, Mapping) else None

    if "publicKey" in raw:
        return TrustedSigner(str(raw["name"]), "publicKey", pem=str(raw["publicKey"]))
    if "caCertificate" in raw:
        return TrustedSigner(str(raw["name"]), "caCertificate", pem=str(raw["caCertificate"]))
    return TrustedSigner(
        str(raw["name"]),
        str(raw.get("type", "publicKey")),
        config_map=ref(raw.get("configMapKeyRef")),
        secret=ref(raw.get("secretKeyRef")),
    )


def _integrity(raw: Mapping[str, Any], mode: Mode, label: str, ref: PolicyRef) -> IntegrityConfig:
    where = "spec.integrity"
    signers = []
    for index, item in enumerate(raw.get("trustedSigners") or []):
        sources = [
            k
            for k in ("publicKey", "caCertificate", "configMapKeyRef", "secretKeyRef")
            if k in item
        ]
        if len(sources) != 1:
            raise PolicyError(
                "a trusted signer needs exactly one of publicKey, caCertificate, "
                "configMapKeyRef, secretKeyRef",
                policy=label,
                field=f"{where}.trustedSigners.{index}",
                fix="give each signer one source of its PEM",
            )
        signers.append(_signer(item))
    require = bool(raw.get("requireSignature", True))
    verifier = (raw.get("verifier") or {}).get("image")
    if require and (not signers or not verifier):
        raise PolicyError(
            "requireSignature needs trustedSigners and verifier.image",
            policy=label,
            field=where,
            fix="list the signers you trust and the modelward image to verify with",
        )
    return IntegrityConfig(
        mode=_mode(raw.get("mode"), mode),
        require_signature=require,
        require_read_only=bool(raw.get("requireReadOnlyModel", True)),
        signers=tuple(signers),
        scan=bool(raw.get("scan", True)),
        allow_shards=bool(raw.get("allowShards", False)),
        allowed_ignore_paths=tuple(raw.get("allowedIgnorePaths") or ()),
        verifier_image=str(verifier) if verifier else None,
        policy_label=str(ref),
        container_name="modelward-verify-"
        + hashlib.sha256(f"{ref.kind}/{ref.namespace}/{ref.name}".encode()).hexdigest()[:8],
    )


def parse_policy(obj: Mapping[str, Any]) -> Policy:
    """Compile a policy object; ``PolicyError`` says which field is wrong and how to fix it."""
    kind = str(obj.get("kind", ""))
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "<unnamed>")
    label = f"{kind or 'policy'} {name}"
    if kind not in POLICY_KINDS:
        raise PolicyError(
            f"kind {kind!r} is not a modelward policy",
            policy=label,
            fix=f"use kind {' or '.join(POLICY_KINDS)}",
        )
    if obj.get("apiVersion") != API_VERSION:
        raise PolicyError(
            f"apiVersion {obj.get('apiVersion')!r} is not served",
            policy=label,
            field="apiVersion",
            fix=f"use apiVersion: {API_VERSION}",
        )
    _validate_schema(obj, kind, name)
    spec: Mapping[str, Any] = obj["spec"]
    namespaced = kind == "ModelPolicy"
    ref = PolicyRef(
        kind=kind,
        name=name,
        namespace=str(meta.get("namespace") or "default") if namespaced else None,
    )
    match_raw = spec.get("match") or {}
    if not namespaced and "namespaces" not in match_raw and "namespaceSelector" not in match_raw:
        raise PolicyError(
            "match must select namespaces",
            policy=label,
            field="spec.match",
            fix="add match.namespaces or match.namespaceSelector; podSelector can only narrow",
        )
    mode = Mode(spec.get("mode", "Enforce"))
    isolation = _isolation(spec["isolation"], mode) if "isolation" in spec else None
    if (
        isolation
        and isolation.default_runtime_class_name
        and (isolation.default_runtime_class_name not in isolation.runtime_class_names)
    ):
        raise PolicyError(
            "defaultRuntimeClassName must be one of runtimeClassNames",
            policy=label,
            field="spec.isolation.defaultRuntimeClassName",
            fix="add it to runtimeClassNames or remove it",
        )
    return Policy(
        ref=ref,
        mode=mode,
        match=_selection(match_raw, "spec.match", label),
        exclude=_selection(spec.get("exclude"), "spec.exclude", label),
        generation=int(meta.get("generation") or 0),
        description=str(spec.get("description", "")),
        isolation=isolation,
        images=_images(spec["images"], mode) if "images" in spec else None,
        transport=_transport(spec["transport"], mode) if "transport" in spec else None,
        secrets=_secrets(spec["secrets"], mode) if "secrets" in spec else None,
        integrity=_integrity(spec["integrity"], mode, label, ref) if "integrity" in spec else None,
    )
