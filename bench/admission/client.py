"""A keep-alive HTTPS load client for AdmissionReviews, run as its own process.

Deliberately minimal (asyncio streams, HTTP/1.1 written and read by hand) so that the client
costs as little CPU as possible: on two cores it shares the machine with the server it
measures. ``concurrency`` connections are opened once and kept; each runs one request at a
time, so concurrency is the number of requests in flight.

Every answer is checked: HTTP 200, the uid sent echoed back, ``allowed`` and the presence of a
patch as expected. A wrong answer is counted (and the run reported as failed), not timed.

The job is read from stdin as JSON::

    {"host": "127.0.0.1", "port": 8443, "ca": "ca.crt", "concurrency": 16,
     "warmup": 200, "count": 5000, "max_seconds": 60,
     "requests": [{"path": "/validate", "body": "review.json",
                   "expect_allowed": true, "expect_patch": false}]}

Requests are sent round-robin from ``requests``; the ``UNIQUE`` placeholder in a body is
replaced by the request's number, so uids and pod names are all different. The result is
printed as one JSON object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.admission.stats import summarize_ns
from bench.admission.workloads import UNIQUE


@dataclass
class Job:
    host: str
    port: int
    ca: str
    concurrency: int
    warmup: int
    count: int
    max_seconds: float
    requests: list[dict[str, Any]]


@dataclass
class Tally:
    latencies_ns: list[int] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    def fail(self, message: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = message


class Prepared:
    """One request template: the HTTP head without Content-Length, the body with placeholders."""

    def __init__(self, job: Job, spec: dict[str, Any]) -> None:
        self.path = str(spec["path"])
        self.body = Path(spec["body"]).read_bytes()
        self.expect_allowed = bool(spec.get("expect_allowed", True))
        self.expect_patch = spec.get("expect_patch")
        self.head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {job.host}:{job.port}\r\n"
            "Content-Type: application/json\r\nAccept: application/json\r\n"
        ).encode()
        self.placeholder = UNIQUE.encode()

    def request(self, number: int) -> tuple[bytes, str]:
        tag = b"%08d" % number
        body = self.body.replace(self.placeholder, tag)
        head = self.head + b"Content-Length: %d\r\n\r\n" % len(body)
        uid = tag.decode()
        return head + body, uid

    def check(self, status: int, payload: bytes, uid_tag: str, tally: Tally) -> bool:
        if status != 200:
            tally.fail(f"{self.path}: HTTP {status}: {payload[:300]!r}")
            return False
        try:
            response = json.loads(payload)["response"]
        except (ValueError, KeyError, TypeError) as exc:
            tally.fail(f"{self.path}: not an AdmissionReview answer ({exc}): {payload[:300]!r}")
            return False
        if not str(response.get("uid", "")).endswith(uid_tag):
            tally.fail(f"{self.path}: uid {response.get('uid')!r} does not match {uid_tag}")
            return False
        if response.get("allowed") is not self.expect_allowed:
            tally.fail(f"{self.path}: allowed={response.get('allowed')}: {payload[:300]!r}")
            return False
        if self.expect_patch is not None and ("patch" in response) != self.expect_patch:
            tally.fail(f"{self.path}: patch expected={self.expect_patch}: {payload[:300]!r}")
            return False
        return True


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


async def _run_phase(
    job: Job,
    prepared: list[Prepared],
    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    *,
    first: int,
    total: int,
    deadline: float,
    tally: Tally | None,
) -> int:
    """Send requests ``first`` .. ``first + total - 1``; returns how many were sent."""
    next_number = first
    end = first + total
    clock = time.perf_counter_ns
    sent = 0

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal next_number, sent
        while next_number < end and time.monotonic() < deadline:
            number = next_number
            next_number += 1
            template = prepared[number % len(prepared)]
            data, tag = template.request(number)
            started = clock()
            writer.write(data)
            status, payload = await _read_response(reader)
            elapsed = clock() - started
            sent += 1
            if tally is None:
                continue
            if template.check(status, payload, tag, tally):
                tally.latencies_ns.append(elapsed)

    await asyncio.gather(*(worker(r, w) for r, w in connections))
    return sent


async def run(job: Job) -> dict[str, Any]:
    prepared = [Prepared(job, spec) for spec in job.requests]
    context = ssl.create_default_context(cafile=job.ca)
    connections = [
        await asyncio.open_connection(job.host, job.port, ssl=context)
        for _ in range(job.concurrency)
    ]
    deadline = time.monotonic() + job.max_seconds
    await _run_phase(
        job, prepared, connections, first=0, total=job.warmup, deadline=deadline, tally=None
    )
    tally = Tally()
    cpu_started = time.process_time()
    wall_started = time.perf_counter()
    sent = await _run_phase(
        job,
        prepared,
        connections,
        first=job.warmup,
        total=job.count,
        deadline=deadline,
        tally=tally,
    )
    wall = time.perf_counter() - wall_started
    cpu = time.process_time() - cpu_started
    for _, writer in connections:
        writer.close()
    for _, writer in connections:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
    summary = summarize_ns(tally.latencies_ns, wall_seconds=wall)
    summary["per_second"] = round(sent / wall, 1) if wall > 0 else 0.0
    return {
        **summary,
        "sent": sent,
        "errors": tally.errors,
        "first_error": tally.first_error,
        "wall_seconds": round(wall, 3),
        "client_cpu_seconds": round(cpu, 3),
        "truncated": sent < job.count,
    }


def main() -> int:
    job = Job(**json.loads(sys.stdin.read()))
    result = asyncio.run(run(job))
    print(json.dumps(result))
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
