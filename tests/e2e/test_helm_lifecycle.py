"""The chart's lifecycle with the real helm against a real kube-apiserver of this module's own
(no CRDs preinstalled, so the chart is the only one to install, upgrade and keep them):

- an upgrade from the previous chart version (0.1.0, from git history, whose CRDs Helm
  installed from crds/ and never upgraded) to this one upgrades the CRDs, and a later upgrade
  that adds a CRD field adds it with a plain `helm upgrade`; `helm uninstall` keeps the CRDs and
  the policies in them;
- the PolicyReport CRD shared with Kyverno: both install orders with a stand-in "kyverno-like"
  release owning the same CRD;
- GitOps: the manifests `helm template` renders (what Argo CD applies, with no `lookup`) carry
  no caBundle, so the one the operator writes shows no drift and survives a re-sync.

No kubelet runs here: the chart's pods never start. Its webhooks use failOpenElsewhere=false and
are only called for labelled namespaces, which these tests never create.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelward_dev.controlplane import LocalControlPlane
from tests.conftest import own_control_plane

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "modelward"
PREVIOUS_VERSION = "0.1.0"
POLICY_REPORTS = "policyreports.wgpolicyk8s.io"
MODEL_POLICIES = "modelpolicies.modelward.io"
CRD_API = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
#: Values making an installed release inert on a cluster without nodes.
INERT = ["--set", "webhook.failOpenElsewhere=false", "--set", "grafanaDashboard.enabled=false"]


@pytest.fixture(scope="module")
def plane() -> Iterator[LocalControlPlane]:
    with own_control_plane(crds=False) as control_plane:
        yield control_plane


@pytest.fixture
def clean(plane: LocalControlPlane) -> Iterator[LocalControlPlane]:
    """No release and no CRD of ours before and after each test."""
    _reset(plane)
    try:
        yield plane
    finally:
        _reset(plane)


def _reset(plane: LocalControlPlane) -> None:
    listed = plane.helm("list", "-A", "-o", "json", check=True)
    for release in json.loads(listed.stdout or "[]"):
        # --no-hooks: a post-delete Job would wait for a kubelet this plane does not have
        plane.helm("uninstall", release["name"], "-n", release["namespace"], "--no-hooks")
    for name in (POLICY_REPORTS, MODEL_POLICIES, *_other_modelward_crds()):
        plane.api_request("DELETE", f"{CRD_API}/{name}")
    deadline = time.monotonic() + 60
    while any(_crd(plane, name) for name in (POLICY_REPORTS, MODEL_POLICIES)):
        assert time.monotonic() < deadline, "CRDs were not deleted within 60 s"
        time.sleep(0.2)


def _other_modelward_crds() -> list[str]:
    return [
        yaml.safe_load(p.read_text())["metadata"]["name"]
        for p in sorted((CHART / "files" / "crds").glob("*.yaml"))
    ]


def _crd(plane: LocalControlPlane, name: str) -> dict[str, Any] | None:
    response = plane.api_request("GET", f"{CRD_API}/{name}")
    return response.json() if response.status == 200 else None


def _owner(crd: dict[str, Any] | None) -> str | None:
    assert crd is not None
    owner: str | None = crd["metadata"].get("annotations", {}).get("meta.helm.sh/release-name")
    return owner


def _spec_properties(crd: dict[str, Any] | None) -> dict[str, Any]:
    assert crd is not None
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    properties: dict[str, Any] = schema["properties"]["spec"]["properties"]
    return properties


def _helm(plane: LocalControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return plane.helm(*args, timeout=180)


def previous_chart(target: Path) -> Path:
    """charts/modelward as released in PREVIOUS_VERSION: the newest commit whose chart has that
    version and still ships its CRDs in crds/ (the layout Helm never upgrades)."""
    revisions = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-list", "HEAD", "--", "charts/modelward"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for revision in revisions:
        chart_yaml = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "show", f"{revision}:charts/modelward/Chart.yaml"],
            capture_output=True,
            text=True,
            check=False,
        )
        has_crds = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "cat-file", "-e", f"{revision}:charts/modelward/crds"],
            capture_output=True,
            check=False,
        )
        if (
            chart_yaml.returncode == 0
            and yaml.safe_load(chart_yaml.stdout)["version"] == PREVIOUS_VERSION
            and has_crds.returncode == 0
        ):
            archive = subprocess.run(
                ["git", "-C", str(REPO_ROOT), "archive", revision, "charts/modelward"],
                capture_output=True,
                check=True,
            )
            target.mkdir(parents=True)
            subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
            return target / "charts" / "modelward"
    raise AssertionError(f"no commit in git history holds chart {PREVIOUS_VERSION} with crds/")


def _drop_property(crd_file: Path, name: str) -> None:
    """Simulate an older schema: the previous chart's ModelPolicy CRD without ``name``."""
    text = crd_file.read_text()
    crd = yaml.safe_load(text)
    assert _spec_properties(crd).pop(name) is not None
    crd_file.write_text(yaml.safe_dump(crd, sort_keys=False))


