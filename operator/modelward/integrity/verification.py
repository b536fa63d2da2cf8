"""Verify a model directory against an OpenSSF Model Signing signature.

The order of the steps is deliberate:

1. parse the bundle envelope (nothing trusted yet);
2. establish the verification key from *our* trust material (a configured key the bundle's
   hint names, or the leaf of a certificate chain that validates to a configured CA *now*);
3. check the DSSE signature over the exact payload bytes, and only then parse the payload;
4. check the statement is self-consistent (subject digest over the resource digests) and
   allowed by policy (serialization method, signed ignore paths);
5. walk the model (regular files only, dot-files included, symlinks refused unless allowed),
   hash it in parallel and compare the *sets* of names as well as the digests.

Anything that proves the model is not what an authorised signer signed is a rejection and
comes back as a :class:`VerificationResult`; anything that makes checking impossible raises
:class:`~modelward.integrity.errors.UnusableInputError`.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from modelward.integrity.bundle import (
    MAX_BUNDLE_BYTES,
    CertificateChain,
    ModelStatement,
    Resource,
    Serialization,
    SignatureBundle,
    pae,
    parse_bundle,
    parse_statement,
)
from modelward.integrity.errors import BundleFormatError, ModelPathError, Rejection
from modelward.integrity.hashing import HashItem, hash_items, shard_ranges
from modelward.integrity.trust import (
    Signer,
    TrustPolicy,
    key_candidates,
    signature_hash,
    verify_certificate_chain,
)

#: Ignore paths ``model_signing`` writes by default (git metadata and the signature file).
DEFAULT_ALLOWED_IGNORE_PATHS: Final = frozenset(
    {".git", ".github", ".gitignore", ".gitattributes", "model.sig"}
)

FileStatus = Literal["ok", "changed", "missing", "extra"]


@dataclass(frozen=True)
class VerificationPolicy:
    """What a signature may ask for, beyond being cryptographically valid.

    ``allowed_ignore_paths``: every path in the signed ``ignore_paths`` must be one of these
    (a signed ignore path silently exempts a whole subtree from verification).
    ``allow_shards``: ``shards`` serialization cannot see added empty files, so it is opt-in.
    ``allow_symlinks``: symlinks are refused unless both this and the signature allow them;
    even then a link must resolve to a regular file inside the model directory.
    """

    allowed_ignore_paths: frozenset[str] = DEFAULT_ALLOWED_IGNORE_PATHS
    allow_shards: bool = False
    allow_symlinks: bool = False
    workers: int | None = None


@dataclass(frozen=True, slots=True)
class FileResult:
    """The verdict on one file of the model."""

    name: str
    status: FileStatus
    expected: str | None = None  # hex digest from the signature (files mode)
    actual: str | None = None  # hex digest computed now (files mode)
    size: int | None = None
    shards: int | None = None  # number of signed shards (shards mode)


@dataclass(frozen=True)
class VerificationResult:
    """The outcome of :func:`verify_model`: verified, or rejected with a reason."""

    verified: bool
    code: str  # "verified" or a rejection code (bad-signature, files-mismatch, policy...)
    reason: str
    model_path: str
    signer: Signer | None = None
    subject_name: str | None = None
    subject_digest: str | None = None  # hex SHA-256 (the OMS subject digest)
    #: For a model that does not match its signature: the digest of what was found (SHA-256
    #: over the files' own digests, in name order), so a rejected copy is never recorded under
    #: the digest of the genuine model it imitates. None where nothing was hashed.
    observed_digest: str | None = None
    serialization: Serialization | None = None
    files: tuple[FileResult, ...] = ()
    duration_s: float = 0.0
    hashed_bytes: int = 0

    def names_with(self, status: FileStatus) -> list[str]:
        return [f.name for f in self.files if f.status == status]

    @property
    def missing(self) -> list[str]:
        return self.names_with("missing")

    @property
    def extra(self) -> list[str]:
        return self.names_with("extra")

    @property
    def changed(self) -> list[str]:
        return self.names_with("changed")

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``modelward verify --output json``."""
        doc: dict[str, Any] = {
            "result": "verified" if self.verified else "rejected",
            "code": self.code,
            "reason": self.reason,
            "model_path": self.model_path,
            "subject": None
            if self.subject_digest is None
            else {"name": self.subject_name, "digest": f"sha256:{self.subject_digest}"},
            "signer": None
            if self.signer is None
            else {
                "method": self.signer.method,
                "fingerprint": self.signer.fingerprint,
                "subject": self.signer.subject,
                "issuer": self.signer.issuer,
            },
            "serialization": None
            if self.serialization is None
            else {
                "method": self.serialization.method,
                "hash_type": self.serialization.hash_type,
                "shard_size": self.serialization.shard_size,
                "ignore_paths": list(self.serialization.ignore_paths),
            },
            "summary": {
                "files": len(self.files),
                "missing": len(self.missing),
                "extra": len(self.extra),
                "changed": len(self.changed),
            },
            "files": [
                {
                    k: v
                    for k, v in (
                        ("name", f.name),
                        ("status", f.status),
                        ("expected", f.expected),
                        ("actual", f.actual),
                        ("size", f.size),
                        ("shards", f.shards),
                    )
                    if v is not None
                }
                for f in self.files
            ],
            "duration_s": round(self.duration_s, 3),
            "hashed_bytes": self.hashed_bytes,
        }
        return doc


