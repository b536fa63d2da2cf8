"""The one source of truth for modelward's CRDs.

``manifests/crds/`` and ``charts/modelward/files/crds/`` are generated from this module
(``modelward crds --write``), a test keeps them in sync, and ``modelward check`` validates
offline policy files against the same OpenAPI schema the API server enforces.

Design notes for the API (see docs/policies.md for the user's view):

- ``match`` must select by namespace (``namespaces`` or ``namespaceSelector``); ``podSelector``
  can only narrow that selection, never stand alone, because a pod's labels are written by
  whoever writes the pod (a CEL rule enforces it for ClusterModelPolicy).
- Every section is optional; a section that is present is enabled with safe defaults, and may
  override the policy's ``mode``.
"""

from __future__ import annotations

from typing import Any

GROUP = "modelward.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

MODES = ("Enforce", "Patch", "Audit")
POD_SECURITY_LEVELS = ("restricted", "baseline", "privileged")

Schema = dict[str, Any]


#: The scanner's trusted-type profiles (``integrity.scanning.profiles``; a test keeps both equal).
SCAN_PROFILES: tuple[str, ...] = ("sklearn", "xgboost", "lightgbm")
#: A pickle global: dotted identifiers, optionally ending in ``.*``.
GLOBAL_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(\.\*)?$"


def _string(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def _boolean(description: str, default: bool) -> Schema:
    return {"type": "boolean", "description": description, "default": default}


def _strings(description: str, *, default: list[str] | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "array", "description": description, "items": {"type": "string"}}
    if default is not None:
        schema["default"] = default
    schema.update(extra)
    return schema


def _object(description: str, properties: dict[str, Schema], **extra: Any) -> Schema:
    return {"type": "object", "description": description, "properties": properties, **extra}


def _mode_override(section: str) -> Schema:
    return _string(
        f"Overrides spec.mode for the {section} rules.",
        enum=list(MODES),
    )


def label_selector(description: str) -> Schema:
    """The schema of a metav1.LabelSelector."""
    requirement = _object(
        "A label selector requirement.",
        {
            "key": _string("The label key."),
            "operator": _string(
                "How the key relates to the values.",
                enum=["In", "NotIn", "Exists", "DoesNotExist"],
            ),
            "values": _strings("Values for In and NotIn; empty for Exists and DoesNotExist."),
        },
        required=["key", "operator"],
    )
    return _object(
        description,
        {
            "matchLabels": {
                "type": "object",
                "description": "Labels that must all be present with these values.",
                "additionalProperties": {"type": "string"},
            },
            "matchExpressions": {
                "type": "array",
                "description": "Requirements that must all hold.",
                "items": requirement,
            },
        },
        **{"x-kubernetes-map-type": "atomic"},
    )


def _selection(description: str) -> Schema:
    return _object(
        description,
        {
            "namespaces": _strings(
                "Namespace names; shell-style globs such as 'serving-*' are allowed.",
                maxItems=256,
            ),
            "namespaceSelector": label_selector("Selects namespaces by their labels."),
            "podSelector": label_selector(
                "Narrows the selection to pods (or pod templates) with these labels. A pod's "
                "labels are written by whoever writes the pod: a pod that leaves a label out "
                "is not selected, so use this only for rules a pod's author may opt out of. "
                "It cannot widen a namespace selection, and a ClusterModelPolicy may not use it "
                "under exclude. To cover model pods whatever their labels, select their "
                "namespaces and set integrity.modelPods: ModelVolumes."
            ),
        },
    )


def _toleration() -> Schema:
    return _object(
        "A toleration, as in a pod spec.",
        {
            "key": _string("Taint key."),
            "operator": _string("Exists or Equal.", enum=["Exists", "Equal"], default="Exists"),
            "value": _string("Taint value, for Equal."),
            "effect": _string(
                "Taint effect.", enum=["NoSchedule", "PreferNoSchedule", "NoExecute"]
            ),
        },
        required=["key"],
    )


def _isolation() -> Schema:
    return _object(
        "Hosting environment: namespaces, Pod Security, sandboxed runtimes, dedicated GPU "
        "nodes, service account tokens and network policy (rules MW-ISO-*).",
        {
            "mode": _mode_override("isolation"),
            "forbiddenNamespaces": _strings(
                "Namespaces in which model-serving pods may not run (MW-ISO-001).",
                default=["default"],
            ),
            "podSecurity": _string(
                "Pod Security Standard level the pods must meet: 'restricted' checks "
                "runAsNonRoot, allowPrivilegeEscalation, capabilities and seccomp "
                "(MW-ISO-002..005) on top of 'baseline' (privileged, host namespaces, "
                "hostPath, hostPort: MW-ISO-006..009); 'privileged' checks nothing.",
                enum=list(POD_SECURITY_LEVELS),
                default="restricted",
            ),
            "runtimeClassNames": _strings(
                "If set, pods must use one of these runtimeClassNames, e.g. gvisor or kata "
                "(MW-ISO-010)."
            ),
            "defaultRuntimeClassName": _string(
                "In Patch mode, the runtimeClassName set on pods that have none."
            ),
            "gpu": _object(
                "Dedicated GPU nodes (MW-ISO-011, MW-ISO-012). A pod requesting a GPU "
                "resource must carry the pool's node selector and toleration; a pod "
                "requesting none may not tolerate the GPU taint; no pod may set "
                "spec.nodeName, which skips the scheduler and so the taint.",
                {
                    "resources": _strings(
                        "Extended resources that count as GPUs.", default=["nvidia.com/gpu"]
                    ),
                    "nodeSelector": {
                        "type": "object",
                        "description": "Node labels of the GPU pool, required on GPU pods "
                        "(as nodeSelector or a required node affinity).",
                        "additionalProperties": {"type": "string"},
                        "default": {"nvidia.com/gpu.present": "true"},
                    },
                    "toleration": _toleration(),
                },
            ),
            "forbidServiceAccountTokenAutomount": _boolean(
                "Pods must set automountServiceAccountToken: false and project no service "
                "account token the API server accepts (MW-ISO-013).",
                True,
            ),
            "allowedServiceAccountTokenAudiences": _strings(
                "Audiences of projected service account tokens that MW-ISO-013 allows, e.g. "
                "a secrets manager's ('vault'). Never list the API server's own audience: "
                "a token without an audience, or with any audience not listed, is an API "
                "token.",
                default=[],
                maxItems=32,
            ),
            "requireDefaultDenyNetworkPolicy": _boolean(
                "The namespace must hold a NetworkPolicy that selects every pod and allows "
                "no ingress by default (MW-ISO-014).",
                True,
            ),
        },
        **{
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.defaultRuntimeClassName) || "
                    "(has(self.runtimeClassNames) && "
                    "self.defaultRuntimeClassName in self.runtimeClassNames)",
                    "message": "defaultRuntimeClassName must be one of runtimeClassNames",
                }
            ]
        },
    )


