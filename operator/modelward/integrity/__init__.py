"""Model integrity: OpenSSF Model Signing verification and payload scanning.

Pure library code (standard library + ``cryptography``): it also runs inside the small
verifier init container that modelward's mutating webhook injects into model-serving pods.

* :func:`verify_model` checks a model directory against a ``model_signing`` signature;
* :func:`scan_paths` looks for code-execution payloads without loading anything;
* :class:`VerifierResult` is the init container's termination message, written by
  ``modelward verify-pod`` and parsed back by the operator.
"""

from modelward.integrity.errors import (
    BundleFormatError,
    IntegrityError,
    ModelPathError,
    TrustMaterialError,
    UnsupportedFormatError,
    UnusableInputError,
)
from modelward.integrity.result import (
    TerminationMessageError,
    VerifierResult,
    parse_termination_message,
)
from modelward.integrity.trust import Signer, TrustPolicy, load_ca_certificates, load_public_keys
from modelward.integrity.verification import (
    FileResult,
    VerificationPolicy,
    VerificationResult,
    verify_model,
)

_SCANNING = frozenset({"Finding", "ScanPolicy", "ScanReport", "scan_paths"})


def __getattr__(name: str) -> object:
    """The scanner is imported on first use, so the verifier's start-up does not pay for it."""
    if name in _SCANNING:
        from modelward.integrity import scanning

        return getattr(scanning, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BundleFormatError",
    "FileResult",
    "Finding",
    "IntegrityError",
    "ModelPathError",
    "ScanPolicy",
    "ScanReport",
    "Signer",
    "TerminationMessageError",
    "TrustMaterialError",
    "TrustPolicy",
    "UnsupportedFormatError",
    "UnusableInputError",
    "VerificationPolicy",
    "VerificationResult",
    "VerifierResult",
    "load_ca_certificates",
    "load_public_keys",
    "parse_termination_message",
    "scan_paths",
    "verify_model",
]
