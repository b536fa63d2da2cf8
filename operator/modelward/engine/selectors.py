"""Label selectors and name globs, as Kubernetes defines them."""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """A selector that Kubernetes itself would refuse."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels  # DoesNotExist

    def holds_for_every_superset_of(self, labels: Mapping[str, str]) -> bool:
        """Whether every label set containing ``labels`` meets it."""
        if self.operator == "DoesNotExist":
            return False  # any superset may carry the key
        return self.key in labels and self.matches(labels)


@dataclass(frozen=True)
class LabelSelector:
    """A metav1.LabelSelector; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def could_match_superset_of(self, labels: Mapping[str, str]) -> bool:
        """Whether a pod carrying ``labels`` and perhaps others could be selected.

        A Service selector or an unknown backend only tells which labels the pods behind it
        carry at least; judging their exposure by the selector alone would let one extra pod
        label (that the selector does not mention) take the pods out of a policy.
        """
        if not all(r.matches(labels) for r in self.requirements if r.key in labels):
            return False
        # Each key the known labels lack may be added with any value, or stay absent: some
        # choice must meet every requirement on that key (In x with NotIn x: none does).
        open_keys = {r.key for r in self.requirements if r.key not in labels}
        for key in open_keys:
            on_key = [r for r in self.requirements if r.key == key]
            named = {v for r in on_key for v in r.values}
            fresh = "\0" + "".join(sorted(named))  # a value no requirement names
            choices: list[dict[str, str]] = [{}, {key: fresh}, *({key: v} for v in named)]
            if not any(all(r.matches(c) for r in on_key) for c in choices):
                return False
        return True

    def matches_every_superset_of(self, labels: Mapping[str, str]) -> bool:
        """Whether every pod carrying at least ``labels`` is selected."""
        return all(r.holds_for_every_superset_of(labels) for r in self.requirements)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> LabelSelector:
        requirements = [
            Requirement(str(k), "In", frozenset([str(v)]))
            for k, v in (raw.get("matchLabels") or {}).items()
        ]
        for expr in raw.get("matchExpressions") or []:
            operator = expr.get("operator")
            values = [str(v) for v in expr.get("values") or []]
            if operator in ("In", "NotIn") and not values:
                raise SelectorError(f"operator {operator} on key {expr.get('key')!r} needs values")
            if operator in ("Exists", "DoesNotExist") and values:
                raise SelectorError(
                    f"operator {operator} on key {expr.get('key')!r} takes no values"
                )
            if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
                raise SelectorError(f"unknown operator {operator!r}")
            requirements.append(Requirement(str(expr.get("key")), str(operator), frozenset(values)))
        return cls(tuple(requirements))


@functools.lru_cache(maxsize=1024)
def _any_glob(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One regular expression matching what any of ``patterns`` matches (fnmatch semantics)."""
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns) or "(?!)")


def matches_any_glob(name: str, patterns: tuple[str, ...]) -> bool:
    """Shell-style globs, case-sensitive (``serving-*``).

    The patterns come from compiled policies (a handful of tuples), so their combined
    expression is built once, not translated and tried one by one on every call.
    """
    return _any_glob(patterns).match(name) is not None
