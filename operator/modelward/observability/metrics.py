"""Prometheus metrics (documented in docs/metrics.md).

Collectors live in their own registry, created at start-up (no import-time globals). Every
label value comes from a closed set, never from a request as such: an AdmissionReview can be
sent by anyone who reaches the webhook port, and one unique label value per request grows
memory and ``/metrics`` without bound. Rule IDs, modes, operations and decisions are fixed
sets; ``kind`` is one of the judged kinds or ``other`` (``kind_label``); ``namespace`` is a
namespace the cluster has (from the watch) or ``other`` (``namespace_label``); ``policy`` is
a policy that exists.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modelward.engine.rbac import RBAC_KINDS
from modelward.engine.rules.transport import EXPOSURE_KINDS
from modelward.engine.workloads import TEMPLATE_POINTERS

#: The label value standing for every value outside a closed set.
OTHER = "other"
KNOWN_KINDS = frozenset({*TEMPLATE_POINTERS, *(kind for _, kind in EXPOSURE_KINDS), *RBAC_KINDS})


def kind_label(kind: str) -> str:
    """A request's kind as a label value: a kind modelward judges, or ``other``."""
    return kind if kind in KNOWN_KINDS or kind == "" else OTHER


def namespace_label(namespace: str, known: Container[str]) -> str:
    """A request's namespace as a label value: one the cluster has, or ``other``."""
    return namespace if namespace in known else OTHER


LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    admission_requests: Counter
    admission_duration: Histogram
    violations: Counter
    policies: Gauge
    events_posted: Counter
    event_errors: Counter
    events_dropped: Counter
    ready: Gauge
    certificate_expiry: Gauge
    model_verifications: Counter
    model_verification_duration: Histogram
    audit_violations: Gauge
    audit_duration: Histogram
    connections: Gauge
    connections_refused: Counter
    reviews_in_flight: Gauge
    exceptions: Gauge
    exceptions_expired: Counter
    scope_skipped: Gauge

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            admission_requests=Counter(
                "modelward_admission_requests",
                "Admission reviews answered, by webhook, decision, kind and operation.",
                ["webhook", "decision", "kind", "operation"],
                registry=registry,
            ),
            admission_duration=Histogram(
                "modelward_admission_duration_seconds",
                "Time to answer one admission review, from body read to response.",
                ["webhook"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            violations=Counter(
                "modelward_violations",
                "Violations found at admission, by rule, policy, namespace and mode.",
                ["rule", "policy", "namespace", "mode"],
                registry=registry,
            ),
            policies=Gauge(
                "modelward_policies",
                "Policies known to the operator, by kind and readiness.",
                ["kind", "ready"],
                registry=registry,
            ),
            events_posted=Counter(
                "modelward_events_posted",
                "Kubernetes Events posted.",
                ["reason"],
                registry=registry,
            ),
            event_errors=Counter(
                "modelward_event_errors",
                "Kubernetes Events that could not be posted.",
                registry=registry,
            ),
            events_dropped=Counter(
                "modelward_events_dropped",
                "Events not posted because of rate limiting or a full queue.",
                registry=registry,
            ),
            ready=Gauge(
                "modelward_ready",
                "1 once policies are loaded and admission is served.",
                registry=registry,
            ),
            model_verifications=Counter(
                "modelward_model_verifications",
                "Model verifications reported by injected verifiers, by result, policy and "
                "namespace (result: verified, rejected, error).",
                ["result", "policy", "namespace"],
                registry=registry,
            ),
            model_verification_duration=Histogram(
                "modelward_model_verification_duration_seconds",
                "How long verifiers took to verify (and scan) a model.",
                buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
                registry=registry,
            ),
            audit_violations=Gauge(
                "modelward_audit_violations",
                "Violations found by the last background audit of existing pods, by policy, "
                "rule and namespace.",
                ["policy", "rule", "namespace"],
                registry=registry,
            ),
            audit_duration=Histogram(
                "modelward_audit_duration_seconds",
                "How long one background audit scan took.",
                buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
                registry=registry,
            ),
            connections=Gauge(
                "modelward_webhook_connections",
                "Open connections to the webhook port (TLS handshakes included).",
                registry=registry,
            ),
            connections_refused=Counter(
                "modelward_webhook_connections_refused",
                "Connections to the webhook port closed at once because --max-connections "
                "were open.",
                registry=registry,
            ),
            reviews_in_flight=Gauge(
                "modelward_admission_reviews_in_flight",
                "Reviews being evaluated or waiting for an evaluation worker (a review past "
                "its budget counts until its evaluation really ends).",
                registry=registry,
            ),
            scope_skipped=Gauge(
                "modelward_webhook_scope_skipped_namespaces",
                "Namespaces the fail-open webhook skips because no policy (validate) or no "
                "Patch-mode policy (mutate) selects them; 0 while the chart's scope is kept.",
                ["webhook"],
                registry=registry,
            ),
            certificate_expiry=Gauge(
                "modelward_certificate_expiry_timestamp_seconds",
                "When the webhook serving certificate expires (Unix time).",
                registry=registry,
            ),
            exceptions=Gauge(
                "modelward_policy_exceptions",
                "ModelPolicyExceptions by state (Active, Expired, Invalid), as the leader "
                "last judged them.",
                ["state"],
                registry=registry,
            ),
            exceptions_expired=Counter(
                "modelward_policy_exceptions_expired",
                "ModelPolicyExceptions seen to expire (each counted once, by the leader).",
                registry=registry,
            ),
        )