# --------------------------------------------------------------------------- signature


def read_signature_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BUNDLE_BYTES + 1)
    except OSError as exc:
        raise BundleFormatError(
            f"cannot read {path}: {exc.strerror}",
            fix="pass the signature written by `model_signing sign`",
        ) from exc
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleFormatError(f"{path} is larger than {MAX_BUNDLE_BYTES} bytes")
    return data


def _verify_ecdsa(key: ec.EllipticCurvePublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message, ec.ECDSA(signature_hash(key)))
    except InvalidSignature:
        return False
    return True


def verify_bundle_signature(
    bundle: SignatureBundle,
    *,
    trust: TrustPolicy,
    now: datetime.datetime | None = None,
) -> Signer:
    """Check the DSSE signature with trusted material only; returns who signed.

    Raises :class:`Rejection` (``wrong-signer``, ``certificate``, ``bad-signature``).
    """
    message = pae(bundle.envelope.payload_type, bundle.envelope.payload)
    signature = bundle.envelope.signature
    if isinstance(bundle.material, CertificateChain):
        key, signer = verify_certificate_chain(bundle.material.certificates, policy=trust, now=now)
        if not _verify_ecdsa(key, signature, message):
            raise Rejection(
                f"signature does not verify with the key of {signer.subject}", code="bad-signature"
            )
        return signer
    if not trust.keys:
        raise Rejection(
            "the model is signed with a key but no public key is trusted (pass --public-key)",
            code="wrong-signer",
        )
    hint = bundle.material.hint
    candidates = key_candidates(trust.keys, hint)
    if not candidates:
        raise Rejection(
            f"signed by key sha256:{hint}, which is not a trusted key", code="wrong-signer"
        )
    for candidate in candidates:
        if candidate.key.curve.name != "secp521r1" and len(signature) > 150:
            continue  # a DER ECDSA signature longer than this cannot be for P-256/P-384
        if _verify_ecdsa(candidate.key, signature, message):
            return Signer(method="key", fingerprint=candidate.fingerprint)
    if hint is None and len(candidates) > 1:
        raise Rejection("signature does not verify with any trusted key", code="bad-signature")
    raise Rejection(
        f"signature does not verify with key {candidates[0].fingerprint}", code="bad-signature"
    )


# --------------------------------------------------------------------------- model walk


@dataclass(frozen=True, slots=True)
class ModelFile:
    name: str  # relative POSIX path ("." for a single-file model)
    path: str  # path to open
    size: int


@dataclass
class _Walk:
    files: list[ModelFile] = field(default_factory=list)
    symlinks: list[str] = field(default_factory=list)
    special: list[str] = field(default_factory=list)
    escaping: list[str] = field(default_factory=list)


def _is_ignored(name: str, ignore: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + "/") for p in ignore)


