"""Image rules (MW-IMG-*): digests, registries, tags — for containers and image volumes.

Image volumes (``volumes[].image.reference``) carry models as OCI artifacts, so they are held to
the same rules as container images.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from modelward.engine.decision import Violation
from modelward.engine.facts import NamespaceFacts
from modelward.engine.policy import ImagesConfig
from modelward.engine.selectors import matches_any_glob
from modelward.engine.workloads import Workload

DIGEST = re.compile(r"^[a-z0-9]++(?:[.+_-][a-z0-9]++)*+:[0-9a-fA-F]{32,}+\Z")


@dataclass(frozen=True)
class ImageReference:
    """A parsed image reference, normalised the way container runtimes resolve it."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @classmethod
    def parse(cls, reference: str) -> ImageReference:
        rest, _, digest = reference.partition("@")
        first, slash, remainder = rest.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, remainder
        else:
            registry, path = "docker.io", rest
        tag = None
        last_slash = path.rfind("/")
        colon = path.rfind(":")
        if colon > last_slash:
            path, tag = path[:colon], path[colon + 1 :]
        if registry == "docker.io" and "/" not in path:
            path = f"library/{path}"
        return cls(registry, path, tag or None, digest or None)


def _images(w: Workload) -> Iterator[tuple[str, str]]:
    """(where, reference) for every container and image volume."""
    for c in w.containers():
        yield c.describe, str(c.spec.get("image") or "")
    for volume in w.pod_spec.get("volumes") or []:
        if isinstance(volume, Mapping) and isinstance(volume.get("image"), Mapping):
            yield (
                f'image volume "{volume.get("name")}"',
                str(volume["image"].get("reference") or ""),
            )


def check_images(w: Workload, ns: NamespaceFacts, cfg: ImagesConfig) -> Iterator[Violation]:
    for where, reference in _images(w):
        if not reference:
            continue  # the API server itself requires an image on containers
        ref = ImageReference.parse(reference)
        pinned = ref.digest is not None and DIGEST.match(ref.digest) is not None
        if cfg.require_digest and not pinned:
            yield Violation(
                "MW-IMG-001",
                f"image {reference} is not pinned by digest",
                f"use {ref.name}@sha256:<digest> (e.g. from `crane digest` or your registry)",
                container=where,
            )
        if cfg.allowed_registries and not _allowed(ref, cfg.allowed_registries):
            yield Violation(
                "MW-IMG-002",
                f"image {reference} is not from an allowed registry",
                f"use an image from: {', '.join(cfg.allowed_registries)}",
                container=where,
            )
        tag = ref.tag or ("latest" if ref.digest is None else None)
        if tag is not None and not pinned and tag in cfg.forbidden_tags:
            yield Violation(
                "MW-IMG-003",
                f"image {reference} uses the forbidden tag {tag!r}"
                + ("" if ref.tag else " (no tag means latest)"),
                "use a versioned tag, and pin it by digest",
                container=where,
            )


def _allowed(ref: ImageReference, patterns: tuple[str, ...]) -> bool:
    for pattern in patterns:
        if "/" not in pattern.rstrip("/"):
            if matches_any_glob(ref.registry, (pattern.rstrip("/"),)):
                return True
        elif matches_any_glob(ref.name, (pattern,)):
            return True
    return False