def _images() -> Schema:
    return _object(
        "Container images (rules MW-IMG-*).",
        {
            "mode": _mode_override("images"),
            "requireDigest": _boolean(
                "Every image must be pinned by digest, e.g. repo@sha256:... (MW-IMG-001).",
                True,
            ),
            "allowedRegistries": _strings(
                "If set, images must come from these registries or repositories (MW-IMG-002): "
                "a host ('ghcr.io', '*.example.com'), or a host and a repository path "
                "('registry.example.com/models/*'). Host and path are matched apart; '*' "
                "never crosses a '/', a whole '**' component spans any depth."
            ),
            "forbiddenTags": _strings(
                "Tags that may not be used; an image with neither tag nor digest counts as "
                "'latest' (MW-IMG-003).",
                default=["latest"],
            ),
            **_image_lookup_fields(),
        },
    )


def _signer_list(description: str, *, namespaced: bool) -> Schema:
    return {
        "type": "array",
        "description": description,
        "items": _signer(namespaced=namespaced),
        "maxItems": 16,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
    }


def _with_image_trust(images: Schema, *, namespaced: bool) -> Schema:
    """The images section, plus what makes an image trusted: its signature, its
    vulnerability reports, and (for OCI models) its model signature (docs/images.md)."""
    signatures = _object(
        "Images must carry a cosign signature over their digest from one of these signers "
        "(MW-IMG-020; registry look-up of the .sig tag and the OCI referrers). Key-based "
        "signatures and certificates chaining to a listed CA are accepted; keyless "
        "(Fulcio + Rekor) signatures are not.",
        {
            "trustedSigners": _signer_list(
                "Signers whose image signatures are accepted (any one suffices). Keys are "
                "inline, or (ClusterModelPolicy) referenced in modelward's namespace.",
                namespaced=namespaced,
            ),
        },
        required=["trustedSigners"],
    )
    vulnerabilities = _object(
        "Vulnerability gate (MW-IMG-021, MW-IMG-022): reports from cosign vulnerability "
        "attestations signed by a trusted signer, and from Trivy Operator "
        "VulnerabilityReports of the same image digest.",
        {
            "maxSeverity": _string(
                "The most severe finding an image may carry (not ignored).",
                enum=["NONE", "LOW", "MEDIUM", "HIGH", "CRITICAL"],
                default="HIGH",
            ),
            "ignore": {
                "type": "array",
                "description": "Findings to disregard, each until its expiry.",
                "maxItems": 256,
                "items": _object(
                    "One ignored vulnerability.",
                    {
                        "id": _string("Vulnerability ID, e.g. CVE-2024-3094.", maxLength=128),
                        "expires": _string(
                            "When the exception ends (RFC 3339); after it the finding counts "
                            "again. Required: exceptions that never end are forgotten.",
                            format="date-time",
                        ),
                        "reason": _string("Why it is ignored, for the audit trail."),
                    },
                    required=["id", "expires"],
                ),
            },
            "onMissingReport": _string(
                "When no usable report exists for the image: Deny, Warn (admit with a "
                "warning) or Allow.",
                enum=["Deny", "Warn", "Allow"],
                default="Deny",
            ),
            "sources": _strings(
                "Where reports are read from.",
                default=["CosignAttestation", "TrivyOperator"],
                items={"type": "string", "enum": ["CosignAttestation", "TrivyOperator"]},
            ),
            "attestors": _signer_list(
                "Signers whose vulnerability attestations are believed; default: "
                "signatures.trustedSigners.",
                namespaced=namespaced,
            ),
        },
    )
    models = _object(
        "OCI models (image volumes and modelcar images, by digest) are verified at admission "
        "against their OpenSSF Model Signing signature attached as an OCI referrer "
        "(MW-IMG-023). Default signers: integrity.trustedSigners.",
        {
            "verifyAtAdmission": _boolean("Verify OCI models at admission.", True),
            "trustedSigners": _signer_list(
                "Signers of model signatures; default: integrity.trustedSigners.",
                namespaced=namespaced,
            ),
            "modelcarContainers": _strings(
                "Names of containers whose image is a model (KServe's modelcar).",
                default=["modelcar"],
                maxItems=16,
            ),
        },
    )
    properties = {
        **images["properties"],
        "signatures": signatures,
        "vulnerabilities": vulnerabilities,
        "models": models,
    }
    return {**images, "properties": properties}


