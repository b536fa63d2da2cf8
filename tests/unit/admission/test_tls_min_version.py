"""--tls-min-version: the webhook port refuses handshakes below the configured version.

The handshake runs in memory (two ``ssl.MemoryBIO`` pairs), so the test needs no socket and
no clock: a client that offers at most TLS 1.2 completes it with the default minimum and is
refused with 1.3.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from modelward.admission.server import ReloadingTLS
from modelward.certs import create_ca, issue_certificate
from modelward.errors import ConfigurationError
from modelward.observability.metrics import Metrics
from modelward.settings import Settings


def _server(tmp_path: Path, minimum_version: str) -> ReloadingTLS:
    ca = create_ca()
    leaf = issue_certificate(ca, common_name="modelward", ip_addresses=("127.0.0.1",))
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(leaf.cert_pem)
    key.write_bytes(leaf.key_pem)
    return ReloadingTLS(cert, key, Metrics.create(), minimum_version=minimum_version)


def _handshake(server: ssl.SSLContext, client_max: ssl.TLSVersion) -> str:
    """The negotiated version; raises ssl.SSLError when either side refuses."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    client.maximum_version = client_max
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(c_in, c_out, server_side=False)
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, side, out, peer_in in (
            ("client", client_side, c_out, s_in),
            ("server", server_side, s_out, c_in),
        ):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if all(done.values()):
            version = client_side.version()
            assert version is not None
            return version
    raise AssertionError("handshake did not finish")


def test_default_minimum_accepts_tls12(tmp_path: Path) -> None:
    tls = _server(tmp_path, "1.2")
    assert _handshake(tls.context, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"


def test_minimum_13_refuses_a_tls12_client_and_accepts_13(tmp_path: Path) -> None:
    tls = _server(tmp_path, "1.3")
    with pytest.raises(ssl.SSLError):
        _handshake(tls.context, ssl.TLSVersion.TLSv1_2)
    assert _handshake(tls.context, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


def test_unknown_minimum_is_refused_with_the_allowed_values(tmp_path: Path) -> None:
    _server(tmp_path, "1.2")  # writes tls.crt and tls.key, which validate() requires
    settings = Settings(
        tls_min_version="1.1",
        tls_cert_file=tmp_path / "tls.crt",
        tls_key_file=tmp_path / "tls.key",
    )
    with pytest.raises(ConfigurationError, match=r"1\.2, 1\.3"):
        settings.validate()
