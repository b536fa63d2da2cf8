"""The evidence pack's one shape (``apiVersion: modelward.io/evidence/v1``).

The JSON output *is* this shape; Markdown and HTML are renderings of it, so the three formats
can never tell an auditor different things. ``pack_sha256`` is over the canonical JSON of
everything but the ``sha256`` field itself: anyone can recompute it
(``modelward evidence --check FILE``) and a changed byte of content changes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal, TypedDict

API_VERSION = "modelward.io/evidence/v1"

ActivityStatus = Literal["enforced", "audit-only", "not-covered"]
MfaStatus = Literal["enforced", "not-enforced", "unknown"]


class PolicyUse(TypedDict):
    kind: str
    namespace: str | None
    name: str
    section: str
    mode: str
    ready: bool


class ActivityRow(TypedDict):
    id: str
    title: str
    asks: str
    status: ActivityStatus
    policies: list[PolicyUse]


class PolicyRow(TypedDict):
    kind: str
    namespace: str | None
    name: str
    ready: bool
    reason: str
    mode: str
    sections: dict[str, str]
    selects: str


class ViolationRow(TypedDict):
    namespace: str
    resource: str
    policy: str
    rule: str
    result: str
    message: str


class ExceptionRow(TypedDict):
    namespace: str
    name: str
    policy: str
    rules: list[str]
    workloads: str
    justification: str
    approvedBy: str
    ticket: str
    expiresAt: str
    state: Literal["active", "expired", "invalid"]


class ModelRow(TypedDict):
    namespace: str
    name: str
    digest: str
    signer: str
    lastResult: str
    firstSeen: str
    lastSeen: str
    workloads: list[str]


class AccessRow(TypedDict):
    namespace: str
    subject: str
    permission: str
    via: str
    allowed: bool


class AccessSection(TypedDict):
    available: bool
    reason: str
    rows: list[AccessRow]
    violations: int


class PolicyCounts(TypedDict):
    policy: str
    denied: int
    patched: int
    warned: int
    current: int


class SeriesCount(TypedDict):
    labels: dict[str, str]
    count: float


class PrometheusCounts(TypedDict):
    url: str
    range: str
    requests: list[SeriesCount]
    violations: list[SeriesCount]
    error: str


class Admissions(TypedDict):
    policyStatus: list[PolicyCounts]
    prometheus: PrometheusCounts | None


class AuthMethod(TypedDict):
    source: str
    detail: str


class Authentication(TypedDict):
    methods: list[AuthMethod]
    mfa: MfaStatus
    evidence: str


class Attestation(TypedDict):
    item: str
    reason: str
    signedBy: str
    date: str


class Period(TypedDict):
    start: str
    end: str


class ClusterInfo(TypedDict):
    server: str
    version: str


class Pack(TypedDict):
    apiVersion: str
    control: dict[str, str]
    generatedAt: str
    period: Period
    cluster: ClusterInfo
    modelward: dict[str, str]
    activities: list[ActivityRow]
    policies: list[PolicyRow]
    violations: list[ViolationRow]
    violationsTotal: int
    exceptions: list[ExceptionRow]
    models: list[ModelRow]
    accessReview: AccessSection
    admissions: Admissions
    authentication: Authentication
    attestations: list[Attestation]
    sha256: str


def canonical(pack: Mapping[str, Any]) -> bytes:
    """The bytes the digest covers: sorted keys, no spaces, UTF-8, without ``sha256``."""
    body = {k: v for k, v in pack.items() if k != "sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def pack_sha256(pack: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(pack)).hexdigest()


def sealed(pack: Pack) -> Pack:
    """The pack with its ``sha256`` set."""
    return {**pack, "sha256": pack_sha256(pack)}


def check_digest(pack: Mapping[str, Any]) -> str | None:
    """None when the pack's ``sha256`` matches its content, else what is wrong."""
    claimed = pack.get("sha256")
    if not isinstance(claimed, str) or not claimed:
        return "the pack has no sha256 field"
    actual = pack_sha256(pack)
    if claimed != actual:
        return f"sha256 mismatch: the pack says {claimed}, its content hashes to {actual}"
    return None


def _schema_of(tp: Any) -> dict[str, Any]:
    """The JSON Schema of one type used in the pack (TypedDicts, lists, dicts, literals)."""
    import types
    import typing

    origin = typing.get_origin(tp)
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is type(None):
        return {"type": "null"}
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_schema_of(a) for a in typing.get_args(tp)]}
    if origin is list:
        return {"type": "array", "items": _schema_of(typing.get_args(tp)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema_of(typing.get_args(tp)[1])}
    if typing.is_typeddict(tp):
        hints = typing.get_type_hints(tp)
        return {
            "type": "object",
            "properties": {k: _schema_of(v) for k, v in hints.items()},
            "required": sorted(hints),
            "additionalProperties": False,
        }
    raise TypeError(f"no JSON Schema for {tp!r}")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the pack, derived from the TypedDicts above (one source of truth;
    docs/examples/evidence-pack.schema.json is this, kept in step by a test)."""
    schema = _schema_of(Pack)
    schema["properties"]["apiVersion"] = {"const": API_VERSION}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://modelward.io/schemas/evidence/v1.json",
        "title": "modelward B008 evidence pack",
        **schema,
    }
