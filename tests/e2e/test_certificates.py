"""Operator-managed serving certificates against the real kube-apiserver.

``modelward run --manage-certificates`` (the chart's default mode) must, with no manual step:
create a Secret holding a self-signed CA and a serving certificate, serve that certificate,
write the CA into its webhook configurations' caBundle (so the API server trusts it), reuse the
Secret on the next start, re-issue an almost-expired certificate from the same CA, and settle
races between replicas. The operator runs as a local process (``OperatorProcess``); its
webhooks are registered with failurePolicy Ignore so that nothing here can block another
test's pods, and "the API server trusts it" is shown by the process's own request counter.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from modelward.certs import KeyPair, create_ca, issue_certificate
from modelward.controller.certificates import CertificateConfig, CertificateManager
from modelward.controller.kube import KubeApi
from modelward_dev.controlplane import LocalControlPlane, ToolRunner, loopback_opener
from modelward_dev.operator_process import OperatorProcess
from tests.e2e.helpers import get_json, wait_for

pytestmark = pytest.mark.usefixtures("crds")

SERVICE = "modelward"
SECRET = "modelward-tls"
WEBHOOK_API = "/apis/admissionregistration.k8s.io/v1"


def secret_data(kubectl: ToolRunner, namespace: str, name: str = SECRET) -> dict[str, bytes]:
    secret = get_json(kubectl, "secret", name, "-n", namespace)
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def ca_bundles(control_plane: LocalControlPlane, name: str) -> set[str | None]:
    bundles: set[str | None] = set()
    for resource in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
        configuration = control_plane.api_request("GET", f"{WEBHOOK_API}/{resource}/{name}").json()
        for hook in configuration["webhooks"]:
            bundles.add(hook["clientConfig"].get("caBundle"))
    return bundles


def served_certificate(port: int) -> bytes:
    """The DER certificate the webhook server presents right now."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def admissions_answered(operator: OperatorProcess) -> float:
    """Admission reviews this process answered (its own counter, whatever the decision)."""
    with loopback_opener().open(f"{operator.metrics_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("modelward_admission_requests_total{")
    )


class ManagedOperators:
    """Starts ``modelward run --manage-certificates`` processes for one test and stops them."""

    def __init__(self, control_plane: LocalControlPlane, namespace: str, tmp_path: Path) -> None:
        self.control_plane = control_plane
        self.namespace = namespace
        self.tmp_path = tmp_path
        self.configuration = f"mw-certs-{namespace[-6:]}"
        self.started: list[OperatorProcess] = []

    def start(
        self,
        *,
        check_interval: float = 1.0,
        register: bool = True,
        extra_args: tuple[str, ...] = (),
        failure_policy: str = "Ignore",
    ) -> OperatorProcess:
        index = len(self.started)
        tls_dir = self.tmp_path / f"tls-{index}"
        tls_dir.mkdir()
        process = OperatorProcess(
            control_plane=self.control_plane,
            namespace=self.namespace,
            configuration_name=self.configuration,
            failure_policy=failure_policy,
            register_webhooks=register,
            extra_args=[
                "--manage-certificates",
                f"--certificate-secret={SECRET}",
                f"--service-name={SERVICE}",
                f"--webhook-configuration={self.configuration}",
                # The local API server dials 127.0.0.1, so the certificate must name it.
                "--certificate-san=127.0.0.1",
                f"--tls-cert-file={tls_dir / 'tls.crt'}",
                f"--tls-key-file={tls_dir / 'tls.key'}",
                f"--certificate-check-interval={check_interval}",
                "--no-events",
                "--audit-interval=0",  # the session operator audits; one is enough
                *extra_args,
            ],
            work_dir=self.tmp_path / f"operator-{index}",
        )
        self.started.append(process)
        process.start()
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()


@pytest.fixture
def operators(
    control_plane: LocalControlPlane, namespace: str, tmp_path: Path
) -> Iterator[ManagedOperators]:
    managed = ManagedOperators(control_plane, namespace, tmp_path)
    try:
        yield managed
    finally:
        managed.stop_all()


def test_operator_creates_serves_and_publishes_its_certificate(
    operators: ManagedOperators, control_plane: LocalControlPlane, kubectl: ToolRunner
) -> None:
    operator = operators.start()
    ns = operators.namespace
    secret = get_json(kubectl, "secret", SECRET, "-n", ns)
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "modelward"
    data = secret_data(kubectl, ns)
    assert set(data) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}

    ca = KeyPair(data["ca.crt"], data["ca.key"])
    ca_cert = ca.certificate
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.not_after - dt.datetime.now(dt.UTC) > dt.timedelta(days=3640)
    leaf = x509.load_pem_x509_certificate(data["tls.crt"])
    leaf.verify_directly_issued_by(ca_cert)
    assert dt.timedelta(days=364) < leaf.not_valid_after_utc - dt.datetime.now(dt.UTC)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {
        SERVICE,
        f"{SERVICE}.{ns}",
        f"{SERVICE}.{ns}.svc",
        f"{SERVICE}.{ns}.svc.cluster.local",
    }
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]

    # It serves exactly that certificate...
    assert served_certificate(operator.webhook_port) == der(data["tls.crt"])
    # ... and writes its CA into every webhook of its configurations (the harness registered
    # them with another CA after start-up: the periodic check repairs that too).
    expected = base64.b64encode(data["ca.crt"]).decode()
    wait_for(
        "the CA bundle in both configurations",
        lambda: ca_bundles(control_plane, operators.configuration) == {expected},
    )

    # The API server now trusts the served certificate: its reviews reach this process.
    before = admissions_answered(operator)

    def answered() -> bool:
        operator.probe()
        return admissions_answered(operator) > before

    wait_for("the API server to call the managed-certificate webhook", answered)


