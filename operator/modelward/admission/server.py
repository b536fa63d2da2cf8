"""The HTTPS admission app and the plain-HTTP health/metrics app.

A lean aiohttp app rather than kopf's webhook server: kopf deep-copies every object and diffs
whole bodies (1.8-7.7 ms per big pod, see docs/architecture.md), answers unknown paths with
``allowed: true``, and manages webhook configurations in ways that switch admission off during
rolling updates. Here unknown paths get 404, malformed reviews get 400 with the reason, and an
internal error denies that one request with a message instead of crashing or hanging.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelward.admission.evaluation import Evaluator, HeldRecord, Judge
from modelward.admission.images import ReviewImageLookups
from modelward.admission.intake import ReviewLimits, check_review
from modelward.admission.review import ReviewRequest, parse_review, review_response
from modelward.admission.service import Outcome
from modelward.api.webhooks import MUTATE_PATH, VALIDATE_PATH
from modelward.certs import KeyPair
from modelward.errors import ReviewError
from modelward.observability.metrics import Metrics, kind_label, namespace_label
from modelward.state import ClusterState

log = logging.getLogger("modelward.admission")

#: The largest body read at all: two objects at the API server's 3 MiB request limit, and the
#: review around them. Larger bodies cannot come from an API server and are not parsed.
MAX_BODY_BYTES = 8 * 1024 * 1024


def _review_error(status: int, message: str, fix: str | None = None) -> web.Response:
    """An HTTP error whose body is still an AdmissionReview (``allowed: false``, the reason):
    what the API server logs, and what a client of the port reads, names the problem."""
    text = f"{message}. Fix: {fix}." if fix else message
    review = review_response("", allowed=False, code=status, message=text)
    return web.json_response(review, status=status)


class _LabelledChildren:
    """A metric's labelled children, each looked up once: ``labels()`` checks its arguments and
    takes a lock on every call, and a review counts several (one per finding). Label values
    come from closed sets (observability/metrics.py), so this cache is bounded too."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.metric.labels(*values)
        return child


class AdmissionJudge(Protocol):
    """What the app asks: ``AdmissionService``, or a stand-in in tests."""

    state: ClusterState

    def validate(self, request: ReviewRequest) -> Outcome: ...

    def mutate(self, request: ReviewRequest) -> Outcome: ...


