"""Policies compiled from their custom resources into frozen values the rules read.

``parse_policy`` validates against the same OpenAPI schema the API server enforces (plus the
CEL rules, re-checked here, and unknown fields, which the API server would silently prune) so
that a policy file checked offline fails exactly where it would fail in a cluster, and a policy
the cluster accepted but that cannot be applied gets a precise ``PolicyError`` for its status.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

import jsonschema
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelward.api.schema import (
    API_VERSION,
    GLOBAL_NAME_PATTERN,
    SCAN_PROFILES,
    openapi_schema,
)
from modelward.engine.decision import Mode, PolicyRef
from modelward.engine.facts import NamespaceFacts
from modelward.engine.image_trust import SOURCES, signer_id
from modelward.engine.rbac import PERMISSIONS, RbacSubject
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

    def _namespace_matches(self, namespace: NamespaceFacts) -> bool:
        return Selection(self.namespaces, self.namespace_selector).matches(namespace, {})

    def could_match(self, namespace: NamespaceFacts, known_labels: Mapping[str, str]) -> bool:
        """Whether some pod carrying at least ``known_labels`` in ``namespace`` matches."""
        return self._namespace_matches(namespace) and (
            self.pod_selector is None or self.pod_selector.could_match_superset_of(known_labels)
        )

    def must_match(self, namespace: NamespaceFacts, known_labels: Mapping[str, str]) -> bool:
        """Whether every pod carrying at least ``known_labels`` in ``namespace`` matches."""
        return self._namespace_matches(namespace) and (
            self.pod_selector is None or self.pod_selector.matches_every_superset_of(known_labels)
        )


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
    #: Image trust (docs/images.md): signatures, vulnerability gate, OCI models at admission.
    signatures: ImageSignaturesConfig | None = None
    vulnerabilities: VulnerabilitiesConfig | None = None
    models: OciModelsConfig | None = None
    #: Rules that read the image from its registry (docs/images.md); unset means off.
    require_non_root_user: bool = False
    max_size_mib: int | None = None
    max_layers: int | None = None
    allowed_base_images: tuple[str, ...] = ()
    #: Absolute paths and bin-directory name globs that may not exist in the image.
    forbidden_contents: ForbiddenContents | None = None
    max_age_days: int | None = None
    #: "Deny" or "Warn": what a failed look-up does (MW-IMG-010).
    on_lookup_failure: str = "Deny"
    insecure_registries: tuple[str, ...] = ()

    @property
    def reads_images(self) -> bool:
        """Whether a rule of this section reads the image itself (MW-IMG-004..009, and the
        trust rules MW-IMG-020..023: signatures, reports, model signatures), so every
        image needs a look-up and a failed one is MW-IMG-010."""
        return bool(
            self.require_non_root_user
            or self.max_size_mib is not None
            or self.max_layers is not None
            or self.allowed_base_images
            or self.forbidden_contents is not None
            or self.max_age_days is not None
            or self.needs_trust_lookups
        )

    @property
    def pins_tags(self) -> bool:
        """Whether MW-IMG-001 may pin a tag to its digest (Patch mode): unpinned images need a
        look-up, and one that fails leaves MW-IMG-001 without a fix (denied, as before)."""
        return self.require_digest and self.mode is Mode.PATCH

    @property
    def needs_lookups(self) -> bool:
        return self.reads_images or self.pins_tags

    @property
    def needs_trust_lookups(self) -> bool:
        """Whether a rule of this section reads signatures, attestations or model referrers."""
        return (
            self.signatures is not None
            or self.vulnerabilities is not None
            or (self.models is not None and self.models.verify_at_admission)
        )


def _signer_ids(signers: tuple[TrustedSigner, ...]) -> frozenset[str]:
    return frozenset(signer_id(s.kind, s.pem or "") for s in signers if s.pem)


@dataclass(frozen=True)
class ImageSignaturesConfig:
    """MW-IMG-020: a cosign signature over the image digest by one of ``signers``."""

    signers: tuple[TrustedSigner, ...]

    @property
    def signer_ids(self) -> frozenset[str]:
        return _signer_ids(self.signers)


@dataclass(frozen=True)
class IgnoredVulnerability:
    id: str
    #: POSIX seconds; the exception ends then.
    expires: float
    reason: str = ""


@dataclass(frozen=True)
class VulnerabilitiesConfig:
    """MW-IMG-021 (severity gate) and MW-IMG-022 (a report must exist)."""

    max_severity: str
    ignore: tuple[IgnoredVulnerability, ...]
    on_missing_report: str  # "Deny" | "Warn" | "Allow"
    sources: tuple[str, ...]
    attestors: tuple[TrustedSigner, ...]

    @property
    def attestor_ids(self) -> frozenset[str]:
        return _signer_ids(self.attestors)


@dataclass(frozen=True)
class OciModelsConfig:
    """MW-IMG-023: OCI models verified at admission against their model signature."""

    verify_at_admission: bool
    signers: tuple[TrustedSigner, ...]
    modelcar_containers: tuple[str, ...] = ("modelcar",)

    @property
    def signer_ids(self) -> frozenset[str]:
        return _signer_ids(self.signers)


#: Directories a shell or package manager is run from (merged /usr or not).
BIN_DIRECTORIES = ("bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "usr/local/sbin")
SHELL_NAMES = ("sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "busybox")
PACKAGE_MANAGER_NAMES = (
    "apt",
    "apt-get",
    "dpkg",
    "apk",
    "dnf",
    "microdnf",
    "yum",
    "rpm",
    "zypper",
    "pacman",
    "pip",
    "pip3",
    "pip3.*",
    "pip2*",
)


@dataclass(frozen=True)
class ForbiddenContents:
    """What MW-IMG-008 looks for: names in the bin directories (globs), and exact paths.

    Paths are relative to the root, without a leading '/', as they appear in layer tars.
    """

    names: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> ForbiddenContents | None:
        names = (SHELL_NAMES if raw.get("shells") else ()) + (
            PACKAGE_MANAGER_NAMES if raw.get("packageManagers") else ()
        )
        paths = tuple(sorted({str(p).strip("/") for p in raw.get("paths") or () if p}))
        return cls(names, paths) if names or paths else None


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
    allow_external_services: bool = False
    #: "namespace/name" (any listener) or "namespace/name/listener", exact.
    allowed_gateways: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SecretsConfig:
    mode: Mode
    forbid_credentials: bool
    forbid_system_prompts: bool
    allowed_env_names: tuple[str, ...]


@dataclass(frozen=True)
class JobFunction:
    """Subjects that may hold some sensitive permissions (``spec.access.jobFunctions[]``)."""

    name: str
    groups: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    #: "namespace/name" globs; a bare "name" means that ServiceAccount in the judged namespace.
    service_accounts: tuple[str, ...] = ()
    permissions: frozenset[str] = frozenset()

    def includes(self, subject: RbacSubject, namespace: str) -> bool:
        if subject.kind == "Group":
            return matches_any_glob(subject.name, self.groups)
        if subject.kind == "User":
            return matches_any_glob(subject.name, self.users)
        qualified = f"{subject.namespace}/{subject.name}"
        return any(
            matches_any_glob(qualified, (sa,))
            if "/" in sa
            else (subject.namespace == namespace and matches_any_glob(subject.name, (sa,)))
            for sa in self.service_accounts
        )


@dataclass(frozen=True)
class AccessConfig:
    mode: Mode
    job_functions: tuple[JobFunction, ...]

    def allowing(self, subject: RbacSubject, permission: str, namespace: str) -> str | None:
        """The first job function that lets ``subject`` hold ``permission``, or None."""
        for job in self.job_functions:
            if permission in job.permissions and job.includes(subject, namespace):
                return job.name
        return None


@dataclass(frozen=True)
class StorageConfig:
    mode: Mode
    allowed_classes: tuple[str, ...]
    #: parameter -> required value; "*" requires the parameter to be present and non-empty.
    required_parameters: Mapping[str, str]
    #: "All" PVC-backed volumes, or only the declared model volume ("ModelVolumes").
    volumes: str = "All"


@dataclass(frozen=True)
class TrustedSigner:
    """A public key or CA certificate, inline (``pem``) or in a ConfigMap/Secret key.

    A ModelPolicy's references name objects in its own namespace, which the verifier reads as
    a projected volume. A ClusterModelPolicy's references name objects in modelward's own
    namespace (``namespace``): the operator reads them itself and they travel like inline keys
    (``pem`` filled in), because a volume could only come from the pod's namespace, which the
    tenant writes.
    """

    name: str
    kind: str  # "publicKey" or "caCertificate"
    pem: str | None = None
    config_map: tuple[str, str] | None = None  # (name, key)
    secret: tuple[str, str] | None = None
    namespace: str | None = None

    @property
    def reference(self) -> KeyReference | None:
        """Where a referenced PEM lives, or None for an inline one."""
        if self.config_map is not None:
            return KeyReference("ConfigMap", self.namespace, *self.config_map)
        if self.secret is not None:
            return KeyReference("Secret", self.namespace, *self.secret)
        return None


@dataclass(frozen=True)
class KeyReference:
    """A PEM in a ConfigMap or Secret key; ``namespace`` None means the pod's own."""

    kind: str  # "ConfigMap" or "Secret"
    namespace: str | None
    name: str
    key: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name} key {self.key}"


