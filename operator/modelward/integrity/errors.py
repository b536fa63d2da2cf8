"""Errors of the integrity package.

Two outcomes must never be confused: a model that was *checked and rejected* (a changed file,
a wrong signer, a payload in a pickle) and input that *could not be checked at all* (an
unreadable signature file, a key that is not a key, a model path that does not exist). The
first is a verdict and is returned as a result value; the second is raised as an
:class:`UnusableInputError` and becomes exit code 2. Both are fatal to a pod, but an operator
debugging a failure needs to know which one happened.

:class:`Rejection` is raised internally while checking a signature and turned into a rejected
result at the boundary of :func:`modelward.integrity.verification.verify_model`; callers of
the public API never see it.
"""

from __future__ import annotations

from modelward.errors import ModelwardError


class IntegrityError(ModelwardError):
    """Base of every error raised by :mod:`modelward.integrity`."""


class UnusableInputError(IntegrityError):
    """The input cannot be checked: the verdict is neither "verified" nor "rejected"."""


class BundleFormatError(UnusableInputError):
    """The signature file is not a Sigstore bundle with an OMS statement we can read."""

    def __init__(self, message: str, *, field: str | None = None, fix: str | None = None) -> None:
        super().__init__(
            f"signature: {field}: {message}" if field else f"signature: {message}", fix=fix
        )
        self.field = field


class UnsupportedFormatError(UnusableInputError):
    """The signature is well formed but uses something we deliberately do not implement."""


class TrustMaterialError(UnusableInputError):
    """A configured public key or CA certificate cannot be loaded or is not acceptable."""

    def __init__(self, message: str, *, source: str, fix: str | None = None) -> None:
        super().__init__(f"{source}: {message}", fix=fix)
        self.source = source


class ModelPathError(UnusableInputError):
    """The model path is missing, unreadable or not a regular file or directory."""

    def __init__(self, message: str, *, path: str, fix: str | None = None) -> None:
        super().__init__(f"{path}: {message}", fix=fix)
        self.path = path


class Rejection(IntegrityError):
    """A verdict: the signature or the model does not pass (internal to verification).

    ``code`` is a short stable word (``bad-signature``, ``wrong-signer``, ``files-mismatch``,
    ``policy``, ``symlink``, ``certificate``...) that ends up in results, events and metrics.
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code
