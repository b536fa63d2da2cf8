"""A real HTTPS admission server on loopback, serving the real app, for contract tests."""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from modelward.admission.server import ReloadingTLS, make_admission_app, make_health_app
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

    async def post(
        self, path: str, body: bytes | dict[str, object]
    ) -> tuple[int, dict[str, object]]:
        data = body if isinstance(body, bytes) else None
        kwargs = {"data": data} if data is not None else {"json": body}
        async with self.session.post(self.url + path, **kwargs) as response:
            return response.status, await response.json(content_type=None)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    ca = create_ca()
    leaf = issue_certificate(ca, common_name="modelward", ip_addresses=("127.0.0.1",))
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert.write_bytes(leaf.cert_pem)
        key.write_bytes(leaf.key_pem)
        metrics = Metrics.create()
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
        tls = ReloadingTLS(cert, key, metrics)
        runner = web.AppRunner(
            make_admission_app(
                service=AdmissionService(state=state), metrics=metrics, deadline_seconds=2.0
            )
        )
        health = web.AppRunner(make_health_app(state=state, metrics=metrics))
        await runner.setup()
        await health.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.context)
        hsite = web.TCPSite(health, "127.0.0.1", 0)
        await site.start()
        await hsite.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        hport = hsite._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        client_ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as session:
            yield Server(
                f"https://127.0.0.1:{port}", f"http://127.0.0.1:{hport}", session, state, metrics
            )
        await runner.cleanup()
        await health.cleanup()