class KeySource(Protocol):
    """Key material a ClusterModelPolicy may reference: modelward's own namespace only.

    The controller reads the referenced ConfigMaps and Secrets (off the event loop) and hands
    the values to ``parse_policy`` through this protocol, so that parsing stays pure.
    """

    @property
    def namespace(self) -> str:
        """The one namespace cluster policies may read keys from (modelward's)."""
        ...

    def read(self, ref: KeyReference) -> str | None:
        """The PEM at ``ref``, or None if the object or key does not exist."""
        ...


@dataclass(frozen=True)
class StaticKeySource:
    """Key material known in advance: the controller's prefetch, the CLI's manifests, tests."""

    namespace: str
    values: Mapping[tuple[str, str, str, str], str] = field(default_factory=dict)

    def read(self, ref: KeyReference) -> str | None:
        return self.values.get((ref.kind, ref.namespace or "", ref.name, ref.key))


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
    #: Every model-like volume a long-running container mounts must be the verified model,
    #: or declared (``modelward.io/unverified-volumes``) and read-only (MW-INT-005).
    require_verified_volumes: bool = True
    #: "All": every selected pod must declare a model; "ModelVolumes": only pods that declare
    #: one or mount a model-like volume are model pods (what a pod is, not what it is labelled).
    model_pods: str = "All"
    #: Trusted-type profiles and further pickle globals the verifier's scan accepts.
    scan_profiles: tuple[str, ...] = ()
    allowed_globals: tuple[str, ...] = ()


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
    #: Groups whose ModelPolicyExceptions count for this policy (``spec.exceptions.
    #: allowedGroups``); None: any exception RBAC let someone create.
    exception_groups: tuple[str, ...] | None = None
    access: AccessConfig | None = None
    storage: StorageConfig | None = None

    def governs_namespace(self, namespace: NamespaceFacts) -> bool:
        """Whether the policy selects (some pods of) ``namespace``: the access rules govern
        who may reach a namespace, whatever its pods' labels."""
        return self.may_apply_to_pods_labelled(namespace, {})

    def applies_to(self, namespace: NamespaceFacts, pod_labels: Mapping[str, str]) -> bool:
        """Namespaced policies apply only inside their own namespace."""
        if self.ref.namespace is not None and namespace.name != self.ref.namespace:
            return False
        if not self.match.matches(namespace, pod_labels):
            return False
        return self.exclude.empty or not self.exclude.matches(namespace, pod_labels)

    def may_apply_to_pods_labelled(
        self, namespace: NamespaceFacts, known_labels: Mapping[str, str]
    ) -> bool:
        """Whether the policy may govern pods known only to carry ``known_labels``.

        What an Ingress, a Service or a route exposes is known by a selector (a subset of the
        pods' labels) or not at all (``{}``): the policy applies unless no such pod could match
        it, and an exclusion counts only when it holds for every such pod.
        """
        if self.ref.namespace is not None and namespace.name != self.ref.namespace:
            return False
        if not self.match.could_match(namespace, known_labels):
            return False
        return self.exclude.empty or not self.exclude.must_match(namespace, known_labels)


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
        require_non_root_user=bool(raw.get("requireNonRootUser", False)),
        max_size_mib=_optional_int(raw.get("maxSizeMiB")),
        max_layers=_optional_int(raw.get("maxLayers")),
        allowed_base_images=tuple(raw.get("allowedBaseImages") or ()),
        forbidden_contents=ForbiddenContents.parse(raw.get("forbiddenContents") or {}),
        max_age_days=_optional_int(raw.get("maxAgeDays")),
        on_lookup_failure=str(raw.get("onLookupFailure") or "Deny"),
        insecure_registries=tuple(str(r).lower() for r in raw.get("insecureRegistries") or ()),
    )


