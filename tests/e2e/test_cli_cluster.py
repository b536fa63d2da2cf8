"""The CLI's cluster flags against a real kube-apiserver: `inventory --kubeconfig/--context/-n
-o yaml` reads what is there; a context whose API server is down exits 2 in one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import ApiClient, CustomObjectsApi

from modelward_dev.controlplane import LocalControlPlane

DIGEST = "sha256:" + "ab" * 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _two_contexts(plane: LocalControlPlane, path: Path) -> Path:
    """The admin kubeconfig, plus a context `down` whose server nothing listens on."""
    config: dict[str, Any] = yaml.safe_load(Path(plane.kubeconfig_path).read_text())
    real = config["contexts"][0]
    config["clusters"].append(
        {"name": "down", "cluster": {"server": f"http://127.0.0.1:{_free_port()}"}}
    )
    config["contexts"].append(
        {"name": "down", "context": {"cluster": "down", "user": real["context"]["user"]}}
    )
    config["current-context"] = "down"  # --context must choose the real one
    path.write_text(yaml.safe_dump(config))
    return path


def _modelward(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "KUBECONFIG": str(tmp_path / "not-this-one"),  # --kubeconfig must win
    }
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return subprocess.run(
        [sys.executable, "-m", "modelward", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_inventory_kubeconfig_context_and_namespace(
    control_plane: LocalControlPlane,
    crds: list[Path],
    kube_client: ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    CustomObjectsApi(kube_client).create_namespaced_custom_object(
        "modelward.io",
        "v1alpha1",
        namespace,
        "deployedmodels",
        {
            "apiVersion": "modelward.io/v1alpha1",
            "kind": "DeployedModel",
            "metadata": {"name": "m-" + "ab" * 8},
            "spec": {"digest": DIGEST, "signer": "release", "lastResult": "verified"},
        },
    )
    config = _two_contexts(control_plane, tmp_path / "kubeconfig")
    real = yaml.safe_load(config.read_text())["contexts"][0]["name"]
    done = _modelward(
        "inventory",
        "--kubeconfig",
        str(config),
        "--context",
        real,
        "-n",
        namespace,
        "-o",
        "yaml",
        tmp_path=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    models = yaml.safe_load(done.stdout)["models"]
    assert [(m["namespace"], m["digest"]) for m in models] == [(namespace, DIGEST)]

    down = _modelward(
        "inventory", "--kubeconfig", str(config), "--context", "down", tmp_path=tmp_path
    )
    assert down.returncode == 2 and down.stdout == ""
    assert down.stderr.count("\n") == 1 and "cannot reach the API server" in down.stderr
    assert "context down" in down.stderr and "Traceback" not in down.stderr
