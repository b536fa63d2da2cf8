"""What the Helm chart's hooks run, in modelward's own image: ``python -m modelward.chart_hooks``.

- ``selftest`` (`helm test`): the webhook Service answers over TLS with the CA published in the
  webhook configuration (so the caBundle matches the certificate served), and a server-side dry
  run of a pod labelled ``modelward.io/probe=deny`` comes back denied by modelward: the API
  server calls the webhooks end to end.
- ``cleanup`` (the opt-in post-delete hook): deletes what ``helm uninstall`` leaves because
  Helm does not own it: the operator-managed certificate Secret, the leader Lease, and, when
  asked, modelward's PolicyReports and the DeployedModel inventory. CRDs stay.

Exit codes follow the CLI's contract: 0 done, 1 the check failed, 2 usage or environment.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import socket
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelward.admission.service import PROBE_LABEL
from modelward.api.schema import GROUP, VERSION

PROBE_MESSAGE = "modelward probe"
REPORT_GROUP, REPORT_VERSION = "wgpolicyk8s.io", "v1alpha2"
#: The PolicyReport modelward writes in each audited namespace (controller/audit.py).
REPORT_NAME = "modelward"


class HookFailure(Exception):
    """The check failed (exit 1); the message names what and where to look."""


@dataclass(frozen=True, kw_only=True)
class CleanupResult:
    secret: bool | None
    lease: bool
    policy_reports: int
    deployed_models: int

    def summary(self) -> str:
        return (
            f"deleted: certificate Secret {_said(self.secret)}, leader Lease "
            f"{_said(self.lease)}, {self.policy_reports} PolicyReport(s), "
            f"{self.deployed_models} DeployedModel(s)"
        )


def _said(deleted: bool | None) -> str:
    return {True: "yes", False: "absent", None: "not modelward's (kept)"}[deleted]


def _api_client() -> Any:
    from modelward.controller.kube import KubeApi

    return KubeApi().api


def _deleted(call: Any, *args: Any) -> bool:
    """True when deleted, False when it was already absent; other errors propagate."""
    from kubernetes.client.exceptions import ApiException

    try:
        call(*args, _request_timeout=10)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def cleanup(
    api_client: Any,
    *,
    namespace: str,
    secret: str | None,
    lease: str,
    policy_reports: bool,
    deployed_models: bool,
) -> CleanupResult:
    """Delete what the release leaves behind; absent objects are fine (run twice, same end).
    ``secret`` is None when the certificate Secret is not the operator's (modes files and
    certManager): it is then left alone."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    coordination = client.CoordinationV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    reports = 0
    if policy_reports:
        listed: Any = custom.list_cluster_custom_object(
            REPORT_GROUP,
            REPORT_VERSION,
            "policyreports",
            field_selector=f"metadata.name={REPORT_NAME}",
            _request_timeout=10,
        )
        for item in listed["items"]:
            meta = item["metadata"]
            reports += _deleted(
                custom.delete_namespaced_custom_object,
                REPORT_GROUP,
                REPORT_VERSION,
                meta["namespace"],
                "policyreports",
                meta["name"],
            )
    models = 0
    if deployed_models:
        listed = custom.list_cluster_custom_object(
            GROUP, VERSION, "deployedmodels", _request_timeout=10
        )
        for item in listed["items"]:
            meta = item["metadata"]
            models += _deleted(
                custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                meta["namespace"],
                "deployedmodels",
                meta["name"],
            )
    return CleanupResult(
        secret=None
        if secret is None
        else _deleted(core.delete_namespaced_secret, secret, namespace),
        lease=_deleted(coordination.delete_namespaced_lease, lease, namespace),
        policy_reports=reports,
        deployed_models=models,
    )


def _published_ca(api_client: Any, configuration: str) -> bytes:
    from kubernetes import client

    admission = client.AdmissionregistrationV1Api(api_client)
    found: Any = admission.read_validating_webhook_configuration(
        configuration, _preload_content=False, _request_timeout=10
    )
    hooks = json.loads(found.data).get("webhooks") or []
    bundles = {h.get("clientConfig", {}).get("caBundle") for h in hooks}
    if not hooks or None in bundles or len(bundles) != 1:
        raise HookFailure(
            f"ValidatingWebhookConfiguration {configuration} has no single caBundle "
            f"({len(hooks)} webhooks): the API server cannot verify modelward; see "
            "docs/runbooks.md (certificates)"
        )
    return base64.b64decode(bundles.pop())


