"""Verify cosign image signatures and attestations, and OpenSSF model signatures of OCI models.

What a registry holds next to an image, in the two layouts cosign writes:

- **The tag scheme** (cosign's classic format, ``--new-bundle-format=false``): a manifest tagged
  ``sha256-<digest>.sig`` whose layers are *simple-signing* payloads
  (``application/vnd.dev.cosign.simplesigning.v1+json``), each with its signature (base64) in
  the layer annotation ``dev.cosignproject.cosign/signature`` and, for the certificate method,
  the certificate and chain in ``dev.sigstore.cosign/certificate`` / ``.../chain``.
  Attestations go under ``sha256-<digest>.att`` as DSSE envelopes
  (``application/vnd.dsse.envelope.v1+json``).
- **Sigstore bundles as OCI referrers** (cosign v3's default): a manifest whose ``subject`` is
  the image and whose artifactType is ``application/vnd.dev.sigstore.bundle.v0.3+json``; its one
  layer is a Sigstore bundle holding a DSSE envelope around an in-toto statement. A signature
  is the statement type ``https://sigstore.dev/cosign/sign/v1``; an attestation carries its
  own predicate type (``https://cosign.sigstore.dev/attestation/vuln/v1`` for ``--type vuln``);
  an OpenSSF model signature is ``https://model_signing/signature/v1.0``.

Everything here is pure: the bytes are fetched before evaluation (the registry client), and
only this module decides whether they are trusted. The rules it holds to, as the rest of the
integrity package does: the key comes from our trust material, never from the artifact (a
bundle's key hint only narrows the search); the signature is checked over the exact bytes
before they are parsed; and **the signed digest must be the admitted digest**, so a valid
signature copied from another image, or another tag's, proves nothing.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelward.integrity.bundle import (
    STATEMENT_TYPE,
    CertificateChain,
    KeyHint,
    parse_bundle,
    parse_statement,
    strict_json_loads,
)
from modelward.integrity.errors import BundleFormatError, Rejection, UnusableInputError
from modelward.integrity.trust import Signer, TrustPolicy, verify_certificate_chain
from modelward.integrity.verification import (
    DEFAULT_ALLOWED_IGNORE_PATHS,
    VerificationPolicy,
    verify_bundle_signature,
)

SIMPLE_SIGNING_MEDIA_TYPE: Final = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_MEDIA_TYPE: Final = "application/vnd.dsse.envelope.v1+json"
BUNDLE_ARTIFACT_TYPE: Final = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIGNATURE_ANNOTATION: Final = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION: Final = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION: Final = "dev.sigstore.cosign/chain"
PREDICATE_TYPE_ANNOTATION: Final = "dev.sigstore.bundle.predicateType"
LAYER_TITLE_ANNOTATION: Final = "org.opencontainers.image.title"
#: cosign v2 wrote the first, cosign v3 writes the second into `critical.type`.
SIMPLE_SIGNING_TYPES: Final = frozenset(
    {"cosign container image signature", "https://sigstore.dev/cosign/sign/v1"}
)
COSIGN_SIGN_PREDICATE: Final = "https://sigstore.dev/cosign/sign/v1"
VULN_PREDICATE: Final = "https://cosign.sigstore.dev/attestation/vuln/v1"
MODEL_SIGNATURE_PREDICATE: Final = "https://model_signing/signature/v1.0"
#: in-toto statement types cosign writes for attestations (v0.1 in the classic format).
STATEMENT_TYPES: Final = frozenset({STATEMENT_TYPE, "https://in-toto.io/Statement/v0.1"})
#: Larger payloads are not signatures; a vulnerability report of 50k findings is ~10 MB.
MAX_PAYLOAD_BYTES: Final = 16 << 20
#: Compressed layers cannot hold a file as itself. (ORAS labels raw files ``...layer.v1.tar``
#: all the same, so the media type alone does not say "packed": the digests do.)
_COMPRESSED: Final = re.compile(r"[.+](gzip|zstd)\b")
#: ORAS marks a layer that is a packed directory (``oras push dir/``) with this annotation.
UNPACK_ANNOTATION: Final = "io.deis.oras.content.unpack"

_SHA256: Final = re.compile(r"sha256:([0-9a-f]{64})\Z")


@dataclass(frozen=True)
class SimpleSignature:
    """One layer of a ``.sig`` manifest: the payload blob and its annotations (untrusted)."""

    payload: bytes
    signature_b64: str
    certificate_pem: bytes | None = None
    chain_pem: bytes | None = None

    @classmethod
    def from_layer(cls, payload: bytes, annotations: Mapping[str, str]) -> SimpleSignature:
        signature = annotations.get(SIGNATURE_ANNOTATION)
        if not signature:
            raise BundleFormatError(
                f"the signature layer has no {SIGNATURE_ANNOTATION} annotation",
                fix="sign with cosign, which writes the signature into that annotation",
            )
        cert, chain = annotations.get(CERTIFICATE_ANNOTATION), annotations.get(CHAIN_ANNOTATION)
        return cls(
            payload=payload,
            signature_b64=signature,
            certificate_pem=cert.encode() if cert else None,
            chain_pem=chain.encode() if chain else None,
        )


@dataclass(frozen=True)
class VerifiedStatement:
    """A statement whose signature checked out, about the admitted digest."""

    signer: Signer
    predicate_type: str
    predicate: Mapping[str, Any]


def digest_hex(digest: str) -> str:
    """The hex part of a ``sha256:`` digest; anything else cannot be compared and is refused."""
    match = _SHA256.match(digest)
    if match is None:
        raise UnusableInputError(
            f"digest {digest!r} is not a sha256 digest",
            fix="reference the image by its sha256 digest",
        )
    return match.group(1)


def _verify_ecdsa(key: ec.EllipticCurvePublicKey, signature: bytes, message: bytes) -> bool:
    """cosign signs with SHA-256 on P-256 and with the curve's hash otherwise."""
    algorithms: list[hashes.HashAlgorithm] = [hashes.SHA256()]
    if key.curve.name == "secp384r1":
        algorithms.insert(0, hashes.SHA384())
    elif key.curve.name == "secp521r1":
        algorithms.insert(0, hashes.SHA512())
    for algorithm in algorithms:
        try:
            key.verify(signature, message, ec.ECDSA(algorithm))
        except InvalidSignature:
            continue
        return True
    return False