def _image_signers(
    items: Any, *, where: str, label: str, ref: PolicyRef, keys: KeySource | None
) -> tuple[TrustedSigner, ...]:
    """Signers the operator itself verifies with, so their PEM must be known to it: inline,
    or (ClusterModelPolicy) referenced in modelward's namespace. A ModelPolicy's references
    live in the tenant's namespace, whose Secrets modelward does not read."""
    signers = []
    for index, item in enumerate(items or []):
        field_path = f"{where}.{index}"
        sources = [k for k in SIGNER_SOURCES if k in item]
        if len(sources) != 1:
            raise PolicyError(
                "a trusted signer needs exactly one of publicKey, caCertificate, "
                "configMapKeyRef, secretKeyRef",
                policy=label,
                field=field_path,
                fix="give each signer one source of its PEM",
            )
        signer = _signer(item, where=field_path, label=label, ref=ref, keys=keys)
        if not signer.pem:
            raise PolicyError(
                f"signer {signer.name!r} is referenced in the policy's namespace, which "
                "modelward does not read: image signatures are verified by the operator",
                policy=label,
                field=field_path,
                fix="give the PEM inline (publicKey or caCertificate)",
                reason="UntrustedKeySource",
            )
        signers.append(signer)
    return tuple(signers)


def _expiry(value: Any, *, field_path: str, label: str) -> float:
    import datetime

    try:
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise PolicyError(
            f"expires {value!r} is not an RFC 3339 time",
            policy=label,
            field=field_path,
            fix="write it like 2027-01-31T00:00:00Z",
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _with_image_trust(
    images: ImagesConfig,
    spec: Mapping[str, Any],
    *,
    label: str,
    ref: PolicyRef,
    keys: KeySource | None,
) -> ImagesConfig:
    """The images section's trust parts (signatures, vulnerabilities, models)."""
    raw = spec["images"]
    where = "spec.images"
    signatures = None
    if "signatures" in raw:
        signers = _image_signers(
            raw["signatures"].get("trustedSigners"),
            where=f"{where}.signatures.trustedSigners",
            label=label,
            ref=ref,
            keys=keys,
        )
        if not signers:
            raise PolicyError(
                "signatures needs at least one trusted signer",
                policy=label,
                field=f"{where}.signatures.trustedSigners",
                fix="list the public keys or CAs whose image signatures you accept",
            )
        signatures = ImageSignaturesConfig(signers)
    vulnerabilities = None
    if "vulnerabilities" in raw:
        vraw = raw["vulnerabilities"]
        attestors = _image_signers(
            vraw.get("attestors"),
            where=f"{where}.vulnerabilities.attestors",
            label=label,
            ref=ref,
            keys=keys,
        ) or (signatures.signers if signatures else ())
        sources = tuple(vraw.get("sources") or SOURCES)
        vulnerabilities = VulnerabilitiesConfig(
            max_severity=str(vraw.get("maxSeverity", "HIGH")),
            ignore=tuple(
                IgnoredVulnerability(
                    id=str(item["id"]),
                    expires=_expiry(
                        item.get("expires"),
                        field_path=f"{where}.vulnerabilities.ignore.{i}.expires",
                        label=label,
                    ),
                    reason=str(item.get("reason", "")),
                )
                for i, item in enumerate(vraw.get("ignore") or [])
            ),
            on_missing_report=str(vraw.get("onMissingReport", "Deny")),
            sources=sources,
            attestors=attestors,
        )
    models = None
    if "models" in raw:
        mraw = raw["models"]
        signers = _image_signers(
            mraw.get("trustedSigners"),
            where=f"{where}.models.trustedSigners",
            label=label,
            ref=ref,
            keys=keys,
        )
        if not signers:
            integrity = spec.get("integrity") or {}
            signers = _image_signers(
                integrity.get("trustedSigners"),
                where="spec.integrity.trustedSigners",
                label=label,
                ref=ref,
                keys=keys,
            )
        verify = bool(mraw.get("verifyAtAdmission", True))
        if verify and not signers:
            raise PolicyError(
                "models.verifyAtAdmission needs trusted signers",
                policy=label,
                field=f"{where}.models",
                fix="list models.trustedSigners, or integrity.trustedSigners with inline keys",
            )
        models = OciModelsConfig(
            verify_at_admission=verify,
            signers=signers,
            modelcar_containers=tuple(mraw.get("modelcarContainers") or ("modelcar",)),
        )
    return dataclasses.replace(
        images, signatures=signatures, vulnerabilities=vulnerabilities, models=models
    )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


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
        tls_secret_names=tuple(raw.get("tlsSecretNames", ["*"])),
        ingress=IngressConfig(
            require_tls=bool(ingress.get("requireTLS", True)),
            rate_limit_annotations=tuple(
                ingress.get("rateLimitAnnotations", DEFAULT_RATE_LIMIT_ANNOTATIONS)
            ),
        ),
        allow_external_services=bool(raw.get("allowExternalServices", False)),
        allowed_gateways=frozenset(str(g) for g in raw.get("allowedGateways") or ()),
    )


