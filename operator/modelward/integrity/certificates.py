"""X.509 chain validation for the certificate method (see :mod:`modelward.integrity.trust`).

Path validation (signatures, validity, basic and name constraints, path lengths, unknown
critical extensions) is ``cryptography.x509.verification``'s; what is ours is the policy for
the signing certificate (code signing), identity pinning, and messages that say what to fix.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from modelward.integrity.errors import Rejection, TrustMaterialError
from modelward.integrity.trust import Signer, TrustedCA, TrustPolicy, signature_hash

MAX_CHAIN_DEPTH: Final = 8


def load_ca_certificates(data: bytes, *, source: str) -> list[TrustedCA]:
    """Load one or more PEM CA certificates; each must be a CA."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TrustMaterialError(f"cannot load certificates: {exc}", source=source) from exc
    result = []
    for cert in certs:
        if not _is_ca(cert):
            raise TrustMaterialError(
                f"certificate {cert.subject.rfc4514_string()} is not a CA "
                "(basicConstraints CA:TRUE)",
                source=source,
            )
        result.append(TrustedCA(certificate=cert, source=source))
    return result


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _check_validity(cert: x509.Certificate, now: datetime.datetime, role: str) -> None:
    name = cert.subject.rfc4514_string()
    if now < cert.not_valid_before_utc:
        raise Rejection(
            f"{role} certificate {name} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}",
            code="certificate",
        )
    if now > cert.not_valid_after_utc:
        raise Rejection(
            f"{role} certificate {name} expired at {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}",
            code="certificate",
        )


def _check_critical_extensions(cert: x509.Certificate, role: str) -> None:
    for ext in cert.extensions:
        if ext.critical and isinstance(ext.value, x509.UnrecognizedExtension):
            raise Rejection(
                f"{role} certificate has an unknown critical extension {ext.oid.dotted_string}",
                code="certificate",
            )


def _check_leaf_usage(cert: x509.Certificate) -> None:
    """Digital signature key usage or code-signing EKU, and no contradiction of either."""
    name = cert.subject.rfc4514_string()
    if _is_ca(cert):
        raise Rejection(f"signing certificate {name} is a CA certificate", code="certificate")
    usable = False
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.digital_signature:
            raise Rejection(
                f"signing certificate {name} key usage excludes digitalSignature",
                code="certificate",
            )
        usable = True
    except x509.ExtensionNotFound:
        pass
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CODE_SIGNING in eku:
            usable = True
        elif ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
            raise Rejection(
                f"signing certificate {name} extended key usage excludes codeSigning",
                code="certificate",
            )
    except x509.ExtensionNotFound:
        pass
    if not usable:
        raise Rejection(
            f"signing certificate {name} has neither digitalSignature key usage "
            "nor codeSigning extended key usage",
            code="certificate",
        )


def _issuer_key_usage(
    policy: verification.Policy, cert: x509.Certificate, usage: x509.KeyUsage | None
) -> None:
    """Extension validator for CA certificates: a key usage, if present, allows signing."""
    del policy
    if usage is not None and not usage.key_cert_sign:
        raise ValueError(
            f"issuer {cert.subject.rfc4514_string()} may not sign certificates "
            "(keyUsage lacks keyCertSign)"
        )