def service_endpoints(api_client: Any, *, service: str, namespace: str) -> list[tuple[str, int]]:
    """The ready (address, webhook port) pairs behind the Service, from its EndpointSlices:
    where the API server's service resolver sends reviews (no DNS or kube-proxy needed)."""
    from kubernetes import client

    discovery = client.DiscoveryV1Api(api_client)
    slices: Any = discovery.list_namespaced_endpoint_slice(
        namespace,
        label_selector=f"kubernetes.io/service-name={service}",
        _preload_content=False,
        _request_timeout=10,
    )
    found: list[tuple[str, int]] = []
    for item in json.loads(slices.data)["items"]:
        ports = [p["port"] for p in item.get("ports") or [] if p.get("name") == "https"]
        for endpoint in item.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            found += [(address, port) for address in endpoint["addresses"] for port in ports]
    if not found:
        raise HookFailure(
            f"Service {namespace}/{service} has no ready endpoint: no modelward replica is "
            f"Ready (kubectl -n {namespace} get pods; docs/runbooks.md#modelwardwebhookdown)"
        )
    return found


def check_reachable(*, address: str, port: int, server_name: str, ca_pem: bytes) -> int:
    """A TLS handshake verified with the published CA for ``server_name`` (the name the API
    server checks), then one HTTP request; its status."""
    # cadata, not a file: the hook's root filesystem is read-only and it has no /tmp.
    context = ssl.create_default_context(cadata=ca_pem.decode("ascii", "replace"))
    try:
        with (
            socket.create_connection((address, port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            tls.sendall(
                f"GET /validate HTTP/1.1\r\nHost: {server_name}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            response = http.client.HTTPResponse(tls)
            response.begin()
            return response.status
    except (OSError, ssl.SSLError, http.client.HTTPException) as error:
        raise HookFailure(
            f"{address}:{port} does not serve {server_name} with the published CA: {error}"
        ) from error


def check_denial(api_client: Any, *, namespace: str) -> str:
    """A dry-run probe pod must be denied by modelward; the denial message."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    pod: Any = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "modelward-helm-test-", "labels": {PROBE_LABEL: "deny"}},
        "spec": {"containers": [{"name": "probe", "image": "modelward-probe"}]},
    }
    try:
        client.CoreV1Api(api_client).create_namespaced_pod(
            namespace, pod, dry_run="All", _request_timeout=15
        )
    except ApiException as error:
        body = str(error.body or "")
        if PROBE_MESSAGE in body:
            return body
        raise HookFailure(
            f"the dry-run probe pod in {namespace} was refused, but not by modelward "
            f"(HTTP {error.status}): {body[:300]}"
        ) from error
    raise HookFailure(
        f"the dry-run probe pod in {namespace} was admitted: the API server did not call "
        "modelward (is the namespace excluded, or webhook.namespaceSelector too narrow? set "
        "tests.probeNamespace to an intercepted namespace)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m modelward.chart_hooks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    test = sub.add_parser("selftest", help="`helm test`: webhook reachable, a denial comes back")
    test.add_argument("--service", required=True, help="the webhook Service's name")
    test.add_argument("--namespace", required=True, help="the release namespace")
    test.add_argument("--webhook-configuration", required=True)
    test.add_argument("--probe-namespace", required=True, help="an intercepted namespace")
    clean = sub.add_parser("cleanup", help="post-delete: remove what helm uninstall leaves")
    clean.add_argument("--namespace", required=True, help="the release namespace")
    clean.add_argument("--secret", help="the operator-managed certificate Secret, if any")
    clean.add_argument("--lease", required=True, help="the leader Lease")
    clean.add_argument("--policy-reports", action="store_true")
    clean.add_argument("--deployed-models", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        api_client = _api_client()
        if args.command == "cleanup":
            result = cleanup(
                api_client,
                namespace=args.namespace,
                secret=args.secret,
                lease=args.lease,
                policy_reports=args.policy_reports,
                deployed_models=args.deployed_models,
            )
            print(result.summary())
            return 0
        ca = _published_ca(api_client, args.webhook_configuration)
        server_name = f"{args.service}.{args.namespace}.svc"
        for address, port in service_endpoints(
            api_client, service=args.service, namespace=args.namespace
        ):
            status = check_reachable(address=address, port=port, server_name=server_name, ca_pem=ca)
            print(f"{address}:{port} answered HTTP {status} as {server_name} over verified TLS")
        check_denial(api_client, namespace=args.probe_namespace)
        print(f"a dry-run probe pod in {args.probe_namespace} was denied by modelward")
        return 0
    except HookFailure as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    except (ApiException, HTTPError, OSError) as error:
        code = getattr(error, "status", None) or ""
        print(
            f"error talking to the API server {code}: {error} (check the hook's RBAC and "
            "that the API server is reachable)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
