"""Admission counters over the pack's period, from a Prometheus that scrapes modelward."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from modelward.evidence.model import PrometheusCounts, SeriesCount

TIMEOUT_SECONDS = 10.0
QUERIES = {
    "requests": "sum by (webhook, decision) (increase(modelward_admission_requests_total[{r}]))",
    "violations": "sum by (rule, mode) (increase(modelward_violations_total[{r}]))",
}


def prom_duration(period: dt.timedelta) -> str:
    return f"{max(int(period.total_seconds()), 1)}s"


def _query(url: str, expr: str, at: dt.datetime) -> list[SeriesCount]:
    params = urllib.parse.urlencode({"query": expr, "time": f"{at.timestamp():.3f}"})
    with urllib.request.urlopen(
        f"{url.rstrip('/')}/api/v1/query?{params}", timeout=TIMEOUT_SECONDS
    ) as response:
        doc: Any = json.loads(response.read(16 * 1024 * 1024))
    if not isinstance(doc, dict) or doc.get("status") != "success":
        raise ValueError(f"Prometheus answered {str(doc)[:200]}")
    rows = [
        SeriesCount(labels=dict(s.get("metric") or {}), count=round(float(s["value"][1]), 3))
        for s in (doc.get("data") or {}).get("result") or []
    ]
    return sorted(rows, key=lambda r: sorted(r["labels"].items()))


def counts(url: str, end: dt.datetime, period: dt.timedelta) -> PrometheusCounts:
    """The counters over [end - period, end]; an unreachable or broken Prometheus is recorded
    in ``error`` (the pack still renders, and says what is missing and why)."""
    window = prom_duration(period)
    result = PrometheusCounts(url=url, range=window, requests=[], violations=[], error="")
    try:
        result["requests"] = _query(url, QUERIES["requests"].format(r=window), end)
        result["violations"] = _query(url, QUERIES["violations"].format(r=window), end)
    except (OSError, urllib.error.URLError, ValueError, KeyError, IndexError, TypeError) as exc:
        result["error"] = (
            f"could not query Prometheus at {url}: {exc}; check --prometheus-url "
            "(the server's base URL, e.g. http://prometheus:9090)"
        )
    return result
