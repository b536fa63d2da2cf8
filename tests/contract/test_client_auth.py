"""With ``--client-ca-file``, only a caller holding a certificate from that CA (the API server,
configured in its AdmissionConfiguration) gets a review answered; anyone else is refused at
TLS and causes nothing: no answer, no Event, no count, no label."""

from __future__ import annotations

import aiohttp
import pytest

from modelward.certs import create_ca, issue_certificate
from tests.contract.conftest import ServerOptions, start_server
from tests.contract.test_admission_contract import review
from tests.unit.engine.builders import compliant_pod


def _bad_pod() -> dict[str, object]:
    pod = compliant_pod()
    pod["spec"]["containers"][0]["image"] = "nginx:latest"
    return pod


async def test_without_a_client_certificate_the_request_is_refused_at_tls() -> None:
    client_ca = create_ca(common_name="apiserver-webhook-client-ca")
    async with start_server(ServerOptions(client_ca=client_ca.cert_pem)) as server:
        with pytest.raises(aiohttp.ClientError):
            await server.post("/validate", review(_bad_pod()))
        async with server.session.get(server.health_url + "/metrics") as r:
            text = await r.text()
        assert "modelward_admission_requests_total{" not in text
        assert "modelward_violations_total{" not in text


async def test_a_certificate_from_another_ca_is_refused() -> None:
    client_ca = create_ca(common_name="apiserver-webhook-client-ca")
    other = create_ca(common_name="attacker-ca")
    forged = issue_certificate(other, common_name="kube-apiserver", client=True)
    options = ServerOptions(
        client_ca=client_ca.cert_pem, client_cert=(forged.cert_pem, forged.key_pem)
    )
    async with start_server(options) as server:
        with pytest.raises(aiohttp.ClientError):
            await server.post("/validate", review(_bad_pod()))


async def test_the_api_servers_client_certificate_is_served() -> None:
    client_ca = create_ca(common_name="apiserver-webhook-client-ca")
    apiserver = issue_certificate(client_ca, common_name="kube-apiserver", client=True)
    options = ServerOptions(
        client_ca=client_ca.cert_pem, client_cert=(apiserver.cert_pem, apiserver.key_pem)
    )
    async with start_server(options) as server:
        status, answer = await server.post("/validate", review(_bad_pod()))
        assert status == 200 and answer["response"]["allowed"] is False
        status, answer = await server.post("/validate", review(compliant_pod()))
        assert status == 200 and answer["response"]["allowed"] is True