def _pem_chain_der(pem: bytes, what: str) -> list[bytes]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise Rejection(f"the {what} is not PEM certificates ({exc})", code="certificate") from exc
    return [c.public_bytes(serialization.Encoding.DER) for c in certs]


def _signed_by(
    payload: bytes,
    signature: bytes,
    *,
    trust: TrustPolicy,
    certificate_pem: bytes | None,
    chain_pem: bytes | None,
    now: datetime.datetime | None,
) -> Signer:
    """Who signed ``payload``, established from our trust material only."""
    if certificate_pem is not None and trust.cas:
        chain = _pem_chain_der(certificate_pem, "signing certificate")
        if chain_pem:
            chain += _pem_chain_der(chain_pem, "certificate chain")
        key, signer = verify_certificate_chain(chain, policy=trust, now=now)
        if not _verify_ecdsa(key, signature, payload):
            raise Rejection(
                f"signature does not verify with the key of {signer.subject}", code="bad-signature"
            )
        return signer
    for candidate in trust.keys:
        if _verify_ecdsa(candidate.key, signature, payload):
            return Signer(method="key", fingerprint=candidate.fingerprint)
    raise Rejection("signature does not verify with any trusted key", code="wrong-signer")


def verify_simple_signing(
    signature: SimpleSignature,
    *,
    digest: str,
    trust: TrustPolicy,
    now: datetime.datetime | None = None,
) -> Signer:
    """Verify a cosign simple-signing signature, and that it signs exactly ``digest``.

    Raises :class:`Rejection` (``wrong-signer``, ``bad-signature``, ``certificate``,
    ``wrong-digest``) or :class:`BundleFormatError` for a payload that is not one.
    """
    expected = digest_hex(digest)
    if len(signature.payload) > MAX_PAYLOAD_BYTES:
        raise BundleFormatError(f"signature payload is larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        raw = base64.b64decode(signature.signature_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BundleFormatError(f"the signature annotation is not base64 ({exc})") from exc
    signer = _signed_by(
        signature.payload,
        raw,
        trust=trust,
        certificate_pem=signature.certificate_pem,
        chain_pem=signature.chain_pem,
        now=now,
    )
    try:
        doc = strict_json_loads(signature.payload)
        critical = doc["critical"]
        kind = critical["type"]
        signed = critical["image"]["docker-manifest-digest"]
    except (ValueError, UnicodeDecodeError, RecursionError, KeyError, TypeError) as exc:
        raise BundleFormatError(
            f"the signed payload is not a cosign simple-signing document ({exc})"
        ) from exc
    if kind not in SIMPLE_SIGNING_TYPES:
        raise Rejection(f"the signed payload is a {kind!r}, not an image signature", code="policy")
    if signed != f"sha256:{expected}":
        raise Rejection(
            f"the signature is for {signed}, not for the admitted digest sha256:{expected}",
            code="wrong-digest",
        )
    return signer


def _statement(payload: bytes) -> Mapping[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise BundleFormatError(f"statement is larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        doc = strict_json_loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BundleFormatError(f"the signed statement is not JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("_type") not in STATEMENT_TYPES:
        raise BundleFormatError("the signed payload is not an in-toto statement")
    return doc


def _subject_digests(statement: Mapping[str, Any]) -> set[str]:
    subjects = statement.get("subject")
    if not isinstance(subjects, list):
        raise BundleFormatError("the statement has no subject list")
    found = set()
    for subject in subjects:
        digests = subject.get("digest") if isinstance(subject, dict) else None
        if isinstance(digests, dict) and isinstance(digests.get("sha256"), str):
            found.add(digests["sha256"].lower())
    return found


def _about_digest(payload: bytes, expected: str, signer: Signer) -> VerifiedStatement:
    statement = _statement(payload)
    if expected not in _subject_digests(statement):
        raise Rejection(
            f"the signed statement is about {', '.join(sorted(_subject_digests(statement)))}, "
            f"not the admitted digest sha256:{expected}",
            code="wrong-digest",
        )
    predicate = statement.get("predicate")
    return VerifiedStatement(
        signer=signer,
        predicate_type=str(statement.get("predicateType") or ""),
        predicate=predicate if isinstance(predicate, dict) else {},
    )


def verify_image_bundle(
    data: bytes,
    *,
    digest: str,
    trust: TrustPolicy,
    now: datetime.datetime | None = None,
) -> VerifiedStatement:
    """Verify a Sigstore bundle (referrer layer) and that its statement is about ``digest``.

    The key method's hint is ignored: cosign and model_signing compute it differently, and
    it is only a hint; every trusted key is tried (they are few).
    """
    expected = digest_hex(digest)
    bundle = parse_bundle(data)
    if isinstance(bundle.material, KeyHint):
        bundle = dataclasses.replace(bundle, material=KeyHint(None))
    signer = verify_bundle_signature(bundle, trust=trust, now=now)
    return _about_digest(bundle.envelope.payload, expected, signer)


def verify_dsse_attestation(
    data: bytes,
    *,
    digest: str,
    trust: TrustPolicy,
    now: datetime.datetime | None = None,
    certificate_pem: bytes | None = None,
    chain_pem: bytes | None = None,
) -> VerifiedStatement:
    """Verify a classic ``.att`` layer: a bare DSSE envelope (JSON) about ``digest``."""
    from modelward.integrity.bundle import pae

    expected = digest_hex(digest)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise BundleFormatError(f"attestation is larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        envelope = strict_json_loads(data)
        payload_type = envelope["payloadType"]
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = [base64.b64decode(s["sig"], validate=True) for s in envelope["signatures"]]
    except (ValueError, UnicodeDecodeError, RecursionError, KeyError, TypeError) as exc:
        raise BundleFormatError(f"the attestation is not a DSSE envelope ({exc})") from exc
    if not isinstance(payload_type, str) or not signatures:
        raise BundleFormatError("the attestation has no payloadType or no signature")
    message = pae(payload_type, payload)
    last: Rejection | None = None
    for signature in signatures:
        try:
            signer = _signed_by(
                message,
                signature,
                trust=trust,
                certificate_pem=certificate_pem,
                chain_pem=chain_pem,
                now=now,
            )
        except Rejection as exc:
            last = exc
            continue
        return _about_digest(payload, expected, signer)
    assert last is not None
    raise last


# --------------------------------------------------------------------------- OCI models


@dataclass(frozen=True)
class ModelLayer:
    """One layer of a model artifact's manifest, as the registry listed it."""

    digest: str
    media_type: str
    title: str | None
    #: a packed directory (ORAS unpack annotation): its digest is not a file's.
    packed: bool = False


@dataclass(frozen=True)
class ModelCheck:
    """What admission could establish about an OCI model from its manifest and signature.

    ``verified``: the signature is valid and every signed file is a layer with that digest
    and no other layer exists. ``deferred`` names why the files cannot be compared without
    downloading them (packed layers, shards, another hash); the in-pod verifier decides.
    """

    signer: Signer
    deferred: str | None = None
    #: The OMS subject digest (``sha256:<hex>``): the DeployedModel the in-pod verifier
    #: records under the same name.
    model_digest: str = ""
    files: int = 0


def _comparable(layers: Sequence[ModelLayer]) -> str | None:
    """Why these layers cannot be compared with signed file digests, or None if they can."""
    for layer in layers:
        if layer.title is None:
            return f"layer {layer.digest} has no {LAYER_TITLE_ANNOTATION} (not one file per layer)"
        if layer.packed or _COMPRESSED.search(layer.media_type):
            return f"layer {layer.title} is packed ({layer.media_type}), not the file itself"
    return None


def verify_oci_model(
    bundle_data: bytes,
    *,
    layers: Sequence[ModelLayer],
    trust: TrustPolicy,
    policy: VerificationPolicy | None = None,
    now: datetime.datetime | None = None,
) -> ModelCheck:
    """Verify an OpenSSF model signature against an ORAS-style model artifact's layers.

    The signature (made by ``model_signing`` over the model's files) lists each file's
    SHA-256; an ORAS layer holding one uncompressed file has that same digest, so admission
    compares names and digests with the manifest alone. Raises :class:`Rejection` when the
    signature is invalid or the artifact is not what was signed (``files-mismatch``).
    """
    from modelward.integrity.verification import _check_statement

    policy = policy or VerificationPolicy(allowed_ignore_paths=DEFAULT_ALLOWED_IGNORE_PATHS)
    bundle = parse_bundle(bundle_data)
    if isinstance(bundle.material, KeyHint):
        bundle = dataclasses.replace(bundle, material=KeyHint(None))
    signer = verify_bundle_signature(bundle, trust=trust, now=now)
    statement = parse_statement(bundle.envelope.payload)
    _check_statement(statement, policy)
    why = _comparable(layers)
    serialization = statement.serialization
    if why is None and serialization.method != "files":
        why = f"the signature uses '{serialization.method}' serialization, not one digest per file"
    if why is None and serialization.hash_type != "sha256":
        why = f"the signature hashes with {serialization.hash_type}; layer digests are sha256"
    model_digest = f"sha256:{statement.subject_digest_hex}"
    files = len({r.path for r in statement.resources})
    if why is not None:
        return ModelCheck(signer=signer, deferred=why, model_digest=model_digest, files=files)
    signed = {r.path: r.digest.hex() for r in statement.resources}
    present: dict[str, str] = {}
    for layer in layers:
        assert layer.title is not None
        if layer.title in present:
            raise Rejection(f"layer title {layer.title!r} appears twice", code="files-mismatch")
        present[layer.title] = digest_hex(layer.digest)
    missing = sorted(set(signed) - set(present))
    extra = sorted(set(present) - set(signed))
    changed = sorted(n for n in set(signed) & set(present) if signed[n] != present[n])
    if missing or extra or changed:
        parts = [
            f"{what}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
            for what, names in (("changed", changed), ("missing", missing), ("extra", extra))
            if names
        ]
        raise Rejection(
            "the model artifact is not what was signed (" + "; ".join(parts) + ")",
            code="files-mismatch",
        )
    return ModelCheck(signer=signer, model_digest=model_digest, files=files)


def titled_layers(manifest: Mapping[str, Any]) -> list[ModelLayer]:
    """The layers of an OCI image manifest (JSON), for :func:`verify_oci_model`."""
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise BundleFormatError("the model's manifest has no layers list")
    result = []
    for layer in layers:
        if not isinstance(layer, dict):
            raise BundleFormatError("a manifest layer is not an object")
        annotations = layer.get("annotations") or {}
        title = annotations.get(LAYER_TITLE_ANNOTATION) if isinstance(annotations, dict) else None
        result.append(
            ModelLayer(
                digest=str(layer.get("digest") or ""),
                media_type=str(layer.get("mediaType") or ""),
                title=str(title) if title else None,
                packed=isinstance(annotations, dict)
                and str(annotations.get(UNPACK_ANNOTATION, "")).lower() == "true",
            )
        )
    return result


def distinct(statements: Iterable[VerifiedStatement]) -> list[VerifiedStatement]:
    """Statements in order, each (signer, predicate type) once."""
    seen: set[tuple[str, str]] = set()
    result = []
    for s in statements:
        key = (s.signer.fingerprint, s.predicate_type)
        if key not in seen:
            seen.add(key)
            result.append(s)
    return result


__all__ = [
    "BUNDLE_ARTIFACT_TYPE",
    "COSIGN_SIGN_PREDICATE",
    "MODEL_SIGNATURE_PREDICATE",
    "VULN_PREDICATE",
    "CertificateChain",
    "ModelCheck",
    "ModelLayer",
    "SimpleSignature",
    "VerifiedStatement",
    "titled_layers",
    "verify_dsse_attestation",
    "verify_image_bundle",
    "verify_oci_model",
    "verify_simple_signing",
]