def walk_model(
    root: str,
    *,
    ignore: frozenset[str],
    skip: frozenset[str] = frozenset(),
    follow_symlinks: bool = False,
) -> _Walk:
    """List the model's files without following anything it should not.

    Uses ``lstat`` semantics throughout: a symlink is reported, never silently followed, and
    FIFOs, sockets and devices are reported rather than opened (opening a FIFO blocks).
    """
    walk = _Walk()
    real_root = os.path.realpath(root)
    stack: list[tuple[str, str]] = [(real_root, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            raise ModelPathError(
                f"cannot list directory: {exc.strerror}", path=prefix or root
            ) from exc
        for entry in entries:
            name = f"{prefix}{entry.name}"
            if name in skip or _is_ignored(name, ignore):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                raise ModelPathError(f"cannot stat: {exc.strerror}", path=name) from exc
            if stat.S_ISLNK(st.st_mode):
                if not follow_symlinks:
                    walk.symlinks.append(name)
                    continue
                target = os.path.realpath(entry.path)
                if os.path.commonpath([target, real_root]) != real_root:
                    walk.escaping.append(name)
                    continue
                try:
                    st = os.stat(target)
                except OSError:
                    walk.escaping.append(name)
                    continue
                if not stat.S_ISREG(st.st_mode):
                    walk.special.append(name)
                    continue
                walk.files.append(ModelFile(name=name, path=target, size=st.st_size))
            elif stat.S_ISDIR(st.st_mode):
                stack.append((entry.path, name + "/"))
            elif stat.S_ISREG(st.st_mode):
                walk.files.append(ModelFile(name=name, path=entry.path, size=st.st_size))
            else:
                walk.special.append(name)
    return walk


# --------------------------------------------------------------------------- verification


def _subject_digest(resources: Iterable[Resource]) -> bytes:
    h = hashlib.sha256()
    for r in resources:
        h.update(r.digest)
    return h.digest()


def _check_statement(statement: ModelStatement, policy: VerificationPolicy) -> None:
    if _subject_digest(statement.resources) != statement.subject_digest:
        raise Rejection(
            "the subject digest does not match the signed resources (inconsistent statement)",
            code="bad-statement",
        )
    seen: set[str] = set()
    for r in statement.resources:
        if r.name in seen:
            raise Rejection(f"resource {r.name!r} is listed twice", code="bad-statement")
        seen.add(r.name)
    ser = statement.serialization
    if ser.method == "shards" and not policy.allow_shards:
        raise Rejection(
            "the signature uses 'shards' serialization, which policy does not "
            "accept (it cannot detect added empty files; use --allow-shards)",
            code="policy",
        )
    disallowed = sorted(set(ser.ignore_paths) - policy.allowed_ignore_paths)
    if disallowed:
        raise Rejection(
            f"the signature exempts paths policy does not allow to be ignored: "
            f"{', '.join(disallowed)}",
            code="policy",
        )


def _single_file_model(path: str, size: int) -> _Walk:
    return _Walk(files=[ModelFile(name=".", path=path, size=size)])


def verify_model(
    *,
    model_path: str,
    signature_path: str,
    trust: TrustPolicy,
    policy: VerificationPolicy | None = None,
    now: datetime.datetime | None = None,
) -> VerificationResult:
    """Verify ``model_path`` (a directory or a single file) against ``signature_path``.

    Returns a verified or rejected :class:`VerificationResult`; raises
    :class:`~modelward.integrity.errors.UnusableInputError` when the inputs cannot be
    checked (unreadable signature, malformed bundle, unsupported hash, missing model).
    """
    policy = policy or VerificationPolicy()
    started = time.perf_counter()
    bundle = parse_bundle(read_signature_file(signature_path))
    try:
        signer = verify_bundle_signature(bundle, trust=trust, now=now)
    except Rejection as rejection:
        return VerificationResult(
            verified=False,
            code=rejection.code,
            reason=rejection.message,
            model_path=model_path,
            duration_s=time.perf_counter() - started,
        )
    statement = parse_statement(bundle.envelope.payload)
    partial = VerificationResult(
        verified=False,
        code="",
        reason="",
        model_path=model_path,
        signer=signer,
        subject_name=statement.subject_name,
        subject_digest=statement.subject_digest_hex,
        serialization=statement.serialization,
    )
    try:
        _check_statement(statement, policy)
        files, hashed = _check_files(
            model_path=model_path, signature_path=signature_path, statement=statement, policy=policy
        )
    except Rejection as rejection:
        return replace(
            partial,
            code=rejection.code,
            reason=rejection.message,
            duration_s=time.perf_counter() - started,
        )
    if any(f.status != "ok" for f in files):
        return replace(
            partial,
            observed_digest=observed_digest(files),
            code="files-mismatch",
            reason=_mismatch_reason(files),
            files=tuple(files),
            hashed_bytes=hashed,
            duration_s=time.perf_counter() - started,
        )
    return replace(
        partial,
        verified=True,
        code="verified",
        reason=f"{len(files)} files match the signature",
        files=tuple(files),
        hashed_bytes=hashed,
        duration_s=time.perf_counter() - started,
    )


def observed_digest(files: Iterable[FileResult]) -> str | None:
    """SHA-256 over the digests computed now, in file-name order; None if none was computed."""
    found = sorted((f.name, f.actual) for f in files if f.actual is not None)
    if not found:
        return None
    digest = hashlib.sha256()
    for _, actual in found:
        digest.update(bytes.fromhex(actual))
    return digest.hexdigest()


def _mismatch_reason(files: Iterable[FileResult]) -> str:
    parts = []
    by_status: dict[str, list[str]] = {}
    for f in files:
        by_status.setdefault(f.status, []).append(f.name)
    for status in ("changed", "missing", "extra"):
        names = by_status.get(status, [])
        if names:
            shown = ", ".join(sorted(names)[:5]) + (
                f" (+{len(names) - 5} more)" if len(names) > 5 else ""
            )
            parts.append(f"{status}: {shown}")
    return "model does not match the signature: " + "; ".join(parts)


def _model_listing(
    model_path: str, signature_path: str, statement: ModelStatement, policy: VerificationPolicy
) -> _Walk:
    try:
        st = os.stat(model_path)
    except OSError as exc:
        raise ModelPathError(f"cannot access model: {exc.strerror}", path=model_path) from exc
    if stat.S_ISREG(st.st_mode):
        return _single_file_model(model_path, st.st_size)
    if not stat.S_ISDIR(st.st_mode):
        raise ModelPathError("not a regular file or directory", path=model_path)
    skip: set[str] = set()
    real_root = os.path.realpath(model_path)
    real_sig = os.path.realpath(signature_path)
    if os.path.commonpath([real_root, real_sig]) == real_root and real_sig != real_root:
        skip.add(os.path.relpath(real_sig, real_root).replace(os.sep, "/"))
    follow = policy.allow_symlinks and statement.serialization.allow_symlinks
    walk = walk_model(
        model_path,
        ignore=frozenset(statement.serialization.ignore_paths),
        skip=frozenset(skip),
        follow_symlinks=follow,
    )
    if walk.symlinks:
        why = (
            "policy does not allow symlinks"
            if statement.serialization.allow_symlinks
            else "the signature does not allow symlinks"
        )
        raise Rejection(
            f"model contains symlinks ({why}): {', '.join(sorted(walk.symlinks))}", code="symlink"
        )
    if walk.escaping:
        raise Rejection(
            f"symlinks point outside the model directory: {', '.join(sorted(walk.escaping))}",
            code="symlink",
        )
    if walk.special:
        raise Rejection(
            "model contains entries that are not regular files (FIFO, socket, "
            f"device or symlink to a directory): {', '.join(sorted(walk.special))}",
            code="special-file",
        )
    return walk


def _check_files(
    *,
    model_path: str,
    signature_path: str,
    statement: ModelStatement,
    policy: VerificationPolicy,
) -> tuple[list[FileResult], int]:
    walk = _model_listing(model_path, signature_path, statement, policy)
    on_disk = {f.name: f for f in walk.files}
    ser = statement.serialization
    results: list[FileResult] = []
    if ser.method == "files":
        expected = {r.path: r for r in statement.resources}
        items = [
            HashItem(key=name, path=on_disk[name].path, size=on_disk[name].size)
            for name in expected.keys() & on_disk.keys()
        ]
        digests = hash_items(items, hash_type=ser.hash_type, workers=policy.workers)
        for name in sorted(expected.keys() | on_disk.keys()):
            resource = expected.get(name)
            local = on_disk.get(name)
            if resource is None:
                assert local is not None
                results.append(FileResult(name=name, status="extra", size=local.size))
            elif local is None:
                results.append(
                    FileResult(name=name, status="missing", expected=resource.digest.hex())
                )
            else:
                actual = digests[name]
                results.append(
                    FileResult(
                        name=name,
                        status="ok" if actual == resource.digest else "changed",
                        expected=resource.digest.hex(),
                        actual=actual.hex(),
                        size=local.size,
                    )
                )
        return results, sum(i.length for i in items)
    return _check_shards(statement, on_disk, policy)


def _check_shards(
    statement: ModelStatement,
    on_disk: Mapping[str, ModelFile],
    policy: VerificationPolicy,
) -> tuple[list[FileResult], int]:
    ser = statement.serialization
    assert ser.shard_size is not None
    signed: dict[str, list[Resource]] = {}
    for r in statement.resources:
        signed.setdefault(r.path, []).append(r)
    results: dict[str, FileResult] = {}
    items: list[HashItem] = []
    for name, resources in signed.items():
        local = on_disk.get(name)
        if local is None:
            results[name] = FileResult(name=name, status="missing", shards=len(resources))
            continue
        ranges = sorted((r.start, r.end) for r in resources)
        if ranges != shard_ranges(local.size, ser.shard_size):
            results[name] = FileResult(
                name=name, status="changed", size=local.size, shards=len(resources)
            )
            continue
        items.extend(
            HashItem(key=r.name, path=local.path, size=local.size, start=r.start or 0, end=r.end)
            for r in resources
        )
    for name, local in on_disk.items():
        if name not in signed:
            # Includes empty files: a shards signature has no resource for them, so an
            # added empty file is indistinguishable from a signed one. Fail closed.
            results[name] = FileResult(name=name, status="extra", size=local.size)
    digests = hash_items(items, hash_type=ser.hash_type, workers=policy.workers)
    by_path: dict[str, bool] = {}
    for r in statement.resources:
        if r.name in digests:
            by_path[r.path] = by_path.get(r.path, True) and digests[r.name] == r.digest
    for name, ok in by_path.items():
        results[name] = FileResult(
            name=name,
            status="ok" if ok else "changed",
            size=on_disk[name].size,
            shards=len(signed[name]),
        )
    return [results[n] for n in sorted(results)], sum(i.length for i in items)