def _image_lookup_fields() -> dict[str, Schema]:
    """The images rules that read the image itself from its registry (docs/images.md)."""
    return {
        "requireNonRootUser": _boolean(
            "The image config's User must be a non-root user (MW-IMG-004; registry look-up).",
            False,
        ),
        "maxSizeMiB": {
            "type": "integer",
            "minimum": 1,
            "description": "Largest compressed image size in MiB, all layers and the config "
            "(MW-IMG-005; registry look-up).",
        },
        "maxLayers": {
            "type": "integer",
            "minimum": 1,
            "maximum": 1000,
            "description": "Most layers an image may have (MW-IMG-006; registry look-up).",
        },
        "allowedBaseImages": _strings(
            "If set, the image must declare its base image (OCI annotation or label "
            "org.opencontainers.image.base.name) and it must match one of these globs, e.g. "
            "'gcr.io/distroless/*' (MW-IMG-007; registry look-up).",
            maxItems=64,
        ),
        "forbiddenContents": _object(
            "Paths that may not exist in the image's final filesystem, found by listing its "
            "layers (MW-IMG-008; registry look-up of every layer).",
            {
                "shells": _boolean("No shell (sh, bash, dash, ash, zsh, ksh, busybox).", False),
                "packageManagers": _boolean(
                    "No package manager (apt, apt-get, dpkg, apk, dnf, yum, rpm, pip...).", False
                ),
                "paths": _strings(
                    "More absolute paths that may not exist, e.g. /usr/bin/curl.", maxItems=64
                ),
            },
        ),
        "maxAgeDays": {
            "type": "integer",
            "minimum": 1,
            "description": "The image config's 'created' may be at most this many days old "
            "(MW-IMG-009; registry look-up).",
        },
        "onLookupFailure": _string(
            "What a failed registry look-up means for the rules that need it (MW-IMG-010): Deny "
            "(default under Enforce and Patch) or Warn.",
            enum=["Deny", "Warn"],
        ),
        "insecureRegistries": _strings(
            "Registries (host[:port]) that may be read over plain HTTP, for look-ups only.",
            maxItems=32,
        ),
    }


def _transport() -> Schema:
    return _object(
        "TLS on every endpoint (rules MW-TLS-*).",
        {
            "mode": _mode_override("transport"),
            "requireTLS": _boolean(
                "Pods must show TLS evidence: mesh injection as the mesh itself decides it, or "
                "a mounted TLS certificate (MW-TLS-001); see docs/rules.md for what counts.",
                True,
            ),
            "meshes": _strings(
                "Service meshes whose proxy injection (or Istio ambient enrolment) counts as mTLS.",
                default=["istio", "linkerd"],
                items={"type": "string", "enum": ["istio", "linkerd"]},
            ),
            "tlsSecretNames": _strings(
                "Names (globs) of the Secrets that may serve as a certificate. A name never "
                "proves anything: the volume must also project the keys tls.crt and tls.key "
                "(a kubernetes.io/tls Secret's keys) and must not be optional. modelward never "
                "reads Secrets.",
                default=["*"],
                maxItems=64,
            ),
            "allowExternalServices": _boolean(
                "Allow Services of type LoadBalancer or NodePort, or with externalIPs, to "
                "select governed pods (MW-TLS-004). Off: such pods are reached through an "
                "Ingress or a Gateway whose TLS and rate limit modelward checks.",
                False,
            ),
            "allowedGateways": _strings(
                "Gateway API Gateways that routes to governed pods may attach to, as "
                "namespace/name (every listener) or namespace/name/listener, matched exactly "
                "(MW-TLS-005). List only Gateways whose listeners terminate TLS and rate-limit: "
                "modelward does not watch Gateways. Empty: no route may reach governed pods.",
                default=[],
                maxItems=64,
                items={"type": "string", "maxLength": 507},
            ),
            "ingress": _object(
                "Ingresses whose backends route to selected pods (MW-TLS-002, MW-TLS-003).",
                {
                    "requireTLS": _boolean("The Ingress must have spec.tls.", True),
                    "rateLimitAnnotations": _strings(
                        "The Ingress must carry one of these annotations.",
                        default=[
                            "nginx.ingress.kubernetes.io/limit-rps",
                            "nginx.ingress.kubernetes.io/limit-rpm",
                            "nginx.ingress.kubernetes.io/limit-connections",
                            "traefik.ingress.kubernetes.io/router.middlewares",
                            "haproxy.org/rate-limit-requests",
                        ],
                    ),
                },
            ),
        },
    )


