"""What the engine may know about the cluster besides the object under review.

The admission server answers from the controller's watch caches, the CLI from the manifests it
was given; neither makes a network call per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class NamespaceFacts:
    """A namespace's labels and annotations, and whether it holds a default-deny policy.

    ``has_default_deny`` is ``None`` when unknown (the cache has not seen the namespace).
    """

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    has_default_deny: bool | None = None

    def selector_labels(self) -> Mapping[str, str]:
        """Labels as a namespaceSelector sees them (the name label is always set)."""
        return {**self.labels, "kubernetes.io/metadata.name": self.name}


class ClusterFacts(Protocol):
    """Read-only cluster knowledge, answered from memory."""

    def namespace(self, name: str) -> NamespaceFacts: ...

    def service_selector(self, namespace: str, name: str) -> Mapping[str, str] | None: ...


def is_default_deny(network_policy: Mapping[str, Any]) -> bool:
    """A NetworkPolicy that selects every pod and admits no ingress unless another allows it."""
    spec = network_policy.get("spec") or {}
    selector = spec.get("podSelector")
    if selector is None or not isinstance(selector, Mapping):
        return False
    if selector.get("matchLabels") or selector.get("matchExpressions"):
        return False
    types = spec.get("policyTypes") or (["Ingress"] if "egress" not in spec else [])
    return "Ingress" in types and not spec.get("ingress")


@dataclass
class StaticFacts:
    """Facts from a fixed set of objects: the CLI's manifests, tests."""

    namespaces: dict[str, NamespaceFacts] = field(default_factory=dict)
    default_deny_namespaces: set[str] = field(default_factory=set)
    services: dict[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)
    #: What to assume for a namespace with no NetworkPolicy in the set.
    assume_default_deny: bool | None = False

    def add_object(self, obj: Mapping[str, Any]) -> None:
        """Learn from a Namespace, NetworkPolicy or Service; ignore anything else."""
        kind = obj.get("kind")
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        namespace = str(meta.get("namespace") or "default")
        if kind == "Namespace":
            self.namespaces[name] = NamespaceFacts(
                name=name,
                labels=dict(meta.get("labels") or {}),
                annotations=dict(meta.get("annotations") or {}),
            )
        elif kind == "NetworkPolicy" and is_default_deny(obj):
            self.default_deny_namespaces.add(namespace)
        elif kind == "Service":
            selector = (obj.get("spec") or {}).get("selector") or {}
            self.services[(namespace, name)] = dict(selector)

    def namespace(self, name: str) -> NamespaceFacts:
        known = self.namespaces.get(name) or NamespaceFacts(name=name)
        deny = True if name in self.default_deny_namespaces else self.assume_default_deny
        return NamespaceFacts(
            name=name, labels=known.labels, annotations=known.annotations, has_default_deny=deny
        )

    def service_selector(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.services.get((namespace, name))
