"""manifests/crds and the chart's CRDs are generated from api/schema.py and stay in sync."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelward.api.manifests import CRD_FOLDERS, render_crd_files
from modelward.api.schema import custom_resource_definitions, openapi_schema

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("folder", CRD_FOLDERS)
def test_generated_files_are_current(folder: str) -> None:
    expected = render_crd_files()
    present = {p.name: p.read_text() for p in (ROOT / folder).glob("*.yaml")}
    assert present == expected, f"run `make generate`: {folder} is out of date"


def test_crds_have_status_printer_columns_short_names_and_cel() -> None:
    for crd in custom_resource_definitions()[:2]:  # the two policy kinds
        version = crd["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert {c["name"] for c in version["additionalPrinterColumns"]} >= {"Mode", "Ready"}
        assert crd["spec"]["names"]["shortNames"]
    cluster = openapi_schema("ClusterModelPolicy")["properties"]["spec"]
    assert "x-kubernetes-validations" in cluster["properties"]["match"]
    assert cluster["required"] == ["match"]


def test_every_example_policy_is_valid() -> None:
    from modelward.engine import parse_policy

    for path in sorted((ROOT / "manifests/examples/policies").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            parse_policy(doc)
