"""The HTTPS admission app and the plain-HTTP health/metrics app.

A lean aiohttp app rather than kopf's webhook server: kopf deep-copies every object and diffs
whole bodies (1.8-7.7 ms per big pod, see docs/architecture.md), answers unknown paths with
``allowed: true``, and manages webhook configurations in ways that switch admission off during
rolling updates. Here unknown paths get 404, malformed reviews get 400 with the reason, and an
internal error denies that one request with a message instead of crashing or hanging.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelward.admission.review import ReviewRequest, parse_review, review_response
from modelward.admission.service import AdmissionService, Outcome
from modelward.api.webhooks import MUTATE_PATH, VALIDATE_PATH
from modelward.certs import KeyPair
from modelward.errors import ReviewError
from modelward.observability.metrics import Metrics
from modelward.state import ClusterState

log = logging.getLogger("modelward.admission")

MAX_BODY_BYTES = 16 * 1024 * 1024  # an object is at most ~3 MiB in etcd; a review holds two


def _error(status: int, message: str, fix: str | None = None) -> web.Response:
    body = {"error": message, **({"fix": fix} if fix else {})}
    return web.json_response(body, status=status)


class _LabelledChildren:
    """A metric's labelled children, each looked up once: ``labels()`` checks its arguments and
    takes a lock on every call, and a review counts several (one per finding)."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.metric.labels(*values)
        return child


def make_admission_app(
    *, service: AdmissionService, metrics: Metrics, deadline_seconds: float
) -> web.Application:
    """``/validate`` and ``/mutate``; everything else is a 404, never an ``allowed: true``."""
    requests = _LabelledChildren(metrics.admission_requests)
    violations = _LabelledChildren(metrics.violations)
    duration = _LabelledChildren(metrics.admission_duration)

    def handler(
        webhook: str, decide: Callable[[ReviewRequest], Outcome]
    ) -> Callable[[web.Request], object]:
        async def handle(http: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            try:
                # asyncio.timeout, not wait_for: no extra task per request.
                async with asyncio.timeout(deadline_seconds):
                    body = await http.read()
            except TimeoutError:
                return _error(408, "the request body did not arrive within the deadline")
            except web.HTTPRequestEntityTooLarge:
                return _error(413, f"the AdmissionReview is larger than {MAX_BODY_BYTES} bytes")
            try:
                request = parse_review(body)
            except ReviewError as exc:
                requests(webhook, "malformed", "", "").inc()
                return _error(400, f"malformed AdmissionReview: {exc.message}", exc.fix)
            try:
                outcome = decide(request)
                review = outcome.review
                label = outcome.label
                if outcome.decision is not None:
                    for f in outcome.decision.findings:
                        violations(
                            f.violation.rule_id, f.policy.label, request.namespace, f.mode.value
                        ).inc()
            except Exception as exc:
                log.exception(
                    "error evaluating %s %s/%s", request.kind, request.namespace, request.name
                )
                review = review_response(
                    request.uid,
                    allowed=False,
                    code=500,
                    message=f"modelward could not evaluate {request.kind} "
                    f"{request.namespace}/{request.name}: {type(exc).__name__}: {exc}. "
                    "See the modelward logs; this request was refused to stay safe.",
                )
                label = "error"
            requests(webhook, label, request.kind, request.operation).inc()
            duration(webhook).observe(time.perf_counter() - started)
            return web.Response(body=json.dumps(review).encode(), content_type="application/json")

        return handle

    async def not_found(http: web.Request) -> web.StreamResponse:
        return _error(404, f"no webhook at {http.path}", f"use {VALIDATE_PATH} or {MUTATE_PATH}")

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post(VALIDATE_PATH, handler("validate", service.validate))  # type: ignore[arg-type]
    app.router.add_post(MUTATE_PATH, handler("mutate", service.mutate))  # type: ignore[arg-type]
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app


def make_health_app(*, state: ClusterState, metrics: Metrics) -> web.Application:
    """``/healthz`` (the process runs), ``/readyz`` (policies loaded), ``/metrics``."""

    async def healthz(_: web.Request) -> web.StreamResponse:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.StreamResponse:
        if state.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="policies not loaded yet\n")

    async def metrics_handler(_: web.Request) -> web.StreamResponse:
        return web.Response(
            body=generate_latest(metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    return app


class ReloadingTLS:
    """A server SSL context that picks up renewed certificate files (checked every interval)."""

    def __init__(self, cert_file: Path, key_file: Path, metrics: Metrics) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.metrics = metrics
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._stamp = (0.0, 0.0)
        self.reload()

    def _mtimes(self) -> tuple[float, float]:
        return (os.stat(self.cert_file).st_mtime, os.stat(self.key_file).st_mtime)

    def reload(self) -> bool:
        stamp = self._mtimes()
        if stamp == self._stamp:
            return False
        self.context.load_cert_chain(self.cert_file, self.key_file)
        pair = KeyPair(self.cert_file.read_bytes(), b"")
        self.metrics.certificate_expiry.set(pair.not_after.timestamp())
        self._stamp = stamp
        log.info("serving certificate loaded from %s (expires %s)", self.cert_file, pair.not_after)
        return True

    async def watch(self, interval: float = 30.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.reload()
            except (OSError, ssl.SSLError, ValueError) as exc:
                log.error("cannot reload the serving certificate: %s (keeping the old one)", exc)
