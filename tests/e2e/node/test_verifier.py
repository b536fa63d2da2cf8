"""The injected verifier really runs, from modelward's image, in pods on the node.

A model signed with the real ``model_signing`` tool is delivered as model servers get models:
copied by an init container into an emptyDir (here from a ConfigMap; a downloader in real
life), or mounted as an OCI image volume (containerd >= 2.1). The mutating webhook of the
helm-installed modelward appends the verifier; the kubelet runs it and copies its termination
message into the pod status, where modelward's leader reads it. Nothing is written by hand.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modelward.integrity.result import parse_termination_message
from modelward_dev.cluster import LocalCluster
from modelward_dev.controlplane import ToolRunner, loopback_opener
from modelward_dev.images import ImageConfig, Layer, build_image
from tests.e2e.node.conftest import (
    RESTRICTED_CONTAINER,
    SCOPE_LABEL,
    Release,
    apply,
    apply_policy,
    busybox_pod,
    get,
    pod_state,
    wait_for_phase,
    wait_until,
)
from tests.unit.integrity.conftest import make_key, sign_key_cli

MODEL_FILES = ("config.json", "weights.bin", "model.sig")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A model signed with the real model_signing CLI, a tampered copy and an unsigned one."""
    root = tmp_path_factory.mktemp("models")
    signed = root / "signed"
    signed.mkdir()
    (signed / "config.json").write_text('{"layers": 2}')
    (signed / "weights.bin").write_bytes(os.urandom(64 * 1024))
    key = make_key(root, "release")
    sign_key_cli(signed, key, signed / "model.sig")
    tampered = root / "tampered"
    shutil.copytree(signed, tampered)
    (tampered / "config.json").write_text('{"layers": 3}')
    unsigned = root / "unsigned"
    shutil.copytree(signed, unsigned)
    (unsigned / "model.sig").unlink()
    # Signed by the release key all the same: a signature says who shipped it, not that it
    # is safe to load. A protocol-0 pickle that calls os.system when loaded (never loaded).
    payload = root / "payload"
    payload.mkdir()
    (payload / "config.json").write_text('{"layers": 2}')
    (payload / "weights.bin").write_bytes(b"cposix\nsystem\n(S'id'\ntR.")
    sign_key_cli(payload, key, payload / "model.sig")
    return {
        "signed": signed,
        "tampered": tampered,
        "unsigned": unsigned,
        "payload": payload,
        "public": key.public,
    }


@pytest.fixture
def namespace(
    cluster: LocalCluster,
    cluster_kubectl: ToolRunner,
    cluster_namespace: str,
    models: dict[str, Path],
    modelward_release: Release,
) -> str:
    """A namespace modelward intercepts, with an integrity policy in Patch mode whose verifier
    image is modelward's own (by digest)."""
    # Enforced (failurePolicy Fail): a review that cannot reach modelward fails loudly
    # instead of admitting the pod unpatched.
    cluster_kubectl(
        "label",
        "namespace",
        cluster_namespace,
        f"{SCOPE_LABEL}=yes",
        "modelward.io/model-serving=true",
        check=True,
    )
    apply_policy(
        cluster_kubectl,
        {
            "apiVersion": "modelward.io/v1alpha1",
            "kind": "ClusterModelPolicy",
            "metadata": {"name": cluster_namespace},
            "spec": {
                "mode": "Patch",
                "match": {"namespaces": [cluster_namespace]},
                "integrity": {
                    "trustedSigners": [
                        {"name": "release", "publicKey": models["public"].read_text()}
                    ],
                    "verifier": {"image": modelward_release.image},
                },
            },
        },
    )
    return cluster_namespace


def _server(cluster: LocalCluster) -> dict[str, Any]:
    return {
        "name": "server",
        "image": cluster.image("busybox"),
        "command": ["sh", "-c", "echo serving $(ls /mnt/models/llama); exec sleep 3600"],
        "securityContext": RESTRICTED_CONTAINER,
        "volumeMounts": [{"name": "models", "mountPath": "/mnt/models", "readOnly": True}],
    }


def _pod_spec(cluster: LocalCluster, volumes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 1,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_server(cluster)],
        "volumes": volumes,
    }


def _metadata(name: str, namespace: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "annotations": {
            "modelward.io/model-volume": "models",
            "modelward.io/model-path": "llama",
        },
    }


def copied_model_pod(
    cluster: LocalCluster, kubectl: ToolRunner, name: str, namespace: str, model: Path
) -> dict[str, Any]:
    """The model copied by an init container into an emptyDir (a downloader stand-in)."""
    files = {
        f: base64.b64encode((model / f).read_bytes()).decode()
        for f in MODEL_FILES
        if (model / f).exists()
    }
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-files", "namespace": namespace},
        "binaryData": files,
    }
    assert apply(kubectl, config_map).returncode == 0
    spec = _pod_spec(
        cluster,
        [
            {"name": "models", "emptyDir": {}},
            {"name": "source", "configMap": {"name": f"{name}-files"}},
        ],
    )
    spec["initContainers"] = [
        {
            "name": "download",
            "image": cluster.image("busybox"),
            "command": ["sh", "-c", "mkdir -p /models/llama && cp -L /source/* /models/llama/"],
            "securityContext": RESTRICTED_CONTAINER,
            "volumeMounts": [
                {"name": "models", "mountPath": "/models"},
                {"name": "source", "mountPath": "/source", "readOnly": True},
            ],
        }
    ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _metadata(name, namespace), "spec": spec}


