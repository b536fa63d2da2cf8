"""Interop: models signed by the REAL model_signing tool verify with modelward, and every
tampering is rejected with the right reason. The signing side is always the real tool."""

from __future__ import annotations

import base64
import datetime
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from modelward.integrity.errors import BundleFormatError
from modelward.integrity.trust import TrustPolicy, load_ca_certificates, load_public_keys
from modelward.integrity.verification import (
    VerificationPolicy,
    VerificationResult,
    verify_model,
)

from .conftest import (
    KeyPair,
    copy_model,
    flip_byte,
    make_cert,
    make_key,
    make_model,
    make_pki,
    requires_model_signing,
    run_model_signing,
    sign_api,
    sign_certificate_cli,
    sign_key_cli,
    write_pem,
)

pytestmark = [pytest.mark.slow, requires_model_signing]


def key_trust(*pairs: KeyPair) -> TrustPolicy:
    keys = [k for p in pairs for k in load_public_keys(p.public.read_bytes(), source=str(p))]
    return TrustPolicy(keys=tuple(keys))


def ca_trust(ca_pem: Path, identities: frozenset[str] = frozenset()) -> TrustPolicy:
    return TrustPolicy(
        cas=tuple(load_ca_certificates(ca_pem.read_bytes(), source="ca")), identities=identities
    )


# --------------------------------------------------------------------------- positive interop


@pytest.mark.parametrize("curve", ["p256", "p384", "p521"])
def test_key_method_cli_signature_verifies(tmp_path: Path, curve: str) -> None:
    model = make_model(tmp_path)
    key = make_key(tmp_path, "k", curve)
    sign_key_cli(model, key, model / "model.sig")
    result = verify_model(
        model_path=str(model), signature_path=str(model / "model.sig"), trust=key_trust(key)
    )
    assert result.verified, result.reason
    assert result.signer is not None and result.signer.method == "key"
    assert {f.name for f in result.files} == {
        "config.json",
        "weights.bin",
        "sub/tokenizer.json",
        "sub/deeper/shard-00001.bin",
        ".hidden",
    }
    payload = json.loads(
        base64.b64decode(json.loads((model / "model.sig").read_text())["dsseEnvelope"]["payload"])
    )
    assert result.subject_digest == payload["subject"][0]["digest"]["sha256"]


@pytest.mark.parametrize("curve", ["p256", "p384", "p521"])
def test_certificate_method_cli_signature_verifies(tmp_path: Path, curve: str) -> None:
    model = make_model(tmp_path)
    pki = make_pki(tmp_path / "pki", curve)
    sign_certificate_cli(
        model, pki.leaf_key.private, pki.leaf_pem, pki.ca_pem, tmp_path / "model.sig"
    )
    result = verify_model(
        model_path=str(model),
        signature_path=str(tmp_path / "model.sig"),
        trust=ca_trust(pki.ca_pem),
    )
    assert result.verified, result.reason
    assert result.signer is not None and result.signer.subject is not None
    assert "CN=model signer" in result.signer.subject


@pytest.mark.parametrize(
    ("method", "hashing"), [("files", "blake2"), ("shards", "sha256"), ("shards", "blake2")]
)
@pytest.mark.parametrize("curve", ["p256", "p384", "p521"])
def test_api_serializations_verify(tmp_path: Path, method: str, hashing: str, curve: str) -> None:
    model = make_model(tmp_path)
    key = make_key(tmp_path, "k", curve)
    sign_api(model, key, model / "model.sig", method=method, hashing=hashing, shard_size=100_000)
    sig = json.loads(
        base64.b64decode(json.loads((model / "model.sig").read_text())["dsseEnvelope"]["payload"])
    )
    assert sig["predicate"]["serialization"]["method"] == method
    result = verify_model(
        model_path=str(model),
        signature_path=str(model / "model.sig"),
        trust=key_trust(key),
        policy=VerificationPolicy(allow_shards=True),
    )
    assert result.verified, result.reason
    assert result.serialization is not None
    assert result.serialization.hash_type == ("blake2b" if hashing == "blake2" else "sha256")


