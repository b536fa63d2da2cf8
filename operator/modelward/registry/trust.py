"""Gathering an image's trust evidence: signatures, vulnerability reports, model signatures.

For one image digest this fetches what cosign and model_signing leave in a registry (the
``sha256-<hex>.sig`` and ``.att`` tags, and the Sigstore bundles among the OCI referrers, with
the tag-schema fallback the client handles), verifies each piece against **each** trusted
signer of the policies that select the workload (``modelward.integrity.image_signatures``), and
hands the engine only *which signer verified what* (:class:`~modelward.engine.image_trust.
ImageTrust`). A policy then accepts only its own signers' work.

Bounds: at most ``MAX_ARTIFACTS`` signature layers and referrers are read per image, each
blob at most ``MAX_ARTIFACT_BYTES``; everything is fetched through the shared client, so
content is cached by digest and concurrent reviews of one image fetch it once. Failure to
fetch is a fact (``ImageTrust.error``), judged by the rules per ``onLookupFailure``; a piece
that does not verify is a *problem* named in the denial, never an exception.
"""

from __future__ import annotations

import datetime
import functools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from modelward.engine.image_trust import (
    ImageTrust,
    ModelTrust,
    ReportFormatError,
    VulnerabilityReport,
    report_from_cosign_predicate,
    signer_id,
)
from modelward.engine.policy import Policy, TrustedSigner
from modelward.integrity.errors import IntegrityError, Rejection
from modelward.integrity.image_signatures import (
    BUNDLE_ARTIFACT_TYPE,
    COSIGN_SIGN_PREDICATE,
    DSSE_MEDIA_TYPE,
    MODEL_SIGNATURE_PREDICATE,
    PREDICATE_TYPE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE,
    VULN_PREDICATE,
    SimpleSignature,
    VerifiedStatement,
    titled_layers,
    verify_dsse_attestation,
    verify_image_bundle,
    verify_oci_model,
    verify_simple_signing,
)
from modelward.integrity.trust import TrustPolicy, load_ca_certificates, load_public_keys
from modelward.registry.client import Manifest, RegistryClient, RegistryError, Repository

#: Signature layers and referrers read per image; more is not a signature set, it is a flood.
MAX_ARTIFACTS = 32
#: One signature, attestation or bundle; vulnerability reports of big images are a few MB.
MAX_ARTIFACT_BYTES = 16 << 20
#: Problems kept per image for the message.
MAX_PROBLEMS = 8

#: Reports the cluster holds for a digest (the Trivy Operator's, from the watch cache).
ClusterReports = Callable[[str], Sequence[VulnerabilityReport]]


@dataclass(frozen=True)
class TrustRequest:
    """What the selecting policies need: every signer any of them trusts, and what for."""

    signers: tuple[TrustedSigner, ...]
    reports: bool = False
    models: bool = False


def trust_request(policies: Iterable[Policy]) -> TrustRequest | None:
    """The union of the images sections' trust needs, or None if no policy has any."""
    signers: dict[str, TrustedSigner] = {}
    reports = models = needed = False
    for policy in policies:
        images = policy.images
        if images is None or not images.needs_trust_lookups:
            continue
        needed = True
        groups: list[tuple[TrustedSigner, ...]] = []
        if images.signatures is not None:
            groups.append(images.signatures.signers)
        if images.vulnerabilities is not None:
            reports = True
            groups.append(images.vulnerabilities.attestors)
        if images.models is not None and images.models.verify_at_admission:
            models = True
            groups.append(images.models.signers)
        for group in groups:
            for signer in group:
                if signer.pem:
                    signers.setdefault(signer_id(signer.kind, signer.pem), signer)
    if not needed:
        return None
    ordered = tuple(signers[k] for k in sorted(signers))
    return TrustRequest(ordered, reports, models)


@functools.lru_cache(maxsize=256)
def _trust_policy(kind: str, pem: str) -> TrustPolicy:
    """One signer as trust material (parsed once per PEM; the policy parser checked it)."""
    data = pem.encode()
    if kind == "caCertificate":
        return TrustPolicy(cas=tuple(load_ca_certificates(data, source="trusted signer")))
    return TrustPolicy(keys=tuple(load_public_keys(data, source="trusted signer")))


@dataclass
class _Evidence:
    signed_by: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    signatures: int = 0
    reports: list[VulnerabilityReport] = field(default_factory=list)
    model_by: set[str] = field(default_factory=set)
    model_deferred: str | None = None
    model_problems: list[str] = field(default_factory=list)
    model_signatures: int = 0
    model_digest: str = ""
    model_signer: str = ""
    model_files: int = 0

    def problem(self, text: str, *, model: bool = False) -> None:
        target = self.model_problems if model else self.problems
        if len(target) < MAX_PROBLEMS and text not in target:
            target.append(text)


