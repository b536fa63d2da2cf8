"""The rule catalogue: every rule's stable ID, its family and title.

A rule family is a module with one ``check_<family>(workload, namespace, config)`` generator;
each rule it contains is listed here so that messages, metrics, reports and docs/rules.md all
use the same IDs. Adding a rule: write it in its family module, list it here, document it in
docs/rules.md, test it in tests/unit/engine/rules/.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelward.engine.policy import Policy


@dataclass(frozen=True)
class RuleInfo:
    rule_id: str
    family: str
    title: str
    patchable: bool = False


RULES: dict[str, RuleInfo] = {
    r.rule_id: r
    for r in (
        RuleInfo("MW-ISO-001", "isolation", "Model-serving pods stay out of forbidden namespaces"),
        RuleInfo("MW-ISO-002", "isolation", "Containers run as non-root", True),
        RuleInfo("MW-ISO-003", "isolation", "No privilege escalation", True),
        RuleInfo(
            "MW-ISO-004",
            "isolation",
            "Capabilities dropped (ALL; only NET_BIND_SERVICE added)",
            True,
        ),
        RuleInfo("MW-ISO-005", "isolation", "Seccomp profile RuntimeDefault or Localhost", True),
        RuleInfo("MW-ISO-006", "isolation", "No privileged or hostProcess containers"),
        RuleInfo("MW-ISO-007", "isolation", "No host network, PID or IPC namespace"),
        RuleInfo("MW-ISO-008", "isolation", "No hostPath volumes"),
        RuleInfo("MW-ISO-009", "isolation", "No host ports"),
        RuleInfo("MW-ISO-010", "isolation", "Sandboxed runtime class", True),
        RuleInfo("MW-ISO-011", "isolation", "GPU pods run on the dedicated GPU pool", True),
        RuleInfo(
            "MW-ISO-012",
            "isolation",
            "Pods stay off the GPU pool unless they request GPUs (no toleration, no nodeName)",
        ),
        RuleInfo(
            "MW-ISO-013", "isolation", "No service account token: automounted or projected", True
        ),
        RuleInfo("MW-ISO-014", "isolation", "Default-deny NetworkPolicy in the namespace"),
        RuleInfo(
            "MW-ISO-015", "isolation", "Baseline hardening: AppArmor, SELinux, procMount, sysctls"
        ),
        RuleInfo("MW-ISO-016", "isolation", "Only Pod Security 'restricted' volume types"),
        RuleInfo("MW-IMG-001", "images", "Images pinned by digest", True),
        RuleInfo("MW-IMG-002", "images", "Images from allowed registries"),
        RuleInfo("MW-IMG-003", "images", "No forbidden tags (latest, none)"),
        RuleInfo("MW-IMG-004", "images", "The image's configured user is not root"),
        RuleInfo("MW-IMG-005", "images", "Compressed image size within maxSizeMiB"),
        RuleInfo("MW-IMG-006", "images", "Layer count within maxLayers"),
        RuleInfo("MW-IMG-007", "images", "Built on an allowed base image"),
        RuleInfo("MW-IMG-008", "images", "No shell, package manager or forbidden path inside"),
        RuleInfo("MW-IMG-009", "images", "Image built within maxAgeDays"),
        RuleInfo("MW-IMG-010", "images", "The registry look-up the image rules need succeeded"),
        RuleInfo("MW-IMG-020", "images", "Images carry a cosign signature by a trusted signer"),
        RuleInfo("MW-IMG-021", "images", "No vulnerabilities above maxSeverity (unless ignored)"),
        RuleInfo("MW-IMG-022", "images", "Images have a vulnerability report"),
        RuleInfo(
            "MW-IMG-023", "images", "OCI models are verified against their signature at admission"
        ),
        RuleInfo(
            "MW-TLS-001", "transport", "TLS on every endpoint: mesh mTLS or a mounted certificate"
        ),
        RuleInfo("MW-TLS-002", "transport", "Ingresses to model-serving pods terminate TLS"),
        RuleInfo("MW-TLS-003", "transport", "Ingresses to model-serving pods are rate limited"),
        RuleInfo(
            "MW-TLS-004",
            "transport",
            "No LoadBalancer, NodePort or externalIPs Service to model-serving pods",
        ),
        RuleInfo(
            "MW-TLS-005",
            "transport",
            "Gateway API routes to model-serving pods use allowed Gateways",
        ),
        RuleInfo("MW-SEC-001", "secrets", "No credentials as literal env values or arguments"),
        RuleInfo("MW-SEC-002", "secrets", "No system prompts as literal env values"),
        RuleInfo("MW-INT-001", "integrity", "Model-serving pods declare the model they serve"),
        RuleInfo("MW-INT-002", "integrity", "The model volume is mounted read-only", True),
        RuleInfo("MW-INT-003", "integrity", "OCI model images are referenced by digest"),
        RuleInfo("MW-INT-004", "integrity", "The model is verified before serving starts", True),
        RuleInfo(
            "MW-INT-005",
            "integrity",
            "Every model-like volume served from is the verified one, or declared and read-only",
            True,
        ),
        RuleInfo(
            "MW-INT-006",
            "integrity",
            "The model declaration, keys and verifier do not change after admission",
        ),
        RuleInfo(
            "MW-ACC-001",
            "access",
            "Role bindings give sensitive permissions only to allowed job functions",
        ),
        RuleInfo(
            "MW-ACC-002",
            "access",
            "Role changes give no bound, disallowed subject a sensitive permission",
        ),
        RuleInfo(
            "MW-STO-001",
            "storage",
            "Mounted PersistentVolumeClaims use an allowed (encrypted) StorageClass",
        ),
        RuleInfo(
            "MW-STO-002",
            "storage",
            "Generic ephemeral volumes use an allowed (encrypted) StorageClass",
        ),
    )
}


def enabled_rule_ids(policy: Policy) -> tuple[str, ...]:
    """The rules a policy turns on, for its status and for reports."""
    families = {
        "isolation": policy.isolation,
        "images": policy.images,
        "transport": policy.transport,
        "secrets": policy.secrets,
        "integrity": policy.integrity,
        "access": policy.access,
        "storage": policy.storage,
    }
    return tuple(r.rule_id for r in RULES.values() if families.get(r.family) is not None)
