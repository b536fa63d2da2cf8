"""A benchmark HTTPS admission server, run as its own process.

``--app modelward`` serves exactly what ``modelward run`` serves on its webhook port: the same
``make_admission_app``, ``AdmissionService`` with an ``EventRecorder`` behind the
``DeferredRecorder`` (no API server: its queue is drained and dropped), ``Metrics``,
``ReloadingTLS`` context and ``access_log=None``, over a ``ClusterState`` filled as the
watches would fill it from the bench objects. (The connection guard is not used here: this
bench compares the app with a no-op app on the same plain TCPSite; ``bench.soak`` runs it.)

``--app noop`` is the floor on the same stack: an aiohttp HTTPS app with the same TLS context
and runner settings that reads the body, parses it (it must, to answer with the request's uid)
and answers ``allowed: true``.

    python -m bench.admission.server --app modelward --cert tls.crt --key tls.key

It prints one JSON line ``{"port": P, "pid": N}`` once it listens, then serves until SIGTERM.
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


def noop_app(warning: str | None = None) -> web.Application:
    """``warning``, if given, is added to every answer: the API server passes it on to its
    client, which can tell that this webhook is the one being called."""

    async def allow(http: web.Request) -> web.StreamResponse:
        review = json.loads(await http.read())
        response: dict[str, object] = {"uid": review["request"]["uid"], "allowed": True}
        if warning:
            response["warnings"] = [warning]
        answer = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": response,
        }
        return web.Response(body=json.dumps(answer).encode(), content_type="application/json")

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/{tail:.*}", allow)
    return app


async def serve(
    app_name: str, cert: Path, key: Path, port: int, warning: str | None = None
) -> None:
    from bench.admission.workloads import cluster_state

    from modelward.admission.evaluation import DeferredRecorder
    from modelward.admission.server import ReloadingTLS, make_admission_app
    from modelward.admission.service import AdmissionService
    from modelward.controller.events import EventRecorder
    from modelward.observability.metrics import Metrics

    metrics = Metrics.create()
    tls = ReloadingTLS(cert, key, metrics)
    tasks: list[asyncio.Task[None]] = []
    if app_name == "modelward":
        recorder = EventRecorder(
            kube=None,
            metrics=metrics,
            component="modelward",
            instance="bench",
            rate=10.0,
            burst=50,
        )
        tasks.append(asyncio.create_task(recorder.run()))
        service = AdmissionService(state=cluster_state(), recorder=DeferredRecorder(recorder))
        app = make_admission_app(service=service, metrics=metrics, deadline_seconds=2.5)
    else:
        app = noop_app(warning)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls.context)
    await site.start()
    server = site._server
    assert server is not None
    bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    print(json.dumps({"port": bound, "pid": os.getpid()}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", choices=("modelward", "noop"), required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--warning", help="no-op app: a warning to add to every answer")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.app, args.cert, args.key, args.port, args.warning))
    return 0


if __name__ == "__main__":
    sys.exit(main())
