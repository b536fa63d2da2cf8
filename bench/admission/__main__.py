"""``python -m bench.admission``: every admission benchmark, one command.

    .venv/bin/python -m bench.admission            # the full run, ~8 minutes on 2 cores
    .venv/bin/python -m bench.admission --quick    # smoke counts, ~1 minute
    .venv/bin/python -m bench.admission --phases engine,https --no-docs

Writes bench/results/latest.json (or ``--output``) and the results block of the "Admission"
section of docs/performance.md (unless ``--no-docs``; a ``--quick`` run never touches the
docs). ``--compare OLD.json`` prints the change of each p50 and rate against an earlier run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.admission import report

PHASES = ("engine", "adversarial", "https", "cluster")

INTRO = """\
What admission costs, measured by `bench/admission` (`make bench`, or
`.venv/bin/python -m bench.admission`; `--quick` for a smoke run). Four policies enable every
rule family of issue 6 (isolation with GPU pool and runtime classes, images, transport, secrets;
Patch, Enforce and Audit). The small pod's review is ~1.5 KiB, the large pod's ~29 KiB (four
containers, 70 env vars, 24 volumes, managedFields). Neither is denied: validation runs every
rule to the end and mutation returns a patch, the most work either webhook does.

1. In-process: the engine alone, and the admission service without HTTP (parse, decide, encode).
   1b. The worst pod a hostile author can write: every shape of `modelward_dev.adversarial`
   (credential-format literals repeated, long image references, thousands of containers or
   env vars) at 1 MiB, built from the large pod, engine + patch, beside the large pod itself.
2. HTTPS: `bench/admission/server.py` serves modelward's real admission app (as `modelward run`
   builds it) in its own process; a minimal keep-alive client in another process drives it at
   concurrency 1 and 16. Every answer is checked (uid, allowed, patch).
3. The floor: a no-op aiohttp HTTPS app on the same stack (same TLS context, runner settings),
   which parses the review and answers allowed. Cases alternate between it and modelward.
4. Through a real kube-apiserver (`LocalControlPlane` + `OperatorProcess`): server-side dry-run
   Pod creates over a keep-alive admin connection (no kubectl), with modelward's two webhooks
   registered, with the same two webhooks served by the no-op app, and with none; the arms
   alternate in blocks (A B C, C B A), each switch confirmed before timing.
5. `modelward run`'s RSS (from /proc) across 100,000 reviews, and with 100 policies and 10,000
   namespaces, Services and Pods in the cluster. The operator caches policies, namespaces,
   NetworkPolicies and Services (compact selectors and labels, not whole objects); it watches
   Pods (for verifier results) but keeps none, so "10,000 pods cached" is measured as 10,000
   Pods watched plus 10,000 namespaces and Services cached.