def test_single_file_model(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(os.urandom(50_000))
    key = make_key(tmp_path, "k")
    sign_key_cli(model, key, tmp_path / "model.sig")
    result = verify_model(
        model_path=str(model), signature_path=str(tmp_path / "model.sig"), trust=key_trust(key)
    )
    assert result.verified, result.reason
    assert [f.name for f in result.files] == ["."]


# --------------------------------------------------------------------------- tamper matrix


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, KeyPair]:
    base = tmp_path_factory.mktemp("signed")
    model = make_model(base)
    key = make_key(base, "k", "p384")
    sign_key_cli(model, key, model / "model.sig")
    return model, key


def _verify(model: Path, key: KeyPair, **policy: Any) -> VerificationResult:
    return verify_model(
        model_path=str(model),
        signature_path=str(model / "model.sig"),
        trust=key_trust(key),
        policy=VerificationPolicy(**policy),
    )


def test_tamper_changed_file(signed: tuple[Path, KeyPair], tmp_path: Path) -> None:
    model = copy_model(signed[0], tmp_path / "m")
    flip_byte(model / "weights.bin", 1000)
    result = _verify(model, signed[1])
    assert not result.verified and result.code == "files-mismatch"
    assert result.changed == ["weights.bin"] and not result.missing and not result.extra
    assert "weights.bin" in result.reason


def test_tamper_added_file(signed: tuple[Path, KeyPair], tmp_path: Path) -> None:
    model = copy_model(signed[0], tmp_path / "m")
    (model / "sub" / "evil.py").write_text("import os\n")
    result = _verify(model, signed[1])
    assert result.code == "files-mismatch" and result.extra == ["sub/evil.py"]


def test_tamper_added_empty_dotfile(signed: tuple[Path, KeyPair], tmp_path: Path) -> None:
    model = copy_model(signed[0], tmp_path / "m")
    (model / ".pth").write_bytes(b"")
    assert _verify(model, signed[1]).extra == [".pth"]


def test_tamper_removed_file(signed: tuple[Path, KeyPair], tmp_path: Path) -> None:
    model = copy_model(signed[0], tmp_path / "m")
    (model / "sub" / "tokenizer.json").unlink()
    result = _verify(model, signed[1])
    assert result.code == "files-mismatch" and result.missing == ["sub/tokenizer.json"]


def test_tamper_renamed_file(signed: tuple[Path, KeyPair], tmp_path: Path) -> None:
    model = copy_model(signed[0], tmp_path / "m")
    (model / "config.json").rename(model / "config2.json")
    result = _verify(model, signed[1])
    assert result.missing == ["config.json"] and result.extra == ["config2.json"]


def test_tamper_other_signer(signed: tuple[Path, KeyPair], tmp_path: Path) -> None:
    other = make_key(tmp_path, "other", "p384")
    result = _verify(signed[0], other)
    assert not result.verified and result.code == "wrong-signer"


def test_tamper_resigned_by_attacker(signed: tuple[Path, KeyPair], tmp_path: Path) -> None:
    model = copy_model(signed[0], tmp_path / "m")
    (model / "weights.bin").write_bytes(b"backdoored")
    attacker = make_key(tmp_path, "attacker", "p384")
    sign_key_cli(model, attacker, model / "model.sig")
    result = _verify(model, signed[1])
    assert result.code == "wrong-signer"


def _edit_bundle(model: Path, edit) -> None:  # type: ignore[no-untyped-def]
    bundle = json.loads((model / "model.sig").read_text())
    edit(bundle)
    (model / "model.sig").write_text(json.dumps(bundle))


def test_tamper_edited_payload(signed: tuple[Path, KeyPair], tmp_path: Path) -> None:
    model = copy_model(signed[0], tmp_path / "m")
    (model / "weights.bin").write_bytes(b"backdoored")

    def edit(bundle: dict) -> None:  # type: ignore[type-arg]
        payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        for r in payload["predicate"]["resources"]:
            if r["name"] == "weights.bin":
                import hashlib

                r["digest"] = hashlib.sha256(b"backdoored").hexdigest()
        bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()

    _edit_bundle(model, edit)
    result = _verify(model, signed[1])
    assert result.code == "bad-signature"


