"""Smoke tests of the admission benchmark harness (bench/admission): every piece runs on tiny
counts and produces well-formed results. No timing is asserted: these only keep the harness
from rotting silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.admission import __main__ as entry
from bench.admission import engine_bench, https_bench, report, workloads

from modelward.engine import Mode


def test_workloads_are_the_sizes_the_issue_asks_and_exercise_every_family() -> None:
    small = workloads.concrete(workloads.review_body(workloads.small_pod()))
    large = workloads.concrete(workloads.review_body(workloads.large_pod()))
    assert 1200 <= len(small) <= 2000
    assert 25 * 1024 <= len(large) <= 30 * 1024
    state = workloads.cluster_state()
    policies = state.active_policies
    assert {p.mode for p in policies} | {
        c.mode for p in policies for c in (p.isolation, p.images, p.transport, p.secrets) if c
    } >= {Mode.ENFORCE, Mode.PATCH, Mode.AUDIT}
    isolation = next(p.isolation for p in policies if p.isolation)
    assert isolation.gpu is not None and isolation.runtime_class_names
    assert all(
        any(getattr(p, f) for p in policies)
        for f in ("isolation", "images", "transport", "secrets")
    )


def test_engine_phase_runs_every_level_on_both_pods() -> None:
    rows = engine_bench.run(count=5, warmup=1)
    assert {(r["level"], r["pod"]) for r in rows} == {
        (level, pod)
        for level in ("engine", "engine+patch", "service/validate", "service/mutate")
        for pod in ("small", "large")
    }
    assert all(r["count"] == 5 and r["p50_us"] > 0 and r["findings"] > 0 for r in rows)


@pytest.mark.slow
def test_https_phase_checks_every_answer_against_both_servers() -> None:
    rows = https_bench.run(count_c1=4, count_c16=16, warmup=2)
    assert len(rows) == 12  # 2 pods x 2 concurrencies x (no-op, validate, mutate)
    assert all(r["errors"] == 0 and r["sent"] == r["count"] for r in rows)
    modelward = [r for r in rows if r["app"] == "modelward"]
    assert all("throughput_vs_noop" in r and r["server_cpu_us_per_review"] >= 0 for r in modelward)


@pytest.mark.slow
def test_the_load_client_refuses_a_wrong_answer(tmp_path: Path) -> None:
    with https_bench.serving_certificate() as (ca, cert, key):
        bodies = https_bench.write_bodies(tmp_path)
        server = https_bench.start_server("modelward", cert, key, tmp_path / "server.log")
        try:
            job = {
                "host": "127.0.0.1",
                "port": server.port,
                "ca": str(ca),
                "concurrency": 1,
                "warmup": 0,
                "count": 2,
                "max_seconds": 30,
                "requests": [
                    {
                        "path": "/validate",
                        "body": str(bodies["small"]),
                        "expect_allowed": True,
                        "expect_patch": True,
                    }
                ],
            }
            with pytest.raises(RuntimeError, match="wrong answers"):
                https_bench.run_client(job)
        finally:
            server.stop()


def _results() -> dict[str, object]:
    results = entry.run(("engine",), entry.TINY, argv=["--phases", "engine"], quick=True)
    results["https"] = [
        {
            "app": "noop",
            "webhook": "any",
            "pod": "small",
            "concurrency": 16,
            "p50_us": 100.0,
            "p99_us": 200.0,
            "per_second": 3000.0,
            "server_cpu_us_per_review": 1.0,
            "client_cpu_us_per_review": 1.0,
        },
        {
            "app": "modelward",
            "webhook": "validate",
            "pod": "small",
            "concurrency": 16,
            "p50_us": 150.0,
            "p99_us": 300.0,
            "per_second": 2500.0,
            "server_cpu_us_per_review": 1.0,
            "client_cpu_us_per_review": 1.0,
            "p50_vs_noop": 1.5,
            "p99_vs_noop": 1.5,
            "throughput_vs_noop": 1.2,
        },
    ]
    results["targets"] = report.targets(results)
    return results


def test_results_are_json_with_targets_and_compare_with_an_earlier_run(tmp_path: Path) -> None:
    results = _results()
    path = tmp_path / "latest.json"
    report.write_json(results, path)
    loaded = json.loads(path.read_text())
    met = {t["target"]: t["met"] for t in loaded["targets"]}
    assert met["HTTPS c=16, small pod, validate: reviews/s"] is True
    assert "engine, large pod, every rule: p50" in met
    assert entry.compare(loaded, loaded)  # every row compared with itself


def test_docs_update_touches_only_the_admission_results_block(tmp_path: Path) -> None:
    docs = tmp_path / "performance.md"
    other = "## Model integrity\n\nTheirs | 1.0 s\n"
    docs.write_text(f"Intro.\n\n{other}")
    generated = report.markdown(_results())
    report.update_docs(docs, generated, intro="How admission is measured.")
    first = docs.read_text()
    assert other in first and "## Admission\n\nHow admission is measured." in first
    assert report.BEGIN in first and report.END in first
    # Prose written around the block survives a later run; the block is replaced, not added.
    docs.write_text(first.replace(report.END, report.END + "\n\nAnalysis by hand."))
    report.update_docs(docs, "new figures", intro="ignored once the section exists")
    second = docs.read_text()
    assert other in second and "Analysis by hand." in second and "new figures" in second
    assert second.count(report.BEGIN) == 1 and generated not in second


@pytest.mark.e2e
@pytest.mark.slow
def test_cluster_phase_runs_through_a_real_api_server() -> None:
    """Starts its own control plane and operator (twice), like the real run."""
    from bench.admission import cluster_bench

    counts = entry.TINY
    results = cluster_bench.run(
        creates=counts.creates,
        create_warmup=counts.create_warmup,
        reviews=counts.reviews,
        review_warmup=counts.review_warmup,
        fill_namespaces=counts.fill_namespaces,
        fill_policies=counts.fill_policies,
        log=lambda _: None,
    )
    arms = {(r["arm"], r["pod"]) for r in results["apiserver"]}
    assert {
        ("none", "small"),
        ("modelward", "large"),
        ("no-op webhooks", "large"),
        ("modelward minus none", "large"),
    } <= arms
    assert results["memory_reviews"]["reviews"] == counts.reviews
    caches = results["memory_caches"]
    assert caches["policies"] == counts.fill_policies and caches["pods"] == counts.fill_namespaces
    assert 400 <= caches["fresh_operator_probe_status"] < 500  # the fresh operator served
    assert report.targets({"cluster": results})


def test_adversarial_phase_reports_the_worst_case_beside_the_large_pod() -> None:
    from bench.admission import adversarial_bench

    result = adversarial_bench.run(repeats=1, size=16 * 1024, cases=("env a:", "many env"))
    assert {r["case"] for r in result["cases"]} == {"env a:", "many env"}
    assert result["worst"] == max(result["cases"], key=lambda r: r["ms"])
    assert result["large_pod_us"] > 0 and result["worst_vs_large_pod"] > 0
    assert "Adversarial pods" in report.markdown(
        {"meta": _results()["meta"], "adversarial": result}
    )
