"""Phase 1: the policy engine and the admission service in-process, one call at a time.

Three levels per pod, so that the HTTPS figures can be read as "this much is policy":

- ``engine``: ``workload_from_object`` + ``evaluate_workload`` on an already parsed object,
  every rule family of the four bench policies (what the issue's 100 µs target is about);
- ``engine+patch``: the same plus ``remedies_to_json_patch`` (what mutation adds);
- ``service/validate``, ``service/mutate``: the admission server's whole work for one request
  except HTTP and TLS: ``parse_review`` of the raw body, ``AdmissionService.validate`` or
  ``.mutate``, and encoding the response.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from bench.admission import workloads
from bench.admission.stats import summarize_ns


def _measure(fn: Callable[[], Any], *, count: int, warmup: int) -> dict[str, Any]:
    for _ in range(warmup):
        fn()
    clock = time.perf_counter_ns
    samples = [0] * count
    started = clock()
    for i in range(count):
        t0 = clock()
        fn()
        samples[i] = clock() - t0
    wall = (clock() - started) / 1e9
    return summarize_ns(samples, wall_seconds=wall)


def run(*, count: int, warmup: int) -> list[dict[str, Any]]:
    from modelward.admission.review import parse_review
    from modelward.admission.service import AdmissionService
    from modelward.engine import evaluate_workload, workload_from_object
    from modelward.engine.patches import remedies_to_json_patch

    state = workloads.cluster_state()
    service = AdmissionService(state=state, recorder=None)
    policies = state.active_policies
    rows: list[dict[str, Any]] = []
    for size in ("small", "large"):
        body = workloads.concrete(workloads.review_body(workloads.PODS[size]()))
        obj = json.loads(body)["request"]["object"]

        def decide(obj: dict[str, Any] = obj) -> Any:
            workload = workload_from_object(obj, namespace=workloads.NAMESPACE)
            return workload, evaluate_workload(workload, state, policies)

        def decide_and_patch() -> Any:
            workload, decision = decide()
            remedies = (r for f in decision.fixes for r in f.violation.remedies)
            return remedies_to_json_patch(workload, remedies)

        def serve(method: Callable[[Any], Any], body: bytes = body) -> bytes:
            return json.dumps(method(parse_review(body)).review).encode()

        _, decision = decide()
        assert not decision.denials and decision.fixes and decision.warnings, decision
        cases: list[tuple[str, Callable[[], Any]]] = [
            ("engine", decide),
            ("engine+patch", decide_and_patch),
            ("service/validate", lambda: serve(service.validate)),
            ("service/mutate", lambda: serve(service.mutate)),
        ]
        for level, fn in cases:
            summary = _measure(fn, count=count, warmup=warmup)
            rows.append(
                {
                    "level": level,
                    "pod": size,
                    "review_bytes": len(body),
                    "policies": len(policies),
                    "findings": len(decision.findings),
                    **summary,
                }
            )
    return rows


def _many_policies(total: int, namespace: str) -> Any:
    """The bench state, plus ``total - 4`` cluster policies selecting other namespaces (each
    with every rule family, as the bench policies have), so that only the four bench policies
    (and a fifth, a copy) select the bench namespace."""
    import copy

    from modelward.engine import parse_policy

    state = workloads.cluster_state(namespace)
    templates = workloads.policy_objects(namespace)
    extra = copy.deepcopy(templates[0])
    extra["metadata"]["name"] = "bench-isolation-copy"
    others = []
    for i in range(total - 5):
        obj = copy.deepcopy(templates[i % 3])
        obj["metadata"]["name"] = f"other-{i}"
        obj["spec"]["match"] = {"namespaces": [f"team-{i}-*"]}
        others.append(obj)
    for obj in [extra, *others]:
        meta = obj["metadata"]
        state.put_policy(
            (obj["kind"], meta.get("namespace"), meta["name"]),
            policy=parse_policy(obj),
            error=None,
            generation=1,
            resource_version=None,
        )
    return state


def run_policy_scale(*, count: int, warmup: int) -> list[dict[str, Any]]:
    """``service/validate`` of the large pod with 5 policies selecting its namespace, alone and
    among 500 policies (the other 495 select other namespaces): cost should follow the
    policies that select, not the policies that exist."""
    from modelward.admission.review import parse_review
    from modelward.admission.service import AdmissionService

    body = workloads.concrete(workloads.review_body(workloads.PODS["large"]()))
    rows: list[dict[str, Any]] = []
    for total in (5, 500):
        state = _many_policies(total, workloads.NAMESPACE)
        service = AdmissionService(state=state, recorder=None)
        selecting = len(state.policies_for(state.namespace(workloads.NAMESPACE)))
        assert selecting == 5 and len(state.active_policies) == total, (selecting, total)

        def serve(service: AdmissionService = service) -> Any:
            return service.validate(parse_review(body))

        rows.append(
            {
                "policies": total,
                "selecting": selecting,
                **_measure(serve, count=count, warmup=warmup),
            }
        )
    rows[1]["vs_5_policies"] = round(rows[1]["p50_us"] / rows[0]["p50_us"], 2)
    return rows
