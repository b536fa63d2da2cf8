"""One workload abstraction: every kind that stamps out pods, mapped to its pod spec.

Admission, audit and the CLI all see a Pod, a Deployment or a CronJob through this type, so a
rule is written once against a pod spec and applies to every controller (the Connaisseur idea).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

#: kind -> JSON pointer tokens of the pod template (metadata + spec) inside the object.
TEMPLATE_POINTERS: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}

CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


class UnsupportedKind(ValueError):
    """The object is not a kind that creates pods."""


@dataclass(frozen=True)
class ContainerRef:
    """A container inside a pod spec, with where it sits (for messages and patches)."""

    list_name: str
    index: int
    spec: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.spec.get("name", f"{self.list_name}[{self.index}]"))

    @property
    def path(self) -> tuple[str | int, ...]:
        """Pointer tokens of the container relative to the pod spec."""
        return (self.list_name, self.index)

    @property
    def is_init(self) -> bool:
        return self.list_name == "initContainers"

    @property
    def is_ephemeral(self) -> bool:
        return self.list_name == "ephemeralContainers"

    @property
    def describe(self) -> str:
        kind = {"initContainers": "init container", "ephemeralContainers": "ephemeral container"}
        return f'{kind.get(self.list_name, "container")} "{self.name}"'


def escape_pointer_token(token: str | int) -> str:
    """RFC 6901 escaping: label keys such as ``nvidia.com/gpu.present`` contain a slash."""
    return str(token).replace("~", "~0").replace("/", "~1")


def json_pointer(tokens: tuple[str | int, ...]) -> str:
    return "".join("/" + escape_pointer_token(t) for t in tokens)


@dataclass(frozen=True)
class Workload:
    """A pod or a pod-creating object, seen through its pod template.

    ``pod_spec`` is the object's own dict (not a copy): rules must not mutate it.
    """

    kind: str
    namespace: str
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    pod_spec: Mapping[str, Any]
    template_pointer: tuple[str, ...]
    #: The template's (or pod's) own metadata, when the object has one.
    template_metadata: Mapping[str, Any] | None = None
    #: Names of the object's controller owners (a pod's ReplicaSet, a ReplicaSet's
    #: Deployment): policy exceptions that name a workload cover what it creates.
    owners: tuple[str, ...] = ()
    #: A StatefulSet's ``volumeClaimTemplates``: the claims its pods will mount (storage rules).
    claim_templates: tuple[Mapping[str, Any], ...] = ()

    @property
    def pod_spec_pointer(self) -> tuple[str, ...]:
        return (*self.template_pointer, "spec")

    @property
    def display_name(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def containers(self) -> Iterator[ContainerRef]:
        """Init, regular and ephemeral containers, in that order."""
        return iter(self._containers)

    @functools.cached_property
    def _containers(self) -> tuple[ContainerRef, ...]:
        """Listed once per workload: every rule family of every policy walks them."""
        return tuple(
            ContainerRef(list_name, index, spec)
            for list_name in CONTAINER_LISTS
            if isinstance(items := self.pod_spec.get(list_name) or [], list)
            for index, spec in enumerate(items)
            if isinstance(spec, Mapping)
        )

    def serving_containers(self) -> Iterator[ContainerRef]:
        """The long-running containers (not init, not ephemeral)."""
        return (c for c in self.containers() if c.list_name == "containers")


def _dig(obj: Mapping[str, Any], tokens: tuple[str, ...]) -> Mapping[str, Any]:
    current: Any = obj
    for token in tokens:
        current = current.get(token) if isinstance(current, Mapping) else None
        if current is None:
            return {}
    return current if isinstance(current, Mapping) else {}


def _string_map(value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def workload_from_object(obj: Mapping[str, Any], *, namespace: str | None = None) -> Workload:
    """The workload view of a Kubernetes object; ``UnsupportedKind`` for other kinds.

    ``namespace`` fills in objects without one (a create request carries it separately).
    """
    kind = str(obj.get("kind", ""))
    pointer = TEMPLATE_POINTERS.get(kind)
    if pointer is None:
        raise UnsupportedKind(f"{kind or 'an object without kind'} does not create pods")
    metadata = obj.get("metadata") or {}
    template = _dig(obj, pointer)
    raw_metadata = template.get("metadata")
    template_metadata: Mapping[str, Any] = raw_metadata if isinstance(raw_metadata, Mapping) else {}
    name = metadata.get("name") or (str(metadata.get("generateName", "")) + "*")
    return Workload(
        kind=kind,
        namespace=str(metadata.get("namespace") or namespace or "default"),
        name=str(name),
        labels=_string_map(template_metadata.get("labels")),
        annotations=_string_map(template_metadata.get("annotations")),
        pod_spec=_dig(template, ("spec",)),
        template_pointer=pointer,
        template_metadata=template_metadata if isinstance(raw_metadata, Mapping) else None,
        owners=_controller_owners(metadata),
        claim_templates=_claim_templates(obj) if kind == "StatefulSet" else (),
    )


def _controller_owners(metadata: Mapping[str, Any]) -> tuple[str, ...]:
    refs = metadata.get("ownerReferences")
    if not isinstance(refs, list):
        return ()
    return tuple(
        str(r["name"])
        for r in refs
        if isinstance(r, Mapping) and r.get("controller") and isinstance(r.get("name"), str)
    )


def _claim_templates(obj: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    spec = obj.get("spec")
    templates = spec.get("volumeClaimTemplates") if isinstance(spec, Mapping) else None
    if not isinstance(templates, list):
        return ()
    return tuple(t for t in templates if isinstance(t, Mapping))