def _secrets() -> Schema:
    return _object(
        "Secrets and system prompts (rules MW-SEC-*).",
        {
            "mode": _mode_override("secrets"),
            "forbidLiteralCredentials": _boolean(
                "Env values may not hold credentials: known token formats, private keys, "
                "high-entropy strings (MW-SEC-001).",
                True,
            ),
            "forbidLiteralSystemPrompts": _boolean(
                "Env values may not hold system prompts: variables named *SYSTEM_PROMPT* "
                "or long prompt-like text (MW-SEC-002).",
                True,
            ),
            "allowedEnvNames": _strings(
                "Env variable names (globs) exempt from these rules, for values you have reviewed."
            ),
        },
    )


#: The sensitive permissions the access rules govern (engine/rbac.py ``SENSITIVE``).
ACCESS_PERMISSIONS = (
    "pods/exec",
    "pods/attach",
    "pods/portforward",
    "pods/ephemeralcontainers",
    "secrets",
    "persistentvolumeclaims",
    "workloads",
)


def _access() -> Schema:
    job = _object(
        "A job function: the subjects that may hold some sensitive permissions.",
        {
            "name": _string(
                "The job function, shown in reports (e.g. sre, ml-engineer, deployer).",
                maxLength=63,
            ),
            "groups": _strings("Group names (globs).", maxItems=64),
            "users": _strings("User names (globs).", maxItems=64),
            "serviceAccounts": _strings(
                "ServiceAccounts as namespace/name (globs); a bare name means that "
                "ServiceAccount in the namespace being judged.",
                maxItems=64,
            ),
            "permissions": _strings(
                "The sensitive permissions this job function may hold; all of them if unset.",
                items={"type": "string", "enum": list(ACCESS_PERMISSIONS)},
            ),
        },
        required=["name"],
    )
    return _object(
        "Access by job function (rules MW-ACC-*): in the namespaces the policy selects, "
        "RoleBindings and ClusterRoleBindings (a ClusterRoleBinding counts in every selected "
        "namespace) may give the sensitive permissions (pods/exec, pods/attach, "
        "pods/portforward, pods/ephemeralcontainers, reading secrets, writing "
        "persistentvolumeclaims and workloads) only to the subjects of a job function that "
        "lists them. Aggregated ClusterRoles and wildcards are resolved; a Role or ClusterRole "
        "change that would give a bound, disallowed subject such a permission is judged too. "
        "Control-plane identities (system:masters, system:nodes, kube-system ServiceAccounts, "
        "the controller-manager and scheduler users) are always allowed.",
        {
            "mode": _mode_override("access"),
            "jobFunctions": {
                "type": "array",
                "description": "Who may hold which sensitive permission. Empty: nobody.",
                "items": job,
                "maxItems": 64,
            },
        },
    )


def _storage() -> Schema:
    return _object(
        "Encrypted model storage (rules MW-STO-*): PersistentVolumeClaims mounted by selected "
        "pods, and generic ephemeral volumes, must use a StorageClass the policy allows. A "
        "claim without storageClassName uses the default StorageClass; a claim modelward has "
        "not seen is refused (create it before the pod).",
        {
            "mode": _mode_override("storage"),
            "allowedStorageClasses": _strings(
                "StorageClass names (globs) allowed whatever their parameters.", maxItems=64
            ),
            "requiredParameters": {
                "type": "object",
                "description": "A StorageClass whose parameters hold all of these is allowed, "
                'e.g. {encrypted: "true", kmsKeyId: "*"}; the value \'*\' requires the '
                "parameter to be present and non-empty.",
                "additionalProperties": {"type": "string"},
                "maxProperties": 16,
            },
            "volumes": _string(
                "All: every PVC-backed volume of the pod; ModelVolumes: only the volume named "
                "by the modelward.io/model-volume annotation.",
                enum=["All", "ModelVolumes"],
                default="All",
            ),
        },
        **{
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.allowedStorageClasses) || has(self.requiredParameters)",
                    "message": "storage needs allowedStorageClasses or requiredParameters",
                }
            ]
        },
    )