def image_model_pod(
    cluster: LocalCluster, name: str, namespace: str, model: Path
) -> dict[str, Any]:
    """The model as an OCI image volume: built from its files, pushed to the registry."""
    layer = Layer()
    for file in sorted(model.iterdir()):
        layer.add_host_file(f"/llama/{file.name}", file, mode=0o444)
    image = build_image(f"model-{name}", [layer], ImageConfig(env=()))
    digest = image.push(cluster.registry.client(), f"models/{name}", "v1")
    reference = f"{cluster.registry.host}/models/{name}@{digest}"
    spec = _pod_spec(
        cluster,
        [{"name": "models", "image": {"reference": reference, "pullPolicy": "IfNotPresent"}}],
    )
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _metadata(name, namespace), "spec": spec}


def _verifier_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = pod["status"].get("initContainerStatuses") or []
    verifiers = [s for s in statuses if s["name"].startswith("modelward-verify-")]
    assert verifiers, f"no verifier was injected: {[s['name'] for s in statuses]}"
    status: dict[str, Any] = verifiers[0]
    return status


def _events(kubectl: ToolRunner, namespace: str, pod: str, reason: str) -> list[dict[str, Any]]:
    return [
        e
        for e in get(kubectl, "events", "-n", namespace)["items"]
        if e["reason"] == reason and e["involvedObject"].get("name") == pod
    ]


