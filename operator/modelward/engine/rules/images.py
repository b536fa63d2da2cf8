"""Image rules (MW-IMG-*): digests, registries, tags — for containers and image volumes.

Image volumes (``volumes[].image.reference``) carry models as OCI artifacts, so they are held to
the same rules as container images.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from modelward.engine.decision import Remedy, Violation
from modelward.engine.facts import ImageFacts, ImageLookups, NamespaceFacts
from modelward.engine.policy import ImagesConfig
from modelward.engine.workloads import Workload

DIGEST = re.compile(r"^[a-z0-9]++(?:[.+_-][a-z0-9]++)*+:[0-9a-fA-F]{32,}+\Z")


#: A repository path by the distribution reference grammar: components of lower-case letters
#: and digits joined by '.', '_', '__' or dashes, separated by '/'. Every quantifier is
#: possessive and the separators are disjoint from the letters, so a long path is read once.
_COMPONENT = r"[a-z0-9]++(?:(?:[._]|__|-++)[a-z0-9]++)*+"
REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*+")
#: A registry host: DNS name or IPv4 address, or a bracketed IPv6 address, and a port.
REGISTRY_HOST = re.compile(r"(?:[A-Za-z0-9.-]++|\[[0-9A-Fa-f:.]++\])(?::[0-9]{1,5})?+")
DEFAULT_REGISTRY = "docker.io"


@dataclass(frozen=True)
class ImageReference:
    """A parsed image reference, normalised the way container runtimes resolve it.

    The registry is the first ``/``-separated component only if it looks like a host (contains
    ``.`` or ``:``, is ``localhost``, or has an upper-case letter, which a repository cannot);
    otherwise the image is on Docker Hub, whose official images live under ``library/``. The
    registry is lower-cased (host names are case-insensitive) and ``index.docker.io`` is
    ``docker.io``, as in containerd's and Docker's own parser.
    """

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def well_formed(self) -> bool:
        """Host and every repository component follow the reference grammar.

        A runtime refuses to pull anything else, so a reference that fails this cannot be
        trusted to name the registry the parse found (``a/../b``, ``host/Path``, ``h/p:t:u``).
        """
        return (
            REGISTRY_HOST.fullmatch(self.registry) is not None
            and REPOSITORY.fullmatch(self.repository) is not None
        )

    @classmethod
    def parse(cls, reference: str) -> ImageReference:
        rest, _, digest = reference.partition("@")
        first, slash, remainder = rest.partition("/")
        is_host = "." in first or ":" in first or first == "localhost" or first != first.lower()
        if slash and is_host:
            registry, path = first.lower(), remainder
        else:
            registry, path = DEFAULT_REGISTRY, rest
        if registry == "index.docker.io":
            registry = DEFAULT_REGISTRY
        tag = None
        last_slash = path.rfind("/")
        colon = path.rfind(":")
        if colon > last_slash:
            path, tag = path[:colon], path[colon + 1 :]
        if registry == DEFAULT_REGISTRY and "/" not in path:
            path = f"library/{path}"
        return cls(registry, path, tag or None, digest or None)


@dataclass(frozen=True)
class RegistryPattern:
    """One ``allowedRegistries`` entry: a host glob, and a repository glob by component.

    ``registry.example.com`` allows every repository on that host; ``*.example.com/models/*``
    allows repositories one level under ``models/`` on any subdomain. ``*`` and ``?`` never
    cross a ``/`` (they are matched within one component), so ``*.example.com/*`` does not
    admit ``evil.com/x.example.com/foo``; a whole component ``**`` matches any number of
    components (``registry.example.com/models/**``).
    """

    host: str
    path: tuple[str, ...] | None

    @classmethod
    def parse(cls, pattern: str) -> RegistryPattern:
        host, slash, path = pattern.strip("/").partition("/")
        return cls(host.lower(), tuple(path.split("/")) if slash and path else None)

    def matches(self, ref: ImageReference) -> bool:
        if not fnmatch.fnmatchcase(ref.registry, self.host):
            return False
        return self.path is None or _path_matches(ref.repository.split("/"), self.path)


def _path_matches(parts: list[str], pattern: tuple[str, ...]) -> bool:
    """Component globs with ``**`` for any depth: a set of pattern positions, one step per
    component (no backtracking, so the cost is components x pattern length)."""
    if "**" not in pattern:  # one component each: the depth must be the same
        return len(parts) == len(pattern) and all(map(fnmatch.fnmatchcase, parts, pattern))

    def closure(states: set[int]) -> set[int]:
        for index in sorted(states):  # '**' may also match no component at all
            while index < len(pattern) and pattern[index] == "**":
                index += 1
                states.add(index)
        return states

    states = closure({0})
    for part in parts:
        following = set()
        for index in states:
            if index == len(pattern):
                continue
            if pattern[index] == "**":
                following.add(index)
            elif fnmatch.fnmatchcase(part, pattern[index]):
                following.add(index + 1)
        states = closure(following)
        if not states:
            return False
    return len(pattern) in states


@functools.lru_cache(maxsize=256)
def registry_patterns(patterns: tuple[str, ...]) -> tuple[RegistryPattern, ...]:
    """Compiled once per policy's pattern tuple, not on every image."""
    return tuple(RegistryPattern.parse(p) for p in patterns)


def _images(w: Workload) -> Iterator[tuple[str, str, tuple[str | int, ...]]]:
    """(where, reference, path of the reference in the pod spec) for every container and
    image volume."""
    for c in w.containers():
        yield c.describe, str(c.spec.get("image") or ""), (*c.path, "image")
    for index, volume in enumerate(w.pod_spec.get("volumes") or []):
        if isinstance(volume, Mapping) and isinstance(volume.get("image"), Mapping):
            yield (
                f'image volume "{volume.get("name")}"',
                str(volume["image"].get("reference") or ""),
                ("volumes", index, "image", "reference"),
            )


def image_references(w: Workload) -> tuple[str, ...]:
    """Every image a workload names (containers and image volumes), for look-ups."""
    return tuple(dict.fromkeys(reference for _, reference, _ in _images(w) if reference))


def check_images(
    w: Workload,
    ns: NamespaceFacts,
    cfg: ImagesConfig,
    *,
    images: ImageLookups | None = None,
) -> Iterator[Violation]:
    for where, reference, path in _images(w):
        if not reference:
            continue  # the API server itself requires an image on containers
        ref = ImageReference.parse(reference)
        pinned = ref.digest is not None and DIGEST.match(ref.digest) is not None
        facts = images.get(reference) if images is not None and cfg.needs_lookups else None
        if cfg.require_digest and not pinned:
            resolved = facts.digest if facts is not None and ref.well_formed else None
            yield Violation(
                "MW-IMG-001",
                f"image {reference} is not pinned by digest"
                + (f" (the registry resolves it to {resolved})" if resolved else ""),
                f"use {ref.name}@sha256:<digest> (e.g. from `crane digest` or your registry)"
                if resolved is None
                else f"pin it: {reference}@{resolved}",
                container=where,
                remedies=(Remedy(path, f"{reference}@{resolved}"),) if resolved else (),
            )
        if cfg.allowed_registries and not ref.well_formed:
            yield Violation(
                "MW-IMG-002",
                f"image {reference} is not a well-formed reference, so its registry is unknown",
                "write it as host/repository[:tag][@digest], the repository in lower case",
                container=where,
            )
        elif cfg.allowed_registries and not _allowed(ref, cfg.allowed_registries):
            yield Violation(
                "MW-IMG-002",
                f"image {reference} ({ref.registry}/{ref.repository}) is not from an allowed "
                "registry",
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
        if cfg.reads_images and images is not None:
            yield from _looked_up(where, reference, cfg, facts, images.now)


def _looked_up(
    where: str, reference: str, cfg: ImagesConfig, facts: ImageFacts | None, now: float
) -> Iterator[Violation]:
    """The rules that read the image itself (MW-IMG-004..010), from facts gathered before."""
    if facts is None or facts.error is not None:
        yield _lookup_failed(
            where,
            reference,
            cfg,
            facts.error if facts is not None and facts.error else "it was not looked up",
        )
        return
    if cfg.require_non_root_user and not _non_root(facts.user):
        yield Violation(
            "MW-IMG-004",
            f"image {reference} runs as {facts.user or 'root (no USER set)'} by default",
            "set a non-root numeric USER in the image (e.g. USER 65532:65532) and rebuild it",
            container=where,
        )
    if cfg.max_size_mib is not None and facts.compressed_size is not None:
        limit = cfg.max_size_mib << 20
        if facts.compressed_size > limit:
            yield Violation(
                "MW-IMG-005",
                f"image {reference} is {facts.compressed_size / (1 << 20):.1f} MiB compressed, "
                f"over the {cfg.max_size_mib} MiB allowed",
                "slim the image (multi-stage build, distroless base), or raise maxSizeMiB",
                container=where,
            )
    layers = facts.layer_count
    if cfg.max_layers is not None and layers is not None and layers > cfg.max_layers:
        yield Violation(
            "MW-IMG-006",
            f"image {reference} has {layers} layers, over the {cfg.max_layers} allowed",
            "squash the build into fewer layers, or raise maxLayers",
            container=where,
        )
    if cfg.allowed_base_images and not _base_allowed(facts.base_name, cfg.allowed_base_images):
        yield Violation(
            "MW-IMG-007",
            f"image {reference} "
            + (
                f"is built on {facts.base_name}, not an allowed base image"
                if facts.base_name
                else "does not declare its base image (org.opencontainers.image.base.name)"
            ),
            f"build it FROM one of {', '.join(cfg.allowed_base_images)} and record it in the "
            "annotation or label org.opencontainers.image.base.name",
            container=where,
        )
    if cfg.forbidden_contents is not None:
        if facts.forbidden_paths is None:
            yield _lookup_failed(
                where,
                reference,
                cfg,
                facts.contents_error or "its layers were not listed",
            )
        elif facts.forbidden_paths:
            shown = ", ".join("/" + p for p in facts.forbidden_paths[:5])
            more = len(facts.forbidden_paths) - 5
            yield Violation(
                "MW-IMG-008",
                f"image {reference} contains {shown}" + (f" and {more} more" if more > 0 else ""),
                "build a minimal image without a shell or package manager (distroless, or "
                "a scratch-based final stage)",
                container=where,
            )
    if cfg.max_age_days is not None:
        if facts.created is None:
            yield Violation(
                "MW-IMG-009",
                f"image {reference} does not say when it was built (no config 'created')",
                "build it with a tool that records 'created', and rebuild it regularly",
                container=where,
            )
        elif now - facts.created > cfg.max_age_days * 86400:
            days = int((now - facts.created) // 86400)
            yield Violation(
                "MW-IMG-009",
                f"image {reference} was built {days} days ago, over the "
                f"{cfg.max_age_days} days allowed",
                "rebuild it on a patched base image and deploy the new digest",
                container=where,
            )


def _lookup_failed(where: str, reference: str, cfg: ImagesConfig, error: str) -> Violation:
    return Violation(
        "MW-IMG-010",
        f"image {reference} could not be judged: {error}",
        "make the registry reachable to modelward (address, pull secret, CA bundle) and retry"
        + ("" if cfg.on_lookup_failure == "Warn" else ", or set onLookupFailure: Warn"),
        container=where,
        advisory=cfg.on_lookup_failure == "Warn",
    )


def _non_root(user: str | None) -> bool:
    """A USER that is not root by name or number (``uid``, ``uid:gid``, ``name:group``)."""
    if not user:
        return False
    name = user.partition(":")[0]
    return name not in ("", "root", "0") and not (name.isdigit() and int(name) == 0)


def _base_allowed(base: str | None, patterns: tuple[str, ...]) -> bool:
    if not base:
        return False
    name = base.partition("@")[0]
    return any(
        fnmatch.fnmatchcase(base, pattern) or fnmatch.fnmatchcase(name, pattern)
        for pattern in patterns
    )


#: Names longer than this are judged afresh, so the memory below stays small.
MAX_REMEMBERED_NAME = 512


def _allowed(ref: ImageReference, patterns: tuple[str, ...]) -> bool:
    if len(ref.registry) + len(ref.repository) > MAX_REMEMBERED_NAME:
        return _judge_name(ref.registry, ref.repository, patterns)
    return _remembered_name(ref.registry, ref.repository, patterns)


def _judge_name(registry: str, repository: str, patterns: tuple[str, ...]) -> bool:
    ref = ImageReference(registry, repository, None, None)
    return any(p.matches(ref) for p in registry_patterns(patterns))


#: Remembered: every replica, and the workload that made it, names the same images.
_remembered_name = functools.lru_cache(maxsize=1024)(_judge_name)
