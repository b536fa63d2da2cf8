"""``modelward.chart_hooks``' TLS check, against a real local TLS server: it passes only for the
CA that signed the served certificate and the name the API server checks, and it needs no
temporary file (the hook pods' root filesystem is read-only)."""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelward.certs import KeyPair, create_ca, issue_certificate
from modelward.chart_hooks import CleanupResult, HookFailure, check_reachable

NAME = "mw-modelward.modelward-system.svc"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, KeyPair]]:
    """A TLS server on 127.0.0.1 serving ``NAME``; answers one HTTP 405 per connection."""
    ca = create_ca()
    leaf = issue_certificate(ca, common_name=NAME, dns_names=(NAME,))
    (tmp_path / "tls.crt").write_bytes(leaf.cert_pem)
    (tmp_path / "tls.key").write_bytes(leaf.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)  # so the loop sees ``stop`` (close() does not wake accept())
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(10)
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(4096)
                    tls.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            except (OSError, ssl.SSLError):
                pass  # the client refused our certificate: what the failing case expects

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], ca
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)


def test_the_published_ca_and_the_service_name_pass(
    server: tuple[int, KeyPair], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, ca = server
    # no usable temporary directory, as in the hook pod
    monkeypatch.setattr(tempfile, "tempdir", "/nonexistent-modelward-test")
    status = check_reachable(address="127.0.0.1", port=port, server_name=NAME, ca_pem=ca.cert_pem)
    assert status == 405


def test_another_ca_fails_with_the_address(server: tuple[int, KeyPair]) -> None:
    port, _ = server
    with pytest.raises(HookFailure, match=f"127.0.0.1:{port} does not serve {NAME}"):
        check_reachable(
            address="127.0.0.1", port=port, server_name=NAME, ca_pem=create_ca().cert_pem
        )


def test_a_name_the_certificate_lacks_fails(server: tuple[int, KeyPair]) -> None:
    port, ca = server
    with pytest.raises(HookFailure):
        check_reachable(address="127.0.0.1", port=port, server_name="other.svc", ca_pem=ca.cert_pem)


def test_cleanup_summary_says_what_was_kept() -> None:
    kept = CleanupResult(secret=None, lease=True, policy_reports=2, deployed_models=0)
    assert kept.summary() == (
        "deleted: certificate Secret not modelward's (kept), leader Lease yes, "
        "2 PolicyReport(s), 0 DeployedModel(s)"
    )
