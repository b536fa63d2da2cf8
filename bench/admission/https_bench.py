"""Phases 2-3: modelward's admission app over HTTPS, against a no-op app on the same stack.

Two server processes (``bench.admission.server``: modelward's app and the no-op app) run side
by side; for every pod and concurrency the client process (``bench.admission.client``) drives
the no-op app, then modelward's ``/validate``, then ``/mutate``, so slow drift of the machine
hits both alike. Server CPU per review is read from /proc (what the server really spent,
whatever the client took of the two shared cores).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.admission import workloads

ROOT = Path(__file__).resolve().parents[2]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def python_env() -> dict[str, str]:
    """The environment for bench subprocesses: the repo importable, output unbuffered."""
    env = dict(os.environ)
    paths = [str(ROOT), str(ROOT / "operator"), str(ROOT / "hack")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class ServerProcess:
    name: str
    process: subprocess.Popen[str]
    port: int
    pid: int

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_server(
    app: str, cert: Path, key: Path, log: Path, *, warning: str | None = None
) -> ServerProcess:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.admission.server",
            f"--app={app}",
            f"--cert={cert}",
            f"--key={key}",
            *([f"--warning={warning}"] if warning else []),
        ],
        cwd=ROOT,
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=10)
        raise RuntimeError(f"the {app} bench server exited: {log.read_text()[-2000:]}")
    info = json.loads(line)
    return ServerProcess(app, process, int(info["port"]), int(info["pid"]))


def run_client(job: dict[str, Any]) -> dict[str, Any]:
    """Run the load client as its own process; raises if any answer was wrong."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.admission.client"],
        cwd=ROOT,
        env=python_env(),
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=job["max_seconds"] + 60,
        check=False,
    )
    if not done.stdout.strip():
        raise RuntimeError(f"the load client failed: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    if result["errors"]:
        raise RuntimeError(f"{result['errors']} wrong answers, first: {result['first_error']}")
    return result


@contextlib.contextmanager
def serving_certificate() -> Iterator[tuple[Path, Path, Path]]:
    """(ca.crt, tls.crt, tls.key) in a temporary folder, IP SAN 127.0.0.1."""
    from modelward.certs import create_ca, issue_certificate

    with tempfile.TemporaryDirectory(prefix="modelward-bench-") as tmp:
        ca = create_ca(common_name="modelward-bench-ca")
        leaf = issue_certificate(ca, common_name="modelward-bench", ip_addresses=("127.0.0.1",))
        paths = Path(tmp, "ca.crt"), Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        for path, data in zip(paths, (ca.cert_pem, leaf.cert_pem, leaf.key_pem), strict=True):
            path.write_bytes(data)
        yield paths


def write_bodies(folder: Path) -> dict[str, Path]:
    """The small and large reviews (with placeholders) as files the client reads."""
    bodies = {}
    for size, make in workloads.PODS.items():
        path = folder / f"review-{size}.json"
        path.write_bytes(workloads.review_body(make()))
        bodies[size] = path
    return bodies


def run(
    *,
    count_c1: int,
    count_c16: int,
    warmup: int,
    concurrencies: Sequence[int] = (1, 16),
    max_seconds: float = 60.0,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with serving_certificate() as (ca, cert, key):
        folder = cert.parent
        bodies = write_bodies(folder)
        servers = {
            app: start_server(app, cert, key, folder / f"server-{app}.log")
            for app in ("noop", "modelward")
        }
        try:
            for size, body in bodies.items():
                for concurrency in concurrencies:
                    count = count_c1 if concurrency == 1 else count_c16
                    cases = [
                        ("noop", "/validate"),
                        ("modelward", "/validate"),
                        ("modelward", "/mutate"),
                    ]
                    for app, path in cases:
                        server = servers[app]
                        job = {
                            "host": "127.0.0.1",
                            "port": server.port,
                            "ca": str(ca),
                            "concurrency": concurrency,
                            "warmup": warmup,
                            "count": count,
                            "max_seconds": max_seconds,
                            "requests": [
                                {
                                    "path": path,
                                    "body": str(body),
                                    "expect_allowed": True,
                                    "expect_patch": None if app == "noop" else path == "/mutate",
                                }
                            ],
                        }
                        cpu_before = cpu_seconds(server.pid)
                        result = run_client(job)
                        server_cpu = cpu_seconds(server.pid) - cpu_before
                        sent = result["sent"] + warmup
                        rows.append(
                            {
                                "app": app,
                                "webhook": "any" if app == "noop" else path.strip("/"),
                                "pod": size,
                                "review_bytes": body.stat().st_size,
                                "concurrency": concurrency,
                                **result,
                                "server_cpu_us_per_review": round(server_cpu / sent * 1e6, 1),
                                "client_cpu_us_per_review": round(
                                    result["client_cpu_seconds"] / max(result["sent"], 1) * 1e6,
                                    1,
                                ),
                            }
                        )
                        time.sleep(0.2)
        finally:
            for server in servers.values():
                server.stop()
    return _with_ratios(rows)


def _with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each modelward row compared with the no-op row of the same pod and concurrency."""
    floor = {(r["pod"], r["concurrency"]): r for r in rows if r["app"] == "noop"}
    for row in rows:
        base = floor.get((row["pod"], row["concurrency"]))
        if row["app"] == "noop" or base is None:
            continue
        row["p50_vs_noop"] = round(row["p50_us"] / base["p50_us"], 2)
        row["p99_vs_noop"] = round(row["p99_us"] / base["p99_us"], 2)
        row["throughput_vs_noop"] = round(base["per_second"] / row["per_second"], 2)
    return rows
