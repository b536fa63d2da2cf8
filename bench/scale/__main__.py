"""``python -m bench.scale``: modelward's memory, start-up and admission latency on a big cluster.

    .venv/bin/python -m bench.scale                 # both shapes (~15 minutes on 2 cores)
    .venv/bin/python -m bench.scale --shape 50k     # 50,000 pods in 2,000 namespaces
    .venv/bin/python -m bench.scale --quick         # 2,000 pods in 100 namespaces, ~2 minutes

Against a local kube-apiserver (server-side objects, no kubelets), with the chart's webhook
configurations (``OperatorProcess(webhooks="chart")``, the fail-open webhooks narrowed to what
policies select), 100 policies (the four bench ones and fillers), it records:

- the operator's RSS idle with the policies loaded;
- while the cluster is filled with it running: RSS over time, and the reviews it received for
  pods in namespaces no policy selects (the fill namespaces);
- a fresh operator started on the filled cluster: time to ``/readyz`` and to the webhooks in
  use, RSS over time from its first moment (peak), and admission latency (server-side dry-run
  creates through the API server) while kopf's first listing runs, against the same once idle.

Writes bench/results/scale-<shape>.json. Targets (issue 14) are reported, not asserted.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.admission import workloads
from bench.admission.cluster_bench import (
    MIB,
    Api,
    _parallel,
    api_pod,
    install_bench_objects,
    install_crds,
    wait_idle,
)
from bench.admission.https_bench import rss_bytes
from bench.admission.stats import summarize_ns

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION = "modelward-scale"


@dataclass(frozen=True)
class Shape:
    name: str
    namespaces: int
    pods_per_namespace: int
    services: bool
    policies: int = 100

    @property
    def pods(self) -> int:
        return self.namespaces * self.pods_per_namespace


SHAPES = {
    "10k": Shape("10k", namespaces=10_000, pods_per_namespace=1, services=True),
    "50k": Shape("50k", namespaces=2_000, pods_per_namespace=25, services=False),
    "quick": Shape("quick", namespaces=100, pods_per_namespace=20, services=True, policies=20),
}


def find_pid(flag: str, timeout: float = 60.0) -> int:
    """The pid of the ``modelward run`` process whose command line holds ``flag``."""
    deadline = time.monotonic() + timeout
    needle = flag.encode()
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if needle in argv and b"run" in argv:
                return int(entry.name)
        time.sleep(0.02)
    raise RuntimeError(f"no modelward process with {flag}")


class Sampler:
    """RSS of the process found by ``flag``, from its first moment, every ``interval``."""

    def __init__(self, flag: str, interval: float = 0.25) -> None:
        self.flag = flag
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def _run(self) -> None:
        pid = find_pid(self.flag)
        while not self._stop.is_set():
            try:
                rss = rss_bytes(pid) / MIB
            except (OSError, RuntimeError):
                return
            self.samples.append((round(time.monotonic() - self.started, 2), round(rss, 1)))
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> float:
        return max((rss for _, rss in self.samples), default=0.0)

    def series(self, points: int = 24) -> list[tuple[float, float]]:
        step = max(len(self.samples) // points, 1)
        return self.samples[::step] + self.samples[-1:]


def reviews(operator: Any) -> float:
    from modelward_dev.controlplane import loopback_opener

    with loopback_opener().open(f"{operator.metrics_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("modelward_admission_requests_total{")
    )


def fill(api: Api, shape: Shape, scope_label: dict[str, str], threads: int) -> dict[str, float]:
    """Filler policies, then the namespaces (each with a headless Service if the shape says
    so) and their pods, created in parallel over keep-alive connections."""
    timings: dict[str, float] = {}
    fillers = max(shape.policies - len(workloads.policy_objects()), 0)
    timings["policies_seconds"] = _parallel(
        api,
        (
            ("/apis/modelward.io/v1alpha1/clustermodelpolicies", p)
            for p in map(workloads.filler_policy_object, range(fillers))
        ),
        threads,
    )
    names = [f"fill-{i:05d}" for i in range(shape.namespaces)]
    timings["namespaces_seconds"] = _parallel(
        api,
        (
            (
                "/api/v1/namespaces",
                {"metadata": {"name": n, "labels": {**scope_label, "tier": "fill"}}},
            )
            for n in names
        ),
        threads,
    )
    if shape.services:
        service = {
            "metadata": {"name": "model"},
            "spec": {"clusterIP": "None", "selector": {"app": "model"}, "ports": [{"port": 8443}]},
        }
        timings["services_seconds"] = _parallel(
            api, ((f"/api/v1/namespaces/{n}/services", service) for n in names), threads
        )
    template = json.loads(api_pod("small"))
    template["metadata"].pop("namespace")

    def pod(namespace: str, index: int) -> tuple[str, dict[str, Any]]:
        body = copy.deepcopy(template)
        body["metadata"]["name"] = f"model-{index:03d}"
        body["metadata"]["labels"] = {"app": "model"}
        return f"/api/v1/namespaces/{namespace}/pods", body

    started = time.monotonic()
    timings["pods_seconds"] = _parallel(
        api,
        (pod(n, i) for i in range(shape.pods_per_namespace) for n in names),
        threads,
    )
    timings["pods_per_second"] = round(shape.pods / (time.monotonic() - started), 1)
    return {k: round(v, 1) for k, v in timings.items()}


def latencies(api: Api, body: bytes, seconds: float, limit: int) -> dict[str, Any]:
    """Server-side dry-run creates of the bench pod for ``seconds`` (at most ``limit``)."""
    times: list[int] = []
    deadline = time.monotonic() + seconds
    path = f"/api/v1/namespaces/{workloads.NAMESPACE}/pods?dryRun=All"
    while time.monotonic() < deadline and len(times) < limit:
        started = time.perf_counter_ns()
        status, answer = api.request("POST", path, raw=body)
        times.append(time.perf_counter_ns() - started)
        if status != 201:
            raise RuntimeError(f"dry-run create: HTTP {status}: {answer.get('message')}")
    summary = summarize_ns(times)
    return {"count": len(times), **{k: v for k, v in summary.items() if k != "samples"}}


def run(shape: Shape, threads: int, log: Any = print) -> dict[str, Any]:
    from modelward_dev.binaries import find_binaries
    from modelward_dev.controlplane import LocalControlPlane
    from modelward_dev.operator_process import HARNESS_SCOPE_LABEL, OperatorProcess

    scope_label = {HARNESS_SCOPE_LABEL: CONFIGURATION}
    results: dict[str, Any] = {"shape": {**dataclasses.asdict(shape), "pods": shape.pods}}
    began = time.monotonic()
    # Raised limits: the fill is hundreds of parallel creates per second.
    with LocalControlPlane(
        binaries=find_binaries(),
        extra_apiserver_args=(
            "--max-requests-inflight=800",
            "--max-mutating-requests-inflight=400",
        ),
    ) as plane:
        api = Api(plane)
        install_crds(api)
        api.create(
            "/api/v1/namespaces",
            {
                "metadata": {
                    "name": workloads.NAMESPACE,
                    "labels": {**workloads.NAMESPACE_LABELS, **scope_label},
                }
            },
        )
        install_bench_objects(api)

        def operator(namespace: str) -> Any:
            return OperatorProcess(
                control_plane=plane,
                namespace=namespace,
                configuration_name=CONFIGURATION,
                probe_namespace="modelward-scale-probe",
                webhooks="chart",
                ready_timeout=900.0,
                webhook_timeout=300.0,
            )

        small = api_pod("small")
        first = operator("modelward-scale-running")
        with Sampler("--namespace=modelward-scale-running") as running:
            first.start()
            pid = find_pid("--namespace=modelward-scale-running")
            wait_idle(pid)
            idle = rss_bytes(pid) / MIB
            idle_latency = latencies(api, small, 10.0, 400)
            log(f"  idle with the {len(workloads.policy_objects())} bench policies: {idle:.1f} MiB")
            before = reviews(first)
            log(f"  filling: {shape.namespaces} namespaces, {shape.pods} pods")
            timings = fill(api, shape, scope_label, threads)
            received = reviews(first) - before
            wait_idle(pid, timeout=600.0)
            settled = rss_bytes(pid) / MIB
            first.stop()
        results["running"] = {
            "rss_idle_policies_mib": round(idle, 1),
            "rss_peak_mib": running.peak,
            "rss_settled_after_fill_mib": round(settled, 1),
            "reviews_received_during_fill": received,
            "fill": timings,
            "rss_series_mib": running.series(),
        }
        log(f"  running: peak {running.peak} MiB, settled {settled:.1f} MiB, {received} reviews")

        fresh = operator("modelward-scale-fresh")
        with Sampler("--namespace=modelward-scale-fresh", interval=0.1) as sampler:
            started = time.monotonic()
            fresh.start()  # returns once /readyz is green and the API server calls it
            in_use = time.monotonic() - started
            during = latencies(api, small, 20.0, 400)
            fresh_pid = find_pid("--namespace=modelward-scale-fresh")
            wait_idle(fresh_pid, timeout=600.0)
            listed = rss_bytes(fresh_pid) / MIB
            after = latencies(api, small, 10.0, 400)
            ready_seconds = _ready_seconds(fresh.log_path)  # before stop() deletes the log
            fresh.stop()
        results["fresh"] = {
            "webhooks_in_use_seconds": round(in_use, 1),
            "ready_seconds_from_log": ready_seconds,
            "rss_peak_mib": sampler.peak,
            "rss_settled_mib": round(listed, 1),
            "rss_series_mib": sampler.series(),
            "dry_run_create_us_while_listing": during,
            "dry_run_create_us_idle": after,
        }
        results["idle_dry_run_create_us"] = idle_latency
        log(f"  fresh: peak {sampler.peak} MiB, settled {listed:.1f} MiB, in use {in_use:.1f}s")
    results["seconds"] = round(time.monotonic() - began, 1)
    return results


def _ready_seconds(log_path: Path) -> float | None:
    """Seconds from the operator's first log line to "admission webhooks on" (its readiness)."""
    try:
        lines = log_path.read_text().splitlines()
    except OSError:
        return None
    stamps = [_stamp(line) for line in lines]
    first = next((s for s in stamps if s is not None), None)
    ready = next(
        (s for line, s in zip(lines, stamps, strict=True) if "admission webhooks on" in line),
        None,
    )
    return round(ready - first, 1) if first is not None and ready is not None else None


def _stamp(line: str) -> float | None:
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(line[:23].replace(",", ".")).timestamp()
    except ValueError:
        return None


def machine() -> dict[str, Any]:
    memory = next(
        (
            int(line.split()[1]) * 1024
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        ),
        0,
    )
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(memory / 1024**3, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_start": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), action="append")
    parser.add_argument("--quick", action="store_true", help="the small shape only (CI smoke)")
    parser.add_argument("--threads", type=int, default=16, help="parallel create requests")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    shapes = ["quick"] if args.quick else (args.shape or ["10k", "50k"])
    for name in shapes:
        print(f"bench.scale: shape {name}", flush=True)
        result = {"machine": machine(), **run(SHAPES[name], args.threads)}
        result["machine"]["load_average_end"] = os.getloadavg()[0]
        path = args.output_dir / f"scale-{name}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"  written {path.relative_to(ROOT)} in {result['seconds']}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
