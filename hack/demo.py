"""`make demo`: modelward's main job on a small real cluster, start to finish.

Starts a LocalCluster (etcd + kube-apiserver, kube-scheduler, kube-controller-manager, a local
registry, containerd + kubelet: pods really run), builds modelward's image from this checkout,
installs the chart with ``helm install``, applies the example policies and workloads from
manifests/examples/ (what is denied, what is patched), then serves a model signed with the
real ``model_signing`` tool next to a tampered copy: the injected verifier runs in each pod,
the signed one is served, the tampered one is held in Init. It ends with the Events, the
DeployedModel inventory and metrics, and tears everything down (``--keep``: after Enter).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "hack")]

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from modelward_dev.binaries import find_binaries, find_node_binaries  # noqa: E402
from modelward_dev.cluster import LocalCluster  # noqa: E402
from modelward_dev.controlplane import loopback_opener  # noqa: E402
from modelward_dev.install import Release, install_modelward  # noqa: E402

EXAMPLES = ROOT / "manifests" / "examples"
MODELS_NAMESPACE = "models-demo"
STEPS = 9
BOLD, RED, GREEN, YELLOW, DIM, RESET = (
    ("\033[1m", "\033[31m", "\033[32m", "\033[33m", "\033[2m", "\033[0m")
    if sys.stdout.isatty()
    else ("",) * 6
)
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def step(number: int, text: str) -> None:
    print(f"\n{BOLD}[{number}/{STEPS}] {text}{RESET}", flush=True)


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.strip().splitlines())


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.25)
    return value


def sign_models(folder: Path) -> tuple[Path, Path, str]:
    """A model signed with the real model_signing CLI, and a tampered copy; the public key."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = folder / "release.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signed = folder / "signed"
    signed.mkdir()
    (signed / "config.json").write_text('{"architecture": "demo", "layers": 2}')
    (signed / "weights.bin").write_bytes(os.urandom(64 * 1024))
    tool = Path(sys.executable).parent / "model_signing"
    done = subprocess.run(
        [
            str(tool),
            "sign",
            "key",
            "--private_key",
            str(private),
            "--signature",
            str(signed / "model.sig"),
            str(signed),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"demo: model_signing failed: {done.stderr}")
    private.unlink()  # the demo signs once; the key never leaves this function
    tampered = folder / "tampered"
    shutil.copytree(signed, tampered)
    (tampered / "config.json").write_text('{"architecture": "demo", "layers": 3}')
    return signed, tampered, public.decode()


def model_pod(cluster: LocalCluster, name: str, model: Path) -> list[dict[str, Any]]:
    """A ConfigMap holding the model's files and a pod whose init container copies them into
    an emptyDir (a downloader's stand-in); the server lists the model and sleeps."""
    busybox = cluster.image("busybox")
    files = {f.name: base64.b64encode(f.read_bytes()).decode() for f in sorted(model.iterdir())}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-files", "namespace": MODELS_NAMESPACE},
            "binaryData": files,
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": MODELS_NAMESPACE,
                "annotations": {
                    "modelward.io/model-volume": "models",
                    "modelward.io/model-path": "llama",
                },
            },
            "spec": {
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 1,
                "securityContext": {
                    "runAsNonRoot": True,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "initContainers": [
                    {
                        "name": "download",
                        "image": busybox,
                        "command": ["sh", "-c", "mkdir -p /m/llama && cp -L /src/* /m/llama/"],
                        "securityContext": RESTRICTED,
                        "volumeMounts": [
                            {"name": "models", "mountPath": "/m"},
                            {"name": "source", "mountPath": "/src", "readOnly": True},
                        ],
                    }
                ],
                "containers": [
                    {
                        "name": "server",
                        "image": busybox,
                        "command": [
                            "sh",
                            "-c",
                            "echo serving $(ls /mnt/models/llama); exec sleep 3600",
                        ],
                        "securityContext": RESTRICTED,
                        "volumeMounts": [
                            {"name": "models", "mountPath": "/mnt/models", "readOnly": True}
                        ],
                    }
                ],
                "volumes": [
                    {"name": "models", "emptyDir": {}},
                    {"name": "source", "configMap": {"name": f"{name}-files"}},
                ],
            },
        },
    ]


