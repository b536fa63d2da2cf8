"""The webhook port authenticates the API server: kube-apiserver presents the client
certificate its AdmissionConfiguration names (the harness configures one, as docs/helm.md
tells a cluster admin to), modelward runs with ``--client-ca-file``, and anyone else who
reaches the port is refused at TLS, before any review is read."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelward_dev.controlplane import LocalControlPlane, loopback_opener
from modelward_dev.operator_process import HARNESS_SCOPE_LABEL, OperatorProcess
from tests.contract.test_admission_contract import review
from tests.e2e.helpers import apply_policy, cluster_policy, pod
from tests.unit.engine.builders import compliant_pod

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def authenticated_operator(
    control_plane: LocalControlPlane, crds: list[Path]
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        control_plane=control_plane,
        namespace="modelward-clientauth-system",
        configuration_name="modelward-clientauth",
        probe_namespace="modelward-clientauth-probe",
        webhooks="chart",
        extra_args=(f"--client-ca-file={control_plane.webhook_client_ca_path}",),
    )
    with process:  # start() proves the API server's calls are answered
        yield process


def _review() -> bytes:
    body = compliant_pod()
    body["spec"]["containers"][0]["image"] = "nginx:latest"
    return json.dumps(review(body)).encode()


def test_the_api_server_is_answered_and_no_one_else(
    authenticated_operator: OperatorProcess,
    control_plane: LocalControlPlane,
) -> None:
    namespace = "clientauth-serving"
    control_plane.api_request(
        "POST",
        "/api/v1/namespaces",
        body={
            "metadata": {
                "name": namespace,
                "labels": {
                    HARNESS_SCOPE_LABEL: "modelward-clientauth",
                    "modelward.io/model-serving": "true",
                },
            }
        },
    )
    apply_policy(
        control_plane.kubectl,
        cluster_policy(
            namespace,
            namespace,
            {"images": {}, "isolation": {"requireDefaultDenyNetworkPolicy": False}},
        ),
    )
    # Through the API server (which holds the client certificate): judged.
    bad = pod("tagged", namespace)
    bad["spec"]["containers"][0]["image"] = "nginx:latest"
    response = control_plane.api_request(
        "POST", f"/api/v1/namespaces/{namespace}/pods?dryRun=All", body=bad
    )
    assert response.status == 403 and "[MW-IMG-003]" in response.message, response.text
    answered = authenticated_operator.reviews_answered()

    # Straight to the port, trusting its certificate but holding none of ours: refused at TLS.
    context = ssl.create_default_context(cadata=authenticated_operator.ca_pem.decode())
    request = urllib.request.Request(
        authenticated_operator.webhook_url + "/validate",
        data=_review(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        loopback_opener(context).open(request, timeout=10).read()
    assert authenticated_operator.reviews_answered() == answered
