"""Soak: the webhook port under mixed legitimate and hostile traffic for several minutes.

    python -m bench.soak [--duration 180] [--output bench/results/soak.json]

A server process (``bench.soak.server``: the webhook port exactly as ``modelward run`` serves
it) receives, at the same time:

- legitimate reviews: small pods (compliant and denied) from 4 concurrent clients, each
  reusing its keep-alive connection like the API server;
- idle TLS connections (handshake, then nothing), raw TCP connections that never start TLS,
  and half-sent request headers, opened continuously;
- oversized objects: a 3.6 MB pod with 45,000 containers and a 2.5 MiB dry-run pod;
- reviews with a unique ``kind`` and ``namespace`` each (label cardinality).

Every second the server's RSS is sampled. The result: p50/p99/max latency of legitimate
reviews, how many failed (an error, a non-200, or a budget/overload denial), RSS over time,
``/metrics`` size, and what the hostile traffic achieved.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import ssl
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from bench.admission.https_bench import ROOT, python_env, rss_bytes, serving_certificate
from bench.admission.workloads import NAMESPACE, pod_object

CLIENTS = 4
MAX_HELD = 800  # hostile connections the bench holds open at once, client side


def review(obj: dict[str, Any] | None, *, kind: str = "Pod", namespace: str = NAMESPACE) -> bytes:
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": str(uuid.uuid4()),
                "kind": {"group": "", "version": "v1", "kind": kind},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": namespace,
                "name": "soak",
                "operation": "CREATE",
                "object": obj,
                "dryRun": True,
                "userInfo": {"username": "soak"},
            },
        }
    ).encode()


def huge_pods() -> list[bytes]:
    many = pod_object("small")
    container = many["spec"]["containers"][0]
    many["spec"]["containers"] = [{**container, "name": f"c{i}"} for i in range(45_000)]
    env = pod_object("small")
    env["spec"]["containers"][0]["env"] = [
        {"name": f"V{i}", "value": "x" * 1200} for i in range(2000)
    ]
    return [review(many), review(env)]


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    hostile: dict[str, int] = field(default_factory=dict)
    rss: list[tuple[float, int]] = field(default_factory=list)

    def fail(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1

    def count(self, what: str) -> None:
        self.hostile[what] = self.hostile.get(what, 0) + 1


async def legitimate(url: str, context: ssl.SSLContext, stats: Stats, stop: asyncio.Event) -> None:
    good = pod_object("small")
    bad = pod_object("small")
    bad["spec"]["containers"][0]["image"] = "nginx:latest"
    bodies = [review(good), review(bad)]
    connector = aiohttp.TCPConnector(ssl=context, limit=1)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        i = 0
        while not stop.is_set():
            i += 1
            started = time.perf_counter()
            try:
                async with session.post(url + "/validate", data=bodies[i % 2]) as response:
                    answer = await response.json(content_type=None)
                    elapsed = time.perf_counter() - started
                    code = (answer.get("response", {}).get("status") or {}).get("code")
                    if response.status != 200:
                        stats.fail(f"http {response.status}")
                    elif code in (429, 500, 504):
                        stats.fail(f"answered {code}")
                    else:
                        stats.latencies.append(elapsed)
            except (aiohttp.ClientError, TimeoutError) as exc:
                stats.fail(type(exc).__name__)
            await asyncio.sleep(0.01)


async def hold(
    port: int, context: ssl.SSLContext | None, first: bytes, stats: Stats, what: str
) -> None:
    """Open a connection, send ``first`` (maybe nothing), and hold it until the server closes."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    except (OSError, ssl.SSLError):
        stats.count(f"{what}: refused")
        return
    stats.count(f"{what}: opened")
    try:
        if first:
            writer.write(first)
            await writer.drain()
        async with asyncio.timeout(120):
            while await reader.read(65536):
                pass
        stats.count(f"{what}: closed by server")
    except TimeoutError:
        stats.count(f"{what}: still open after 120 s")
    except (OSError, ssl.SSLError):
        stats.count(f"{what}: closed by server")
    finally:
        writer.close()


async def hostile_connections(
    port: int, context: ssl.SSLContext, stats: Stats, stop: asyncio.Event
) -> None:
    held: set[asyncio.Task[None]] = set()
    kinds = [
        (context, b"", "idle TLS"),
        (None, b"", "raw TCP, no TLS"),
        (context, b"POST /validate HTTP/1.1\r\nHost: modelward\r\nContent-Le", "half-sent header"),
    ]
    i = 0
    while not stop.is_set():
        if len(held) < MAX_HELD:
            tls, first, what = kinds[i % len(kinds)]
            task = asyncio.create_task(hold(port, tls, first, stats, what))
            held.add(task)
            task.add_done_callback(held.discard)
            i += 1
        await asyncio.sleep(0.02)
    for task in held:
        task.cancel()