def _key_ref(description: str, *, namespaced: bool) -> Schema:
    if namespaced:
        return _object(
            description + " It is read from the policy's own namespace (the pod's), whose "
            "writers own the policy too.",
            {"name": _string("Object name."), "key": _string("Data key.")},
            required=["name", "key"],
        )
    return _object(
        description + " A ClusterModelPolicy reads it from modelward's own namespace "
        "(`namespace` must name it; the operator reads the key and injects it like an inline "
        "one): a key in the pod's namespace could be replaced by the pod's author.",
        {
            "name": _string("Object name."),
            "key": _string("Data key."),
            "namespace": _string(
                "modelward's own namespace (e.g. modelward-system); any other is refused "
                "(policy Ready=False, reason UntrustedKeySource)."
            ),
        },
        required=["name", "key", "namespace"],
    )


PEM_SHAPES = {
    "publicKey": "PUBLIC KEY",
    "caCertificate": "CERTIFICATE",
}
MAX_PEM_LENGTH = 16384


def _pem(description: str, label: str, *, several: bool) -> Schema:
    block = f"-----BEGIN {label}-----[A-Za-z0-9+/=\\\\s]+-----END {label}-----\\\\s*"
    pattern = f"^\\\\s*({block})+$" if several else f"^\\\\s*{block}$"
    return _string(
        description,
        maxLength=MAX_PEM_LENGTH,
        **{
            "x-kubernetes-validations": [
                {
                    "rule": f"self.matches('{pattern}')",
                    "message": f"must be PEM: -----BEGIN {label}----- base64 -----END {label}----- "
                    "(the operator also parses it and reports a bad key in the policy's Ready "
                    "condition)",
                }
            ]
        },
    )


def _signer(*, namespaced: bool) -> Schema:
    """One trusted signer: the type the integrity and image sections share."""
    return _object(
        "A trusted signer: one public key or CA certificate (PEM), inline or by reference.",
        {
            "name": _string(
                "A short name for the signer, used in file names and reports.",
                pattern="^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                maxLength=40,
            ),
            "publicKey": _pem(
                "PEM public key (ECDSA P-256/P-384/P-521) of a signer.",
                PEM_SHAPES["publicKey"],
                several=False,
            ),
            "caCertificate": _pem(
                "PEM certificate of a CA whose certificates may sign (one or more).",
                PEM_SHAPES["caCertificate"],
                several=True,
            ),
            "configMapKeyRef": _key_ref("A ConfigMap key holding the PEM.", namespaced=namespaced),
            "secretKeyRef": _key_ref("A Secret key holding the PEM.", namespaced=namespaced),
            "type": _string(
                "What a referenced PEM is (inline values say it by their field).",
                enum=["publicKey", "caCertificate"],
                default="publicKey",
            ),
        },
        required=["name"],
        **{
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.publicKey), has(self.caCertificate), "
                    "has(self.configMapKeyRef), has(self.secretKeyRef)]"
                    ".filter(x, x).size() == 1",
                    "message": "a trusted signer needs exactly one of publicKey, caCertificate, "
                    "configMapKeyRef, secretKeyRef",
                }
            ]
        },
    )


def _integrity(*, namespaced: bool) -> Schema:
    signer = _signer(namespaced=namespaced)
    return _object(
        "Model integrity (rules MW-INT-*): pods declare their model with annotations "
        "(modelward.io/model-volume, modelward.io/model-path, modelward.io/model-signature); "
        "a verifier init container checks its OpenSSF Model Signing signature and scans it "
        "before the serving containers start.",
        {
            "mode": _mode_override("integrity"),
            "requireSignature": _boolean(
                "Pods must declare a model and run the verifier (MW-INT-001, MW-INT-004).", True
            ),
            "requireReadOnlyModel": _boolean(
                "Long-running containers mount the model's storage read-only, under any "
                "volume name (same claim, host path, CSI volume or image: MW-INT-002).",
                True,
            ),
            "requireVerifiedModelVolumes": _boolean(
                "Every model-like volume (PVC, ephemeral, image, hostPath, CSI or other network "
                "storage, or an emptyDir an init container writes) that a long-running container "
                "mounts must be the verified model, or be listed in the pod annotation "
                "modelward.io/unverified-volumes and mounted read-only (MW-INT-005).",
                True,
            ),
            "modelPods": _string(
                "Which selected pods are model pods: All (every selected pod must declare a "
                "model, MW-INT-001) or ModelVolumes (pods that declare a model or mount a "
                "model-like volume; others are left alone). Decided by what the pod is, never "
                "by its labels.",
                enum=["All", "ModelVolumes"],
                default="All",
            ),
            "trustedSigners": {
                "type": "array",
                "description": "Signers whose signatures are accepted (any one suffices).",
                "items": signer,
                "maxItems": 16,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
            "scan": _boolean("Scan the model for code-execution payloads too.", True),
            "allowShards": _boolean("Accept signatures in the 'shards' serialization.", False),
            "scanProfiles": {
                "type": "array",
                "description": "Trusted-type profiles the scan accepts besides ordinary "
                "checkpoints: the vetted classes of scikit-learn, XGBoost and LightGBM "
                "pickles/joblib files (docs/integrity.md).",
                "items": {"type": "string", "enum": list(SCAN_PROFILES)},
                "maxItems": len(SCAN_PROFILES),
                "x-kubernetes-list-type": "set",
            },
            "allowedGlobals": _strings(
                "Further pickle globals the scan accepts, exact (mypkg.config.ModelConfig) "
                "or every name in a module and its submodules (mypkg.*).",
                maxItems=256,
                items={"type": "string", "maxLength": 256, "pattern": GLOBAL_NAME_PATTERN},
            ),
            "allowedIgnorePaths": _strings(
                "Paths a signature may exempt from hashing (beyond .git and the signature)."
            ),
            "verifier": _object(
                "The injected verifier container.",
                {
                    "image": _string(
                        "The modelward image that runs `modelward verify-pod`, pinned by "
                        "digest in production."
                    ),
                },
                required=["image"],
            ),
        },
        **{
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.requireSignature) && !self.requireSignature) || "
                    "(has(self.trustedSigners) && size(self.trustedSigners) > 0 && "
                    "has(self.verifier))",
                    "message": "requireSignature needs trustedSigners and verifier.image",
                }
            ]
        },
    )


