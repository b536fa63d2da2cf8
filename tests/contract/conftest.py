"""A real HTTPS admission server on loopback, serving the real app, for contract tests."""

from __future__ import annotations

import contextlib
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from modelward.admission.connections import ConnectionGuard, GuardedTLSSite
from modelward.admission.evaluation import Evaluator
from modelward.admission.intake import ReviewLimits
from modelward.admission.server import (
    AdmissionJudge,
    ReloadingTLS,
    make_admission_app,
    make_health_app,
)
from modelward.admission.service import AdmissionService
from modelward.certs import create_ca, issue_certificate
from modelward.engine import NamespaceFacts
from modelward.observability.metrics import Metrics
from modelward.state import ClusterState
from tests.unit.engine.builders import policy


@dataclass
class Server:
    url: str
    health_url: str
    session: aiohttp.ClientSession
    state: ClusterState
    metrics: Metrics
    guard: ConnectionGuard
    port: int
    ca_pem: bytes

    async def post(
        self, path: str, body: bytes | dict[str, object]
    ) -> tuple[int, dict[str, object]]:
        data = body if isinstance(body, bytes) else None
        kwargs = {"data": data} if data is not None else {"json": body}
        async with self.session.post(self.url + path, **kwargs) as response:
            return response.status, await response.json(content_type=None)


@dataclass(frozen=True)
class ServerOptions:
    """What a contract test may change about the server it starts."""

    service: AdmissionJudge | None = None
    evaluator: Evaluator | None = None
    limits: ReviewLimits | None = None
    deadline_seconds: float = 2.0
    max_connections: int = 256
    idle_timeout: float = 5.0
    handshake_timeout: float = 5.0
    client_ca: bytes | None = None
    client_cert: tuple[bytes, bytes] | None = None  # what the test's session presents


def _state() -> ClusterState:
    state = ClusterState()
    state.put_namespace(NamespaceFacts("serving-a"))
    state.put_network_policy("serving-a", "deny", default_deny=True)
    state.ready = True
    for p in (
        policy({"images": {}}, mode="Enforce", name="images"),
        policy({"isolation": {}}, mode="Patch", name="isolation"),
        policy({"secrets": {}}, mode="Audit", name="secrets"),
        policy({"transport": {}}, mode="Enforce", name="transport"),
    ):
        state.put_policy(
            (p.ref.kind, None, p.ref.name),
            policy=p,
            error=None,
            generation=1,
            resource_version=None,
        )
    return state


@contextlib.asynccontextmanager
async def start_server(options: ServerOptions = ServerOptions()) -> AsyncIterator[Server]:
    """The admission app on a guarded TLS site and the health app, as ``modelward run``
    serves them (admission/connections.py, aiohttp's keep-alive deadline)."""
    ca = create_ca()
    leaf = issue_certificate(ca, common_name="modelward", ip_addresses=("127.0.0.1",))
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert.write_bytes(leaf.cert_pem)
        key.write_bytes(leaf.key_pem)
        client_ca = None
        if options.client_ca is not None:
            client_ca = Path(tmp, "client-ca.crt")
            client_ca.write_bytes(options.client_ca)
        metrics = Metrics.create()
        service = options.service or AdmissionService(state=_state())
        tls = ReloadingTLS(cert, key, metrics, client_ca_file=client_ca)
        runner = web.AppRunner(
            make_admission_app(
                service=service,
                metrics=metrics,
                deadline_seconds=options.deadline_seconds,
                evaluator=options.evaluator,
                limits=options.limits,
            ),
            keepalive_timeout=options.idle_timeout,
            lingering_time=1.0,
        )
        health = web.AppRunner(make_health_app(state=service.state, metrics=metrics))
        await runner.setup()
        await health.setup()
        guard = ConnectionGuard(
            max_connections=options.max_connections,
            on_change=metrics.connections.set,
            on_refused=metrics.connections_refused.inc,
        )
        site = GuardedTLSSite(
            runner,
            "127.0.0.1",
            0,
            ssl_context=tls.context,
            guard=guard,
            handshake_timeout=options.handshake_timeout,
        )
        hsite = web.TCPSite(health, "127.0.0.1", 0)
        await site.start()
        await hsite.start()
        hport = hsite._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        client_ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
        if options.client_cert is not None:
            pem, key_pem = options.client_cert
            Path(tmp, "client.crt").write_bytes(pem)
            Path(tmp, "client.key").write_bytes(key_pem)
            client_ctx.load_cert_chain(Path(tmp, "client.crt"), Path(tmp, "client.key"))
        try:
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=client_ctx)
            ) as session:
                yield Server(
                    f"https://127.0.0.1:{site.port}",
                    f"http://127.0.0.1:{hport}",
                    session,
                    service.state,
                    metrics,
                    guard=guard,
                    port=site.port,
                    ca_pem=ca.cert_pem,
                )
        finally:
            await runner.cleanup()
            await health.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with start_server() as started:
        yield started
