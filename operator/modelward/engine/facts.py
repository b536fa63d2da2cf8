"""What the engine may know about the cluster besides the object under review.

The admission server answers from the controller's watch caches, the CLI from the manifests it
was given; neither makes a network call per request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelward.engine.image_trust import ImageTrust
from modelward.engine.selectors import LabelSelector, SelectorError


@dataclass(frozen=True)
class NamespaceFacts:
    """A namespace's labels and annotations, and whether it holds a default-deny policy.

    ``has_default_deny`` is ``None`` when unknown (the cache has not seen the namespace).
    ``open_ingress`` names the NetworkPolicies that let every source in to the pods they
    select, with their pod selectors: NetworkPolicies add up, so one of them undoes the
    default-deny for those pods.
    """

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    has_default_deny: bool | None = None
    open_ingress: tuple[tuple[str, LabelSelector], ...] = ()

    def selector_labels(self) -> Mapping[str, str]:
        """Labels as a namespaceSelector sees them (the name label is always set)."""
        return {**self.labels, "kubernetes.io/metadata.name": self.name}


@dataclass(frozen=True)
class StorageClassFacts:
    """What the storage rules read of a StorageClass: its parameters and whether it is a
    default (``storageclass.kubernetes.io/is-default-class``)."""

    name: str
    parameters: Mapping[str, str] = field(default_factory=dict)
    default: bool = False
    #: creationTimestamp: with several defaults, the newest wins (as the API server picks).
    created: str = ""


@dataclass(frozen=True)
class ClaimFacts:
    """A PersistentVolumeClaim's storageClassName: None when unset (the default class applies),
    "" when explicitly none (a statically provisioned volume)."""

    storage_class: str | None


DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)


def storage_class_facts(obj: Mapping[str, Any]) -> StorageClassFacts:
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    return StorageClassFacts(
        name=str(meta.get("name") or ""),
        parameters={str(k): str(v) for k, v in (obj.get("parameters") or {}).items()},
        default=any(
            str(annotations.get(a, "")).lower() == "true" for a in DEFAULT_CLASS_ANNOTATIONS
        ),
        created=str(meta.get("creationTimestamp") or ""),
    )


def claim_facts(obj: Mapping[str, Any]) -> ClaimFacts:
    value = (obj.get("spec") or {}).get("storageClassName")
    return ClaimFacts(storage_class=None if value is None else str(value))


def pick_default(classes: Iterable[StorageClassFacts]) -> StorageClassFacts | None:
    """The default StorageClass: with several marked default, the newest (then by name)."""
    defaults = [c for c in classes if c.default]
    return max(defaults, key=lambda c: (c.created, c.name)) if defaults else None


class ClusterFacts(Protocol):
    """Read-only cluster knowledge, answered from memory."""

    def namespace(self, name: str) -> NamespaceFacts: ...

    def service_selector(self, namespace: str, name: str) -> Mapping[str, str] | None: ...

    def storage_class(self, name: str) -> StorageClassFacts | None: ...

    def default_storage_class(self) -> StorageClassFacts | None: ...

    def claim(self, namespace: str, name: str) -> ClaimFacts | None: ...


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


#: Peers that stand for every source: all pods of all namespaces, every IP address.
_EVERY_CIDR = frozenset({"0.0.0.0/0", "::/0"})


def _is_everyone(peer: Any) -> bool:
    if not isinstance(peer, Mapping):
        return False
    namespaces, pods, block = (
        peer.get("namespaceSelector"),
        peer.get("podSelector"),
        peer.get("ipBlock"),
    )
    if isinstance(block, Mapping):
        return block.get("cidr") in _EVERY_CIDR and not block.get("except")
    return _selects_all(namespaces) and (pods is None or _selects_all(pods))


def _selects_all(selector: Any) -> bool:
    return (
        isinstance(selector, Mapping)
        and not selector.get("matchLabels")
        and not selector.get("matchExpressions")
    )


def ingress_opening(network_policy: Mapping[str, Any]) -> LabelSelector | None:
    """The pods a NetworkPolicy opens to every ingress source, or None if it opens none.

    A rule opens everything when it names no source (no ``from``, or ``from: []``: "any"),
    or a source that is everyone (``namespaceSelector: {}``, ``ipBlock`` ``0.0.0.0/0``).
    Ports do not narrow it: the model's port open to anyone is what default-deny prevents.
    A selector the API server would have refused is taken to select every pod.
    """
    spec = network_policy.get("spec") or {}
    if not isinstance(spec, Mapping):
        return None
    types = spec.get("policyTypes") or ["Ingress"]
    if "Ingress" not in types:
        return None
    rules = spec.get("ingress") or []
    if not any(
        isinstance(rule, Mapping) and (not rule.get("from") or any(map(_is_everyone, rule["from"])))
        for rule in rules
    ):
        return None
    raw = spec.get("podSelector")
    try:
        return LabelSelector.parse(raw) if isinstance(raw, Mapping) else LabelSelector()
    except SelectorError:
        return LabelSelector()


def _first(item: tuple[str, LabelSelector]) -> str:
    return item[0]


@dataclass
class StaticFacts:
    """Facts from a fixed set of objects: the CLI's manifests, tests."""

    namespaces: dict[str, NamespaceFacts] = field(default_factory=dict)
    default_deny_namespaces: set[str] = field(default_factory=set)
    services: dict[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)
    #: namespace -> NetworkPolicy name -> the pods it opens to every source.
    open_ingress: dict[str, dict[str, LabelSelector]] = field(default_factory=dict)
    #: What to assume for a namespace with no NetworkPolicy in the set.
    assume_default_deny: bool | None = False
    storage_classes: dict[str, StorageClassFacts] = field(default_factory=dict)
    claims: dict[tuple[str, str], ClaimFacts] = field(default_factory=dict)

    def add_object(self, obj: Mapping[str, Any]) -> None:
        """Learn from a Namespace, NetworkPolicy, Service, StorageClass or
        PersistentVolumeClaim; ignore anything else."""
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
        elif kind == "NetworkPolicy":
            if is_default_deny(obj):
                self.default_deny_namespaces.add(namespace)
            opened = ingress_opening(obj)
            if opened is not None:
                self.open_ingress.setdefault(namespace, {})[name] = opened
        elif kind == "Service":
            selector = (obj.get("spec") or {}).get("selector") or {}
            self.services[(namespace, name)] = dict(selector)
        elif kind == "StorageClass":
            self.storage_classes[name] = storage_class_facts(obj)
        elif kind == "PersistentVolumeClaim":
            self.claims[(namespace, name)] = claim_facts(obj)

    def namespace(self, name: str) -> NamespaceFacts:
        known = self.namespaces.get(name) or NamespaceFacts(name=name)
        deny = True if name in self.default_deny_namespaces else self.assume_default_deny
        return NamespaceFacts(
            name=name,
            labels=known.labels,
            annotations=known.annotations,
            has_default_deny=deny,
            open_ingress=tuple(sorted((self.open_ingress.get(name) or {}).items(), key=_first)),
        )

    def service_selector(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.services.get((namespace, name))

    def storage_class(self, name: str) -> StorageClassFacts | None:
        return self.storage_classes.get(name)

    def default_storage_class(self) -> StorageClassFacts | None:
        return pick_default(self.storage_classes.values())

    def claim(self, namespace: str, name: str) -> ClaimFacts | None:
        return self.claims.get((namespace, name))


@dataclass(frozen=True)
class ImageFacts:
    """What a registry look-up learned about one image, as the image rules read it.

    Gathered before evaluation (``modelward.registry.lookups``), so the engine never calls a
    registry. ``error`` is set when the look-up failed (and then nothing else may be known);
    a rule that needs a fact that is ``None`` treats it as unknown, never as compliant.
    ``digest`` is what the reference resolves to in the registry (an index's digest for a
    multi-platform tag: the value to pin), ``manifest_digest`` the chosen platform's manifest.
    ``forbidden_paths`` is ``None`` when the layers were not listed (no policy asked), else
    the paths from the policies' forbidden contents present in the final filesystem.
    ``trust`` holds the signature, vulnerability-report and model-signature evidence when a
    policy asked for it (``modelward.registry.trust``), else ``None``.
    """

    reference: str
    digest: str | None = None
    manifest_digest: str | None = None
    error: str | None = None
    user: str | None = None
    #: config ``created`` as POSIX seconds, None when absent or unreadable.
    created: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    compressed_size: int | None = None
    layer_count: int | None = None
    base_name: str | None = None
    base_digest: str | None = None
    forbidden_paths: tuple[str, ...] | None = None
    #: why the layers could not be listed (too large, too slow, unreadable), else None.
    contents_error: str | None = None
    trust: ImageTrust | None = None

    @property
    def found(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ImageLookups:
    """The looked-up images of the workload under review, keyed by the reference as written.

    ``now`` (POSIX seconds) is when the facts were gathered: the freshness rule ages images
    against it, so evaluation itself never reads a clock.
    """

    images: Mapping[str, ImageFacts] = field(default_factory=dict)
    now: float = 0.0

    def get(self, reference: str) -> ImageFacts | None:
        return self.images.get(reference)
