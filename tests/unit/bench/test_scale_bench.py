"""Smoke tests of the scale benchmark's pure parts (bench/scale): the shapes are the issue's,
and the start-up time is read from the operator's log. No figure is asserted."""

from __future__ import annotations

from pathlib import Path

from bench.scale.__main__ import SHAPES, _ready_seconds


def test_the_shapes_are_the_ones_the_issue_asks_for() -> None:
    assert (SHAPES["50k"].pods, SHAPES["50k"].namespaces) == (50_000, 2_000)
    ten = SHAPES["10k"]
    assert (ten.namespaces, ten.pods, ten.services) == (10_000, 10_000, True)
    assert SHAPES["quick"].pods <= 2_000  # bounded for a CI smoke run


def test_ready_seconds_come_from_the_first_log_line_to_the_listener(tmp_path: Path) -> None:
    log = tmp_path / "operator.log"
    log.write_text(
        "2026-11-26 13:00:00,250 INFO    modelward: health and metrics on http://x\n"
        "a line without a time stamp\n"
        "2026-11-26 13:00:12,750 INFO    modelward: admission webhooks on https://x\n"
    )
    assert _ready_seconds(log) == 12.5
    assert _ready_seconds(tmp_path / "missing.log") is None
