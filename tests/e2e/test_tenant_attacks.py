"""The attacker's view: every protection tried by a tenant, not by the admin.

The tenant is a ServiceAccount holding exactly the built-in ``edit`` rules in a model-serving
namespace (``modelward_dev.tenant``), using its own token against the real kube-apiserver. The
webhooks are the chart's own configurations (``helm template`` of charts/modelward): the
enforced ``Fail`` webhook for namespaces labelled ``modelward.io/model-serving=true`` and the
fail-open complement everywhere else, both calling an operator of their own. The admin only
does what an admin does: label namespaces, write cluster policies, and (standing in for the
kubelet, since no kubelet runs here) report what a container printed into pod status.

docs/security.md names these tests next to the claims they hold.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelward_dev.controlplane import LocalControlPlane, ToolRunner
from modelward_dev.operator_process import HARNESS_SCOPE_LABEL, OperatorProcess
from modelward_dev.tenant import Tenant
from tests.e2e.helpers import apply, apply_policy, default_deny, get_json, pod, wait_for
from tests.e2e.test_integrity import model_pod as integrity_model_pod
from tests.unit.engine.builders import DIGEST, GOOD_IMAGE
from tests.unit.integrity.conftest import make_key

pytestmark = pytest.mark.slow

CONFIGURATION = "modelward-tenant"
SERVING_LABEL = "modelward.io/model-serving"
VERIFIER_IMAGE = f"registry.example.com/modelward@{DIGEST}"


@pytest.fixture(scope="module")
def chart_operator(control_plane: LocalControlPlane, crds: list[Path]) -> Iterator[OperatorProcess]:
    """modelward behind the chart's two webhook configurations (enforced + fail-open)."""
    process = OperatorProcess(
        control_plane=control_plane,
        namespace="modelward-tenant-system",
        configuration_name=CONFIGURATION,
        probe_namespace="modelward-tenant-probe",
        webhooks="chart",
    )
    with process:
        yield process


def _namespace(control_plane: LocalControlPlane, prefix: str, serving: bool) -> str:
    name = f"{prefix}-{secrets.token_hex(3)}"
    labels = {HARNESS_SCOPE_LABEL: CONFIGURATION}
    if serving:
        labels[SERVING_LABEL] = "true"
    response = control_plane.api_request(
        "POST", "/api/v1/namespaces", body={"metadata": {"name": name, "labels": labels}}
    )
    assert response.status == 201, response.message
    return name


@pytest.fixture
def serving_namespace(control_plane: LocalControlPlane, chart_operator: OperatorProcess) -> str:
    """A namespace under the enforced (``Fail``) webhook."""
    return _namespace(control_plane, "tenant-serving", serving=True)


@pytest.fixture
def open_namespace(control_plane: LocalControlPlane, chart_operator: OperatorProcess) -> str:
    """A namespace under the fail-open (``Ignore``) webhook, still selected by a policy."""
    return _namespace(control_plane, "tenant-open", serving=False)


@pytest.fixture
def tenant(control_plane: LocalControlPlane, serving_namespace: str) -> Iterator[Tenant]:
    with Tenant(control_plane=control_plane, namespace=serving_namespace) as identity:
        yield identity


def policy(name: str, namespaces: list[str], sections: dict[str, Any], mode: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelward.io/v1alpha1",
        "kind": "ClusterModelPolicy",
        "metadata": {"name": name},
        "spec": {"mode": mode, "match": {"namespaces": namespaces}, **sections},
    }


def as_tenant(tenant: Tenant, *objects: dict[str, Any], dry_run: bool = False) -> Any:
    extra = ("--dry-run=server",) if dry_run else ()
    return apply(tenant.kubectl, *objects, extra=extra)


# -- the identity itself --


