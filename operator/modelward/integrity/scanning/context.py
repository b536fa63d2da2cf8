"""State shared by the format scanners while one top-level file is scanned."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from modelward.integrity.scanning.allowlist import Allowlist
from modelward.integrity.scanning.profiles import resolve
from modelward.integrity.scanning.report import Finding

#: Standard ONNX domains plus ONNX Runtime's built-in contrib domains (no native library).
DEFAULT_ONNX_DOMAINS: Final = frozenset(
    {
        "",
        "ai.onnx",
        "ai.onnx.ml",
        "ai.onnx.preview.training",
        "ai.onnx.training",
        "com.microsoft",
        "com.microsoft.nchwc",
        "com.microsoft.experimental",
        "com.ms.internal.nhwc",
    }
)


#: Work charged for each archive member opened, whatever its size: a zip of 100,000 empty
#: members costs as much to walk as a few hundred MiB of data.
MEMBER_COST: Final = 4 << 10


@dataclass(frozen=True)
class ScanPolicy:
    """Scanner limits and allowances (all bounded so hostile input cannot exhaust us)."""

    extra_allowed_globals: frozenset[str] = frozenset()
    #: Trusted-type profiles (``sklearn``, ``xgboost``, ``lightgbm``; see ``profiles``).
    profiles: tuple[str, ...] = ()
    extra_onnx_domains: frozenset[str] = frozenset()
    max_depth: int = 4  # archives/compression/embedded pickles inside each other
    #: The expansion budget of one top-level file (see :meth:`expansion_budget`): bytes
    #: decompressed plus bytes of archive members read, plus :data:`MEMBER_COST` per member.
    expansion_floor: int = 256 << 20
    expansion_factor: int = 100
    max_expansion_bytes: int = 16 << 30
    max_ratio: int = 1000  # decompressed/compressed above this (and > 64 MiB) is a bomb
    max_members: int = 100_000  # archive members
    max_stack: int = 1_000_000  # pickle stack/memo entries retained
    max_retained: int = 500_000  # container items retained across a pickle

    def expansion_budget(self, size: int | None) -> int:
        """Work one file of ``size`` bytes may cost: ``expansion_factor`` times its size, at
        least ``expansion_floor``, at most ``max_expansion_bytes`` beyond its own size.

        Counted in bytes, not seconds, so the verdict on a file never depends on how fast the
        machine is: a 15 KB nested zip gets 256 MiB, a 2 GB compressed checkpoint 16 GiB more
        than its size. A file that needs more is reported (``archive-bomb``), never "clean".
        """
        size = max(0, size or 0)
        return max(
            self.expansion_floor, min(self.expansion_factor * size, self.max_expansion_bytes + size)
        )


def make_allowlist(policy: ScanPolicy) -> Allowlist:
    """The allowlist a policy asks for: defaults, its profiles, its extra globals."""
    return Allowlist(policy.extra_allowed_globals, profiles=resolve(policy.profiles))


class BudgetExceeded(Exception):
    """The file has cost its whole expansion budget; its scan ends here (see ``scan_file``)."""

    def __init__(self, member: str | None, spent: int, limit: int) -> None:
        super().__init__(f"expansion budget exceeded ({spent} > {limit} bytes)")
        self.member = member
        self.spent = spent
        self.limit = limit


@dataclass
class Budget:
    """Mutable counters shared by everything scanned under one top-level file."""

    limit: int = 256 << 20
    expanded: int = 0


@dataclass
class ScanContext:
    """Where we are (file, archive member) and what we found so far."""

    path: str
    policy: ScanPolicy
    allowlist: Allowlist
    findings: list[Finding] = field(default_factory=list)
    member: str | None = None
    depth: int = 0
    budget: Budget = field(default_factory=Budget)
    formats: list[str] = field(default_factory=list)
    _seen: set[tuple[str, str | None, str | None]] = field(default_factory=set)

    def add(
        self, rule: str, message: str, *, offset: int | None = None, global_name: str | None = None
    ) -> None:
        """Record a finding; the same rule + global in the same member is reported once."""
        key = (rule, global_name, self.member)
        if global_name is not None and key in self._seen:
            return
        self._seen.add(key)
        self.findings.append(
            Finding(
                path=self.path,
                member=self.member,
                offset=offset,
                rule=rule,
                global_name=global_name,
                message=message,
            )
        )

    def charge(self, n: int) -> None:
        """Spend ``n`` bytes of the file's budget; raises :class:`BudgetExceeded` past it."""
        self.budget.expanded += n
        if self.budget.expanded > self.budget.limit:
            raise BudgetExceeded(self.member, self.budget.expanded, self.budget.limit)

    def isolated(self, member: str | None) -> ScanContext:
        """A nested context whose findings are kept apart until :meth:`merge`."""
        ctx = self.nested(member) if member is not None else self.nested("")
        ctx.member = self.member if member is None else ctx.member
        ctx.findings = []
        ctx._seen = set()
        return ctx

    def merge(self, other: ScanContext) -> None:
        for finding in other.findings:
            key = (finding.rule, finding.global_name, finding.member)
            if finding.global_name is None or key not in self._seen:
                self._seen.add(key)
                self.findings.append(finding)

    def nested(self, member: str) -> ScanContext:
        """A context for something inside the current one (archive member, embedded data)."""
        name = member if self.member is None else f"{self.member}!{member}"
        return ScanContext(
            path=self.path,
            policy=self.policy,
            allowlist=self.allowlist,
            findings=self.findings,
            member=name,
            depth=self.depth + 1,
            budget=self.budget,
            formats=self.formats,
            _seen=self._seen,
        )
