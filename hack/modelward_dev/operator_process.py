"""The modelward operator run as a local process, its webhooks registered with a local API server.

End-to-end tests need the real request path: kube-apiserver → HTTPS webhook → decision. In a
cluster the webhook is a Service; here it is ``modelward run`` listening on 127.0.0.1, and the
webhook configurations (built by ``modelward.api.webhooks``, the same source as the Helm
chart's) point at it by URL. The serving certificate carries the IP SAN 127.0.0.1, since the
API server's Go TLS client ignores the CN.

The API server picks up new webhook configurations asynchronously, so ``start()`` only returns
once a probe proves they are in use: a server-side dry-run create of a Pod labelled
``modelward.io/probe: deny``, which the admission server denies with a message containing
"modelward probe". Dry-run, so nothing is stored.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.error
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from modelward.api.webhooks import MUTATE_PATH, VALIDATE_PATH, webhook_configurations
from modelward.certs import create_ca, issue_certificate
from modelward_dev.controlplane import (
    ApiResponse,
    LocalControlPlane,
    ManagedProcess,
    free_ports,
    loopback_opener,
    register_cleanup,
    unregister_cleanup,
)
from modelward_dev.lifecycle import StartStop

__all__ = [
    "DEFAULT_CONFIGURATION_NAME",
    "HARNESS_SCOPE_LABEL",
    "PROBE_LABEL",
    "PROBE_MESSAGE",
    "OperatorError",
    "OperatorProcess",
]

#: Name of the Validating- and MutatingWebhookConfiguration the harness registers. Not the
#: chart's name, so a test can ``helm install`` the chart while the local operator runs.
DEFAULT_CONFIGURATION_NAME = "modelward-local"
#: The admission server denies any Pod with this label set to "deny" ...
PROBE_LABEL = "modelward.io/probe"
#: ... with a message that contains this text.
PROBE_MESSAGE = "modelward probe"

#: Several operators may run against one control plane (the session's, a test's own with the
#: chart's webhook configurations, two replicas...). Webhooks built by the harness leave alone
#: namespaces carrying this label; webhooks rendered from the chart select only namespaces whose
#: label names their configuration. So each namespace is judged by exactly one operator.
HARNESS_SCOPE_LABEL = "modelward-dev/webhooks"
#: The chart's default ``webhook.enforcedNamespaceLabel`` (the enforced, Fail webhooks).
ENFORCED_LABEL = "modelward.io/model-serving"

_WEBHOOK_API = "/apis/admissionregistration.k8s.io/v1"
_CHART_DIR = Path(__file__).resolve().parents[2] / "charts" / "modelward"
_REPO_ROOT = Path(__file__).resolve().parents[2]


class OperatorError(RuntimeError):
    """The operator did not become ready or its webhooks were not used; carries its log tail."""


class OperatorProcess(StartStop):
    """``python -m modelward run`` against a ``LocalControlPlane``, with webhooks registered.

    Attributes valid after ``start()``: ``webhook_url`` (``https://127.0.0.1:P``),
    ``metrics_url`` (``http://127.0.0.1:M``), ``log_path``, ``ca_pem``, ``webhook_port``,
    ``metrics_port``, ``work_dir``. ``configuration_name`` and ``namespace`` are set at once.
    """

    def __init__(
        self,
        *,
        control_plane: LocalControlPlane,
        namespace: str = "modelward-system",
        program: Sequence[str] | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        configuration_name: str = DEFAULT_CONFIGURATION_NAME,
        excluded_namespaces: Sequence[str] | None = None,
        failure_policy: str = "Fail",
        timeout_seconds: int = 5,
        probe_namespace: str = "modelward-probe",
        ready_timeout: float = 60.0,
        webhook_timeout: float = 60.0,
        work_dir: Path | None = None,
        keep_work_dir: bool = False,
        register_webhooks: bool = True,
        webhooks: Literal["harness", "chart"] = "harness",
        chart_values: Sequence[str] = (),
    ) -> None:
        """Describe the operator process; nothing starts before ``start()``.

        Args:
            control_plane: a started control plane; its kubeconfig is given to the operator.
            namespace: the operator's own namespace (created if missing, never intercepted).
            program: the command before ``run ...``; ``[sys.executable, "-m", "modelward"]`` by
                default. Tests of the harness itself substitute a stand-in server.
            extra_args: appended after the standard ``run`` flags.
            env: extra environment variables for the operator.
            configuration_name: name of both webhook configurations.
            excluded_namespaces: namespaces the webhooks leave alone, besides kube-system and
                kube-node-lease; ``(namespace,)`` by default, as the chart does.
            failure_policy: the webhooks' failurePolicy (``Fail`` makes an unreachable operator
                visible in tests instead of silently admitting everything).
            timeout_seconds: the webhooks' timeoutSeconds.
            probe_namespace: namespace of the dry-run probe Pod; created if missing and must not
                be excluded.
            ready_timeout: seconds allowed for ``/readyz`` on the metrics port to answer 200.
            webhook_timeout: seconds allowed for the API server to start calling the webhook.
            work_dir: folder for certificates and the log; a temporary one if None (a given
                folder is never deleted).
            keep_work_dir: keep the temporary folder (the log) after ``stop()``.
            register_webhooks: register the webhook configurations and wait until the API
                server calls this process; False for a second replica that only serves (its
                callers dial it directly) and must not replace the first one's registration.
            webhooks: ``"harness"`` registers one webhook per configuration, built by
                ``modelward.api.webhooks``; ``"chart"`` registers the configurations ``helm
                template`` renders from charts/modelward (the enforced ``Fail`` webhook and its
                fail-open complement), pointed at this process by URL. Chart-mode webhooks
                select only namespaces labelled ``HARNESS_SCOPE_LABEL=<configuration_name>``
                (the probe namespace gets the label); harness-mode ones never select those.
            chart_values: ``--set`` assignments for ``helm template`` (chart mode).
        """
        self.control_plane = control_plane
        self.namespace = namespace
        self.configuration_name = configuration_name
        self.probe_namespace = probe_namespace
        self._program = (
            tuple(program) if program is not None else (sys.executable, "-m", "modelward")
        )
        self._extra_args = tuple(extra_args)
        self._extra_env = dict(env or {})
        self._excluded = (
            tuple(excluded_namespaces) if excluded_namespaces is not None else (namespace,)
        )
        if probe_namespace in self._excluded:
            raise ValueError(f"the probe namespace {probe_namespace!r} must not be excluded")
        if webhooks == "chart" and failure_policy != "Fail":
            raise ValueError("chart-mode webhooks take their failurePolicy from chart_values")
        self._webhooks = webhooks
        self._chart_values = tuple(chart_values)
        self._failure_policy = failure_policy
        self._timeout_seconds = timeout_seconds
        self._ready_timeout = ready_timeout
        self._webhook_timeout = webhook_timeout
        self._given_work_dir = work_dir
        self._keep_work_dir = keep_work_dir or work_dir is not None
        self._work_dir: Path | None = None
        self._process: ManagedProcess | None = None
        self._ports: tuple[int, int] | None = None
        self._ca_pem: bytes | None = None
        self._registered = False
        self._register_webhooks_at_start = register_webhooks
        self._lock = threading.RLock()

    # -- lifecycle --

    def start(self) -> None:
        """Start the operator, wait for ``/readyz``, register the webhooks, wait until used.

        Raises:
            OperatorError: the process exited, ``/readyz`` never answered 200, or the API server
                never called the webhook in time; the message quotes the operator's log.
        """
        with self._lock:
            if self._process is not None:
                raise RuntimeError("this operator process was already started")
            if self._given_work_dir is not None:
                self._work_dir = self._given_work_dir.resolve()
                self._work_dir.mkdir(parents=True, exist_ok=True)
            else:
                self._work_dir = Path(tempfile.mkdtemp(prefix="modelward-operator-"))
            cert_file, key_file = self._write_certificates()
            self._ensure_namespace(self.namespace)
            probe_labels = (
                # The enforced label too: the operator narrows the fail-open webhooks to what
                # policies select, and no policy selects the probe namespace.
                {HARNESS_SCOPE_LABEL: self.configuration_name, ENFORCED_LABEL: "true"}
                if self._webhooks == "chart"
                else {}
            )
            self._ensure_namespace(self.probe_namespace, labels=probe_labels)
            webhook_port, metrics_port = free_ports(2)
            self._ports = (webhook_port, metrics_port)
            self._process = ManagedProcess(
                name="modelward operator",
                args=[
                    *self._program,
                    "run",
                    "--webhook-host=127.0.0.1",
                    f"--webhook-port={self.webhook_port}",
                    f"--tls-cert-file={cert_file}",
                    f"--tls-key-file={key_file}",
                    "--metrics-host=127.0.0.1",
                    f"--metrics-port={self.metrics_port}",
                    f"--namespace={self.namespace}",
                    *self._scope_args(),
                    *self._extra_args,
                ],
                log_path=self.log_path,
                env=self._environment(),
                cwd=_REPO_ROOT,
            )
            register_cleanup(self.stop)
            try:
                self._process.start()
                self._wait_until_ready()
                if self._register_webhooks_at_start:
                    self._register_webhooks()
                    self._wait_until_webhook_used()
            except BaseException:
                self._keep_work_dir = True  # the error message points at the log
                self.stop()
                raise

    def stop(self) -> None:
        """Delete the webhook configurations, then stop the process. Idempotent.

        In that order: with failurePolicy Fail, configurations pointing at a stopped webhook
        would make the API server refuse every pod until they are deleted.
        """
        with self._lock:
            unregister_cleanup(self.stop)
            if self._registered:
                self._unregister_webhooks()
            if self._process is not None:
                self._process.stop(grace=10.0)
            if self._work_dir is not None and not self._keep_work_dir:
                shutil.rmtree(self._work_dir, ignore_errors=True)

    def is_running(self) -> bool:
        return self._process is not None and self._process.running()

    def pause(self) -> None:
        """SIGSTOP the operator: its connections stay open but nothing it does advances."""
        if self._process is None:
            raise RuntimeError("the operator process has not been started")
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause()``."""
        if self._process is None:
            raise RuntimeError("the operator process has not been started")
        self._process.send_signal(signal.SIGCONT)

    def reviews_answered(self) -> float:
        """Validating reviews this very process answered (its own counter, any decision).

        The proof that the API server calls *this* process: another operator's webhook may
        answer the probe just the same.
        """
        with loopback_opener().open(f"{self.metrics_url}/metrics", timeout=5) as response:
            text = response.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("modelward_admission_requests_total{")
            and 'webhook="validate"' in line
        )

    # -- public attributes --

    @property
    def work_dir(self) -> Path:
        if self._work_dir is None:
            raise RuntimeError("the operator process has not been started")
        return self._work_dir

    @property
    def log_path(self) -> Path:
        return self.work_dir / "operator.log"

    @property
    def webhook_port(self) -> int:
        return self._ports_or_fail()[0]

    @property
    def metrics_port(self) -> int:
        return self._ports_or_fail()[1]

    @property
    def webhook_url(self) -> str:
        """Base URL of the admission server; the webhooks use ``/validate`` and ``/mutate``."""
        return f"https://127.0.0.1:{self.webhook_port}"

    @property
    def metrics_url(self) -> str:
        """Base URL of the metrics server (``/metrics``, ``/readyz``)."""
        return f"http://127.0.0.1:{self.metrics_port}"

    @property
    def ca_pem(self) -> bytes:
        """The CA that signed the webhook's serving certificate (the caBundle)."""
        if self._ca_pem is None:
            raise RuntimeError("the operator process has not been started")
        return self._ca_pem

    @property
    def ca_path(self) -> Path:
        return self.work_dir / "ca.crt"

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of the operator's log (for assertion messages in tests)."""
        if self._process is None:
            return ""
        return self._process.log_tail(lines)

    def webhook_configurations(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The ValidatingWebhookConfiguration and MutatingWebhookConfiguration registered."""
        if self._webhooks == "chart":
            return self._chart_webhook_configurations()
        ca_bundle = base64.b64encode(self.ca_pem).decode("ascii")
        validating, mutating = webhook_configurations(
            name=self.configuration_name,
            client_config_for={
                "validate": {"url": self.webhook_url + VALIDATE_PATH, "caBundle": ca_bundle},
                "mutate": {"url": self.webhook_url + MUTATE_PATH, "caBundle": ca_bundle},
            },
            excluded_namespaces=self._excluded,
            failure_policy=self._failure_policy,
            timeout_seconds=self._timeout_seconds,
        )
        for configuration in (validating, mutating):
            for hook in configuration["webhooks"]:
                hook["namespaceSelector"]["matchExpressions"].append(
                    {"key": HARNESS_SCOPE_LABEL, "operator": "DoesNotExist"}
                )
        return validating, mutating

    def _scope_args(self) -> list[str]:
        """In chart mode, what the chart's Deployment passes: narrow the fail-open webhooks
        (unless the values switch that off)."""
        if self._webhooks != "chart" or "webhook.failOpenElsewhere=false" in self._chart_values:
            return []
        args = [f"--scope-webhook-configuration={self.configuration_name}"]
        if "webhook.scopeToPolicies=false" in self._chart_values:
            args.append("--no-scope-to-policies")
        return args

    def _chart_webhook_configurations(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The chart's own configurations, each webhook's Service reference replaced by a URL."""
        result = self.control_plane.helm(
            "template",
            "modelward",
            str(_CHART_DIR),
            f"--namespace={self.namespace}",
            "--set",
            f"webhook.timeoutSeconds={self._timeout_seconds}",
            *(arg for value in self._chart_values for arg in ("--set", value)),
            check=True,
        )
        rendered = {
            document["kind"]: document
            for document in yaml.safe_load_all(result.stdout)
            if isinstance(document, dict)
        }
        ca_bundle = base64.b64encode(self.ca_pem).decode("ascii")
        configurations = []
        for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            configuration = rendered[kind]
            configuration["metadata"] = {"name": self.configuration_name}
            for hook in configuration["webhooks"]:
                path = hook["clientConfig"]["service"]["path"]
                hook["clientConfig"] = {"url": self.webhook_url + path, "caBundle": ca_bundle}
                hook["namespaceSelector"].setdefault("matchExpressions", []).append(
                    {
                        "key": HARNESS_SCOPE_LABEL,
                        "operator": "In",
                        "values": [self.configuration_name],
                    }
                )
            configurations.append(configuration)
        return configurations[0], configurations[1]

    def probe(self) -> ApiResponse:
        """Dry-run create the probe Pod; the webhook in use denies it with "modelward probe"."""
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "modelward-probe",
                "namespace": self.probe_namespace,
                "labels": {PROBE_LABEL: "deny"},
            },
            "spec": {"containers": [{"name": "probe", "image": "registry.invalid/probe:0"}]},
        }
        return self.control_plane.api_request(
            "POST",
            f"/api/v1/namespaces/{self.probe_namespace}/pods?dryRun=All",
            body=pod,
            timeout=self._timeout_seconds + 10.0,
        )

    # -- internals --

    def _ports_or_fail(self) -> tuple[int, int]:
        if self._ports is None:
            raise RuntimeError("the operator process has not been started")
        return self._ports

    def _write_certificates(self) -> tuple[Path, Path]:
        ca = create_ca(common_name="modelward-local-webhook-ca")
        serving = issue_certificate(
            ca,
            common_name="modelward-webhook",
            dns_names=("localhost",),
            ip_addresses=("127.0.0.1",),
        )
        files = {"ca.crt": ca.cert_pem, "tls.crt": serving.cert_pem, "tls.key": serving.key_pem}
        for name, content in files.items():
            path = self.work_dir / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(content)
        self._ca_pem = ca.cert_pem
        return self.work_dir / "tls.crt", self.work_dir / "tls.key"

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        source_root = str(_REPO_ROOT / "operator")
        existing = env.get("PYTHONPATH")
        env["PYTHONPATH"] = source_root + (os.pathsep + existing if existing else "")
        env["KUBECONFIG"] = str(self.control_plane.kubeconfig_path)
        env["PYTHONUNBUFFERED"] = "1"  # the log must be current when a test quotes it
        env.update(self._extra_env)
        return env

    def _ensure_namespace(self, name: str, *, labels: Mapping[str, str] | None = None) -> None:
        metadata: dict[str, Any] = {"name": name}
        if labels:
            metadata["labels"] = dict(labels)
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}
        response = self.control_plane.api_request("POST", "/api/v1/namespaces", body=body)
        if response.status not in (201, 409):
            raise OperatorError(
                f"cannot create namespace {name}: HTTP {response.status} {response.message}"
            )

    def _failure(self, what: str) -> OperatorError:
        assert self._process is not None
        return OperatorError(f"{what}\n{self._process.describe_failure(60)}")

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._ready_timeout
        url = f"{self.metrics_url}/readyz"
        last = "no answer yet"
        opener = loopback_opener()
        while True:
            if not self._process.running():
                raise self._failure(
                    f"the modelward operator exited with code {self._process.returncode()} "
                    "before it was ready."
                )
            try:
                with opener.open(url, timeout=2.0) as response:
                    if response.status == 200:
                        self._check_listening()
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as error:
                last = f"HTTP {error.code}"
                error.close()
            except OSError as error:
                last = str(error)
            if time.monotonic() > deadline:
                raise self._failure(
                    f"the modelward operator did not answer GET {url} with 200 within "
                    f"{self._ready_timeout:.0f} s (last: {last})."
                )
            time.sleep(0.1)

    def _check_listening(self) -> None:
        """Ready means serving: the webhook port must accept a connection the moment
        ``/readyz`` says 200 (a replica declared ready before its listener is up is sent
        reviews it refuses)."""
        try:
            socket.create_connection(("127.0.0.1", self.webhook_port), timeout=5.0).close()
        except OSError as error:
            raise self._failure(
                f"/readyz answered 200 but the webhook port {self.webhook_port} refuses "
                f"connections ({error}): readiness was declared before the listener was up."
            ) from error

    def _register_webhooks(self) -> None:
        validating, mutating = self.webhook_configurations()
        self._registered = True  # from here on, stop() must try to delete them
        # Mutating first: the probe can only observe the validating one, and the API server's
        # informers usually see configurations in the order they were created.
        for resource, body in (
            ("mutatingwebhookconfigurations", mutating),
            ("validatingwebhookconfigurations", validating),
        ):
            path = f"{_WEBHOOK_API}/{resource}"
            # A configuration left by a crashed run (reused demo cluster) would point at a dead
            # port; replace it rather than fail.
            self.control_plane.api_request("DELETE", f"{path}/{self.configuration_name}")
            response = self.control_plane.api_request("POST", path, body=body)
            if response.status != 201:
                raise self._failure(
                    f"cannot create {resource}/{self.configuration_name}: HTTP "
                    f"{response.status} {response.message}"
                )

    def _wait_until_webhook_used(self) -> None:
        deadline = time.monotonic() + self._webhook_timeout
        last = "no answer yet"
        while True:
            if self._process is not None and not self._process.running():
                raise self._failure(
                    f"the modelward operator exited with code {self._process.returncode()} "
                    "while its webhooks were being registered."
                )
            try:
                before = self.reviews_answered()
                response = self.probe()
                if (
                    400 <= response.status < 500
                    and PROBE_MESSAGE in response.message
                    and self.reviews_answered() > before
                ):
                    return
                last = f"HTTP {response.status}: {response.message.strip()[:500]}"
            except OSError as error:
                last = str(error)
            if time.monotonic() > deadline:
                raise self._failure(
                    f"the API server did not use the webhook at {self.webhook_url}"
                    f"{VALIDATE_PATH} within {self._webhook_timeout:.0f} s: a dry-run Pod "
                    f"labelled {PROBE_LABEL}=deny in namespace {self.probe_namespace} was not "
                    f"denied with {PROBE_MESSAGE!r} (last answer: {last}). API server log: "
                    f"{self.control_plane.apiserver_log_path}"
                )
            time.sleep(0.2)

    def _unregister_webhooks(self) -> None:
        """Delete both configurations and wait (briefly) until the API server stops calling us.

        Best effort: at interpreter exit the control plane may already be gone.
        """
        for resource in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
            with contextlib.suppress(OSError):
                self.control_plane.api_request(
                    "DELETE", f"{_WEBHOOK_API}/{resource}/{self.configuration_name}", timeout=5.0
                )
        self._registered = False
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            try:
                if self.probe().status == 201:  # admitted: no webhook of ours is called
                    return
            except OSError:
                return
            time.sleep(0.2)
