"""``modelward run``: the operator and the admission server in one process, one event loop.

Start-up order matters for safety: the health server comes first (liveness), then the serving
certificate (with ``--manage-certificates``), the cluster state is listed in full before
``/readyz`` turns green (an admission server with empty caches would admit what it should
deny), then the HTTPS admission server and kopf's watches start.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
from collections.abc import Mapping
from typing import Any

import kopf
from aiohttp import web

from modelward.admission.connections import ConnectionGuard, GuardedTLSSite
from modelward.admission.evaluation import DeferredRecorder, Evaluator
from modelward.admission.images import ReviewImageLookups
from modelward.admission.intake import ReviewLimits
from modelward.admission.server import ReloadingTLS, make_admission_app, make_health_app
from modelward.admission.service import AdmissionService
from modelward.api.webhooks import ALWAYS_EXCLUDED_NAMESPACES
from modelward.controller.audit import Auditor
from modelward.controller.certificates import CertificateConfig, CertificateManager
from modelward.controller.events import EventRecorder
from modelward.controller.exceptions import ExceptionMonitor
from modelward.controller.handlers import build_registry, operator_settings
from modelward.controller.keys import KeyReader
from modelward.controller.kube import KubeApi
from modelward.controller.leadership import KubeLeaseApi, Leadership
from modelward.controller.observe import observe_object
from modelward.controller.pods import PodWatch
from modelward.controller.resync import StateResync
from modelward.controller.scope import Scope, WebhookScope
from modelward.controller.status import PolicyStatusWriter
from modelward.controller.verifications import VerificationRecorder
from modelward.engine import StaticKeySource
from modelward.observability.metrics import Metrics
from modelward.settings import Settings
from modelward.state import ClusterState

log = logging.getLogger("modelward")


async def prime_state(state: ClusterState, resync: StateResync) -> None:
    """List everything once, retrying until the API server answers."""
    delay = 1.0
    while True:
        try:
            await resync.resync()
            break
        except Exception as exc:
            log.warning("cannot list the cluster state yet (%s); retrying in %.0fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
    log.info(
        "cluster state loaded: %d policies (%d active), %d namespaces",
        len(state.policies),
        len(state.active_policies),
        len(state.namespaces),
    )


async def serve(settings: Settings) -> None:
    metrics = Metrics.create()
    state = ClusterState()
    kube = KubeApi()
    recorder = EventRecorder(
        kube=kube if settings.events else None,
        metrics=metrics,
        component="modelward",
        instance=settings.pod_name,
        rate=settings.event_rate,
        burst=settings.event_burst,
    )
    status = PolicyStatusWriter(state=state, kube=kube, recorder=recorder, metrics=metrics)
    keys = KeyReader(kube=kube, namespace=settings.namespace)

    async def recompile(
        key: tuple[str, str | None, str], obj: Mapping[str, Any], material: StaticKeySource
    ) -> None:
        """A cluster policy's referenced key changed in modelward's namespace."""
        if observe_object(state, key[0], obj, keys=material) is not None:
            await status.sync(key, None)

    # Evaluations run in worker threads; their records are replayed on this loop.
    max_exception_lifetime = dt.timedelta(seconds=settings.exception_max_lifetime)
    service = AdmissionService(
        state=state,
        recorder=DeferredRecorder(recorder),
        max_exception_lifetime=max_exception_lifetime,
    )
    exception_monitor = ExceptionMonitor(
        state=state,
        kube=kube,
        events=recorder,
        metrics=metrics,
        max_lifetime=max_exception_lifetime,
    )
    resync = StateResync(
        state=state,
        lister=kube,
        sync_policy=status.sync,
        interval=settings.state_resync_interval,
        keys=keys,
    )
    verifications = VerificationRecorder(
        kube=kube,
        metrics=metrics,
        events=recorder,
        facts=state,
        policies=lambda: state.active_policies,
        is_leader=lambda: leadership.is_leader,
        handover=lambda: leadership.handover,
    )
    leadership = Leadership(
        api=KubeLeaseApi(kube=kube, namespace=settings.namespace, name=settings.leader_lease),
        identity=f"{settings.pod_name}-{os.getpid()}",
        on_elected=verifications.request_catch_up,
    )
    auditor = Auditor(
        kube=kube,
        state=state,
        metrics=metrics,
        status=status,
        events=recorder,
        excluded_namespaces=(*ALWAYS_EXCLUDED_NAMESPACES, settings.namespace),
        interval=settings.audit_interval,
        max_exception_lifetime=max_exception_lifetime,
    )

    scope = None
    if settings.scope_webhook_configuration:

        def count_skipped(now: Scope) -> None:
            for which in ("validate", "mutate"):
                metrics.scope_skipped.labels(webhook=which).set(len(now.for_webhook(which) or ()))

        scope = WebhookScope(
            state=state,
            kube=kube,
            configuration=settings.scope_webhook_configuration,
            on_pass=count_skipped,
            narrow=settings.scope_to_policies,
        )

    runners: list[web.AppRunner] = []
    health = web.AppRunner(
        make_health_app(state=state, metrics=metrics),
        access_log=None,
        keepalive_timeout=settings.idle_timeout,
    )
    await health.setup()
    runners.append(health)
    await web.TCPSite(health, settings.metrics_host, settings.metrics_port).start()
    log.info("health and metrics on http://%s:%d", settings.metrics_host, settings.metrics_port)

    certificates = None
    first_check = None
    if settings.manage_certificates:
        certificates = CertificateManager(
            kube=kube, config=CertificateConfig.from_settings(settings)
        )
        first_check = await certificates.ensure_at_start()
    tls = ReloadingTLS(
        settings.tls_cert_file,
        settings.tls_key_file,
        metrics,
        client_ca_file=settings.client_ca_file,
        minimum_version=settings.tls_min_version,
    )
    if certificates is not None:
        certificates.on_files_written = tls.reload  # new handshakes get it at once

    await prime_state(state, resync)
    # Settle leadership before kopf lists the pods, so that the leader records results from
    # the first listing on (the renewal loop keeps it; becoming the leader starts a catch-up).
    await leadership.acquire_once()

    admission = web.AppRunner(
        make_admission_app(
            service=service,
            metrics=metrics,
            deadline_seconds=settings.deadline_seconds,
            evaluator=Evaluator(
                workers=settings.review_workers,
                queue=settings.review_queue,
                on_change=metrics.reviews_in_flight.set,
            ),
            limits=ReviewLimits(
                max_object_bytes=settings.max_object_bytes,
                max_containers=settings.max_containers,
            ),
            lookups=ReviewImageLookups.from_settings(
                settings, state=state, secrets=kube, inventory=kube
            ),
        ),
        access_log=None,
        keepalive_timeout=settings.idle_timeout,
        # Bounds draining a body the handler did not read (after a 408 or 413).
        lingering_time=1.0,
    )
    await admission.setup()
    runners.append(admission)
    await GuardedTLSSite(
        admission,
        settings.webhook_host,
        settings.webhook_port,
        ssl_context=tls.context,
        guard=ConnectionGuard(
            max_connections=settings.max_connections,
            on_change=metrics.connections.set,
            on_refused=metrics.connections_refused.inc,
        ),
        handshake_timeout=settings.tls_handshake_timeout,
    ).start()
    # Ready only now that the listener accepts: a replica must never be declared ready (and
    # a test must never be told "up") while its webhook port still refuses connections.
    state.ready = True
    metrics.ready.set(1)
    log.info("admission webhooks on https://%s:%d", settings.webhook_host, settings.webhook_port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def claim_signals() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

    claim_signals()
    # kopf installs its own SIGTERM/SIGINT handlers when it starts; its graceful stop then
    # waits 5 s for every task it did not create (open admission connections). Take the
    # signals back once kopf is up, and stop in our own order instead.
    kopf_ready = asyncio.Event()

    async def reclaim_signals() -> None:
        await kopf_ready.wait()
        claim_signals()

    tasks = [
        asyncio.create_task(recorder.run(), name="events"),
        asyncio.create_task(status.run(), name="status"),
        asyncio.create_task(tls.watch(), name="tls-reload"),
        asyncio.create_task(resync.run(), name="resync"),
        asyncio.create_task(leadership.run(), name="leadership"),
        asyncio.create_task(keys.run(recompile), name="trusted-keys"),
        asyncio.create_task(verifications.run(), name="verifications"),
        asyncio.create_task(
            exception_monitor.run(is_leader=lambda: leadership.is_leader), name="exceptions"
        ),
        asyncio.create_task(
            PodWatch(source=kube, observe=verifications.observe_pod).run(), name="pod-watch"
        ),
        *(
            [asyncio.create_task(auditor.run(is_leader=lambda: leadership.is_leader), name="audit")]
            if settings.audit_interval
            else []
        ),
        asyncio.create_task(
            kopf.operator(
                registry=build_registry(
                    state=state,
                    status=status,
                    keys=keys,
                    resync=resync,
                    scope=scope,
                ),
                settings=operator_settings(),
                standalone=True,
                clusterwide=True,
                ready_flag=kopf_ready,
            ),
            name="kopf",
        ),
    ]
    if scope is not None:
        # Started once the state is loaded: before that it could only keep the chart's scope.
        tasks.append(asyncio.create_task(scope.run(), name="webhook-scope"))
    if certificates is not None:
        tasks.append(
            asyncio.create_task(
                certificates.run(interval=settings.certificate_check_interval, first=first_check),
                name="certificates",
            )
        )
        tasks.append(asyncio.create_task(certificates.follow_secret(), name="certificate-watch"))
    reclaimer = asyncio.create_task(reclaim_signals(), name="signals")
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not stopper and not task.cancelled() and task.exception() is not None:
            log.error("%s stopped: %r", task.get_name(), task.exception())
    log.info("shutting down")
    metrics.ready.set(0)
    state.ready = False
    # Admission first: close the listeners and their keep-alive connections (the API server
    # retries on another replica), then the watches and workers.
    for runner in reversed(runners):
        await runner.cleanup()
    for task in [*tasks, stopper, reclaimer]:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    # Last: hand the Lease over at once rather than leaving the others to wait it out.
    await leadership.release_on_shutdown()
