"""Selectors judged on what is known of a pod's labels (a Service selector: a floor, not all).

Checked exhaustively against the definition over a small universe of keys and values: "some
superset matches" and "every superset matches", enumerated, must equal the shortcuts.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from modelward.engine.selectors import LabelSelector

KEYS = ("a", "b")
VALUES = ("x", "y", "z")  # "z" stands for any value no selector names


def _label_sets() -> Iterator[dict[str, str]]:
    for choice in itertools.product((None, *VALUES), repeat=len(KEYS)):
        yield {k: v for k, v in zip(KEYS, choice, strict=True) if v is not None}


def _selectors() -> Iterator[LabelSelector]:
    single = [
        {"matchLabels": {"a": "x"}},
        {"matchExpressions": [{"key": "a", "operator": "In", "values": ["x", "y"]}]},
        {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]},
        {"matchExpressions": [{"key": "a", "operator": "Exists"}]},
        {"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]},
        {"matchExpressions": [{"key": "b", "operator": "In", "values": ["y"]}]},
    ]
    for raw in single:
        yield LabelSelector.parse(raw)
    for left, right in itertools.combinations(single, 2):
        yield LabelSelector.parse(
            {
                "matchLabels": {**left.get("matchLabels", {}), **right.get("matchLabels", {})},
                "matchExpressions": left.get("matchExpressions", [])
                + right.get("matchExpressions", []),
            }
        )


def _supersets(known: dict[str, str]) -> list[dict[str, str]]:
    return [s for s in _label_sets() if all(s.get(k) == v for k, v in known.items())]


def test_could_match_superset_is_exactly_some_superset_matching() -> None:
    for selector in _selectors():
        for known in _label_sets():
            expected = any(selector.matches(s) for s in _supersets(known))
            assert selector.could_match_superset_of(known) == expected, (selector, known)


def test_matches_every_superset_is_exactly_all_supersets_matching() -> None:
    for selector in _selectors():
        for known in _label_sets():
            expected = all(selector.matches(s) for s in _supersets(known))
            assert selector.matches_every_superset_of(known) == expected, (selector, known)
