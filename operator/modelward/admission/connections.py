"""A listening site that bounds what connections can cost: how many, and for how long idle.

aiohttp's server has no cap on concurrent connections, and with TLS asyncio allocates a
256 KiB read buffer per connection before the handshake even starts: 1,000 idle TLS connections
took a replica from 75 to 356 MB. aiohttp has the other knobs (``keepalive_timeout`` closes a
connection that has not delivered a request within that time of opening or of its last
response, half-sent headers included; ``lingering_time`` bounds draining an unread body), and
asyncio has ``ssl_handshake_timeout``; what is missing is the count. It has to be taken when
the TCP connection is accepted, before TLS (the application protocol only sees a connection
once the handshake is done, and never sees one whose handshake fails), so this site listens in
plain TCP and starts TLS itself on each accepted connection: refused connections are closed
at once and never get a TLS buffer.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from asyncio.sslproto import SSLProtocol
from collections.abc import Callable

from aiohttp import web

log = logging.getLogger("modelward.admission")


class ConnectionGuard:
    """Counts open connections (TLS handshakes included) against a maximum."""

    def __init__(
        self,
        *,
        max_connections: int,
        on_change: Callable[[int], None] | None = None,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.open = 0
        self.refused = 0
        self._on_change = on_change
        self._on_refused = on_refused

    def admit(self) -> bool:
        if self.open >= self.max_connections:
            self.refused += 1
            if self._on_refused is not None:
                self._on_refused()
            return False
        self.open += 1
        if self._on_change is not None:
            self._on_change(self.open)
        return True

    def release(self) -> None:
        self.open -= 1
        if self._on_change is not None:
            self._on_change(self.open)


class _CountedSSLProtocol(SSLProtocol):
    """asyncio's TLS protocol, releasing its slot when the connection ends however it ends
    (handshake timeout or failure included, which the application protocol never hears of).

    Its read buffer is 64 KiB instead of asyncio's 256 KiB: a TLS record is at most 16 KiB,
    and the buffer is allocated (and touched) per connection, idle ones included."""

    max_size = 64 * 1024

    def __init__(self, *args: object, guard: ConnectionGuard, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._guard: ConnectionGuard | None = guard

    def connection_lost(self, exc: BaseException | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            guard, self._guard = self._guard, None
            if guard is not None:
                guard.release()


class _Gate(asyncio.Protocol):
    """The protocol every accepted TCP connection starts with: refuse it, or hand it over."""

    def __init__(
        self,
        *,
        guard: ConnectionGuard,
        app_factory: Callable[[], asyncio.BaseProtocol],
        ssl_context: ssl.SSLContext,
        handshake_timeout: float,
    ) -> None:
        self._guard = guard
        self._app_factory = app_factory
        self._ssl_context = ssl_context
        self._handshake_timeout = handshake_timeout

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if not self._guard.admit():
            transport.abort()
            return
        # Synchronously, before the transport starts reading: no byte can reach the gate.
        tls = _CountedSSLProtocol(
            asyncio.get_running_loop(),
            self._app_factory(),
            self._ssl_context,
            None,
            server_side=True,
            ssl_handshake_timeout=self._handshake_timeout,
            guard=self._guard,
        )
        transport.set_protocol(tls)
        tls.connection_made(transport)


class GuardedTLSSite(web.BaseSite):
    """Like ``web.TCPSite`` with TLS, plus a connection cap and a TLS handshake deadline."""

    __slots__ = ("_guard", "_handshake_timeout", "_host", "_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext,
        guard: ConnectionGuard,
        handshake_timeout: float,
        backlog: int = 128,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        self._guard = guard
        self._handshake_timeout = handshake_timeout

    @property
    def name(self) -> str:
        return f"https://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        if self._server is not None and self._server.sockets:  # type: ignore[attr-defined]
            return int(self._server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        return self._port

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None and self._ssl_context is not None
        context = self._ssl_context

        def gate() -> asyncio.Protocol:
            return _Gate(
                guard=self._guard,
                app_factory=server,
                ssl_context=context,
                handshake_timeout=self._handshake_timeout,
            )

        self._server = await asyncio.get_running_loop().create_server(
            gate, self._host, self._port, backlog=self._backlog, reuse_address=True
        )
