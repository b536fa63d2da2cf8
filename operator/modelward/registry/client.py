"""An async client for the OCI distribution spec v1.1, on the aiohttp modelward already runs.

What admission needs and nothing else: resolve a tag, read a manifest (choosing the platform's
manifest in an index), read a blob (bounded, or streamed), list referrers (the v1.1 API, or the
tag-schema fallback ``sha256-<hex>``, and cosign's ``.sig`` / ``.att`` tags). Every manifest
and blob is checked against its digest before it is believed, so a registry (or anything
between) can serve an error, never a substitute. Anonymous, basic and bearer-token access
(the ``WWW-Authenticate`` challenge); TLS with the system roots plus custom CA bundles; plain
HTTP only to registries a policy lists as insecure. oras-py was measured against this and not
chosen: see docs/images.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from modelward.registry.auth import Credentials
from modelward.registry.cache import ContentCache, SingleFlight, TagCache

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))

#: Registries may refuse manifests over 4 MiB (distribution spec); a larger one is not believed.
MAX_MANIFEST_BYTES = 4 << 20
DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})\Z")
_HASHES = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(Exception):
    """A look-up that failed; the message names the image, what went wrong and the fix."""


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor (the parts the rules read)."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    platform: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Any, *, where: str) -> Descriptor:
        if not isinstance(raw, Mapping):
            raise RegistryError(f"{where}: a descriptor is not an object")
        digest, size = raw.get("digest"), raw.get("size")
        if not isinstance(digest, str) or DIGEST.match(digest) is None:
            raise RegistryError(f"{where}: descriptor digest {digest!r} is not a digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise RegistryError(f"{where}: descriptor size {size!r} is not a byte count")
        annotations = raw.get("annotations") or {}
        platform = raw.get("platform") or {}
        return cls(
            media_type=str(raw.get("mediaType") or ""),
            digest=digest,
            size=size,
            annotations=_strings(annotations),
            artifact_type=raw.get("artifactType")
            if isinstance(raw.get("artifactType"), str)
            else None,
            platform=_strings(platform),
        )


def _strings(raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, str)}


@dataclass(frozen=True)
class Manifest:
    """A manifest or index whose bytes matched ``digest``."""

    digest: str
    media_type: str
    raw: bytes = field(repr=False)
    document: Mapping[str, Any] = field(repr=False)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES or (
            "manifests" in self.document and "layers" not in self.document
        )

    def descriptors(self, key: str, *, where: str) -> tuple[Descriptor, ...]:
        raw = self.document.get(key) or []
        if not isinstance(raw, list):
            raise RegistryError(f"{where}: manifest field {key!r} is not a list")
        return tuple(Descriptor.parse(item, where=where) for item in raw)

    @property
    def annotations(self) -> dict[str, str]:
        return _strings(self.document.get("annotations"))

    def config(self, *, where: str) -> Descriptor:
        return Descriptor.parse(self.document.get("config"), where=where)


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{_HASHES[algorithm](data).hexdigest()}"


def check_digest(data: bytes, digest: str, *, what: str) -> None:
    """Refuse content that is not what its digest names."""
    algorithm = digest.partition(":")[0]
    if algorithm not in _HASHES:
        raise RegistryError(f"{what}: digest algorithm {algorithm!r} is not supported")
    if digest_of(data, algorithm) != digest:
        raise RegistryError(
            f"{what}: the content served does not match digest {digest}; the registry (or a "
            "proxy) altered it, so it is not believed"
        )


@dataclass(frozen=True)
class Repository:
    """Where to read: registry host[:port], repository path, and the credentials for it."""

    registry: str
    repository: str
    credentials: Credentials | None = None

    def describe(self, reference: str = "") -> str:
        sep = "@" if reference.startswith("sha") else ":"
        return f"{self.registry}/{self.repository}" + (f"{sep}{reference}" if reference else "")


@dataclass(frozen=True)
class RegistrySettings:
    """How look-ups reach registries; one per process, built at start-up."""

    #: os/architecture[/variant] chosen from an index, as the nodes run it.
    platform: str = "linux/amd64"
    #: Extra CA bundles (PEM files) trusted besides the system roots.
    ca_bundles: tuple[str, ...] = ()
    #: Per HTTP request; the whole look-up has its own, shorter deadline (lookups.py).
    request_timeout: float = 10.0
    max_concurrency: int = 16
    tag_ttl: float = 30.0
    content_cache_bytes: int = 64 << 20
    max_config_bytes: int = 8 << 20


#: The host that serves Docker Hub's API (``docker.io`` names it in references only).
_API_HOSTS = {"docker.io": "registry-1.docker.io"}


class RegistryClient:
    """One client per process: shares a connection pool, the caches and the token store.

    ``insecure`` (per call) lists registries that may be read over plain HTTP; any other is
    read over HTTPS, verified against the system roots and ``settings.ca_bundles``.
    """

    def __init__(
        self,
        *,
        settings: RegistrySettings = RegistrySettings(),
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.settings = settings
        self._session = session
        self._own_session = session is None
        self._ssl = _ssl_context(settings.ca_bundles)
        self._limit = asyncio.Semaphore(settings.max_concurrency)
        self.content: ContentCache[str, bytes] = ContentCache(
            max_bytes=settings.content_cache_bytes, weigh=len
        )
        self.tags = TagCache(ttl=settings.tag_ttl)
        self._flights: SingleFlight[tuple[str, ...], Any] = SingleFlight()
        #: (registry, repository, user) -> (Authorization header, expiry on the monotonic clock)
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self.requests = 0

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.request_timeout),
                connector=aiohttp.TCPConnector(limit=self.settings.max_concurrency),
            )
        return self._session

    # -- public API -------------------------------------------------------------------------

    async def resolve(
        self, repo: Repository, tag: str, *, insecure: frozenset[str] = frozenset()
    ) -> str:
        """The digest a tag points to now (HEAD, then GET if the registry omits the header)."""
        cached = self.tags.get(repo.registry, repo.repository, tag)
        if cached is not None:
            return cached
        key = ("resolve", repo.registry, repo.repository, tag, _user(repo))
        digest: str = await self._flights.run(key, lambda: self._resolve(repo, tag, insecure))
        return digest

    async def manifest(
        self, repo: Repository, reference: str, *, insecure: frozenset[str] = frozenset()
    ) -> Manifest:
        """A manifest or index by tag or digest, its bytes checked against the digest."""
        if DIGEST.match(reference) is not None:
            cached = self.content.get(reference)
            if cached is not None:
                return _parse_manifest(cached, reference, "", where=repo.describe(reference))
        key = ("manifest", repo.registry, repo.repository, reference, _user(repo))
        manifest: Manifest = await self._flights.run(
            key, lambda: self._manifest(repo, reference, insecure)
        )
        return manifest

    async def platform_manifest(
        self, repo: Repository, reference: str, *, insecure: frozenset[str] = frozenset()
    ) -> tuple[Manifest, Manifest]:
        """(what the reference names, the image manifest for the configured platform)."""
        top = await self.manifest(repo, reference, insecure=insecure)
        if not top.is_index:
            return top, top
        where = repo.describe(top.digest)
        wanted = self.settings.platform.split("/")
        offered: list[str] = []
        for descriptor in top.descriptors("manifests", where=where):
            platform = descriptor.platform
            name = "/".join(
                p
                for p in (platform.get("os"), platform.get("architecture"), platform.get("variant"))
                if p
            )
            offered.append(name or "unknown")
            if [platform.get("os"), platform.get("architecture")] == wanted[:2] and (
                len(wanted) < 3 or platform.get("variant") == wanted[2]
            ):
                return top, await self.manifest(repo, descriptor.digest, insecure=insecure)
        raise RegistryError(
            f"{where}: the index has no {self.settings.platform} manifest (it offers "
            f"{', '.join(offered) or 'none'}); build the image for {self.settings.platform} or "
            "set the operator's --registry-platform"
        )

    async def blob(
        self,
        repo: Repository,
        digest: str,
        *,
        max_bytes: int,
        insecure: frozenset[str] = frozenset(),
    ) -> bytes:
        """A small blob (an image config, a signature), checked against its digest."""
        cached = self.content.get(digest)
        if cached is not None:
            return cached
        key = ("blob", repo.registry, repo.repository, digest, _user(repo))
        data: bytes = await self._flights.run(
            key, lambda: self._blob(repo, digest, max_bytes, insecure)
        )
        return data

    async def blob_chunks(
        self,
        repo: Repository,
        digest: str,
        *,
        max_bytes: int,
        insecure: frozenset[str] = frozenset(),
    ) -> AsyncIterator[bytes]:
        """A large blob (a layer) in chunks, never held whole; after the last chunk the digest
        is checked, and a mismatch raises, so the consumer must discard what it read unless
        the iteration ends normally."""
        _require_digest(digest, where=repo.describe(digest))
        algorithm = digest.partition(":")[0]
        hasher = _HASHES[algorithm]()
        total = 0
        async with (
            self._limit,
            await self._request("GET", repo, f"blobs/{digest}", insecure=insecure) as response,
        ):
            _expect_ok(response, repo.describe(digest), "blob")
            async for chunk in response.content.iter_chunked(1 << 16):
                total += len(chunk)
                if total > max_bytes:
                    raise RegistryError(
                        f"{repo.describe(digest)}: the layer is larger than the "
                        f"{max_bytes >> 20} MiB the look-up may read; raise the bound or "
                        "use a smaller image"
                    )
                hasher.update(chunk)
                yield chunk
        if f"{algorithm}:{hasher.hexdigest()}" != digest:
            raise RegistryError(
                f"{repo.describe(digest)}: the layer served does not match its digest, so "
                "it is not believed"
            )

    async def referrers(
        self,
        repo: Repository,
        digest: str,
        *,
        artifact_type: str | None = None,
        insecure: frozenset[str] = frozenset(),
    ) -> tuple[Descriptor, ...]:
        """The artifacts that refer to ``digest``: the referrers API, or (registry without
        it, 404) the index under the fallback tag ``sha256-<hex>``."""
        _require_digest(digest, where=repo.describe(digest))
        where = repo.describe(digest)
        path = f"referrers/{digest}"
        if artifact_type:
            path += "?" + urllib.parse.urlencode({"artifactType": artifact_type})
        async with (
            self._limit,
            await self._request("GET", repo, path, insecure=insecure, accept=OCI_INDEX) as response,
        ):
            if response.status == 200:
                raw = await _read_bounded(response, MAX_MANIFEST_BYTES, where=where)
                index = _parse_manifest(raw, None, OCI_INDEX, where=where)
                found = index.descriptors("manifests", where=where)
                filtered = "artifactType" in response.headers.get("OCI-Filters-Applied", "")
                if artifact_type and not filtered:
                    found = tuple(d for d in found if d.artifact_type == artifact_type)
                return found
            if response.status != 404:
                _expect_ok(response, where, "referrers list")
        fallback = await self.tag_manifest(repo, "-".join(digest.split(":", 1)), insecure=insecure)
        if fallback is None:
            return ()
        found = fallback.descriptors("manifests", where=where)
        if artifact_type:
            found = tuple(d for d in found if d.artifact_type == artifact_type)
        return found

    async def tag_manifest(
        self, repo: Repository, tag: str, *, insecure: frozenset[str] = frozenset()
    ) -> Manifest | None:
        """The manifest under a tag, or None when the tag does not exist (cosign's
        ``sha256-<hex>.sig`` and ``.att`` tags, the referrers fallback tag)."""
        try:
            return await self.manifest(repo, tag, insecure=insecure)
        except _NotFound:
            return None

    # -- the work behind the public API -----------------------------------------------------

    async def _resolve(self, repo: Repository, tag: str, insecure: frozenset[str]) -> str:
        where = repo.describe(tag)
        async with (
            self._limit,
            await self._request(
                "HEAD", repo, f"manifests/{tag}", insecure=insecure, accept=MANIFEST_ACCEPT
            ) as response,
        ):
            if response.status == 404:
                raise _NotFound(f"{where}: no such tag in the registry; push it or fix the tag")
            _expect_ok(response, where, "tag")
            digest = response.headers.get("Docker-Content-Digest")
        if digest is None or DIGEST.match(digest) is None:
            digest = (await self._manifest(repo, tag, insecure)).digest
        self.tags.put(repo.registry, repo.repository, tag, digest)
        return digest

    async def _manifest(
        self, repo: Repository, reference: str, insecure: frozenset[str]
    ) -> Manifest:
        where = repo.describe(reference)
        async with (
            self._limit,
            await self._request(
                "GET", repo, f"manifests/{reference}", insecure=insecure, accept=MANIFEST_ACCEPT
            ) as response,
        ):
            if response.status == 404:
                raise _NotFound(
                    f"{where}: not found in the registry; push the image or fix the reference"
                )
            _expect_ok(response, where, "manifest")
            raw = await _read_bounded(response, MAX_MANIFEST_BYTES, where=where)
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            served = response.headers.get("Docker-Content-Digest")
        if DIGEST.match(reference) is not None:
            check_digest(raw, reference, what=where)
            digest = reference
        else:
            algorithm = served.partition(":")[0] if served else "sha256"
            digest = digest_of(raw, algorithm if algorithm in _HASHES else "sha256")
            if served and served != digest:
                raise RegistryError(
                    f"{where}: the registry says the tag is {served} but served content with "
                    f"digest {digest}, so neither is believed"
                )
            self.tags.put(repo.registry, repo.repository, reference, digest)
        self.content.put(digest, raw)
        return _parse_manifest(raw, digest, media_type, where=where)

    async def _blob(
        self, repo: Repository, digest: str, max_bytes: int, insecure: frozenset[str]
    ) -> bytes:
        where = repo.describe(digest)
        _require_digest(digest, where=where)
        async with (
            self._limit,
            await self._request("GET", repo, f"blobs/{digest}", insecure=insecure) as response,
        ):
            if response.status == 404:
                raise RegistryError(
                    f"{where}: blob not found; the image is incomplete, push it again"
                )
            _expect_ok(response, where, "blob")
            data = await _read_bounded(response, max_bytes, where=where)
        check_digest(data, digest, what=where)
        self.content.put(digest, data)
        return data

    async def _request(
        self,
        method: str,
        repo: Repository,
        path: str,
        *,
        insecure: frozenset[str],
        accept: str | None = None,
    ) -> aiohttp.ClientResponse:
        """One request, answering an authentication challenge once."""
        url = f"{_base_url(repo.registry, insecure)}/v2/{repo.repository}/{path}"
        headers = {"Accept": accept} if accept else {}
        token_key = (repo.registry, repo.repository, _user(repo))
        known = self._tokens.get(token_key)
        if known is not None and known[1] > time.monotonic():
            headers["Authorization"] = known[0]
        where = repo.describe()
        response = await self._send(method, url, headers, where=where)
        if response.status != 401:
            return response
        challenge = response.headers.get("WWW-Authenticate", "")
        response.release()
        authorization, lifetime = await self._answer(challenge, repo, insecure)
        self._tokens[token_key] = (authorization, time.monotonic() + lifetime)
        headers["Authorization"] = authorization
        response = await self._send(method, url, headers, where=where)
        if response.status == 401:
            response.release()
            raise RegistryError(
                f"{where}: the registry refused the credentials (401); give the pod (or its "
                "ServiceAccount) an imagePullSecret for this registry"
            )
        return response

    async def _send(
        self, method: str, url: str, headers: Mapping[str, str], *, where: str
    ) -> aiohttp.ClientResponse:
        self.requests += 1
        try:
            return await self._http().request(
                method, url, headers=headers, ssl=self._ssl if url.startswith("https") else False
            )
        except aiohttp.ClientConnectorCertificateError as error:
            raise RegistryError(
                f"{where}: the registry TLS certificate is not trusted "
                f"({error.certificate_error}); "
                "add its CA with --registry-ca-bundle"
            ) from None
        except (aiohttp.ClientError, OSError) as error:
            raise RegistryError(
                f"{where}: the registry cannot be reached ({type(error).__name__}: {error}); "
                "check the registry's address and that it is up"
            ) from None
        except TimeoutError:
            raise RegistryError(
                f"{where}: the registry did not answer within {self.settings.request_timeout:g} s"
            ) from None

    async def _answer(
        self, challenge: str, repo: Repository, insecure: frozenset[str]
    ) -> tuple[str, float]:
        """The Authorization header for a challenge, and for how long it may be reused."""
        scheme, _, rest = challenge.partition(" ")
        params = dict(_CHALLENGE_PARAM.findall(rest))
        where = repo.describe()
        if scheme.lower() == "basic":
            if repo.credentials is None:
                raise RegistryError(
                    f"{where}: the registry needs credentials; give the pod (or its "
                    "ServiceAccount) an imagePullSecret for it"
                )
            return repo.credentials.basic(), 300.0
        if scheme.lower() != "bearer" or "realm" not in params:
            raise RegistryError(
                f"{where}: the registry answered 401 with a challenge modelward cannot "
                f"answer ({challenge[:80]!r})"
            )
        realm = params["realm"]
        realm_host = urllib.parse.urlsplit(realm).netloc.lower()
        if not realm.startswith("https://") and realm_host not in insecure:
            raise RegistryError(
                f"{where}: the token service {realm} is not HTTPS; credentials are not sent "
                "in clear (list the registry in insecureRegistries only if it is local)"
            )
        query = {"scope": f"repository:{repo.repository}:pull"}
        if "service" in params:
            query["service"] = params["service"]
        headers = {"Authorization": repo.credentials.basic()} if repo.credentials else {}
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        async with await self._send("GET", url, headers, where=where) as response:
            if response.status != 200:
                raise RegistryError(
                    f"{where}: the token service refused a pull token ({response.status}); "
                    "check the pull secret's credentials"
                )
            body = await _read_bounded(response, 1 << 20, where=where)
        try:
            document = json.loads(body)
            token = document.get("token") or document.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{where}: the token service answered without a token")
        lifetime = document.get("expires_in", 60)
        lifetime = float(lifetime) if isinstance(lifetime, (int, float)) else 60.0
        return f"Bearer {token}", max(0.0, min(lifetime, 3600.0) - 10.0)


class _NotFound(RegistryError):
    pass


def _user(repo: Repository) -> str:
    return repo.credentials.username if repo.credentials else ""


def _base_url(registry: str, insecure: frozenset[str]) -> str:
    host = _API_HOSTS.get(registry, registry)
    return f"{'http' if registry in insecure else 'https'}://{host}"


def _ssl_context(bundles: Sequence[str]) -> ssl.SSLContext:
    context = ssl.create_default_context()
    for bundle in bundles:
        context.load_verify_locations(cafile=bundle)
    return context


def _require_digest(digest: str, *, where: str) -> None:
    if DIGEST.match(digest) is None:
        raise RegistryError(f"{where}: {digest!r} is not a sha256 or sha512 digest")


def _expect_ok(response: aiohttp.ClientResponse, where: str, what: str) -> None:
    if response.status == 200:
        return
    if response.status in (401, 403):
        raise RegistryError(
            f"{where}: access to the {what} was refused ({response.status}); give the pod an "
            "imagePullSecret that may pull it"
        )
    raise RegistryError(f"{where}: the registry answered {response.status} for the {what}")


async def _read_bounded(response: aiohttp.ClientResponse, limit: int, *, where: str) -> bytes:
    length = response.content_length
    if length is not None and length > limit:
        raise RegistryError(f"{where}: {length} bytes is more than the {limit} a look-up reads")
    parts: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(1 << 16):
        total += len(chunk)
        if total > limit:
            raise RegistryError(f"{where}: more than the {limit} bytes a look-up reads")
        parts.append(chunk)
    return b"".join(parts)


def _parse_manifest(raw: bytes, digest: str | None, media_type: str, *, where: str) -> Manifest:
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RegistryError(
            f"{where}: the manifest is not JSON; the registry served garbage"
        ) from None
    if not isinstance(document, Mapping):
        raise RegistryError(f"{where}: the manifest is not a JSON object")
    declared = document.get("mediaType")
    if isinstance(declared, str) and declared:
        media_type = declared
    if media_type not in INDEX_TYPES | MANIFEST_TYPES and not media_type:
        media_type = OCI_INDEX if "manifests" in document else OCI_MANIFEST
    return Manifest(digest or digest_of(raw), media_type, raw, document)