def _secrets(raw: Mapping[str, Any], mode: Mode) -> SecretsConfig:
    return SecretsConfig(
        mode=_mode(raw.get("mode"), mode),
        forbid_credentials=bool(raw.get("forbidLiteralCredentials", True)),
        forbid_system_prompts=bool(raw.get("forbidLiteralSystemPrompts", True)),
        allowed_env_names=tuple(raw.get("allowedEnvNames") or ()),
    )


def _access(raw: Mapping[str, Any], mode: Mode) -> AccessConfig:
    jobs = []
    for item in raw.get("jobFunctions") or []:
        jobs.append(
            JobFunction(
                name=str(item.get("name", "")),
                groups=tuple(str(g) for g in item.get("groups") or ()),
                users=tuple(str(u) for u in item.get("users") or ()),
                service_accounts=tuple(str(s) for s in item.get("serviceAccounts") or ()),
                permissions=frozenset(item.get("permissions") or PERMISSIONS),
            )
        )
    return AccessConfig(mode=_mode(raw.get("mode"), mode), job_functions=tuple(jobs))


def _storage(raw: Mapping[str, Any], mode: Mode, label: str) -> StorageConfig:
    allowed = tuple(str(c) for c in raw.get("allowedStorageClasses") or ())
    required = {str(k): str(v) for k, v in (raw.get("requiredParameters") or {}).items()}
    if not allowed and not required:
        raise PolicyError(
            "storage allows no StorageClass: neither allowedStorageClasses nor "
            "requiredParameters is set",
            policy=label,
            field="spec.storage",
            fix="list the encrypted StorageClasses, or the parameters that make a class "
            'encrypted (e.g. encrypted: "true")',
        )
    return StorageConfig(
        mode=_mode(raw.get("mode"), mode),
        allowed_classes=allowed,
        required_parameters=required,
        volumes=str(raw.get("volumes", "All")),
    )


