"""Gathering ``ImageFacts`` for the images of a workload before it is evaluated.

Admission (and ``modelward check --registry-lookups``) calls ``ImageInspector.lookups`` with the
references the policies that need look-ups select; every image is looked up concurrently under
one deadline below the webhook's timeout. An image whose look-up fails or overruns gets facts
with ``error`` set, never an exception, so a registry outage costs one deadline and is judged
by ``onLookupFailure``. Layer listings run on in the background past the deadline (bounded in
bytes and time) and land in the cache, so the next review of the same image has them.
"""

from __future__ import annotations

import asyncio
import calendar
import dataclasses
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelward.engine.facts import ImageFacts, ImageLookups
from modelward.engine.image_trust import ImageTrust
from modelward.engine.policy import ForbiddenContents, Policy
from modelward.engine.rules.images import ImageReference
from modelward.registry.auth import CredentialStore
from modelward.registry.cache import ContentCache, SingleFlight
from modelward.registry.client import (
    DIGEST,
    Manifest,
    RegistryClient,
    RegistryError,
    Repository,
)
from modelward.registry.layers import LayerError, LayerListing, LayerScan, final_paths
from modelward.registry.trust import (
    ClusterReports,
    TrustCache,
    TrustRequest,
    gather_trust,
    trust_request,
)

BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"


@dataclass(frozen=True)
class LookupSettings:
    """Bounds of one review's look-ups, and of the layer listings behind them."""

    #: The whole look-up of a review; below the review's budget (--deadline) and so below the
    #: webhook timeout, leaving time to evaluate and answer.
    deadline: float = 1.5
    #: Compressed bytes of one layer the listing reads, and how far it may unpack.
    max_layer_bytes: int = 2 << 30
    max_unpacked_bytes: int = 16 << 30
    #: A listing that runs longer is abandoned (it continues past a review's deadline).
    listing_timeout: float = 120.0
    listing_cache_entries: int = 16384


@dataclass(frozen=True)
class ImageRequest:
    """One image to look up, with what its policies need to know about it."""

    reference: str
    contents: ForbiddenContents | None = None
    insecure: frozenset[str] = frozenset()
    #: signatures, reports and model signatures to gather (``registry.trust``), if any.
    trust: TrustRequest | None = None


def requests_for(references: Iterable[str], policies: Iterable[Policy]) -> tuple[ImageRequest, ...]:
    """What to look up for a workload's images under the policies that select it: nothing
    unless some images section needs look-ups; the forbidden contents of all of them united."""
    policies = tuple(policies)
    names: set[str] = set()
    paths: set[str] = set()
    insecure: set[str] = set()
    reads = pins = False
    for policy in policies:
        images = policy.images
        if images is None or not images.needs_lookups:
            continue
        reads = reads or images.reads_images
        pins = pins or images.pins_tags
        insecure.update(images.insecure_registries)
        if images.forbidden_contents is not None:
            names.update(images.forbidden_contents.names)
            paths.update(images.forbidden_contents.paths)
    if not (reads or pins):
        return ()
    contents = (
        ForbiddenContents(tuple(sorted(names)), tuple(sorted(paths))) if names or paths else None
    )
    trust = trust_request(policies)
    return tuple(
        ImageRequest(reference, contents, frozenset(insecure), trust)
        for reference in dict.fromkeys(r for r in references if r)
        if reads or not _pinned(reference)  # pinning alone: only tags need resolving
    )


def _pinned(reference: str) -> bool:
    digest = ImageReference.parse(reference).digest
    return digest is not None and DIGEST.match(digest) is not None


