"""The Helm chart installed for real: install, run with its RBAC, upgrade, uninstall.

Against a kube-apiserver of the module's own (the chart's operator judges every policy of its
cluster, so other tests' leftovers must not decide what it does): ``helm install`` into a fresh
namespace (the CRDs are already installed from manifests/crds, so the release sets
``crds.install=false``), every object is accepted and the webhook configurations carry the
chart's selectors. The API server then calls them for real: a namespace with the enforced
label is refused while modelward is unreachable (failurePolicy Fail), one without it is not
(Ignore). modelward is then run locally
*as the chart's ServiceAccount* with the chart's own arguments, which proves the RBAC is
sufficient (no Forbidden) and lets it create the certificate Secret and write the caBundle;
``kubectl auth can-i`` proves it is not more. ``helm upgrade`` keeps the certificate and the
caBundle; ``helm uninstall`` leaves no webhook configuration behind.

Safety for the rest of the session: no pod of the chart ever runs (no kubelet), so its
webhooks could only refuse. Every webhook's namespaceSelector requires a label unique to this
test (``webhook.namespaceSelector``), so no other test's namespace is ever intercepted, and
the configurations are deleted in ``finally`` even when helm or an assertion fails.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelward.api.webhooks import ALWAYS_EXCLUDED_NAMESPACES
from modelward.controller.scope import SCOPE_CONDITION
from modelward_dev.controlplane import (
    LocalControlPlane,
    ManagedProcess,
    ToolRunner,
    free_ports,
    loopback_opener,
    register_cleanup,
    unregister_cleanup,
)
from tests.conftest import own_control_plane
from tests.e2e.helpers import get_json, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "modelward"
ENFORCED = "modelward.io/model-serving"
WEBHOOK_API = "/apis/admissionregistration.k8s.io/v1"
WEBHOOK_RESOURCES = ("validatingwebhookconfigurations", "mutatingwebhookconfigurations")

#: Stand-ins for the Prometheus Operator's CRDs (not available offline), so the chart's
#: ServiceMonitor and PrometheusRule can be installed too. They accept any spec: promtool
#: checks the rules themselves (tests/chart/test_alerts.py).
MONITORING_CRDS = [
    {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "plural": plural,
                "singular": plural[:-1],
                "listKind": f"{kind}List",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    for kind, plural in (
        ("ServiceMonitor", "servicemonitors"),
        ("PrometheusRule", "prometheusrules"),
    )
]


class Release:
    """One helm release of the chart, uninstalled (and its webhooks deleted) in any case."""

    def __init__(self, control_plane: LocalControlPlane, tmp_path: Path) -> None:
        self.control_plane = control_plane
        self.tmp_path = tmp_path
        suffix = secrets.token_hex(3)
        self.name = f"mw-{suffix}"
        self.namespace = f"mw-helm-{suffix}"
        self.fullname = f"{self.name}-modelward"
        #: Every webhook of this release requires this namespace label: nothing else matches.
        self.scope = f"modelward-e2e.io/helm-{suffix}"
        self.values: dict[str, Any] = {
            "webhook": {
                "timeoutSeconds": 2,
                "namespaceSelector": {
                    "matchExpressions": [{"key": self.scope, "operator": "Exists"}]
                },
            },
            "operator": {"deadlineSeconds": 1},
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            # The CRDs come from manifests/crds (own_control_plane), unowned: a
            # second installer of CRDs leaves them alone (test_helm_lifecycle.py owns them).
            "crds": {"install": False},
        }

    def helm(self, *args: str, values: dict[str, Any] | None = None) -> Any:
        extra: list[str] = []
        if values is not None:
            path = self.tmp_path / f"values-{secrets.token_hex(2)}.yaml"
            path.write_text(yaml.safe_dump(values))
            extra = ["-f", str(path)]
        return self.control_plane.helm(*args, "--namespace", self.namespace, *extra, timeout=180)

    def cleanup(self) -> None:
        """Uninstall; then delete the webhook configurations by name whatever helm managed."""
        self.control_plane.helm("uninstall", self.name, "--namespace", self.namespace, timeout=120)
        for resource in WEBHOOK_RESOURCES:
            self.control_plane.api_request("DELETE", f"{WEBHOOK_API}/{resource}/{self.fullname}")

    def configuration(self, resource: str) -> dict[str, Any]:
        response = self.control_plane.api_request(
            "GET", f"{WEBHOOK_API}/{resource}/{self.fullname}"
        )
        assert response.status == 200, response.message
        return response.json()

    def ca_bundles(self) -> set[str | None]:
        return {
            hook["clientConfig"].get("caBundle")
            for resource in WEBHOOK_RESOURCES
            for hook in self.configuration(resource)["webhooks"]
        }


@pytest.fixture(scope="module")
def control_plane() -> Iterator[LocalControlPlane]:
    """A control plane of this module's own, CRDs installed: the chart's operator judges every
    policy of its cluster (its webhook scope falls back to the chart's while any policy fails
    to compile), so policies other tests leave in the session's cluster, some broken on
    purpose, must not decide what this test sees."""
    with own_control_plane() as plane:
        yield plane


@pytest.fixture(scope="module")
def kubectl(control_plane: LocalControlPlane) -> ToolRunner:
    return control_plane.kubectl


@pytest.fixture
def release(
    control_plane: LocalControlPlane, kubectl: ToolRunner, tmp_path: Path
) -> Iterator[Release]:
    kubectl(
        "apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(MONITORING_CRDS), check=True
    )
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
        check=True,
    )
    chart_release = Release(control_plane, tmp_path)
    register_cleanup(chart_release.cleanup)  # also on Ctrl-C or interpreter exit
    try:
        yield chart_release
    finally:
        unregister_cleanup(chart_release.cleanup)
        chart_release.cleanup()


def dry_run_pod(control_plane: LocalControlPlane, namespace: str) -> Any:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": "registry.example.com/x:1"}]},
    }
    return control_plane.api_request(
        "POST", f"/api/v1/namespaces/{namespace}/pods?dryRun=All", body=pod, timeout=30
    )


def create_namespace(control_plane: LocalControlPlane, name: str, labels: dict[str, str]) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    response = control_plane.api_request("POST", "/api/v1/namespaces", body=body)
    assert response.status == 201, response.message


def service_account_kubeconfig(
    control_plane: LocalControlPlane, kubectl: ToolRunner, release: Release
) -> Path:
    """A kubeconfig authenticating as the chart's ServiceAccount (a TokenRequest token)."""
    token = kubectl(
        "create", "token", release.fullname, "-n", release.namespace, "--duration=1h", check=True
    ).stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": control_plane.server_url,
                    "certificate-authority-data": base64.b64encode(control_plane.ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": "modelward", "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "modelward"}}],
        "current-context": "local",
    }
    path = release.tmp_path / "service-account.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def local_args(chart_args: list[str], tls_dir: Path) -> tuple[list[str], int]:
    """The Deployment's own ``modelward run`` arguments, with loopback ports and local files."""
    webhook_port, metrics_port = free_ports(2)
    replaced = {
        "--webhook-port": str(webhook_port),
        "--metrics-port": str(metrics_port),
        "--tls-cert-file": str(tls_dir / "tls.crt"),
        "--tls-key-file": str(tls_dir / "tls.key"),
        "--log-format": "text",
    }
    args = []
    for arg in chart_args:
        flag = arg.split("=", 1)[0]
        args.append(f"{flag}={replaced[flag]}" if flag in replaced else arg)
    assert args[0] == "run" and "--manage-certificates" in args, chart_args
    return [*args, "--webhook-host=127.0.0.1", "--metrics-host=127.0.0.1"], metrics_port


