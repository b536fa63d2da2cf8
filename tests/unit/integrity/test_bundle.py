"""Bundle and statement parsing: clear errors naming the field, strict JSON."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from modelward.integrity.bundle import pae, parse_bundle, parse_statement
from modelward.integrity.errors import BundleFormatError, UnsupportedFormatError


def _statement(**overrides: Any) -> dict[str, Any]:
    resources = [
        {"name": "a.bin", "algorithm": "sha256", "digest": "00" * 32},
        {"name": "sub/b.bin", "algorithm": "sha256", "digest": "11" * 32},
    ]
    digest = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources)).hexdigest()
    doc = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "m", "digest": {"sha256": digest}}],
        "predicateType": "https://model_signing/signature/v1.0",
        "predicate": {
            "serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": False},
            "resources": resources,
        },
    }
    doc.update(overrides)
    return doc


def _bundle(payload: bytes, **material: Any) -> bytes:
    return json.dumps(
        {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": material or {"publicKey": {"hint": "AB" * 32}},
            "dsseEnvelope": {
                "payload": base64.b64encode(payload).decode(),
                "payloadType": "application/vnd.in-toto+json",
                "signatures": [{"sig": base64.b64encode(b"sig").decode()}],
            },
        }
    ).encode()


def test_parse_ok() -> None:
    bundle = parse_bundle(_bundle(b"{}"))
    assert bundle.material.hint == "ab" * 32  # type: ignore[union-attr]
    statement = parse_statement(json.dumps(_statement()).encode())
    assert [r.path for r in statement.resources] == ["a.bin", "sub/b.bin"]


def test_pae_is_dsse() -> None:
    assert (
        pae("application/vnd.in-toto+json", b"{}") == b"DSSEv1 28 application/vnd.in-toto+json 2 {}"
    )


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"not json", None),
        (b'{"mediaType": "x"}', "mediaType"),
        (b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "mediaType": "y"}', None),
    ],
)
def test_bad_bundles(data: bytes, field: str | None) -> None:
    with pytest.raises(BundleFormatError) as info:
        parse_bundle(data)
    assert field is None or info.value.field == field


def test_two_signatures_rejected() -> None:
    doc = json.loads(_bundle(b"{}"))
    doc["dsseEnvelope"]["signatures"].append(doc["dsseEnvelope"]["signatures"][0])
    with pytest.raises(BundleFormatError, match="exactly one signature"):
        parse_bundle(json.dumps(doc).encode())


def test_keyless_is_unsupported() -> None:
    with pytest.raises(UnsupportedFormatError):
        parse_bundle(_bundle(b"{}", certificate={"rawBytes": "AA=="}))


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../b", "a//b", "a\\b", "", "a/./b"])
def test_bad_resource_names(name: str) -> None:
    doc = _statement()
    doc["predicate"]["resources"][0]["name"] = name
    with pytest.raises(BundleFormatError):
        parse_statement(json.dumps(doc).encode())


@pytest.mark.parametrize("ignore", [".", "..", "/abs", "../up"])
def test_bad_ignore_paths(ignore: str) -> None:
    doc = _statement()
    doc["predicate"]["serialization"]["ignore_paths"] = [ignore]
    with pytest.raises(BundleFormatError):
        parse_statement(json.dumps(doc).encode())


def test_legacy_predicate_rejected() -> None:
    with pytest.raises(UnsupportedFormatError, match="legacy"):
        parse_statement(
            json.dumps(_statement(predicateType="https://model_signing/Digests/v0.1")).encode()
        )


def test_wrong_algorithm_and_digest_length() -> None:
    doc = _statement()
    doc["predicate"]["resources"][0]["algorithm"] = "blake2b"
    with pytest.raises(BundleFormatError, match="algorithm"):
        parse_statement(json.dumps(doc).encode())
    doc = _statement()
    doc["predicate"]["resources"][0]["digest"] = "00" * 31
    with pytest.raises(BundleFormatError, match="digest"):
        parse_statement(json.dumps(doc).encode())


def test_shard_names_and_float_shard_size() -> None:
    doc = _statement()
    doc["predicate"]["serialization"] = {
        "method": "shards",
        "hash_type": "sha256",
        "allow_symlinks": False,
        "shard_size": 1000.0,
    }
    doc["predicate"]["resources"] = [
        {
            "name": "dir:with:colons/a.bin:0:1000",
            "algorithm": "sha256-sharded-1000",
            "digest": "00" * 32,
        }
    ]
    statement = parse_statement(json.dumps(doc).encode())
    assert statement.serialization.shard_size == 1000
    assert statement.resources[0].path == "dir:with:colons/a.bin"
    doc["predicate"]["resources"][0]["name"] = "a.bin:500:1500"
    with pytest.raises(BundleFormatError, match="shard"):
        parse_statement(json.dumps(doc).encode())


def test_unsupported_hash_type() -> None:
    doc = _statement()
    doc["predicate"]["serialization"]["hash_type"] = "sha1"
    with pytest.raises(UnsupportedFormatError, match="unsupported hash_type"):
        parse_statement(json.dumps(doc).encode())