SIGNER_SOURCES = ("publicKey", "caCertificate", "configMapKeyRef", "secretKeyRef")
SUPPORTED_CURVES = ("secp256r1", "secp384r1", "secp521r1")
MAX_PEM_LENGTH = 16384


def check_pem(kind: str, pem: str) -> str | None:
    """Why ``pem`` is not a usable public key or CA certificate, or None if it is.

    The verifier would only fail on it later, inside every pod; refusing the policy says so
    once, where its author looks (the CRD checks the PEM's shape; this parses it).
    """
    if len(pem) > MAX_PEM_LENGTH:
        return f"the PEM is {len(pem)} characters long (at most {MAX_PEM_LENGTH})"
    data = pem.encode("utf-8", "replace")
    try:
        if kind == "publicKey":
            key = serialization.load_pem_public_key(data)
            if not isinstance(key, ec.EllipticCurvePublicKey):
                return f"it is a {type(key).__name__.lstrip('_')}, not an ECDSA public key"
            if key.curve.name not in SUPPORTED_CURVES:
                return f"curve {key.curve.name} is not P-256, P-384 or P-521"
        else:
            if not x509.load_pem_x509_certificates(data):
                return "it holds no certificate"
    except ValueError as exc:
        what = "PEM public key" if kind == "publicKey" else "PEM certificate"
        return f"it is not a {what} ({str(exc).splitlines()[0][:120]})"
    return None


def _signer(
    raw: Mapping[str, Any],
    *,
    where: str,
    label: str,
    ref: PolicyRef,
    keys: KeySource | None,
) -> TrustedSigner:
    def key_ref(value: Any) -> tuple[str, str] | None:
        return (str(value["name"]), str(value["key"])) if isinstance(value, Mapping) else None

    name = str(raw["name"])
    if "publicKey" in raw or "caCertificate" in raw:
        kind = "publicKey" if "publicKey" in raw else "caCertificate"
        signer = TrustedSigner(name, kind, pem=str(raw[kind]))
        source_field = f"{where}.{kind}"
    else:
        source = "configMapKeyRef" if "configMapKeyRef" in raw else "secretKeyRef"
        namespace = (raw.get(source) or {}).get("namespace")
        signer = TrustedSigner(
            name,
            str(raw.get("type", "publicKey")),
            config_map=key_ref(raw.get("configMapKeyRef")),
            secret=key_ref(raw.get("secretKeyRef")),
            namespace=str(namespace) if namespace else None,
        )
        source_field = f"{where}.{source}"
        if ref.namespace is not None:
            # A ModelPolicy's keys live in its own namespace, which the verifier volume reads.
            if namespace and namespace != ref.namespace:
                raise PolicyError(
                    f"a ModelPolicy reads keys from its own namespace, not {namespace!r}",
                    policy=label,
                    field=f"{source_field}.namespace",
                    fix="remove namespace (the key must be in the policy's namespace)",
                    reason="UntrustedKeySource",
                )
            return signer
        signer = _resolve_cluster_key(signer, field_path=source_field, label=label, keys=keys)
    problem = check_pem(signer.kind, signer.pem or "")
    if problem is not None:
        raise PolicyError(
            f"trusted signer {name!r}: {problem}",
            policy=label,
            field=source_field,
            fix="give the signer's PEM public key (-----BEGIN PUBLIC KEY-----, ECDSA "
            "P-256/P-384/P-521) or CA certificate (-----BEGIN CERTIFICATE-----)",
            reason="InvalidKey",
        )
    return signer