def test_the_tenant_holds_edit_rights_and_nothing_more(tenant: Tenant) -> None:
    """The attacks below are made with a workload author's rights, not an admin's."""
    for verb, resource in (
        ("create", "pods"),
        ("update", "pods"),
        ("create", "deployments.apps"),
        ("create", "services"),
        ("create", "networkpolicies.networking.k8s.io"),
        ("create", "configmaps"),
        ("create", "ingresses.networking.k8s.io"),
    ):
        assert tenant.can(verb, resource), f"edit should allow {verb} {resource}"
    for verb, resource in (
        ("update", "pods/status"),
        ("patch", "pods/ephemeralcontainers"),
        ("patch", "namespaces"),
        ("create", "clustermodelpolicies.modelward.io"),
        ("create", "rolebindings.rbac.authorization.k8s.io"),
        ("delete", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
    ):
        assert not tenant.can(verb, resource), f"edit must not allow {verb} {resource}"


# -- isolation, through every door the tenant has --

ISOLATION = {"isolation": {"requireDefaultDenyNetworkPolicy": False}}


@pytest.mark.parametrize("mode", ["Enforce", "Patch"])
def test_privileged_pods_are_refused_through_every_controller(
    kubectl: ToolRunner, tenant: Tenant, serving_namespace: str, mode: str
) -> None:
    apply_policy(kubectl, policy(serving_namespace, [serving_namespace], ISOLATION, mode))
    bad = pod("host", serving_namespace)["spec"]
    bad["hostNetwork"] = True
    labels = {"app": "host"}
    template = {"metadata": {"labels": labels}, "spec": bad}
    objects = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "host"}, "spec": bad},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "host"},
            "spec": {"selector": {"matchLabels": labels}, "template": template},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "host"},
            "spec": {"selector": {"matchLabels": labels}, "template": template},
        },
        {
            "apiVersion": "v1",
            "kind": "ReplicationController",
            "metadata": {"name": "host"},
            "spec": {"selector": labels, "template": template},
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "host"},
            "spec": {"template": {**template, "spec": {**bad, "restartPolicy": "Never"}}},
        },
    ]
    for body in objects:
        result = as_tenant(tenant, body)
        assert result.returncode != 0 and "[MW-ISO-007]" in result.stderr, (
            body["kind"],
            result.stderr,
        )


def test_an_allow_all_network_policy_voids_default_deny(
    kubectl: ToolRunner, tenant: Tenant, serving_namespace: str
) -> None:
    apply(kubectl, default_deny(serving_namespace))
    apply_policy(
        kubectl,
        policy(serving_namespace, [serving_namespace], {"isolation": {}}, "Enforce"),
    )
    assert as_tenant(tenant, pod("before", serving_namespace), dry_run=True).returncode == 0
    allow_all = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "allow-all", "namespace": serving_namespace},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]},
    }
    assert as_tenant(tenant, allow_all).returncode == 0

    def refused() -> bool:
        result = as_tenant(tenant, pod("after", serving_namespace), dry_run=True)
        return result.returncode != 0 and "[MW-ISO-014]" in result.stderr

    wait_for("MW-ISO-014 to see the allow-all NetworkPolicy", refused)


def test_a_hand_projected_api_token_counts_as_automount(
    kubectl: ToolRunner, tenant: Tenant, serving_namespace: str
) -> None:
    apply_policy(kubectl, policy(serving_namespace, [serving_namespace], ISOLATION, "Enforce"))
    body = pod("token", serving_namespace, serviceAccountName=tenant.name)
    body["spec"]["volumes"].append(
        {
            "name": "api-token",
            "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]},
        }
    )
    body["spec"]["containers"][0]["volumeMounts"].append(
        {"name": "api-token", "mountPath": "/var/run/secrets/api", "readOnly": True}
    )
    result = as_tenant(tenant, body, dry_run=True)
    assert result.returncode != 0 and "[MW-ISO-013]" in result.stderr, result.stderr


