"""``modelward evidence`` against a cluster the test populated, through the real API server.

The operator of the session judges the policies (Ready status, decision counts) and its
background audit writes the PolicyReport; the pack is rendered by the real command line in the
three formats, the JSON checked against the published schema and its digest, and the HTML
opened in a real headless Chromium (Debian's ``chromium-headless-shell``), which must show every
section without fetching anything.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from modelward.evidence.model import json_schema
from modelward.evidence.render import sections
from modelward_dev.controlplane import LocalControlPlane, ToolRunner
from modelward_dev.operator_process import OperatorProcess
from tests.e2e.helpers import apply, apply_policy, cluster_policy, get_json, pod, wait_for

CHROMIUM = "chromium-headless-shell"
DIGEST = "sha256:" + "5e" * 32


def evidence(plane: LocalControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "modelward",
            "evidence",
            "--kubeconfig",
            str(plane.kubeconfig_path),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def populated(operator: OperatorProcess, kubectl: ToolRunner, namespace: str) -> dict[str, Any]:
    """Two policies (one enforcing, one auditing), a denied pod, an admitted pod the audit
    flags, and a DeployedModel record."""
    enforce = cluster_policy(
        f"ev-{namespace}-hosting",
        namespace,
        {"isolation": {"requireDefaultDenyNetworkPolicy": False}, "images": {}},
    )
    audit = cluster_policy(
        f"ev-{namespace}-secrets",
        namespace,
        {
            "secrets": {},
            "access": {
                "jobFunctions": [{"name": "sre", "groups": ["sre"], "permissions": ["pods/exec"]}]
            },
        },
        mode="Audit",
    )
    apply_policy(kubectl, enforce)
    apply_policy(kubectl, audit)
    # mallory may exec into the namespace's pods: no job function allows it (Audit: admitted)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "debug-mallory", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory"}],
    }
    bound = apply(kubectl, binding)
    assert bound.returncode == 0, bound.stderr
    rooted = pod("rooted", namespace)
    rooted["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = False
    assert apply(kubectl, rooted).returncode != 0
    leaky = pod("leaky", namespace)
    leaky["spec"]["containers"][0]["env"] = [
        {"name": "OPENAI_API_KEY", "value": "sk-proj-" + "Ab3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3"}
    ]
    result = apply(kubectl, leaky)
    assert result.returncode == 0, result.stderr
    model = {
        "apiVersion": "modelward.io/v1alpha1",
        "kind": "DeployedModel",
        "metadata": {"name": "llm-5e5e", "namespace": namespace},
        "spec": {
            "digest": DIGEST,
            "signer": "ml-team@example.com",
            "lastResult": "verified",
            "firstSeen": "2026-11-26T10:00:00Z",
            "lastSeen": "2026-11-26T11:00:00Z",
            "workloads": [{"kind": "Deployment", "name": "llm"}],
        },
    }
    assert apply(kubectl, model).returncode == 0
    now = dt.datetime.now(dt.UTC)
    waiver = {
        "apiVersion": "modelward.io/v1alpha1",
        "kind": "ModelPolicyException",
        "metadata": {"name": "legacy-root", "namespace": namespace},
        "spec": {
            "policy": {"kind": "ClusterModelPolicy", "name": enforce["metadata"]["name"]},
            "rules": ["MW-ISO-001"],
            "workloads": {"names": ["legacy"]},
            "justification": "vendor image runs as root until the next release",
            "approvedBy": "ciso@example.com",
            "ticket": "SEC-42",
            "approvedAt": (now - dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "expiresAt": (now + dt.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    created = apply(kubectl, waiver)
    assert created.returncode == 0, created.stderr

    def audited() -> bool:
        report = kubectl("get", "policyreport", "modelward", "-n", namespace, "-o", "json")
        if report.returncode != 0:
            return False
        return any(
            r.get("rule") == "MW-SEC-001" for r in json.loads(report.stdout).get("results", [])
        )

    wait_for("the background audit to report the leaky pod", audited, timeout=60)

    def denial_counted() -> bool:
        status = (
            get_json(kubectl, "clustermodelpolicy", enforce["metadata"]["name"]).get("status") or {}
        )
        return (status.get("violations") or {}).get("denied", 0) > 0

    wait_for("the denial to reach the policy's status", denial_counted, timeout=30)
    return {"enforce": enforce["metadata"]["name"], "audit": audit["metadata"]["name"]}


def test_the_json_pack_shows_what_the_cluster_holds(
    control_plane: LocalControlPlane, populated: dict[str, Any], namespace: str, tmp_path: Path
) -> None:
    result = evidence(control_plane, "-o", "json", "--since", "1h")
    assert result.returncode == 0, result.stderr
    pack = json.loads(result.stdout)
    jsonschema.validate(pack, json_schema())
    assert pack["cluster"]["version"].startswith("v1.")
    mine = {p["name"]: p for p in pack["policies"]}
    assert mine[populated["enforce"]]["ready"]
    assert mine[populated["enforce"]]["sections"] == {"isolation": "Enforce", "images": "Enforce"}
    assert mine[populated["audit"]]["sections"] == {"secrets": "Audit", "access": "Audit"}
    access = pack["accessReview"]
    assert access["available"] and access["violations"] >= 1
    mallory = [
        r for r in access["rows"] if r["namespace"] == namespace and r["subject"] == "User mallory"
    ]
    assert mallory and not any(r["allowed"] for r in mallory), mallory
    assert all("debug-mallory" in r["via"] for r in mallory)
    restrict = next(a for a in pack["activities"] if a["id"] == "restrict-access")
    assert populated["audit"] in {u["name"] for u in restrict["policies"]}
    hosting = next(a for a in pack["activities"] if a["id"] == "hosting-environment")
    assert hosting["status"] == "enforced"
    assert populated["enforce"] in {u["name"] for u in hosting["policies"]}
    flagged = [
        v
        for v in pack["violations"]
        if v["namespace"] == namespace and v["resource"] == "Pod/leaky"
    ]
    assert {v["rule"] for v in flagged} == {"MW-SEC-001"} and flagged[0]["result"] == "warn"
    assert DIGEST in {m["digest"] for m in pack["models"]}
    waiver = next(e for e in pack["exceptions"] if e["namespace"] == namespace)
    assert (waiver["name"], waiver["state"], waiver["approvedBy"], waiver["rules"]) == (
        "legacy-root",
        "active",
        "ciso@example.com",
        ["MW-ISO-001"],
    )
    assert waiver["policy"] == f"ClusterModelPolicy {populated['enforce']}"
    counts = {c["policy"]: c for c in pack["admissions"]["policyStatus"]}
    assert counts[populated["enforce"]]["denied"] >= 1
    # the admin's own identity is on record; this API server shows no MFA, so it is attested
    assert any("SelfSubjectReview" in m["source"] for m in pack["authentication"]["methods"])
    assert pack["authentication"]["mfa"] == "unknown" and pack["attestations"]

    saved = tmp_path / "pack.json"
    saved.write_text(result.stdout)
    assert evidence(control_plane, "--check", str(saved)).returncode == 0
    pack["models"] = []
    saved.write_text(json.dumps(pack))
    checked = evidence(control_plane, "--check", str(saved))
    assert checked.returncode == 1 and "mismatch" in checked.stdout


def test_markdown_and_html_show_every_section_and_chromium_renders_it_offline(
    control_plane: LocalControlPlane, populated: dict[str, Any], tmp_path: Path
) -> None:
    text = evidence(control_plane, "-o", "markdown")
    assert text.returncode == 0, text.stderr
    page = evidence(control_plane, "-o", "html")
    assert page.returncode == 0, page.stderr
    pack = json.loads(evidence(control_plane, "-o", "json").stdout)
    titles = [(s.id, s.title) for s in sections(pack)]
    for _, title in titles:
        assert f"## {title}" in text.stdout
    chromium = shutil.which(CHROMIUM)
    assert chromium, f"{CHROMIUM} is missing: run hack/install-system-deps.sh"
    html_file = tmp_path / "evidence.html"
    html_file.write_text(page.stdout)
    common = [
        chromium,
        "--no-sandbox",
        "--disable-gpu",
        "--headless",
        # nothing may be fetched: every request other than the file itself fails
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=127.0.0.1:9",
    ]
    dom = subprocess.run(
        [*common, "--dump-dom", html_file.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    for section_id, title in titles:
        assert f'<section id="{section_id}">' in dom.stdout, section_id
        assert f"<h2>{title.replace('&', '&amp;')}</h2>" in dom.stdout, title
    assert populated["enforce"] in dom.stdout and DIGEST in dom.stdout
    shot = tmp_path / "evidence.png"
    screenshot = subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1280,2400", html_file.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert screenshot.returncode == 0, screenshot.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
