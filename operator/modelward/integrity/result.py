"""The verifier init container's result, as a Kubernetes termination message.

The verifier writes this JSON to ``/dev/termination-log``; the kubelet copies it into
``status.initContainerStatuses[].state.terminated.message`` and the operator reads it back
from pod status with :func:`parse_termination_message`. Two constraints shape it:

* the kubelet keeps at most 4096 bytes, so the message is compact (short keys, no per-file
  list) and :meth:`VerifierResult.to_termination_message` truncates free text to fit;
* the operator must not trust it blindly (anyone who can create a pod can add a container that
  writes anything), so the parser validates every field, refuses unknown fields, values out of
  range and text longer than the verifier ever writes (:data:`LIMITS`), and raises
  :class:`TerminationMessageError` instead of guessing. Whether the *container* that wrote it
  may be believed at all is the operator's question (``controller/verifications.py``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, cast

from modelward.integrity.errors import IntegrityError

FORMAT_VERSION: Final = 1
#: The kubelet truncates termination messages to this many bytes.
MAX_MESSAGE_BYTES: Final = 4096

Outcome = Literal["verified", "rejected", "error"]
ScanOutcome = Literal["clean", "unsafe", "skipped", "error"]
OUTCOMES: Final = ("verified", "rejected", "error")
SCAN_OUTCOMES: Final = ("clean", "unsafe", "skipped", "error")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
#: Longest text per field, in characters; the verifier truncates to these, the parser refuses
#: anything longer. A policy label is "<Kind> <namespace>/<name>" (up to 63 + 253 characters).
LIMITS: Final = {"reason": 1024, "signer": 512, "policy": 340}
#: Largest plausible counts: a model has far fewer files, a verification takes less than a day.
MAX_FILES: Final = 10_000_000
MAX_DURATION_MS: Final = 86_400_000
#: Signers as ``Signer.short`` writes them: a key's fingerprint or a certificate's subject.
_SIGNER = re.compile(r"key:sha256:[0-9a-f]{64}|cert:[^\x00-\x1f\x7f]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
FIELDS: Final = frozenset(
    ("v", "result", "digest", "signer", "files", "scan", "reason", "duration_ms", "policy")
)


class TerminationMessageError(IntegrityError):
    """A termination message that is not a valid verifier result."""


@dataclass(frozen=True)
class VerifierResult:
    """What the verifier init container concluded (the termination-message payload, v1)."""

    result: Outcome
    scan: ScanOutcome
    reason: str
    digest: str | None = None  # "sha256:<hex>", the OMS subject digest
    signer: str | None = None
    files: int = 0
    duration_ms: int = 0
    policy: str | None = None
    v: int = FORMAT_VERSION

    @property
    def admitted(self) -> bool:
        """True when the serving container may start: verified, and not unsafe."""
        return self.result == "verified" and self.scan in ("clean", "skipped")

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "result": self.result,
            "digest": self.digest,
            "signer": self.signer,
            "files": self.files,
            "scan": self.scan,
            "reason": self.reason,
            "duration_ms": self.duration_ms,
            "policy": self.policy,
        }

    def to_termination_message(self) -> str:
        """Compact JSON, guaranteed to fit in :data:`MAX_MESSAGE_BYTES` bytes."""
        fitted = replace(
            self,
            reason=_truncate(self.reason, LIMITS["reason"]) or "",
            signer=_truncate(self.signer, LIMITS["signer"]),
            policy=_truncate(self.policy, LIMITS["policy"]),
        )
        text = _dump(fitted)
        while len(text.encode("utf-8")) > MAX_MESSAGE_BYTES and fitted.reason:
            fitted = replace(fitted, reason=_truncate(fitted.reason, len(fitted.reason) // 2) or "")
            text = _dump(fitted)
        return text


def _truncate(value: str | None, limit: int) -> str | None:
    if value is None or len(value) <= limit:
        return value
    return value[: max(0, limit - 1)] + "\u2026"


def _dump(result: VerifierResult) -> str:
    return json.dumps(result.to_dict(), separators=(",", ":"), ensure_ascii=True)


def _field(
    doc: dict[str, Any], name: str, kind: type | tuple[type, ...], *, optional: bool = False
) -> Any:
    value = doc.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise TerminationMessageError(
            f"termination message: field {name!r} is missing or has the wrong type"
        )
    return value


def _text(doc: dict[str, Any], name: str, *, optional: bool = False) -> Any:
    """A bounded string field; control characters (bar tab and newline in the reason) refused."""
    value = _field(doc, name, str, optional=optional)
    if value is None:
        return None
    if len(value) > LIMITS[name]:
        raise TerminationMessageError(
            f"termination message: field {name!r} is longer than {LIMITS[name]} characters"
        )
    if _CONTROL.search(value) or (name != "reason" and ("\n" in value or "\t" in value)):
        raise TerminationMessageError(
            f"termination message: field {name!r} contains control characters"
        )
    return value


def _count(doc: dict[str, Any], name: str, limit: int) -> int:
    value: int = _field(doc, name, int)
    if not 0 <= value <= limit:
        raise TerminationMessageError(
            f"termination message: field {name!r}={value} is outside 0..{limit}"
        )
    return value


def parse_termination_message(text: str) -> VerifierResult:
    """Parse and validate a termination message written by ``modelward verify-pod``."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
        raise TerminationMessageError("termination message: longer than 4096 bytes")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise TerminationMessageError(
            f"termination message is not JSON ({exc}); was the verifier killed before it finished?"
        ) from exc
    if not isinstance(doc, dict):
        raise TerminationMessageError("termination message: expected a JSON object")
    unknown = sorted(set(doc) - FIELDS)
    if unknown:
        raise TerminationMessageError(
            f"termination message: unknown field(s) {', '.join(map(repr, unknown[:3]))}"
        )
    version = doc.get("v")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise TerminationMessageError(
            f"termination message: unsupported format version "
            f"{version!r} (expected {FORMAT_VERSION})"
        )
    outcome = _field(doc, "result", str)
    if outcome not in OUTCOMES:
        raise TerminationMessageError(f"termination message: unknown result {outcome!r}")
    scan = _field(doc, "scan", str)
    if scan not in SCAN_OUTCOMES:
        raise TerminationMessageError(f"termination message: unknown scan outcome {scan!r}")
    digest = _field(doc, "digest", str, optional=True)
    if digest is not None and not _DIGEST.fullmatch(digest):
        raise TerminationMessageError(
            f"termination message: digest {digest!r} is not sha256:<64 hex>"
        )
    files = _count(doc, "files", MAX_FILES)
    duration = _count(doc, "duration_ms", MAX_DURATION_MS)
    signer = _text(doc, "signer", optional=True)
    if signer is not None and not _SIGNER.fullmatch(signer):
        raise TerminationMessageError(
            f"termination message: signer {signer[:80]!r} is neither key:<hex> nor cert:<subject>"
        )
    result = VerifierResult(
        v=FORMAT_VERSION,
        result=cast(Outcome, outcome),
        scan=cast(ScanOutcome, scan),
        reason=_text(doc, "reason"),
        digest=digest,
        signer=signer,
        files=files,
        duration_ms=duration,
        policy=_text(doc, "policy", optional=True),
    )
    if result.result == "verified" and (result.digest is None or result.signer is None):
        raise TerminationMessageError(
            "termination message: a verified result must name the digest and the signer"
        )
    return result