def test_node_name_cannot_skip_the_gpu_pool(
    kubectl: ToolRunner, tenant: Tenant, serving_namespace: str
) -> None:
    sections = {
        "isolation": {
            "requireDefaultDenyNetworkPolicy": False,
            "gpu": {"resources": ["nvidia.com/gpu"]},
        }
    }
    apply_policy(kubectl, policy(serving_namespace, [serving_namespace], sections, "Enforce"))
    body = pod("pinned", serving_namespace, nodeName="gpu-node-1")
    body["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    result = as_tenant(tenant, body, dry_run=True)
    assert result.returncode != 0 and "nodeName" in result.stderr, result.stderr


def test_the_registry_glob_does_not_cross_path_segments(
    kubectl: ToolRunner, tenant: Tenant, serving_namespace: str
) -> None:
    sections = {"images": {"allowedRegistries": ["*.example.com/**"]}}
    apply_policy(kubectl, policy(serving_namespace, [serving_namespace], sections, "Enforce"))
    body = pod("evil", serving_namespace)
    body["spec"]["containers"][0]["image"] = f"evil.com/x.example.com/foo@{DIGEST}"
    result = as_tenant(tenant, body, dry_run=True)
    assert result.returncode != 0 and "[MW-IMG-002]" in result.stderr, result.stderr
    assert as_tenant(tenant, pod("fine", serving_namespace), dry_run=True).returncode == 0


# -- one request must not stall admission --


def test_a_pathological_value_does_not_open_the_fail_open_webhook(
    kubectl: ToolRunner,
    tenant: Tenant,
    serving_namespace: str,
    open_namespace: str,
    control_plane: LocalControlPlane,
) -> None:
    """While a review with an adversarial 200 kB env value is judged, a privileged pod sent
    through the fail-open webhook is still judged (and refused), and a good pod in the
    enforced namespace is still admitted."""
    namespaces = [serving_namespace, open_namespace]
    sections = {**ISOLATION, "secrets": {}}
    apply_policy(kubectl, policy(serving_namespace, namespaces, sections, "Enforce"))
    with Tenant(control_plane=control_plane, namespace=open_namespace) as other:
        slow = pod("slow", serving_namespace)
        slow["spec"]["containers"][0]["env"] = [
            {"name": "DATABASE_URL", "value": "http://" + "a:" * 100_000},
            {"name": "TOKEN", "value": "eyJ" + "a." * 100_000},
        ]
        outcome: dict[str, Any] = {}
        # create, not apply: apply would copy the values into an annotation, which the API
        # server refuses above 256 KiB before the validating webhooks see the pod.
        stalled = threading.Thread(
            target=lambda: outcome.setdefault(
                "slow",
                tenant.kubectl(
                    "create", "--dry-run=server", "-f", "-", input=json.dumps(slow), timeout=120
                ),
            )
        )
        stalled.start()
        # Let the pathological review reach modelward first (on the code this guards against,
        # it held the event loop for ~40 s). No correctness rests on this pause: modelward that
        # holds answers both requests whatever their order.
        time.sleep(1.0)
        try:
            privileged = pod("privileged", open_namespace)
            privileged["spec"]["hostNetwork"] = True
            privileged["spec"]["hostPID"] = True
            result = as_tenant(other, privileged, dry_run=True)
            assert result.returncode != 0 and "[MW-ISO-007]" in result.stderr, result.stderr
            good = as_tenant(tenant, pod("good", serving_namespace), dry_run=True)
            assert good.returncode == 0, good.stderr
        finally:
            stalled.join(timeout=120)
    # The pathological pod itself was judged by modelward (in time), not failed by a timeout.
    slow_result = outcome["slow"]
    assert "deadline" not in slow_result.stderr and "timeout" not in slow_result.stderr.lower()
    assert slow_result.returncode == 0 or "modelward" in slow_result.stderr, slow_result.stderr


# -- integrity --


@pytest.fixture(scope="module")
def release_key(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_key(tmp_path_factory.mktemp("keys"), "release").public.read_text()


def integrity(public_key: str) -> dict[str, Any]:
    return {
        "integrity": {
            "trustedSigners": [{"name": "release", "publicKey": public_key}],
            "verifier": {"image": VERIFIER_IMAGE},
        }
    }


def model_pod(name: str, namespace: str, *, gated: bool = True) -> dict[str, Any]:
    body = integrity_model_pod(name, namespace)
    if gated:  # stays Pending, so its spec can still be edited as an attacker would
        body["spec"]["schedulingGates"] = [{"name": "example.com/hold"}]
    return body


@pytest.fixture
def admitted_model_pod(
    kubectl: ToolRunner, tenant: Tenant, serving_namespace: str, release_key: str
) -> dict[str, Any]:
    """A model pod the tenant created in Patch mode: the verifier was injected."""
    apply_policy(
        kubectl,
        policy(
            serving_namespace, [serving_namespace], {**ISOLATION, **integrity(release_key)}, "Patch"
        ),
    )
    result = as_tenant(tenant, model_pod("llm", serving_namespace))
    assert result.returncode == 0, result.stderr
    stored = get_json(kubectl, "pod", "llm", "-n", serving_namespace)
    assert stored["spec"]["initContainers"][-1]["image"] == VERIFIER_IMAGE
    return stored


def test_the_verifier_keys_cannot_be_replaced(
    tenant: Tenant, admitted_model_pod: dict[str, Any], serving_namespace: str, tmp_path: Path
) -> None:
    annotations = admitted_model_pod["metadata"]["annotations"]
    keys = [name for name in annotations if name.startswith("keys.modelward.io/")]
    assert keys, annotations
    attacker = make_key(tmp_path, "attacker")
    for key in keys:
        result = tenant.kubectl(
            "annotate",
            "--overwrite",
            "pod/llm",
            "-n",
            serving_namespace,
            f"{key}={attacker.public.read_text()}",
        )
        assert result.returncode != 0 and "modelward" in result.stderr, result.stderr
        removed = tenant.kubectl("annotate", "pod/llm", "-n", serving_namespace, f"{key}-")
        assert removed.returncode != 0 and "modelward" in removed.stderr, removed.stderr
    for name in [n for n in annotations if n.startswith("modelward.io/model-")]:
        result = tenant.kubectl(
            "annotate",
            "--overwrite",
            "pod/llm",
            "-n",
            serving_namespace,
            f"{name}=elsewhere",
        )
        assert result.returncode != 0 and "modelward" in result.stderr, result.stderr


def test_the_verifier_image_and_arguments_cannot_be_changed(
    tenant: Tenant, admitted_model_pod: dict[str, Any], serving_namespace: str
) -> None:
    verifier = admitted_model_pod["spec"]["initContainers"][-1]["name"]
    result = tenant.kubectl(
        "set",
        "image",
        "pod/llm",
        "-n",
        serving_namespace,
        f"{verifier}=registry.example.com/fake-verifier@{DIGEST}",
    )
    assert result.returncode != 0 and "modelward" in result.stderr, result.stderr


def test_an_ephemeral_container_cannot_write_the_model(
    control_plane: LocalControlPlane, admitted_model_pod: dict[str, Any], serving_namespace: str
) -> None:
    """``edit`` cannot add ephemeral containers; an on-call role that may ``kubectl debug``
    can, and must still not get a writable model mount past modelward."""
    debug = {
        "apiGroups": [""],
        "resources": ["pods/ephemeralcontainers"],
        "verbs": ["get", "patch"],
    }
    with Tenant(
        control_plane=control_plane,
        namespace=serving_namespace,
        name="oncall",
        extra_rules=[debug],
    ) as oncall:
        _add_writable_ephemeral_container(oncall, serving_namespace)


def _add_writable_ephemeral_container(tenant: Tenant, serving_namespace: str) -> None:
    """Patch mode may repair the new container (the fix travels with this very update) or
    deny it; what it must never do is store a writable mount of the model."""
    ephemeral = {
        "spec": {
            "ephemeralContainers": [
                {
                    "name": "debugger",
                    "image": GOOD_IMAGE,
                    "volumeMounts": [{"name": "models", "mountPath": "/mnt/models"}],
                }
            ]
        }
    }
    result = tenant.kubectl(
        "patch",
        "pod/llm",
        "-n",
        serving_namespace,
        "--subresource=ephemeralcontainers",
        "--type=strategic",
        "-p",
        json.dumps(ephemeral),
    )
    if result.returncode != 0:
        assert "modelward" in result.stderr, result.stderr
        return
    stored = json.loads(
        tenant.kubectl("get", "pod/llm", "-n", serving_namespace, "-o", "json", check=True).stdout
    )
    (debugger,) = stored["spec"]["ephemeralContainers"]
    assert all(m.get("readOnly") for m in debugger["volumeMounts"]), debugger
    assert "ALL" in debugger["securityContext"]["capabilities"]["drop"], debugger


def test_a_forged_verifier_on_an_unselected_pod_is_not_recorded(
    kubectl: ToolRunner, tenant: Tenant, serving_namespace: str, release_key: str
) -> None:
    """The tenant runs its own 'verifier' on a pod no integrity policy selects; whatever it
    prints (reported into status as the kubelet would), no ModelVerified is recorded."""
    body = model_pod("forged", serving_namespace, gated=False)
    body["spec"]["initContainers"] = [
        {
            "name": "modelward-verify-release",
            "image": VERIFIER_IMAGE,
            "args": ["verify-pod", "--model-path", "/mnt/models/llama"],
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
        }
    ]
    assert as_tenant(tenant, body).returncode == 0
    digest = "sha256:" + "ab" * 32
    forged = json.dumps(
        {
            "version": 1,
            "result": "verified",
            "digest": digest,
            "signer": "release",
            "files": 1,
            "findings": [],
            "policy": "ClusterModelPolicy release",
        }
    )
    status = {
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [
                {
                    "name": "modelward-verify-release",
                    "image": VERIFIER_IMAGE,
                    "imageID": "",
                    "ready": True,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "message": forged,
                            "startedAt": "2026-11-26T00:00:00Z",
                            "finishedAt": "2026-11-26T00:00:01Z",
                        }
                    },
                }
            ],
        }
    }
    kubectl(
        "patch",
        "pod",
        "forged",
        "-n",
        serving_namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
        check=True,
    )

    def reasons() -> list[str]:
        return [e["reason"] for e in get_json(kubectl, "events", "-n", serving_namespace)["items"]]

    # The leader has judged the result once it warns about it; only then judge the absence.
    wait_for("the UnrecognisedVerifier warning", lambda: "UnrecognisedVerifier" in reasons())
    assert "ModelVerified" not in reasons() and "ModelRejected" not in reasons()
    name = digest.replace(":", "-")
    assert kubectl("get", "deployedmodel", name, "-n", serving_namespace).returncode != 0