def test_second_start_reuses_the_secret(operators: ManagedOperators, kubectl: ToolRunner) -> None:
    first = operators.start()
    ns = operators.namespace
    version = get_json(kubectl, "secret", SECRET, "-n", ns)["metadata"]["resourceVersion"]
    data = secret_data(kubectl, ns)
    first.stop()

    second = operators.start()
    assert get_json(kubectl, "secret", SECRET, "-n", ns)["metadata"]["resourceVersion"] == version
    assert served_certificate(second.webhook_port) == der(data["tls.crt"])
    assert "created the certificate Secret" not in second.log_tail(200)


def make_secret(
    namespace: str, ca: KeyPair, leaf: KeyPair, ca_bundle: bytes | None = None
) -> dict[str, Any]:
    data = {
        "ca.crt": ca_bundle if ca_bundle is not None else ca.cert_pem,
        "ca.key": ca.key_pem,
        "tls.crt": leaf.cert_pem,
        "tls.key": leaf.key_pem,
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": SECRET, "namespace": namespace},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def short_leaf(ca: KeyPair, namespace: str, days: int = 10) -> KeyPair:
    return issue_certificate(
        ca,
        common_name=f"{SERVICE}.{namespace}.svc",
        dns_names=(
            SERVICE,
            f"{SERVICE}.{namespace}",
            f"{SERVICE}.{namespace}.svc",
            f"{SERVICE}.{namespace}.svc.cluster.local",
        ),
        ip_addresses=("127.0.0.1",),
        valid_days=days,
    )


def test_almost_expired_certificate_is_reissued_from_the_same_ca(
    operators: ManagedOperators, control_plane: LocalControlPlane, kubectl: ToolRunner
) -> None:
    ns = operators.namespace
    ca = create_ca(common_name="modelward-ca")
    expiring = short_leaf(ca, ns)
    response = control_plane.api_request(
        "POST", f"/api/v1/namespaces/{ns}/secrets", body=make_secret(ns, ca, expiring)
    )
    assert response.status == 201, response.message

    # At start-up, before serving: the leaf expires within 30 days, so it is re-issued.
    operator = operators.start(check_interval=1.0)
    data = secret_data(kubectl, ns)
    assert data["ca.crt"] == ca.cert_pem and data["ca.key"] == ca.key_pem, "the CA must be kept"
    renewed = x509.load_pem_x509_certificate(data["tls.crt"])
    assert renewed.serial_number != expiring.certificate.serial_number
    renewed.verify_directly_issued_by(ca.certificate)
    assert renewed.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=360)
    assert served_certificate(operator.webhook_port) == der(data["tls.crt"])

    # While running: someone puts an almost-expired certificate back; the periodic check
    # re-issues it and rewrites the file the server reloads.
    secret = get_json(kubectl, "secret", SECRET, "-n", ns)
    again = short_leaf(ca, ns, days=5)
    secret["data"]["tls.crt"] = base64.b64encode(again.cert_pem).decode()
    secret["data"]["tls.key"] = base64.b64encode(again.key_pem).decode()
    secret["metadata"].pop("managedFields", None)
    replaced = control_plane.api_request(
        "PUT", f"/api/v1/namespaces/{ns}/secrets/{SECRET}", body=secret
    )
    assert replaced.status == 200, replaced.message

    def reissued() -> bool:
        current = x509.load_pem_x509_certificate(secret_data(kubectl, ns)["tls.crt"])
        return current.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=360)

    wait_for("the operator to re-issue the certificate", reissued, timeout=30)
    cert_file = operators.tmp_path / "tls-0" / "tls.crt"
    wait_for(
        "the renewed certificate on disk",
        lambda: cert_file.read_bytes() == secret_data(kubectl, ns)["tls.crt"],
        timeout=15,
    )


