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

from modelward.engine.decision import Violation
from modelward.engine.facts import NamespaceFacts
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