class ImageInspector:
    """Looks images up through one shared ``RegistryClient``; keeps layer listings by digest."""

    def __init__(
        self,
        *,
        client: RegistryClient,
        settings: LookupSettings = LookupSettings(),
        wall_clock: Any = time.time,
        cluster_reports: ClusterReports | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self._wall_clock = wall_clock
        #: The Trivy Operator's reports by image digest (the operator's watch cache).
        self.cluster_reports = cluster_reports
        self._listings: ContentCache[tuple[str, ForbiddenContents], LayerListing] = ContentCache(
            max_bytes=settings.listing_cache_entries, weigh=lambda _listing: 1
        )
        self._listing_flights: SingleFlight[tuple[str, ForbiddenContents], LayerListing] = (
            SingleFlight()
        )
        self._facts: ContentCache[tuple[str, str, ForbiddenContents | None], ImageFacts] = (
            ContentCache(max_bytes=settings.listing_cache_entries, weigh=lambda _facts: 1)
        )
        self._trust = TrustCache(
            ttl=client.settings.tag_ttl, max_entries=settings.listing_cache_entries
        )
        self.lookups_started = 0

    async def lookups(
        self, requests: Iterable[ImageRequest], *, credentials: CredentialStore
    ) -> ImageLookups:
        """Facts for every requested image, each within the one deadline."""
        now = float(self._wall_clock())
        requests = tuple(requests)
        if not requests:
            return ImageLookups({}, now)
        known = {r.reference: self._cached(r) for r in requests}
        missing = [r for r in requests if known[r.reference] is None]
        if missing:  # a warm review (every image known) creates no task at all
            deadline = self.settings.deadline
            tasks = [
                asyncio.ensure_future(
                    _within(deadline, self.facts(request, credentials=credentials), request)
                )
                for request in missing
            ]
            for found in await asyncio.gather(*tasks):
                known[found.reference] = found
        return ImageLookups({k: v for k, v in known.items() if v is not None}, now)

    def _cached(self, request: ImageRequest) -> ImageFacts | None:
        """Facts already gathered for the digest this reference names (or its tag named a
        moment ago). Facts of a digest never change, so they are kept like content."""
        ref = ImageReference.parse(request.reference)
        if not ref.well_formed:
            return None
        digest = ref.digest
        if digest is None or DIGEST.match(digest) is None:
            digest = self.client.tags.get(ref.registry, ref.repository, ref.tag or "latest")
        if digest is None:
            return None
        hit = self._facts.get((ref.name, digest, request.contents))
        if hit is None:
            return None
        hit = dataclasses.replace(hit, reference=request.reference)
        if request.trust is None:
            return hit
        # Signatures can be added to a digest at any time: their evidence is kept briefly.
        trust = self._trust.get((ref.name, digest, request.trust))
        return self._with_trust(hit, trust) if trust is not None else None

    async def facts(self, request: ImageRequest, *, credentials: CredentialStore) -> ImageFacts:
        """What the registry says about one image; ``error`` set (not raised) on failure."""
        self.lookups_started += 1
        reference = request.reference
        ref = ImageReference.parse(reference)
        if not ref.well_formed:
            return ImageFacts(
                reference,
                error=f"{reference} is not a well-formed reference, so it cannot be looked up",
            )
        repo = Repository(ref.registry, ref.repository, credentials.for_registry(ref.registry))
        try:
            top, manifest = await self.client.platform_manifest(
                repo, ref.digest or ref.tag or "latest", insecure=request.insecure
            )
            where = repo.describe(manifest.digest)
            config_descriptor = manifest.config(where=where)
            layers = manifest.descriptors("layers", where=where)
            config_raw = await self.client.blob(
                repo,
                config_descriptor.digest,
                max_bytes=self.client.settings.max_config_bytes,
                insecure=request.insecure,
            )
            config = _config(config_raw, where=where)
        except RegistryError as error:
            return ImageFacts(reference, error=str(error))
        labels = _labels(config)
        annotations = {**top.annotations, **manifest.annotations}
        forbidden_paths, contents_error = None, None
        if request.contents is not None:
            forbidden_paths, contents_error = await self._contents(
                repo, manifest, request.contents, request.insecure
            )
        runtime = config.get("config") if isinstance(config.get("config"), Mapping) else {}
        user = runtime.get("User") if isinstance(runtime, Mapping) else None
        found = ImageFacts(
            reference,
            digest=top.digest,
            manifest_digest=manifest.digest,
            user=user if isinstance(user, str) else "",
            created=_created(config.get("created")),
            labels=labels,
            annotations=annotations,
            compressed_size=sum(layer.size for layer in layers) + config_descriptor.size,
            layer_count=len(layers),
            base_name=annotations.get(BASE_NAME) or labels.get(BASE_NAME),
            base_digest=annotations.get(BASE_DIGEST) or labels.get(BASE_DIGEST),
            forbidden_paths=forbidden_paths,
            contents_error=contents_error,
        )
        if contents_error is None:
            self._facts.put((ref.name, top.digest, request.contents), found)
        if request.trust is None:
            return found
        trust = await gather_trust(
            self.client,
            repo,
            digest=top.digest,
            manifest=manifest,
            request=request.trust,
            insecure=request.insecure,
        )
        if trust.error is None:
            self._trust.put((ref.name, top.digest, request.trust), trust)
        return self._with_trust(found, trust)

    def _with_trust(self, found: ImageFacts, trust: ImageTrust) -> ImageFacts:
        """``found`` with its trust evidence, plus the cluster's reports read now (they come
        from the watch cache, so a new report counts at once)."""
        if self.cluster_reports is not None and trust.error is None:
            reports = [
                report
                for digest in dict.fromkeys((found.digest, found.manifest_digest))
                if digest
                for report in self.cluster_reports(digest)
            ]
            trust = dataclasses.replace(trust, reports=trust.reports + tuple(reports))
        return dataclasses.replace(found, trust=trust)

    async def _contents(
        self,
        repo: Repository,
        manifest: Manifest,
        contents: ForbiddenContents,
        insecure: frozenset[str],
    ) -> tuple[tuple[str, ...] | None, str | None]:
        where = repo.describe(manifest.digest)
        try:
            layers = manifest.descriptors("layers", where=where)
            listings = await asyncio.gather(
                *(
                    self._listing(repo, layer.digest, layer.media_type, contents, insecure)
                    for layer in layers
                )
            )
        except (RegistryError, LayerError) as error:
            return None, f"the layers of {where} could not be listed: {error}"
        return final_paths(listings), None

    async def _listing(
        self,
        repo: Repository,
        digest: str,
        media_type: str,
        contents: ForbiddenContents,
        insecure: frozenset[str],
    ) -> LayerListing:
        key = (digest, contents)
        cached = self._listings.get(key)
        if cached is not None:
            return cached

        async def scan() -> LayerListing:
            async with asyncio.timeout(self.settings.listing_timeout):
                listing = LayerScan(
                    media_type=media_type,
                    contents=contents,
                    max_bytes=self.settings.max_unpacked_bytes,
                )
                async for chunk in self.client.blob_chunks(
                    repo, digest, max_bytes=self.settings.max_layer_bytes, insecure=insecure
                ):
                    listing.feed(chunk)
                result = listing.result()
            self._listings.put(key, result)
            return result

        try:
            return await self._listing_flights.run(key, scan)
        except TimeoutError:
            raise RegistryError(
                f"{repo.describe(digest)}: listing the layer took longer than "
                f"{self.settings.listing_timeout:g} s"
            ) from None


async def _within(deadline: float, work: Any, request: ImageRequest) -> ImageFacts:
    try:
        async with asyncio.timeout(deadline):
            facts: ImageFacts = await work
            return facts
    except TimeoutError:
        return ImageFacts(
            request.reference,
            error=f"the registry look-up of {request.reference} did not finish within "
            f"{deadline:g} s (slow or unreachable registry); it goes on in the background, "
            "retry shortly",
        )


def _config(raw: bytes, *, where: str) -> Mapping[str, Any]:
    try:
        config = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RegistryError(f"{where}: the image config is not JSON") from None
    if not isinstance(config, Mapping):
        raise RegistryError(f"{where}: the image config is not a JSON object")
    return config


def _labels(config: Mapping[str, Any]) -> dict[str, str]:
    runtime = config.get("config")
    labels = runtime.get("Labels") if isinstance(runtime, Mapping) else None
    if not isinstance(labels, Mapping):
        return {}
    return {str(k): v for k, v in labels.items() if isinstance(v, str)}


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(Z|z|[+-]\d{2}:\d{2})\Z"
)


def _created(value: Any) -> float | None:
    """RFC 3339 ``created`` as POSIX seconds (fractions and offsets of any length)."""
    if not isinstance(value, str):
        return None
    match = _RFC3339.match(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    offset = match.group(7)
    try:
        seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if offset not in ("Z", "z"):
        sign = 1 if offset[0] == "+" else -1
        seconds -= sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
    return float(seconds)