def _each_signer(
    request: TrustRequest,
    verify: Callable[[TrustPolicy], VerifiedStatement],
    evidence: _Evidence,
    *,
    model: bool = False,
) -> list[tuple[str, VerifiedStatement]]:
    """Try one artifact with every signer; (signer id, statement) for those that verify."""
    verified = []
    reasons: list[str] = []
    for signer in request.signers:
        assert signer.pem is not None
        try:
            verified.append(
                (signer_id(signer.kind, signer.pem), verify(_trust_policy(signer.kind, signer.pem)))
            )
        except Rejection as exc:
            reasons.append(f"{exc.code}: {exc}")
        except IntegrityError as exc:  # unreadable: the same for every signer
            evidence.problem(str(exc), model=model)
            return []
    if not verified:
        # A wrong-digest or tampered verdict says more than "not this key" for the others.
        telling = [r for r in reasons if not r.startswith(("wrong-signer", "bad-signature"))]
        evidence.problem(
            (telling or reasons or ["no trusted signer"])[0].partition(": ")[2] or "unverified",
            model=model,
        )
    return verified


async def gather_trust(
    client: RegistryClient,
    repo: Repository,
    *,
    digest: str,
    manifest: Manifest,
    request: TrustRequest,
    insecure: frozenset[str] = frozenset(),
    cluster_reports: ClusterReports | None = None,
    now: datetime.datetime | None = None,
) -> ImageTrust:
    """Fetch and verify the trust evidence of the image ``digest`` (``manifest`` is the
    platform manifest, whose layers a model signature is compared with)."""
    evidence = _Evidence()
    hex_digest = digest.partition(":")[2]
    try:
        await _signature_tag(client, repo, digest, hex_digest, request, evidence, insecure, now)
        await _referrers(client, repo, digest, manifest, request, evidence, insecure, now)
        if request.reports:
            await _attestation_tag(
                client, repo, digest, hex_digest, request, evidence, insecure, now
            )
    except RegistryError as exc:
        return ImageTrust(digest=digest, error=f"its signatures could not be read: {exc}")
    if request.reports and cluster_reports is not None:
        for wanted in dict.fromkeys((digest, manifest.digest)):
            evidence.reports.extend(cluster_reports(wanted))
    model = (
        ModelTrust(
            verified_by=frozenset(evidence.model_by),
            deferred=evidence.model_deferred,
            problems=tuple(evidence.model_problems),
            signatures=evidence.model_signatures,
            model_digest=evidence.model_digest,
            signer=evidence.model_signer,
            files=evidence.model_files,
        )
        if request.models
        else None
    )
    return ImageTrust(
        digest=digest,
        signed_by=frozenset(evidence.signed_by),
        signature_problems=tuple(evidence.problems),
        signatures=evidence.signatures,
        reports=tuple(evidence.reports),
        model=model,
    )


async def _signature_tag(
    client: RegistryClient,
    repo: Repository,
    digest: str,
    hex_digest: str,
    request: TrustRequest,
    evidence: _Evidence,
    insecure: frozenset[str],
    now: datetime.datetime | None,
) -> None:
    """cosign's classic format: simple-signing layers under ``sha256-<hex>.sig``."""
    sig = await client.tag_manifest(repo, f"sha256-{hex_digest}.sig", insecure=insecure)
    if sig is None:
        return
    where = repo.describe(sig.digest)
    for layer in sig.descriptors("layers", where=where)[:MAX_ARTIFACTS]:
        if layer.media_type != SIMPLE_SIGNING_MEDIA_TYPE:
            continue
        evidence.signatures += 1
        payload = await client.blob(
            repo, layer.digest, max_bytes=MAX_ARTIFACT_BYTES, insecure=insecure
        )
        try:
            signature = SimpleSignature.from_layer(payload, layer.annotations)
        except IntegrityError as exc:
            evidence.problem(str(exc))
            continue

        def verify(trust: TrustPolicy, signature: SimpleSignature = signature) -> VerifiedStatement:
            signer = verify_simple_signing(signature, digest=digest, trust=trust, now=now)
            return VerifiedStatement(signer, COSIGN_SIGN_PREDICATE, {})

        for signer, _ in _each_signer(request, verify, evidence):
            evidence.signed_by.add(signer)


async def _attestation_tag(
    client: RegistryClient,
    repo: Repository,
    digest: str,
    hex_digest: str,
    request: TrustRequest,
    evidence: _Evidence,
    insecure: frozenset[str],
    now: datetime.datetime | None,
) -> None:
    """cosign's classic attestations: DSSE envelopes under ``sha256-<hex>.att``."""
    att = await client.tag_manifest(repo, f"sha256-{hex_digest}.att", insecure=insecure)
    if att is None:
        return
    where = repo.describe(att.digest)
    for layer in att.descriptors("layers", where=where)[:MAX_ARTIFACTS]:
        if layer.media_type != DSSE_MEDIA_TYPE:
            continue
        if layer.annotations.get("predicateType", VULN_PREDICATE) != VULN_PREDICATE:
            continue
        data = await client.blob(
            repo, layer.digest, max_bytes=MAX_ARTIFACT_BYTES, insecure=insecure
        )

        def verify(trust: TrustPolicy, data: bytes = data) -> VerifiedStatement:
            return verify_dsse_attestation(data, digest=digest, trust=trust, now=now)

        _add_reports(_each_signer(request, verify, evidence), evidence, f"{where} (.att)")