def policy_spec(*, namespaced: bool) -> Schema:
    """The ``spec`` schema shared by ClusterModelPolicy and ModelPolicy."""
    match = _selection(
        "What the policy applies to."
        + (
            " Defaults to every pod of the policy's own namespace."
            if namespaced
            else " Must select by namespace (namespaces or namespaceSelector)."
        )
    )
    if not namespaced:
        match["x-kubernetes-validations"] = [
            {
                "rule": "has(self.namespaces) || has(self.namespaceSelector)",
                "message": "match must select namespaces (namespaces or namespaceSelector); "
                "podSelector can only narrow that selection",
            }
        ]
    exclude = _selection(
        "Exceptions to match."
        + (
            ""
            if namespaced
            else " By namespace only: a podSelector here would let a pod's author opt out."
        )
    )
    if not namespaced:
        exclude["x-kubernetes-validations"] = [
            {
                "rule": "!has(self.podSelector)",
                "message": "exclude.podSelector is not allowed in a ClusterModelPolicy (a pod's "
                "labels are written by its author); exclude by namespace",
            }
        ]
    spec = _object(
        "The policy: what it selects, how it acts, and its rule sections.",
        {
            "description": _string("What the policy is for, shown in reports and evidence."),
            "mode": _string(
                "Enforce denies; Patch fixes what can be fixed safely and denies the rest; "
                "Audit admits with warnings, Events, metrics and reports.",
                enum=list(MODES),
                default="Enforce",
            ),
            "match": match,
            "exclude": exclude,
            "isolation": _isolation(),
            "images": _with_image_trust(_images(), namespaced=namespaced),
            "transport": _transport(),
            "secrets": _secrets(),
            "integrity": _integrity(namespaced=namespaced),
            "exceptions": _object(
                "Which ModelPolicyExceptions count for this policy (docs/governance.md).",
                {
                    "allowedGroups": _strings(
                        "If set, only exceptions created by a member of one of these groups "
                        "count (the creator modelward's webhook recorded from the API server's "
                        "userInfo). Unset: every exception RBAC let someone create counts.",
                        maxItems=64,
                    ),
                },
            ),
            "access": _access(),
            "storage": _storage(),
        },
    )
    if not namespaced:
        spec["required"] = ["match"]
    return spec


def policy_status() -> Schema:
    condition = _object(
        "A standard condition.",
        {
            "type": _string("Condition type, e.g. Ready."),
            "status": _string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": _string("A CamelCase reason."),
            "message": _string("A human-readable message."),
            "lastTransitionTime": _string("When the status last changed.", format="date-time"),
            "observedGeneration": {"type": "integer", "format": "int64"},
        },
        required=["type", "status"],
    )
    return _object(
        "What modelward made of the policy.",
        {
            "observedGeneration": {"type": "integer", "format": "int64"},
            "conditions": {
                "type": "array",
                "items": condition,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "rules": _strings("IDs of the rules this policy enables."),
            "violations": _object(
                "Admission decisions that found violations of this policy since the "
                "operator started, and the pods that break it now (background audit).",
                {
                    "denied": {"type": "integer", "format": "int64"},
                    "patched": {"type": "integer", "format": "int64"},
                    "warned": {"type": "integer", "format": "int64"},
                    "current": {"type": "integer", "format": "int64"},
                },
            ),
        },
    )


def _crd(*, kind: str, plural: str, short_names: list[str], namespaced: bool) -> Schema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "modelward"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": ["modelward"],
            },
            "scope": "Namespaced" if namespaced else "Cluster",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {
                            "name": "Denied",
                            "type": "integer",
                            "jsonPath": ".status.violations.denied",
                        },
                        {
                            "name": "Violating",
                            "type": "integer",
                            "jsonPath": ".status.violations.current",
                        },
                        {
                            "name": "Age",
                            "type": "date",
                            "jsonPath": ".metadata.creationTimestamp",
                        },
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": f"{kind}: a modelward policy for model-serving "
                            "workloads"
                            + (" in its own namespace." if namespaced else ", cluster-wide."),
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": policy_spec(namespaced=namespaced),
                                "status": policy_status(),
                            },
                            "required": ["spec"],
                        }
                    },
                }
            ],
        },
    }


