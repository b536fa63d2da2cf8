"""X.509 chain validation for the certificate method (see :mod:`modelward.integrity.trust`)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
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


def _check_issuer(issuer: x509.Certificate, below: int) -> None:
    """``issuer`` signs a chain with ``below`` CA certificates under it (leaf excluded)."""
    name = issuer.subject.rfc4514_string()
    try:
        bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise Rejection(f"issuer {name} is not a CA", code="certificate") from None
    if not bc.ca:
        raise Rejection(f"issuer {name} is not a CA", code="certificate")
    if bc.path_length is not None and below > bc.path_length:
        raise Rejection(f"issuer {name} path length constraint exceeded", code="certificate")
    try:
        ku = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.key_cert_sign:
            raise Rejection(f"issuer {name} may not sign certificates", code="certificate")
    except x509.ExtensionNotFound:
        pass


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


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
    anchors = [ca.certificate for ca in policy.cas]
    path = _build_path(leaf, pool, anchors, when)
    if path is None:
        raise Rejection(
            f"signing certificate {leaf.subject.rfc4514_string()} (issuer "
            f"{leaf.issuer.rfc4514_string()}) does not chain to a trusted CA",
            code="wrong-signer",
        )
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


def _build_path(
    leaf: x509.Certificate,
    pool: list[x509.Certificate],
    anchors: list[x509.Certificate],
    when: datetime.datetime,
) -> list[x509.Certificate] | None:
    """Depth-first search for leaf -> intermediates from the bundle -> a trusted anchor.

    A certificate in the bundle that is byte-identical to a trusted anchor is treated as the
    anchor (``model_signing`` copies the CA into the bundle); any other bundle certificate is
    only ever an intermediate and must itself be valid now and a CA.
    """

    def extend(path: list[x509.Certificate]) -> list[x509.Certificate] | None:
        current = path[-1]
        cas_below = len(path) - 1
        for anchor in anchors:
            if anchor.subject == current.issuer and _issued_by(current, anchor):
                try:
                    _check_issuer(anchor, cas_below)
                    _check_validity(anchor, when, "CA")
                except Rejection:
                    continue
                return [*path, anchor]
        if len(path) >= MAX_CHAIN_DEPTH:
            return None
        for candidate in pool:
            if candidate in path or candidate in anchors:
                continue
            if candidate.subject != current.issuer or not _issued_by(current, candidate):
                continue
            _check_issuer(candidate, cas_below)
            _check_validity(candidate, when, "intermediate")
            _check_critical_extensions(candidate, "intermediate")
            found = extend([*path, candidate])
            if found is not None:
                return found
        return None

    return extend([leaf])
