"""AIUC-1 B008 "Protect model deployment environment": its activities and the policy sections
that enforce each one.

The mapping is the project's reading of the control (docs/governance.md explains it); it lives
here, once, so the report, the docs test and ``modelward check`` cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class B008Activity:
    id: str
    title: str
    asks: str
    #: Policy sections (keys of a policy's spec) that enforce the activity.
    sections: tuple[str, ...]


ACTIVITIES: tuple[B008Activity, ...] = (
    B008Activity(
        "restrict-access",
        "Restrict access by job function",
        "Only the people and workloads whose job needs it can reach model deployments: "
        "exec, attach, port-forward, secrets and model volumes are bound to allowed subjects.",
        ("access",),
    ),
    B008Activity(
        "deployment-controls",
        "Deployment controls",
        "Scoped credentials, rate limits and TLS on every model endpoint; no credentials or "
        "system prompts as literal values.",
        ("transport", "secrets"),
    ),
    B008Activity(
        "hosting-environment",
        "Hosting environment",
        "Minimal, current, scanned images from allowed registries; isolation by namespace, "
        "sandboxed runtime or dedicated GPU nodes; encrypted model storage.",
        ("isolation", "images", "storage"),
    ),
    B008Activity(
        "model-integrity",
        "Model integrity",
        "Serving runs exactly the model bytes an authorised signer signed, free of malicious "
        "payloads, with the model's hash recorded when it is deployed.",
        ("integrity",),
    ),
)

#: Every section some activity counts: the others (if any) are reported as "other".
SECTIONS: frozenset[str] = frozenset(s for a in ACTIVITIES for s in a.sections)