def _add_property(crd_file: Path, name: str) -> None:
    crd = yaml.safe_load(crd_file.read_text())
    _spec_properties(crd)[name] = {"type": "string", "description": "added by the next version"}
    crd_file.write_text(yaml.safe_dump(crd, sort_keys=False))


def _model_policy(field: str | None) -> str:
    spec: dict[str, Any] = {"mode": "Audit"}
    if field == "transport":
        spec["transport"] = {"requireTLS": True}
    elif field is not None:
        spec[field] = "on"
    return yaml.safe_dump(
        {
            "apiVersion": "modelward.io/v1alpha1",
            "kind": "ModelPolicy",
            "metadata": {"name": f"p-{field or 'plain'}".lower(), "namespace": "default"},
            "spec": spec,
        }
    )


def test_upgrade_from_the_previous_chart_version_upgrades_the_crds(
    clean: LocalControlPlane, tmp_path: Path
) -> None:
    plane = clean
    old = previous_chart(tmp_path / "old")
    _drop_property(old / "crds" / "modelward.io_modelpolicies.yaml", "transport")
    installed = _helm(plane, "install", "mw", str(old), "-n", "mw", "--create-namespace", *INERT)
    assert installed.returncode == 0, installed.stderr
    assert "transport" not in _spec_properties(_crd(plane, MODEL_POLICIES))
    assert _owner(_crd(plane, MODEL_POLICIES)) is None, "crds/ objects carry no Helm owner"
    plane.kubectl("apply", "-f", "-", input=_model_policy(None), check=True)

    # CRDs that Helm installed from crds/ have no owner: the first upgrade must adopt them,
    # and helm says so (docs/upgrading.md gives the flag).
    refused = _helm(plane, "upgrade", "mw", str(CHART), "-n", "mw", *INERT)
    assert refused.returncode != 0
    assert "invalid ownership metadata" in refused.stderr
    adopted = _helm(plane, "upgrade", "mw", str(CHART), "-n", "mw", "--take-ownership", *INERT)
    assert adopted.returncode == 0, adopted.stderr
    crd = _crd(plane, MODEL_POLICIES)
    assert "transport" in _spec_properties(crd), "helm upgrade did not upgrade the CRD"
    assert _owner(crd) == "mw"
    assert crd is not None and crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    plane.kubectl("apply", "-f", "-", input=_model_policy("transport"), check=True)
    stored = json.loads(
        plane.kubectl("get", "modelpolicy", "p-transport", "-n", "default", "-o", "json").stdout
    )
    assert stored["spec"]["transport"]["requireTLS"] is True, "the new field was pruned"

    # The next version adds a field: a plain upgrade adds it (no flag from now on).
    following = tmp_path / "next"
    shutil.copytree(CHART, following)
    _add_property(following / "files" / "crds" / "modelward.io_modelpolicies.yaml", "futureField")
    meta = yaml.safe_load((following / "Chart.yaml").read_text())
    meta["version"] = meta["version"] + "-next"
    (following / "Chart.yaml").write_text(yaml.safe_dump(meta))
    upgraded = _helm(plane, "upgrade", "mw", str(following), "-n", "mw", *INERT)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "futureField" in _spec_properties(_crd(plane, MODEL_POLICIES))

    # Uninstall keeps the CRDs (resource-policy keep) and so every policy in them.
    removed = _helm(plane, "uninstall", "mw", "-n", "mw", "--wait")
    assert removed.returncode == 0, removed.stderr
    assert _crd(plane, MODEL_POLICIES) is not None
    policies = plane.kubectl("get", "modelpolicies", "-n", "default", "-o", "name", check=True)
    assert set(policies.stdout.split()) == {
        "modelpolicy.modelward.io/p-plain",
        "modelpolicy.modelward.io/p-transport",
    }


def kyverno_like_chart(target: Path) -> Path:
    """A stand-in for Kyverno's chart: a release that owns the same PolicyReport CRD."""
    (target / "templates").mkdir(parents=True)
    (target / "Chart.yaml").write_text(
        "apiVersion: v2\nname: kyverno-like\nversion: 1.0.0\ntype: application\n"
    )
    crd = yaml.safe_load(
        (CHART / "files" / "crds" / "wgpolicyk8s.io_policyreports.yaml").read_text()
    )
    (target / "templates" / "policyreports.yaml").write_text(yaml.safe_dump(crd))
    return target