async def hostile_reviews(
    url: str, context: ssl.SSLContext, stats: Stats, stop: asyncio.Event
) -> None:
    huge = huge_pods()
    connector = aiohttp.TCPConnector(ssl=context, limit=4)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        i = 0
        while not stop.is_set():
            i += 1
            if i % 20 == 0:
                body, what = huge[(i // 20) % 2], "oversized review"
            else:
                body = review({"kind": f"Kind{i}"}, kind=f"Kind{i}", namespace=f"ns-{i}")
                what = "unique-label review"
            try:
                async with session.post(url + "/validate", data=body) as response:
                    answer = await response.json(content_type=None)
                    allowed = answer.get("response", {}).get("allowed")
                    stats.count(f"{what}: {'allowed' if allowed else 'denied'} ({response.status})")
            except (aiohttp.ClientError, TimeoutError) as exc:
                stats.count(f"{what}: {type(exc).__name__}")
            await asyncio.sleep(0.05)


async def sample_rss(pid: int, stats: Stats, stop: asyncio.Event) -> None:
    started = time.monotonic()
    while not stop.is_set():
        stats.rss.append((round(time.monotonic() - started, 1), rss_bytes(pid)))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await stop.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def soak(duration: float, ca: Path, port: int, health_port: int, pid: int) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=str(ca))
    url = f"https://127.0.0.1:{port}"
    stats = Stats()
    stop = asyncio.Event()
    tasks = [
        *(asyncio.create_task(legitimate(url, context, stats, stop)) for _ in range(CLIENTS)),
        asyncio.create_task(hostile_connections(port, context, stats, stop)),
        asyncio.create_task(hostile_reviews(url, context, stats, stop)),
        asyncio.create_task(sample_rss(pid, stats, stop)),
    ]
    await asyncio.sleep(duration)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    metrics_url = f"http://127.0.0.1:{health_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(metrics_url) as response:
        metrics = await response.text()
    rss = [r for _, r in stats.rss]
    return {
        "duration_s": duration,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
        f"Python {platform.python_version()}",
        "legitimate_reviews": len(stats.latencies),
        "legitimate_failures": sum(stats.failures.values()),
        "failures_by_cause": stats.failures,
        "p50_ms": round(percentile(stats.latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(stats.latencies, 0.99) * 1000, 2),
        "max_ms": round(max(stats.latencies, default=float("nan")) * 1000, 2),
        "rss_start_mb": round(rss[0] / 2**20, 1),
        "rss_max_mb": round(max(rss) / 2**20, 1),
        "rss_end_mb": round(rss[-1] / 2**20, 1),
        "rss_over_time_mb": [
            (t, round(r / 2**20, 1)) for t, r in stats.rss[:: max(1, len(rss) // 12)]
        ],
        "metrics_bytes": len(metrics),
        "metrics_series": sum(1 for line in metrics.splitlines() if line and line[0] != "#"),
        "hostile": dict(sorted(stats.hostile.items())),
    }


def table(result: dict[str, Any]) -> str:
    rows = [
        ("duration", f"{result['duration_s']:.0f} s"),
        ("legitimate reviews", str(result["legitimate_reviews"])),
        ("legitimate failures", f"{result['legitimate_failures']} {result['failures_by_cause']}"),
        (
            "latency p50 / p99 / max",
            f"{result['p50_ms']} / {result['p99_ms']} / {result['max_ms']} ms",
        ),
        (
            "server RSS start / max / end",
            f"{result['rss_start_mb']} / {result['rss_max_mb']} / {result['rss_end_mb']} MB",
        ),
        ("/metrics", f"{result['metrics_bytes']} bytes, {result['metrics_series']} series"),
        *((f"  {k}", str(v)) for k, v in result["hostile"].items()),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds (default 180)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    args = parser.parse_args(argv)
    with serving_certificate() as (ca, cert, key):
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.soak.server", f"--cert={cert}", f"--key={key}"],
            cwd=ROOT,
            env=python_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            info = json.loads(process.stdout.readline())
            result = asyncio.run(
                soak(args.duration, ca, info["port"], info["health_port"], info["pid"])
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(table(result))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