def _verifier(anchors: Sequence[x509.Certificate], when: datetime.datetime) -> Any:
    """RFC 5280 path validation by ``cryptography.x509.verification``.

    The WebPKI profiles it ships are for TLS (they require authority key identifiers and the
    client-auth EKU, which a private code-signing PKI need not have), so the extension
    policies start from "permit all" and add what matters here: CA certificates must carry
    basicConstraints (the library then enforces ``cA`` and path lengths) and, when they have
    a key usage, ``keyCertSign``. Name constraints, validity periods, signatures, chain depth
    and unknown critical extensions are the library's, on every certificate of the path.
    The leaf's own usage (code signing) is checked by :func:`_check_leaf_usage`.
    """
    agnostic = verification.Criticality.AGNOSTIC
    ca_policy = (
        verification.ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, agnostic, None)
        .may_be_present(x509.KeyUsage, agnostic, _issuer_key_usage)
    )
    return (
        verification.PolicyBuilder()
        .store(verification.Store(list(anchors)))
        .time(when)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(
            ca_policy=ca_policy, ee_policy=verification.ExtensionPolicy.permit_all()
        )
        .build_client_verifier()
    )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _names_reach_an_anchor(
    leaf: x509.Certificate, pool: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate]
) -> bool:
    """Whether issuer names and signatures alone lead from ``leaf`` to a trusted CA.

    Only chooses the message when validation fails: no such path means the model was signed
    under another CA ("wrong-signer"); a path that exists was refused for its constraints.
    """
    current, seen = leaf, 0
    while seen <= MAX_CHAIN_DEPTH:
        if any(a.subject == current.issuer and _issued_by(current, a) for a in anchors):
            return True
        parents = [c for c in pool if c.subject == current.issuer and _issued_by(current, c)]
        if not parents or parents[0] is current:
            return False
        current, seen = parents[0], seen + 1
    return False


def _validate_path(
    leaf: x509.Certificate,
    pool: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    when: datetime.datetime,
) -> None:
    try:
        _verifier(anchors, when).verify(leaf, list(pool))
    except (verification.VerificationError, ValueError) as exc:
        reason = str(exc).removeprefix("validation failed: ").removeprefix("candidates exhausted: ")
        reason = reason.split(" (encountered processing")[0]
        name = leaf.subject.rfc4514_string()
        if not _names_reach_an_anchor(leaf, pool, anchors):
            raise Rejection(
                f"signing certificate {name} (issuer {leaf.issuer.rfc4514_string()}) does not "
                "chain to a trusted CA",
                code="wrong-signer",
            ) from exc
        raise Rejection(
            f"certificate chain of {name} refused by path validation: {reason}",
            code="certificate",
        ) from exc


def _identities(cert: x509.Certificate) -> set[str]:
    names = {cert.subject.rfc4514_string()}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return names
    for kind in (x509.RFC822Name, x509.UniformResourceIdentifier, x509.DNSName):
        names.update(str(v) for v in san.get_values_for_type(kind))
    return names


def verify_certificate_chain(
    chain_der: Sequence[bytes],
    *,
    policy: TrustPolicy,
    now: datetime.datetime | None = None,
) -> tuple[ec.EllipticCurvePublicKey, Signer]:
    """Validate the bundle's leaf (through bundle intermediates) to a configured CA.

    Returns the leaf's public key (the only key the DSSE signature may be checked with) and
    the signer identity. Raises :class:`Rejection` with code ``certificate`` or
    ``wrong-signer``.
    """
    if not policy.cas:
        raise Rejection(
            "the model is signed with a certificate but no CA certificate is "
            "trusted (pass --ca-cert)",
            code="wrong-signer",
        )
    when = now or datetime.datetime.now(datetime.UTC)
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain_der]
    except ValueError as exc:
        raise Rejection(
            f"certificate in the signature cannot be parsed: {exc}", code="certificate"
        ) from exc
    leaf, pool = certs[0], certs[1:]
    _check_validity(leaf, when, "signing")
    _check_critical_extensions(leaf, "signing")
    _check_leaf_usage(leaf)
    _validate_path(leaf, pool, [ca.certificate for ca in policy.cas], when)
    if policy.identities and not (_identities(leaf) & policy.identities):
        raise Rejection(
            f"signing certificate {leaf.subject.rfc4514_string()} does not carry "
            "an allowed identity",
            code="wrong-signer",
        )
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise Rejection("signing certificate does not hold an ECDSA key", code="certificate")
    signature_hash(key)
    signer = Signer(
        method="certificate",
        fingerprint="sha256:" + leaf.fingerprint(hashes.SHA256()).hex(),
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
    )
    return key, signer