def _release_has_policy_report_crd(plane: LocalControlPlane, release: str) -> bool:
    manifest = plane.helm("get", "manifest", release, "-n", "mw", check=True).stdout
    return any(
        o and o.get("metadata", {}).get("name") == POLICY_REPORTS
        for o in yaml.safe_load_all(manifest)
    )


def test_policy_report_crd_kyverno_installed_first(
    clean: LocalControlPlane, tmp_path: Path
) -> None:
    plane = clean
    kyverno = kyverno_like_chart(tmp_path / "kyverno")
    assert (
        _helm(
            plane, "install", "kyverno", str(kyverno), "-n", "kyverno", "--create-namespace"
        ).returncode
        == 0
    )
    installed = _helm(plane, "install", "mw", str(CHART), "-n", "mw", "--create-namespace", *INERT)
    assert installed.returncode == 0, installed.stderr
    assert not _release_has_policy_report_crd(plane, "mw"), "modelward took Kyverno's CRD"
    assert _owner(_crd(plane, POLICY_REPORTS)) == "kyverno"
    assert _owner(_crd(plane, MODEL_POLICIES)) == "mw"
    assert _helm(plane, "upgrade", "mw", str(CHART), "-n", "mw", *INERT).returncode == 0
    assert _helm(plane, "uninstall", "mw", "-n", "mw", "--wait").returncode == 0
    assert _owner(_crd(plane, POLICY_REPORTS)) == "kyverno"


def test_policy_report_crd_modelward_installed_first(
    clean: LocalControlPlane, tmp_path: Path
) -> None:
    plane = clean
    installed = _helm(plane, "install", "mw", str(CHART), "-n", "mw", "--create-namespace", *INERT)
    assert installed.returncode == 0, installed.stderr
    # created by a hook: present, but not part of (nor owned by) modelward's release
    assert not _release_has_policy_report_crd(plane, "mw")
    assert _owner(_crd(plane, POLICY_REPORTS)) is None

    # Kyverno's plain install refuses an object it does not own ...
    refused = _helm(
        plane,
        "install",
        "kyverno",
        str(kyverno_like_chart(tmp_path / "k0")),
        "-n",
        "kyverno",
        "--create-namespace",
    )
    assert refused.returncode != 0
    # ... so it adopts the CRD (its chart with --take-ownership, as docs/helm.md says) ...
    kyverno = kyverno_like_chart(tmp_path / "kyverno")
    args = ("install", "kyverno", str(kyverno), "-n", "kyverno", "--create-namespace")
    adopted = _helm(plane, *args, "--take-ownership")
    assert adopted.returncode == 0, adopted.stderr
    assert _owner(_crd(plane, POLICY_REPORTS)) == "kyverno"
    # ... and modelward's next upgrade stops rendering it, without deleting it (keep).
    upgraded = _helm(plane, "upgrade", "mw", str(CHART), "-n", "mw", *INERT)
    assert upgraded.returncode == 0, upgraded.stderr
    assert not _release_has_policy_report_crd(plane, "mw")
    assert _owner(_crd(plane, POLICY_REPORTS)) == "kyverno"
    assert _helm(plane, "uninstall", "mw", "-n", "mw", "--wait").returncode == 0
    assert _owner(_crd(plane, POLICY_REPORTS)) == "kyverno"


