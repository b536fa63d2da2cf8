"""``modelward check`` offline: a ClusterModelPolicy's referenced key is taken from a ConfigMap
or Secret given with the policies (the operator would read it from its own namespace)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from modelward.check import load_policies
from modelward.errors import PolicyError
from tests.unit.engine.builders import DIGEST, public_key_pem


def _policy(source: str) -> dict[str, object]:
    return {
        "apiVersion": "modelward.io/v1alpha1",
        "kind": "ClusterModelPolicy",
        "metadata": {"name": "integrity"},
        "spec": {
            "match": {"namespaces": ["serving-*"]},
            "integrity": {
                "trustedSigners": [
                    {
                        "name": "release",
                        source: {"name": "keys", "key": "k", "namespace": "modelward-system"},
                    }
                ],
                "verifier": {"image": f"registry.example.com/modelward@{DIGEST}"},
            },
        },
    }


@pytest.mark.parametrize("kind", ["ConfigMap", "Secret"])
def test_a_referenced_key_given_with_the_policies_is_used(tmp_path: Path, kind: str) -> None:
    pem = public_key_pem()
    data = {"k": base64.b64encode(pem.encode()).decode() if kind == "Secret" else pem}
    holder = {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"name": "keys", "namespace": "modelward-system"},
        "data": data,
    }
    source = "secretKeyRef" if kind == "Secret" else "configMapKeyRef"
    (tmp_path / "p.yaml").write_text(yaml.safe_dump_all([_policy(source), holder]))
    [policy] = load_policies([str(tmp_path)])
    assert policy.integrity is not None and policy.integrity.signers[0].pem == pem


def test_a_missing_referenced_key_is_named(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(_policy("configMapKeyRef")))
    with pytest.raises(PolicyError) as err:
        load_policies([str(tmp_path)])
    assert err.value.reason == "KeyNotFound" and "ConfigMap modelward-system/keys" in str(err.value)