# -- transport --


@pytest.mark.parametrize(
    ("labels", "annotations"),
    [
        ({"sidecar.istio.io/inject": "false"}, {"sidecar.istio.io/inject": "true"}),
        ({"istio.io/dataplane-mode": "none"}, {}),
    ],
    ids=["istio-label-beats-annotation", "ambient-opt-out"],
)
def test_a_pod_cannot_claim_mesh_tls_that_istio_would_not_give_it(
    kubectl: ToolRunner,
    tenant: Tenant,
    serving_namespace: str,
    labels: dict[str, str],
    annotations: dict[str, str],
) -> None:
    sections = {**ISOLATION, "transport": {"requireTLS": True}}
    apply_policy(kubectl, policy(serving_namespace, [serving_namespace], sections, "Enforce"))
    body = pod("meshless", serving_namespace)
    body["metadata"]["labels"].update(labels)
    body["metadata"]["annotations"] = annotations
    body["spec"]["volumes"] = []
    body["spec"]["containers"][0]["volumeMounts"] = []
    result = as_tenant(tenant, body, dry_run=True)
    assert result.returncode != 0 and "[MW-TLS-001]" in result.stderr, result.stderr


def test_a_load_balancer_cannot_expose_model_pods_without_tls(
    kubectl: ToolRunner, tenant: Tenant, serving_namespace: str
) -> None:
    sections = {**ISOLATION, "transport": {"requireTLS": True}}
    apply_policy(kubectl, policy(serving_namespace, [serving_namespace], sections, "Enforce"))
    assert as_tenant(tenant, pod("served", serving_namespace)).returncode == 0
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "public", "namespace": serving_namespace},
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": "served"},
            "ports": [{"port": 80, "targetPort": 8443}],
        },
    }
    result = as_tenant(tenant, service, dry_run=True)
    assert result.returncode != 0 and "modelward" in result.stderr, result.stderr