@pytest.mark.parametrize("bit", [0, 77, 400])
def test_tamper_flipped_signature_bit(
    signed: tuple[Path, KeyPair], tmp_path: Path, bit: int
) -> None:
    model = copy_model(signed[0], tmp_path / "m")

    def edit(bundle: dict) -> None:  # type: ignore[type-arg]
        sig = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
        sig[(bit // 8) % len(sig)] ^= 1 << (bit % 8)
        bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(sig).decode()

    _edit_bundle(model, edit)
    assert _verify(model, signed[1]).code == "bad-signature"


def test_tamper_hint_rewritten(signed: tuple[Path, KeyPair], tmp_path: Path) -> None:
    model = copy_model(signed[0], tmp_path / "m")
    _edit_bundle(model, lambda b: b["verificationMaterial"]["publicKey"].update(hint="00" * 32))
    assert _verify(model, signed[1]).code == "wrong-signer"


def test_tamper_symlink(signed: tuple[Path, KeyPair], tmp_path: Path) -> None:
    model = copy_model(signed[0], tmp_path / "m")
    (model / "config.json").unlink()
    (model / "config.json").symlink_to(tmp_path / "outside.json")
    (tmp_path / "outside.json").write_text('{"architectures": ["Toy"]}\n')
    result = _verify(model, signed[1])
    assert result.code == "symlink" and "config.json" in result.reason


def test_tamper_fifo_is_not_opened(signed: tuple[Path, KeyPair], tmp_path: Path) -> None:
    model = copy_model(signed[0], tmp_path / "m")
    os.mkfifo(model / "pipe")
    assert _verify(model, signed[1]).code == "special-file"


def test_tamper_duplicated_signature_entries_rejected(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    (model / "model.sig").write_text("{not json")
    with pytest.raises(BundleFormatError):
        verify_model(
            model_path=str(model), signature_path=str(model / "model.sig"), trust=TrustPolicy()
        )


def test_expired_certificate_rejected_where_model_signing_accepts(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    pki = make_pki(tmp_path / "pki")
    now = datetime.datetime.now(datetime.UTC)
    pair, cert = pki.leaf(
        "expired",
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    sign_certificate_cli(model, pair.private, cert, pki.ca_pem, tmp_path / "model.sig")
    tool = run_model_signing(
        "verify",
        "certificate",
        "--signature",
        tmp_path / "model.sig",
        "--certificate_chain",
        pki.ca_pem,
        model,
    )
    assert tool.returncode == 0, "model_signing checks validity at notBefore (lax)"
    result = verify_model(
        model_path=str(model),
        signature_path=str(tmp_path / "model.sig"),
        trust=ca_trust(pki.ca_pem),
    )
    assert result.code == "certificate" and "expired" in result.reason


def test_certificate_without_code_signing_rejected(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    pki = make_pki(tmp_path / "pki")
    pair, cert = pki.leaf("keyagreement", code_signing=False)
    sign_certificate_cli(model, pair.private, cert, pki.ca_pem, tmp_path / "model.sig")
    result = verify_model(
        model_path=str(model),
        signature_path=str(tmp_path / "model.sig"),
        trust=ca_trust(pki.ca_pem),
    )
    assert result.code == "certificate"


def test_certificate_from_untrusted_ca_rejected(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    pki = make_pki(tmp_path / "pki")
    other = make_pki(tmp_path / "other")
    sign_certificate_cli(
        model, pki.leaf_key.private, pki.leaf_pem, pki.ca_pem, tmp_path / "model.sig"
    )
    result = verify_model(
        model_path=str(model),
        signature_path=str(tmp_path / "model.sig"),
        trust=ca_trust(other.ca_pem),
    )
    assert result.code == "wrong-signer"


def test_certificate_identity_pinning(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    pki = make_pki(tmp_path / "pki")
    sign_certificate_cli(
        model, pki.leaf_key.private, pki.leaf_pem, pki.ca_pem, tmp_path / "model.sig"
    )
    good = verify_model(
        model_path=str(model),
        signature_path=str(tmp_path / "model.sig"),
        trust=ca_trust(pki.ca_pem, frozenset({"signer@example.com"})),
    )
    bad = verify_model(
        model_path=str(model),
        signature_path=str(tmp_path / "model.sig"),
        trust=ca_trust(pki.ca_pem, frozenset({"someone@example.com"})),
    )
    assert good.verified and bad.code == "wrong-signer"


def test_intermediate_ca_chain(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    pki = make_pki(tmp_path / "pki")
    inter_key = make_key(tmp_path, "inter").key
    inter = make_cert(
        subject_key=inter_key,
        subject="intermediate",
        issuer_key=pki.ca_key,
        issuer="modelward test CA",
        ca=True,
    )
    leaf_pair = make_key(tmp_path, "leaf")
    leaf = make_cert(
        subject_key=leaf_pair.key,
        subject="leaf",
        issuer_key=inter_key,
        issuer="intermediate",
        ca=False,
    )
    chain = write_pem(tmp_path / "chain.pem", inter)
    sign_certificate_cli(
        model,
        leaf_pair.private,
        write_pem(tmp_path / "leaf.crt", leaf),
        chain,
        tmp_path / "model.sig",
    )
    result = verify_model(
        model_path=str(model),
        signature_path=str(tmp_path / "model.sig"),
        trust=ca_trust(pki.ca_pem),
    )
    assert result.verified, result.reason


def test_key_signature_with_only_ca_trusted(signed: tuple[Path, KeyPair], tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    result = verify_model(
        model_path=str(signed[0]),
        signature_path=str(signed[0] / "model.sig"),
        trust=ca_trust(pki.ca_pem),
    )
    assert result.code == "wrong-signer"


# --------------------------------------------------------------------------- policy


def test_shards_rejected_unless_allowed(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    key = make_key(tmp_path, "k")
    sign_api(model, key, model / "model.sig", method="shards", shard_size=50_000)
    assert _verify(model, key).code == "policy"
    assert _verify(model, key, allow_shards=True).verified
    (model / "added-empty").write_bytes(b"")
    # model_signing's shards mode cannot see this file; we fail closed
    assert _verify(model, key, allow_shards=True).extra == ["added-empty"]


def test_shards_tampered_shard(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    key = make_key(tmp_path, "k")
    sign_api(model, key, model / "model.sig", method="shards", shard_size=50_000)
    flip_byte(model / "weights.bin", 120_000)
    assert _verify(model, key, allow_shards=True).changed == ["weights.bin"]
    with open(model / "weights.bin", "ab") as f:
        f.write(b"more")
    assert _verify(model, key, allow_shards=True).changed == ["weights.bin"]


def test_ignore_paths_restricted(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    (model / "scratch").mkdir()
    (model / "scratch" / "payload.pkl").write_bytes(b"anything")
    key = make_key(tmp_path, "k")
    sign_api(model, key, model / "model.sig", ignore=("scratch",))
    result = _verify(model, key)
    assert result.code == "policy" and "scratch" in result.reason
    allowed = _verify(
        model,
        key,
        allowed_ignore_paths=frozenset(
            {"scratch", "model.sig", ".git", ".github", ".gitignore", ".gitattributes"}
        ),
    )
    assert allowed.verified, allowed.reason


def test_symlinks_only_inside_and_only_if_allowed(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    (model / "alias.bin").symlink_to("weights.bin")
    key = make_key(tmp_path, "k")
    sign_api(model, key, model / "model.sig", allow_symlinks=True)
    assert _verify(model, key).code == "symlink"
    assert _verify(model, key, allow_symlinks=True).verified
    (model / "alias.bin").unlink()
    (tmp_path / "outside.bin").write_bytes((model / "weights.bin").read_bytes())
    (model / "alias.bin").symlink_to(tmp_path / "outside.bin")
    assert _verify(model, key, allow_symlinks=True).code == "symlink"


@pytest.mark.parametrize("method", ["files", "shards"])
def test_blake3_signed_by_model_signing_verifies_and_tampering_is_caught(
    tmp_path: Path, method: str
) -> None:
    """Interop: model_signing's own BLAKE3 hashing (its hashing_algorithm="blake3")."""
    model = make_model(tmp_path)
    key = make_key(tmp_path, "k")
    sign_api(model, key, model / "model.sig", hashing="blake3", method=method, shard_size=4096)
    result = _verify(model, key, allow_shards=method == "shards")
    assert result.verified, result.reason
    assert result.serialization is not None and result.serialization.hash_type == "blake3"
    flip_byte(model / "weights.bin", 1000)
    tampered = _verify(model, key, allow_shards=method == "shards")
    assert not tampered.verified and tampered.code == "files-mismatch"
    assert "weights.bin" in tampered.reason


def _constrained_intermediate(
    issuer_key: ec.EllipticCurvePrivateKey, subject_key: ec.EllipticCurvePrivateKey, domain: str
) -> x509.Certificate:
    """An intermediate CA that may only issue for e-mail addresses at ``domain`` (critical)."""
    now = datetime.datetime.now(datetime.UTC)
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "modelward tests")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "constrained intermediate"), org])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelward test CA"), org])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.NameConstraints(
                permitted_subtrees=[x509.RFC822Name(domain)], excluded_subtrees=None
            ),
            critical=True,
        )
        .sign(issuer_key, hashes.SHA256())
    )


@pytest.mark.parametrize(("domain", "verified"), [("example.com", True), ("other.org", False)])
def test_intermediate_name_constraints_are_enforced(
    tmp_path: Path, domain: str, verified: bool
) -> None:
    """A CA that delegated only `other.org` to an intermediate: a leaf for signer@example.com
    under it must be refused (the hand-written path builder ignored NameConstraints)."""
    model = make_model(tmp_path)
    pki = make_pki(tmp_path / "pki")
    inter_key = make_key(tmp_path, "inter").key
    inter = _constrained_intermediate(pki.ca_key, inter_key, domain)
    leaf_pair = make_key(tmp_path, "leaf")
    leaf = make_cert(
        subject_key=leaf_pair.key,
        subject="leaf",
        issuer_key=inter_key,
        issuer="constrained intermediate",
        ca=False,
        email="signer@example.com",
    )
    sign_certificate_cli(
        model,
        leaf_pair.private,
        write_pem(tmp_path / "leaf.crt", leaf),
        write_pem(tmp_path / "chain.pem", inter),
        tmp_path / "model.sig",
    )
    result = verify_model(
        model_path=str(model),
        signature_path=str(tmp_path / "model.sig"),
        trust=ca_trust(pki.ca_pem),
    )
    assert result.verified is verified, result.reason
    if not verified:
        assert result.code == "certificate" and "name constraints" in result.reason


def test_intermediate_that_is_not_a_ca_is_refused(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    pki = make_pki(tmp_path / "pki")
    inter_key = make_key(tmp_path, "inter").key
    inter = make_cert(
        subject_key=inter_key,
        subject="intermediate",
        issuer_key=pki.ca_key,
        issuer="modelward test CA",
        ca=False,  # not a CA: basicConstraints cA false
    )
    leaf_pair = make_key(tmp_path, "leaf")
    leaf = make_cert(
        subject_key=leaf_pair.key,
        subject="leaf",
        issuer_key=inter_key,
        issuer="intermediate",
        ca=False,
    )
    sign_certificate_cli(
        model,
        leaf_pair.private,
        write_pem(tmp_path / "leaf.crt", leaf),
        write_pem(tmp_path / "chain.pem", inter),
        tmp_path / "model.sig",
    )
    result = verify_model(
        model_path=str(model),
        signature_path=str(tmp_path / "model.sig"),
        trust=ca_trust(pki.ca_pem),
    )
    assert not result.verified and result.code == "certificate"
    assert "basicConstraints" in result.reason