def show_evidence(kubectl: Any, env: dict[str, str], folder: Path) -> None:
    """Apply the example exception (dated from now), render the evidence pack in the three
    formats into ``folder`` and print its summary."""
    exception = yaml.safe_load((EXAMPLES / "exceptions" / "ingress-rate-limit.yaml").read_text())
    now = time.time()
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    exception["spec"]["approvedAt"] = time.strftime(stamp, time.gmtime(now - 3600))
    exception["spec"]["expiresAt"] = time.strftime(stamp, time.gmtime(now + 30 * 86400))
    done = kubectl("apply", "-f", "-", input=yaml.safe_dump(exception))
    assert done.returncode == 0, done.stderr
    print(indent(kubectl("get", "modelpolicyexceptions", "-A").stdout))
    folder.mkdir(parents=True, exist_ok=True)
    for output, suffix in (("markdown", "md"), ("html", "html"), ("json", "json")):
        done = subprocess.run(
            [sys.executable, "-m", "modelward", "evidence", "-o", output, "--since", "1d"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        (folder / f"evidence.{suffix}").write_text(done.stdout)
    markdown = (folder / "evidence.md").read_text().splitlines()
    start = markdown.index("## Summary")
    end = markdown.index("## B008 activity: Restrict access by job function")
    print(indent("\n".join(markdown[start:end]).strip()))
    print(f"\n    the pack (Markdown, HTML, JSON with its SHA-256): {folder}/evidence.*")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the cluster running until Enter is pressed (KUBECONFIG is printed)",
    )
    parser.add_argument(
        "--evidence-dir",
        type=Path,
        default=ROOT / "demo-evidence",
        help="where step 9 writes the B008 evidence pack (Markdown, HTML, JSON)",
    )
    args = parser.parse_args()

    print(f"{BOLD}modelward demo{RESET}: a real cluster whose pods run, modelward as its pods")
    started = time.monotonic()
    step(1, "cluster: control plane, scheduler, controllers, registry, containerd + kubelet")
    find_binaries()
    find_node_binaries()
    cluster = LocalCluster()
    cluster.start()
    release: Release | None = None
    try:
        kubectl = cluster.control_plane.kubectl
        print(indent(kubectl("get", "nodes", "-o", "wide").stdout))
        print(
            f"    ready in {time.monotonic() - started:.0f} s; "
            f"KUBECONFIG={cluster.control_plane.kubeconfig_path}"
        )

        step(2, "modelward's image built from this checkout; helm install charts/modelward")
        release = install_modelward(cluster)
        print(f"    image {release.image}")
        print(indent(kubectl("get", "pods", "-n", release.namespace, "-o", "wide").stdout))

        step(3, "example policies (manifests/examples/policies/)")
        done = kubectl("apply", "-f", str(EXAMPLES / "workloads" / "00-namespace.yaml"))
        assert done.returncode == 0, done.stderr
        for path in sorted((EXAMPLES / "policies").glob("*.yaml")):
            done = kubectl("apply", "-f", str(path))
            assert done.returncode == 0, done.stderr
        wait_for(
            "the example policies to be Ready",
            lambda: (
                "False" not in kubectl("get", "cmp,mp", "-A").stdout
                and "True" in kubectl("get", "cmp,mp", "-A").stdout
            ),
            timeout=30,
        )
        print(indent(kubectl("get", "cmp,mp", "-A").stdout))

        step(4, "example workloads (manifests/examples/workloads/): denied, patched, admitted")
        for path in sorted((EXAMPLES / "workloads").glob("*.yaml")):
            if path.name.startswith("00-"):
                continue
            done = kubectl("apply", "-f", str(path))
            verdict = f"{GREEN}ADMITTED{RESET}" if done.returncode == 0 else f"{RED}DENIED{RESET}"
            print(f"\n  {verdict} {path.name}")
            print(indent((done.stdout + done.stderr).strip()))

        step(5, "a model signed with model_signing, and a tampered copy")
        folder = Path(tempfile.mkdtemp(prefix="modelward-demo-"))
        signed, tampered, public_key = sign_models(folder)
        kubectl("create", "namespace", MODELS_NAMESPACE, check=True)
        cluster.wait_for_service_account(MODELS_NAMESPACE)
        policy = {
            "apiVersion": "modelward.io/v1alpha1",
            "kind": "ClusterModelPolicy",
            "metadata": {"name": "models-demo-integrity"},
            "spec": {
                "mode": "Patch",
                "match": {"namespaces": [MODELS_NAMESPACE]},
                "integrity": {
                    "trustedSigners": [{"name": "release", "publicKey": public_key}],
                    "verifier": {"image": release.image},
                },
            },
        }
        kubectl("apply", "-f", "-", input=yaml.safe_dump(policy), check=True)
        wait_for(
            "the integrity policy to be Ready",
            lambda: (
                "True"
                in kubectl(
                    "get",
                    "cmp",
                    "models-demo-integrity",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                ).stdout
            ),
            timeout=30,
        )
        objects = model_pod(cluster, "llm-signed", signed) + model_pod(
            cluster, "llm-tampered", tampered
        )
        done = kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
        assert done.returncode == 0, done.stderr
        print(indent(done.stdout + done.stderr))
        shutil.rmtree(folder, ignore_errors=True)

        step(6, "the verifier modelward injected runs in each pod (from modelward's image)")

        def phase(name: str) -> str:
            return kubectl(
                "get", "pod", name, "-n", MODELS_NAMESPACE, "-o", "jsonpath={.status.phase}"
            ).stdout

        def events(reason: str) -> list[dict[str, Any]]:
            items = json.loads(
                kubectl("get", "events", "-n", MODELS_NAMESPACE, "-o", "json").stdout
            )["items"]
            return [e for e in items if e["reason"] == reason]

        wait_for("llm-signed to run", lambda: phase("llm-signed") == "Running")
        wait_for("the ModelRejected Event", lambda: events("ModelRejected"))
        wait_for("the ModelVerified Event", lambda: events("ModelVerified"))
        print(indent(kubectl("get", "pods", "-n", MODELS_NAMESPACE, "-o", "wide").stdout))
        logs = kubectl("logs", "llm-signed", "-n", MODELS_NAMESPACE, "-c", "server").stdout
        print(f"\n    {GREEN}llm-signed{RESET} server: {logs.strip()}")
        print(f"    {RED}llm-tampered{RESET} is held in Init; its server never started")

        step(7, "what was recorded: Events, the DeployedModel inventory")
        print(
            indent(
                kubectl(
                    "get",
                    "events",
                    "-n",
                    MODELS_NAMESPACE,
                    "--field-selector",
                    "reportingComponent=modelward",
                    "--sort-by=.lastTimestamp",
                ).stdout
            )
        )
        wait_for(
            "the DeployedModel",
            lambda: "sha256-" in kubectl("get", "deployedmodels", "-n", MODELS_NAMESPACE).stdout,
        )
        print()
        print(indent(kubectl("get", "deployedmodels", "-n", MODELS_NAMESPACE, "-o", "wide").stdout))
        env = dict(os.environ, KUBECONFIG=str(cluster.control_plane.kubeconfig_path))
        inventory = subprocess.run(
            [sys.executable, "-m", "modelward", "inventory", "-n", MODELS_NAMESPACE],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        print(f"\n    modelward inventory -n {MODELS_NAMESPACE}:")
        print(indent(inventory.stdout + inventory.stderr, "      "))

        step(8, "metrics of modelward's pods (read at their pod IPs)")
        pods = json.loads(
            kubectl(
                "get",
                "pods",
                "-n",
                release.namespace,
                "-l",
                "app.kubernetes.io/name=modelward",
                "-o",
                "json",
            ).stdout
        )["items"]
        for pod in pods:
            ip = pod["status"].get("podIP")
            with loopback_opener().open(f"http://{ip}:8080/metrics", timeout=5) as response:
                text = response.read().decode()
            shown = [
                line
                for line in text.splitlines()
                if line.startswith(
                    ("modelward_admission_requests_total{", "modelward_model_verifications_total{")
                )
            ]
            print(f"    {pod['metadata']['name']} ({ip}):")
            print(indent("\n".join(shown) or "(nothing counted yet)", "      "))
        step(9, "an approved exception, and the B008 evidence pack (modelward evidence)")
        show_evidence(kubectl, env, args.evidence_dir)
        print(f"\n{BOLD}demo finished in {time.monotonic() - started:.0f} s{RESET}")
        if args.keep:
            print(f"KUBECONFIG={cluster.control_plane.kubeconfig_path}; press Enter to stop")
            input()
    finally:
        cluster.stop()  # modelward's pods die with the node
        print(
            f"{DIM}cleaned up: node (with every pod), controllers, registry and control plane "
            f"stopped; the host is as it was{RESET}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
