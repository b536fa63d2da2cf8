"""What the engine finds and decides: violations, findings in the context of a policy, and
the decision for one object."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Mode(enum.Enum):
    """How a policy (or one of its sections) acts on a violation."""

    ENFORCE = "Enforce"
    PATCH = "Patch"
    AUDIT = "Audit"


@dataclass(frozen=True)
class Remedy:
    """A safe fix: set ``value`` at ``path``, append it to the list at ``path``, or (``remove``)
    remove the items of the list at ``path`` whose ``name`` is ``value``.

    ``path`` is relative to the pod spec, or to the pod (template) metadata when ``scope`` is
    ``"metadata"``. ``patches.remedies_to_json_patch`` turns remedies into targeted JSONPatch
    operations."""

    path: tuple[str | int, ...]
    value: Any
    append: bool = False
    scope: str = "spec"
    remove: bool = False


@dataclass(frozen=True)
class Violation:
    """One broken rule in one place, as a rule reports it."""

    rule_id: str
    message: str
    fix: str
    container: str | None = None
    remedies: tuple[Remedy, ...] = ()
    #: Reported as a warning whatever the section's mode (e.g. onLookupFailure: Warn).
    advisory: bool = False

    @property
    def patchable(self) -> bool:
        return bool(self.remedies)

    def key(self) -> tuple[str, str | None, str]:
        """Identity used to tell an old violation from a new one on UPDATE."""
        return (self.rule_id, self.container, self.message)


@dataclass(frozen=True)
class PolicyRef:
    """Which policy a finding comes from."""

    kind: str
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        if self.namespace:
            return f"{self.kind} {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"

    @property
    def label(self) -> str:
        """A compact, bounded metric label value."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True)
class Finding:
    """A violation under a policy, with the mode that policy section acts in."""

    violation: Violation
    policy: PolicyRef
    mode: Mode
    #: The exception (namespace/name) that waives this finding: it neither blocks, patches
    #: nor warns (engine/exceptions.py).
    waived_by: str | None = None
    #: What exceptions had to say about it: the waiver, or one that matches but has expired.
    exception_notes: tuple[str, ...] = ()

    @property
    def blocks(self) -> bool:
        """Enforce denies; Patch denies what it cannot fix; an exception waives either."""
        if self.waived_by is not None:
            return False
        return self.mode is Mode.ENFORCE or (
            self.mode is Mode.PATCH and not self.violation.patchable
        )

    @property
    def patches(self) -> bool:
        return self.waived_by is None and self.mode is Mode.PATCH and self.violation.patchable

    def describe(self) -> str:
        v = self.violation
        where = f" in {v.container}" if v.container else ""
        notes = "".join(f"; {n}" for n in self.exception_notes)
        return f"[{v.rule_id}]{where}: {v.message}. Fix: {v.fix} (policy {self.policy}{notes})"

    def short(self) -> str:
        v = self.violation
        where = f" {v.container}:" if v.container else ""
        return f"[{v.rule_id}]{where} {v.message} (policy {self.policy.label})"

    def patched(self) -> str:
        """The finding and the fix Patch mode applied: a fix can carry a condition the pod
        must still meet (``runAsNonRoot`` needs an image that runs as a non-root user), and
        the user reads it at admission rather than from a container that never starts."""
        v = self.violation
        where = f" {v.container}:" if v.container else ""
        return f"[{v.rule_id}]{where} {v.message}; patch: {v.fix} (policy {self.policy.label})"


@dataclass(frozen=True)
class Decision:
    """Everything the policies found about one object."""

    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def denials(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.blocks)

    @property
    def fixes(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.patches)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.mode is Mode.AUDIT and f.waived_by is None)

    @property
    def waived(self) -> tuple[Finding, ...]:
        """Findings an exception waives: reported (audit ``skip``), never enforced."""
        return tuple(f for f in self.findings if f.waived_by is not None)

    def without_waived(self) -> Decision:
        return Decision(tuple(f for f in self.findings if f.waived_by is None))

    @property
    def allowed(self) -> bool:
        return not self.denials

    def only_new(self, old: Decision) -> Decision:
        """Findings not already present in ``old``: an UPDATE is judged on what it adds."""
        before = {(f.policy, f.violation.key()) for f in old.findings}
        return Decision(
            tuple(f for f in self.findings if (f.policy, f.violation.key()) not in before)
        )


@dataclass(frozen=True)
class Subject:
    """The object a decision was made about, for Events and reports."""

    kind: str
    namespace: str
    name: str
    uid: str | None = None

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"