def make_admission_app(
    *,
    service: AdmissionJudge,
    metrics: Metrics,
    deadline_seconds: float,
    evaluator: Evaluator | None = None,
    limits: ReviewLimits | None = None,
    lookups: ReviewImageLookups | None = None,
) -> web.Application:
    """``/validate`` and ``/mutate``; everything else is a 404, never an ``allowed: true``.

    ``deadline_seconds`` is each review's whole budget, from the first byte read to the answer.
    """
    evaluator = evaluator or Evaluator(workers=4, queue=16, on_change=metrics.reviews_in_flight.set)
    limits = limits or ReviewLimits()
    namespaces = service.state.namespace_names  # a live view: namespaces come and go
    requests = _LabelledChildren(metrics.admission_requests)
    violations = _LabelledChildren(metrics.violations)
    duration = _LabelledChildren(metrics.admission_duration)

    def handler(webhook: str, judge: Judge) -> Callable[[web.Request], object]:
        async def handle(http: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            deadline = time.monotonic() + deadline_seconds
            try:
                # asyncio.timeout, not wait_for: no extra task per request.
                async with asyncio.timeout(deadline_seconds):
                    body = await http.read()
            except TimeoutError:
                requests(webhook, "malformed", "", "").inc()
                return _review_error(
                    408,
                    f"the request body did not arrive within {deadline_seconds:g} s",
                    "send the whole AdmissionReview at once",
                )
            except web.HTTPRequestEntityTooLarge:
                requests(webhook, "malformed", "", "").inc()
                return _review_error(
                    413,
                    f"the AdmissionReview is larger than {MAX_BODY_BYTES} bytes",
                    "the API server never sends reviews this large; send a smaller object",
                )
            try:
                request = parse_review(body)
            except ReviewError as exc:
                requests(webhook, "malformed", "", "").inc()
                return _review_error(400, f"malformed AdmissionReview: {exc.message}", exc.fix)
            records: Sequence[HeldRecord] = ()
            refusal = check_review(request, body_bytes=len(body), limits=limits)
            if refusal is not None:
                review = review_response(
                    request.uid, allowed=False, code=refusal.code, message=refusal.message
                )
                label = refusal.label
            else:
                try:
                    judged: Judge = judge
                    images = await lookups.for_review(request) if lookups is not None else None
                    if images is not None:
                        judged = functools.partial(judge, images=images)  # type: ignore[call-arg]
                    evaluated = await evaluator.evaluate(
                        judged, request, deadline=deadline, budget=deadline_seconds
                    )
                    review, label = evaluated.outcome.review, evaluated.outcome.label
                    records = evaluated.records
                    if (
                        webhook == "validate"
                        and lookups is not None
                        and lookups.models is not None
                        and review["response"]["allowed"]
                    ):
                        lookups.models.admitted(request, images)
                    decision = evaluated.outcome.decision
                    if decision is not None:
                        namespace = namespace_label(request.namespace, namespaces)
                        for f in decision.findings:
                            violations(
                                f.violation.rule_id, f.policy.label, namespace, f.mode.value
                            ).inc()
                except RecursionError:
                    # The parser accepts up to 1024 levels; the engine's walks do not. No
                    # Kubernetes object nests this deep (the API server's types do not).
                    review = review_response(
                        request.uid,
                        allowed=False,
                        code=400,
                        message=f"modelward cannot judge {request.kind} {request.namespace}/"
                        f"{request.name}: the object nests too deeply to evaluate, so it is "
                        "refused. Fix: send an object that nests fewer than a few hundred levels.",
                    )
                    label = "unjudgeable"
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
            # Events and policy counts only about namespaces the cluster has: a review sent
            # straight to the port cannot make modelward write about invented ones.
            if records and request.namespace in namespaces:
                for record in records:
                    record.replay()
            requests(webhook, label, kind_label(request.kind), request.operation).inc()
            duration(webhook).observe(time.perf_counter() - started)
            return web.Response(body=orjson.dumps(review), content_type="application/json")

        return handle

    async def not_found(http: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"error": f"no webhook at {http.path}", "fix": f"use {VALIDATE_PATH} or {MUTATE_PATH}"},
            status=404,
        )

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post(VALIDATE_PATH, handler("validate", service.validate))  # type: ignore[arg-type]
    app.router.add_post(MUTATE_PATH, handler("mutate", service.mutate))  # type: ignore[arg-type]
    app.router.add_route("*", "/{tail:.*}", not_found)
    app.on_cleanup.append(lambda _: _shutdown(evaluator))
    return app


async def _shutdown(evaluator: Evaluator) -> None:
    evaluator.shutdown()


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


#: --tls-min-version's values and the versions they mean.
TLS_MINIMUM_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class ReloadingTLS:
    """A server SSL context that picks up renewed certificate files (checked every interval)."""

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        metrics: Metrics,
        *,
        client_ca_file: Path | None = None,
        minimum_version: str = "1.2",
    ) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.client_ca_file = client_ca_file
        self.metrics = metrics
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # "1.2" or "1.3" (Settings validates it): older versions are refused at the handshake.
        self.context.minimum_version = TLS_MINIMUM_VERSIONS[minimum_version]
        self._stamp = (0.0, 0.0)
        self._ca_stamp = 0.0
        if client_ca_file is not None:
            # Only the API server (holding a certificate from this CA, configured in its
            # AdmissionConfiguration) completes the handshake; anyone else is refused at TLS.
            self.context.verify_mode = ssl.CERT_REQUIRED
            self._load_client_ca(client_ca_file)
        self.reload()

    def _load_client_ca(self, path: Path) -> None:
        stamp = os.stat(path).st_mtime
        if stamp != self._ca_stamp:
            # Added to the trusted set: a renewed CA is trusted next to the old one (removing
            # a CA from the set takes a restart).
            self.context.load_verify_locations(cafile=str(path))
            self._ca_stamp = stamp
            log.info("client CA for the webhook port loaded from %s", path)

    def _mtimes(self) -> tuple[float, float]:
        return (os.stat(self.cert_file).st_mtime, os.stat(self.key_file).st_mtime)

    def reload(self) -> bool:
        if self.client_ca_file is not None:
            self._load_client_ca(self.client_ca_file)
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