"""


@dataclass(frozen=True)
class Counts:
    engine: int
    engine_warmup: int
    https_c1: int
    https_c16: int
    https_warmup: int
    creates: int
    create_warmup: int
    reviews: int
    review_warmup: int
    fill_namespaces: int
    fill_policies: int
    adversarial_repeats: int = 3


FULL = Counts(
    engine=5000,
    engine_warmup=500,
    https_c1=3000,
    https_c16=6000,
    https_warmup=300,
    creates=1000,
    create_warmup=30,
    reviews=100_000,
    review_warmup=2000,
    fill_namespaces=10_000,
    fill_policies=100,
)
QUICK = Counts(
    engine=200,
    engine_warmup=20,
    https_c1=150,
    https_c16=300,
    https_warmup=30,
    creates=40,
    create_warmup=5,
    reviews=1000,
    review_warmup=100,
    fill_namespaces=40,
    fill_policies=8,
)
TINY = Counts(  # for the smoke test: every code path, as little time as possible
    engine=5,
    engine_warmup=1,
    https_c1=5,
    https_c16=16,
    https_warmup=2,
    creates=4,
    create_warmup=1,
    reviews=40,
    review_warmup=8,
    fill_namespaces=3,
    fill_policies=5,
    adversarial_repeats=1,
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(phases: tuple[str, ...], counts: Counts, *, argv: list[str], quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {"meta": report.meta(quick=quick, argv=argv)}
    started = time.monotonic()
    if "engine" in phases:
        from bench.admission import engine_bench

        log("phase 1: the engine in-process")
        results["engine"] = engine_bench.run(count=counts.engine, warmup=counts.engine_warmup)
        log("phase 1a: 5 selecting policies alone and among 500")
        results["policy_scale"] = engine_bench.run_policy_scale(
            count=counts.engine, warmup=counts.engine_warmup
        )
    if "adversarial" in phases:
        from bench.admission import adversarial_bench

        log("phase 1b: adversarial 1 MiB pods in-process")
        results["adversarial"] = adversarial_bench.run(repeats=counts.adversarial_repeats)
    if "https" in phases:
        from bench.admission import https_bench

        log("phases 2-3: HTTPS, modelward's app and the no-op app")
        results["https"] = https_bench.run(
            count_c1=counts.https_c1, count_c16=counts.https_c16, warmup=counts.https_warmup
        )
    if "cluster" in phases:
        from bench.admission import cluster_bench

        log("phases 4-5: a real kube-apiserver, and the operator's memory")
        results["cluster"] = cluster_bench.run(
            creates=counts.creates,
            create_warmup=counts.create_warmup,
            reviews=counts.reviews,
            review_warmup=counts.review_warmup,
            fill_namespaces=counts.fill_namespaces,
            fill_policies=counts.fill_policies,
            log=log,
        )
    results["targets"] = report.targets(results)
    results["meta"]["seconds"] = round(time.monotonic() - started, 1)
    results["meta"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def compare(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """One line per row present in both runs: p50 and rate, old -> new."""
    lines = []
    keys = {"engine": ("level", "pod"), "https": ("app", "webhook", "pod", "concurrency")}
    for section, key in keys.items():
        before = {tuple(r[k] for k in key): r for r in old.get(section) or []}
        for row in new.get(section) or []:
            was = before.get(tuple(row[k] for k in key))
            if was:
                lines.append(
                    f"{section} {' '.join(str(row[k]) for k in key)}: p50 {was['p50_us']} -> "
                    f"{row['p50_us']} µs, rate {was['per_second']} -> {row['per_second']}/s"
                )
    before_api = {(r["arm"], r["pod"]): r for r in (old.get("cluster") or {}).get("apiserver", [])}
    for row in (new.get("cluster") or {}).get("apiserver", []):
        was = before_api.get((row["arm"], row["pod"]))
        if was and "p50_us" in row:
            lines.append(
                f"apiserver {row['arm']} {row['pod']}: p50 {was['p50_us']} -> {row['p50_us']} µs"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.admission", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke counts (about a minute)")
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}"
    )
    parser.add_argument("--output", type=Path, default=report.ROOT / "bench/results/latest.json")
    parser.add_argument("--docs", type=Path, default=report.ROOT / "docs/performance.md")
    parser.add_argument("--no-docs", action="store_true", help="do not update the docs")
    parser.add_argument("--compare", type=Path, help="an earlier results JSON to compare with")
    args = parser.parse_args(argv)
    for folder in ("hack", "operator"):  # modelward_dev, and modelward from this checkout
        path = str(report.ROOT / folder)
        if path not in sys.path:
            sys.path.insert(0, path)
    phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}; choose from {', '.join(PHASES)}")
    results = run(phases, QUICK if args.quick else FULL, argv=argv, quick=args.quick)
    generated = report.markdown(results)
    print(generated)
    report.write_json(results, args.output)
    log(f"results written to {args.output}")
    if not args.no_docs and not args.quick:
        report.update_docs(args.docs, generated, intro=INTRO)
        log(f"docs updated: {args.docs} (section {report.SECTION})")
    if args.compare:
        print("\nCompared with", args.compare)
        for line in compare(results, json.loads(args.compare.read_text())):
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
