"""The chart's CRDs are the generated ones, rendered as templates so `helm upgrade` upgrades them.

``modelward crds --write`` writes ``manifests/crds`` and ``charts/modelward/files/crds`` from
``modelward.api.schema``; ``templates/crds.yaml`` renders every file there. So a CRD added to
the schema (a new kind from any module) is installed and upgraded by the chart without a hand
edit, and a hand edit or a schema change without regenerating fails here.
"""

from __future__ import annotations

from typing import Any

import yaml

from modelward.api.manifests import render_crd_files
from modelward.api.schema import custom_resource_definitions
from tests.chart.conftest import CHART_DIR, REPO_ROOT, HelmChart

POLICY_REPORTS = "policyreports.wgpolicyk8s.io"


CHART_LABELS = (
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "helm.sh/chart",
)


def _without_chart_metadata(crd: dict[str, Any]) -> dict[str, Any]:
    """The CRD as generated: the labels and the annotation the chart adds removed."""
    copy = yaml.safe_load(yaml.safe_dump(crd))
    metadata = copy["metadata"]
    for label in CHART_LABELS:
        metadata.get("labels", {}).pop(label, None)
    for annotation in (
        "helm.sh/resource-policy",
        "helm.sh/hook",
        "helm.sh/hook-weight",
        "helm.sh/hook-delete-policy",
    ):
        metadata.get("annotations", {}).pop(annotation, None)
    for key in ("labels", "annotations"):
        if key in metadata and not metadata[key]:
            del metadata[key]
    return dict(copy)


def test_chart_crd_files_equal_the_generated_manifests() -> None:
    generated = render_crd_files()
    chart = {p.name: p.read_text() for p in sorted((CHART_DIR / "files" / "crds").glob("*.yaml"))}
    manifests = {
        p.name: p.read_text() for p in sorted((REPO_ROOT / "manifests" / "crds").glob("*.yaml"))
    }
    assert set(chart) == set(generated), "run `make generate` (modelward crds --write)"
    for name, text in generated.items():
        assert chart[name] == text, (
            f"charts/modelward/files/crds/{name} is stale: run `make generate`"
        )
        assert manifests[name] == text, f"manifests/crds/{name} is stale: run `make generate`"


def test_no_crds_folder_that_helm_would_install_unmanaged() -> None:
    """Helm installs crds/ once and never upgrades it; the CRDs must be templates only."""
    assert not (CHART_DIR / "crds").exists()


def test_every_schema_crd_is_rendered_unchanged_with_keep(chart: HelmChart) -> None:
    rendered = {c["metadata"]["name"]: c for c in chart.template().all("CustomResourceDefinition")}
    expected = {c["metadata"]["name"]: c for c in custom_resource_definitions()}
    assert set(rendered) == set(expected)
    for name, crd in rendered.items():
        assert _without_chart_metadata(crd) == _without_chart_metadata(expected[name]), name
        # helm uninstall (or a release that stops rendering it) never deletes a CRD, and with
        # it every policy, report and inventory object.
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/part-of"] == "modelward"


def test_only_the_shared_policy_report_crd_is_a_hook(chart: HelmChart) -> None:
    """modelward never owns the PolicyReport CRD Kyverno also ships: a hook creates it (hooks
    are not part of the release, so no upgrade or uninstall deletes it); its own CRDs are
    release objects, upgraded by every `helm upgrade`."""
    for crd in chart.template().all("CustomResourceDefinition"):
        hook = crd["metadata"]["annotations"].get("helm.sh/hook")
        if crd["metadata"]["name"] == POLICY_REPORTS:
            assert hook == "pre-install,pre-upgrade"
        else:
            assert hook is None, crd["metadata"]["name"]


def test_crds_install_false_renders_none(chart: HelmChart) -> None:
    rendered = chart.template({"crds": {"install": False}})
    assert rendered.all("CustomResourceDefinition") == []
    assert rendered.all("Deployment")


def test_policy_reports_can_be_left_to_another_tool(chart: HelmChart) -> None:
    names = {
        c["metadata"]["name"]
        for c in chart.template({"crds": {"policyReports": {"install": False}}}).all(
            "CustomResourceDefinition"
        )
    }
    expected = {c["metadata"]["name"] for c in custom_resource_definitions()}
    assert names == expected - {POLICY_REPORTS}


def test_common_labels_reach_the_crds(chart: HelmChart) -> None:
    for crd in chart.template({"commonLabels": {"team": "platform"}}).all(
        "CustomResourceDefinition"
    ):
        assert crd["metadata"]["labels"]["team"] == "platform"
