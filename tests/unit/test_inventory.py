"""The inventory renders as a valid CycloneDX 1.6 ML-BOM (validated by the CycloneDX library)."""

from __future__ import annotations

import json

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from modelward.inventory import render_cyclonedx, render_json, render_text

ITEMS = [
    {
        "metadata": {"name": "sha256-aa", "namespace": "serving"},
        "spec": {
            "digest": "sha256:" + "aa" * 32,
            "signer": "key:1234",
            "files": 4,
            "scan": "clean",
            "lastResult": "verified",
            "firstSeen": "2026-11-25T10:00:00Z",
            "lastSeen": "2026-11-25T11:00:00Z",
            "verifications": 3,
            "policies": ["ClusterModelPolicy p"],
            "workloads": [{"kind": "Deployment", "name": "llm"}],
        },
    },
]


def test_cyclonedx_is_valid_and_pins_the_digest() -> None:
    text = render_cyclonedx(ITEMS)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    (component,) = json.loads(text)["components"]
    assert component["type"] == "machine-learning-model" and component["name"] == "Deployment/llm"
    assert component["hashes"] == [{"alg": "SHA-256", "content": "aa" * 32}]


def test_empty_inventory_is_valid_too() -> None:
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(render_cyclonedx([])) is None
    assert render_text([]) == "no deployed models recorded yet"
    assert json.loads(render_json(ITEMS))["models"][0]["digest"] == "sha256:" + "aa" * 32