def _resolve_cluster_key(
    signer: TrustedSigner, *, field_path: str, label: str, keys: KeySource | None
) -> TrustedSigner:
    """A ClusterModelPolicy's referenced key, read from modelward's namespace and inlined.

    A reference into the pod's namespace would let the pod's author replace the key their
    model is checked against; only modelward's own namespace (or an inline PEM) is trusted.
    """
    ref = signer.reference
    assert ref is not None
    if ref.namespace is None:
        raise PolicyError(
            "a ClusterModelPolicy's key reference needs a namespace: without one the key "
            "would be read from the pod's namespace, which its author can write",
            policy=label,
            field=f"{field_path}.namespace",
            fix="set namespace to modelward's own namespace, or give the PEM inline",
            reason="UntrustedKeySource",
        )
    if keys is None:
        raise PolicyError(
            f"cannot read {ref}: no key material was given",
            policy=label,
            field=field_path,
            fix="give the ConfigMap or Secret with the policies (modelward check), or run "
            "the operator, which reads it from its own namespace",
            reason="KeyNotFound",
        )
    if keys.namespace and ref.namespace != keys.namespace:
        raise PolicyError(
            f"{ref} is outside modelward's namespace {keys.namespace!r}; tenants may be "
            "able to write it",
            policy=label,
            field=f"{field_path}.namespace",
            fix=f"keep cluster policy keys in namespace {keys.namespace}, or give the PEM inline",
            reason="UntrustedKeySource",
        )
    pem = keys.read(ref)
    if pem is None:
        raise PolicyError(
            f"{ref} does not exist",
            policy=label,
            field=field_path,
            fix=f"create it, holding the PEM under key {ref.key!r}",
            reason="KeyNotFound",
        )
    return TrustedSigner(
        signer.name,
        signer.kind,
        pem=pem,
        config_map=signer.config_map,
        secret=signer.secret,
        namespace=signer.namespace,
    )


def _integrity(
    raw: Mapping[str, Any], mode: Mode, label: str, ref: PolicyRef, keys: KeySource | None
) -> IntegrityConfig:
    where = "spec.integrity"
    signers = []
    for index, item in enumerate(raw.get("trustedSigners") or []):
        sources = [k for k in SIGNER_SOURCES if k in item]
        if len(sources) != 1:
            raise PolicyError(
                "a trusted signer needs exactly one of publicKey, caCertificate, "
                "configMapKeyRef, secretKeyRef",
                policy=label,
                field=f"{where}.trustedSigners.{index}",
                fix="give each signer one source of its PEM",
            )
        signers.append(
            _signer(item, where=f"{where}.trustedSigners.{index}", label=label, ref=ref, keys=keys)
        )
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
        container_name=verifier_container_name(ref),
        require_verified_volumes=bool(raw.get("requireVerifiedModelVolumes", True)),
        model_pods=str(raw.get("modelPods", "All")),
        scan_profiles=_scan_profiles(raw.get("scanProfiles"), label=label, where=where),
        allowed_globals=_allowed_globals(raw.get("allowedGlobals"), label=label, where=where),
    )


def _scan_profiles(raw: Any, *, label: str, where: str) -> tuple[str, ...]:
    """The CRD schema holds this too; ``modelward check`` reads manifests without it."""
    names = tuple(str(n) for n in raw or ())
    for name in names:
        if name not in SCAN_PROFILES:
            raise PolicyError(
                f"unknown scan profile {name!r}",
                policy=label,
                field=f"{where}.scanProfiles",
                fix=f"choose from {', '.join(SCAN_PROFILES)}",
            )
    return tuple(dict.fromkeys(names))


