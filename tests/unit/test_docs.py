"""Docs that other code depends on stay complete: every rule ID and every metric is documented."""

from __future__ import annotations

from pathlib import Path

from modelward.engine.rules import RULES
from modelward.observability.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]


def test_every_rule_is_documented() -> None:
    text = (ROOT / "docs" / "rules.md").read_text()
    missing = [rule for rule in RULES if f"| {rule} |" not in text]
    assert not missing, f"add these rules to docs/rules.md: {missing}"


def test_every_metric_is_documented() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text()
    names = {m.name for m in Metrics.create().registry.collect()}
    missing = sorted(n for n in names if n not in text)
    assert not missing, f"add these metrics to docs/metrics.md: {missing}"