def test_gitops_rendered_webhooks_show_no_drift_after_the_operator_writes_the_ca(
    clean: LocalControlPlane,
) -> None:
    """Argo CD renders with `helm template` (no lookup, so no caBundle) and applies server-side;
    the operator then writes the caBundle. A re-sync keeps it, and a diff shows nothing."""
    plane = clean
    rendered = plane.helm(
        "template",
        "mw",
        str(CHART),
        "-n",
        "mw",
        "--set",
        "crds.install=false",
        *INERT,
        "--show-only",
        "templates/webhooks.yaml",
        check=True,
    ).stdout
    hooks = [o for o in yaml.safe_load_all(rendered) if o]
    assert all("caBundle" not in h["clientConfig"] for o in hooks for h in o["webhooks"])
    apply = ("apply", "--server-side", "--field-manager=argocd-controller", "-f", "-")
    plane.kubectl(*apply, input=rendered, check=True)
    try:
        bundle = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="
        for resource in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
            live = plane.kubectl("get", resource, "mw-modelward", "-o", "json", check=True)
            count = len(json.loads(live.stdout)["webhooks"])
            patch = [
                {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": bundle}
                for i in range(count)
            ]
            plane.kubectl(
                "patch",
                resource,
                "mw-modelward",
                "--type=json",
                "--field-manager=modelward",
                "-p",
                json.dumps(patch),
                check=True,
            )
        diff = plane.kubectl(
            "diff",
            "--server-side",
            "--field-manager=argocd-controller",
            "-f",
            "-",
            input=rendered,
        )
        assert diff.returncode == 0, f"drift after the operator wrote the CA:\n{diff.stdout}"
        plane.kubectl(*apply, input=rendered, check=True)  # a re-sync (self-heal)
        for resource in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
            live = json.loads(plane.kubectl("get", resource, "mw-modelward", "-o", "json").stdout)
            assert {h["clientConfig"].get("caBundle") for h in live["webhooks"]} == {bundle}
    finally:
        plane.kubectl("delete", "-f", "-", "--ignore-not-found", input=rendered)


def _service_account_kubeconfig(
    plane: LocalControlPlane, name: str, namespace: str, path: Path
) -> Path:
    token = plane.kubectl(
        "create", "token", name, "-n", namespace, "--duration=1h", check=True
    ).stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": plane.server_url,
                    "certificate-authority-data": base64.b64encode(plane.ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": "hook", "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "hook"}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _exists(plane: LocalControlPlane, *args: str) -> bool:
    return plane.kubectl("get", *args, "-o", "name").returncode == 0


def test_post_delete_cleanup_removes_what_uninstall_leaves_and_nothing_else(
    clean: LocalControlPlane, tmp_path: Path
) -> None:
    """The opt-in post-delete hook's command, run with the hook's own ServiceAccount and RBAC
    (rendered by the chart) and the Job's own arguments: it deletes the certificate Secret,
    the leader Lease, modelward's PolicyReports and the DeployedModels, and nothing else,
    twice in a row. (No kubelet here: the Job's pod itself runs in tests/e2e/node.)"""
    plane = clean
    values = ("--set", "cleanup.onUninstall=true", *INERT)
    installed = _helm(plane, "install", "mw", str(CHART), "-n", "mw", "--create-namespace", *values)
    assert installed.returncode == 0, installed.stderr
    plane.kubectl(
        "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s", check=True
    )
    plane.kubectl("create", "namespace", "apps", check=True)
    left_behind = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "mw-modelward-tls", "namespace": "mw"},
        },
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "mw-modelward-leader", "namespace": "mw"},
        },
        {
            "apiVersion": "wgpolicyk8s.io/v1alpha2",
            "kind": "PolicyReport",
            "metadata": {"name": "modelward", "namespace": "apps"},
        },
        {
            "apiVersion": "modelward.io/v1alpha1",
            "kind": "DeployedModel",
            "metadata": {"name": "m1", "namespace": "apps"},
            "spec": {"digest": "sha256:" + "0" * 64},
        },
    ]
    others = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "someone-elses", "namespace": "mw"},
        },
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "other-leader", "namespace": "mw"},
        },
        {
            "apiVersion": "wgpolicyk8s.io/v1alpha2",
            "kind": "PolicyReport",
            "metadata": {"name": "kyverno-polr", "namespace": "apps"},
        },
    ]
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(left_behind + others), check=True)

    hook = [
        o
        for o in yaml.safe_load_all(
            plane.helm(
                "template",
                "mw",
                str(CHART),
                "-n",
                "mw",
                *values,
                "--show-only",
                "templates/cleanup-hook.yaml",
                check=True,
            ).stdout
        )
        if o
    ]
    job = next(o for o in hook if o["kind"] == "Job")
    rbac = [o for o in hook if o["kind"] != "Job"]
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac), check=True)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "modelward.chart_hooks"]
    kubeconfig = _service_account_kubeconfig(
        plane,
        job["spec"]["template"]["spec"]["serviceAccountName"],
        "mw",
        tmp_path / "hook.kubeconfig",
    )
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    command = [sys.executable, "-m", "modelward.chart_hooks", *container["args"]]
    first = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert first.returncode == 0, first.stderr
    assert "1 PolicyReport(s), 1 DeployedModel(s)" in first.stdout
    for obj in left_behind:
        meta = obj["metadata"]
        assert not _exists(plane, obj["kind"].lower(), meta["name"], "-n", meta["namespace"]), meta
    for obj in others:
        meta = obj["metadata"]
        assert _exists(plane, obj["kind"].lower(), meta["name"], "-n", meta["namespace"]), meta
    again = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert again.returncode == 0, again.stderr
    assert "Secret absent, leader Lease absent, 0 PolicyReport(s)" in again.stdout
    # The hook's account can delete only those: not someone else's Secret.
    can = plane.kubectl(
        "auth",
        "can-i",
        "delete",
        "secret/someone-elses",
        "-n",
        "mw",
        f"--as=system:serviceaccount:mw:{job['spec']['template']['spec']['serviceAccountName']}",
    )
    assert can.stdout.strip() == "no"
