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
        },
    )


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


def _integrity(*, namespaced: bool) -> Schema:
    signer = _object(
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
            "images": _images(),
            "transport": _transport(),
            "secrets": _secrets(),
            "integrity": _integrity(namespaced=namespaced),
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
        policy_report_crd(),
    ]


def openapi_schema(kind: str) -> Schema:
    """The openAPIV3Schema of ``kind``, for offline validation of policy files."""
    for crd in custom_resource_definitions():
        if crd["spec"]["names"]["kind"] == kind:
            schema: Schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            return schema
    raise KeyError(kind)
