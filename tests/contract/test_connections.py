"""What connections to the webhook port can cost: idle, half-sent and surplus connections are
closed, memory stays flat, and legitimate reviews are served afterwards.

Deadlines are short here (fractions of a second) and each test waits for the close with a
generous bound: what is asserted is that the connection is closed, not how fast.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import tracemalloc
from collections.abc import Callable

from tests.contract.conftest import Server, ServerOptions, start_server
from tests.contract.test_admission_contract import review
from tests.unit.engine.builders import compliant_pod

WAIT = 15.0  # generous bound for "eventually"


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.01)


async def _tls(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    context = ssl.create_default_context(cadata=server.ca_pem.decode())
    return await asyncio.open_connection("127.0.0.1", server.port, ssl=context)


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection."""
    received = b""
    async with asyncio.timeout(WAIT):
        try:
            while chunk := await reader.read(65536):
                received += chunk
        except (ConnectionResetError, ssl.SSLError):
            pass
    return received


async def _legitimate_review_succeeds(server: Server) -> None:
    status, answer = await server.post("/validate", review(compliant_pod()))
    assert status == 200 and answer["response"]["allowed"] is True


async def test_idle_tls_connections_are_closed_after_the_idle_timeout() -> None:
    async with start_server(ServerOptions(idle_timeout=0.3)) as server:
        connections = [await _tls(server) for _ in range(10)]
        await _until(lambda: server.guard.open == 10)
        for reader, writer in connections:
            assert await _closed_by_server(reader) == b""
            writer.close()
        await _until(lambda: server.guard.open == 0)
        await _legitimate_review_succeeds(server)


async def test_connections_that_never_start_tls_are_closed_after_the_handshake_timeout() -> None:
    async with start_server(ServerOptions(handshake_timeout=0.3)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await _until(lambda: server.guard.open == 1)
        assert await _closed_by_server(reader) == b""
        writer.close()
        await _until(lambda: server.guard.open == 0)


async def test_a_half_sent_request_header_is_closed() -> None:
    async with start_server(ServerOptions(idle_timeout=0.3)) as server:
        reader, writer = await _tls(server)
        writer.write(b"POST /validate HTTP/1.1\r\nHost: modelward\r\nContent-Le")
        await writer.drain()
        assert await _closed_by_server(reader) == b""
        writer.close()


async def test_a_half_sent_body_gets_408_and_is_closed() -> None:
    async with start_server(ServerOptions(deadline_seconds=0.3)) as server:
        reader, writer = await _tls(server)
        writer.write(
            b"POST /validate HTTP/1.1\r\nHost: modelward\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"apiVersion": '
        )
        await writer.drain()
        received = await _closed_by_server(reader)
        assert received.startswith(b"HTTP/1.1 408")
        assert b"did not arrive within" in received
        writer.close()


async def test_connections_beyond_the_maximum_are_closed_and_service_resumes() -> None:
    async with start_server(ServerOptions(max_connections=5, handshake_timeout=60)) as server:
        held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(5)]
        await _until(lambda: server.guard.open == 5)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await _closed_by_server(reader) == b""
        writer.close()
        assert server.guard.refused >= 1
        async with server.session.get(server.health_url + "/metrics") as r:
            text = await r.text()
        assert "modelward_webhook_connections 5.0" in text
        assert "modelward_webhook_connections_refused_total 1.0" in text
        for _, w in held:
            w.close()
        await _until(lambda: server.guard.open == 0)
        await _legitimate_review_succeeds(server)


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_memory_does_not_grow_with_connections_beyond_the_maximum() -> None:
    """Each accepted TLS connection costs the server a 64 KiB read buffer; refused ones cost
    nothing. Measured with tracemalloc (exact for Python allocations, which these buffers
    are) and RSS (the process as the kernel sees it; only a coarse bound, since freed memory
    from earlier tests may be reused)."""
    cap = 40
    async with start_server(ServerOptions(max_connections=cap, handshake_timeout=60)) as server:
        sockets: list[socket.socket] = []

        def connect(n: int) -> None:
            for _ in range(n):
                sockets.append(socket.create_connection(("127.0.0.1", server.port)))

        tracemalloc.start()
        try:
            before, rss_before = tracemalloc.get_traced_memory()[0], _rss()
            connect(cap)
            await _until(lambda: server.guard.open == cap)
            at_cap, rss_at_cap = tracemalloc.get_traced_memory()[0], _rss()
            connect(3 * cap)
            await _until(lambda: server.guard.refused == 3 * cap)
            beyond, rss_beyond = tracemalloc.get_traced_memory()[0], _rss()
        finally:
            tracemalloc.stop()
            for s in sockets:
                s.close()
        first = at_cap - before
        assert first > cap * 48 * 1024, "the accepted connections should cost their buffers"
        assert beyond - at_cap < first / 4, (before, at_cap, beyond)
        # Accepting the 120 surplus connections would cost ~8 MB of buffers alone.
        assert rss_beyond - rss_at_cap < 4 * 1024 * 1024, (rss_before, rss_at_cap, rss_beyond)
        await _until(lambda: server.guard.open == 0)
        await _legitimate_review_succeeds(server)