def _allowed_globals(raw: Any, *, label: str, where: str) -> tuple[str, ...]:
    names = tuple(str(n) for n in raw or ())
    for name in names:
        if len(name) > 256 or not re.fullmatch(GLOBAL_NAME_PATTERN, name):
            raise PolicyError(
                f"{name[:80]!r} is not a pickle global name",
                policy=label,
                field=f"{where}.allowedGlobals",
                fix="write module.Name (exact) or module.* (every name in a module and below)",
            )
    return names


def key_references(obj: Mapping[str, Any]) -> tuple[KeyReference, ...]:
    """The ConfigMap and Secret keys a policy object's signers reference (before parsing), so
    that the controller can read them before it compiles the policy."""
    spec = obj.get("spec")
    integrity = spec.get("integrity") if isinstance(spec, Mapping) else None
    signers = integrity.get("trustedSigners") if isinstance(integrity, Mapping) else None
    refs = []
    for item in signers if isinstance(signers, list) else []:
        for field_name, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            raw = item.get(field_name) if isinstance(item, Mapping) else None
            if isinstance(raw, Mapping) and raw.get("name") and raw.get("key"):
                namespace = raw.get("namespace")
                refs.append(
                    KeyReference(
                        kind,
                        str(namespace) if namespace else None,
                        str(raw["name"]),
                        str(raw["key"]),
                    )
                )
    return tuple(refs)


VERIFIER_PREFIX = "modelward-verify-"


def verifier_container_name(ref: PolicyRef) -> str:
    """The verifier's container name: 160 bits of the policy's identity.

    A ModelPolicy author chooses their policy's name; with a short hash they could choose one
    whose verifier shares a cluster policy's container (and key annotations) and so fight over
    its content. 40 hex characters keep the name, and ``<name>-keys``, within 63 characters.
    """
    identity = f"{ref.kind}/{ref.namespace or ''}/{ref.name}".encode()
    return VERIFIER_PREFIX + hashlib.sha256(identity).hexdigest()[:40]


def parse_policy(obj: Mapping[str, Any], *, keys: KeySource | None = None) -> Policy:
    """Compile a policy object; ``PolicyError`` says which field is wrong and how to fix it.

    ``keys`` holds the ConfigMap and Secret keys a ClusterModelPolicy references (read from
    modelward's namespace by the controller); without it such a policy cannot be compiled.
    """
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
    if not namespaced and (spec.get("exclude") or {}).get("podSelector") is not None:
        raise PolicyError(
            "exclude.podSelector is not allowed in a ClusterModelPolicy: a pod's labels are "
            "written by the pod's author, who could use it to opt out",
            policy=label,
            field="spec.exclude.podSelector",
            fix="exclude by namespace (exclude.namespaces or exclude.namespaceSelector)",
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
        images=(
            _with_image_trust(_images(spec["images"], mode), spec, label=label, ref=ref, keys=keys)
            if "images" in spec
            else None
        ),
        transport=_transport(spec["transport"], mode) if "transport" in spec else None,
        secrets=_secrets(spec["secrets"], mode) if "secrets" in spec else None,
        integrity=(
            _integrity(spec["integrity"], mode, label, ref, keys) if "integrity" in spec else None
        ),
        exception_groups=_exception_groups(spec.get("exceptions")),
        access=_access(spec["access"], mode) if "access" in spec else None,
        storage=_storage(spec["storage"], mode, label) if "storage" in spec else None,
    )


def _exception_groups(raw: Mapping[str, Any] | None) -> tuple[str, ...] | None:
    if not raw or raw.get("allowedGroups") is None:
        return None
    return tuple(str(g) for g in raw["allowedGroups"])
