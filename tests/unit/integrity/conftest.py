"""Fixtures for the integrity tests: keys, a private CA, model directories, and the REAL
``model_signing`` tool as the signer (our verifier is never its own oracle)."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VENV_BIN = Path(sys.executable).parent
MODEL_SIGNING = VENV_BIN / "model_signing"
CURVES = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}


@pytest.fixture(scope="session")
def model_signing_tool() -> Path:
    """The real signer. A test dependency (pip install -e .[test]); when it is missing the
    tests that need it fail with the reason rather than skip: a skipped interop test would
    look like a passing one."""
    if not MODEL_SIGNING.exists():
        pytest.fail(f"{MODEL_SIGNING} is missing: run `pip install -e .[test]`")
    return MODEL_SIGNING


requires_model_signing = pytest.mark.usefixtures("model_signing_tool")


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path
    key: ec.EllipticCurvePrivateKey


def make_key(directory: Path, name: str, curve: str = "p256") -> KeyPair:
    key = ec.generate_private_key(CURVES[curve])
    private = directory / f"{name}.pem"
    public = directory / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyPair(private=private, public=public, key=key)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "modelward tests"),
        ]
    )


def make_cert(
    *,
    subject_key: ec.EllipticCurvePrivateKey,
    subject: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: str,
    ca: bool,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    code_signing: bool = True,
    email: str | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - datetime.timedelta(days=1))
        .not_valid_after(not_after or now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=code_signing,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=not code_signing,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        if code_signing:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
            )
        if email:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False
            )
    return builder.sign(
        issuer_key,
        hashes.SHA256() if not isinstance(issuer_key.curve, ec.SECP521R1) else hashes.SHA512(),
    )


def write_pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


@dataclass(frozen=True)
class Pki:
    ca_pem: Path
    ca_key: ec.EllipticCurvePrivateKey
    leaf_key: KeyPair
    leaf_pem: Path
    directory: Path

    def leaf(self, name: str, **kwargs: Any) -> tuple[KeyPair, Path]:
        """Another leaf certificate issued by this CA (kwargs go to make_cert)."""
        pair = make_key(self.directory, name)
        cert = make_cert(
            subject_key=pair.key,
            subject=name,
            issuer_key=self.ca_key,
            issuer="modelward test CA",
            ca=False,
            **kwargs,
        )
        return pair, write_pem(self.directory / f"{name}.crt", cert)


def make_pki(directory: Path, curve: str = "p256") -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(CURVES[curve])
    now = datetime.datetime.now(datetime.UTC)
    ca = make_cert(
        subject_key=ca_key,
        subject="modelward test CA",
        issuer_key=ca_key,
        issuer="modelward test CA",
        ca=True,
        not_before=now - datetime.timedelta(days=365),
        not_after=now + datetime.timedelta(days=365),
    )
    ca_pem = write_pem(directory / "ca.pem", ca)
    leaf_pair = make_key(directory, "signer", curve)
    leaf = make_cert(
        subject_key=leaf_pair.key,
        subject="model signer",
        issuer_key=ca_key,
        issuer="modelward test CA",
        ca=False,
        email="signer@example.com",
    )
    return Pki(
        ca_pem=ca_pem,
        ca_key=ca_key,
        leaf_key=leaf_pair,
        leaf_pem=write_pem(directory / "signer.crt", leaf),
        directory=directory,
    )


def make_model(directory: Path) -> Path:
    """A small model directory: nested files, a dot-file, an empty file, a binary blob."""
    model = directory / "model"
    (model / "sub" / "deeper").mkdir(parents=True)
    (model / "config.json").write_text('{"architectures": ["Toy"]}\n')
    (model / "weights.bin").write_bytes(os.urandom(300_000))
    (model / "sub" / "tokenizer.json").write_text('{"vocab": {}}\n')
    (model / "sub" / "deeper" / "shard-00001.bin").write_bytes(os.urandom(70_000))
    (model / ".hidden").write_text("dot files are part of the model\n")
    return model


def run_model_signing(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MODEL_SIGNING), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def sign_key_cli(model: Path, key: KeyPair, signature: Path) -> None:
    done = run_model_signing(
        "sign", "key", "--private_key", key.private, "--signature", signature, model
    )
    assert done.returncode == 0, done.stderr


def sign_certificate_cli(model: Path, key: Path, cert: Path, chain: Path, signature: Path) -> None:
    done = run_model_signing(
        "sign",
        "certificate",
        "--private_key",
        key,
        "--signing_certificate",
        cert,
        "--certificate_chain",
        chain,
        "--signature",
        signature,
        model,
    )
    assert done.returncode == 0, done.stderr


def sign_api(
    model: Path,
    key: KeyPair,
    signature: Path,
    *,
    method: str = "files",
    hashing: str = "sha256",
    shard_size: int = 1_000_000,
    allow_symlinks: bool = False,
    ignore: tuple[str, ...] = (),
) -> None:
    """Sign through model_signing's Python API (the CLI only does files + sha256)."""
    serial = (
        f"use_shard_serialization(hashing_algorithm={hashing!r}, "
        f"shard_size={shard_size}, allow_symlinks={allow_symlinks!r})"
        if method == "shards"
        else f"use_file_serialization(hashing_algorithm={hashing!r}, "
        f"allow_symlinks={allow_symlinks!r})"
    )
    script = textwrap.dedent(f"""
        import model_signing
        hashing = model_signing.hashing.Config().{serial}.set_ignored_paths(
            paths={[str(signature), *[str(model / i) for i in ignore]]!r},
            ignore_git_paths=True).set_allow_symlinks({allow_symlinks!r})
        (model_signing.signing.Config()
            .use_elliptic_key_signer(private_key={str(key.private)!r})
            .set_hashing_config(hashing)
            .sign({str(model)!r}, {str(signature)!r}))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return make_model(tmp_path)


@pytest.fixture
def keys(tmp_path: Path) -> Callable[..., KeyPair]:
    keydir = tmp_path / "keys"
    keydir.mkdir()

    def factory(name: str = "signer", curve: str = "p256") -> KeyPair:
        return make_key(keydir, name, curve)

    return factory


def flip_byte(path: Path, offset: int) -> None:
    """Change the byte at ``offset`` for certain (writing a fixed byte into random data
    leaves it unchanged once in 256 runs, which made tamper tests flaky)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([old[0] ^ 0xFF]))


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst
