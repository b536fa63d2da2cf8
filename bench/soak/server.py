"""The soak benchmark's server: the webhook port exactly as ``modelward run`` serves it.

Same ``make_admission_app`` with its ``Evaluator`` and ``ReviewLimits``, same
``GuardedTLSSite`` (connection cap, TLS handshake deadline), same aiohttp keep-alive and
lingering settings, ``AdmissionService`` with an ``EventRecorder`` behind the
``DeferredRecorder`` (no API server: its queue is drained and dropped), over the bench
``ClusterState``. Only kopf and the API server are missing.

    python -m bench.soak.server --cert tls.crt --key tls.key

Prints one JSON line ``{"port": P, "health_port": H, "pid": N}`` once it listens, then serves
until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from aiohttp import web


async def serve(cert: Path, key: Path) -> None:
    from bench.admission.workloads import cluster_state

    from modelward.admission.connections import ConnectionGuard, GuardedTLSSite
    from modelward.admission.evaluation import DeferredRecorder, Evaluator
    from modelward.admission.intake import ReviewLimits
    from modelward.admission.server import ReloadingTLS, make_admission_app, make_health_app
    from modelward.admission.service import AdmissionService
    from modelward.controller.events import EventRecorder
    from modelward.observability.metrics import Metrics
    from modelward.settings import Settings

    settings = Settings()  # the defaults `modelward run` starts with
    metrics = Metrics.create()
    state = cluster_state()
    tls = ReloadingTLS(cert, key, metrics)
    recorder = EventRecorder(
        kube=None, metrics=metrics, component="modelward", instance="soak", rate=10.0, burst=50
    )
    recorder_task = asyncio.create_task(recorder.run())
    app = make_admission_app(
        service=AdmissionService(state=state, recorder=DeferredRecorder(recorder)),
        metrics=metrics,
        deadline_seconds=settings.deadline_seconds,
        evaluator=Evaluator(
            workers=settings.review_workers,
            queue=settings.review_queue,
            on_change=metrics.reviews_in_flight.set,
        ),
        limits=ReviewLimits(
            max_object_bytes=settings.max_object_bytes, max_containers=settings.max_containers
        ),
    )
    runner = web.AppRunner(
        app, access_log=None, keepalive_timeout=settings.idle_timeout, lingering_time=1.0
    )
    health = web.AppRunner(make_health_app(state=state, metrics=metrics), access_log=None)
    await runner.setup()
    await health.setup()
    site = GuardedTLSSite(
        runner,
        "127.0.0.1",
        0,
        ssl_context=tls.context,
        guard=ConnectionGuard(
            max_connections=settings.max_connections,
            on_change=metrics.connections.set,
            on_refused=metrics.connections_refused.inc,
        ),
        handshake_timeout=settings.tls_handshake_timeout,
    )
    hsite = web.TCPSite(health, "127.0.0.1", 0)
    await site.start()
    await hsite.start()
    hport = hsite._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(json.dumps({"port": site.port, "health_port": hport, "pid": os.getpid()}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    recorder_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await recorder_task
    await runner.cleanup()
    await health.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.cert, args.key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