def manager(kube_client: Any, namespace: str, folder: Path) -> CertificateManager:
    folder.mkdir(parents=True, exist_ok=True)
    return CertificateManager(
        kube=KubeApi(kube_client),
        config=CertificateConfig(
            namespace=namespace,
            secret_name=SECRET,
            service_name=SERVICE,
            webhook_configurations=(),
            cert_file=folder / "tls.crt",
            key_file=folder / "tls.key",
        ),
    )


def race(managers: list[CertificateManager]) -> list[tuple[Any, str]]:
    """Run ``ensure_secret`` on every manager at once (a barrier lines the threads up)."""
    barrier = threading.Barrier(len(managers))
    results: list[Any] = [None] * len(managers)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = managers[index].ensure_secret()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(managers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.parametrize("attempt", range(3))
def test_replicas_racing_for_a_missing_secret_agree(
    kube_client: Any, namespace: str, tmp_path: Path, attempt: int
) -> None:
    managers = [manager(kube_client, namespace, tmp_path / f"r{i}") for i in range(3)]
    results = race(managers)
    actions = sorted(action for _, action in results)
    assert actions.count("created") == 1, actions
    assert set(actions) <= {"created", "adopted", "unchanged"}
    serving = {material.serving.cert_pem for material, _ in results}
    cas = {material.ca.cert_pem for material, _ in results}
    assert len(serving) == 1 and len(cas) == 1, "replicas would serve different certificates"
    stored = KubeApi(kube_client).read_secret(namespace, SECRET)
    assert stored is not None
    assert base64.b64decode(stored["data"]["tls.crt"]) in serving


def test_replicas_racing_to_renew_agree(
    kube_client: Any, control_plane: LocalControlPlane, namespace: str, tmp_path: Path
) -> None:
    ca = create_ca(common_name="modelward-ca")
    response = control_plane.api_request(
        "POST",
        f"/api/v1/namespaces/{namespace}/secrets",
        body=make_secret(namespace, ca, short_leaf(ca, namespace)),
    )
    assert response.status == 201, response.message
    results = race([manager(kube_client, namespace, tmp_path / f"r{i}") for i in range(3)])
    actions = [action for _, action in results]
    assert sum(a.startswith("renewed") for a in actions) == 1, actions
    assert len({m.serving.cert_pem for m, _ in results}) == 1
    assert {m.ca.cert_pem for m, _ in results} == {ca.cert_pem}


def test_unusable_secret_is_replaced(
    kube_client: Any, control_plane: LocalControlPlane, namespace: str, tmp_path: Path
) -> None:
    """A Secret with a CA key that does not match its certificate gets a fresh CA and leaf."""
    ca, other = create_ca(), create_ca()
    broken = make_secret(
        namespace, KeyPair(ca.cert_pem, other.key_pem), short_leaf(ca, namespace, 300)
    )
    response = control_plane.api_request(
        "POST", f"/api/v1/namespaces/{namespace}/secrets", body=broken
    )
    assert response.status == 201, response.message
    material, action = manager(kube_client, namespace, tmp_path).ensure_secret()
    assert action.startswith("renewed: no usable CA; a new CA is trusted now")
    assert material.ca.cert_pem != ca.cert_pem
    # The old certificate is still valid and trusted: it is served until the switch.
    material.serving.certificate.verify_directly_issued_by(ca.certificate)
    assert material.next is not None
    material.next.certificate.verify_directly_issued_by(material.ca.certificate)


def test_ca_renewal_keeps_the_previous_ca_trusted(
    kube_client: Any, control_plane: LocalControlPlane, namespace: str, tmp_path: Path
) -> None:
    """A CA that would expire before a new leaf does is replaced; the old one stays in the
    bundle so that certificates it signed (other replicas, until they reload) stay trusted."""
    old_ca = create_ca(common_name="old", valid_days=200)
    response = control_plane.api_request(
        "POST",
        f"/api/v1/namespaces/{namespace}/secrets",
        body=make_secret(namespace, old_ca, short_leaf(old_ca, namespace, 100)),
    )
    assert response.status == 201, response.message
    material, action = manager(kube_client, namespace, tmp_path).ensure_secret()
    assert action.startswith("renewed: the CA expires on")
    bundle = x509.load_pem_x509_certificates(material.ca_bundle)
    assert [c.subject for c in bundle] == [
        material.ca.certificate.subject,
        old_ca.certificate.subject,
    ]
    # The old CA's certificate is served until the switch, the new CA's from then on.
    assert material.serving.cert_pem == data_of(kube_client, namespace)["tls.crt"]
    material.serving.certificate.verify_directly_issued_by(old_ca.certificate)
    assert material.next is not None and material.switch_at is not None
    material.next.certificate.verify_directly_issued_by(material.ca.certificate)
    assert material.served(material.switch_at) == material.next
    # The bundle written to webhook configurations is what a client trusts.
    context = ssl.create_default_context(cadata=material.ca_bundle.decode())
    assert len(context.get_ca_certs()) == 2


def data_of(kube_client: Any, namespace: str) -> dict[str, bytes]:
    stored = KubeApi(kube_client).read_secret(namespace, SECRET)
    assert stored is not None
    return {k: base64.b64decode(v) for k, v in stored["data"].items()}


REVIEW = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": "rollover-load",
        "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
        "resource": {"group": "", "version": "v1", "resource": "configmaps"},
        "operation": "CREATE",
        "namespace": "default",
        "name": "load",
        "object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "load"}},
        "userInfo": {"username": "load"},
    },
}


