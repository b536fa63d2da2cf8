"""Model integrity through the real kube-apiserver: verifier injection that passes Pod Security
"restricted", read-only model mounts, and a forged verifier result that must not be recorded.

Verifier results from a verifier that really ran (the kubelet's termination message: Events,
DeployedModels, metrics, the CycloneDX inventory, tampered, unsigned and payload-carrying
models) are tested on the real node: tests/e2e/node/test_verifier.py. Here the forged result is
written into the pod's status by hand, standing in for an attacker's own init container.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modelward_dev.controlplane import ToolRunner
from modelward_dev.operator_process import OperatorProcess
from tests.e2e.helpers import apply, apply_policy, cluster_policy, get_json, pod, wait_for
from tests.unit.engine.builders import DIGEST
from tests.unit.integrity.conftest import make_key, sign_key_cli

pytestmark = [pytest.mark.usefixtures("operator"), pytest.mark.slow]

VERIFIER_IMAGE = f"registry.example.com/modelward@{DIGEST}"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def signed_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small model signed with the real model_signing CLI (key method, P-256)."""
    root = tmp_path_factory.mktemp("model")
    model = root / "llama"
    model.mkdir()
    (model / "config.json").write_text('{"layers": 2}')
    (model / "weights.bin").write_bytes(os.urandom(256 * 1024))
    key = make_key(root, "release")
    sign_key_cli(model, key, model / "model.sig")
    return {"model": model, "public": key.public, "root": root}


def integrity_policy(namespace: str, public_key: str, mode: str) -> dict[str, Any]:
    return cluster_policy(
        namespace,
        namespace,
        {
            "integrity": {
                "trustedSigners": [{"name": "release", "publicKey": public_key}],
                "verifier": {"image": VERIFIER_IMAGE},
            }
        },
        mode=mode,
    )


def model_pod(name: str, namespace: str) -> dict[str, Any]:
    body = pod(name, namespace)
    body["metadata"]["annotations"] = {
        "modelward.io/model-volume": "models",
        "modelward.io/model-path": "llama",
    }
    body["spec"]["volumes"].append(
        {"name": "models", "persistentVolumeClaim": {"claimName": "models"}}
    )
    body["spec"]["containers"][0]["volumeMounts"].append(
        {"name": "models", "mountPath": "/mnt/models", "readOnly": True}
    )
    return body


def test_patch_injects_a_verifier_that_passes_pod_security_restricted(
    kubectl: ToolRunner, namespace: str, signed_model: dict[str, Path]
) -> None:
    kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted", check=True
    )
    apply_policy(kubectl, integrity_policy(namespace, signed_model["public"].read_text(), "Patch"))
    result = apply(kubectl, model_pod("served", namespace))
    assert result.returncode == 0, result.stderr  # PodSecurity "restricted" admitted it
    stored = get_json(kubectl, "pod", "served", "-n", namespace)
    verifier = stored["spec"]["initContainers"][-1]
    assert verifier["name"].startswith("modelward-verify-") and verifier["image"] == VERIFIER_IMAGE
    assert verifier["args"][:3] == ["verify-pod", "--model-path", "/modelward/model/llama"]
    assert all(m["readOnly"] for m in verifier["volumeMounts"])
    assert signed_model["public"].read_text() in stored["metadata"]["annotations"].values()
    # Re-admitting the stored spec changes nothing (idempotent injection).
    again = dict(stored)
    again["metadata"] = {
        "name": "served-again",
        "namespace": namespace,
        "annotations": stored["metadata"]["annotations"],
        "labels": stored["metadata"]["labels"],
    }
    again.pop("status", None)
    result = apply(kubectl, again)
    assert result.returncode == 0 and "modelward patched" not in result.stderr, result.stderr


def test_enforce_denies_a_writable_model_mount(
    kubectl: ToolRunner, namespace: str, signed_model: dict[str, Path]
) -> None:
    apply_policy(
        kubectl, integrity_policy(namespace, signed_model["public"].read_text(), "Enforce")
    )
    body = model_pod("writer", namespace)
    body["spec"]["containers"][0]["volumeMounts"][-1]["readOnly"] = False
    result = apply(kubectl, body)
    assert (
        result.returncode != 0
        and "[MW-INT-002]" in result.stderr
        and "[MW-INT-004]" in result.stderr
    )


def _run_verifier(signed_model: dict[str, Path], tmp_path: Path, policy: str) -> str:
    log = tmp_path / "termination-log"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "modelward",
            "verify-pod",
            "--model-path",
            str(signed_model["model"]),
            "--signature",
            str(signed_model["model"] / "model.sig"),
            "--public-key",
            str(signed_model["public"]),
            "--policy",
            policy,
            "--termination-log",
            str(log),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return log.read_text()


def _report(
    kubectl: ToolRunner, name: str, namespace: str, container: str, message: str, exit_code: int
) -> None:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # as the kubelet writes it
    status = {
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [
                {
                    "name": container,
                    "image": VERIFIER_IMAGE,
                    "imageID": "",
                    "ready": exit_code == 0,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "reason": "Completed" if exit_code == 0 else "Error",
                            "message": message,
                            "startedAt": now,
                            "finishedAt": now,
                        }
                    },
                }
            ],
        }
    }
    kubectl(
        "patch",
        "pod",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
        check=True,
    )


def _reasons(kubectl: ToolRunner, namespace: str) -> list[str]:
    return [e["reason"] for e in get_json(kubectl, "events", "-n", namespace)["items"]]


def test_a_forged_verifier_on_a_pod_no_policy_selects_is_not_recorded(
    kubectl: ToolRunner,
    namespace: str,
    signed_model: dict[str, Path],
    tmp_path: Path,
    operator: OperatorProcess,
) -> None:
    """Issue 9 #3, as a pod author would forge it: a pod no integrity policy selects, an init
    container named like modelward's verifier running the author's own image, and a
    termination message copied from a genuine verification (the release key's fingerprint)."""
    genuine = _run_verifier(signed_model, tmp_path, "ClusterModelPolicy release")
    assert json.loads(genuine)["result"] == "verified"
    body = model_pod("forged", namespace)
    body["spec"]["initContainers"] = [
        {"name": "modelward-verify-0badc0de", "image": "attacker.example.com/fake:1"}
    ]
    assert apply(kubectl, body).returncode == 0  # no policy selects it: admitted
    _report(kubectl, "forged", namespace, "modelward-verify-0badc0de", genuine, 0)
    # The operator has seen the result once it warns about it; only then judge the absence.
    wait_for(
        "the UnrecognisedVerifier warning",
        lambda: "UnrecognisedVerifier" in _reasons(kubectl, namespace),
    )
    reasons = _reasons(kubectl, namespace)
    assert "ModelVerified" not in reasons and "ModelRejected" not in reasons
    assert get_json(kubectl, "deployedmodels", "-n", namespace)["items"] == []