def wait_ready(process: ManagedProcess, metrics_port: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.running(), f"modelward exited\n{process.describe_failure(60)}"
        try:
            with loopback_opener().open(f"http://127.0.0.1:{metrics_port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except urllib.error.HTTPError as error:
            error.close()
        except OSError:
            pass
        assert time.monotonic() < deadline, f"modelward never ready\n{process.describe_failure(60)}"
        time.sleep(0.2)


def can_i(kubectl: ToolRunner, release: Release, *args: str) -> bool:
    subject = f"system:serviceaccount:{release.namespace}:{release.fullname}"
    result = kubectl("auth", "can-i", *args, f"--as={subject}")
    return result.stdout.strip() == "yes"


def test_install_run_upgrade_uninstall(
    release: Release, control_plane: LocalControlPlane, kubectl: ToolRunner
) -> None:
    installed = release.helm(
        "install", release.name, str(CHART), "--create-namespace", values=release.values
    )
    assert installed.returncode == 0, installed.stderr

    # Every object of the release exists on the server.
    manifest = release.helm("get", "manifest", release.name).stdout
    objects = [o for o in yaml.safe_load_all(manifest) if o]
    kinds = {o["kind"] for o in objects}
    assert {
        "Deployment",
        "Service",
        "ServiceAccount",
        "ClusterRole",
        "Role",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    } <= kinds
    found = kubectl("get", "-f", "-", "-o", "name", input=manifest, check=True)
    assert len(found.stdout.split()) == len(objects)
    crd_names = [
        yaml.safe_load(path.read_text())["metadata"]["name"]
        for path in sorted((CHART / "files" / "crds").glob("*.yaml"))
    ]
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *(f"crd/{name}" for name in crd_names),
        check=True,
    )

    # The webhook configurations: service clientConfig, selectors, failure policies.
    for resource, path in zip(WEBHOOK_RESOURCES, ("/validate", "/mutate"), strict=True):
        hooks = release.configuration(resource)["webhooks"]
        # enforced, fail-open, exceptions (and validate-rbac, for cluster-scoped RBAC objects)
        assert len(hooks) == (4 if path == "/validate" else 3)
        for hook in hooks:
            assert hook["clientConfig"]["service"] == {
                "name": release.fullname,
                "namespace": release.namespace,
                "path": path,
                "port": 443,
            }
            assert "caBundle" not in hook["clientConfig"]  # nobody has issued a certificate yet
            assert hook["timeoutSeconds"] == 2
            expressions = {e["key"]: e for e in hook["namespaceSelector"]["matchExpressions"]}
            excluded = set(expressions["kubernetes.io/metadata.name"]["values"])
            assert {*ALWAYS_EXCLUDED_NAMESPACES, release.namespace} <= excluded
            assert expressions[release.scope]["operator"] == "Exists"
            if "-exceptions." in hook["name"]:
                # ModelPolicyExceptions: fail closed in every intercepted namespace.
                assert ENFORCED not in expressions and hook["failurePolicy"] == "Fail"
                continue
            enforced = "failopen" not in hook["name"]
            assert expressions[ENFORCED]["operator"] == ("In" if enforced else "NotIn")
            closes = enforced and hook["name"] != "validate-rbac.modelward.io"  # fail-open
            assert hook["failurePolicy"] == ("Fail" if closes else "Ignore")

    # The API server uses them: modelward is unreachable (no pod runs), so a namespace with
    # the enforced label is refused and one without it is admitted.
    suffix = release.name.removeprefix("mw-")
    closed, open_ = f"mw-enforced-{suffix}", f"mw-open-{suffix}"
    create_namespace(control_plane, closed, {release.scope: "", ENFORCED: "true"})
    create_namespace(control_plane, open_, {release.scope: ""})
    refused = dry_run_pod(control_plane, closed)
    assert refused.status >= 500 and "failed calling webhook" in refused.message, refused.text
    assert "modelward.io" in refused.message
    assert dry_run_pod(control_plane, open_).status == 201

    # modelward as the chart's ServiceAccount, with the chart's arguments.
    deployment = get_json(kubectl, "deployment", release.fullname, "-n", release.namespace)
    chart_args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    tls_dir = release.tmp_path / "tls"
    tls_dir.mkdir()
    args, metrics_port = local_args(chart_args, tls_dir)
    env = dict(
        os.environ,
        KUBECONFIG=str(service_account_kubeconfig(control_plane, kubectl, release)),
        PYTHONPATH=str(REPO_ROOT / "operator"),
        PYTHONUNBUFFERED="1",
        POD_NAME="modelward-helm-e2e",
    )
    process = ManagedProcess(
        name="modelward (chart service account)",
        args=[sys.executable, "-m", "modelward", *args],
        log_path=release.tmp_path / "operator.log",
        env=env,
        cwd=REPO_ROOT,
    )
    register_cleanup(process.stop)
    try:
        process.start()
        wait_ready(process, metrics_port)
        secret = get_json(kubectl, "secret", f"{release.fullname}-tls", "-n", release.namespace)
        ca_bundle = secret["data"]["ca.crt"]
        wait_for("the caBundle in every webhook", lambda: release.ca_bundles() == {ca_bundle})
        # A policy the operator watches (status patched with the chart's RBAC), and an
        # existing pod breaking it, which the background audit (after 5 s) lists and reports
        # in a PolicyReport (created with the chart's RBAC).
        policy = {
            "apiVersion": "modelward.io/v1alpha1",
            "kind": "ClusterModelPolicy",
            "metadata": {"name": f"helm-{suffix}"},
            "spec": {"mode": "Audit", "match": {"namespaces": [open_]}, "images": {}},
        }
        kubectl("apply", "-f", "-", input=json.dumps(policy), check=True)
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "unpinned", "namespace": open_},
            "spec": {"containers": [{"name": "c", "image": "registry.example.com/x:1"}]},
        }
        kubectl("create", "-f", "-", input=json.dumps(pod), check=True, timeout=60)

        def policy_watched() -> bool:
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            with loopback_opener().open(url, timeout=5) as response:
                text = response.read().decode()
            return 'modelward_policies{kind="ClusterModelPolicy",ready="true"}' in text

        wait_for("the operator to see the policy through its watch", policy_watched)
        # The fail-open mutating webhook narrowed (webhook.scopeToPolicies) with the chart's
        # RBAC: the Audit policy patches nothing, so the open namespace is skipped there, by a
        # match condition of the operator's own, which the helm upgrade below (server-side
        # apply) must not conflict with.
        wait_for(
            "the operator's scope condition on the fail-open mutating webhook",
            lambda: any(
                c["name"] == SCOPE_CONDITION and open_ in c["expression"]
                for hook in release.configuration(WEBHOOK_RESOURCES[1])["webhooks"]
                if "failopen" in hook["name"]
                for c in hook.get("matchConditions") or []
            ),
        )
        wait_for(
            "the audit's PolicyReport",
            lambda: (
                kubectl("get", "policyreports.wgpolicyk8s.io", "modelward", "-n", open_).returncode
                == 0
            ),
            timeout=60,
        )
        time.sleep(2)  # let kopf's watches and the status writer run with these permissions
        log = process.log_tail(400)
        # An RBAC refusal names the ServiceAccount (other 403s exist in a shared session:
        # namespaces of earlier tests never finish terminating here, and refuse new objects).
        subject = f"system:serviceaccount:{release.namespace}:{release.fullname}"
        assert subject not in log, log
        assert "Not enough permissions" not in log, log  # kopf's warning
        assert "could not update the status" not in log, log
        assert f"could not write the PolicyReport of {open_}" not in log, log
    finally:
        unregister_cleanup(process.stop)
        process.stop()
        kubectl("delete", "cmp", f"helm-{suffix}", "--ignore-not-found")

    # ... and not more than it needs.
    ns = release.namespace
    assert can_i(kubectl, release, "update", f"secret/{release.fullname}-tls", "-n", ns)
    assert not can_i(kubectl, release, "get", "secret/other", "-n", ns)
    assert not can_i(kubectl, release, "get", "secrets", "-n", "kube-system")
    assert not can_i(kubectl, release, "list", "secrets", "-n", ns)
    assert can_i(kubectl, release, "patch", f"validatingwebhookconfigurations/{release.fullname}")
    assert not can_i(kubectl, release, "patch", "validatingwebhookconfigurations/modelward-local")
    assert not can_i(kubectl, release, "create", "pods", "-n", closed)
    assert not can_i(kubectl, release, "delete", "clustermodelpolicies")
    assert can_i(kubectl, release, "patch", "clustermodelpolicies", "--subresource=status")
    assert not can_i(kubectl, release, "patch", "clustermodelpolicies")
    assert not can_i(kubectl, release, "update", "deployments", "-n", closed)

    # helm upgrade changes the webhooks (one more excluded namespace) and keeps the certificate.
    before = get_json(kubectl, "secret", f"{release.fullname}-tls", "-n", ns)["metadata"]
    upgraded_values = {**release.values, "replicaCount": 3}
    upgraded_values["webhook"] = {
        **release.values["webhook"],
        "excludedNamespaces": ["kube-public", "legacy"],
    }
    upgraded = release.helm("upgrade", release.name, str(CHART), values=upgraded_values)
    assert upgraded.returncode == 0, upgraded.stderr
    assert get_json(kubectl, "deployment", release.fullname, "-n", ns)["spec"]["replicas"] == 3
    after = get_json(kubectl, "secret", f"{release.fullname}-tls", "-n", ns)["metadata"]
    assert after["resourceVersion"] == before["resourceVersion"]
    for resource in WEBHOOK_RESOURCES:
        for hook in release.configuration(resource)["webhooks"]:
            names = next(
                e
                for e in hook["namespaceSelector"]["matchExpressions"]
                if e["key"] == "kubernetes.io/metadata.name"
            )
            assert "legacy" in names["values"]
    assert release.ca_bundles() == {ca_bundle}, "helm upgrade lost the caBundle"
    # The chart renders the Secret's CA itself now (lookup), so even webhooks added by an
    # upgrade are trusted at once, before the operator's next check.
    assert ca_bundle in release.helm("get", "manifest", release.name).stdout

    # helm uninstall leaves no webhook configuration (nothing would intercept any more).
    uninstalled = release.helm("uninstall", release.name)
    assert uninstalled.returncode == 0, uninstalled.stderr
    for resource in WEBHOOK_RESOURCES:
        response = control_plane.api_request("GET", f"{WEBHOOK_API}/{resource}/{release.fullname}")
        assert response.status == 404, response.text
    leftovers = kubectl(
        "get",
        "clusterrole,clusterrolebinding,validatingwebhookconfiguration,"
        "mutatingwebhookconfiguration",
        "-l",
        f"app.kubernetes.io/instance={release.name}",
        "-o",
        "name",
    )
    assert leftovers.stdout.strip() == ""
    assert dry_run_pod(control_plane, closed).status == 201
    # The certificate Secret is the operator's, not helm's: it stays, and a re-install in this
    # namespace reuses its CA (docs/helm.md).
    assert (
        get_json(kubectl, "secret", f"{release.fullname}-tls", "-n", ns)["data"]["ca.crt"]
        == ca_bundle
    )