def _add_reports(
    verified: list[tuple[str, VerifiedStatement]], evidence: _Evidence, where: str
) -> None:
    by = frozenset(s for s, st in verified if st.predicate_type == VULN_PREDICATE)
    if not by:
        return
    statement = next(st for _, st in verified if st.predicate_type == VULN_PREDICATE)
    try:
        evidence.reports.append(
            report_from_cosign_predicate(statement.predicate, verified_by=by, where=where)
        )
    except ReportFormatError as exc:
        evidence.problem(f"the vulnerability attestation in {where} cannot be read: {exc}")


async def _referrers(
    client: RegistryClient,
    repo: Repository,
    digest: str,
    manifest: Manifest,
    request: TrustRequest,
    evidence: _Evidence,
    insecure: frozenset[str],
    now: datetime.datetime | None,
) -> None:
    """Sigstore bundles attached as OCI referrers: signatures, attestations, model signatures."""
    found = await client.referrers(repo, digest, insecure=insecure)
    bundles = [d for d in found if d.artifact_type == BUNDLE_ARTIFACT_TYPE][:MAX_ARTIFACTS]
    for descriptor in bundles:
        referrer = await client.manifest(repo, descriptor.digest, insecure=insecure)
        where = repo.describe(referrer.digest)
        predicate = referrer.annotations.get(PREDICATE_TYPE_ANNOTATION, "")
        layers = referrer.descriptors("layers", where=where)
        if len(layers) != 1:
            evidence.problem(f"referrer {where} holds {len(layers)} layers, not one bundle")
            continue
        if predicate == MODEL_SIGNATURE_PREDICATE and not request.models:
            continue
        if predicate == VULN_PREDICATE and not request.reports:
            continue
        data = await client.blob(
            repo, layers[0].digest, max_bytes=MAX_ARTIFACT_BYTES, insecure=insecure
        )
        if predicate == MODEL_SIGNATURE_PREDICATE:
            _model_bundle(data, manifest, request, evidence, where, now)
            continue

        def verify(trust: TrustPolicy, data: bytes = data) -> VerifiedStatement:
            return verify_image_bundle(data, digest=digest, trust=trust, now=now)

        if predicate == COSIGN_SIGN_PREDICATE:
            evidence.signatures += 1
        verified = _each_signer(request, verify, evidence)
        for signer, statement in verified:
            if statement.predicate_type == COSIGN_SIGN_PREDICATE:
                evidence.signed_by.add(signer)
        if request.reports:
            _add_reports(verified, evidence, where)


def _model_bundle(
    data: bytes,
    manifest: Manifest,
    request: TrustRequest,
    evidence: _Evidence,
    where: str,
    now: datetime.datetime | None,
) -> None:
    """An OpenSSF model signature referring to the image: compared with its layers."""
    evidence.model_signatures += 1
    try:
        layers = titled_layers(manifest.document)
    except IntegrityError as exc:
        evidence.problem(str(exc), model=True)
        return
    deferred: list[str] = []

    def verify(trust: TrustPolicy) -> VerifiedStatement:
        check = verify_oci_model(data, layers=layers, trust=trust, now=now)
        if check.deferred:
            deferred.append(check.deferred)
        if not evidence.model_digest:
            evidence.model_digest = check.model_digest
            evidence.model_signer = check.signer.short
            evidence.model_files = check.files
        return VerifiedStatement(check.signer, MODEL_SIGNATURE_PREDICATE, {})

    for signer, _ in _each_signer(request, verify, evidence, model=True):
        evidence.model_by.add(signer)
    if deferred and evidence.model_deferred is None:
        evidence.model_deferred = deferred[0]


class TrustCache:
    """Trust evidence by (image, digest, what was asked), for ``ttl`` seconds.

    Not kept like content: a signature or attestation can be attached to a digest at any
    time (a new tag under ``.sig``, a new referrer), so evidence expires with the tag TTL.
    Bounded in entries; the oldest go first.
    """

    def __init__(
        self, *, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._items: dict[tuple[str, str, TrustRequest], tuple[float, ImageTrust]] = {}

    def get(self, key: tuple[str, str, TrustRequest]) -> ImageTrust | None:
        item = self._items.get(key)
        if item is None:
            return None
        if self._clock() >= item[0]:
            del self._items[key]
            return None
        return item[1]

    def put(self, key: tuple[str, str, TrustRequest], trust: ImageTrust) -> None:
        self._items.pop(key, None)
        while len(self._items) >= self.max_entries:
            del self._items[next(iter(self._items))]
        self._items[key] = (self._clock() + self.ttl, trust)
