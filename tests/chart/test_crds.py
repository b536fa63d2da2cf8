"""The chart's CRDs are the generated ones, identical to manifests/crds.

Both folders are written by ``modelward crds --write`` from ``modelward.api.schema``; a hand
edit in either, or a schema change without regenerating, fails here. The e2e install test
relies on this to install the chart with CRDs that may already exist from manifests/crds.
"""

from __future__ import annotations

from modelward.api.manifests import render_crd_files
from tests.chart.conftest import CHART_DIR, REPO_ROOT


def test_chart_crds_equal_the_generated_manifests() -> None:
    generated = render_crd_files()
    chart = {p.name: p.read_text() for p in sorted((CHART_DIR / "crds").glob("*.yaml"))}
    manifests = {
        p.name: p.read_text() for p in sorted((REPO_ROOT / "manifests" / "crds").glob("*.yaml"))
    }
    assert set(chart) == set(generated), "run `make generate` (modelward crds --write)"
    for name, text in generated.items():
        assert chart[name] == text, f"charts/modelward/crds/{name} is stale: run `make generate`"
        assert manifests[name] == text, f"manifests/crds/{name} is stale: run `make generate`"


def test_chart_crds_are_plain_yaml() -> None:
    """Helm never templates crds/: a template expression there would be applied literally."""
    for path in (CHART_DIR / "crds").glob("*.yaml"):
        assert "{{" not in path.read_text(), path.name
