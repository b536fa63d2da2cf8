"""Trust material: the public keys and CA certificates a model signature must chain to.

The verification key never comes from the signature: the key method only lets the bundle
*name* a key (the ``hint``), and the certificate method lets it *propose* a leaf and
intermediates that must chain to a CA we were configured with.

Chain validation (in :mod:`modelward.integrity.certificates`, imported only when a CA is
configured) is written out (about a hundred lines) rather than delegated to a
WebPKI verifier because code-signing PKIs are not WebPKI: no server names, private CAs with
few extensions. It is stricter than ``model_signing`` where that tool is lax: validity is
checked at the current time (the tool checks at the leaf's own ``notBefore``, so it accepts
expired and not-yet-valid certificates), the leaf must not be a CA, issuers must be CAs
allowed to sign certificates, path lengths are honoured and unknown critical extensions
are refused.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelward.integrity.errors import Rejection, TrustMaterialError

if TYPE_CHECKING:  # X.509 parsing is imported only when a CA is configured
    from cryptography import x509

#: Curves OMS allows, with the hash the signer uses for each (Sigstore's key details).
CURVE_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


def pem_hint(key: ec.EllipticCurvePublicKey) -> str:
    """The key identifier ``model_signing`` writes: hex SHA-256 of the key's PEM text."""
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(pem).hexdigest()


def signature_hash(key: ec.EllipticCurvePublicKey) -> hashes.HashAlgorithm:
    """The hash ECDSA uses with this key's curve; refuses curves OMS does not allow."""
    algorithm = CURVE_HASHES.get(key.curve.name)
    if algorithm is None:
        raise Rejection(f"key on unsupported curve {key.curve.name}", code="wrong-signer")
    return algorithm()


@dataclass(frozen=True)
class TrustedKey:
    """A configured ECDSA public key, with the fingerprint users and bundles refer to it by."""

    key: ec.EllipticCurvePublicKey
    source: str

    @property
    def hint(self) -> str:
        return pem_hint(self.key)

    @property
    def fingerprint(self) -> str:
        return f"sha256:{self.hint}"


@dataclass(frozen=True)
class TrustedCA:
    certificate: x509.Certificate
    source: str

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()


@dataclass(frozen=True)
class TrustPolicy:
    """Everything a signature may be trusted through.

    ``identities`` optionally pins the leaf certificate: it must carry one of these values
    as a SAN (email, URI, DNS) or as its full RFC 4514 subject.
    """

    keys: tuple[TrustedKey, ...] = ()
    cas: tuple[TrustedCA, ...] = ()
    identities: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Signer:
    """Who signed, as established by verification (never as claimed by the bundle)."""

    method: str  # "key" | "certificate"
    fingerprint: str  # key: sha256 of its PEM (the OMS hint); certificate: sha256 of its DER
    subject: str | None = None  # certificate subject (RFC 4514)
    issuer: str | None = None

    def __str__(self) -> str:
        if self.method == "key":
            return f"key {self.fingerprint}"
        return f"certificate {self.subject} (issuer {self.issuer})"

    @property
    def short(self) -> str:
        """A compact label for termination messages and metrics."""
        if self.method == "key":
            return f"key:{self.fingerprint}"
        return f"cert:{self.subject}"


# --------------------------------------------------------------------------- loading


def load_public_keys(data: bytes, *, source: str) -> list[TrustedKey]:
    """Load one or more PEM public keys (``BEGIN PUBLIC KEY`` blocks) from a file's bytes."""
    blocks = _pem_blocks(data, b"PUBLIC KEY")
    if not blocks:
        raise TrustMaterialError(
            "no PEM 'PUBLIC KEY' block found",
            source=source,
            fix="export the key with `openssl ec -pubout`",
        )
    keys = []
    for block in blocks:
        try:
            key = serialization.load_pem_public_key(block)
        except ValueError as exc:
            raise TrustMaterialError(f"cannot load public key: {exc}", source=source) from exc
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in CURVE_HASHES:
            raise TrustMaterialError(
                "only ECDSA P-256, P-384 and P-521 keys can verify model signatures", source=source
            )
        keys.append(TrustedKey(key=key, source=source))
    return keys


def load_ca_certificates(data: bytes, *, source: str) -> list[TrustedCA]:
    """Load one or more PEM CA certificates; each must be a CA."""
    from modelward.integrity import certificates

    return certificates.load_ca_certificates(data, source=source)


def _pem_blocks(data: bytes, label: bytes) -> list[bytes]:
    begin, end = b"-----BEGIN " + label + b"-----", b"-----END " + label + b"-----"
    blocks, pos = [], 0
    while (start := data.find(begin, pos)) >= 0:
        stop = data.find(end, start)
        if stop < 0:
            break
        blocks.append(data[start : stop + len(end)] + b"\n")
        pos = stop + len(end)
    return blocks


def verify_certificate_chain(
    chain_der: Sequence[bytes],
    *,
    policy: TrustPolicy,
    now: datetime.datetime | None = None,
) -> tuple[ec.EllipticCurvePublicKey, Signer]:
    """Validate a bundle's certificate chain (see :mod:`modelward.integrity.certificates`)."""
    from modelward.integrity import certificates

    return certificates.verify_certificate_chain(chain_der, policy=policy, now=now)


def key_candidates(keys: Iterable[TrustedKey], hint: str | None) -> list[TrustedKey]:
    """Keys to try for a key-method bundle: the one the hint names, or all without a hint."""
    keys = list(keys)
    if hint is None:
        return keys
    return [k for k in keys if k.hint == hint]
