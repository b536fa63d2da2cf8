"""`make demo`: modelward's main job on a local, real control plane, start to finish.

Starts (or reuses) etcd + kube-apiserver, installs the CRDs, runs the operator with its
webhooks registered, applies the example policies and workloads from manifests/examples/, and
shows what was denied, what was patched and what was recorded (Events, metrics, policy
status). Then it cleans up: the operator stops and its webhooks are removed; the control plane
stops too unless it was already running before or ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "hack")]

from modelward_dev.binaries import find_binaries  # noqa: E402
from modelward_dev.controlplane import LocalControlPlane, default_state_dir  # noqa: E402
from modelward_dev.operator_process import OperatorProcess  # noqa: E402

EXAMPLES = ROOT / "manifests" / "examples"
BOLD, RED, GREEN, YELLOW, DIM, RESET = (
    ("\033[1m", "\033[31m", "\033[32m", "\033[33m", "\033[2m", "\033[0m")
    if sys.stdout.isatty()
    else ("",) * 6
)


def step(number: int, text: str) -> None:
    print(f"\n{BOLD}[{number}/7] {text}{RESET}", flush=True)


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.strip().splitlines())


def apply_file(plane: LocalControlPlane, path: Path) -> tuple[bool, str]:
    result = plane.kubectl("apply", "-f", str(path))
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the control plane running afterwards (reused next time)",
    )
    parser.add_argument("--stop", action="store_true", help="stop a kept control plane and exit")
    args = parser.parse_args()
    if args.stop:
        stopped = LocalControlPlane.stop_reusable()
        print("stopped the demo control plane" if stopped else "no demo control plane running")
        return 0

    print(f"{BOLD}modelward demo{RESET}: a real kube-apiserver calls modelward's webhooks over TLS")
    step(1, "control plane (etcd + kube-apiserver, built from the Go module proxy, cached)")
    binaries = find_binaries()
    was_running = LocalControlPlane.reusable_is_running()
    started = time.monotonic()
    plane = LocalControlPlane.reuse_or_start(default_state_dir(), binaries=binaries)
    version = plane.api_request("GET", "/version").json().get("gitVersion")
    print(
        f"    kube-apiserver {version} ready in {time.monotonic() - started:.1f}s; "
        f"KUBECONFIG={plane.kubeconfig_path}"
    )

    operator: OperatorProcess | None = None
    try:
        step(2, "CRDs from manifests/crds/")
        plane.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            str(ROOT / "manifests/crds"),
            check=True,
        )
        plane.kubectl(
            "wait",
            "--for=condition=Established",
            "-f",
            str(ROOT / "manifests/crds"),
            "--timeout=60s",
            check=True,
        )
        print(
            indent(plane.kubectl("get", "crd", "-l", "app.kubernetes.io/part-of=modelward").stdout)
        )

        step(3, "modelward operator + admission webhooks (a local process, HTTPS on 127.0.0.1)")
        # A short audit period so that the demo shows a PolicyReport (the default is 5 minutes).
        operator = OperatorProcess(control_plane=plane, extra_args=("--audit-interval", "10"))
        operator.start()
        print(f"    webhooks at {operator.webhook_url}, metrics at {operator.metrics_url}/metrics")

        step(4, "example policies (manifests/examples/policies/)")
        ok, out = apply_file(plane, EXAMPLES / "workloads" / "00-namespace.yaml")
        assert ok, out
        for path in sorted((EXAMPLES / "policies").glob("*.yaml")):
            ok, out = apply_file(plane, path)
            assert ok, out
        time.sleep(2)  # let the operator's watch pick the policies up and write their status
        print(indent(plane.kubectl("get", "cmp,mp", "-A").stdout))

        step(5, "example workloads (manifests/examples/workloads/)")
        for path in sorted((EXAMPLES / "workloads").glob("*.yaml")):
            if path.name.startswith("00-"):
                continue
            ok, out = apply_file(plane, path)
            verdict = f"{GREEN}ADMITTED{RESET}" if ok else f"{RED}DENIED{RESET}"
            print(f"\n  {verdict} {path.name}")
            print(indent(out))

        step(6, "what was patched (read back from the API server)")
        pod = json.loads(
            plane.kubectl("get", "pod", "llm-patched", "-n", "serving-demo", "-o", "json").stdout
        )
        spec = pod["spec"]
        shown = {
            k: spec.get(k)
            for k in (
                "runtimeClassName",
                "automountServiceAccountToken",
                "securityContext",
                "nodeSelector",
                "tolerations",
            )
        }
        shown["containers[0].securityContext"] = spec["containers"][0].get("securityContext")
        print(indent(json.dumps(shown, indent=2)))
        deployment = json.loads(
            plane.kubectl(
                "get", "deployment", "llm-signed", "-n", "serving-demo", "-o", "json"
            ).stdout
        )
        template = deployment["spec"]["template"]["spec"]
        verifier = template["initContainers"][-1]
        print(f"\n    Deployment llm-signed: verifier init container {verifier['name']} injected")
        print(indent(" ".join(verifier["args"]), "      "))
        print(f"      model mount read-only: {template['containers'][0]['volumeMounts'][0]}")

        step(7, "what was recorded: Events, policy status, metrics")
        time.sleep(12)  # events post off the hot path; status folds in every 5s; audit every 10s
        print(
            indent(
                plane.kubectl(
                    "get",
                    "events",
                    "-A",
                    "--field-selector",
                    "reportingComponent=modelward",
                    "--sort-by=.lastTimestamp",
                ).stdout
            )
        )
        print()
        print(indent(plane.kubectl("get", "cmp,mp", "-A").stdout))
        print("\n    background audit of existing pods (wgpolicyk8s.io PolicyReport):")
        print(indent(plane.kubectl("get", "policyreport", "-A").stdout))
        with urllib.request.urlopen(operator.metrics_url + "/metrics", timeout=5) as response:
            metrics = response.read().decode()
        print()
        for line in metrics.splitlines():
            if line.startswith(
                ("modelward_admission_requests_total", "modelward_violations_total{")
            ):
                print(f"    {line}")
        print(
            f"\n{BOLD}offline, the same engine:{RESET} modelward check "
            "-f manifests/examples/workloads --policy manifests/examples/policies "
            "(exit 1: something is denied)"
        )
    finally:
        if operator is not None:
            operator.stop()
        if args.keep or was_running:
            print(
                f"\n{DIM}control plane kept running; KUBECONFIG={plane.kubeconfig_path}; "
                f"stop it with: .venv/bin/python hack/demo.py --stop{RESET}"
            )
        else:
            LocalControlPlane.stop_reusable()
            print(
                f"\n{DIM}cleaned up: operator stopped, webhooks removed, "
                f"control plane stopped{RESET}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