class DirectLoad:
    """Reviews sent straight to one replica, each on a new TLS connection that trusts only the
    caBundle of the webhook configuration as it is at that moment (what the API server does)."""

    def __init__(self, control_plane: LocalControlPlane, configuration: str, port: int) -> None:
        self.control_plane = control_plane
        self.configuration = configuration
        self.port = port
        self.sent = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _bundle(self) -> str:
        path = f"{WEBHOOK_API}/validatingwebhookconfigurations/{self.configuration}"
        hooks = self.control_plane.api_request("GET", path).json()["webhooks"]
        return base64.b64decode(hooks[0]["clientConfig"]["caBundle"]).decode()

    def _run(self) -> None:
        body = json.dumps(REVIEW).encode()
        while not self.stop.is_set():
            try:
                context = ssl.create_default_context(cadata=self._bundle())
                connection = http.client.HTTPSConnection(
                    "127.0.0.1", self.port, context=context, timeout=10
                )
                try:
                    connection.request(
                        "POST", "/mutate", body, {"Content-Type": "application/json"}
                    )
                    response = connection.getresponse()
                    answer = json.loads(response.read())
                    if response.status != 200 or answer["response"]["uid"] != "rollover-load":
                        self.failures.append(f"HTTP {response.status}: {answer}")
                finally:
                    connection.close()
            except (OSError, ValueError, KeyError) as error:
                self.failures.append(f"{type(error).__name__}: {error}")
            self.sent += 1