def deployed_model_crd() -> Schema:
    """DeployedModel: the durable inventory of model hashes modelward saw verified in pods."""
    workload = _object(
        "A workload that ran the model.",
        {"kind": _string("Kind."), "name": _string("Name.")},
    )
    spec = _object(
        "Written by the operator from verifier results; read-only for users.",
        {
            "digest": _string("OpenSSF Model Signing subject digest, sha256:<hex>."),
            "signer": _string("Key fingerprint or certificate subject that signed it."),
            "files": {"type": "integer", "description": "Number of files in the model."},
            "scan": _string("Payload scan verdict.", enum=["clean", "unsafe", "skipped", "error"]),
            "lastResult": _string(
                "Last verification result.", enum=["verified", "rejected", "error"]
            ),
            "firstSeen": _string("First verification.", format="date-time"),
            "lastSeen": _string("Latest verification.", format="date-time"),
            "verifications": {"type": "integer", "description": "Verifications recorded."},
            "policies": _strings(
                "Policies whose verifier checked it (the 16 most recent).", maxItems=16
            ),
            "recorded": _strings(
                "Verifier results counted, as <pod UID>/<container>/<result> (the 512 most "
                "recent): a result listed here is never counted again.",
                maxItems=512,
            ),
            "workloads": {"type": "array", "items": workload, "maxItems": 64},
        },
        required=["digest"],
    )
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"deployedmodels.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "modelward"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": "DeployedModel",
                "listKind": "DeployedModelList",
                "plural": "deployedmodels",
                "singular": "deployedmodel",
                "shortNames": ["dm"],
                "categories": ["modelward"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "additionalPrinterColumns": [
                        {"name": "Result", "type": "string", "jsonPath": ".spec.lastResult"},
                        {"name": "Signer", "type": "string", "jsonPath": ".spec.signer"},
                        {"name": "Scan", "type": "string", "jsonPath": ".spec.scan"},
                        {"name": "Last Seen", "type": "date", "jsonPath": ".spec.lastSeen"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A model (by digest) deployed in this namespace.",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                            },
                            "required": ["spec"],
                        }
                    },
                }
            ],
        },
    }


EXCEPTION_RULE_ID_PATTERN = "^MW-[A-Z]{3}-[0-9]{3}$"
#: The fixed cap the CRD itself enforces; the chart's (shorter) maximum is enforced by
#: modelward's webhook and by the engine (from creationTimestamp).
EXCEPTION_HARD_MAX_HOURS = 8760


def policy_exception_crd() -> Schema:
    """ModelPolicyException: a named, approved, expiring waiver of some rules of one policy."""
    names = _strings(
        "Workload names in this namespace: the object's own name, or the name of its "
        "controller (a Deployment covers its ReplicaSets and their pods).",
        maxItems=64,
        items={"type": "string", "minLength": 1, "maxLength": 253},
    )
    selector = label_selector(
        "Workloads whose pod (template) labels match; with names, both must hold."
    )
    workloads = _object(
        "Which workloads of this namespace it covers: names, a label selector, or both.",
        {"names": names, "selector": selector},
        **{
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.names) && size(self.names) > 0) || has(self.selector)",
                    "message": "workloads must give names or a selector",
                },
                {
                    "rule": "!has(self.selector) || (has(self.selector.matchLabels) && "
                    "size(self.selector.matchLabels) > 0) || (has(self.selector.matchExpressions) "
                    "&& size(self.selector.matchExpressions) > 0)",
                    "message": "an empty selector would select every workload: give labels",
                },
            ]
        },
    )
    spec = _object(
        "What is waived, for what, why, by whose approval and until when.",
        {
            "policy": _object(
                "The one policy whose rules are waived; a ModelPolicy must be in this namespace.",
                {
                    "kind": _string("Policy kind.", enum=["ClusterModelPolicy", "ModelPolicy"]),
                    "name": _string("Policy name.", minLength=1, maxLength=253),
                },
                required=["kind", "name"],
            ),
            "rules": _strings(
                "Rule IDs waived, exactly (no wildcards), e.g. MW-IMG-001.",
                minItems=1,
                maxItems=64,
                items={"type": "string", "pattern": EXCEPTION_RULE_ID_PATTERN},
            ),
            "workloads": workloads,
            "justification": _string(
                "Why the rules cannot be met, and what mitigates the risk meanwhile.",
                minLength=10,
                maxLength=4096,
            ),
            "approvedBy": _string(
                "Who approved it (a person or role).", minLength=1, maxLength=253
            ),
            "ticket": _string("The change or risk ticket reference.", maxLength=253),
            "approvedAt": _string("When it was approved.", format="date-time"),
            "expiresAt": _string(
                "When it stops applying, after approvedAt; at most the cluster's maximum "
                "lifetime (the chart's exceptions.maxLifetime, 90 days by default) after the "
                "exception's creation, and never more than 365 days after approvedAt.",
                format="date-time",
            ),
        },
        required=[
            "policy",
            "rules",
            "workloads",
            "justification",
            "approvedBy",
            "approvedAt",
            "expiresAt",
        ],
        **{
            "x-kubernetes-validations": [
                {
                    "rule": "self.expiresAt > self.approvedAt",
                    "message": "expiresAt must be after approvedAt",
                },
                {
                    "rule": "self.expiresAt - self.approvedAt <= "
                    f"duration('{EXCEPTION_HARD_MAX_HOURS}h')",
                    "message": "expiresAt may be at most 365 days after approvedAt (the "
                    "cluster's maximum, 90 days by default, is checked by modelward's webhook)",
                },
            ]
        },
    )
    status = policy_status()
    status["properties"] = {
        "observedGeneration": {"type": "integer", "format": "int64"},
        "conditions": status["properties"]["conditions"],
        "state": _string("Active or Expired.", enum=["Active", "Expired", "Invalid"]),
        "effectiveExpiresAt": _string(
            "When it stops applying: expiresAt, or the maximum lifetime after creation.",
            format="date-time",
        ),
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"modelpolicyexceptions.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "modelward"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": "ModelPolicyException",
                "listKind": "ModelPolicyExceptionList",
                "plural": "modelpolicyexceptions",
                "singular": "modelpolicyexception",
                "shortNames": ["mpex"],
                "categories": ["modelward"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Policy", "type": "string", "jsonPath": ".spec.policy.name"},
                        {"name": "Rules", "type": "string", "jsonPath": ".spec.rules"},
                        {"name": "Approved By", "type": "string", "jsonPath": ".spec.approvedBy"},
                        {"name": "Expires", "type": "string", "jsonPath": ".spec.expiresAt"},
                        {"name": "State", "type": "string", "jsonPath": ".status.state"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "ModelPolicyException: waives some rules of one "
                            "modelward policy for some workloads of its namespace, until it "
                            "expires.",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                            "required": ["spec"],
                        }
                    },
                }
            ],
        },
    }


