"""Read an OpenSSF Model Signing signature: Sigstore bundle -> DSSE envelope -> in-toto statement.

Parsing is separate from checking on purpose: this module only answers "what does the file
say", with frozen values and errors that name the field at fault. Nothing here is trusted
until :mod:`modelward.integrity.verification` has checked the DSSE signature over the exact
payload bytes kept in :attr:`DsseEnvelope.payload`.

The JSON reader is strict where a lax one would let two parsers disagree about a signed
document: duplicate keys and non-finite numbers are errors.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import posixpath
from dataclasses import dataclass
from typing import Any, Final

from modelward.integrity.errors import BundleFormatError, UnsupportedFormatError
from modelward.integrity.hashing import DIGEST_SIZES

BUNDLE_MEDIA_TYPES: Final = frozenset(
    {
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
    }
)
DSSE_PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE: Final = "https://model_signing/signature/v1.0"
LEGACY_PREDICATE_TYPE: Final = "https://model_signing/Digests/v0.1"
#: A signature for a model of a million files is ~200 MB; anything larger is not a signature.
MAX_BUNDLE_BYTES: Final = 256 << 20


@dataclass(frozen=True, slots=True)
class KeyHint:
    """Key method: the bundle only names the key (hex SHA-256 of its PEM text), if at all."""

    hint: str | None


@dataclass(frozen=True, slots=True)
class CertificateChain:
    """Certificate method: DER certificates as carried in the bundle, leaf first (untrusted)."""

    certificates: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class DsseEnvelope:
    payload_type: str
    payload: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class SignatureBundle:
    media_type: str
    material: KeyHint | CertificateChain
    envelope: DsseEnvelope


@dataclass(frozen=True, slots=True)
class Serialization:
    """How the signer turned the model into resources (``predicate.serialization``)."""

    method: str  # "files" | "shards"
    hash_type: str
    allow_symlinks: bool
    ignore_paths: tuple[str, ...]
    shard_size: int | None

    @property
    def resource_algorithm(self) -> str:
        """The ``algorithm`` every resource must carry under this serialization."""
        if self.method == "shards":
            return f"{self.hash_type}-sharded-{self.shard_size}"
        return self.hash_type


@dataclass(frozen=True, slots=True)
class Resource:
    """One signed resource: a file (``path``) or a shard of one (``path`` + [start, end))."""

    name: str
    algorithm: str
    digest: bytes
    path: str
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True, slots=True)
class ModelStatement:
    """The in-toto statement of a model signature, decoded but not yet trusted."""

    subject_name: str
    subject_digest: bytes
    serialization: Serialization
    resources: tuple[Resource, ...]

    @property
    def subject_digest_hex(self) -> str:
        return self.subject_digest.hex()


# --------------------------------------------------------------------------- JSON helpers


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def strict_json_loads(data: bytes | str) -> Any:
    """``json.loads`` without duplicate keys or NaN/Infinity (ambiguous in signed data)."""
    return json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)


def _obj(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BundleFormatError("expected an object", field=field)
    return value


def _str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise BundleFormatError("expected a string", field=field)
    return value


def _list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise BundleFormatError("expected a list", field=field)
    return value


def _b64(value: Any, field: str) -> bytes:
    try:
        return base64.b64decode(_str(value, field), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BundleFormatError(f"invalid base64 ({exc})", field=field) from exc


def _hex(value: Any, field: str) -> bytes:
    text = _str(value, field)
    if text != text.lower():
        raise BundleFormatError("digest must be lowercase hex", field=field)
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise BundleFormatError("invalid hex digest", field=field) from exc


def _int(value: Any, field: str) -> int:
    """An integer, also when protobuf's Struct wrote it as a float (``1000.0``)."""
    if isinstance(value, bool):
        raise BundleFormatError("expected an integer", field=field)
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise BundleFormatError("expected an integer", field=field)
        value = int(value)
    if not isinstance(value, int):
        raise BundleFormatError("expected an integer", field=field)
    return value


# --------------------------------------------------------------------------- bundle