# -- policies the tenant cannot escape --


def test_the_shipped_integrity_example_cannot_be_escaped_by_a_pod_label(
    kubectl: ToolRunner, tenant: Tenant, serving_namespace: str
) -> None:
    """The example as shipped (only narrowed to this test's namespace): a model pod without
    the labels the example might look for still gets the verifier, or is refused."""
    example = Path(__file__).parents[2] / "manifests/examples/policies/integrity.yaml"
    documents = [d for d in yaml.safe_load_all(example.read_text()) if d]
    applied = []
    for document in documents:
        if document["kind"] == "ClusterModelPolicy":
            document["metadata"]["name"] += "-" + serving_namespace
            document["spec"]["match"]["namespaces"] = [serving_namespace]
            apply_policy(kubectl, document)
            applied.append(document["metadata"]["name"])
    try:
        body = model_pod("unlabelled", serving_namespace, gated=False)
        body["metadata"]["labels"] = {"app": "unlabelled"}
        result = tenant.kubectl(
            "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(body)
        )
        if result.returncode == 0:
            names = [c["name"] for c in json.loads(result.stdout)["spec"].get("initContainers", [])]
            assert any(name.startswith("modelward-verify-") for name in names), names
        else:
            assert "[MW-INT-" in result.stderr, result.stderr
    finally:
        for name in applied:
            kubectl("delete", "clustermodelpolicy", name, "--wait=false")