POLICY_REPORT_GROUP = "wgpolicyk8s.io"
POLICY_REPORT_VERSION = "v1alpha2"


def policy_report_crd() -> Schema:
    """PolicyReport (wgpolicyk8s.io/v1alpha2), the format Kyverno and Policy Reporter read.

    modelward writes one per namespace from its background audit. If another project already
    installed this CRD, keep theirs (Helm skips CRDs that exist; `kubectl apply` would merge).
    """
    resource = _object(
        "An object the result is about.",
        {k: _string(k) for k in ("apiVersion", "kind", "namespace", "name", "uid")},
    )
    result = _object(
        "One policy rule's result for some resources.",
        {
            "source": _string("The engine that produced it."),
            "policy": _string("Policy name."),
            "rule": _string("Rule name."),
            "category": _string("Category."),
            "severity": _string("Severity.", enum=["critical", "high", "low", "medium", "info"]),
            "result": _string("Outcome.", enum=["pass", "fail", "warn", "error", "skip"]),
            "message": _string("Description."),
            "scored": {"type": "boolean"},
            "timestamp": _object(
                "When.",
                {
                    "seconds": {"type": "integer", "format": "int64"},
                    "nanos": {"type": "integer", "format": "int32"},
                },
            ),
            "resources": {"type": "array", "items": resource},
            "properties": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        required=["policy"],
    )
    counts = {k: {"type": "integer"} for k in ("pass", "fail", "warn", "error", "skip")}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"policyreports.{POLICY_REPORT_GROUP}"},
        "spec": {
            "group": POLICY_REPORT_GROUP,
            "names": {
                "kind": "PolicyReport",
                "listKind": "PolicyReportList",
                "plural": "policyreports",
                "singular": "policyreport",
                "shortNames": ["polr"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": POLICY_REPORT_VERSION,
                    "served": True,
                    "storage": True,
                    "additionalPrinterColumns": [
                        {"name": k.capitalize(), "type": "integer", "jsonPath": f".summary.{k}"}
                        for k in ("pass", "fail", "warn", "error", "skip")
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "scope": resource,
                                "results": {"type": "array", "items": result},
                                "summary": _object("Counts by result.", counts),
                            },
                        }
                    },
                }
            ],
        },
    }


def custom_resource_definitions() -> list[Schema]:
    """Every CRD modelward installs, in install order."""
    return [
        _crd(
            kind="ClusterModelPolicy",
            plural="clustermodelpolicies",
            short_names=["cmp", "cmpol"],
            namespaced=False,
        ),
        _crd(
            kind="ModelPolicy", plural="modelpolicies", short_names=["mp", "mpol"], namespaced=True
        ),
        deployed_model_crd(),
        policy_exception_crd(),
        policy_report_crd(),
    ]


def openapi_schema(kind: str) -> Schema:
    """The openAPIV3Schema of ``kind``, for offline validation of policy files."""
    for crd in custom_resource_definitions():
        if crd["spec"]["names"]["kind"] == kind:
            schema: Schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            return schema
    raise KeyError(kind)
