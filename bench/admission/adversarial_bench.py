"""Phase 1b: the worst pod a hostile author can write, beside a normal large pod, same run.

Every shape of ``modelward_dev.adversarial`` (credential-format literals repeated without what
must follow them, long image references, thousands of containers, env vars, tolerations...)
is built at 1 MiB from the bench's large pod and judged by the bench's four policies, engine
plus patch, as mutation would. Wall time (``perf_counter``), best of a few runs: what matters
is how long one review can hold the event loop. The unit test
``tests/unit/engine/test_linear_time.py`` asserts that these costs grow linearly; this
reports how large the worst one is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench.admission import workloads

MIB = 1024 * 1024


def _best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def run(*, repeats: int, size: int = MIB, cases: tuple[str, ...] | None = None) -> dict[str, Any]:
    import json

    from modelward.engine import evaluate_workload, workload_from_object
    from modelward.engine.patches import remedies_to_json_patch
    from modelward.engine.rules.secrets import forget_verdicts
    from modelward_dev.adversarial import CASES

    state = workloads.cluster_state()
    policies = state.active_policies

    def judge(obj: dict[str, Any]) -> Callable[[], Any]:
        def once() -> Any:
            forget_verdicts()  # a new review's values have not been judged before
            workload = workload_from_object(obj, namespace=workloads.NAMESPACE)
            decision = evaluate_workload(workload, state, policies)
            remedies = (r for f in decision.fixes for r in f.violation.remedies)
            return remedies_to_json_patch(workload, remedies)

        return once

    large = workloads.large_pod()
    large_seconds = _best_seconds(judge(large), max(repeats, 20))
    rows: list[dict[str, Any]] = []
    for name in cases or tuple(CASES):
        obj = CASES[name](large, size)
        rows.append(
            {
                "case": name,
                "bytes": len(json.dumps(obj)),
                "ms": round(_best_seconds(judge(obj), repeats) * 1000, 1),
            }
        )
    rows.sort(key=lambda r: r["ms"], reverse=True)
    worst = rows[0]
    return {
        "size_bytes": size,
        "repeats": repeats,
        "large_pod_bytes": len(json.dumps(large)),
        "large_pod_us": round(large_seconds * 1e6, 1),
        "worst": worst,
        "worst_vs_large_pod": round(worst["ms"] * 1000 / (large_seconds * 1e6), 1),
        "cases": rows,
    }