def parse_bundle(data: bytes) -> SignatureBundle:
    """Parse the outer Sigstore bundle (no cryptography happens here)."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleFormatError(f"file is larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        doc = strict_json_loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BundleFormatError(f"not valid JSON ({exc})") from exc
    root = _obj(doc, "$")
    media_type = _str(root.get("mediaType"), "mediaType")
    if media_type not in BUNDLE_MEDIA_TYPES:
        raise BundleFormatError(
            f"unsupported bundle mediaType {media_type!r} (expected Sigstore bundle v0.3)",
            field="mediaType",
        )
    material_doc = _obj(root.get("verificationMaterial"), "verificationMaterial")
    material: KeyHint | CertificateChain
    if "x509CertificateChain" in material_doc:
        chain = _obj(
            material_doc["x509CertificateChain"], "verificationMaterial.x509CertificateChain"
        )
        certs = _list(
            chain.get("certificates"), "verificationMaterial.x509CertificateChain.certificates"
        )
        if not certs:
            raise BundleFormatError(
                "empty certificate chain", field="verificationMaterial.x509CertificateChain"
            )
        material = CertificateChain(
            tuple(
                _b64(_obj(c, f"certificates[{i}]").get("rawBytes"), f"certificates[{i}].rawBytes")
                for i, c in enumerate(certs)
            )
        )
    elif "publicKey" in material_doc:
        key = _obj(material_doc["publicKey"], "verificationMaterial.publicKey")
        hint = key.get("hint")
        material = KeyHint(
            None
            if hint in (None, "")
            else _str(hint, "verificationMaterial.publicKey.hint").lower()
        )
    elif "certificate" in material_doc:
        raise UnsupportedFormatError(
            "Sigstore keyless (Fulcio certificate + transparency log) signatures are not "
            "supported by this verifier",
            fix="sign with the `key` or `certificate` method of model_signing",
        )
    else:
        raise BundleFormatError(
            "no publicKey or x509CertificateChain", field="verificationMaterial"
        )
    if "dsseEnvelope" not in root:
        raise BundleFormatError("no dsseEnvelope (message signatures are not model signatures)")
    env = _obj(root["dsseEnvelope"], "dsseEnvelope")
    signatures = _list(env.get("signatures"), "dsseEnvelope.signatures")
    if len(signatures) != 1:
        raise BundleFormatError(
            f"expected exactly one signature, found {len(signatures)}",
            field="dsseEnvelope.signatures",
        )
    envelope = DsseEnvelope(
        payload_type=_str(env.get("payloadType"), "dsseEnvelope.payloadType"),
        payload=_b64(env.get("payload"), "dsseEnvelope.payload"),
        signature=_b64(
            _obj(signatures[0], "dsseEnvelope.signatures[0]").get("sig"),
            "dsseEnvelope.signatures[0].sig",
        ),
    )
    if envelope.payload_type != DSSE_PAYLOAD_TYPE:
        raise BundleFormatError(
            f"unexpected payloadType {envelope.payload_type!r}", field="dsseEnvelope.payloadType"
        )
    return SignatureBundle(media_type=media_type, material=material, envelope=envelope)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: the exact bytes the signature covers."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


# --------------------------------------------------------------------------- statement


def _check_relative_path(path: str, field: str) -> str:
    """A resource path must be a plain relative POSIX path inside the model."""
    if not path or "\x00" in path or "\\" in path:
        raise BundleFormatError(f"invalid path {path!r}", field=field)
    if path == ".":
        return path
    if path.startswith("/") or posixpath.normpath(path) != path or path.split("/")[0] == "..":
        raise BundleFormatError(f"path {path!r} is not a normalised relative path", field=field)
    return path


def _check_ignore_path(path: str, field: str) -> str:
    if not path or path.startswith("/") or "\x00" in path or "\\" in path:
        raise BundleFormatError(f"invalid ignore path {path!r}", field=field)
    norm = posixpath.normpath(path)
    if norm in (".", "..") or norm.startswith("../"):
        raise BundleFormatError(
            f"ignore path {path!r} would exempt the whole model or point outside it", field=field
        )
    return norm


def _parse_serialization(doc: dict[str, Any]) -> Serialization:
    field = "predicate.serialization"
    method = _str(doc.get("method"), f"{field}.method")
    if method not in ("files", "shards"):
        raise BundleFormatError(f"unknown serialization method {method!r}", field=f"{field}.method")
    hash_type = _str(doc.get("hash_type"), f"{field}.hash_type")
    if hash_type not in DIGEST_SIZES:
        raise UnsupportedFormatError(
            f"unsupported hash_type {hash_type!r}: modelward verifies "
            f"{', '.join(sorted(DIGEST_SIZES))}",
            fix="sign with sha256 (the model_signing default), blake2 or blake3 hashing",
        )
    allow_symlinks = doc.get("allow_symlinks", False)
    if not isinstance(allow_symlinks, bool):
        raise BundleFormatError("expected a boolean", field=f"{field}.allow_symlinks")
    ignore_paths = tuple(
        _check_ignore_path(_str(p, f"{field}.ignore_paths[{i}]"), f"{field}.ignore_paths[{i}]")
        for i, p in enumerate(_list(doc.get("ignore_paths", []), f"{field}.ignore_paths"))
    )
    shard_size: int | None = None
    if method == "shards":
        shard_size = _int(doc.get("shard_size"), f"{field}.shard_size")
        if shard_size <= 0:
            raise BundleFormatError("must be positive", field=f"{field}.shard_size")
    return Serialization(
        method=method,
        hash_type=hash_type,
        allow_symlinks=allow_symlinks,
        ignore_paths=ignore_paths,
        shard_size=shard_size,
    )


def _parse_resource(doc: Any, index: int, serialization: Serialization) -> Resource:
    field = f"predicate.resources[{index}]"
    item = _obj(doc, field)
    name = _str(item.get("name"), f"{field}.name")
    algorithm = _str(item.get("algorithm"), f"{field}.algorithm")
    if algorithm != serialization.resource_algorithm:
        raise BundleFormatError(
            f"algorithm {algorithm!r} does not match the serialization "
            f"({serialization.resource_algorithm!r})",
            field=f"{field}.algorithm",
        )
    digest = _hex(item.get("digest"), f"{field}.digest")
    if len(digest) != DIGEST_SIZES[serialization.hash_type]:
        raise BundleFormatError(
            f"digest has {len(digest)} bytes, {serialization.hash_type} "
            f"has {DIGEST_SIZES[serialization.hash_type]}",
            field=f"{field}.digest",
        )
    if serialization.method == "files":
        return Resource(
            name=name,
            algorithm=algorithm,
            digest=digest,
            path=_check_relative_path(name, f"{field}.name"),
        )
    path, sep1, rest = name.rpartition(":")
    path, sep2, start_text = path.rpartition(":")
    if not (sep1 and sep2 and start_text.isdigit() and rest.isdigit()):
        raise BundleFormatError(f"shard name {name!r} is not path:start:end", field=f"{field}.name")
    start, end = int(start_text), int(rest)
    assert serialization.shard_size is not None
    if end <= start or end - start > serialization.shard_size or start % serialization.shard_size:
        raise BundleFormatError(
            f"shard range {start}:{end} does not fit shard_size {serialization.shard_size}",
            field=f"{field}.name",
        )
    return Resource(
        name=name,
        algorithm=algorithm,
        digest=digest,
        path=_check_relative_path(path, f"{field}.name"),
        start=start,
        end=end,
    )


def parse_statement(payload: bytes) -> ModelStatement:
    """Decode the in-toto statement of an OMS v1.0 model signature."""
    try:
        doc = strict_json_loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BundleFormatError(f"payload is not valid JSON ({exc})") from exc
    root = _obj(doc, "payload")
    if root.get("_type") != STATEMENT_TYPE:
        raise BundleFormatError(f"expected {STATEMENT_TYPE}", field="_type")
    predicate_type = root.get("predicateType")
    if predicate_type == LEGACY_PREDICATE_TYPE:
        raise UnsupportedFormatError(
            "legacy v0.1 model signature (no serialization, no subject digest) is rejected",
            fix="re-sign the model with model_signing >= 1.0",
        )
    if predicate_type != PREDICATE_TYPE:
        raise BundleFormatError(f"unknown predicateType {predicate_type!r}", field="predicateType")
    subjects = _list(root.get("subject"), "subject")
    if len(subjects) != 1:
        raise BundleFormatError(
            f"expected exactly one subject, found {len(subjects)}", field="subject"
        )
    subject = _obj(subjects[0], "subject[0]")
    digest_doc = _obj(subject.get("digest"), "subject[0].digest")
    subject_digest = _hex(digest_doc.get("sha256"), "subject[0].digest.sha256")
    if len(subject_digest) != 32:
        raise BundleFormatError("not a SHA-256 digest", field="subject[0].digest.sha256")
    subject_name = subject.get("name", "")
    predicate = _obj(root.get("predicate"), "predicate")
    serialization = _parse_serialization(
        _obj(predicate.get("serialization"), "predicate.serialization")
    )
    resources = tuple(
        _parse_resource(r, i, serialization)
        for i, r in enumerate(_list(predicate.get("resources"), "predicate.resources"))
    )
    return ModelStatement(
        subject_name=_str(subject_name, "subject[0].name"),
        subject_digest=subject_digest,
        serialization=serialization,
        resources=resources,
    )
