"""The termination message: compact, under the kubelet's 4096 bytes, validated on read."""

from __future__ import annotations

import json

import pytest

from modelward.integrity.result import (
    MAX_MESSAGE_BYTES,
    TerminationMessageError,
    VerifierResult,
    parse_termination_message,
)

DIGEST = "sha256:" + "ab" * 32


def test_round_trip() -> None:
    result = VerifierResult(
        result="verified",
        scan="clean",
        reason="5 files match",
        digest=DIGEST,
        signer="key:sha256:" + "0" * 64,
        files=5,
        duration_ms=812,
        policy="prod/require-signed",
    )
    text = result.to_termination_message()
    assert json.loads(text)["v"] == 1
    assert parse_termination_message(text) == result
    assert result.admitted


def test_long_fields_are_truncated_to_fit() -> None:
    result = VerifierResult(
        result="rejected",
        scan="skipped",
        reason="x" * 100_000,
        signer="cert:" + "\u00e9" * 5000,
        policy="p" * 1000,
        digest=DIGEST,
    )
    text = result.to_termination_message()
    assert len(text.encode()) <= MAX_MESSAGE_BYTES
    parsed = parse_termination_message(text)
    assert parsed.result == "rejected" and parsed.reason.endswith("\u2026")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        '{"v": 2, "result": "verified"}',
        '{"v": 1, "result": "maybe", "scan": "clean", "reason": "", "files": 0, "duration_ms": 0}',
        '{"v": 1, "result": "verified", "scan": "clean", "reason": "", "files": 0, '
        '"duration_ms": 0, "digest": null, "signer": null}',
        '{"v": 1, "result": "error", "scan": "clean", "reason": "", "files": -1, "duration_ms": 0}',
        '{"v": 1, "result": "error", "scan": "clean", "reason": "", "files": 0, '
        '"duration_ms": 0, "digest": "md5:abc"}',
        '{"v": true, "result": "error", "scan": "clean", "reason": "", "files": 0, '
        '"duration_ms": 0}',
        '{"v": 1, "result": "error", "scan": "clean", "reason": "", "files": true, '
        '"duration_ms": 0}',
        "x" * 5000,
    ],
)
def test_malformed_messages_raise(text: str) -> None:
    with pytest.raises(TerminationMessageError):
        parse_termination_message(text)


def test_unsafe_scan_is_not_admitted() -> None:
    assert not VerifierResult(
        result="verified", scan="unsafe", reason="r", digest=DIGEST, signer="s"
    ).admitted


def _message(**fields: object) -> str:
    doc: dict[str, object] = {
        "v": 1,
        "result": "verified",
        "scan": "clean",
        "reason": "ok",
        "files": 1,
        "duration_ms": 1,
        "digest": DIGEST,
        "signer": "key:sha256:" + "0" * 64,
        "policy": "ClusterModelPolicy p",
    }
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not ...})


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"extra": 1}, "unknown field"),
        ({"reason": "r" * 1025}, "longer than 1024"),
        ({"policy": "p" * 341}, "longer than 340"),
        ({"signer": "key:" + "a" * 600}, "longer than 512"),
        ({"signer": "release key"}, "neither key:"),
        ({"signer": "key:ab12"}, "neither key:"),
        ({"signer": "cert:CN=a\nCN=b"}, "control characters"),
        ({"policy": "p\u0000"}, "control characters"),
        ({"reason": "a\u001b[2Jb"}, "control characters"),
        ({"files": 10**12}, "outside"),
        ({"duration_ms": 10**12}, "outside"),
    ],
)
def test_fields_are_validated_and_bounded(fields: dict[str, object], problem: str) -> None:
    """A forged message cannot smuggle unbounded text, terminal escapes or odd signers into
    Events and the inventory: every field has the shape and size the verifier writes."""
    with pytest.raises(TerminationMessageError, match=problem):
        parse_termination_message(_message(**fields))


def test_a_multi_line_reason_is_accepted() -> None:
    assert parse_termination_message(_message(reason="line 1\nline 2")).reason == "line 1\nline 2"
