"""The small exception hierarchy every layer raises; each error says what is wrong and how
to fix it. ``admission.review`` maps them to an AdmissionReview status in one place."""

from __future__ import annotations


class ModelwardError(Exception):
    """Base of every error modelward raises on purpose."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} (fix: {self.fix})" if self.fix else self.message


class PolicyError(ModelwardError):
    """A policy cannot be applied: an unknown field, a bad value, a broken selector."""

    def __init__(
        self,
        message: str,
        *,
        policy: str,
        field: str | None = None,
        fix: str | None = None,
        reason: str = "InvalidPolicy",
    ) -> None:
        where = f"{policy}: {field}: " if field else f"{policy}: "
        super().__init__(where + message, fix=fix)
        self.policy = policy
        self.field = field
        #: The policy's Ready=False reason (CamelCase), e.g. UntrustedKeySource.
        self.reason = reason


class ReviewError(ModelwardError):
    """An AdmissionReview that cannot be answered as asked (malformed, wrong version)."""


class ManifestError(ModelwardError):
    """A manifest file given to the CLI that cannot be read or is not a Kubernetes object."""


class ConfigurationError(ModelwardError):
    """A setting of the operator that is missing or invalid."""