@pytest.mark.parametrize("delivery", ["copied", "image-volume"])
def test_a_signed_model_is_verified_in_the_pod_and_served(
    cluster: LocalCluster,
    cluster_kubectl: ToolRunner,
    namespace: str,
    models: dict[str, Path],
    modelward_release: Release,
    delivery: str,
) -> None:
    name = f"llm-{delivery}"
    body = (
        copied_model_pod(cluster, cluster_kubectl, name, namespace, models["signed"])
        if delivery == "copied"
        else image_model_pod(cluster, name, namespace, models["signed"])
    )
    created = apply(cluster_kubectl, body)
    assert created.returncode == 0, created.stderr
    pod = wait_for_phase(cluster_kubectl, name, namespace, "Running", timeout=120)

    verifier = _verifier_status(pod)
    assert verifier["image"].endswith(modelward_release.image.split("@")[1]) or (
        verifier["imageID"].endswith(modelward_release.image.split("@")[1])
    )
    terminated = verifier["state"]["terminated"]
    assert terminated["exitCode"] == 0
    result = parse_termination_message(terminated["message"])  # written by the kubelet
    assert result.result == "verified"
    assert result.digest.startswith("sha256:")

    logs = cluster_kubectl("logs", name, "-n", namespace, "-c", "server", check=True).stdout
    assert "serving" in logs and "weights.bin" in logs

    events = wait_until(
        "the ModelVerified Event",
        lambda: _events(cluster_kubectl, namespace, name, "ModelVerified"),
        explain=lambda: pod_state(cluster_kubectl, name, namespace),
    )
    assert result.digest in events[0]["message"]
    record = result.digest.replace(":", "-")
    wait_until(
        "the DeployedModel",
        lambda: cluster_kubectl("get", "deployedmodel", record, "-n", namespace).returncode == 0,
    )
    spec = get(cluster_kubectl, "deployedmodel", record, "-n", namespace)["spec"]
    assert spec["digest"] == result.digest and spec["lastResult"] == "verified"
    assert {"kind": "Pod", "name": name} in spec["workloads"]

    # The leader counted it: read /metrics of both replicas at their pod IPs.
    def counted() -> bool:
        total = 0.0
        pods = get(
            cluster_kubectl,
            "pods",
            "-n",
            modelward_release.namespace,
            "-l",
            "app.kubernetes.io/name=modelward",
        )["items"]
        for replica in pods:
            ip = replica["status"].get("podIP")
            if not ip:
                continue
            with loopback_opener().open(f"http://{ip}:8080/metrics", timeout=5) as response:
                for line in response.read().decode().splitlines():
                    if line.startswith("modelward_model_verifications_total{") and (
                        f'namespace="{namespace}"' in line and 'result="verified"' in line
                    ):
                        total += float(line.rsplit(" ", 1)[1])
        return total >= 1

    wait_until("the verification in modelward_model_verifications_total", counted)

    # The inventory exports it as a valid CycloneDX 1.6 ML-BOM.
    env = dict(os.environ, KUBECONFIG=str(cluster.control_plane.kubeconfig_path))
    out = subprocess.run(
        [sys.executable, "-m", "modelward", "inventory", "-n", namespace, "-o", "cyclonedx"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(out) is None
    [component] = json.loads(out)["components"]
    assert component["type"] == "machine-learning-model"
    assert component["hashes"] == [{"alg": "SHA-256", "content": result.digest.split(":")[1]}]

    # The inventory outlives the pod.
    cluster_kubectl("delete", "pod", name, "-n", namespace, "--wait", check=True)
    assert cluster_kubectl("get", "deployedmodel", record, "-n", namespace).returncode == 0


@pytest.mark.parametrize(
    ("model", "delivery", "expected"),
    [
        ("tampered", "copied", "config.json"),
        ("unsigned", "image-volume", "model.sig"),
        ("payload", "copied", "posix.system"),
    ],
)
def test_a_tampered_unsigned_or_payload_carrying_model_holds_the_pod_in_init(
    cluster: LocalCluster,
    cluster_kubectl: ToolRunner,
    namespace: str,
    models: dict[str, Path],
    model: str,
    delivery: str,
    expected: str,
) -> None:
    name = f"{model}-{delivery}"
    body = (
        copied_model_pod(cluster, cluster_kubectl, name, namespace, models[model])
        if delivery == "copied"
        else image_model_pod(cluster, name, namespace, models[model])
    )
    created = apply(cluster_kubectl, body)
    assert created.returncode == 0, created.stderr

    events = wait_until(
        "the ModelRejected Event",
        lambda: _events(cluster_kubectl, namespace, name, "ModelRejected"),
        timeout=120,
        explain=lambda: pod_state(cluster_kubectl, name, namespace),
    )
    assert events[0]["type"] == "Warning" and expected in events[0]["message"], events[0]
    pod = get(cluster_kubectl, "pod", name, "-n", namespace)
    assert pod["status"]["phase"] == "Pending"
    verifier = _verifier_status(pod)
    finished = verifier["state"].get("terminated") or verifier.get("lastState", {}).get(
        "terminated"
    )
    assert finished is not None and finished["exitCode"] != 0
    reported = parse_termination_message(finished["message"])
    assert not reported.admitted
    if model == "payload":  # the signature holds; the scan refuses what it would run
        assert (reported.result, reported.scan) == ("verified", "unsafe")
        assert "scan unsafe" in events[0]["message"]
    # The serving container never started.
    server = pod["status"]["containerStatuses"][0]
    assert "waiting" in server["state"] and not server.get("lastState"), server
    assert server.get("started") is not True


def test_a_forged_verifier_that_really_runs_is_not_recorded(
    cluster: LocalCluster,
    cluster_kubectl: ToolRunner,
    cluster_namespace: str,
    models: dict[str, Path],
    modelward_release: Release,
    tmp_path: Path,
) -> None:
    """Issue 9 #3 with nothing written by hand: in a namespace modelward intercepts but no
    integrity policy selects, the pod's author runs their own "verifier" (busybox, named like
    modelward's) that prints a termination message copied from a genuine verification. The
    kubelet reports it exactly as it would report modelward's; nothing is recorded as verified."""
    namespace = cluster_namespace
    cluster_kubectl("label", "namespace", namespace, f"{SCOPE_LABEL}=yes", check=True)
    log = tmp_path / "genuine"
    subprocess.run(
        [
            sys.executable, "-m", "modelward", "verify-pod",
            "--model-path", str(models["signed"]),
            "--signature", str(models["signed"] / "model.sig"),
            "--public-key", str(models["public"]),
            "--policy", "ClusterModelPolicy release",
            "--termination-log", str(log),
        ],
        capture_output=True, check=False,
    )  # fmt: skip
    genuine = log.read_text()
    assert parse_termination_message(genuine).result == "verified"
    body = busybox_pod(cluster, "forged", namespace, "exec sleep 3600")
    body["metadata"]["annotations"] = _metadata("forged", namespace)["annotations"]
    body["spec"]["volumes"] = [{"name": "models", "emptyDir": {}}]
    name = "modelward-verify-" + "0" * 40
    body["spec"]["initContainers"] = [
        {
            "name": name,
            "image": cluster.image("busybox"),
            "command": ["sh", "-c", 'printf %s "$FORGED" > /dev/termination-log'],
            "env": [{"name": "FORGED", "value": genuine}],
            "securityContext": RESTRICTED_CONTAINER,
            "volumeMounts": [{"name": "models", "mountPath": "/modelward/model", "readOnly": True}],
        }
    ]
    created = apply(cluster_kubectl, body)
    assert created.returncode == 0, created.stderr  # no integrity policy selects it
    pod = wait_for_phase(cluster_kubectl, "forged", namespace, "Running", timeout=90)
    (reported,) = pod["status"]["initContainerStatuses"]
    assert reported["state"]["terminated"]["exitCode"] == 0
    assert reported["state"]["terminated"]["message"] == genuine  # the kubelet reported it

    def reasons() -> list[str]:
        return [e["reason"] for e in get(cluster_kubectl, "events", "-n", namespace)["items"]]

    # The leader has judged the result once it warns about it; only then judge the absence.
    wait_until("the UnrecognisedVerifier warning", lambda: "UnrecognisedVerifier" in reasons())
    assert "ModelVerified" not in reasons() and "ModelRejected" not in reasons()
    assert get(cluster_kubectl, "deployedmodels", "-n", namespace)["items"] == []