def test_ca_rollover_under_load_fails_no_review(
    operators: ManagedOperators, control_plane: LocalControlPlane, kubectl: ToolRunner
) -> None:
    """Deleting the Secret makes a new CA; two replicas switch to it with no failed review.

    Both check only every hour: they follow the Secret through their watch. The API server
    calls the first replica (failurePolicy Fail: a TLS failure is a refused request); both are
    also called directly, by a client that trusts what the caBundle says at that moment.
    """
    ns = operators.namespace
    delays = ("--certificate-switch-delay=3", "--certificate-retire-delay=3")
    first = operators.start(check_interval=3600, extra_args=delays, failure_policy="Fail")
    second = operators.start(check_interval=3600, extra_args=delays, register=False)
    old = secret_data(kubectl, ns)
    wait_for(
        "the CA bundle in both configurations",
        lambda: (
            ca_bundles(control_plane, operators.configuration)
            == {base64.b64encode(old["ca.crt"]).decode()}
        ),
    )
    loads = [
        DirectLoad(control_plane, operators.configuration, p.webhook_port) for p in (first, second)
    ]
    through_api: dict[str, Any] = {"sent": 0, "failures": []}
    stop = threading.Event()

    def probe_through_the_api_server() -> None:
        while not stop.is_set():
            before = first.reviews_answered()
            response = first.probe()
            through_api["sent"] += 1
            if "modelward probe" not in response.message or first.reviews_answered() <= before:
                through_api["failures"].append(f"HTTP {response.status}: {response.message}")

    prober = threading.Thread(target=probe_through_the_api_server, daemon=True)
    for load in loads:
        load.thread.start()
    prober.start()
    try:
        time.sleep(2)
        deleted = control_plane.api_request("DELETE", f"/api/v1/namespaces/{ns}/secrets/{SECRET}")
        assert deleted.status == 200, deleted.message

        def rolled_over() -> bool:
            response = control_plane.api_request("GET", f"/api/v1/namespaces/{ns}/secrets/{SECRET}")
            if response.status != 200:
                return False
            data = {k: base64.b64decode(v) for k, v in response.json()["data"].items()}
            return (
                "next.crt" not in data
                and data["ca.crt"] != old["ca.crt"]
                and len(x509.load_pem_x509_certificates(data["ca.crt"])) == 1
                and ca_bundles(control_plane, operators.configuration)
                == {base64.b64encode(data["ca.crt"]).decode()}
                and all(
                    served_certificate(p.webhook_port) == der(data["tls.crt"])
                    for p in (first, second)
                )
            )

        # Switch (3 s) and retire (3 s) after the deletion: a check every hour cannot do it.
        wait_for("both replicas to finish the CA rollover", rolled_over, timeout=40)
        time.sleep(2)
    finally:
        stop.set()
        for load in loads:
            load.stop.set()
        for thread in (prober, *(load.thread for load in loads)):
            thread.join(timeout=30)
    for name, load in zip(("first", "second"), loads, strict=True):
        assert load.sent > 20 and not load.failures, (name, load.sent, load.failures[:5])
    assert through_api["sent"] > 5 and not through_api["failures"], through_api
