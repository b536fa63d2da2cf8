"""Latency summaries: nearest-rank percentiles over every sample (no histogram bucketing)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(sorted_samples: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of already sorted samples."""
    if not sorted_samples:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_samples)))
    return sorted_samples[rank - 1]


def summarize_ns(samples_ns: Sequence[int], *, wall_seconds: float | None = None) -> dict[str, Any]:
    """count, p50/p90/p99/max in microseconds, and the rate over ``wall_seconds``.

    Without ``wall_seconds`` the rate is the sum of the samples' reciprocal (one at a time).
    """
    ordered = sorted(samples_ns)
    total_s = sum(ordered) / 1e9
    wall = wall_seconds if wall_seconds is not None else total_s
    us = [s / 1000 for s in ordered]
    return {
        "count": len(ordered),
        "p50_us": round(percentile(us, 50), 1),
        "p90_us": round(percentile(us, 90), 1),
        "p99_us": round(percentile(us, 99), 1),
        "max_us": round(us[-1], 1) if us else math.nan,
        "mean_us": round(sum(us) / len(us), 1) if us else math.nan,
        "per_second": round(len(ordered) / wall, 1) if wall > 0 else math.nan,
    }
